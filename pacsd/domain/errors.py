"""Why a request was refused or could not be served, as domain exceptions.

Each carries the comment a peer sees; each protocol maps the classes to its
statuses in one table (DIMSE: :mod:`pacsd.wire.statuses`).
"""

from __future__ import annotations

from pydicom.uid import UID


class Refusal(Exception):
    """An object that pacsd will not store; ``str()`` is the error comment."""


class InvalidObject(Refusal):
    """The dataset is malformed, truncated or lacks a required attribute."""


class InvalidUID(Refusal):
    """A required UID is missing or not a syntactically valid UID."""


class RequestMismatch(Refusal):
    """The dataset's SOP Class/Instance UID disagree with the C-STORE request."""


class SOPClassMismatch(RequestMismatch):
    """The dataset's SOP Class UID is not the one the request announced."""


class StudyMismatch(RequestMismatch):
    """An object sent to one study (STOW-RS ``/studies/{study}``) that belongs to another."""


class IdentityConflict(Refusal):
    """The object's identifiers disagree with links already in the index."""


class StorageFailure(Refusal):
    """The file or the index could not be written (disk full, I/O error)."""


class InvalidQuery(Refusal):
    """A C-FIND/C-MOVE/C-GET identifier pacsd cannot answer as asked."""


class OverBudget(Refusal):
    """The object exceeds a budget of :class:`pacsd.domain.limits.Limits`; ``budget`` names its key."""

    def __init__(self, budget: str, message: str) -> None:
        super().__init__(message)
        self.budget = budget


class StartupError(Exception):
    """The data dir or the index cannot be used; ``str()`` is ``<path>: <problem>``,
    the one line ``pacsd`` prints before exiting with status 2."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class NoFetchWaiting(Refusal):
    """An arrival for a caching-proxy fetch that is over, or never was."""


class DestinationUnreachable(Exception):
    """A C-MOVE destination that cannot be associated with; says why."""


class Cancelled(Exception):
    """The client cancelled (C-CANCEL) while its request was worked on."""


class InvalidWorklistItem(Refusal):
    """A worklist item a modality could not use, or that pacsd cannot key;
    ``attribute`` names what is missing or wrong, ``index`` the item's
    position in the request (0 for a single item)."""

    def __init__(self, index: int, attribute: str, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.attribute = attribute


class WorklistConflict(Refusal):
    """A worklist item whose Study Instance UID and Scheduled Procedure Step
    ID are already used by an item with other content."""


class WorklistNotFound(Refusal):
    """No worklist item has that Study Instance UID and Scheduled Procedure Step ID."""


class NoSuchResource(Refusal):
    """No stored study, series (in that study) or instance (in that series) has those UIDs."""


class MppsRefusal(Refusal):
    """An N-CREATE or N-SET of a Performed Procedure Step the rules of
    PS3.4 F.7 refuse; ``attribute`` names the keyword concerned, if one."""

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(message)
        self.attribute = attribute


class MppsInvalidValue(MppsRefusal):
    """An attribute value the rules do not allow (a status other than IN PROGRESS at creation)."""


class MppsNotSettable(MppsRefusal):
    """An attribute fixed at creation, sent in an N-SET."""


class MppsDuplicate(Refusal):
    """An N-CREATE of an SOP Instance UID that exists."""


class MppsNoSuchInstance(Refusal):
    """An N-SET of an MPPS instance pacsd does not hold."""


class MppsFinal(Refusal):
    """An N-SET after the step was COMPLETED or DISCONTINUED."""


class NoSuchFrame(Refusal):
    """A frame number the instance does not have (0, or past its last)."""


class NoSuchAttribute(Refusal):
    """A bulk data path that names no binary value of the instance."""


class NotSendable(Exception):
    """A stored instance that cannot go to this recipient (its sub-operation
    fails, the others go on); ``str()`` is the reason."""


class Unreadable(NotSendable):
    """The instance's file is gone or damaged."""


class NoUsableSyntax(NotSendable):
    """The recipient accepts no transfer syntax pacsd may send this instance in."""


class ConversionFailed(NotSendable):
    """An instance that could not be re-encoded from the *source* to the
    *target* transfer syntax (UIDs); ``reason`` is the codec's (or the
    reader's) own words."""

    def __init__(self, source: str, target: str, reason: str) -> None:
        super().__init__(f"cannot convert from {UID(source).name} to {UID(target).name}: {reason}")
        self.source = source
        self.target = target
        self.reason = reason

    def __reduce__(self) -> tuple[type[ConversionFailed], tuple[str, str, str]]:
        # Raised in a conversion process: it must unpickle with its own arguments.
        return type(self), (self.source, self.target, self.reason)
