"""Modality Worklist C-FIND against a running pacsd: DCMTK ``findscu -W``
on items made from DCMTK's own example worklists (``pacsd worklist add``),
pynetdicom where a test needs exact statuses or a C-CANCEL.

One server for the module. Its config names the modality AA32 with
``worklist_own_items_only = true``; the other calling AE titles see every
item.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from pacsd.testing import peers
from tests.e2e import worklist_data
from tests.e2e.conftest import Server
from tests.e2e.worklist_data import Worklist

SPS = "ScheduledProcedureStepSequence[0]."
# Return keys of every findscu query: enough to tell the items apart.
RETURN_KEYS = (
    "PatientName", "PatientID", "StudyInstanceUID", "AccessionNumber", "RequestedProcedureID",
    f"{SPS}ScheduledProcedureStepID", f"{SPS}ScheduledStationAETitle", f"{SPS}Modality",
)  # fmt: skip
OWN_ITEMS_AE = "AA32"
OWN_ITEMS_TOML = peers.remote_toml("modality_aa32", 104, OWN_ITEMS_AE) + "worklist_own_items_only = true\n"
STARTED = "wklist10"  # the item set to STARTED before the server starts


@dataclass
class MWL:
    server: Server
    worklist: Worklist
    total: int  # items in the worklist

    def sps_id(self, name: str) -> str:
        return str(self.worklist.items[name].ScheduledProcedureStepSequence[0].ScheduledProcedureStepID)

    def names(self, responses: list[Dataset]) -> set[str]:
        """The example names (wklistN, latin1, or "bulk") of *responses*."""
        by_id = {self.sps_id(name): name for name in self.worklist.items}
        return {by_id.get(_sps_id(r), "bulk") for r in responses}

    def findscu(self, *keys: str | bytes, calling_ae: str = "MODALITY") -> list[Dataset]:
        """The answers of one ``findscu -W`` query with the RETURN_KEYS."""
        responses, output = self.server.findscu("-W", *RETURN_KEYS, *keys, calling_ae=calling_ae)
        assert "Final Find Response (Success)" in output, output[-2000:]
        return responses

    def find(self, *keys: str | bytes, calling_ae: str = "MODALITY") -> set[str]:
        return self.names(self.findscu(*keys, calling_ae=calling_ae))


def _sps_id(response: Dataset) -> str:
    steps = response.get("ScheduledProcedureStepSequence") or [Dataset()]
    return str(steps[0].get("ScheduledProcedureStepID", ""))


def pacsd_cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = peers.pacsd_command(*args[:2], "--config", str(server.config), *args[2:])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**peers.NODELAY_ENV})


@pytest.fixture(scope="module")
def mwl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MWL]:
    work = tmp_path_factory.mktemp("mwl")
    worklist = worklist_data.build(work / "items")
    server = Server(work, extra_toml=OWN_ITEMS_TOML)
    added = pacsd_cli(server, "worklist", "add", *map(str, worklist.files))
    assert added.returncode == 0, added.stdout[-2000:] + added.stderr[-2000:]
    started = worklist.items[STARTED]
    status = pacsd_cli(
        server, "worklist", "status", str(started.StudyInstanceUID),
        str(started.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID), "STARTED",
    )  # fmt: skip
    assert status.returncode == 0, status.stdout[-2000:] + status.stderr[-2000:]
    server.start()
    try:
        yield MWL(server, worklist, len(worklist.files))
    finally:
        server.stop()


def mwl_find(server: Server, identifier: Dataset, calling_ae: str = "PYMWL") -> list[tuple[int, Dataset | None, str]]:
    """(status, identifier, error comment) of every response to one
    Modality Worklist C-FIND sent by pynetdicom."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title)
    assert assoc.is_established
    try:
        return [
            (int(status.Status), found, str(status.get("ErrorComment", "")))
            for status, found in assoc.send_c_find(identifier, ModalityWorklistInformationFind)
        ]
    finally:
        assoc.release()


def step(**keys: str) -> Dataset:
    item = Dataset()
    for keyword, value in keys.items():
        setattr(item, keyword, value)
    return item


