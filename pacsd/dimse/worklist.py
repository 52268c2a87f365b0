"""Modality Worklist C-FIND SCP (PS3.4 K): a modality asks for the
procedure steps scheduled for it. Matching, the own-items-only policy and
which items are answered are the Archive's; this adapter only drives the
C-FIND exchange."""

from __future__ import annotations

from enum import Enum

from pydicom.dataset import Dataset
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from pacsd.dimse import cfind
from pacsd.ports import Watch
from pacsd.services.archive import Archive
from pacsd.wire.acceptor import Association
from pacsd.wire.link import Link, Message


class WorklistModel(Enum):
    """The Modality Worklist Information Model (PS3.4 K.6): one flat level,
    none of Query/Retrieve's hierarchy, so not a Q/R InformationModel."""

    FIND = "worklist"


FIND = {ModalityWorklistInformationFind: WorklistModel.FIND}
SOP_CLASSES = [*FIND]


def serve_find(archive: Archive, link: Link, message: Message, association: Association) -> None:
    log_fields = association.log_fields()

    def search(identifier: Dataset, _model: WorklistModel, watch: Watch) -> cfind.Answer:
        return archive.worklist_find(identifier, watch, log_fields, association.calling_ae)

    cfind.serve(link, message, association, FIND, archive.limits, search, event="worklist_find")
