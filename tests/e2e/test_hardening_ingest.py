"""Issue 11, findings 1 (C-STORE part) and 8: what a stored dataset may cost
and which of its values the index takes.

A deflate bomb is refused within a memory bound; a value the index cannot
hold (an IS past 32 bits, a date that is not a date) is stored with its
index field empty and a warning, never refused as "out of resources".
"""

from __future__ import annotations

import mmap
import struct
import threading
import zlib
from io import BytesIO
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

from pacsd.domain.errors import InvalidObject, OverBudget
from pacsd.domain.header import MAX_KEPT_VALUE, read_header
from pacsd.domain.limits import Limits, MiB
from pacsd.testing import synth
from tests.e2e.conftest import SCU, Server

EXPLICIT_LE = str(ExplicitVRLittleEndian)
DEFLATED = str(DeflatedExplicitVRLittleEndian)
BOMB_BYTES = 256 * MiB  # zeros in the bomb's pixel data, once inflated
# The server's peak RSS may grow by at most this much while refusing the
# bomb. Refusal stops after max_inflate_ratio * (input so far) past
# inflate_ratio_after, about 2 MiB of output; inflating it whole took the
# peak up by more than the bomb's 256 MiB.
RSS_GROWTH_BOUND = 48 * MiB


LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())


def with_raw(ds: Dataset, **values: tuple[str, bytes]) -> bytes:
    """*ds* encoded (explicit VR little endian) with elements holding exactly
    these bytes, keyword=(VR, value): spliced in tag order, so pydicom never
    sees (or warns about, or refuses) the malformed values."""
    for keyword in values:
        if keyword in ds:
            del ds[keyword]
    data = encode(ds)
    extra = {int(Tag(k)): _element(int(Tag(k)), vr.encode(), value) for k, (vr, value) in values.items()}
    out, pos = [], 0
    while pos < len(data):
        group, elem, vr = struct.unpack_from("<HH2s", data, pos)
        tag = (group << 16) | elem
        for t in sorted(t for t in extra if t < tag):
            out.append(extra.pop(t))
        if vr in LONG_VRS:
            end = pos + 12 + struct.unpack_from("<I", data, pos + 8)[0]
        else:
            end = pos + 8 + struct.unpack_from("<H", data, pos + 6)[0]
        out.append(data[pos:end])
        pos = end
    out += [extra[t] for t in sorted(extra)]
    return b"".join(out)


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b" "
    if vr in LONG_VRS:
        return struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, vr, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def encode(ds: Dataset) -> bytes:
    buf = BytesIO()
    fp = DicomFileLike(buf)
    fp.is_implicit_VR, fp.is_little_endian = False, True
    write_dataset(fp, ds)
    return buf.getvalue()


def part10(path: Path, ds: Dataset, syntax: str, dataset_bytes: bytes) -> Path:
    """A Part 10 file of *dataset_bytes* (already in *syntax*), sent byte for
    byte by the SCU fixture."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.9.7433.1"
    buf = BytesIO()
    buf.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(DicomFileLike(buf), meta)
    path.write_bytes(buf.getvalue() + dataset_bytes)
    return path


def deflate_bomb(ds: Dataset, zeros: int = BOMB_BYTES) -> bytes:
    """*ds* (a small header) then an OB of *zeros* zero bytes, raw-deflated
    in chunks: about 256 KiB for 256 MiB, never held inflated here."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [deflater.compress(encode(ds)), deflater.compress(struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB", zeros))]
    chunk = bytes(MiB)
    for _ in range(zeros // MiB):
        out.append(deflater.compress(chunk))
    out.append(deflater.flush())
    return b"".join(out)


def small_header() -> Dataset:
    ds = synth.ct(patient_id="BOMB", pixel_bytes=2)
    del ds.PixelData
    return ds


class Bystander:
    """A well-behaved client, echoing and storing small objects until stopped."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.stored: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        while True:
            try:
                self.server.echoscu()
                ds = synth.ct(patient_id="BYSTANDER", pixel_bytes=512)
                [status] = SCU(self.server, "BYSTANDER").store(ds)
                if status.Status != 0x0000:
                    self.failures.append(f"store: 0x{status.Status:04X}")
                else:
                    self.stored.append(ds.SOPInstanceUID)
            except AssertionError as exc:
                self.failures.append(str(exc))
            if self._stop.is_set():  # at least one round, even after a fast refusal
                return


# -- read_header, in process ------------------------------------------------


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


# -- against a real server ---------------------------------------------------


def test_deflate_bomb_c_store_refused_within_memory_bound(server: Server, scu: SCU, tmp_path: Path) -> None:
    assert server.proc is not None
    header = small_header()
    bomb = part10(tmp_path / "bomb.dcm", header, DEFLATED, deflate_bomb(header))
    assert bomb.stat().st_size < MiB
    scu.store(synth.ct(patient_id="WARMUP", pixel_bytes=512))  # imports and caches paid before measuring
    before = server.peak_rss()
    with Bystander(server) as bystander:
        [status] = scu.store(bomb)
    after = server.peak_rss()

    assert status.Status == 0xC003
    assert "max_inflate_ratio" in status.ErrorComment
    assert after - before < RSS_GROWTH_BOUND, f"peak RSS grew by {(after - before) / MiB:.1f} MiB"
    [event] = server.events("budget_exceeded")
    assert event["budget"] == "max_inflate_ratio" and event["calling_ae"] == "TESTSCU" and event["reason"]
    [refused] = server.events("store_refused")
    assert refused["status"] == "0xC003" and refused["sop_instance_uid"] == header.SOPInstanceUID
    # Nothing of the bomb stored; the bystander served throughout.
    assert not bystander.failures, bystander.failures
    assert bystander.stored
    assert server.stats()["instances"] == 1 + len(bystander.stored)
    assert all(header.SOPInstanceUID not in str(path) for path in server.files())
    assert not server.temp_files()
    server.echoscu()


def test_out_of_range_series_number_is_stored_with_it_empty(server: Server, scu: SCU, tmp_path: Path) -> None:
    ds = synth.ct(patient_id="IS8", pixel_bytes=512)
    data = with_raw(ds, SeriesNumber=("IS", b"99999999999999999999"))
    path = part10(tmp_path / "is.dcm", ds, EXPLICIT_LE, data)
    with Bystander(server) as bystander:
        [status] = scu.store(path)
    assert status.Status == 0x0000
    [event] = server.events("index_value_ignored")
    assert event["sop_instance_uid"] == ds.SOPInstanceUID and event["level"] == "warning"
    assert event["values"] == [
        {"keyword": "SeriesNumber", "value": "99999999999999999999", "why": "integer string outside -2^31..2^31-1"}
    ]
    assert not bystander.failures, bystander.failures
    assert not server.events("store_refused")

    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = ds.StudyInstanceUID
    query.SeriesInstanceUID = ""
    query.SeriesNumber = ""
    ae = AE(ae_title="FINDER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title)
    assert assoc.is_established
    try:
        answers = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    finally:
        assoc.release()
    matches = [identifier for status, identifier in answers if status and status.Status == 0xFF00]
    assert answers[-1][0].Status == 0x0000
    [match] = matches
    assert match.SeriesInstanceUID == ds.SeriesInstanceUID
    assert match.SeriesNumber in ("", None)