def query(*steps: Dataset, **keys: str) -> Dataset:
    identifier = Dataset()
    identifier.PatientName = ""
    identifier.PatientID = ""
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    identifier.ScheduledProcedureStepSequence = list(steps)
    return identifier


def still_serves(mwl: MWL) -> None:
    assert mwl.find(f"{SPS}ScheduledProcedureStepID={mwl.sps_id('wklist2')}") == {"wklist2"}


# -- the answer as a whole -------------------------------------------------------


def test_findscu_shows_the_whole_worklist(mwl: MWL) -> None:
    responses = mwl.findscu(f"{SPS}ScheduledStationAETitle")
    examples = {f"wklist{n}" for n in range(1, 10)} | {"latin1", "bulk"}  # wklist10 is STARTED: still answered
    assert mwl.names(responses) >= examples
    assert len(responses) == mwl.total
    wklist1 = next(r for r in responses if _sps_id(r) == mwl.sps_id("wklist1"))
    assert wklist1.PatientName == "VIVALDI^ANTONIO" and wklist1.PatientID == "AV35674"
    assert wklist1.AccessionNumber == "00000" and wklist1.RequestedProcedureID == "RP454G234"
    assert list(wklist1.ScheduledProcedureStepSequence[0].ScheduledStationAETitle) == ["AA32", "AA33"]


@pytest.mark.parametrize(
    "sequence",
    [
        pytest.param([Dataset()], id="one empty item"),
        pytest.param([step(Modality="", ScheduledStationAETitle="", ScheduledProcedureStepStartDate="")],
                     id="all keys empty"),
        pytest.param([], id="empty sequence"),
    ],
)  # fmt: skip
def test_an_empty_step_is_universal(mwl: MWL, sequence: list[Dataset]) -> None:
    answers = mwl_find(mwl.server, query(*sequence))
    assert [s for s, _, _ in answers[-1:]] == [0x0000]
    assert len(answers) - 1 == mwl.total
    assert all(s == 0xFF00 for s, _, _ in answers[:-1])


def test_requested_keys_an_item_lacks_come_back_empty(mwl: MWL) -> None:
    identifier = query(step(ScheduledProcedureStepID=mwl.sps_id("wklist4"), ScheduledProtocolCodeSequence=[]),
                       PatientWeight="", AdmittingDiagnosesDescription="", PatientBirthDate="")  # fmt: skip
    answers = mwl_find(mwl.server, identifier)
    assert [s for s, _, _ in answers] == [0xFF00, 0x0000]
    found = answers[0][1]
    assert found is not None
    assert "PatientWeight" in found and not found.PatientWeight
    assert "AdmittingDiagnosesDescription" in found and not found.AdmittingDiagnosesDescription
    assert found.PatientBirthDate == "17320331"  # the item has it
    answered_step = found.ScheduledProcedureStepSequence[0]
    assert "ScheduledProtocolCodeSequence" in answered_step and not answered_step.ScheduledProtocolCodeSequence
    assert answered_step.ScheduledProcedureStepID == mwl.sps_id("wklist4")


