"""Domain outcomes and errors mapped to DIMSE statuses, in one table.

Used by the DIMSE adapters (:mod:`pacsd.dimse`) and by the caching proxy
when it answers an upstream's C-STOREs. pacsd-specific codes sit in the
ranges PS3.4 B.2.3 reserves for C-STORE ("Error: Cannot understand"
C000-CFFF, "Refused: Out of resources" A700-A7FF); the README lists them.
"""

from __future__ import annotations

from collections.abc import Collection

from pydicom.uid import UID

from pacsd.domain import errors
from pacsd.domain.outcomes import Result
from pacsd.wire import command
from pacsd.wire.link import Message

SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122  # Refused: SOP Class not supported (PS3.7 C.5.4)

STORE_REFUSALS: dict[type[errors.Refusal], int] = {
    errors.InvalidObject: 0xC000,
    errors.InvalidUID: 0xC001,
    errors.RequestMismatch: 0xC002,
    # Over a budget (max_inflated_bytes, max_inflate_ratio, ...; the comment
    # names it): permanent, a sender must not retry the same object.
    errors.OverBudget: 0xC003,
    errors.SOPClassMismatch: 0xA900,  # standard: Data Set does not match SOP Class
    errors.IdentityConflict: 0xC010,
    # A C-STORE naming, as Move Originator, a fetch of ours that is over (or never was).
    errors.NoFetchWaiting: 0xC011,
    errors.StorageFailure: 0xA700,  # standard: Out of resources
}

STORE_RESULTS: dict[Result, int] = {
    Result.STORED: SUCCESS,
    Result.ALREADY_STORED: SUCCESS,
    Result.DUPLICATE_KEPT: 0xB006,  # warning: Elements Discarded (all of them)
    Result.STAGED: SUCCESS,
}


# Query/Retrieve (PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.4).
PENDING = 0xFF00
CANCELLED = 0xFE00
IDENTIFIER_INVALID = 0xA900  # Identifier does not match SOP Class
UNABLE_TO_PROCESS = 0xC000
MOVE_DESTINATION_UNKNOWN = 0xA801  # also: destination unreachable or refusing
SUBOPERATIONS_FAILED = 0xB000  # warning: complete, one or more failures or warnings
UNABLE_TO_PERFORM_SUBOPERATIONS = 0xA702  # refused: e.g. the proxy could not fetch the study
# C-FIND through the caching proxy when an upstream could not be asked. PS3.4
# defines no C-FIND warning; 0xB000 is in the warning range DICOM tools show
# as such, and the Error Comment names the upstream and what went wrong.
LOCAL_ONLY = 0xB000


def store_failure(exc: Exception) -> tuple[int, str]:
    """The (status, error comment) of a store that raised *exc*."""
    return _failure(exc, STORE_REFUSALS)


def _failure(exc: Exception, table: dict[type[errors.Refusal], int]) -> tuple[int, str]:
    """A refusal by its class in *table* (most specific first: e.g.
    SOPClassMismatch before RequestMismatch), with its comment; anything
    else is a bug, 0x0110."""
    if isinstance(exc, errors.Refusal):
        for cls in type(exc).__mro__:
            if cls in table:
                return table[cls], str(exc)
    return PROCESSING_FAILURE, f"internal error: {type(exc).__name__}"


def wrong_context(message: Message, served: Collection[str]) -> str:
    """Why *message* cannot be served on its presentation context ('' if it
    can): the context's abstract syntax must be one the command serves, and
    the SOP class the command names must be that abstract syntax. Answered
    with SOP_CLASS_NOT_SUPPORTED, never by storing or aborting."""
    abstract = str(message.context.abstract_syntax)
    affected = message.command.text(command.AFFECTED_SOP_CLASS)
    if abstract not in served:
        return (
            f"command 0x{message.command.field:04X} on presentation context {message.context.context_id}, "
            f"which was accepted for {UID(abstract).name}"
        )
    if affected and affected != abstract:
        return f"Affected SOP Class UID {affected} differs from the context's abstract syntax {abstract}"
    return ""


# Modality Performed Procedure Step N-CREATE / N-SET (PS3.4 F.7, PS3.7 C).
INVALID_ATTRIBUTE_VALUE = 0x0106
MPPS_REFUSALS: dict[type[errors.Refusal], int] = {
    errors.MppsInvalidValue: INVALID_ATTRIBUTE_VALUE,
    errors.MppsNotSettable: INVALID_ATTRIBUTE_VALUE,  # an attribute fixed at creation; the comment names it
    errors.MppsDuplicate: 0x0111,  # Duplicate SOP Instance
    errors.MppsNoSuchInstance: 0x0112,  # No Such SOP Instance
    errors.MppsFinal: PROCESSING_FAILURE,  # with Error ID A710 (PS3.4 F.7.2.2.2)
    errors.IdentityConflict: PROCESSING_FAILURE,
    errors.StorageFailure: 0xA700,  # Out of resources
}
MPPS_FINAL_ERROR_ID = 0xA710  # Error ID (0000,0903) is US


def mpps_failure(exc: Exception) -> tuple[int, str]:
    """The (status, error comment) of an N-CREATE/N-SET that raised *exc*."""
    return _failure(exc, MPPS_REFUSALS)
