"""Which transfer syntax an instance goes out in (DESIGN.md, "Transcoding").

Pure rules: what pacsd can decode and encode (one table), the send plan for
one instance and one recipient, and the presentation contexts to propose
for a C-MOVE sub-association. The conversions themselves are
:mod:`pacsd.services.transcode`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from pydicom import uid as ts
from pydicom.uid import UID


class Loss(Enum):
    """Whether a syntax's pixel data may have lost information."""

    NEVER = "never"
    MAYBE = "maybe"  # the syntax has lossless and lossy modes (JPEG-LS near-lossless with NEAR=0, JPEG 2000)
    ALWAYS = "always"


@dataclass(frozen=True)
class Codec:
    decode: bool
    encode: bool
    loss: Loss

    @property
    def lossy(self) -> bool:
        """Encoding to it may discard information (what the lossy setting gates)."""
        return self.loss is not Loss.NEVER


# What pacsd can do with each transfer syntax: the one place to read it.
# Anything absent (MPEG, HTJ2K, JPIP, ...) is neither decoded nor encoded.
CODECS: dict[str, Codec] = {
    ts.ExplicitVRLittleEndian: Codec(decode=True, encode=True, loss=Loss.NEVER),
    ts.ImplicitVRLittleEndian: Codec(decode=True, encode=True, loss=Loss.NEVER),
    ts.ExplicitVRBigEndian: Codec(decode=True, encode=True, loss=Loss.NEVER),
    ts.DeflatedExplicitVRLittleEndian: Codec(decode=True, encode=False, loss=Loss.NEVER),
    ts.RLELossless: Codec(decode=True, encode=True, loss=Loss.NEVER),
    ts.JPEGBaseline8Bit: Codec(decode=True, encode=False, loss=Loss.ALWAYS),
    ts.JPEGExtended12Bit: Codec(decode=True, encode=False, loss=Loss.ALWAYS),
    ts.JPEGLossless: Codec(decode=True, encode=False, loss=Loss.NEVER),
    ts.JPEGLosslessSV1: Codec(decode=True, encode=False, loss=Loss.NEVER),
    ts.JPEGLSLossless: Codec(decode=True, encode=True, loss=Loss.NEVER),
    # The two lossy encoders are used only when the lossy setting is on.
    ts.JPEGLSNearLossless: Codec(decode=True, encode=True, loss=Loss.MAYBE),
    ts.JPEG2000Lossless: Codec(decode=True, encode=True, loss=Loss.NEVER),
    ts.JPEG2000: Codec(decode=True, encode=True, loss=Loss.MAYBE),
}

# Uncompressed targets, cheapest for the recipient first (PS3.5 A.1: every
# SCP takes Implicit VR LE; Big Endian is retired but still accepted by some).
UNCOMPRESSED: tuple[str, ...] = (ts.ExplicitVRLittleEndian, ts.ImplicitVRLittleEndian, ts.ExplicitVRBigEndian)
# Compressed lossless targets, in the order pacsd proposes them.
LOSSLESS_COMPRESSED: tuple[str, ...] = (ts.JPEGLSLossless, ts.JPEG2000Lossless, ts.RLELossless)

MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context IDs are the odd numbers 1-255


def can_decode(syntax: str) -> bool:
    codec = CODECS.get(syntax)
    return codec is not None and codec.decode


def can_encode(syntax: str) -> bool:
    codec = CODECS.get(syntax)
    return codec is not None and codec.encode


def is_lossy(syntax: str) -> bool:
    """Encoding to *syntax* may discard information (unknown syntaxes count as lossy)."""
    codec = CODECS.get(syntax)
    return codec is None or codec.lossy


def is_compressed(syntax: str) -> bool:
    return syntax not in UNCOMPRESSED and syntax != ts.DeflatedExplicitVRLittleEndian


def name(syntax: str) -> str:
    """'JPEG 2000 Image Compression'; the UID itself when pydicom does not know it."""
    return UID(syntax).name


# -- the send plan -------------------------------------------------------------


@dataclass(frozen=True)
class AsStored:
    """Send the stored bytes: the recipient takes the stored syntax."""

    syntax: str


