"""Bounded inflation of Deflated Explicit VR Little Endian datasets (PS3.5 A.5).

A deflate stream of half a megabyte can inflate to gigabytes. Inflation
here goes in chunks, never past *max_bytes* of output, and gives up early
when the output outgrows its input by more than *max_ratio* (checked once
the output passes *ratio_after*, so small, highly compressible datasets
such as blank images still inflate).
"""

from __future__ import annotations

import zlib

from pacsd.domain.limits import BudgetExceeded

CHUNK = 1 << 20  # output bytes per step


class InflateError(ValueError):
    """The stream is not valid raw deflate, or ends early."""


def inflate(data: bytes | memoryview, max_bytes: int, max_ratio: int, ratio_after: int) -> bytes:
    """*data* (raw deflate, no zlib header) inflated; raises InflateError on
    a broken stream and BudgetExceeded (``max_inflated_bytes`` or
    ``max_inflate_ratio``) past the bounds."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    pending = memoryview(data)
    try:
        while not inflater.eof:
            # Never more output per step than is still allowed (plus one
            # byte, so that going past the bound is seen).
            step = min(CHUNK, max_bytes - len(out) + 1)
            out += inflater.decompress(pending, step)
            pending = memoryview(inflater.unconsumed_tail)
            if len(out) > max_bytes:
                raise BudgetExceeded(
                    "max_inflated_bytes",
                    f"deflated dataset inflates to more than {max_bytes} bytes (max_inflated_bytes)",
                )
            consumed = len(data) - len(pending)
            if len(out) > ratio_after and len(out) > max_ratio * max(consumed, 1):
                raise BudgetExceeded(
                    "max_inflate_ratio",
                    f"deflated dataset inflates more than {max_ratio} times (max_inflate_ratio): "
                    f"{len(out)} bytes from {consumed}",
                )
            if not pending and not inflater.eof:
                out += inflater.flush()
                if not inflater.eof:
                    raise InflateError("truncated dataset: deflate stream ends early")
    except zlib.error as exc:
        raise InflateError(f"deflated dataset cannot be inflated: {exc}") from None
    return bytes(out)
