"""The send plan and the sub-association proposal (pure rules)."""

from __future__ import annotations

from pydicom import uid as ts

from pacsd.domain.transfer import (
    CODECS,
    LOSSLESS_COMPRESSED,
    MAX_CONTEXTS,
    UNCOMPRESSED,
    AsStored,
    Convert,
    Proposal,
    Refuse,
    proposals,
    send_plan,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
MPEG2 = "1.2.840.10008.1.2.4.100"


def test_the_stored_syntax_goes_as_stored_when_accepted() -> None:
    assert send_plan(ts.JPEG2000, [ts.ExplicitVRLittleEndian, ts.JPEG2000]) == AsStored(ts.JPEG2000)


def test_a_compressed_original_prefers_a_lossless_compressed_syntax_in_the_recipients_order() -> None:
    accepted = [ts.ExplicitVRLittleEndian, ts.RLELossless, ts.JPEGLSLossless]
    assert send_plan(ts.JPEG2000Lossless, accepted) == Convert(ts.JPEG2000Lossless, ts.RLELossless)


def test_a_compressed_original_goes_uncompressed_explicit_then_implicit_then_big_endian() -> None:
    assert send_plan(ts.JPEGLSLossless, UNCOMPRESSED[::-1]) == Convert(ts.JPEGLSLossless, ts.ExplicitVRLittleEndian)
    assert send_plan(ts.RLELossless, [ts.ExplicitVRBigEndian, ts.ImplicitVRLittleEndian]) == Convert(
        ts.RLELossless, ts.ImplicitVRLittleEndian
    )
    assert send_plan(ts.RLELossless, [ts.ExplicitVRBigEndian]) == Convert(ts.RLELossless, ts.ExplicitVRBigEndian)


def test_an_uncompressed_original_stays_uncompressed_when_it_can() -> None:
    accepted = [ts.JPEGLSLossless, ts.ImplicitVRLittleEndian]
    assert send_plan(ts.ExplicitVRLittleEndian, accepted) == Convert(
        ts.ExplicitVRLittleEndian, ts.ImplicitVRLittleEndian
    )


def test_an_uncompressed_original_is_compressed_losslessly_for_a_compressed_only_recipient() -> None:
    plan = send_plan(ts.ExplicitVRLittleEndian, [ts.JPEG2000Lossless])
    assert plan == Convert(ts.ExplicitVRLittleEndian, ts.JPEG2000Lossless)
    assert isinstance(plan, Convert) and not plan.lossy


def test_a_lossy_original_may_go_uncompressed_or_lossless() -> None:
    assert send_plan(ts.JPEGBaseline8Bit, [ts.ImplicitVRLittleEndian]) == Convert(
        ts.JPEGBaseline8Bit, ts.ImplicitVRLittleEndian
    )
    assert send_plan(ts.JPEGBaseline8Bit, [ts.JPEGLSLossless]) == Convert(ts.JPEGBaseline8Bit, ts.JPEGLSLossless)


def test_a_lossy_target_is_refused_unless_allowed() -> None:
    accepted = [ts.JPEGBaseline8Bit, ts.JPEG2000]  # pacsd encodes no JPEG Baseline: JPEG 2000 is the one
    plan = send_plan(ts.JPEGLSLossless, accepted)
    assert plan == Refuse(
        "stored as JPEG-LS Lossless Image Compression, the peer accepted only JPEG Baseline (Process 1), "
        "JPEG 2000 Image Compression; converting to a lossy syntax is not allowed"
    )
    allowed = send_plan(ts.JPEGLSLossless, accepted, allow_lossy=True)
    assert allowed == Convert(ts.JPEGLSLossless, ts.JPEG2000) and allowed.lossy


def test_a_lossy_original_is_not_re_encoded_lossily_either_unless_allowed() -> None:
    assert isinstance(send_plan(ts.JPEGBaseline8Bit, [ts.JPEGLSNearLossless]), Refuse)
    assert send_plan(ts.JPEGBaseline8Bit, [ts.JPEGLSNearLossless], allow_lossy=True) == Convert(
        ts.JPEGBaseline8Bit, ts.JPEGLSNearLossless
    )


def test_nothing_accepted_is_refused_naming_the_stored_syntax() -> None:
    assert send_plan(ts.JPEG2000, []) == Refuse(
        "stored as JPEG 2000 Image Compression, the peer accepted no transfer syntax for it"
    )


def test_a_syntax_pacsd_cannot_decode_is_refused() -> None:
    plan = send_plan(MPEG2, [ts.ExplicitVRLittleEndian])
    assert plan == Refuse(
        "stored as MPEG2 Main Profile / Main Level, which pacsd cannot decode; "
        "the peer accepted only Explicit VR Little Endian"
    )


def test_only_syntaxes_pacsd_cannot_encode_are_refused() -> None:
    plan = send_plan(ts.JPEG2000, [ts.JPEGBaseline8Bit, ts.DeflatedExplicitVRLittleEndian, ts.JPEGBaseline8Bit])
    assert plan == Refuse(
        "stored as JPEG 2000 Image Compression, the peer accepted only JPEG Baseline (Process 1), "
        "Deflated Explicit VR Little Endian, none of which pacsd can encode"
    )


def test_the_codec_table_decodes_what_it_encodes() -> None:
    assert all(codec.decode for codec in CODECS.values() if codec.encode)
    assert {s for s, c in CODECS.items() if c.encode and not c.lossy} == {*UNCOMPRESSED, *LOSSLESS_COMPRESSED}


def test_proposals_per_sop_class_stored_syntaxes_first_then_conversions() -> None:
    stored = [(MR, ts.JPEG2000), (CT, ts.RLELossless), (CT, ts.JPEGLSLossless), (CT, ts.RLELossless)]
    assert proposals(stored) == [
        Proposal(CT, (ts.JPEGLSLossless,)),
        Proposal(CT, (ts.RLELossless,)),
        Proposal(CT, UNCOMPRESSED),
        Proposal(CT, LOSSLESS_COMPRESSED),
        Proposal(MR, (ts.JPEG2000,)),
        Proposal(MR, UNCOMPRESSED),
        Proposal(MR, LOSSLESS_COMPRESSED),
    ]


def test_proposals_when_short_of_contexts_give_every_class_an_uncompressed_one_first() -> None:
    classes = [f"1.2.3.{n}" for n in range(100)]
    stored = [(sop_class, ts.JPEGLSLossless) for sop_class in classes]
    chosen = proposals(stored)
    assert len(chosen) == MAX_CONTEXTS
    assert {p.sop_class for p in chosen if p.syntaxes == UNCOMPRESSED} == set(classes)
    assert sum(p.syntaxes == (ts.JPEGLSLossless,) for p in chosen) == MAX_CONTEXTS - 100
    assert not any(p.syntaxes == LOSSLESS_COMPRESSED for p in chosen)


def test_proposals_past_the_limit_drop_whole_classes_not_contexts_above_it() -> None:
    stored = [(f"1.2.3.{n}", ts.ExplicitVRLittleEndian) for n in range(200)]
    assert len(proposals(stored)) == MAX_CONTEXTS
    assert len(proposals(stored, limit=5)) == 5
