"""Reading a header within budgets (issue 11, findings 1 and 8), in process:
deflate bombs stop at a budget, values the index cannot hold are named and
left empty."""

from __future__ import annotations

import mmap
import zlib
from pathlib import Path

import pytest

from pacsd.domain.errors import InvalidObject, OverBudget
from pacsd.domain.header import MAX_KEPT_VALUE, read_header
from pacsd.domain.limits import Limits, MiB
from pacsd.testing import synth
from pacsd.testing.raw import DEFLATED, EXPLICIT_LE, deflate_bomb, encode, small_header, with_raw


def test_deflate_bomb_is_over_budget_not_inflated() -> None:
    bomb = deflate_bomb(small_header())
    with pytest.raises(OverBudget, match="max_inflate_ratio") as refused:
        read_header(bomb, DEFLATED)
    assert refused.value.budget == "max_inflate_ratio"
    # Without the ratio, the size cap stops it (8 MiB here).
    limits = Limits(max_inflated_bytes=8 * MiB, max_inflate_ratio=1 << 20)
    with pytest.raises(OverBudget) as capped:
        read_header(bomb, DEFLATED, limits)
    assert capped.value.budget == "max_inflated_bytes"


def test_broken_deflate_stream_stays_invalid_object() -> None:
    stream = deflate_bomb(small_header(), zeros=0)
    with pytest.raises(InvalidObject, match="ends early"):
        read_header(stream[: len(stream) // 2], DEFLATED)
    with pytest.raises(InvalidObject, match="cannot be inflated"):
        read_header(b"\xff" * 64, DEFLATED)


def test_legit_deflated_dataset_reads() -> None:
    ds = synth.ct(patient_id="DFL", pixel_bytes=4096)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    header = read_header(deflater.compress(encode(ds)) + deflater.flush(), DEFLATED)
    assert (header.patient_id, header.sop_instance_uid) == ("DFL", ds.SOPInstanceUID)


@pytest.mark.parametrize(
    "keyword, vr, value, why",
    [
        ("SeriesNumber", "IS", b"99999999999999999999", "outside -2^31..2^31-1"),
        ("SeriesNumber", "IS", b"2147483648", "outside -2^31..2^31-1"),
        ("InstanceNumber", "IS", b"abc ", "not an integer string"),
        ("InstanceNumber", "IS", b"1_000 ", "not an integer string"),
        ("InstanceNumber", "IS", b"1\\2 ", "not an integer string"),
        ("StudyDate", "DA", b"20240230", "not a date"),
        ("PatientBirthDate", "DA", b"yesterday ", "not a date"),
        ("SeriesDate", "DA", b"2024-01-02", "not a date"),
        ("StudyTime", "TM", b"250000", "not a time"),
        ("SeriesTime", "TM", b"12h30 ", "not a time"),
        ("StudyDate", "DA", "2024\u00e9".encode("latin-1") + b" ", "not ASCII"),
    ],
)
def test_unindexable_value_is_left_empty_and_named(keyword: str, vr: str, value: bytes, why: str) -> None:
    header = read_header(with_raw(synth.ct(pixel_bytes=64), **{keyword: (vr, value)}), EXPLICIT_LE)
    [problem] = header.problems
    assert problem.keyword == keyword and why in problem.why
    assert problem.value == value.decode("latin-1").strip(" ").replace("\u00e9", "\\xe9")
    field = {"SeriesNumber": "series_number", "InstanceNumber": "instance_number", "StudyDate": "study_date",
             "PatientBirthDate": "birth_date", "SeriesDate": "series_date", "StudyTime": "study_time",
             "SeriesTime": "series_time"}[keyword]  # fmt: skip
    assert getattr(header, field) in (None, "")


@pytest.mark.parametrize(
    "keyword, vr, value, expected",
    [
        ("SeriesNumber", "IS", b"-2147483648 ", -(2**31)),
        ("SeriesNumber", "IS", b" +42 ", 42),
        ("StudyDate", "DA", b"2024.02.29", "20240229"),  # ACR-NEMA form
        ("StudyTime", "TM", b"12:30:05", "123005"),
        ("StudyTime", "TM", b"1230", "1230"),
        ("SeriesTime", "TM", b"235960.123456", "235960.123456"),  # a leap second
    ],
)
def test_valid_values_are_indexed(keyword: str, vr: str, value: bytes, expected: object) -> None:
    header = read_header(with_raw(synth.ct(pixel_bytes=64), **{keyword: (vr, value)}), EXPLICIT_LE)
    assert header.problems == ()
    field = {"SeriesNumber": "series_number", "StudyDate": "study_date", "StudyTime": "study_time",
             "SeriesTime": "series_time"}[keyword]  # fmt: skip
    assert getattr(header, field) == expected


def test_read_header_on_views_and_mmaps(tmp_path: Path) -> None:
    data = encode(synth.ct(patient_id="VIEW", pixel_bytes=1 << 16))
    expected = read_header(data, EXPLICIT_LE)
    path = tmp_path / "dataset"
    path.write_bytes(data)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert read_header(mapped, EXPLICIT_LE) == expected
        assert read_header(memoryview(mapped), EXPLICIT_LE) == expected
    assert read_header(memoryview(data), EXPLICIT_LE) == expected
    assert read_header(bytearray(data), EXPLICIT_LE) == expected


def test_a_huge_kept_value_is_refused_not_copied() -> None:
    # UC: a long-form VR, so the length can pass 64 KiB.
    data = with_raw(synth.ct(pixel_bytes=64), StudyDescription=("UC", b"A" * (MAX_KEPT_VALUE + 2)))
    with pytest.raises(InvalidObject, match="more than"):
        read_header(data, EXPLICIT_LE)
