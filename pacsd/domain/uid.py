"""UID syntax (PS3.5 9.1) and pacsd's own implementation identifiers."""

from __future__ import annotations

import re

from pacsd import __version__
from pacsd.domain.errors import InvalidUID

# Components of digits separated by single dots: no empty component, so no
# "." or ".." can ever appear, which is what lets storage build paths from
# UIDs. Leading zeros are tolerated: real devices send them, and refusing
# their images would lose data for no safety gain.
_UID = re.compile(r"[0-9]+(\.[0-9]+)*\Z")

# A UUID-derived root (PS3.5 B.2) so pacsd needs no registered org root.
IMPLEMENTATION_CLASS_UID = "2.25.273934932989663336348910779171408729090"
IMPLEMENTATION_VERSION_NAME = f"PACSD_{__version__}"[:16]


def is_valid(value: str) -> bool:
    return len(value) <= 64 and _UID.match(value) is not None


def require(value: str, what: str) -> str:
    """Return *value* if it is a valid UID, else raise :class:`InvalidUID`."""
    if not value:
        raise InvalidUID(f"{what} is missing")
    if not is_valid(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidUID(f"{what} is not a valid UID: {shown!r}")
    return value
