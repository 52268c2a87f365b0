"""QIDO-RS query parameters read into a search, and the base URL answers
hand out behind proxies: pure functions, no server."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from pacsd.web import dicomjson, query, urls
from pacsd.web.statuses import HttpError


def test_keys_by_keyword_or_tag_fields_and_paging() -> None:
    asked = query.qido(
        [
            ("PatientName", "Doe*"),
            ("00100020", "X1"),
            ("StudyInstanceUID", "1.2.3,1.2.4"),
            ("SeriesInstanceUID", "1.2.5\\1.2.6"),
            ("includefield", "StudyDescription, 0008103E"),
            ("includefield", "all"),
            ("fuzzymatching", "true"),
            ("limit", "5"),
            ("offset", "10"),
        ]
    )
    assert asked.keys.PatientName == "Doe*"
    assert asked.keys.PatientID == "X1"
    assert list(asked.keys.StudyInstanceUID) == ["1.2.3", "1.2.4"]
    assert list(asked.keys.SeriesInstanceUID) == ["1.2.5", "1.2.6"]
    assert asked.fields == [0x00081030, 0x0008103E]
    assert asked.include_all and asked.fuzzy
    assert (asked.limit, asked.offset) == (5, 10)


def test_defaults() -> None:
    asked = query.qido([])
    assert (asked.limit, asked.offset, asked.fuzzy, asked.include_all, asked.fields) == (None, 0, False, False, [])


@pytest.mark.parametrize(
    ("params", "parameter", "words"),
    [
        ([("Foo", "1")], "Foo", "unknown parameter"),
        ([("limit", "-1")], "limit", "expected an integer"),
        ([("limit", "0")], "limit", "expected an integer"),
        ([("limit", "ten")], "limit", "expected an integer"),
        ([("offset", "-3")], "offset", "expected an integer"),
        ([("fuzzymatching", "maybe")], "fuzzymatching", "true or false"),
        ([("StudyInstanceUID", "1.2.x")], "StudyInstanceUID", "not a UID"),
        ([("StudyInstanceUID", "1.2.*")], "StudyInstanceUID", "not a UID"),
        ([("PatientID", "A"), ("PatientID", "B")], "PatientID", "given twice"),
        ([("PatientID", "A"), ("00100020", "B")], "00100020", "given twice"),
        ([("RequestAttributesSequence", "x")], "RequestAttributesSequence", "sequence"),
        ([("RequestAttributesSequence.AccessionNumber", "x")], "RequestAttributesSequence.AccessionNumber", "inside"),
        ([("includefield", "NotAKeyword")], "includefield", "unknown parameter"),
        ([("00991234", "x")], "00991234", "unknown tag"),
        ([("InstanceNumber", "abc")], "InstanceNumber", "not a IS value"),
        ([("PatientID", "a\nb")], "PatientID", "control characters"),
    ],
)
def test_bad_parameters_are_named(params: list[tuple[str, str]], parameter: str, words: str) -> None:
    with pytest.raises(HttpError) as caught:
        query.qido(params)
    assert caught.value.status == 400
    assert caught.value.fields["parameter"] == parameter
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "http://10.0.0.5:8042"),
        ({"forwarded": 'for=1.2.3.4;proto=https;host="pacs.example.org:8443"'}, "https://pacs.example.org:8443"),
        ({"forwarded": "Proto=HTTPS;Host=pacs.example.org, proto=http;host=inner"}, "https://pacs.example.org"),
        ({"forwarded": "for=1.2.3.4"}, "http://10.0.0.5:8042"),
        ({"x-forwarded-proto": "https", "x-forwarded-host": "viewer.example.org"}, "https://viewer.example.org"),
        ({"x-forwarded-host": "a.example.org, b.example.org"}, "http://a.example.org"),
        ({"x-forwarded-proto": "https"}, "https://10.0.0.5:8042"),
        ({"forwarded": "host=fw.example.org", "x-forwarded-host": "xf.example.org"}, "http://fw.example.org"),
        ({"x-forwarded-host": "[::1]:9000"}, "http://[::1]:9000"),
        # What could inject a path, a userinfo or another scheme is ignored.
        ({"x-forwarded-host": "evil.example.org/x?"}, "http://10.0.0.5:8042"),
        ({"x-forwarded-host": "user@evil.example.org"}, "http://10.0.0.5:8042"),
        ({"x-forwarded-proto": "javascript"}, "http://10.0.0.5:8042"),
    ],
)
def test_base_url(headers: dict[str, str], expected: str) -> None:
    assert urls.base_url(headers, "http", "10.0.0.5:8042") == expected


def test_dicom_json_answers_as_pydicom_writes_them() -> None:
    """The answer encoder agrees with pydicom's, but leaves empty sequences
    without "Value" (PS3.18 F.2.5)."""
    ds = Dataset()
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.ReferringPhysicianName = None
    ds.ModalitiesInStudy = ["CT", "MR"]
    ds.NumberOfStudyRelatedSeries = 3
    ds.SeriesNumber = "4"
    ds.add_new(0x00181050, "DS", ["1.5", "2"])
    ds.add_new(0x00280010, "US", 512)
    ds.StudyDate = ""
    ds.StudyInstanceUID = "1.2.3"
    item = Dataset()
    item.AccessionNumber = "A1"
    ds.RequestAttributesSequence = [item]
    ds.add_new(0x00081190, "UR", "http://x/dicomweb/studies/1.2.3")
    assert dicomjson.to_json(ds) == ds.to_json_dict()
    assert dicomjson.to_json(ds)["00100010"]["Value"] == [
        {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
    ]
    ds.RequestAttributesSequence = []
    assert dicomjson.to_json(ds)["00400275"] == {"vr": "SQ"}
    assert ds.to_json_dict()["00400275"] == {"vr": "SQ", "Value": []}
