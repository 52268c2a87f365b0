"""multipart/related bodies (RFC 2046 5.1, RFC 2387) as STOW-RS sends them
(PS3.18 8.6, 10.5): read as they stream, and built for WADO-RS answers.

:class:`Reader` is a push parser: :meth:`Reader.feed` takes chunks cut
anywhere (inside a delimiter, inside part headers) and returns the parts
they completed; :meth:`Reader.finish` says the body has ended. Each body
goes into a ``SpooledTemporaryFile``: in memory up to ``memory_limit``,
on disk in ``spool_dir`` past it, so a 2 GB part never sits in memory.
:func:`read_parts` drives it from an async iterator of chunks (Starlette's
``request.stream()``). A part's file belongs to the caller once handed over
(:meth:`Part.close`); the reader closes those it has not handed over.

The work is linear in the body: each byte is searched once, plus the
delimiter's length of overlap between chunks, and consumed bytes are
dropped only once per chunk. Part headers are capped (``header_limit``).

Tolerated: a preamble (up to 64 KiB) and/or a leading CRLF before the
first delimiter, spaces or tabs after a delimiter, an epilogue after the
close delimiter, parts without headers or without a Content-Type (theirs
is the body's ``type`` parameter, else ``text/plain`` as RFC 2046 5.1
says), header names in any case. Lines end in CRLF. Anything else raises
:class:`MalformedMultipart` as soon as it is seen, naming the problem and
the part (counted from 1). A part is handed over only once the delimiter
after it has arrived; a body that ends before the close delimiter raises
(in :meth:`Reader.finish`), so a caller that must store all or nothing
keeps the parts until the reader has finished.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum, auto
from pathlib import Path
from typing import IO

from pacsd.web.accept import MalformedMediaType, MediaType, parse_media_type

MEMORY_LIMIT = 1 << 20
HEADER_LIMIT = 16 << 10
PREAMBLE_LIMIT = 64 << 10  # a real preamble is a line or two; past this the boundary is wrong
CRLF = b"\r\n"
# RFC 2046 5.1.1 bchars: 1 to 70 of them, not ending in a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_LWSP = b" \t"


class MalformedMultipart(ValueError):
    """The body or its Content-Type is not a well-formed multipart/related
    one; the message names the problem (for a 400 answer)."""


class PartTooLarge(MalformedMultipart):
    """A part's body grew past the reader's ``part_limit`` (for a 413 answer)."""


@dataclass(frozen=True)
class Related:
    """What a multipart/related Content-Type says."""

    boundary: str
    type: str | None  # the root (here: every) part's media type, lower-case


@dataclass
class Part:
    """One body part: its headers (names lower-case) and its body, a file
    positioned at its start."""

    number: int  # from 1, in body order
    headers: dict[str, str]
    content_type: MediaType
    body: IO[bytes]
    size: int

    @property
    def content_location(self) -> str | None:
        return self.headers.get("content-location")

    @property
    def content_length(self) -> int | None:
        """The part's own Content-Length; checked against its body."""
        value = self.headers.get("content-length")
        return None if value is None else int(value)

    @property
    def transfer_syntax(self) -> str | None:
        """The ``transfer-syntax`` parameter of the part's Content-Type."""
        return self.content_type.param("transfer-syntax")

    def read(self) -> bytes:
        self.body.seek(0)
        return self.body.read()

    def close(self) -> None:
        self.body.close()


def parse_related(content_type: str) -> Related:
    """The boundary and type of a ``multipart/related`` Content-Type;
    raises :class:`MalformedMultipart` for another type, a missing,
    empty, over-long (> 70) or ill-formed boundary."""
    try:
        media = parse_media_type(content_type)
    except MalformedMediaType as exc:
        raise MalformedMultipart(f"malformed Content-Type: {exc}") from None
    if media.essence != "multipart/related":
        raise MalformedMultipart(f"Content-Type is {media.essence}, not multipart/related")
    boundary = media.param("boundary")
    if boundary is None:
        raise MalformedMultipart("no boundary parameter in the Content-Type")
    if not boundary:
        raise MalformedMultipart("empty boundary parameter")
    if len(boundary) > 70:
        raise MalformedMultipart(f"boundary is {len(boundary)} characters long, more than 70")
    if not _BOUNDARY.fullmatch(boundary):
        raise MalformedMultipart(f"boundary {boundary!r} has characters RFC 2046 does not allow")
    return Related(boundary, media.param("type"))


