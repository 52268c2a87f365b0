"""What the Query/Retrieve adapters share: SOP classes to information
models, and reading the request identifier."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from pacsd import log, retrieve
from pacsd.errors import InvalidQuery
from pacsd.index.attributes import Model
from pacsd.index.search import StoredInstance
from pacsd.storage import Storage

FIND = {
    PatientRootQueryRetrieveInformationModelFind: Model.PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelFind: Model.STUDY_ROOT,
}
MOVE = {
    PatientRootQueryRetrieveInformationModelMove: Model.PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelMove: Model.STUDY_ROOT,
}
GET = {
    PatientRootQueryRetrieveInformationModelGet: Model.PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelGet: Model.STUDY_ROOT,
}
SOP_CLASSES = [*FIND, *MOVE, *GET]

# Query/Retrieve statuses (PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.4).
PENDING = 0xFF00
CANCELLED = 0xFE00
SUB_OPERATIONS_WARNING = 0xB000
IDENTIFIER_INVALID = 0xA900  # Identifier does not match SOP Class
UNABLE_TO_PROCESS = 0xC000
MOVE_DESTINATION_UNKNOWN = 0xA801


def identifier(event: evt.Event) -> Dataset:
    """The request identifier, decoded; a decoding failure is InvalidQuery."""
    try:
        ds = event.identifier
        # Decode every element now, so bad values fail here and not mid-query.
        for _ in ds:
            pass
    except Exception as exc:
        raise InvalidQuery(f"identifier cannot be decoded: {exc}") from None
    return ds


def drain(assoc: Association, limit: int = 8) -> None:
    """Wait until few of our PDUs are queued for sending.

    pynetdicom's DUL reads from the socket only when it has nothing to
    send, so a handler that outruns the network would never see a
    C-CANCEL, and would hold every response of a large query in memory.
    """
    while assoc.is_established and assoc.dul.to_provider_queue.qsize() > limit:
        time.sleep(0.0005)


def accepted_syntaxes(contexts: Iterable[PresentationContext], role: str) -> dict[str, set[str]]:
    """SOP class -> transfer syntaxes the peer accepted for us to send."""
    accepted: dict[str, set[str]] = {}
    for cx in contexts:
        if (role == "scu" and cx.as_scu) or (role == "scp" and cx.as_scp):
            accepted.setdefault(str(cx.abstract_syntax), set()).add(str(cx.transfer_syntax[0]))
    return accepted


def sub_operations(
    event: evt.Event,
    storage: Storage,
    stored: list[StoredInstance],
    accepted: Callable[[], dict[str, set[str]]],
    log_fields: dict[str, Any],
) -> Iterator[tuple[int, Dataset | None]]:
    """(status, dataset) pairs for pynetdicom to send, one per instance,
    stopping with Cancel when the peer sent C-CANCEL."""
    logger = log.get("pacsd.retrieve")
    for n, instance in enumerate(stored):
        if event.is_cancelled:
            logger.info("retrieve_cancelled", sent=n, remaining=len(stored) - n, **log_fields)
            yield CANCELLED, None
            return
        note = retrieve.syntax_note(instance, accepted())
        if note:
            logger.warning("retrieve_transfer_syntax", sop_instance_uid=instance.sop_uid, note=note, **log_fields)
        yield PENDING, retrieve.load(storage, instance)
