"""Conversions between transfer syntaxes, on pydicom's own test files:
decoded pixels after conversion equal what pydicom decodes from the original."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from pydicom import dcmread
from pydicom import uid as ts
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import UID

from pacsd.domain.errors import ConversionFailed
from pacsd.services.transcode import convert
from pacsd.testing.samples import ORIGINALS, decoded, sample

UNCOMPRESSED = [ts.ExplicitVRLittleEndian, ts.ImplicitVRLittleEndian, ts.ExplicitVRBigEndian]
LOSSLESS_TARGETS = [ts.RLELossless, ts.JPEGLSLossless, ts.JPEG2000Lossless]


# Compressed originals, decoded to every uncompressed syntax: samples.ORIGINALS.


@pytest.mark.parametrize("target", UNCOMPRESSED, ids=lambda t: UID(t).keyword)
@pytest.mark.parametrize(("name", "lossless"), ORIGINALS, ids=[name for name, _ in ORIGINALS])
def test_a_compressed_original_decodes_to_the_pixels_pydicom_decodes(name: str, lossless: bool, target: str) -> None:
    original = dcmread(sample(name))
    out = decoded(convert(sample(name), target), target)
    expected = original.pixel_array
    assert (out.pixel_array.dtype.kind, out.pixel_array.dtype.itemsize) == (
        expected.dtype.kind,
        expected.dtype.itemsize,
    )
    assert np.array_equal(out.pixel_array, expected)  # the same decoder: exact even for a lossy original
    assert out.SOPInstanceUID == original.SOPInstanceUID
    if int(original.SamplesPerPixel) == 3 and str(original.PhotometricInterpretation).startswith("YBR"):
        assert out.PhotometricInterpretation == "RGB"  # decoded to RGB, and it says so
    if not lossless:
        assert out.LossyImageCompression == "01"


def test_a_lossy_original_keeps_its_ratio_and_method() -> None:
    original = dcmread(sample("JPGExtended.dcm"))
    out = decoded(convert(sample("JPGExtended.dcm"), ts.ExplicitVRLittleEndian), ts.ExplicitVRLittleEndian)
    assert out.LossyImageCompression == "01"
    assert out.get("LossyImageCompressionRatio") == original.get("LossyImageCompressionRatio")
    assert out.LossyImageCompressionMethod == original.get("LossyImageCompressionMethod", "ISO_10918_1")


# Uncompressed originals encoded losslessly: bit-exact after decoding.
UNCOMPRESSED_ORIGINALS = [
    "CT_small.dcm",  # 16-bit signed CT
    "examples_rgb_color.dcm",  # 8-bit RGB
    "SC_rgb_jpeg_dcmd.dcm",  # 8-bit RGB, implicit VR
    "MR_small_bigendian.dcm",  # big endian
]


@pytest.mark.parametrize("target", LOSSLESS_TARGETS, ids=lambda t: UID(t).keyword)
@pytest.mark.parametrize("name", UNCOMPRESSED_ORIGINALS)
def test_an_uncompressed_original_compresses_losslessly(name: str, target: str) -> None:
    original = dcmread(sample(name))
    out = decoded(convert(sample(name), target), target)
    assert out.file_meta.TransferSyntaxUID == target
    assert out["PixelData"].is_undefined_length  # encapsulated
    assert np.array_equal(out.pixel_array, original.pixel_array)
    assert "LossyImageCompression" not in out
    if target == ts.JPEG2000Lossless and original.PhotometricInterpretation == "RGB":
        assert out.PhotometricInterpretation == "YBR_RCT"  # PS3.5 8.2.4: the colour transform was applied


@pytest.mark.parametrize("target", LOSSLESS_TARGETS, ids=lambda t: UID(t).keyword)
def test_a_lossless_original_converts_to_another_lossless_syntax_exactly(target: str) -> None:
    name = "SC_rgb_rle_2frame.dcm" if target != ts.RLELossless else "MR_small_jpeg_ls_lossless.dcm"
    original = dcmread(sample(name))
    out = decoded(convert(sample(name).read_bytes(), target), target)  # from bytes, not a path
    assert int(out.get("NumberOfFrames", 1)) == int(original.get("NumberOfFrames", 1))
    assert np.array_equal(out.pixel_array, original.pixel_array)


def test_the_output_has_no_file_meta() -> None:
    data = convert(sample("MR_small_RLE.dcm"), ts.ExplicitVRLittleEndian)
    assert data[:2] == b"\x08\x00"  # starts at group 0008, little endian


def test_an_object_without_pixel_data_is_only_re_encoded() -> None:
    name = "rtplan.dcm"
    original = dcmread(sample(name))
    out = decoded(convert(sample(name), ts.ExplicitVRBigEndian), ts.ExplicitVRBigEndian)
    assert out.SOPInstanceUID == original.SOPInstanceUID
    assert out.RTPlanLabel == original.RTPlanLabel


def test_a_lossy_encoding_says_it_is_lossy() -> None:
    out = decoded(convert(sample("CT_small.dcm"), ts.JPEGLSNearLossless), ts.JPEGLSNearLossless)
    assert out.LossyImageCompression == "01"
    assert out.LossyImageCompressionMethod == "ISO_14495_1"
    difference = np.abs(out.pixel_array.astype(int) - dcmread(sample("CT_small.dcm")).pixel_array.astype(int))
    assert 0 < difference.max() <= 2  # lossy, within the near-lossless bound


def truncated(name: str) -> bytes:
    """*name* with its first fragment cut in half."""
    ds = dcmread(sample(name))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) // 2]])
    buffer = BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["MR_small_jp2klossless.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm"])
def test_a_truncated_fragment_fails_with_the_codecs_reason(name: str) -> None:
    damaged = truncated(name)
    ds = dcmread(BytesIO(damaged))
    with pytest.raises(Exception) as codec:  # what the codec says itself
        ds.decompress(generate_instance_uid=False)
    with pytest.raises(ConversionFailed) as failed:
        convert(damaged, ts.ExplicitVRLittleEndian)
    plugins = [line.strip() for line in str(codec.value).splitlines()[1:]]  # pydicom's header line dropped
    assert failed.value.reason == "; ".join(plugins)
    assert failed.value.source == ds.file_meta.TransferSyntaxUID
    assert failed.value.target == ts.ExplicitVRLittleEndian
    assert str(failed.value).startswith(
        f"cannot convert from {UID(failed.value.source).name} to Explicit VR Little Endian: "
    )


@pytest.mark.parametrize(
    "name", ["MR_small_jpeg_ls_lossless.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_jpeg_gdcm.dcm", "JPGExtended.dcm"]
)
def test_a_truncated_frame_the_codec_would_decode_silently_fails(name: str) -> None:
    damaged = truncated(name)
    silently = dcmread(BytesIO(damaged))
    silently.decompress(generate_instance_uid=False)  # libjpeg and CharLS make the missing part up
    assert not np.array_equal(silently.pixel_array, dcmread(sample(name)).pixel_array)
    with pytest.raises(ConversionFailed, match="frame 1 of 1 ends without its end-of-image marker"):
        convert(damaged, ts.ExplicitVRLittleEndian)


def test_an_unreadable_object_fails_with_the_readers_reason() -> None:
    with pytest.raises(ConversionFailed, match="unreadable"):
        convert(b"no DICM prefix", ts.RLELossless)


def test_an_object_in_a_syntax_pacsd_cannot_decode_fails() -> None:
    ds = dcmread(sample("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")  # MPEG2
    ds.PixelData = encapsulate([ds.PixelData])
    buffer = BytesIO()
    ds.save_as(buffer)
    with pytest.raises(ConversionFailed, match="pacsd cannot decode it"):
        convert(buffer.getvalue(), ts.ExplicitVRLittleEndian)