class _State(Enum):
    PREAMBLE = auto()
    AFTER_DELIMITER = auto()
    HEADERS = auto()
    BODY = auto()
    EPILOGUE = auto()


@dataclass
class Reader:
    """A push parser of one multipart body; see the module's docstring."""

    related: Related
    spool_dir: Path | None = None
    memory_limit: int = MEMORY_LIMIT
    header_limit: int = HEADER_LIMIT
    part_limit: int | None = None  # bytes of one part's body; PartTooLarge past it, as it streams
    # The delimiter is CRLF "--" boundary; the body is read as if it began
    # with CRLF, so a first delimiter without a preamble needs no special case.
    _buffer: bytearray = field(init=False, default_factory=lambda: bytearray(CRLF))
    _state: _State = field(init=False, default=_State.PREAMBLE)
    _searched: int = field(init=False, default=0)  # buffer offset before which nothing is left to find
    _parts: int = field(init=False, default=0)
    _dropped: int = field(init=False, default=0)  # bytes consumed and dropped from the buffer
    _current: Part | None = field(init=False, default=None)
    _failed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._delimiter = b"\r\n--" + self.related.boundary.encode("ascii")

    @property
    def buffered(self) -> int:
        """Bytes held back for the next search: less than a delimiter's
        length while a body streams, so memory and rescans stay bounded."""
        return len(self._buffer)

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[Part]:
        """Take the next bytes of the body; return the parts they completed."""
        if self._failed:
            raise MalformedMultipart("the body was already found malformed")
        if self._state is _State.EPILOGUE or not chunk:
            return []  # the epilogue is ignored (RFC 2046)
        self._buffer += chunk
        try:
            done, at = self._consume()
        except MalformedMultipart:
            self.abort()
            raise
        del self._buffer[:at]
        self._dropped += at
        self._searched = max(0, self._searched - at)
        return done

    def finish(self) -> None:
        """The body has ended; raise unless it ended after the close delimiter."""
        if self._state is _State.EPILOGUE:
            return
        self.abort()
        if self._state is _State.PREAMBLE:
            raise MalformedMultipart(f"no delimiter --{self.related.boundary} in the body: no parts")
        where = {
            _State.AFTER_DELIMITER: f"after the delimiter of part {self._parts + 1}",
            _State.HEADERS: f"in the headers of part {self._parts}",
            _State.BODY: f"in the body of part {self._parts}",
        }[self._state]
        raise MalformedMultipart(f"body ends {where}, before the closing delimiter (truncated)")

    def abort(self) -> None:
        """Drop the part being read (its spool file) and refuse more input."""
        self._failed = True
        if self._current is not None:
            self._current.close()
            self._current = None

    def _consume(self) -> tuple[list[Part], int]:
        """Advance through the buffer as far as it allows; return the
        completed parts and how many leading bytes are consumed."""
        done: list[Part] = []
        buffer, at = self._buffer, 0
        while True:
            if self._state is _State.PREAMBLE:
                found = self._find(self._delimiter, at)
                if found < 0:
                    if self._dropped + len(buffer) > PREAMBLE_LIMIT:
                        limit = f"{PREAMBLE_LIMIT // 1024} KiB"
                        raise MalformedMultipart(
                            f"no delimiter --{self.related.boundary} in the first {limit}: no parts"
                        )
                    return done, self._keep(len(self._delimiter) - 1)
                at = found + len(self._delimiter)
                self._state = _State.AFTER_DELIMITER
            elif self._state is _State.AFTER_DELIMITER:
                end = self._after_delimiter(at)
                if end is None:
                    return done, at
                if end < 0:  # the close delimiter
                    if self._parts == 0:
                        raise MalformedMultipart("no parts: the body closes right after its first delimiter")
                    self._state = _State.EPILOGUE
                    return done, len(buffer)
                at = end
                self._parts += 1
                self._state = _State.HEADERS
                self._searched = at
            elif self._state is _State.HEADERS:
                end = self._headers_end(at)
                if end is None:
                    return done, at
                self._current = self._open_part(bytes(buffer[at:end]))
                at = end + 2  # past the empty line
                self._state = _State.BODY
                self._searched = at
            elif self._state is _State.BODY:
                assert self._current is not None
                found = self._find(self._delimiter, at)
                if found < 0:
                    keep = self._keep(len(self._delimiter) - 1)
                    if keep > at:
                        self._write(buffer, at, keep)
                    return done, max(at, keep)
                self._write(buffer, at, found)
                done.append(self._close_part())
                at = found + len(self._delimiter)
                self._state = _State.AFTER_DELIMITER
            else:
                return done, len(buffer)

    def _find(self, needle: bytes, at: int) -> int:
        found = self._buffer.find(needle, max(at, self._searched))
        if found < 0:
            self._searched = max(at, len(self._buffer) - len(needle) + 1)
        return found

    def _keep(self, overlap: int) -> int:
        """Where the bytes that could still begin a delimiter start."""
        return max(0, len(self._buffer) - overlap)

    def _after_delimiter(self, at: int) -> int | None:
        """After a delimiter: -1 for the close delimiter, the offset past its
        line's CRLF for a part's, None when more bytes are needed."""
        buffer = self._buffer
        if len(buffer) - at < 2:
            return None
        if buffer[at : at + 2] == b"--":
            return -1
        end = at
        while end < len(buffer) and buffer[end] in _LWSP:
            end += 1
            if end - at > self.header_limit:
                raise MalformedMultipart(f"the delimiter of part {self._parts + 1} is followed by too much whitespace")
        if len(buffer) - end < 2:
            return None
        if buffer[end : end + 2] != CRLF:
            raise MalformedMultipart(
                f"the delimiter of part {self._parts + 1} is followed by {bytes(buffer[at : at + 16])!r}, "
                "not a line end (is the boundary in the content?)"
            )
        return end + 2

    def _headers_end(self, at: int) -> int | None:
        """The offset of the empty line (its CRLF) that ends the header block
        opening at *at*, or None when more bytes are needed."""
        buffer, delimiter = self._buffer, self._delimiter
        dash_boundary = delimiter[2:]
        head = buffer[at : at + len(dash_boundary)]
        if dash_boundary.startswith(head):  # a delimiter line where the headers belong?
            if len(head) == len(dash_boundary):
                raise MalformedMultipart(f"part {self._parts} has no header/body separator (empty line)")
            return None
        if buffer.startswith(CRLF, at):  # no headers at all
            sep = at
        else:
            found = buffer.find(b"\r\n\r\n", max(at, self._searched - 3))
            sep = -1 if found < 0 else found + 2
        # A delimiter before the empty line (or using its CRLF) ends the part
        # before its body begins: RFC 2046 allows it, a STOW part cannot be one.
        scan_from = max(at, self._searched - len(delimiter) + 1)
        scan_to = len(buffer) if sep < 0 else sep + len(delimiter)
        if buffer.find(delimiter, scan_from, scan_to) >= 0:
            raise MalformedMultipart(f"part {self._parts} has no header/body separator (empty line)")
        if sep - at > self.header_limit or (sep < 0 and len(buffer) - at > self.header_limit):
            raise MalformedMultipart(f"part {self._parts} headers larger than {self.header_limit // 1024} KiB")
        if sep < 0:
            self._searched = len(buffer)
            return None
        if len(buffer) < sep + len(delimiter) and delimiter.startswith(buffer[sep:]):
            self._searched = sep  # the empty line may yet turn out to open a delimiter
            return None
        return sep

    def _open_part(self, block: bytes) -> Part:
        number = self._parts
        headers: dict[str, str] = {}
        for line in block.split(CRLF)[:-1]:
            name, colon, value = line.partition(b":")
            name = name.strip()  # a line folded or without a colon names no header
            if not colon or not name or line[:1] in _LWSP:
                raise MalformedMultipart(f"part {number} has a malformed header line {line[:80]!r}")
            key = name.decode("latin-1").lower()
            if key in headers:
                raise MalformedMultipart(f"part {number} repeats its {key} header")
            headers[key] = value.strip(b" \t").decode("latin-1")
        declared = headers.get("content-type")
        try:
            content_type = parse_media_type(declared or self.related.type or "text/plain")
        except MalformedMediaType as exc:
            raise MalformedMultipart(f"part {number} has a malformed Content-Type: {exc}") from None
        length = headers.get("content-length")
        if length is not None and not (length.isascii() and length.isdigit()):
            raise MalformedMultipart(f"part {number} has a malformed Content-Length {length!r}")
        spool = tempfile.SpooledTemporaryFile(
            max_size=self.memory_limit, dir=None if self.spool_dir is None else str(self.spool_dir)
        )
        return Part(number, headers, content_type, spool, 0)

    def _write(self, buffer: bytearray, start: int, end: int) -> None:
        assert self._current is not None
        if end > start:
            if self.part_limit is not None and self._current.size + end - start > self.part_limit:
                raise PartTooLarge(f"part {self._current.number} is larger than {self.part_limit} bytes")
            with memoryview(buffer) as view:  # released before the buffer is resized
                self._current.body.write(view[start:end])
            self._current.size += end - start

    def _close_part(self) -> Part:
        part, self._current = self._current, None
        assert part is not None
        declared = part.content_length
        if declared is not None and declared != part.size:
            part.close()
            raise MalformedMultipart(f"part {part.number} has Content-Length {declared} but {part.size} bytes")
        part.body.seek(0)
        return part


