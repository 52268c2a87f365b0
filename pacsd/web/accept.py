"""Media types and HTTP Accept negotiation (RFC 9110 8.3.1, 12.5.1) for
the DICOMweb media types (PS3.18 8.7).

Pure: no web framework, no pacsd imports. A route states what it can
produce (its *offers*, in its order of preference) and :func:`negotiate`
picks one against the request's Accept header:

- each offer's quality is the q of the most specific media range matching
  it (``type/subtype;params`` > ``type/subtype`` > ``type/*`` > ``*/*``);
  a range's parameters must all be on the offer with equal values
  (``type`` and ``charset`` compare case-insensitively); q=0 excludes;
- the offer with the highest quality wins, ties go to the route's order;
- ``transfer-syntax`` is not matched but collected (PS3.18 8.7.3.5): it
  is the client's request for the instances' encoding, ``*`` meaning "as
  stored" and a UID "convert to this". :class:`Chosen` carries the
  requests, best first; ``None`` stands for a range without the
  parameter, where PS3.18 makes Explicit VR Little Endian the default for
  ``application/dicom``. An offer that itself fixes a ``transfer-syntax``
  matches only ranges naming ``*``, that syntax, or none.

Malformed list elements (``text/``, ``a/b;q=2``, an unterminated quoted
string) are ignored, as browsers and servers commonly do: a header made
only of them accepts nothing (406), and a missing or blank header means
``*/*``. Three lenient readings follow clients seen in the wild: an
unquoted parameter value may hold "/" (``type=application/dicom``, as
older OHIF sends it), a bare ``*`` is ``*/*`` and a q without its leading
zero (``q=.2``) is read (Java's ``HttpURLConnection`` sends ``*; q=.2``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

TRANSFER_SYNTAX = "transfer-syntax"
CASELESS_PARAMS = frozenset(("type", "charset"))

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Unquoted values are read up to the next separator, not only as tokens:
# older OHIF sends type=application/octet-stream without the quotes "/" needs.
_BARE_VALUE = re.compile(r'[^;,\s"]+')
_QVALUE = re.compile(r"(?:0?\.[0-9]{1,3}|[01](?:\.[0-9]{0,3})?)")


class MalformedMediaType(ValueError):
    """A media type that does not follow RFC 9110 8.3.1; the message says where."""


@dataclass(frozen=True)
class MediaType:
    """``type/subtype`` with parameters: names and type/subtype lower-case,
    values unquoted (and lower-case for ``type`` and ``charset``)."""

    type: str
    subtype: str
    params: tuple[tuple[str, str], ...] = ()

    @property
    def essence(self) -> str:
        return f"{self.type}/{self.subtype}"

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None

    def with_param(self, name: str, value: str) -> MediaType:
        """This type with *name* set to *value* (replacing one present)."""
        kept = tuple((k, v) for k, v in self.params if k != name)
        return MediaType(self.type, self.subtype, (*kept, (name, _normal(name, value))))

    def __str__(self) -> str:
        return self.essence + "".join(f"; {k}={_quote(v)}" for k, v in self.params)


@dataclass(frozen=True)
class MediaRange:
    """One element of an Accept header: a media type (``*`` allowed) and its weight."""

    media: MediaType
    q: float
    position: int  # in the header, for stable ordering

    def specificity(self) -> tuple[int, int, int]:
        params = sum(1 for name, value in self.media.params if name != TRANSFER_SYNTAX and not _any_type(name, value))
        return (self.media.type != "*", self.media.subtype != "*", params)


@dataclass(frozen=True)
class Chosen:
    """The offer :func:`negotiate` picked, its quality and the client's
    transfer syntax requests for it, best first (``"*"`` = as stored, a
    UID = that syntax, ``None`` = no preference stated, the default)."""

    media_type: MediaType
    q: float
    transfer_syntaxes: tuple[str | None, ...]

    @property
    def transfer_syntax(self) -> str | None:
        """The most wanted request; ``None`` when the client stated none."""
        return self.transfer_syntaxes[0] if self.transfer_syntaxes else None


def parse_media_type(text: str) -> MediaType:
    """``type/subtype *(; name=value)``; raises :class:`MalformedMediaType`."""
    media, rest = _media_type(text, 0, allow_wildcards=False)
    if rest != len(text):
        raise MalformedMediaType(f"unexpected {text[rest]!r} at position {rest} in {text!r}")
    return media


def parse_accept(header: str | None) -> list[MediaRange]:
    """The media ranges of an Accept header, in header order; ``*/*`` when
    the header is missing or blank; malformed elements left out."""
    if header is None or not header.strip(" \t,"):
        return [MediaRange(MediaType("*", "*"), 1.0, 0)]
    ranges = []
    for position, element in enumerate(_split_list(header)):
        parsed = _media_range(element, position)
        if parsed is not None:
            ranges.append(parsed)
    return ranges


def negotiate(accept: str | None, offers: Sequence[str | MediaType]) -> Chosen | None:
    """The offer to answer with, or ``None`` (406) when none is acceptable."""
    ranges = parse_accept(accept)
    best: Chosen | None = None
    for offer in offers:
        media = parse_media_type(offer) if isinstance(offer, str) else offer
        chosen = _quality(media, ranges)
        if chosen is not None and chosen.q > 0 and (best is None or chosen.q > best.q):
            best = chosen
    return best


def _quality(offer: MediaType, ranges: Iterable[MediaRange]) -> Chosen | None:
    matching = [r for r in ranges if _matches(r.media, offer)]
    # A range that only refuses one syntax (transfer-syntax=X;q=0) vetoes that
    # syntax, not the media type: other ranges still decide the offer's quality.
    vetoed = {r.media.param(TRANSFER_SYNTAX) for r in matching if r.q == 0 and r.media.param(TRANSFER_SYNTAX)}
    weighing = [r for r in matching if not (r.q == 0 and r.media.param(TRANSFER_SYNTAX))]
    if not weighing:
        return None
    top = max(r.specificity() for r in weighing)
    q = max(r.q for r in weighing if r.specificity() == top)
    # best q first, then the more specific range, then header order
    wanted = sorted((r for r in weighing if r.q > 0), key=lambda r: (-r.q, [-s for s in r.specificity()], r.position))
    syntaxes: list[str | None] = []
    for r in wanted:
        syntax = r.media.param(TRANSFER_SYNTAX)
        if syntax not in syntaxes and syntax not in vetoed:
            syntaxes.append(syntax)
    return Chosen(offer, q, tuple(syntaxes))


def _matches(range_: MediaType, offer: MediaType) -> bool:
    if range_.type not in ("*", offer.type):
        return False
    if range_.subtype not in ("*", offer.subtype):
        return False
    for name, value in range_.params:
        have = offer.param(name)
        if name == TRANSFER_SYNTAX:
            if have is not None and value not in ("*", have):
                return False
        elif have != value and not _any_type(name, value):
            return False
    return True


def _any_type(name: str, value: str) -> bool:
    """``type="*/*"`` (dicomweb-client's default on multipart/related): any part type."""
    return name == "type" and value == "*/*"


