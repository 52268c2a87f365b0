"""Why an instance could not be converted to another transfer syntax.

Kept apart from :mod:`pacsd.domain.errors` until the retrieve adapters map
it to their statuses (issue 14)."""

from __future__ import annotations


class ConversionFailed(Exception):
    """The object could not be re-encoded from *source* to *target*;
    ``reason`` is the codec's (or the reader's) own words."""

    def __init__(self, source: str, target: str, reason: str) -> None:
        super().__init__(f"cannot convert from {source} to {target}: {reason}")
        self.source = source
        self.target = target
        self.reason = reason
