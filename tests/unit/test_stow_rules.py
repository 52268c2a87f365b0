"""STOW-RS pure rules: the Failure Reasons (one code per refusal, DIMSE and
DICOMweb alike), the file meta of an uploaded part, forwarded URLs."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from starlette.requests import Request

from pacsd.domain import errors
from pacsd.domain.received import Spooled
from pacsd.domain.uploaded import META_MAX, file_meta, received_from_upload
from pacsd.testing import synth
from pacsd.web import statuses as http
from pacsd.web.urls import request_base
from pacsd.wire import statuses as dimse


def test_every_c_store_refusal_has_the_same_failure_reason_over_stow() -> None:
    never_over_http = {errors.NoFetchWaiting}  # a caching-proxy fetch's arrival is DIMSE only
    for cls, code in dimse.STORE_REFUSALS.items():
        if cls not in never_over_http:
            assert http.STOW_FAILURES[cls] == code, cls.__name__
    assert http.STOW_DUPLICATE_KEPT == dimse.STORE_RESULTS[dimse.Result.DUPLICATE_KEPT]


def test_the_most_specific_refusal_wins() -> None:
    assert http.stow_failure(errors.StudyMismatch("x"))[0] == 0xA901
    assert http.stow_failure(errors.SOPClassMismatch("x"))[0] == 0xA900
    assert http.stow_failure(errors.RequestMismatch("x"))[0] == 0xC002
    assert http.stow_failure(ValueError("secret")) == (0x0110, "internal error: ValueError")


def part10(preamble: bool = True) -> bytes:
    ds = synth.ct()
    synth.set_meta(ds, ExplicitVRLittleEndian)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    return data if preamble else data[132:]


def test_file_meta_with_and_without_preamble() -> None:
    for data in (part10(), part10(preamble=False)):
        values, offset = file_meta(data[: 132 + META_MAX])
        assert values[0x0010] == ExplicitVRLittleEndian
        assert data[offset : offset + 2] == b"\x08\x00"  # the dataset's first group


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"hello world" * 20, "not a DICOM Part 10 file"),
        (
            b"\0" * 128 + b"DICM" + struct.pack("<HH2sH", 2, 0x0002, b"UI", 4) + b"1.2\0",
            "file meta has no Media Storage SOP Instance",
        ),
        (b"\0" * 128 + b"DICM" + struct.pack("<HH2sH", 2, 0x0010, b"UI", 200) + b"1.2", "runs past"),
        (b"\0" * 128 + b"DICM" + struct.pack("<HH2s2xI", 2, 0x0001, b"OB", META_MAX) + b"\0" * META_MAX, "past"),
    ],
)
def test_a_bad_file_meta_is_invalid_object(data: bytes, says: str) -> None:
    with pytest.raises(errors.InvalidObject, match=says):
        file_meta(data[: 132 + META_MAX])


def test_a_large_upload_is_copied_to_a_spool_file(tmp_path: Path) -> None:
    data = part10()
    small = received_from_upload(io.BytesIO(data), len(data), str(tmp_path), in_memory_max=1 << 20)
    assert isinstance(small.dataset, bytes) and data.endswith(small.dataset)
    with open(tmp_path / "upload", "w+b") as file:
        file.write(data)
        large = received_from_upload(file, len(data), str(tmp_path), in_memory_max=100)
    assert isinstance(large.dataset, Spooled)
    assert Path(large.dataset.path).read_bytes() == small.dataset
    large.dataset.discard()


def request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": "pacs:8042", **headers}.items()]
    return Request({"type": "http", "scheme": "http", "path": "/", "query_string": b"", "headers": raw})


@pytest.mark.parametrize(
    ("headers", "base"),
    [
        ({}, "http://pacs:8042"),
        ({"Forwarded": 'for=1.2.3.4;proto=https;host="a.example:443", for=5.6.7.8'}, "https://a.example:443"),
        ({"Forwarded": "for=1.2.3.4"}, "http://pacs:8042"),
        ({"X-Forwarded-Host": "b.example, inner", "X-Forwarded-Proto": "HTTPS"}, "https://b.example"),
        ({"X-Forwarded-Host": "bad host/x", "X-Forwarded-Proto": "gopher"}, "http://pacs:8042"),
        ({"X-Forwarded-Host": "[::1]:9"}, "http://[::1]:9"),
    ],
)
def test_base_url_honours_forwarded_headers(headers: dict[str, str], base: str) -> None:
    assert request_base(request(headers)) == base
