"""The streaming multipart/related reader and the encoder
(pacsd.web.multipart): bodies as STOW-RS clients send them, cut into
chunks anywhere, and the malformed ones each refused with its reason."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import anyio
import pytest

from pacsd.web.multipart import (
    HEADER_LIMIT,
    MalformedMultipart,
    Part,
    Reader,
    encode_parts,
    parse_related,
    read_parts,
)

BOUNDARY = "b0und4ry-2f1e"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
EXPLICIT_LE = "1.2.840.10008.1.2.1"

# Bodies that look like delimiters but are not: a CRLF, dashes, the boundary not at a line start.
BODIES = [b"DICM" * 20, b"\r\n--b0und4ry-2f1", b"x--" + BOUNDARY.encode() + b"--\r\n", b""]


def body(preamble: bytes = b"", epilogue: bytes = b"", lwsp: bytes = b"") -> bytes:
    """Four parts: typed, typed with transfer-syntax and Content-Location,
    untyped with a lower-case header, and one with no headers at all."""
    d = b"--" + BOUNDARY.encode()
    return (
        preamble
        + d
        + lwsp
        + b"\r\nContent-Type: application/dicom\r\n\r\n"
        + BODIES[0]
        + b"\r\n"
        + d
        + b"\r\nCONTENT-TYPE: application/dicom; transfer-syntax="
        + EXPLICIT_LE.encode()
        + b"\r\ncontent-location: /dicomweb/studies/1.2\r\nContent-Length: 16\r\n\r\n"
        + BODIES[1]
        + b"\r\n"
        + d
        + lwsp
        + b"\r\ncontent-description: no type\r\n\r\n"
        + BODIES[2]
        + b"\r\n"
        + d
        + b"\r\n\r\n"
        + BODIES[3]
        + b"\r\n"
        + d
        + b"--"
        + epilogue
    )


def parse(data: bytes, cuts: Iterable[int], content_type: str = CONTENT_TYPE, **options: int) -> list[Part]:
    """Feed *data* cut at the given offsets, then finish."""
    reader = Reader(parse_related(content_type), **options)  # type: ignore[arg-type]
    parts, start = [], 0
    for cut in [*cuts, len(data)]:
        parts += reader.feed(data[start:cut])
        start = cut
    reader.finish()
    return parts


def contents(parts: list[Part]) -> list[bytes]:
    return [p.read() for p in parts]


def test_four_parts_with_their_headers() -> None:
    parts = parse(body(), [])
    assert contents(parts) == BODIES
    assert [p.number for p in parts] == [1, 2, 3, 4]
    assert [p.content_type.essence for p in parts] == ["application/dicom"] * 4  # 3 and 4 from type=
    assert [p.transfer_syntax for p in parts] == [None, EXPLICIT_LE, None, None]
    assert parts[1].content_location == "/dicomweb/studies/1.2"
    assert parts[1].content_length == len(BODIES[1]) == 16
    assert parts[2].headers == {"content-description": "no type"}
    assert parts[3].headers == {}
    assert [p.size for p in parts] == [len(b) for b in BODIES]


def test_every_cut_position() -> None:
    data = body(preamble=b"preamble\r\n", epilogue=b"\r\nepilogue")
    for cut in range(len(data) + 1):
        assert contents(parse(data, [cut])) == BODIES, cut
    assert contents(parse(data, range(1, len(data)))) == BODIES  # one byte at a time


def test_every_three_way_cut_of_a_delimiter_and_headers() -> None:
    data = body()
    start = data.index(b"\r\n--", 10) - 3  # around part 2's delimiter and headers
    for a in range(start, start + 60):
        for b in range(a, start + 60):
            assert contents(parse(data, [a, b])) == BODIES, (a, b)


@pytest.mark.parametrize(
    "preamble",
    [b"", b"\r\n", b"This is a preamble.\r\n", b"\r\n\r\n", b"--not-the-boundary\r\n"],
    ids=["none", "crlf", "text", "two crlf", "other dashes"],
)
def test_preambles(preamble: bytes) -> None:
    assert contents(parse(body(preamble=preamble), [])) == BODIES


def test_whitespace_after_delimiters_and_epilogue() -> None:
    data = body(lwsp=b" \t ", epilogue=b"\r\n--" + BOUNDARY.encode() + b"\r\nignored part\r\n")
    assert contents(parse(data, [7, 8, 9])) == BODIES


@pytest.mark.parametrize(
    "content_type",
    [
        f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"',
        f"Multipart/Related; BOUNDARY={BOUNDARY}; Type=application/dicom",
        f'multipart/related; start="<1@pacsd>"; boundary={BOUNDARY}; start-info="x"; type="application/dicom"',
    ],
    ids=["quoted", "case and order", "start ignored"],
)
def test_request_content_types(content_type: str) -> None:
    related = parse_related(content_type)
    assert (related.boundary, related.type) == (BOUNDARY, "application/dicom")
    assert contents(parse(body(), [], content_type)) == BODIES


def test_boundary_with_spaces_and_punctuation_when_quoted() -> None:
    boundary = "simple boundary:'()+_,-./=?"
    data = b"".join(encode_parts([("application/dicom", b"x" * 10)], boundary))
    parts = parse(data, [3], f'multipart/related; type="application/dicom"; boundary="{boundary}"')
    assert contents(parts) == [b"x" * 10]


def test_untyped_part_without_type_parameter_is_text_plain() -> None:
    data = b"--" + BOUNDARY.encode() + b"\r\n\r\nhello\r\n--" + BOUNDARY.encode() + b"--"
    [part] = parse(data, [], f"multipart/related; boundary={BOUNDARY}")
    assert part.content_type.essence == "text/plain"  # RFC 2046 5.1's default: the route refuses it


@pytest.mark.parametrize(
    ("content_type", "reason"),
    [
        ('multipart/related; type="application/dicom"', "no boundary parameter"),
        ('multipart/related; type="application/dicom"; boundary=""', "empty boundary"),
        (f"multipart/related; boundary={'a' * 71}", "71 characters long, more than 70"),
        ('multipart/related; boundary="ab@cd"', "characters RFC 2046 does not allow"),
        ('multipart/related; boundary="ends in space "', "characters RFC 2046 does not allow"),
        ("multipart/mixed; boundary=abc", "not multipart/related"),
        ("application/dicom", "not multipart/related"),
        ("multipart/related; boundary", "malformed Content-Type"),
    ],
)
def test_bad_request_content_types(content_type: str, reason: str) -> None:
    with pytest.raises(MalformedMultipart, match=reason):
        parse_related(content_type)


def test_seventy_character_boundary_is_fine() -> None:
    assert parse_related(f"multipart/related; boundary={'a' * 70}").boundary == "a" * 70


def test_truncated_anywhere_raises_and_never_yields_a_partial_part() -> None:
    data = body()
    last_delimiter_end = data.rindex(b"\r\n--" + BOUNDARY.encode()) + len(BOUNDARY) + 4
    for end in range(len(data)):  # anything short of the close delimiter's "--"
        reader = Reader(parse_related(CONTENT_TYPE))
        parts = reader.feed(data[:end])
        with pytest.raises(MalformedMultipart, match="truncated|no parts"):
            reader.finish()
        # whatever was handed over is whole: its closing delimiter had arrived
        assert contents(parts) == BODIES[: len(parts)], end
        assert (len(parts) == 4) == (end >= last_delimiter_end), end


def test_truncation_message_names_the_place() -> None:
    data = body()
    with pytest.raises(
        MalformedMultipart, match=r"body ends in the body of part 3, before the closing delimiter \(truncated\)"
    ):
        parse(data[: data.index(BODIES[2]) + 5], [])
    with pytest.raises(MalformedMultipart, match="in the headers of part 2"):
        parse(data[: data.index(b"content-location")], [])
    with pytest.raises(MalformedMultipart, match="no parts"):
        parse(b"not multipart at all", [])


def test_no_parts() -> None:
    with pytest.raises(MalformedMultipart, match="no parts"):
        parse(b"--" + BOUNDARY.encode() + b"--\r\n", [])


def test_a_body_without_the_delimiter_is_refused_early() -> None:
    reader = Reader(parse_related(CONTENT_TYPE))
    fed = 0
    with pytest.raises(MalformedMultipart, match="no delimiter --b0und4ry-2f1e in the first 64 KiB: no parts"):
        while fed < 1 << 20:  # e.g. a bare DICOM file under a multipart Content-Type
            reader.feed(b"DICM" * 256)
            fed += 1024
    assert fed <= 64 * 1024


def test_part_without_header_body_separator() -> None:
    d = b"--" + BOUNDARY.encode()
    good = d + b"\r\nContent-Type: application/dicom\r\n\r\nDICM\r\n"
    for broken in (
        d + b"\r\nContent-Type: application/dicom\r\n" + d + b"--",  # headers straight into the next delimiter
        d + b"\r\n" + d + b"--",  # no headers, no empty line
        d + b"\r\nContent-Type: application/dicom\r\nDICM\r\n" + d + b"--",  # body where headers belong
    ):
        data = good + good + broken
        for cut in range(len(good) * 2, len(data) + 1):
            with pytest.raises(MalformedMultipart, match="part 3 has (no header/body separator|a malformed header)"):
                parse(data, [cut])
    with pytest.raises(MalformedMultipart, match="part 3 has no header/body separator"):
        parse(good + good + d + b"\r\nContent-Type: application/dicom\r\n" + d + b"--", [])


def test_oversized_headers_raise_as_soon_as_seen() -> None:
    d = b"--" + BOUNDARY.encode()
    reader = Reader(parse_related(CONTENT_TYPE))
    reader.feed(d + b"\r\n")
    fed = 0
    with pytest.raises(MalformedMultipart, match="part 1 headers larger than 16 KiB"):
        while fed < 10 * HEADER_LIMIT:  # an endless header: raise long before the body would end
            reader.feed(b"X-Padding: " + b"p" * 1000 + b"\r\n")
            fed += 1013
    assert fed <= HEADER_LIMIT < fed + 1013 + len(b"\r\n")  # refused on the feed that crossed the limit


@pytest.mark.parametrize(
    ("part", "reason"),
    [
        (b"Content-Type application/dicom\r\n\r\nx", "part 1 has a malformed header line"),
        (b" folded: no\r\n\r\nx", "part 1 has a malformed header line"),
        (b"Content-Type: a\r\ncontent-type: b\r\n\r\nx", "part 1 repeats its content-type header"),
        (b"Content-Type: application/\r\n\r\nx", "part 1 has a malformed Content-Type"),
        (b"Content-Length: 12x\r\n\r\nx", "part 1 has a malformed Content-Length"),
        (b"Content-Length: 2\r\n\r\nx", "part 1 has Content-Length 2 but 1 bytes"),
    ],
)
def test_bad_part_headers(part: bytes, reason: str) -> None:
    d = b"--" + BOUNDARY.encode()
    with pytest.raises(MalformedMultipart, match=reason):
        parse(d + b"\r\n" + part + b"\r\n" + d + b"--", [])


def test_delimiter_followed_by_junk() -> None:
    d = b"--" + BOUNDARY.encode()
    with pytest.raises(MalformedMultipart, match="delimiter of part 2 is followed by"):
        parse(d + b"\r\n\r\nx\r\n" + d + b"X\r\n\r\ny\r\n" + d + b"--", [])


def test_no_input_after_an_error() -> None:
    reader = Reader(parse_related(CONTENT_TYPE))
    with pytest.raises(MalformedMultipart):
        reader.feed(b"--" + BOUNDARY.encode() + b"junk\r\n")
    with pytest.raises(MalformedMultipart, match="already found malformed"):
        reader.feed(b"more")


def test_big_part_spools_to_the_directory_and_buffer_stays_small(tmp_path: Path) -> None:
    """A 50 MB part in 1 KB chunks: past the memory limit it is in a file
    in the spool directory, and the reader never holds back more than a
    delimiter's length, so each byte is searched a bounded number of times."""
    d = b"--" + BOUNDARY.encode()
    block = bytes(range(256)) * 4  # 1 KiB, with CR, LF and dashes in it
    reader = Reader(parse_related(CONTENT_TYPE), spool_dir=tmp_path)
    assert reader.feed(d + b"\r\nContent-Type: application/dicom\r\n\r\n") == []
    delimiter_length = len(d) + 2
    most = 0
    for _ in range(50 * 1024):
        assert reader.feed(block) == []
        most = max(most, reader.buffered)
    [part] = reader.feed(b"\r\n" + d + b"--\r\n")
    reader.finish()
    assert most < delimiter_length
    assert part.size == 50 * 1024 * 1024
    assert part.body._rolled  # type: ignore[attr-defined]  # on disk, not in memory
    assert os.readlink(f"/proc/self/fd/{part.body.fileno()}").startswith(str(tmp_path))
    assert part.body.read(1024) == block
    part.body.seek(-1024, os.SEEK_END)
    assert part.body.read() == block
    part.close()


