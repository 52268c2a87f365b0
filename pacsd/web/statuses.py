"""Domain errors mapped to HTTP statuses and JSON bodies, in one table.

Every error answer is a JSON object with at least ``error`` (what is
wrong); a refused worklist item also names the ``attribute`` and its
position in the request (``item``).
"""

from __future__ import annotations

from typing import Any

from pacsd.domain import errors

OK = 200
ACCEPTED = 202
NOT_MODIFIED = 304
BAD_REQUEST = 400
NOT_FOUND = 404
NOT_ACCEPTABLE = 406
CONFLICT = 409
PAYLOAD_TOO_LARGE = 413
UNSUPPORTED_MEDIA_TYPE = 415
INTERNAL_ERROR = 500
UNAVAILABLE = 503

REFUSALS: dict[type[errors.Refusal], int] = {
    errors.InvalidWorklistItem: BAD_REQUEST,
    errors.WorklistConflict: CONFLICT,
    errors.WorklistNotFound: NOT_FOUND,
    errors.InvalidQuery: BAD_REQUEST,
    errors.InvalidObject: BAD_REQUEST,
    errors.InvalidUID: BAD_REQUEST,
    errors.IdentityConflict: CONFLICT,
    errors.OverBudget: PAYLOAD_TOO_LARGE,
    errors.StorageFailure: UNAVAILABLE,  # disk full, I/O error: the client may retry later
    errors.NoSuchFrame: BAD_REQUEST,  # WADO-RS frame 0 or past the last: the request is wrong
    errors.NoSuchAttribute: NOT_FOUND,  # WADO-RS bulk data path naming no binary value
    errors.NoSuchResource: NOT_FOUND,  # DELETE of a study, series or instance not stored here
}

# A stored instance WADO-RS cannot send as asked.
NOT_SENDABLE: dict[type[errors.NotSendable], int] = {
    errors.NoUsableSyntax: NOT_ACCEPTABLE,
    errors.ConversionFailed: NOT_ACCEPTABLE,  # the stored syntax (transfer-syntax=*) still works
    errors.Unreadable: INTERNAL_ERROR,  # the archive lost or damaged the file: fsck names it
}


# STOW-RS Failure Reason (0008,1197) of an instance, by refusal: the codes
# C-STORE answers (pacsd.wire.statuses.STORE_REFUSALS, which this module may
# not import; tests/unit/test_stow_statuses.py keeps the two equal), so an
# object refused over DIMSE and over DICOMweb is refused with one code.
# PS3.18 I.2.2 ranges: A7xx out of resources, A9xx data set does not match
# its SOP class, Cxxx cannot understand.
STOW_FAILURES: dict[type[errors.Refusal], int] = {
    errors.InvalidObject: 0xC000,  # also: a part that is not a Part 10 file, or not application/dicom
    errors.InvalidUID: 0xC001,
    errors.RequestMismatch: 0xC002,  # the dataset's SOP Instance UID differs from its file meta's
    errors.OverBudget: 0xC003,
    errors.SOPClassMismatch: 0xA900,
    # The instance is of another study than the one the request names
    # (/studies/{study}); the code Azure's DICOM service gives it.
    errors.StudyMismatch: 0xA901,
    errors.IdentityConflict: 0xC010,
    errors.StorageFailure: 0xA700,
}
STOW_PROCESSING_FAILURE = 0x0110  # a bug: logged with its traceback
# A different object under a stored SOP Instance UID: the stored one is kept
# and this one discarded, so it is a failed instance; C-STORE's code for it.
STOW_DUPLICATE_KEPT = 0xB006
# Warning Reason (0008,1196), pacsd's own (PS3.18 I.2.1 allows them): stored
# as sent, but values the index cannot hold (named in the ErrorComment) were
# left out of the index, so searches on them do not find the instance.
STOW_INDEX_VALUES_IGNORED = 0xB010


def stow_failure(exc: Exception) -> tuple[int, str]:
    """The (Failure Reason, comment) of an instance whose store raised *exc*."""
    if isinstance(exc, errors.Refusal):
        for cls in type(exc).__mro__:
            if cls in STOW_FAILURES:
                return STOW_FAILURES[cls], str(exc)
        return STOW_PROCESSING_FAILURE, str(exc)
    return STOW_PROCESSING_FAILURE, f"internal error: {type(exc).__name__}"


class HttpError(Exception):
    """A request the adapter itself refuses before any Archive call
    (malformed JSON, wrong content type, unknown parameter...)."""

    def __init__(self, status: int, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.fields = fields

    def body(self) -> dict[str, Any]:
        return {"error": str(self), **self.fields}


def refusal(exc: errors.Refusal) -> tuple[int, dict[str, Any]]:
    """The (status, body) of a refusal, by its class (most specific first);
    a refusal the table does not name is a 400."""
    status = next((REFUSALS[cls] for cls in type(exc).__mro__ if cls in REFUSALS), BAD_REQUEST)
    body: dict[str, Any] = {"error": str(exc)}
    if isinstance(exc, errors.InvalidWorklistItem):
        body["attribute"] = exc.attribute
        body["item"] = exc.index
    elif isinstance(exc, errors.OverBudget):
        body["budget"] = exc.budget
    return status, body


def not_sendable(exc: errors.NotSendable) -> tuple[int, dict[str, Any]]:
    status = next((NOT_SENDABLE[cls] for cls in type(exc).__mro__ if cls in NOT_SENDABLE), INTERNAL_ERROR)
    return status, {"error": str(exc)}


def internal(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """A bug: the client learns the exception's type, never its traceback."""
    return INTERNAL_ERROR, {"error": f"internal error: {type(exc).__name__}"}