def _media_range(element: str, position: int) -> MediaRange | None:
    text = element.strip(" \t")
    if text == "*" or text.startswith(("*;", "* ")):  # Java's bare "*"
        text = "*/*" + text[1:]
    try:
        media, end = _media_type(text, 0, allow_wildcards=True)
    except MalformedMediaType:
        return None
    if end != len(text) or (media.type == "*" and media.subtype != "*"):
        return None
    q = 1.0
    params = []
    for name, value in media.params:
        if name == "q":
            if not _QVALUE.fullmatch(value) or float(value) > 1:
                return None
            q = float(value)
            break  # what follows q are accept extensions (RFC 7231), not media type parameters
        params.append((name, value))
    return MediaRange(MediaType(media.type, media.subtype, tuple(params)), q, position)


def _media_type(text: str, at: int, allow_wildcards: bool) -> tuple[MediaType, int]:
    """Parse a media type starting at *at*; return it and the end position."""
    n = len(text)
    at = _skip_ows(text, at)
    type_, at = _token(text, at, "type")
    if at >= n or text[at] != "/":
        raise MalformedMediaType(f"no '/' after the type in {text!r}")
    subtype, at = _token(text, at + 1, "subtype")
    if not allow_wildcards and "*" in (type_, subtype):
        raise MalformedMediaType(f"a wildcard in {text!r}")
    params: list[tuple[str, str]] = []
    while True:
        at = _skip_ows(text, at)
        if at >= n or text[at] != ";":
            break
        at = _skip_ows(text, at + 1)
        if at >= n or text[at] == ";":  # an empty parameter ("a/b; ;c=d") is allowed
            continue
        name, at = _token(text, at, "parameter name")
        name = name.lower()
        if at >= n or text[at] != "=":
            raise MalformedMediaType(f"parameter {name!r} has no value in {text!r}")
        at += 1
        if at < n and text[at] == '"':
            value, at = _quoted(text, at)
        else:
            match = _BARE_VALUE.match(text, at)
            if match is None:
                raise MalformedMediaType(f"parameter {name!r} has no value in {text!r}")
            value, at = match.group(), match.end()
        params.append((name, _normal(name, value)))
    return MediaType(type_.lower(), subtype.lower(), tuple(params)), _skip_ows(text, at)


def _token(text: str, at: int, what: str) -> tuple[str, int]:
    match = _TOKEN.match(text, at)
    if match is None:
        raise MalformedMediaType(f"no {what} at position {at} in {text!r}")
    return match.group(), match.end()


def _quoted(text: str, at: int) -> tuple[str, int]:
    """The value of the quoted-string opening at *at*, and the position after it."""
    out: list[str] = []
    at += 1
    while at < len(text):
        char = text[at]
        if char == '"':
            return "".join(out), at + 1
        if char == "\\" and at + 1 < len(text):
            at += 1
            char = text[at]
        out.append(char)
        at += 1
    raise MalformedMediaType(f"unterminated quoted string in {text!r}")


def _skip_ows(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t":
        at += 1
    return at


def _split_list(header: str) -> list[str]:
    """Split on commas outside quoted strings; empty elements dropped (RFC 9110 5.6.1)."""
    elements: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in header:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            elements.append("".join(current))
            current = []
            continue
        current.append(char)
    elements.append("".join(current))
    return [e for e in elements if e.strip(" \t")]


def _normal(name: str, value: str) -> str:
    return value.lower() if name in CASELESS_PARAMS else value


def _quote(value: str) -> str:
    if _TOKEN.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
