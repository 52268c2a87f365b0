"""The absolute base URL a client reached pacsd by, for the URLs answers
hand out (RetrieveURL, BulkDataURI, Location).

Behind a reverse proxy the request's own Host and scheme are the proxy's
upstream side, so the proxy's headers win, in this order: ``Forwarded``
(RFC 7239, its first element: the client-facing hop), then
``X-Forwarded-Proto`` / ``X-Forwarded-Host`` (first value of each), then
the request's ``Host`` and scheme. A value that is not a plain host[:port]
or http/https is ignored, so a header cannot inject a path or a second URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.requests import Request

_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_~]+)(:[0-9]{1,5})?\Z")
_SCHEMES = ("http", "https")


def base_url(headers: Mapping[str, str], scheme: str, host: str) -> str:
    """``scheme://host[:port]`` as the client sees it (no trailing slash);
    *scheme* and *host* are the request's own, used when no proxy header
    says otherwise. *headers* is read with lower-case names."""
    proto, name = _forwarded(headers.get("forwarded", ""))
    proto = proto or _first(headers.get("x-forwarded-proto", "")).lower()
    name = name or _first(headers.get("x-forwarded-host", ""))
    if proto not in _SCHEMES:
        proto = scheme if scheme in _SCHEMES else "http"
    if not _HOST.match(name):
        name = host if _HOST.match(host) else "localhost"
    return f"{proto}://{name}"


def request_base(request: Request) -> str:
    """:func:`base_url` of a Starlette request."""
    server = request.scope.get("server") or ("localhost", None)
    own_host = request.headers.get("host") or (f"{server[0]}:{server[1]}" if server[1] else str(server[0]))
    # dicomweb-client sends its Host without the port: a client that reached
    # our own address directly did so on the port we listen on.
    default_port = {"http": 80, "https": 443}.get(request.url.scheme)
    if own_host == server[0] and server[1] and server[1] != default_port:
        own_host = f"{own_host}:{server[1]}"
    return base_url(request.headers, request.url.scheme, own_host)


def _first(value: str) -> str:
    return value.split(",")[0].strip()


def _forwarded(value: str) -> tuple[str, str]:
    """(proto, host) of the first element of a Forwarded header; '' for
    what it does not say."""
    proto = host = ""
    for pair in _first_element(value).split(";"):
        name, _, raw = pair.partition("=")
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1].replace('\\"', '"')
        if name.strip().lower() == "proto":
            proto = raw.lower()
        elif name.strip().lower() == "host":
            host = raw
    return proto, host


def _first_element(value: str) -> str:
    """Up to the first comma outside a quoted string."""
    quoted = False
    for n, ch in enumerate(value):
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            return value[:n]
    return value