# -- matching keys ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (["PatientName=VIVALDI^ANTONIO"], {"wklist1", "wklist2", "wklist3"}),
        (["PatientName=vivaldi*"], {"wklist1", "wklist2", "wklist3"}),  # case-insensitive, wildcard
        (["PatientName=?aydn^franz*"], {"wklist4", "wklist5", "wklist6"}),
        (["PatientName=*AMADEUS"], {"wklist9", "wklist10"}),
        (["PatientID=HF"], {"wklist4", "wklist5", "wklist6"}),
        ([f"IssuerOfPatientID={worklist_data.ISSUER}"], {"wklist7", "wklist8"}),
        (["AccessionNumber=00004"], {"wklist4"}),
        (["RequestedProcedureID=RP472"], {"wklist8"}),
        ([f"{SPS}Modality=CT"], {"wklist2", "wklist6", "wklist8", "wklist9"}),
        ([f"{SPS}Modality=NM"], {"wklist7"}),
        ([f"{SPS}ScheduledStationAETitle=AA33"], {"wklist1"}),  # the second of AA32\AA33
        ([f"{SPS}ScheduledStationAETitle=AA32"], {"wklist1", "wklist4"}),
        ([f"{SPS}ScheduledStationAETitle=NN77"], {"wklist3", "wklist8"}),
        ([f"{SPS}ScheduledPerformingPhysicianName=ROSS"], {"wklist2", "wklist6", "wklist8"}),
        ([f"{SPS}ScheduledPerformingPhysicianName=JOHN*"], {"wklist1", "wklist7", "wklist9"}),
        ([f"{SPS}ScheduledProcedureStepID=SPD4548"], {"wklist10"}),
        # Several keys: all must match.
        (["PatientID=AV35674", f"{SPS}Modality=CR"], {"wklist3"}),
        ([f"{SPS}ScheduledStationAETitle=AB45", f"{SPS}Modality=CR"], {"wklist5"}),
    ],
)  # fmt: skip
def test_matching_keys(mwl: MWL, keys: list[str], expected: set[str]) -> None:
    assert mwl.find(*keys) == expected


def test_study_instance_uid_list(mwl: MWL) -> None:
    uids = [str(mwl.worklist.items[name].StudyInstanceUID) for name in ("wklist2", "wklist7")]
    assert mwl.find("StudyInstanceUID=" + "\\".join(uids)) == {"wklist2", "wklist7"}
    assert mwl.find(f"StudyInstanceUID={uids[0]}") == {"wklist2"}


DATE = f"{SPS}ScheduledProcedureStepStartDate"
TIME = f"{SPS}ScheduledProcedureStepStartTime"


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ([f"{DATE}=19960406"], {"wklist2"}),
        ([f"{DATE}=19960101-19960430"], {"wklist2", "wklist3", "wklist4", "wklist8"}),
        ([f"{DATE}=-19931231"], {"wklist6", "wklist9"}),
        ([f"{DATE}=19960501-"], {"wklist7", "wklist10", "latin1", "bulk"}),
        ([f"{DATE}=19960406", f"{TIME}=160700"], {"wklist2"}),
        ([f"{DATE}=19960406", f"{TIME}=1600-1700"], {"wklist2"}),
        ([f"{DATE}=19960406", f"{TIME}=1700-"], set()),
        ([f"{DATE}=19951015", f"{TIME}=-0900"], {"wklist1"}),
        # Date and time ranges combine into one from-to range (PS3.4 C.2.2.2.5):
        # 19960123 13:55:58 is inside 19960103 16:00 - 19960406 17:00 ...
        ([f"{DATE}=19960103-19960406", f"{TIME}=160000-170000"], {"wklist2", "wklist3", "wklist4"}),
        # ... and 19960103 16:57:09 and 19960406 16:07:00 are outside 19960103 17:00 - 19960406 16:00.
        ([f"{DATE}=19960103-19960406", f"{TIME}=170000-160000"], {"wklist3"}),
    ],
)  # fmt: skip
def test_start_date_and_time(mwl: MWL, keys: list[str], expected: set[str]) -> None:
    assert mwl.find(*keys) == expected


def test_procedure_step_status(mwl: MWL) -> None:
    started = mwl.findscu(f"{SPS}ScheduledProcedureStepStatus=STARTED")
    assert mwl.names(started) == {STARTED}
    assert started[0].ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == "STARTED"
    scheduled = mwl.find(f"{SPS}ScheduledProcedureStepStatus=SCHEDULED", f"{SPS}Modality=MR")
    assert scheduled == {"wklist1"}  # wklist10, the other MR, is STARTED


# -- character sets ----------------------------------------------------------------


def test_answer_in_the_query_character_set(mwl: MWL) -> None:
    name = worklist_data.LATIN1_NAME.split("^")[0]
    responses = mwl.findscu("SpecificCharacterSet=ISO_IR 100", f"PatientName={name}*".encode("latin-1"))
    assert mwl.names(responses) == {"latin1"}
    assert responses[0].SpecificCharacterSet == "ISO_IR 100"
    assert responses[0].PatientName == worklist_data.LATIN1_NAME


