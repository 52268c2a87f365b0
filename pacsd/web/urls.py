"""Absolute URLs as the client sees them: behind a reverse proxy the
request names the proxy's scheme and host in ``Forwarded`` (RFC 7239) or
``X-Forwarded-Host`` / ``X-Forwarded-Proto``, not ours.

A forwarded value that is not a plausible host or scheme is ignored (the
request's own is used), so a header cannot inject text into a URL.
"""

from __future__ import annotations

import re

from starlette.requests import Request

_HOST = re.compile(r"(?:[A-Za-z0-9\-._~]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_SCHEMES = frozenset(("http", "https"))


def base_url(request: Request) -> str:
    """``scheme://host[:port]`` of the request as its client addressed it."""
    scheme, host = request.url.scheme, request.url.netloc
    forwarded = request.headers.get("forwarded")
    if forwarded is not None:
        pairs = _forwarded_pairs(forwarded.split(",")[0])  # the first proxy's view is the client's
        wanted_host, wanted_scheme = pairs.get("host"), pairs.get("proto")
    else:
        wanted_host = _first(request.headers.get("x-forwarded-host"))
        wanted_scheme = _first(request.headers.get("x-forwarded-proto"))
    if wanted_host and _HOST.fullmatch(wanted_host):
        host = wanted_host
    if wanted_scheme and wanted_scheme.lower() in _SCHEMES:
        scheme = wanted_scheme.lower()
    return f"{scheme}://{host}"


def _first(value: str | None) -> str | None:
    return None if value is None else value.split(",")[0].strip()


def _forwarded_pairs(element: str) -> dict[str, str]:
    """``for=..;host=..;proto=..`` as a dict (names lower-case, quotes removed)."""
    pairs: dict[str, str] = {}
    for pair in element.split(";"):
        name, equals, value = pair.partition("=")
        if equals:
            pairs[name.strip().lower()] = value.strip().strip('"')
    return pairs
