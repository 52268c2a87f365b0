"""Modality Worklist C-FIND SCP (PS3.4 K): a modality asks for the
procedure steps scheduled for it. Matching, the own-items-only policy and
which items are answered are the Archive's; this adapter only drives the
C-FIND exchange."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from pacsd.dimse import cfind
from pacsd.domain.errors import InvalidQuery
from pacsd.domain.query import has_wildcard, text_value
from pacsd.domain.worklist import SPS, valid_date, valid_time
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
        check_calendar(identifier)
        return archive.worklist_find(identifier, watch, log_fields, association.calling_ae)

    cfind.serve(link, message, association, FIND, archive.limits, search, event="worklist_find")


# Start date and time keys: their check, what they must be, the legacy
# separator the index's matching also accepts (ACR-NEMA YYYY.MM.DD, HH:MM).
_CALENDAR: dict[str, tuple[Callable[[str], bool], str, str]] = {
    "ScheduledProcedureStepStartDate": (valid_date, "date (YYYYMMDD)", "."),
    "ScheduledProcedureStepStartTime": (valid_time, "time (HHMMSS.FFFFFF)", ":"),
}


def check_calendar(identifier: Dataset) -> None:
    """InvalidQuery naming the key for a start date or time that is not a
    day or time of the calendar (19961301, 256000). A stopgap: the index's
    matching checks their digits only, and such a value would match nothing
    instead of being refused; remove once it checks the values itself."""
    steps = identifier.get(SPS)
    if not isinstance(steps, Sequence) or len(steps) != 1:
        return  # none to check, or refused by the Archive for having several
    for keyword, (valid, what, legacy) in _CALENDAR.items():
        value = text_value(steps[0].get(keyword)).strip()
        if not value or has_wildcard(value):
            continue
        for end in value.split("-", 1):
            end = end.strip().replace(legacy, "")
            if end and not valid(end):
                raise InvalidQuery(f"{SPS}[0].{keyword}: {value!r} is not a DICOM {what}")
