"""Rendered images (WADO-RS ``/rendered``, ``/thumbnail``): one frame of a
stored instance as an 8-bit JPEG or PNG a browser can show.

Greyscale goes through the PS3.3 C.11 pipeline: Modality LUT (Rescale
Slope/Intercept, or a Modality LUT Sequence), VOI (the request's
``window``, else the object's first Window Center/Width with its VOI LUT
Function, else its VOI LUT Sequence, else the frame's own minimum to
maximum), MONOCHROME1 inverted. An enhanced multi-frame object's
functional groups (shared, then the frame's own) override the top-level
values. Colour (RGB, YBR_* decoded to RGB, PALETTE COLOR through its
palette) is sent as is, scaled to 8 bits; a window does not apply to it.
Pixel aspect ratio and overlays are not applied.

:func:`render` runs in a conversion process (it reads the file itself, so
only the encoded image crosses the process boundary): decoding a large
frame holds the GIL, which would stall the serving process's requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from io import BytesIO

import numpy as np
import pydicom
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut
from pydicom.pixels.utils import pixel_array

from pacsd.domain.errors import ConversionFailed, InvalidQuery, NoSuchFrame, Unreadable
from pacsd.domain.outcomes import StoredInstance
from pacsd.services.pixels import frame_count

JPEG = "image/jpeg"
PNG = "image/png"
DEFAULT_QUALITY = 90
THUMBNAIL_SIDE = 128  # the long side of a thumbnail, whatever the request's viewport
MAX_SIDE = 8192  # of a viewport: a bigger one is a request for a huge allocation
FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Read with the header: everything else (pixel data, big private blobs) stays on disk.
DEFER_BYTES = 64 * 1024

# SOP classes without a picture to show, passed over for a representative
# instance: structured reports and key objects, presentation states,
# waveforms, encapsulated documents, raw data, registrations, RT plans and
# structure sets (RT Image, .481.1, is an image).
NON_IMAGE_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.88.",
    "1.2.840.10008.5.1.4.1.1.11.",
    "1.2.840.10008.5.1.4.1.1.9.",
    "1.2.840.10008.5.1.4.1.1.104.",
    "1.2.840.10008.5.1.4.1.1.66",
    "1.2.840.10008.5.1.4.1.1.481.2",
    "1.2.840.10008.5.1.4.1.1.481.3",
    "1.2.840.10008.5.1.4.1.1.481.4",
    "1.2.840.10008.5.1.4.1.1.481.5",
    "1.2.840.10008.5.1.4.1.1.481.6",
    "1.2.840.10008.5.1.4.1.1.481.7",
    "1.2.840.10008.5.1.4.1.1.481.8",
    "1.2.840.10008.5.1.4.1.1.481.9",
)


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str = "LINEAR"  # one of FUNCTIONS


@dataclass(frozen=True)
class Viewport:
    """Fit the image (or its source region ``sx,sy,sw,sh``) into ``width`` x ``height``."""

    width: int
    height: int
    source: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class Rendering:
    """What the client asked for (PS3.18 8.3.5.1)."""

    media_type: str = JPEG  # JPEG or PNG
    quality: int = DEFAULT_QUALITY  # JPEG only, 1-100
    viewport: Viewport | None = None
    window: Window | None = None
    thumbnail: bool = False  # fit into THUMBNAIL_SIDE; the viewport is ignored


def is_image_class(sop_class_uid: str) -> bool:
    return not sop_class_uid.startswith(NON_IMAGE_CLASSES)


@dataclass(frozen=True)
class Candidate:
    """An instance of a study or series as the index knows it, for
    choosing the representative one."""

    instance: StoredInstance
    series_uid: str
    series_number: int | None
    instance_number: int | None


def representative(candidates: Sequence[Candidate]) -> StoredInstance:
    """The instance a study's or series' rendered image shows: of the first
    series (by Series Number, then UID) holding an image SOP class, its
    middle image by Instance Number (then UID). Without any image class,
    the same over all instances."""
    images = [c for c in candidates if is_image_class(c.instance.sop_class_uid)] or list(candidates)
    first = min(images, key=lambda c: (_unknown_last(c.series_number), c.series_uid)).series_uid
    members = sorted(
        (c for c in images if c.series_uid == first),
        key=lambda c: (_unknown_last(c.instance_number), c.instance.sop_uid),
    )
    return members[len(members) // 2].instance


def _unknown_last(number: int | None) -> tuple[bool, int]:
    return (number is None, number or 0)


# -- in a conversion process --------------------------------------------------------


def render(path: str, frame: int, rendering: Rendering) -> bytes:
    """Frame *frame* (from 1) of the object at *path*, encoded as asked.
    NoSuchFrame for a frame it lacks (or no pixel data at all), Unreadable
    for a damaged file, ConversionFailed when its pixels cannot be decoded."""
    try:
        ds = pydicom.dcmread(path, defer_size=DEFER_BYTES)
    except Exception as exc:  # pydicom raises many kinds for a damaged file
        raise Unreadable(f"stored file unreadable: {exc}") from None
    syntax = str(ds.get("file_meta", Dataset()).get("TransferSyntaxUID", ""))
    if not any(keyword in ds for keyword in PIXEL_KEYWORDS):
        raise NoSuchFrame("the instance has no pixel data: there is no image to render")
    count = frame_count(ds)
    if not 1 <= frame <= count:
        raise NoSuchFrame(f"frame {frame}: the instance has {count} frame(s), numbered from 1")
    try:
        pixels = _decoded(path, frame - 1 if count > 1 else None)
        image = to_8bit(pixels, frame_view(ds, frame), rendering.window)
    except (NoSuchFrame, Unreadable):
        raise
    except Exception as exc:  # each codec raises its own kinds; its message is the reason
        raise ConversionFailed(syntax or "the stored object", rendering.media_type, _reason(exc)) from None
    return encode(resized(image, rendering), rendering)


def _decoded(path: str, index: int | None) -> NDArray[np.generic]:
    """One frame, read from the file without loading the others; failing
    that (a deflated dataset, a malformed offset table), from the whole
    dataset, which pydicom reads more leniently."""
    try:
        return pixel_array(path, index=index)
    except Exception:
        return pixel_array(pydicom.dcmread(path), index=index)


# Attributes of the pixel pipeline an enhanced object's functional groups
# may carry per frame (in these sequences), overriding the top level.
FRAME_GROUPS = ("PixelValueTransformationSequence", "FrameVOILUTSequence")
PIPELINE = (
    "PhotometricInterpretation",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "VOILUTSequence",
)


def frame_view(ds: Dataset, frame: int) -> Dataset:
    """The attributes that decide how frame *frame* looks, from the top
    level and then the shared and the frame's own functional groups."""
    view = Dataset()
    for keyword in PIPELINE:
        if keyword in ds:
            view[keyword] = ds[keyword]
    groups: list[Dataset] = []
    for keyword, index in (("SharedFunctionalGroupsSequence", 0), ("PerFrameFunctionalGroupsSequence", frame - 1)):
        items = ds.get(keyword) or []
        if index < len(items):
            groups.append(items[index])
    for group in groups:
        for keyword in FRAME_GROUPS:
            for item in (group.get(keyword) or [])[:1]:
                for elem in item:
                    view[elem.tag] = elem
    palette = [elem for elem in ds.group_dataset(0x0028) if 0x1101 <= elem.tag.element <= 0x1223]
    for elem in palette:
        view[elem.tag] = elem
    return view