def test_answer_declares_utf8_when_the_query_named_no_character_set(mwl: MWL) -> None:
    responses = mwl.findscu(f"PatientID={worklist_data.LATIN1_ID}")
    assert mwl.names(responses) == {"latin1"}
    assert responses[0].SpecificCharacterSet == "ISO_IR 192"
    assert responses[0].PatientName == worklist_data.LATIN1_NAME


# -- refusals: 0xA900 with a comment, and the server keeps serving -------------------


def test_two_step_items_are_refused(mwl: MWL) -> None:
    answers = mwl_find(mwl.server, query(step(Modality="CT"), step(Modality="MR")))
    assert len(answers) == 1
    status, _, comment = answers[0]
    assert status == 0xA900
    assert "ScheduledProcedureStepSequence" in comment or "Scheduled Procedure Step" in comment
    assert mwl.server.events("worklist_find_refused")
    still_serves(mwl)


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("ScheduledProcedureStepStartDate", "19961301"),
        ("ScheduledProcedureStepStartDate", "1996-04-06"),
        ("ScheduledProcedureStepStartDate", "19960406-1996"),
        ("ScheduledProcedureStepStartTime", "256000"),
        ("ScheduledProcedureStepStartTime", "0800-1960"),
        ("ScheduledProcedureStepStartTime", "12h00"),
    ],
)
def test_a_bad_date_or_time_is_refused_naming_the_key(mwl: MWL, keyword: str, value: str) -> None:
    answers = mwl_find(mwl.server, query(step(**{keyword: value})))
    assert len(answers) == 1
    status, _, comment = answers[0]
    assert status == 0xA900
    assert keyword in comment or keyword.replace("StartDate", " Start Date") in comment, comment
    still_serves(mwl)


def test_a_worklist_query_on_a_qr_context_is_refused(mwl: MWL) -> None:
    """The worklist SOP class names its own context; a worklist identifier on
    a Study Root context is a Q/R query without a level, not a worklist one."""
    responses, output = mwl.server.findscu("-S", f"{SPS}Modality=CT")
    assert not responses
    assert "DataSetDoesNotMatchSOPClass" in output  # DCMTK's name of 0xA900
    still_serves(mwl)


# -- C-CANCEL ----------------------------------------------------------------------------


def test_cancel_stops_pending_responses(mwl: MWL) -> None:
    ae = AE(ae_title="PYMWL")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", mwl.server.port, ae_title=mwl.server.ae_title)
    assert assoc.is_established
    statuses = []
    try:
        context_id = assoc.accepted_contexts[0].context_id
        identifier = query(step(ScheduledStationAETitle=worklist_data.BULK_STATION))
        for status, _ in assoc.send_c_find(identifier, ModalityWorklistInformationFind, msg_id=7):
            statuses.append(int(status.Status))
            if len(statuses) == 1:
                assoc.send_c_cancel(7, context_id)
    finally:
        assoc.release()
    assert statuses[-1] == 0xFE00
    assert 1 <= statuses.count(0xFF00) < worklist_data.BULK
    assert mwl.server.events("worklist_find_cancelled")
    still_serves(mwl)


# -- own items only ------------------------------------------------------------------------


def test_a_modality_with_own_items_only_sees_its_own_items(mwl: MWL) -> None:
    assert mwl.find(calling_ae=OWN_ITEMS_AE) == {"wklist1", "wklist4"}
    # Naming a station is asking for that station's items, policy or not.
    assert mwl.find(f"{SPS}ScheduledStationAETitle=AB45", calling_ae=OWN_ITEMS_AE) == {"wklist2", "wklist5"}
    # Other modalities are not restricted.
    assert len(mwl.findscu(calling_ae="AA33")) == mwl.total


def test_worklist_find_is_logged(mwl: MWL) -> None:
    mwl.find(f"{SPS}ScheduledProcedureStepID={mwl.sps_id('wklist6')}", calling_ae="LOGGED")
    events = [e for e in mwl.server.events("worklist_find") if e.get("calling_ae") == "LOGGED"]
    assert events and events[-1]["matches"] == 1 and events[-1]["model"] == "worklist"
