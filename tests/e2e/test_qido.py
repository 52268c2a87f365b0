"""QIDO-RS against a real `pacsd serve` holding objects DCMTK's storescu
C-STOREd: dicomweb-client and httpx as the clients, every search path,
each matching type, the DICOM JSON shapes, and the refusals."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from pacsd.testing import synth
from pacsd.testing.peers import free_port
from pacsd.web.qido import MAX_RESULTS
from tests.e2e.conftest import Server


@dataclass
class Archive:
    server: Server
    http_port: int
    studies: dict[str, Dataset]  # name -> first instance of the study
    series: dict[str, list[Dataset]]  # name -> instances of the series
    big_study: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicomweb"


def _objects() -> tuple[dict[str, list[Dataset]], list[Dataset]]:
    a = dict(patient_id="QA1", patient_name="Doe^John", StudyDate="20240110", AccessionNumber="ACC-A")
    a_ct = synth.series(2, **a, pixel_bytes=64)
    same_study = {"study_uid": a_ct[0].StudyInstanceUID}
    a_mr = synth.series(1, **a, **same_study, Modality="MR", SeriesNumber=7, pixel_bytes=64)
    b = synth.series(
        1, patient_id="QB2", patient_name="Smith^Anna^Maria", StudyDate="20240320", AccessionNumber="ACC-B",
        pixel_bytes=64,
    )  # fmt: skip
    c = synth.series(
        1, patient_id="QC3", patient_name="van der Berg^Piet", StudyDate="20230101", AccessionNumber="",
        ReferringPhysicianName="", SeriesDescription="Chest", pixel_bytes=64,
    )  # fmt: skip
    big = synth.series(MAX_RESULTS + 5, patient_id="QBIG", patient_name="Big^Study", StudyDate="20220101",
                       pixel_bytes=16)  # fmt: skip
    return {"a_ct": a_ct, "a_mr": a_mr, "b": b, "c": c}, big


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    workdir = tmp_path_factory.mktemp("qido")
    port = free_port()
    server = Server(workdir, extra_toml=f"[http]\nport = {port}\n").start()
    series, big = _objects()
    files = []
    for n, ds in enumerate([ds for group in series.values() for ds in group] + big):
        files.append(synth.write(ds, workdir / f"obj{n:05}.dcm"))
    server.storescu(*files)
    studies = {"a": series["a_ct"][0], "b": series["b"][0], "c": series["c"][0]}
    yield Archive(server, port, studies, series, big[0].StudyInstanceUID)
    server.stop()


@pytest.fixture(scope="module")
def client(archive: Archive) -> DICOMwebClient:
    return DICOMwebClient(url=archive.url)


@pytest.fixture
def web(archive: Archive) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=archive.url, timeout=60) as c:
        yield c


def value(obj: dict[str, Any], tag: str) -> Any:
    return obj.get(tag, {}).get("Value", [None])[0]


def uids(found: list[dict[str, Any]], tag: str) -> set[str]:
    return {value(obj, tag) for obj in found}


STUDY, SERIES, SOP = "0020000D", "0020000E", "00080018"


def study_uids(archive: Archive, *names: str) -> set[str]:
    return {archive.studies[n].StudyInstanceUID for n in names}


def test_every_path_finds_what_storescu_stored(archive: Archive, client: DICOMwebClient) -> None:
    a, ct, mr = archive.studies["a"], archive.series["a_ct"], archive.series["a_mr"]
    assert uids(client.search_for_studies(), STUDY) == study_uids(archive, "a", "b", "c") | {archive.big_study}
    every_series = uids(client.search_for_series(), SERIES)
    assert {ct[0].SeriesInstanceUID, mr[0].SeriesInstanceUID} <= every_series and len(every_series) == 5
    assert len(client.search_for_instances(limit=MAX_RESULTS)) == MAX_RESULTS
    in_a = client.search_for_series(a.StudyInstanceUID)
    assert uids(in_a, SERIES) == {ct[0].SeriesInstanceUID, mr[0].SeriesInstanceUID}
    assert uids(in_a, STUDY) == {a.StudyInstanceUID}
    expected = {ds.SOPInstanceUID for ds in ct + mr}
    assert uids(client.search_for_instances(a.StudyInstanceUID), SOP) == expected
    found = client.search_for_instances(a.StudyInstanceUID, mr[0].SeriesInstanceUID)
    assert uids(found, SOP) == {mr[0].SOPInstanceUID}
    # Series-level and instance-level keys across the whole archive (relational).
    assert uids(client.search_for_series(search_filters={"Modality": "MR"}), SERIES) == {mr[0].SeriesInstanceUID}
    found = client.search_for_instances(search_filters={"PatientID": "QA1", "InstanceNumber": "2"})
    assert uids(found, SOP) == {ct[1].SOPInstanceUID}


@pytest.mark.parametrize(
    ("filters", "fuzzy", "names"),
    [
        ({"PatientName": "doe*"}, None, {"a"}),  # wildcard, case-insensitive
        ({"PatientName": "DOE^JOHN"}, None, {"a"}),  # single value, case-insensitive
        ({"PatientName": "*anna*"}, None, {"b"}),
        ({"PatientName": "ann"}, None, set()),  # not fuzzy: a whole name
        ({"PatientName": "ann"}, True, {"b"}),  # fuzzy: prefix of a component
        ({"PatientName": "berg"}, True, {"c"}),  # ... or of a word in one
        ({"PatientName": "smith mar"}, True, {"b"}),
        ({"PatientName": "ohn"}, True, set()),
        ({"StudyDate": "20240101-20240331"}, None, {"a", "b"}),  # range
        ({"StudyDate": "-20231231"}, None, {"c", "big"}),  # open range
        ({"StudyDate": "20240320"}, None, {"b"}),
        ({"AccessionNumber": "ACC-?"}, None, {"a", "b"}),
        ({"ModalitiesInStudy": "MR"}, None, {"a"}),
        ({"00100020": "QB2"}, None, {"b"}),  # a key by its tag
        ({"PatientID": "QA1\\QC3"}, None, {"a", "c"}),  # a list of values
        ({"ReferringPhysicianName": "ref^doctor"}, None, {"a", "b", "big"}),
    ],
)
def test_matching_types(
    archive: Archive, client: DICOMwebClient, filters: dict[str, str], fuzzy: bool | None, names: set[str]
) -> None:
    found = client.search_for_studies(search_filters=filters, fuzzymatching=fuzzy)
    expected = {archive.big_study if n == "big" else archive.studies[n].StudyInstanceUID for n in names}
    assert uids(found, STUDY) == expected


@pytest.mark.parametrize("separator", [",", "\\"])
def test_uid_lists(archive: Archive, client: DICOMwebClient, separator: str) -> None:
    listed = separator.join(sorted(study_uids(archive, "a", "c")))
    found = client.search_for_studies(search_filters={"StudyInstanceUID": listed})
    assert uids(found, STUDY) == study_uids(archive, "a", "c")


def test_includefield(archive: Archive, client: DICOMwebClient, web: httpx.Client) -> None:
    a = archive.studies["a"].StudyInstanceUID
    [study] = client.search_for_studies(search_filters={"StudyInstanceUID": a}, fields=["StudyDescription"])
    assert value(study, "00081030") == "Synthetic study"
    plain = web.get("/studies", params={"StudyInstanceUID": a}).json()[0]
    assert "00081030" not in plain  # not a default attribute
    # Repeated and comma-separated, by tag and keyword.
    series = web.get(
        f"/studies/{a}/series",
        params=[("Modality", "CT"), ("includefield", "0008103E,BodyPartExamined"), ("includefield", "SeriesDate")],
    ).json()[0]
    assert value(series, "0008103E") == "Synthetic series"
    assert "00180015" in series and "00080021" in series  # asked; empty in these objects
    everything = web.get("/studies", params={"StudyInstanceUID": a, "includefield": "all"}).json()[0]
    assert value(everything, "00081030") == "Synthetic study"
    assert value(everything, "00201200") == 1  # NumberOfPatientRelatedStudies
    # An attribute the index does not hold is left out, not claimed empty.
    one = archive.studies["a"].SOPInstanceUID
    [instance] = web.get(f"/studies/{a}/instances", params={"SOPInstanceUID": one, "includefield": "Rows"}).json()
    assert "00280010" not in instance and value(instance, SOP) == one


def test_default_attributes_and_json_shapes(archive: Archive, web: httpx.Client) -> None:
    a, c = archive.studies["a"], archive.studies["c"]
    response = web.get("/studies", params={"StudyInstanceUID": a.StudyInstanceUID})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    [study] = response.json()
    for tag in ("00080020", "00080030", "00080050", "00080061", "00080090", "00100010", "00100020", "00100030",
                "00100040", "0020000D", "00200010", "00201206", "00201208", "00081190"):  # fmt: skip
        assert tag in study, tag
    assert "00080052" not in study  # QueryRetrieveLevel is C-FIND's
    assert study["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]}
    assert study["00201206"] == {"vr": "IS", "Value": [2]}  # numbers, not strings
    assert study["00201208"] == {"vr": "IS", "Value": [3]}
    assert study["00080061"]["vr"] == "CS" and sorted(study["00080061"]["Value"]) == ["CT", "MR"]
    [other] = web.get("/studies", params={"StudyInstanceUID": c.StudyInstanceUID}).json()
    assert other["00080090"] == {"vr": "PN"}  # empty: the VR only
    assert other["00080050"] == {"vr": "SH"}
    [series] = web.get(f"/studies/{a.StudyInstanceUID}/series", params={"Modality": "MR"}).json()
    assert series["00200011"] == {"vr": "IS", "Value": [7]}
    assert series["00201209"] == {"vr": "IS", "Value": [1]}
    assert series["00400275"] == {"vr": "SQ"}  # no request attributes: no "Value"
    assert "00100010" not in series  # the study is in the path: no study attributes
    [everywhere] = web.get("/series", params={"Modality": "MR"}).json()
    assert everywhere["00100010"]["Value"] == [{"Alphabetic": "Doe^John"}]  # all studies: study attributes too
    [instance] = web.get("/instances", params={"SOPInstanceUID": a.SOPInstanceUID}).json()
    assert instance["00080016"] == {"vr": "UI", "Value": [a.SOPClassUID]}
    assert instance["00200013"] == {"vr": "IS", "Value": [1]}


def test_limit_offset_and_the_maximum(archive: Archive, client: DICOMwebClient, web: httpx.Client) -> None:
    big = archive.big_study
    first = web.get(f"/studies/{big}/instances")
    assert first.status_code == 200
    assert len(first.json()) == MAX_RESULTS
    assert first.headers["warning"].startswith('299 pacsd "')
    assert f"offset={MAX_RESULTS}" in first.headers["warning"]
    rest = web.get(f"/studies/{big}/instances", params={"offset": str(MAX_RESULTS)})
    assert len(rest.json()) == 5 and "warning" not in rest.headers
    assert uids(first.json(), SOP).isdisjoint(uids(rest.json(), SOP))
    # A limit of the client's own cuts without a warning; pages do not overlap.
    page = web.get(f"/studies/{big}/instances", params={"limit": "10", "offset": "3"})
    assert len(page.json()) == 10 and "warning" not in page.headers
    assert [value(obj, SOP) for obj in page.json()] == [value(obj, SOP) for obj in first.json()[3:13]]
    over = web.get(f"/studies/{big}/instances", params={"limit": str(MAX_RESULTS + 100)})
    assert len(over.json()) == MAX_RESULTS and "warning" in over.headers
    assert len(client.search_for_instances(big, limit=4, offset=1000)) == 4


def test_no_match_is_200_with_an_empty_array(client: DICOMwebClient, web: httpx.Client) -> None:
    response = web.get("/studies", params={"PatientID": "NOBODY"})
    assert (response.status_code, response.json()) == (200, [])
    assert response.headers["content-type"] == "application/dicom+json"
    assert client.search_for_series(search_filters={"PatientID": "NOBODY"}) == []


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        ("application/dicom+json", "application/dicom+json"),
        ("application/json", "application/json"),
        ("*/*", "application/dicom+json"),
        (None, "application/dicom+json"),
        # What older OHIF releases send on searches.
        (
            "application/dicom+json, multipart/related; type=application/octet-stream; transfer-syntax=*",
            "application/dicom+json",
        ),
        ("text/html, application/json;q=0.9", "application/json"),
    ],
)
def test_accepted(archive: Archive, web: httpx.Client, accept: str | None, media_type: str) -> None:
    headers = {} if accept is None else {"Accept": accept}
    request = web.build_request("GET", "/studies", params={"PatientID": "QA1"}, headers=headers)
    if accept is None:
        del request.headers["accept"]
    response = web.send(request)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    assert uids(response.json(), STUDY) == study_uids(archive, "a")


@pytest.mark.parametrize(
    "accept", ['multipart/related; type="application/dicom+xml"', "application/dicom+xml", "image/png", "text/*"]
)
def test_not_acceptable(web: httpx.Client, accept: str) -> None:
    response = web.get("/studies", headers={"Accept": accept})
    assert response.status_code == 406
    assert "application/dicom+json" in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "params", "words"),
    [
        ("/studies", {"Foo": "1"}, "Foo: unknown parameter"),
        ("/studies", {"limit": "-1"}, "limit: expected an integer"),
        ("/studies", {"offset": "x"}, "offset: expected an integer"),
        ("/studies", {"fuzzymatching": "yes"}, "fuzzymatching: expected true or false"),
        ("/studies", {"StudyDate": "yesterday"}, "StudyDate: not a DICOM date"),
        ("/studies", {"StudyTime": "25"}, "StudyTime: not a DICOM time"),
        ("/studies", {"StudyInstanceUID": "1.2.x"}, "not a UID"),
        ("/studies", {"Modality": "CT"}, "Modality cannot be matched at the STUDY level"),
        ("/series", {"SOPInstanceUID": "1.2.3"}, "SOPInstanceUID cannot be matched at the SERIES level"),
        ("/instances", {"Rows": "512"}, "Rows cannot be matched at all"),
        ("/studies", {"NumberOfStudyRelatedSeries": "2"}, "cannot be matched"),
        ("/studies/1..2/series", {}, "StudyInstanceUID in the path is not a UID"),
        ("/studies/1.2/series/abc/instances", {}, "SeriesInstanceUID in the path is not a UID"),
        ("/studies/1.2/series", {"StudyInstanceUID": "1.2"}, "StudyInstanceUID is given by the path"),
        ("/studies", {"includefield": "Nope"}, "includefield: unknown parameter"),
    ],
)
def test_bad_requests_are_named(
    archive: Archive, client: DICOMwebClient, web: httpx.Client, path: str, params: dict[str, str], words: str
) -> None:
    response = web.get(path, params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert words in response.json()["error"]
    # The server serves on.
    assert uids(client.search_for_studies(search_filters={"PatientID": "QB2"}), STUDY) == study_uids(archive, "b")


@pytest.mark.parametrize(
    ("headers", "base"),
    [
        ({}, None),
        ({"Forwarded": 'for=10.1.1.1;proto=https;host="pacs.example.org:8443"'}, "https://pacs.example.org:8443"),
        ({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "viewer.example.org"}, "https://viewer.example.org"),
        ({"X-Forwarded-Host": "evil.example.org/steal?"}, None),  # not a host: ignored
    ],
)
def test_retrieve_url_behind_proxies(archive: Archive, web: httpx.Client, headers: dict[str, str], base: str) -> None:
    a = archive.studies["a"]
    base = base or f"http://127.0.0.1:{archive.http_port}"
    [study] = web.get("/studies", params={"StudyInstanceUID": a.StudyInstanceUID}, headers=headers).json()
    assert study["00081190"] == {"vr": "UR", "Value": [f"{base}/dicomweb/studies/{a.StudyInstanceUID}"]}
    [series] = web.get("/series", params={"SeriesInstanceUID": a.SeriesInstanceUID}, headers=headers).json()
    assert value(series, "00081190") == f"{base}/dicomweb/studies/{a.StudyInstanceUID}/series/{a.SeriesInstanceUID}"
    [instance] = web.get("/instances", params={"SOPInstanceUID": a.SOPInstanceUID}, headers=headers).json()
    assert value(instance, "00081190") == (
        f"{base}/dicomweb/studies/{a.StudyInstanceUID}/series/{a.SeriesInstanceUID}/instances/{a.SOPInstanceUID}"
    )


def test_requests_logged(archive: Archive, web: httpx.Client) -> None:
    web.get("/studies", params={"PatientID": "QA1"})
    logged = [e for e in archive.server.events("http_request") if e["path"] == "/dicomweb/studies"]
    assert logged and {e["status"] for e in logged} >= {200}