def to_8bit(pixels: NDArray[np.generic], view: Dataset, window: Window | None) -> NDArray[np.uint8]:
    """One decoded frame as 8-bit grey (rows, columns) or RGB (rows, columns, 3)."""
    photometric = str(view.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(pixels, view)
        return _scaled(rgb, 8 * rgb.dtype.itemsize)
    if pixels.ndim == 3:  # colour, decoded to RGB by pydicom
        return _scaled(pixels, int(view.get("BitsStored") or 8))
    values = np.asarray(apply_modality_lut(pixels, view), dtype=np.float64)
    grey = _voi(values, view, window)
    if photometric == "MONOCHROME1":
        grey = 255.0 - grey
    return np.rint(grey).astype(np.uint8)


def _scaled(pixels: NDArray[np.generic], bits: int) -> NDArray[np.uint8]:
    if pixels.dtype == np.uint8 and bits <= 8:
        return pixels.astype(np.uint8)
    top = float(2 ** min(max(bits, 1), 32) - 1)
    real = np.clip(pixels.astype(np.float64), 0, top)
    return np.rint(real * (255.0 / top)).astype(np.uint8)


def _voi(values: NDArray[np.float64], view: Dataset, window: Window | None) -> NDArray[np.float64]:
    """Modality values to 0..255 (floats) by the VOI LUT in force."""
    chosen = window or object_window(view)
    if chosen is not None:
        return windowed(values, chosen)
    lut = view.get("VOILUTSequence")
    if lut:
        try:
            return _voi_table(values, lut[0])
        except (AttributeError, TypeError, ValueError, IndexError):
            pass  # a malformed table: show the frame's range instead
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if high <= low:
        return np.zeros_like(values)
    return (values - low) * (255.0 / (high - low))


def object_window(view: Dataset) -> Window | None:
    """The object's first Window Center/Width, if usable."""
    centers, widths = _numbers(view.get("WindowCenter")), _numbers(view.get("WindowWidth"))
    if not centers or not widths:
        return None
    function = str(view.get("VOILUTFunction") or "LINEAR").strip().upper()
    function = function if function in FUNCTIONS else "LINEAR"
    center, width = centers[0], widths[0]
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0 or (function == "LINEAR" and width < 1):
        return None
    return Window(center, width, function)


def _numbers(value: object) -> list[float]:
    if value is None or value == "":
        return []
    items: Iterable[object] = value if isinstance(value, Iterable) and not isinstance(value, str) else [value]
    try:
        return [float(str(item)) for item in items]
    except ValueError:
        return []


def windowed(x: NDArray[np.float64], window: Window) -> NDArray[np.float64]:
    """PS3.3 C.11.2.1.2: values to 0..255 through a window."""
    c, w = window.center, window.width
    if window.function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if window.function == "LINEAR_EXACT":
        return np.clip((x - c) / w + 0.5, 0.0, 1.0) * 255.0
    if w <= 1:  # LINEAR with width 1: a threshold at c - 0.5
        return np.where(x > c - 0.5, 255.0, 0.0)
    return np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0) * 255.0


