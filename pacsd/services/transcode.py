"""Re-encoding a stored object in another transfer syntax (DESIGN.md,
"Transcoding"), through pydicom 3's ``decompress`` / ``compress`` and the
codec plugins (pylibjpeg with libjpeg, openjpeg and RLE; pyjpegls).

What may be converted to what is :mod:`pacsd.domain.transfer`; this module
only does it, and fixes what depends on the pixel data's form.
"""

from __future__ import annotations

import time
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom import uid as ts
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from pacsd.domain import transfer
from pacsd.domain.errors import ConversionFailed

# Lossy encoding, used only when the lossy setting lets the send plan choose
# it: visually lossless settings, not the smallest files.
JLS_NEAR_ERROR = 2  # the largest difference allowed per sample
J2K_RATIO = 10.0  # compression ratio

# The method (0028,2114) a lossy syntax's images were compressed with (PS3.3 C.7.6.1.1.5).
_END = b"\xff\xd9"
_ENDS_WITH_EOI = frozenset(
    {
        ts.JPEGBaseline8Bit,
        ts.JPEGExtended12Bit,
        ts.JPEGLossless,
        ts.JPEGLosslessSV1,
        ts.JPEGLSLossless,
        ts.JPEGLSNearLossless,
        ts.JPEG2000Lossless,
        ts.JPEG2000,
    }
)
# Plugins to try first where pydicom's default order picks a slower one:
# CharLS decodes JPEG-LS four to five times faster than libjpeg.
_DECODER: dict[str, str] = {ts.JPEGLSLossless: "pyjpegls", ts.JPEGLSNearLossless: "pyjpegls"}
_METHOD: dict[str, str] = {
    ts.JPEGBaseline8Bit: "ISO_10918_1",
    ts.JPEGExtended12Bit: "ISO_10918_1",
    ts.JPEGLSNearLossless: "ISO_14495_1",
    ts.JPEG2000: "ISO_15444_1",
}


def convert(source: bytes | Path, target: str) -> bytes:
    """The dataset of the Part 10 object *source* (its bytes, or its file)
    encoded in *target*, without file meta: what a C-STORE sends.
    ConversionFailed, with the codec's reason, if it cannot be."""
    ds = read(source, target)
    original = str(ds.get("file_meta", {}).get("TransferSyntaxUID", ""))
    if not transfer.can_decode(original):
        raise ConversionFailed(original or "the stored object", target, "pacsd cannot decode it")
    _transcode(ds, original, target)
    return encode(ds, original, target)


def timed(path: str, target: str) -> tuple[bytes, float]:
    """:func:`convert` of the file at *path*, and the milliseconds it took:
    what a conversion process runs (:mod:`pacsd.services.conversions`)."""
    started = time.perf_counter()
    data = convert(Path(path), target)
    return data, (time.perf_counter() - started) * 1000


def read(source: bytes | Path, target: str) -> Dataset:
    try:
        return dcmread(BytesIO(source) if isinstance(source, bytes) else source)
    except Exception as exc:  # pydicom raises many kinds for a damaged file
        raise ConversionFailed("the stored object", target, f"unreadable: {exc}") from None


def _transcode(ds: Dataset, original: str, target: str) -> None:
    """Bring *ds*'s pixel data into *target*'s form, in place."""
    if "PixelData" not in ds:  # no codec involved: only the encoding of the elements changes
        return
    if original == ts.ExplicitVRBigEndian:  # work on little endian pixel data, as the codecs expect
        _swap_pixel_bytes(ds)
        ds.file_meta.TransferSyntaxUID = ts.ExplicitVRLittleEndian
    try:
        if transfer.is_compressed(original) and original != target:
            _decompress(ds, original)
        if transfer.is_compressed(target) and original != target:
            _compress(ds, target)
    except Exception as exc:  # each codec raises its own kinds; its message is the reason
        raise ConversionFailed(original, target, _reason(exc)) from None
    _mark_lossy(ds, original, target)


def _decompress(ds: Dataset, original: str) -> None:
    truncated = _truncated_frame(ds, original)
    preferred = _DECODER.get(original, "")
    try:
        ds.decompress(generate_instance_uid=False, decoding_plugin=preferred)
    except Exception:
        if not preferred:
            raise  # the codec's own reason first, if it has one
        ds.decompress(generate_instance_uid=False)  # every plugin: the reasons of all of them
    if truncated:
        raise ValueError(truncated)


