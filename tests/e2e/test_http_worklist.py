"""The RIS worklist API over real HTTP (httpx, curl) against a real
`pacsd serve` with `[http] port` set."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.dataset import Dataset

from pacsd.testing import peers
from pacsd.testing.peers import free_port, pacsd_command
from tests.e2e.conftest import Server

MWL = "/dicomweb/mwlitems"
DICOM_JSON = {"Content-Type": "application/dicom+json"}


def item(
    patient_id: str | None = "P1",
    *,
    name: str = "Doe^Jane",
    issuer: str = "HOSP",
    modality: str | None = "MR",
    stations: tuple[str, ...] = ("MR1",),
    date: str | None = "20240115",
    time: str = "090000",
    accession: str = "ACC1",
    description: str = "MR head",
    sps: bool = True,
    **top: Any,
) -> dict[str, Any]:
    """A worklist item as DICOM JSON; None leaves an attribute out."""
    ds = Dataset()
    ds.PatientName = name
    if patient_id is not None:
        ds.PatientID = patient_id
        ds.IssuerOfPatientID = issuer
    ds.PatientBirthDate = "19800101"
    ds.PatientSex = "F"
    ds.AccessionNumber = accession
    ds.RequestedProcedureDescription = description
    for keyword, value in top.items():
        setattr(ds, keyword, value)
    if sps:
        step = Dataset()
        if modality is not None:
            step.Modality = modality
        step.ScheduledStationAETitle = list(stations) if len(stations) > 1 else stations[0]
        if date is not None:
            step.ScheduledProcedureStepStartDate = date
        step.ScheduledProcedureStepStartTime = time
        step.ScheduledProcedureStepDescription = description
        ds.ScheduledProcedureStepSequence = [step]
    return ds.to_json_dict()  # type: ignore[no-any-return]


def value(obj: dict[str, Any], tag: str) -> Any:
    values = obj.get(tag, {}).get("Value", [None])
    return values[0]


def step(obj: dict[str, Any]) -> dict[str, Any]:
    return value(obj, "00400100")  # type: ignore[no-any-return]


def key(obj: dict[str, Any]) -> tuple[str, str]:
    """(StudyInstanceUID, ScheduledProcedureStepID) of a stored item."""
    return value(obj, "0020000D"), value(step(obj), "00400009")


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("http"), extra_toml=f"[http]\nport = {free_port()}\n").start()
    yield server
    server.stop()


def client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{http_port(server)}", timeout=60)


def http_port(server: Server) -> int:
    return int(server.config.read_text().split("[http]\nport = ")[1].split()[0])


@pytest.fixture
def web(http_server: Server) -> Iterator[httpx.Client]:
    with client(http_server) as c:
        yield c


def post(web: httpx.Client, body: Any) -> httpx.Response:
    return web.post(MWL, content=json.dumps(body), headers=DICOM_JSON)


def search(web: httpx.Client, **params: str) -> list[dict[str, Any]]:
    response = web.get(MWL, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    found: list[dict[str, Any]] = response.json()
    return found


def test_create_one_readd_identical_and_conflict(web: httpx.Client) -> None:
    response = post(web, item("ONE-1", accession="A-ONE"))
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    [stored] = response.json()
    study_uid, sps_id = key(stored)
    assert study_uid.startswith("2.25.") or "." in study_uid  # generated
    assert sps_id and value(stored, "00401001")  # SPS ID and Requested Procedure ID generated
    assert value(step(stored), "00400020") == "SCHEDULED"
    assert value(stored, "00100020") == "ONE-1"

    again = post(web, item("ONE-1", accession="A-ONE"))  # a RIS retrying
    assert again.status_code == 200, again.text
    assert [key(x) for x in again.json()] == [(study_uid, sps_id)]
    assert [key(x) for x in search(web, PatientID="ONE-1")] == [(study_uid, sps_id)]

    # The same Study Instance UID and SPS ID with other content: refused, nothing changed.
    other = item("ONE-1", accession="A-ONE", modality="CT", StudyInstanceUID=study_uid)
    other["00400100"]["Value"][0]["00400009"] = {"vr": "SH", "Value": [sps_id]}
    conflict = post(web, other)
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["error"]
    [kept] = search(web, PatientID="ONE-1")
    assert value(step(kept), "00080060") == "MR"


def test_create_an_array_and_search_with_filters(web: httpx.Client) -> None:
    items = [
        item("ARR-1", modality="MR", stations=("MR1",), date="20240110", accession="ARR-A"),
        item("ARR-1", modality="CT", stations=("CT1",), date="20240120", accession="ARR-B"),
        item("ARR-2", modality="MR", stations=("MR2", "MR1"), date="20240205", accession="ARR-C"),
        item("ARR-3", modality="US", stations=("US1",), date="20240131", accession="ARR-D"),
    ]
    response = post(web, items)
    assert response.status_code == 201, response.text
    stored = response.json()
    assert [value(x, "00080050") for x in stored] == ["ARR-A", "ARR-B", "ARR-C", "ARR-D"]
    assert len({key(x) for x in stored}) == 4

    def accessions(**params: str) -> list[str]:
        return sorted(value(x, "00080050") for x in search(web, **params))

    assert accessions(PatientID="ARR-1") == ["ARR-A", "ARR-B"]
    assert accessions(**{"00100020": "ARR-1"}) == ["ARR-A", "ARR-B"]  # by tag
    assert accessions(PatientID="ARR-1", Modality="CT") == ["ARR-B"]
    assert accessions(AccessionNumber="ARR-*", **{"ScheduledProcedureStepSequence.Modality": "MR"}) == [
        "ARR-A",
        "ARR-C",
    ]
    # A station listed second on an item still matches it.
    assert accessions(AccessionNumber="ARR-*", ScheduledStationAETitle="MR1") == ["ARR-A", "ARR-C"]
    assert accessions(AccessionNumber="ARR-*", ScheduledProcedureStepStartDate="20240115-20240131") == [
        "ARR-B",
        "ARR-D",
    ]
    assert accessions(PatientID="ARR-3", Modality="MR") == []  # nothing matches: an empty array
    assert accessions(AccessionNumber="ARR-*", limit="2", offset="1") and len(accessions(AccessionNumber="ARR-*")) == 4
    assert len(search(web, AccessionNumber="ARR-*", limit="3")) == 3


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"NoSuchKeyword": "x"}, "NoSuchKeyword"),
        ({"99990010": "x"}, "99990010"),
        ({"includedone": "maybe"}, "includedone"),
        ({"limit": "-1"}, "limit"),
        ({"ScheduledProcedureStepSequence": "x"}, "ScheduledProcedureStepSequence"),
        ({"ScheduledProcedureStepStartDate": "2024-01-01"}, "ScheduledProcedureStepStartDate"),
    ],
)
def test_a_bad_search_parameter_is_named(web: httpx.Client, params: dict[str, str], named: str) -> None:
    response = web.get(MWL, params=params)
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]


def test_delete_then_get(web: httpx.Client) -> None:
    created = post(web, [item("DEL-1", accession="DEL-A"), item("DEL-1", accession="DEL-B", modality="CT")])
    assert created.status_code == 201, created.text
    first, second = (key(x) for x in created.json())
    response = web.delete(f"{MWL}/{first[0]}/{first[1]}")
    assert response.status_code == 204, response.text
    assert [key(x) for x in search(web, PatientID="DEL-1")] == [second]
    gone = web.delete(f"{MWL}/{first[0]}/{first[1]}")
    assert gone.status_code == 404
    assert first[0] in gone.json()["error"]


def test_done_items_only_with_includedone(web: httpx.Client, http_server: Server) -> None:
    """An item the CLI marks COMPLETED drops out of the default answer, as
    it does for modalities; includedone=true shows it."""
    created = post(web, item("DONE-1", accession="DONE-A"))
    assert created.status_code == 201, created.text
    study_uid, sps_id = key(created.json()[0])
    cli = pacsd_command("worklist", "status", "--config", str(http_server.config), study_uid, sps_id, "COMPLETED")
    subprocess.run(cli, capture_output=True, text=True, timeout=60, check=True)
    assert search(web, PatientID="DONE-1") == []
    [done] = search(web, PatientID="DONE-1", includedone="true")
    assert value(step(done), "00400020") == "COMPLETED"


def test_the_cli_lists_what_http_created(web: httpx.Client, http_server: Server) -> None:
    created = post(web, item("CLI-1", accession="CLI-A"))
    assert created.status_code == 201, created.text
    cli = pacsd_command("worklist", "list", "--json", "--patient-id", "CLI-1", "--config", str(http_server.config))
    listed = json.loads(subprocess.run(cli, capture_output=True, text=True, timeout=60, check=True).stdout)
    assert len(listed) == 1 and "CLI-A" in json.dumps(listed)


# -- bad items: refused naming the problem, nothing created, the server serves on


def everything(web: httpx.Client) -> list[tuple[str, str]]:
    return sorted(key(x) for x in search(web, includedone="true"))


def without(obj: dict[str, Any], tag: str, in_step: bool = False) -> dict[str, Any]:
    (step(obj) if in_step else obj).pop(tag)
    return obj


BAD_ITEMS: list[tuple[str, Any, str | None, int, str]] = [
    # (case, body (a str is sent as it is), content type, status, what the answer names)
    ("malformed JSON", '{"00100020": {"vr": "LO", "Value": ["BAD-1"]', None, 400, "malformed JSON"),
    ("wrong content type", item("BAD-2"), "application/json", 415, "application/dicom+json"),
    ("not an object", [item("BAD-3"), 7], None, 400, "item 1"),
    ("unknown tag", {**item("BAD-4"), "00091234x": {"vr": "LO"}}, None, 400, "00091234x"),
    ("unknown public tag", {**item("BAD-5"), "00107777": {"vr": "LO", "Value": ["x"]}}, None, 400, "00107777"),
    ("unknown VR", {**item("BAD-6"), "00100020": {"vr": "QQ", "Value": ["BAD-6"]}}, None, 400, "PatientID"),
    ("wrong VR", {**item("BAD-7"), "00100020": {"vr": "DA", "Value": ["BAD-7"]}}, None, 400, "PatientID"),
    ("missing ScheduledProcedureStepSequence", item("BAD-8", sps=False), None, 400, "ScheduledProcedureStepSequence"),
    ("SPS without Modality", item("BAD-9", modality=None), None, 400, "Modality"),
    ("bad start date", item("BAD-10", date="20241399"), None, 400, "ScheduledProcedureStepStartDate"),
    ("invalid StudyInstanceUID", item("BAD-11", StudyInstanceUID="1.2.abc"), None, 400, "StudyInstanceUID"),
    ("missing PatientID", item(None), None, 400, "PatientID"),
    ("one bad item in an array", [item("BAD-13"), item("BAD-13", date="2024")], None, 400, "item"),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "named"),
    [case[1:] for case in BAD_ITEMS],
    ids=[case[0] for case in BAD_ITEMS],
)
def test_a_bad_item_is_refused_and_nothing_is_created(
    web: httpx.Client, body: Any, content_type: str | None, status: int, named: str
) -> None:
    before = everything(web)
    content = body if isinstance(body, str) else json.dumps(body)
    response = web.post(MWL, content=content, headers={"Content-Type": content_type or "application/dicom+json"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert named in json.dumps(answer), answer
    assert "Traceback" not in response.text
    assert everything(web) == before
    good = post(web, item("GOOD-AFTER", accession=f"GOOD-{len(before)}"))
    assert good.status_code in (200, 201), good.text


def test_a_refused_item_names_its_attribute_and_position(web: httpx.Client) -> None:
    response = post(web, [item("POS-1"), item("POS-1", accession="POS-B", modality=None)])
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["item"] == 1
    assert "Modality" in answer["attribute"]
    assert search(web, PatientID="POS-1") == []


def test_a_body_over_the_bound_is_refused(web: httpx.Client) -> None:
    huge = b"[" + b" " * (17 * 1024 * 1024) + b"]"
    response = web.post(MWL, content=huge, headers=DICOM_JSON)
    assert response.status_code == 413, response.text
    streamed = web.post(MWL, content=iter([b" " * (1 << 20)] * 17), headers=DICOM_JSON)  # chunked, no length
    assert streamed.status_code == 413, streamed.text
    assert post(web, item("AFTER-413")).status_code in (200, 201)


def test_unknown_routes_and_methods_answer_json(web: httpx.Client) -> None:
    assert web.get("/dicomweb/nothing").status_code == 404
    response = web.put(MWL, content=b"{}", headers=DICOM_JSON)
    assert response.status_code == 405
    assert response.json()["error"]


def test_requests_are_logged(web: httpx.Client, http_server: Server) -> None:
    web.get(MWL, params={"PatientID": "LOGGED"})
    events = [e for e in http_server.events("http_request") if e["method"] == "GET" and e["status"] == 200]
    assert events and all({"path", "ms"} <= set(e) for e in events)
    assert events[-1]["path"] == MWL


def test_curl_creates_an_item_as_the_readme_shows(http_server: Server) -> None:
    """The README's curl line, run as written but for the port."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("curl -sS -X POST"))
    body = readme.split(line.rsplit("'", 1)[0] + "'", 1)[1].split("}}]}}'", 1)[0] + "}}]}}"
    url = line.split()[-3].replace("8042", str(http_port(http_server)))
    cmd = ["/usr/bin/curl", "-sS", "-X", "POST", "-H", "Content-Type: application/dicom+json", url]
    cmd += ["--data-binary", body, "-w", "\n%{http_code}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    answer, code = result.stdout.rsplit("\n", 1)
    assert code in ("200", "201"), result.stdout
    [stored] = json.loads(answer)
    assert value(stored, "00100020") == "P1" and value(step(stored), "00080060") == "MR"
    assert value(step(stored), "00400009")  # the generated SPS ID


def test_created_items_are_answered_by_mwl_cfind(web: httpx.Client, http_server: Server) -> None:
    response = post(web, item("CFIND-1", accession="CF-A", stations=("CFSTATION",)))
    assert response.status_code in (200, 201), response.text
    [stored] = response.json()
    responses, output = http_server.findscu(
        "-W", "PatientID=CFIND-1", "AccessionNumber", "StudyInstanceUID",
        "ScheduledProcedureStepSequence[0].Modality",
        "ScheduledProcedureStepSequence[0].ScheduledStationAETitle=CFSTATION",
    )  # fmt: skip
    assert [str(r.AccessionNumber) for r in responses] == ["CF-A"], output
    assert str(responses[0].StudyInstanceUID) == key(stored)[0]


# -- start-up


def test_a_taken_http_port_fails_start_up_with_one_line(tmp_path: Path) -> None:
    with listening() as port:
        server = Server(tmp_path, extra_toml=f"[http]\nport = {port}\n")
        result = subprocess.run(
            pacsd_command("serve", "--config", str(server.config)), capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if f"{port}" in line and "HTTP" in line]
    assert lines, result.stderr


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[http]\nport = "80"\n', "[http] port"),
        ("[http]\nport = 70000\n", "[http] port"),
        ("[http]\nhots = 1\n", "[http] hots"),
    ],
)
def test_bad_http_config_is_named(tmp_path: Path, toml: str, named: str) -> None:
    server = Server(tmp_path, extra_toml=toml)
    result = subprocess.run(
        pacsd_command("serve", "--config", str(server.config)), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert named in result.stderr


def test_the_dicom_port_as_http_port_is_refused(tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.config.write_text(server.config.read_text() + f"[http]\nport = {server.port}\n")
    result = subprocess.run(
        pacsd_command("serve", "--config", str(server.config)), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "[http] port" in result.stderr, result.stderr


@contextmanager
def listening() -> Iterator[int]:
    """A loopback port someone else listens on, for as long as the block runs."""
    with socket.socket() as sock:
        sock.bind((peers.LOOPBACK, 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])
