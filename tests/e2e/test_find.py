"""C-FIND against a running pacsd, mostly with DCMTK findscu.

One archive for the module: two synthetic patients with studies, series
and a Request Attributes Sequence, plus pydicom's character set files.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from pacsd.testing import synth
from tests.e2e.conftest import SCU, Server

# Files that each hold one patient's name in one character set.
CHARSET_FILES = [
    "chrFren.dcm", "chrGerm.dcm", "chrGreek.dcm", "chrRuss.dcm", "chrHbrw.dcm", "chrArab.dcm",
    "chrX1.dcm", "chrH31.dcm", "chrI2.dcm", "chrKoreanMulti.dcm",
]  # fmt: skip


BULK = 400


@dataclass
class Archive:
    server: Server
    a1: Dataset  # first object of each study/series, for their UIDs
    a1_mr: Dataset
    a2: Dataset
    b1: Dataset
    bulk: Dataset
    charsets: dict[str, Dataset]
    instances: int


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    server = Server(tmp_path_factory.mktemp("find")).start()
    try:
        doe = {"patient_id": "PA", "patient_name": "Doe^John", "PatientBirthDate": "19700101", "PatientSex": "M"}
        a1 = synth.series(3, **doe, StudyDate="20200115", StudyTime="101500", AccessionNumber="ACC-A1")
        a1_mr = synth.series(
            2, **doe, study_uid=a1[0].StudyInstanceUID, StudyDate="20200115", Modality="MR", SeriesNumber=2
        )
        request = Dataset()
        request.RequestedProcedureID, request.ScheduledProcedureStepID = "RP-77", "SPS-9"
        a2 = synth.series(
            2, **doe, StudyDate="20210301", StudyTime="170000", Modality="MR", RequestAttributesSequence=[request]
        )
        b1 = synth.series(
            1, patient_id="PB", issuer="HOSP", patient_name="Smith^Jane", StudyDate="20220610", Modality="US"
        )
        # Enough images that a C-CANCEL lands while responses are still pending.
        bulk = synth.series(BULK, patient_id="BULK", patient_name="Bulk^Images", pixel_bytes=16, StudyDate="19990101")
        scu = SCU(server)
        statuses = scu.store(*a1, *a1_mr, *a2, *b1, *bulk)
        charsets = {name: pydicom.dcmread(get_charset_files(name)[0]) for name in CHARSET_FILES}
        statuses += scu.store(*(Path(get_charset_files(name)[0]) for name in CHARSET_FILES))
        assert all(s.Status == 0 for s in statuses)
        yield Archive(server, a1[0], a1_mr[0], a2[0], b1[0], bulk[0], charsets, len(statuses))
    finally:  # also when setting up failed
        server.stop()


def values(responses: list[Dataset], keyword: str) -> list[str]:
    return sorted(str(r.get(keyword, "")) for r in responses)


def test_patient_level_patient_root_with_computed_counts(archive: Archive) -> None:
    responses, _ = archive.server.findscu(
        "-P", "QueryRetrieveLevel=PATIENT", "PatientName=doe*", "PatientID", "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances", "PatientBirthDate", "PatientComments",
    )  # fmt: skip
    [r] = responses
    assert (r.PatientID, str(r.PatientName), r.PatientBirthDate) == ("PA", "Doe^John", "19700101")
    assert (r.NumberOfPatientRelatedStudies, r.NumberOfPatientRelatedSeries) == (2, 3)
    assert r.NumberOfPatientRelatedInstances == 7
    assert r.QueryRetrieveLevel == "PATIENT" and r.RetrieveAETitle == "PACSD"
    assert "PatientComments" in r and not r.PatientComments  # unknown key: returned empty


def test_wildcard_question_mark_and_issuer(archive: Archive) -> None:
    responses, _ = archive.server.findscu(
        "-P", "QueryRetrieveLevel=PATIENT", "PatientID=P?", "IssuerOfPatientID", "PatientName"
    )
    assert values(responses, "PatientID") == ["PA", "PB"]
    assert values(responses, "IssuerOfPatientID") == ["", "HOSP"]


@pytest.mark.parametrize(
    "date, expected",
    [
        ("20200115", ["a1"]),
        ("20200101-20201231", ["a1"]),
        ("-20210301", ["a1", "a2"]),
        ("20210301-", ["a2", "b1"]),
        ("2021.03.01", ["a2"]),
    ],
)
def test_study_date_single_and_range(archive: Archive, date: str, expected: list[str]) -> None:
    responses, _ = archive.server.findscu(
        "-S", "QueryRetrieveLevel=STUDY", "PatientID=P*", f"StudyDate={date}", "StudyInstanceUID"
    )
    uids = {getattr(archive, name).StudyInstanceUID for name in expected}
    assert set(values(responses, "StudyInstanceUID")) == uids


def test_study_time_range_and_computed_study_attributes(archive: Archive) -> None:
    responses, _ = archive.server.findscu(
        "-S", "QueryRetrieveLevel=STUDY", "StudyTime=1000-1100", "StudyInstanceUID", "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "SOPClassesInStudy", "AccessionNumber",
    )  # fmt: skip
    [r] = responses
    assert r.StudyInstanceUID == archive.a1.StudyInstanceUID and r.AccessionNumber == "ACC-A1"
    assert sorted(r.ModalitiesInStudy) == ["CT", "MR"]
    assert (r.NumberOfStudyRelatedSeries, r.NumberOfStudyRelatedInstances) == (2, 5)
    assert r.SOPClassesInStudy == "1.2.840.10008.5.1.4.1.1.2"


def test_uid_list_and_modalities_in_study_matching(archive: Archive) -> None:
    a1, b1 = archive.a1.StudyInstanceUID, archive.b1.StudyInstanceUID
    responses, _ = archive.server.findscu("-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={a1}\\{b1}")
    assert values(responses, "StudyInstanceUID") == sorted([a1, b1])
    responses, _ = archive.server.findscu(
        "-S", "QueryRetrieveLevel=STUDY", "ModalitiesInStudy=MR", "PatientID=P*", "StudyInstanceUID"
    )
    assert values(responses, "StudyInstanceUID") == sorted([a1, archive.a2.StudyInstanceUID])


def test_series_level_both_models(archive: Archive) -> None:
    study = archive.a1.StudyInstanceUID
    keys = ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={study}", "SeriesInstanceUID", "Modality",
            "SeriesNumber", "NumberOfSeriesRelatedInstances"]  # fmt: skip
    for model, extra in (("-S", []), ("-P", ["PatientID=PA"])):
        responses, _ = archive.server.findscu(model, *keys, *extra)
        assert [(r.Modality, r.SeriesNumber, r.NumberOfSeriesRelatedInstances) for r in responses] == [
            ("CT", 1, 3),
            ("MR", 2, 2),
        ]


def test_image_level_both_models(archive: Archive) -> None:
    a1 = archive.a1
    keys = ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={a1.StudyInstanceUID}",
            f"SeriesInstanceUID={a1.SeriesInstanceUID}", "SOPInstanceUID", "InstanceNumber", "SOPClassUID"]  # fmt: skip
    for model, extra in (("-S", []), ("-P", ["PatientID=PA"])):
        responses, _ = archive.server.findscu(model, *keys, *extra)
        assert [r.InstanceNumber for r in responses] == [1, 2, 3]
        assert a1.SOPInstanceUID in values(responses, "SOPInstanceUID")
    responses, _ = archive.server.findscu("-S", *keys[:3], "InstanceNumber=2", "SOPInstanceUID")
    assert len(responses) == 1


def test_sequence_matching_on_request_attributes(archive: Archive) -> None:
    responses, _ = archive.server.findscu(
        "-S", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={archive.a2.StudyInstanceUID}",
        "RequestAttributesSequence[0].RequestedProcedureID=RP-77",
        "RequestAttributesSequence[0].ScheduledProcedureStepID", "SeriesInstanceUID",
    )  # fmt: skip
    [r] = responses
    assert r.SeriesInstanceUID == archive.a2.SeriesInstanceUID
    [item] = r.RequestAttributesSequence
    assert (item.RequestedProcedureID, item.ScheduledProcedureStepID) == ("RP-77", "SPS-9")
    responses, _ = archive.server.findscu(
        "-S", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={archive.a2.StudyInstanceUID}",
        "RequestAttributesSequence[0].RequestedProcedureID=RP-78",
    )  # fmt: skip
    assert responses == []


@pytest.mark.parametrize(
    "model, keys, words",
    [
        ("-S", ["QueryRetrieveLevel=SERIES", "SeriesInstanceUID"], ["StudyInstanceUID is required"]),
        ("-S", ["QueryRetrieveLevel=SERIES", "StudyInstanceUID=1.2*"], ["StudyInstanceUID", "without wildcards"]),
        ("-P", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"], ["PatientID is required"]),
        ("-S", ["QueryRetrieveLevel=PATIENT", "PatientID"], ["PATIENT", "study root"]),
        ("-S", ["QueryRetrieveLevel=FRAME"], ["unknown Query/Retrieve Level"]),
        ("-S", ["QueryRetrieveLevel=STUDY", "StudyDate=yesterday"], ["not a DICOM date"]),
        ("-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID=1.2.*"], ["wildcards are not allowed"]),
    ],
)
def test_bad_identifiers_get_a_failure_with_a_comment(
    archive: Archive, model: str, keys: list[str], words: list[str]
) -> None:
    responses, output = archive.server.findscu(model, *keys, extra=("-d",))
    assert responses == []
    assert "0xa900: Error: Data Set does not match SOP Class" in output
    for word in words:
        assert word in output
    archive.server.echoscu()


def test_person_name_is_case_insensitive_and_folded(archive: Archive) -> None:
    for name in ("DOE^JOHN", "doe^john", "Doe^John^^", "d?e^*"):
        responses, _ = archive.server.findscu("-P", "QueryRetrieveLevel=PATIENT", f"PatientName={name}", "PatientID")
        assert values(responses, "PatientID") == ["PA"], name


def pn_query(archive: Archive, charset: str | list[str], name: str) -> list[Dataset]:
    """A C-FIND in *charset* (pynetdicom encodes the name in it)."""
    ae = AE(ae_title="CHARSETSCU")
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    query = Dataset()
    query.SpecificCharacterSet = charset
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientName = name
    query.PatientID = ""
    assoc = ae.associate("127.0.0.1", archive.server.port, ae_title="PACSD")
    try:
        results = [ident for status, ident in assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind)]
    finally:
        assoc.release()
    return [r for r in results if r is not None]


@pytest.mark.parametrize("name", CHARSET_FILES)
def test_names_are_found_in_their_own_character_set(archive: Archive, name: str) -> None:
    stored = archive.charsets[name]
    full = str(stored.PatientName)
    responses = pn_query(archive, stored.SpecificCharacterSet, full)
    assert [r.PatientID for r in responses] == [stored.PatientID]
    [r] = responses
    assert str(r.PatientName) == full
    declared = r.SpecificCharacterSet
    assert declared in (stored.SpecificCharacterSet, "ISO_IR 192"), declared


def test_ideographic_group_alone_finds_the_patient(archive: Archive) -> None:
    stored = archive.charsets["chrH31.dcm"]
    responses = pn_query(archive, ["", "ISO 2022 IR 87"], "山田^太郎")
    assert [r.PatientID for r in responses] == [stored.PatientID]
    assert str(responses[0].PatientName) == str(stored.PatientName)


def test_latin1_name_with_findscu(archive: Archive) -> None:
    responses, _ = archive.server.findscu(
        "-P", "SpecificCharacterSet=ISO_IR 100", "QueryRetrieveLevel=PATIENT",
        "PatientName=buc^j\xe9r\xf4me".encode("latin-1"), "PatientID",
    )  # fmt: skip
    [r] = responses
    assert r.PatientID == "SCSFREN"
    assert r.SpecificCharacterSet == "ISO_IR 100" and str(r.PatientName) == "Buc^Jérôme"


def test_utf8_answer_when_the_query_charset_cannot_carry_the_name(archive: Archive) -> None:
    responses = pn_query(archive, "ISO_IR 100", "*")  # every patient, in Latin-1
    russian = [r for r in responses if r.PatientID == "SCSRUSS"]
    assert russian and russian[0].SpecificCharacterSet == "ISO_IR 192"
    assert str(russian[0].PatientName) == str(archive.charsets["chrRuss.dcm"].PatientName)


def test_cancel_stops_pending_responses(archive: Archive) -> None:
    bulk = archive.bulk
    responses, output = archive.server.findscu(
        "-S", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={bulk.StudyInstanceUID}",
        f"SeriesInstanceUID={bulk.SeriesInstanceUID}", "SOPInstanceUID", extra=("--cancel", "2"),
    )  # fmt: skip
    assert 2 <= len(responses) < BULK
    assert "Cancel" in output
    assert archive.server.events("find_cancelled")


def test_study_root_query_with_pynetdicom_reads_statuses(archive: Archive) -> None:
    ae = AE(ae_title="PYFIND")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = "PB"
    query.StudyInstanceUID = ""
    assoc = ae.associate("127.0.0.1", archive.server.port, ae_title="PACSD")
    try:
        results = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    finally:
        assoc.release()
    assert [s.Status for s, _ in results] == [0xFF00, 0x0000]
    assert results[0][1].StudyInstanceUID == archive.b1.StudyInstanceUID