def _truncated_frame(ds: Dataset, original: str) -> str:
    """What is wrong if a JPEG, JPEG-LS or JPEG 2000 frame has no end
    marker, else '': libjpeg and CharLS decode a truncated one without a
    word, into an image whose missing part is made up."""
    if original not in _ENDS_WITH_EOI:
        return ""
    count = int(ds.get("NumberOfFrames") or 1)
    for number, frame in enumerate(generate_frames(ds.PixelData, number_of_frames=count), start=1):
        # EOI/EOC is FFD9 in all three; only padding may follow it, and no
        # marker can appear in the coded data (PS3.5 A.4: fragments are padded to even length).
        if _END not in frame[-16:]:
            return f"frame {number} of {count} ends without its end-of-image marker: truncated"
    return ""


def _compress(ds: Dataset, target: str) -> None:
    colour = int(ds.get("SamplesPerPixel", 1)) > 1
    if target == ts.JPEGLSNearLossless:
        ds.compress(target, generate_instance_uid=False, jls_error=JLS_NEAR_ERROR)
    elif target == ts.JPEG2000:
        ds.compress(target, generate_instance_uid=False, j2k_cr=[J2K_RATIO], use_mct=colour)
    else:
        ds.compress(target, generate_instance_uid=False, use_mct=colour)
    if colour:
        # PS3.5 8.2: JPEG-LS and JPEG 2000 frames are colour-by-pixel, RLE's
        # is irrelevant; PS3.5 8.2.4: the JPEG 2000 colour transform says so.
        ds.PlanarConfiguration = 0
        if ds.PhotometricInterpretation == "RGB" and target == ts.JPEG2000Lossless:
            ds.PhotometricInterpretation = "YBR_RCT"
        elif ds.PhotometricInterpretation == "RGB" and target == ts.JPEG2000:
            ds.PhotometricInterpretation = "YBR_ICT"


def _mark_lossy(ds: Dataset, original: str, target: str) -> None:
    """Lossy Image Compression stays "01" once an image has been lossy
    (PS3.3 C.7.6.1.1.5), with its ratio and method; a lossy encoding adds its own."""
    codec = transfer.CODECS.get(original)
    was_lossy = ds.get("LossyImageCompression") == "01" or (codec is not None and codec.loss is transfer.Loss.ALWAYS)
    if (codec is not None and codec.loss is transfer.Loss.MAYBE) and "LossyImageCompression" not in ds:
        was_lossy = True  # nothing says it was reversible: claim the safe thing
    if was_lossy:
        ds.LossyImageCompression = "01"
        if "LossyImageCompressionMethod" not in ds and original in _METHOD:
            ds.LossyImageCompressionMethod = _METHOD[original]
    if original != target and transfer.is_lossy(target) and target in _METHOD:
        ds.LossyImageCompression = "01"
        methods = _values(ds.get("LossyImageCompressionMethod"))
        ds.LossyImageCompressionMethod = [*methods, _METHOD[target]]
        if target == ts.JPEG2000:
            ratios = _values(ds.get("LossyImageCompressionRatio"))
            ds.LossyImageCompressionRatio = [*ratios, J2K_RATIO]


def _values(value: object) -> list[object]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, MultiValue | list) else [value]


def encode(ds: Dataset, original: str, target: str) -> bytes:
    """*ds* without its file meta, in *target*'s element encoding."""
    syntax = UID(target)
    if syntax == ts.DeflatedExplicitVRLittleEndian:
        raise ConversionFailed(original, target, "pacsd does not encode deflated")
    if "PixelData" in ds and syntax == ts.ExplicitVRBigEndian:
        _swap_pixel_bytes(ds)  # _transcode left it little endian
    fp = DicomBytesIO()
    fp.is_little_endian = syntax.is_little_endian
    fp.is_implicit_VR = syntax.is_implicit_VR
    try:
        write_dataset(fp, ds)
    except Exception as exc:
        raise ConversionFailed(original, target, _reason(exc)) from None
    return fp.getvalue()


def _swap_pixel_bytes(ds: Dataset) -> None:
    """Native pixel data between little and big endian: pydicom reads and
    writes the value's bytes as they are."""
    bits = int(ds.get("BitsAllocated", 8))
    if bits > 8:
        import numpy as np  # only a big endian recipient needs it

        data = ds.PixelData
        width = bits // 8
        usable = len(data) - len(data) % width
        swapped = np.frombuffer(data[:usable], dtype=f"<u{width}").byteswap().tobytes()
        ds.PixelData = swapped + data[usable:]


def _reason(exc: Exception) -> str:
    """The codec's words: pydicom lists each plugin's under a header line."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines = lines[1:]
    return "; ".join(lines) or type(exc).__name__