@dataclass(frozen=True)
class Convert:
    """Re-encode from *source* to *target* before sending."""

    source: str
    target: str

    @property
    def lossy(self) -> bool:
        return is_lossy(self.target)


@dataclass(frozen=True)
class Refuse:
    """The instance cannot go to this recipient; *reason* names both sides."""

    reason: str


SendPlan = AsStored | Convert | Refuse


def send_plan(stored: str, accepted: Sequence[str], allow_lossy: bool = False) -> SendPlan:
    """How to send an instance stored in *stored* to a recipient that takes
    *accepted* for its SOP class (its order: the recipient's preference).

    The stored bytes when the recipient takes them; else a conversion to, in
    order: a lossless syntax pacsd can encode (for a compressed original the
    compressed ones first, in the recipient's order, then uncompressed; for
    an uncompressed original uncompressed first: no codec is needed); a lossy
    one only if *allow_lossy* (whatever the original: re-encoding lossily
    loses more). A lossy original may go to any lossless syntax: decoding it
    loses nothing more. Else a refusal.
    """
    if stored in accepted:
        return AsStored(stored)
    if not accepted:
        return Refuse(f"stored as {name(stored)}, the peer accepted no transfer syntax for it")
    offered = ", ".join(dict.fromkeys(name(syntax) for syntax in accepted))
    if not can_decode(stored):
        return Refuse(f"stored as {name(stored)}, which pacsd cannot decode; the peer accepted only {offered}")
    targets = [syntax for syntax in dict.fromkeys(accepted) if can_encode(syntax)]
    if not targets:
        return Refuse(f"stored as {name(stored)}, the peer accepted only {offered}, none of which pacsd can encode")
    lossless = _lossless_order(stored, [syntax for syntax in targets if not is_lossy(syntax)])
    if lossless:
        return Convert(stored, lossless[0])
    if allow_lossy:
        return Convert(stored, targets[0])
    return Refuse(
        f"stored as {name(stored)}, the peer accepted only {offered}; converting to a lossy syntax is not allowed"
    )


def _lossless_order(stored: str, targets: list[str]) -> list[str]:
    uncompressed = [syntax for syntax in UNCOMPRESSED if syntax in targets]
    compressed = [syntax for syntax in targets if syntax not in UNCOMPRESSED]
    return compressed + uncompressed if is_compressed(stored) else uncompressed + compressed


# -- what to propose for a C-MOVE sub-association ------------------------------


@dataclass(frozen=True)
class Proposal:
    """One presentation context to propose: a SOP class and its syntaxes."""

    sop_class: str
    syntaxes: tuple[str, ...]


def proposals(stored: Iterable[tuple[str, str]], limit: int = MAX_CONTEXTS) -> list[Proposal]:
    """Presentation contexts for sending instances stored as (SOP class,
    transfer syntax) pairs: per SOP class, each stored syntax on its own
    context (sent as stored when accepted), then the uncompressed syntaxes
    on one context, then the lossless compressed ones on another (for a
    compressed-only recipient). At most *limit* contexts: when they do not
    all fit, every SOP class first gets its uncompressed context (any
    decodable instance can then go), then the stored syntaxes, then the
    compressed ones, each round in SOP class order.
    """
    by_class: dict[str, set[str]] = {}
    for sop_class, syntax in stored:
        by_class.setdefault(sop_class, set()).add(syntax)
    classes = sorted(by_class)
    rounds: list[list[Proposal]] = [
        [Proposal(sop_class, UNCOMPRESSED) for sop_class in classes],
        [Proposal(sop_class, (syntax,)) for sop_class in classes for syntax in sorted(by_class[sop_class])],
        [Proposal(sop_class, LOSSLESS_COMPRESSED) for sop_class in classes],
    ]
    chosen: set[Proposal] = set()
    for proposal in (p for round_ in rounds for p in round_):
        if len(chosen) >= limit:
            break
        chosen.add(proposal)
    # Listed per SOP class, stored syntaxes first: the order a reader expects.
    ordered = [
        p
        for sop_class in classes
        for p in (
            *(q for q in rounds[1] if q.sop_class == sop_class),
            Proposal(sop_class, UNCOMPRESSED),
            Proposal(sop_class, LOSSLESS_COMPRESSED),
        )
    ]
    return [p for p in ordered if p in chosen]