def test_small_part_stays_in_memory(tmp_path: Path) -> None:
    [part] = parse(b"".join(encode_parts([("application/dicom", b"x" * 1000)], BOUNDARY)), [])
    assert not part.body._rolled  # type: ignore[attr-defined]
    [part] = parse(b"".join(encode_parts([("application/dicom", b"x" * 1001)], BOUNDARY)), [], memory_limit=1000)
    assert part.body._rolled  # type: ignore[attr-defined]


def spool_files(directory: Path) -> int:
    """Open files of this process in *directory* (spool files are unlinked)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(str(directory))
        except OSError:
            pass
    return count


async def chunks_of(data: bytes, size: int, log: list[int]) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        log.append(start + size)  # how far the reader has pulled
        yield data[start : start + size]
        await anyio.sleep(0)
    yield b""  # Starlette ends its stream with an empty chunk


def test_async_reader_hands_over_each_part_before_reading_on(tmp_path: Path) -> None:
    parts_data = [b"A" * 3000, b"B" * 3000, b"C" * 3000]
    data = b"".join(encode_parts([("application/dicom", p) for p in parts_data], BOUNDARY))
    pulled: list[int] = []

    async def run() -> list[tuple[bytes, int]]:
        seen = []
        async for part in read_parts(chunks_of(data, 100, pulled), CONTENT_TYPE, tmp_path, memory_limit=1000):
            seen.append((part.read(), pulled[-1]))
            part.close()
        return seen

    seen = anyio.run(run)
    assert [content for content, _ in seen] == parts_data
    for n, (_, pulled_then) in enumerate(seen[:-1]):
        next_body = data.index(parts_data[n + 1])
        assert pulled_then <= next_body + 100  # part n came before part n+1's body was read
    assert spool_files(tmp_path) == 0


def test_async_reader_raises_on_truncation_and_closes_its_files(tmp_path: Path) -> None:
    data = b"".join(encode_parts([("application/dicom", b"A" * 5000), ("application/dicom", b"B" * 5000)], BOUNDARY))
    truncated = data[: data.index(b"B" * 5000) + 4000]
    kept: list[Part] = []

    async def run() -> None:
        async for part in read_parts(chunks_of(truncated, 512, []), CONTENT_TYPE, tmp_path, memory_limit=1000):
            kept.append(part)

    with pytest.raises(MalformedMultipart, match="body of part 2.*truncated"):
        anyio.run(run)
    assert [p.read() for p in kept] == [b"A" * 5000]
    assert spool_files(tmp_path) == 1  # part 1's, the caller's to close; part 2's was closed
    kept[0].close()
    assert spool_files(tmp_path) == 0


def test_async_reader_closes_parts_not_taken(tmp_path: Path) -> None:
    data = b"".join(encode_parts([("application/dicom", bytes(2000))] * 3, BOUNDARY))

    async def run() -> Part:
        stream = read_parts(chunks_of(data, len(data), []), CONTENT_TYPE, tmp_path, memory_limit=1000)
        first = await stream.__anext__()  # all three parts completed in one chunk
        await stream.aclose()
        return first

    first = anyio.run(run)
    assert spool_files(tmp_path) == 1  # only the part handed over
    first.close()


def test_encode_parts_round_trip() -> None:
    parts: list[tuple[str | dict[str, str], bytes]] = [
        (f"application/dicom; transfer-syntax={EXPLICIT_LE}", b"\x00\r\n--" * 100),
        ({"Content-Type": "application/octet-stream", "Content-Location": "/bulk/1"}, b"pixels"),
    ]
    data = b"".join(encode_parts(parts, BOUNDARY))
    assert data.startswith(b"--" + BOUNDARY.encode() + b"\r\n")
    assert data.endswith(b"--" + BOUNDARY.encode() + b"--\r\n")
    decoded = parse(data, range(7, len(data), 7))
    assert contents(decoded) == [b for _, b in parts]
    assert decoded[0].transfer_syntax == EXPLICIT_LE
    assert decoded[1].content_location == "/bulk/1"
    with pytest.raises(ValueError, match="not a valid RFC 2046 boundary"):
        list(encode_parts(parts, "x" * 71))
