"""What the Query/Retrieve adapters share: SOP classes to information
models, reading the identifier, back-pressure, and sending stored files."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from pacsd import log, retrieve
from pacsd.dimse import statuses
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


def accepted_syntaxes(assoc: Association) -> dict[str, set[str]]:
    """SOP class -> transfer syntaxes we may send in on *assoc*."""
    accepted: dict[str, set[str]] = {}
    for cx in assoc.accepted_contexts:
        if cx.as_scu:
            accepted.setdefault(str(cx.abstract_syntax), set()).add(str(cx.transfer_syntax[0]))
    return accepted


class Sender:
    """Sends one retrieve's instances over a pynetdicom association.

    pynetdicom's C-MOVE/C-GET service classes drive the sub-operations and
    call ``send_c_store`` with each dataset the handler yields. We install
    this object as that association's ``send_c_store`` so that

    - an instance goes out as the bytes of its file (pynetdicom's path mode)
      whenever the peer accepted the syntax it is stored in: no decoding, no
      re-encoding; only otherwise is it decoded for pynetdicom to convert,
      and that is logged;
    - the Move Originator AE Title is the AE that sent the C-MOVE (PS3.7
      9.3.1.1), not our own title, which is what pynetdicom would put there.
    """

    def __init__(
        self, storage: Storage, stored: list[StoredInstance], originator: str | None, log_fields: dict[str, Any]
    ) -> None:
        self.storage = storage
        self.by_uid = {i.sop_uid: i for i in stored}
        self.originator = originator
        self.log_fields = log_fields
        self._log = log.get("pacsd.retrieve")

    def install(self, assoc: Association) -> Callable[[], None]:
        """Route *assoc*'s C-STOREs through us; returns the undo."""
        original = assoc.send_c_store
        accepted = accepted_syntaxes(assoc)

        def send_c_store(
            dataset: Any, msg_id: int = 1, priority: int = 2, originator_aet: Any = None, originator_id: Any = None
        ) -> Dataset:
            if originator_aet is not None and self.originator:
                originator_aet = self.originator
            instance = self.by_uid.get(str(dataset.get("SOPInstanceUID", "")))
            if instance is None:
                return original(dataset, msg_id, priority, originator_aet, originator_id)
            if instance.transfer_syntax in accepted.get(instance.sop_class_uid, set()):
                item: Dataset | Path = self.storage.absolute(instance.path)
            else:
                note = retrieve.syntax_note(instance, accepted)
                self._log.warning(
                    "retrieve_transfer_syntax", sop_instance_uid=instance.sop_uid, note=note, **self.log_fields
                )
                item = retrieve.load(self.storage, instance)
            return original(item, msg_id, priority, originator_aet, originator_id)

        assoc.send_c_store = send_c_store  # type: ignore[method-assign]
        return lambda: setattr(assoc, "send_c_store", original)

    def sub_operations(self, event: evt.Event, stored: list[StoredInstance]) -> Iterator[tuple[int, Dataset | None]]:
        """(status, dataset) pairs for pynetdicom, one per instance, stopping
        with Cancel when the peer sent C-CANCEL. Each dataset only names the
        instance; :meth:`install`'s ``send_c_store`` sends the stored file."""
        for n, instance in enumerate(stored):
            if event.is_cancelled:
                self._log.info("retrieve_cancelled", sent=n, remaining=len(stored) - n, **self.log_fields)
                yield statuses.CANCELLED, None
                return
            yield statuses.PENDING, retrieve.reference(instance)
