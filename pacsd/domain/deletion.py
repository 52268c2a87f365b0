"""What a delete names, and what it removed."""

from __future__ import annotations

from dataclasses import dataclass, field

from pacsd.domain.outcomes import StoredInstance


@dataclass(frozen=True)
class DeleteTarget:
    """A study, a series of it, or an instance of that series (UIDs
    validated by the caller; '' for the levels below the one named)."""

    study_uid: str
    series_uid: str = ""
    sop_uid: str = ""

    @property
    def level(self) -> str:
        return "instance" if self.sop_uid else "series" if self.series_uid else "study"

    def __str__(self) -> str:
        if self.sop_uid:
            return f"instance {self.sop_uid} (series {self.series_uid}, study {self.study_uid})"
        if self.series_uid:
            return f"series {self.series_uid} (study {self.study_uid})"
        return f"study {self.study_uid}"


@dataclass(frozen=True)
class Deleted:
    """The rows one delete removed: the instances (their files go after the
    commit), the series and study left empty, and the patient if nothing
    else referred to it."""

    target: DeleteTarget
    patient_id: str
    issuer: str
    instances: list[StoredInstance] = field(default_factory=list)
    series: list[str] = field(default_factory=list)  # Series Instance UIDs removed
    study: bool = False
    patient: bool = False