def _voi_table(values: NDArray[np.float64], item: Dataset) -> NDArray[np.float64]:
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 65536  # PS3.3 C.11.1.1.1: 0 stands for 2^16
    data = item.LUTData
    table = np.asarray(data if not isinstance(data, bytes) else np.frombuffer(data, "<u2"), dtype=np.float64)
    index = np.clip(np.rint(values) - first, 0, min(entries, table.size) - 1).astype(np.int64)
    scaled: NDArray[np.float64] = table[index] * (255.0 / float(2 ** max(bits, 1) - 1))
    return scaled


def resized(pixels: NDArray[np.uint8], rendering: Rendering) -> Image.Image:
    image = Image.fromarray(pixels, "RGB" if pixels.ndim == 3 else "L")
    viewport = rendering.viewport
    if rendering.thumbnail:
        viewport = Viewport(THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    if viewport is None:
        return image
    if viewport.source is not None:
        sx, sy, sw, sh = viewport.source
        if sx >= image.width or sy >= image.height:
            raise InvalidQuery(
                f"viewport: the source region at {sx},{sy} lies outside the {image.width}x{image.height} image"
            )
        image = image.crop((sx, sy, min(sx + sw, image.width), min(sy + sh, image.height)))
    width, height = fitted(image.width, image.height, viewport.width, viewport.height)
    if (width, height) == image.size:
        return image
    return image.resize((width, height), Image.Resampling.LANCZOS)


def fitted(width: int, height: int, into_width: int, into_height: int) -> tuple[int, int]:
    """The size of a *width* x *height* image scaled to fit the box, aspect kept."""
    scale = min(into_width / width, into_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode(image: Image.Image, rendering: Rendering) -> bytes:
    out = BytesIO()
    if rendering.media_type == PNG:
        image.save(out, "PNG")
    else:
        image.save(out, "JPEG", quality=rendering.quality)
    return out.getvalue()


def _reason(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines = lines[1:]
    return "; ".join(lines) or type(exc).__name__