async def read_parts(
    chunks: AsyncIterable[bytes],
    content_type: str,
    spool_dir: Path | None = None,
    memory_limit: int = MEMORY_LIMIT,
    header_limit: int = HEADER_LIMIT,
    part_limit: int | None = None,
) -> AsyncGenerator[Part, None]:
    """The parts of a streamed multipart/related body, each complete when
    yielded; raises :class:`MalformedMultipart`. Parts completed but not
    yet taken are closed if the caller stops early or the body fails."""
    reader = Reader(parse_related(content_type), spool_dir, memory_limit, header_limit, part_limit)
    pending: list[Part] = []
    try:
        async for chunk in chunks:
            pending = reader.feed(chunk)
            while pending:
                yield pending.pop(0)
        reader.finish()
    finally:
        reader.abort()
        for part in pending:
            part.close()


def encode_parts(parts: Iterable[tuple[str | MediaType | dict[str, str], bytes]], boundary: str) -> Iterator[bytes]:
    """The chunks of a multipart/related body: for each part its headers
    (a Content-Type, or a dict of header names and values) and its bytes;
    ends with the close delimiter. The caller picks a boundary that does
    not occur in the content (a random one, e.g. ``uuid4().hex``)."""
    if not _BOUNDARY.fullmatch(boundary):
        raise ValueError(f"boundary {boundary!r} is not a valid RFC 2046 boundary")
    delimiter = b"--" + boundary.encode("ascii")
    for headers, body in parts:
        fields = headers if isinstance(headers, dict) else {"Content-Type": str(headers)}
        head = b"".join(f"{name}: {value}".encode("latin-1") + CRLF for name, value in fields.items())
        yield delimiter + CRLF + head + CRLF
        yield body
        yield CRLF
    yield delimiter + b"--" + CRLF
