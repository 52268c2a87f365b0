"""Side-by-side benchmark: pacsd against Orthanc, DCMTK storescp and DCMTK wlmscpfs.

Absolute figures on a shared machine wander from run to run, so every peer
runs the same workloads in one run, taking turns, and the table reports the
median of each and pacsd's ratio to each peer. Every process started here is ended by its own process id.

Run through ``scripts/bench`` (which sets up the venv, dcmtk and orthanc).
"""

from __future__ import annotations

import argparse
import datetime
import email.message
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pacsd.services.transcode import convert  # noqa: E402
from pacsd.testing import peers, synth, worklists  # noqa: E402

ENV = peers.NODELAY_ENV  # DCMTK waits 40 ms per message without it
# A worklist-style study query: one patient's studies, with what a viewer lists.
FIND_KEYS = [
    "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=BENCH000000", "-k", "StudyInstanceUID", "-k", "PatientName",
    "-k", "StudyDate", "-k", "ModalitiesInStudy", "-k", "NumberOfStudyRelatedInstances",
]  # fmt: skip


MEMORY = Path("/dev/shm")  # a tmpfs on Linux
REPEATS = 200  # queries on one association, for the per-query C-FIND figure
MOVES = 7  # C-MOVEs per archive and round
WEB_WORKLOADS = ["qido", "metadata", "wado", "stow"]  # over DICOMweb, pacsd against Orthanc's plugin
WORKLOADS = ["store-small", "store-large", "find", "move", "mwl", "codecs", "move-jls", *WEB_WORKLOADS]
# A modality's typical worklist query: its station, today, its modality; with
# what it shows in its list.
MWL_STATION = 3
MWL_SPS = "ScheduledProcedureStepSequence[0]."
MWL_RETURN_KEYS = [
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyInstanceUID",
    "RequestedProcedureID", "RequestedProcedureDescription", f"{MWL_SPS}ScheduledProcedureStepID",
    f"{MWL_SPS}ScheduledProcedureStepStartTime", f"{MWL_SPS}ScheduledProcedureStepDescription",
]  # fmt: skip
MWL_DAYS = 20  # items spread over this many days around today
WLM_AE = "WLM"


@dataclass
class Row:
    peer: str
    workload: str
    value: float
    unit: str


@dataclass
class Peer:
    name: str
    ae_title: str
    port: int
    proc: subprocess.Popen[bytes]
    web: str = ""  # its DICOMweb base URL ("": it serves none)


@contextmanager
def _running(
    proc: subprocess.Popen[bytes],
    port: int,
    name: str,
    ae_title: str,
    log: Path | None = None,
    web: tuple[int, str] | None = None,
) -> Iterator[Peer]:
    """The started *proc* as a peer once it listens (and on *web*'s HTTP
    port, with that path as its DICOMweb root); stopped on the way out."""
    try:
        peers.wait_for_port(proc, port, name, log, timeout=60)
        if web:
            peers.wait_for_port(proc, web[0], name, log, timeout=60)
        base = f"http://{peers.LOOPBACK}:{web[0]}{web[1]}" if web else ""
        yield Peer(name, ae_title, port, proc, base)
    finally:
        peers.stop(proc)


def pacsd(work: Path, dest: tuple[str, int] | None, web: bool = False) -> AbstractContextManager[Peer]:
    """pacsd on *work*/data (and on HTTP too if *web*); started again on the
    same *work*, it serves what it held."""
    port = peers.free_port()
    remotes = peers.remote_toml(dest[0], dest[1]) if dest else ""
    http_port = peers.free_port() if web else 0
    http = f"[http]\nport = {http_port}\n" if web else ""
    config = peers.pacsd_config(work / "pacsd.toml", port=port, data_dir=work / "data", extra=remotes + http)
    log = work / "pacsd.log"
    # This checkout's pacsd, whatever the working directory.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = peers.start(peers.pacsd_command("serve", "--config", str(config)), log, env=env, stdout_to_log=False)
    return _running(proc, port, "pacsd", "PACSD", log, (http_port, "/dicomweb") if web else None)


def orthanc(work: Path, dest: tuple[str, int] | None, web: bool = False) -> AbstractContextManager[Peer]:
    """Orthanc on *work* (with its DICOMweb plugin if *web*)."""
    modalities = dict([dest]) if dest else {}
    server = peers.Orthanc(work, ae_title="ORTHANC", modalities=modalities, name="bench", dicomweb=web)
    http = (server.http_port, peers.DICOMWEB_ROOT) if web else None
    return _running(server.launch(), server.port, "orthanc", server.ae_title, server.log, http)


def storescp(
    work: Path, dest: tuple[str, int] | None = None, ae_title: str = "STORESCP", out: Path | None = None
) -> AbstractContextManager[Peer]:
    """Files only, no index: the raw limit (*dest* is unused: it moves nothing).
    Writes into *out* (default: work/received)."""
    port = peers.free_port()
    out = out or work / "received"
    out.mkdir(exist_ok=True)
    proc = peers.start([peers.dcmtk("storescp"), "-aet", ae_title, "-od", str(out), str(port)], None, env=ENV)
    return _running(proc, port, "storescp", ae_title)


PEERS: dict[str, Callable[..., AbstractContextManager[Peer]]] = {
    "pacsd": pacsd,
    "orthanc": orthanc,
    "storescp": storescp,
}


def ingest(peer: Peer, parts: list[Path], *options: str) -> float:
    """Seconds to store every file of *parts*, one storescu per part at once
    (with storescu's *options*: the syntaxes it proposes, say)."""
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [peers.dcmtk("storescu"), "+sd", *options, "-aec", peer.ae_title, "127.0.0.1", str(peer.port), str(part)],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for part in parts
    ]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"storescu to {peer.name} failed: {err.decode(errors='replace')[-500:]}")
    return time.perf_counter() - start


def findscu_ms(peer: Peer, repeat: int = 1, keys: list[str] = FIND_KEYS, model: str = "-S") -> float:
    """Milliseconds of one findscu run: *repeat* queries (default: the study
    query) on one association."""
    cmd = [
        peers.dcmtk("findscu"),
        model,
        "-aec",
        peer.ae_title,
        "--repeat",
        str(repeat),
        *keys,
        "127.0.0.1",
        str(peer.port),
    ]
    start = time.perf_counter()
    subprocess.run(cmd, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000


def find_latencies(peers: list[Peer], queries: int) -> dict[str, tuple[float, float]]:
    """Per peer: the median ms of a findscu study query (a process, an
    association, a query), and the ms each further query on one association
    takes (findscu's start-up, most of the first figure, cancels out). The
    peers take turns, so a slow spell of the machine falls on all of them."""
    times: dict[str, list[float]] = {peer.name: [] for peer in peers}
    each: dict[str, list[float]] = {peer.name: [] for peer in peers}
    for n in range(queries + 1):
        for peer in peers if n % 2 else reversed(peers):
            times[peer.name].append(findscu_ms(peer))
    for n in range(3):
        for peer in peers if n % 2 else reversed(peers):
            one = findscu_ms(peer)
            each[peer.name].append((findscu_ms(peer, 1 + REPEATS) - one) / REPEATS)
    # The first query warms caches.
    return {name: (statistics.median(times[name][1:]), statistics.median(each[name])) for name in times}


def move_rates(
    running: list[tuple[Peer, Path]],
    study_uid: str,
    expected: int,
    moves: int = MOVES,
    check: Callable[[str, Path], None] | None = None,
) -> dict[str, float]:
    """Per peer, the median instances/s over *moves* C-MOVEs of one study to
    its DEST storescp, the peers taking turns move by move (one move of 100
    small objects takes ~40 ms, a third of it movescu's start-up); *check*
    looks at what each move delivered (untimed) and raises if it is wrong."""
    rates: dict[str, list[float]] = {peer.name: [] for peer, _ in running}
    for n in range(moves):
        for peer, received in running if n % 2 else reversed(running):
            for old in received.iterdir():
                old.unlink()
            rates[peer.name].append(move_rate(peer, study_uid, received, expected))
            if check:
                check(peer.name, received)
    return {name: statistics.median(values) for name, values in rates.items()}


def move_rate(peer: Peer, study_uid: str, received: Path, expected: int) -> float:
    """Instances/s of a C-MOVE of one study to the DEST storescp."""
    cmd = [peers.dcmtk("movescu"), "-S", "-aec", peer.ae_title, "-aem", "DEST", "-k", "QueryRetrieveLevel=STUDY",
           "-k", f"StudyInstanceUID={study_uid}", "127.0.0.1", str(peer.port)]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"C-MOVE from {peer.name} failed ({done.returncode}): {done.stderr[-1500:]}")
    got = len(list(received.iterdir()))
    if got != expected:
        raise RuntimeError(f"C-MOVE from {peer.name}: destination received {got} of {expected}")
    return expected / elapsed


def mwl_keys(today: str) -> list[str]:
    keys = [
        f"{MWL_SPS}ScheduledStationAETitle={worklists.station(MWL_STATION)}",
        f"{MWL_SPS}ScheduledProcedureStepStartDate={today}",
        f"{MWL_SPS}Modality={worklists.station_modality(MWL_STATION)}",
        *MWL_RETURN_KEYS,
    ]
    return [arg for key in keys for arg in ("-k", key)]


def mwl_matches(peer: Peer, keys: list[str]) -> int:
    """How many items *peer* answers the worklist query with (both must agree)."""
    cmd = [peers.dcmtk("findscu"), "-v", "-W", "-aec", peer.ae_title, *keys, "127.0.0.1", str(peer.port)]
    result = subprocess.run(cmd, env=ENV, check=True, capture_output=True, text=True)
    if "Final Find Response (Success)" not in result.stderr + result.stdout:
        raise RuntimeError(f"worklist query to {peer.name} failed:\n{result.stderr[-2000:]}")
    return (result.stderr + result.stdout).count("(Pending)")


def wlmscpfs(work: Path, files: list[Path]) -> AbstractContextManager[Peer]:
    """DCMTK's worklist SCP on *files* (linked into its AE title's directory):
    it reads every file for every query."""
    db = work / "wlmdb" / WLM_AE
    db.mkdir(parents=True)
    (db / "lockfile").touch()
    for f in files:
        os.link(f, db / f.name)
    port = peers.free_port()
    cmd = [peers.dcmtk("wlmscpfs"), "-dfp", str(db.parent), str(port)]
    return _running(peers.start(cmd, None, env=ENV), port, "wlmscpfs", WLM_AE)


def run_mwl(root: Path, items: int, queries: int, sample: Callable[[str, str, str, float], None]) -> None:
    """*items* worklist items in pacsd (added with ``pacsd worklist add``)
    and as files for wlmscpfs; the median ms of *queries* findscu -W runs
    of a modality's typical query against each, taking turns."""
    day = datetime.date.today()
    # Today first, then the days around it: a small --mwl-items still has items today.
    offsets = [(n + 1) // 2 * (1 if n % 2 else -1) for n in range(MWL_DAYS)]
    dates = [(day + datetime.timedelta(days=offset)).strftime("%Y%m%d") for offset in offsets]
    files = worklists.clones(root / "worklist", items, dates)
    work = Path(tempfile.mkdtemp(dir=root))
    # The data dir pacsd() serves; added to before it starts.
    config = peers.pacsd_config(work / "add.toml", port=peers.free_port(), data_dir=work / "data")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    for n in range(0, len(files), 1000):  # a command line of 1000 files at most
        cmd = peers.pacsd_command("worklist", "add", "--config", str(config), *map(str, files[n : n + 1000]))
        added = subprocess.run(cmd, env=env, capture_output=True, text=True)  # it logs every item
        if added.returncode != 0:
            raise RuntimeError(f"pacsd worklist add failed: {added.stdout[-500:]}{added.stderr[-1500:]}")
    sample("pacsd", f"worklist add {items} items", "items/s", items / (time.perf_counter() - start))
    keys = mwl_keys(day.strftime("%Y%m%d"))
    with ExitStack() as stack:
        running = [stack.enter_context(pacsd(work, None)), stack.enter_context(wlmscpfs(work, files))]
        answers = {peer.name: mwl_matches(peer, keys) for peer in running}
        if len(set(answers.values())) != 1 or not answers["pacsd"]:
            raise RuntimeError(f"the worklist query matched differently: {answers}")
        times: dict[str, list[float]] = {peer.name: [] for peer in running}
        for n in range(queries):
            for peer in running if n % 2 else reversed(running):
                times[peer.name].append(findscu_ms(peer, keys=keys, model="-W"))
        for name, values in times.items():
            sample(name, f"MWL query, {items} items, {answers[name]} matches", "ms", statistics.median(values))


# -- codecs: pacsd's conversions against DCMTK's command-line tools -------------

FRAMES = 10  # frames per codec file: a DCMTK tool's start-up is paid once per file
CODEC_REPEATS = 3  # runs of each conversion; the best one counts
CT_SOP = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word Secondary Capture
RGB_SOP = "1.2.840.10008.5.1.4.1.1.7.4"  # Multi-frame True Color Secondary Capture
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)


def ct_pixels(frames: int, side: int = 512, seed: int = 14) -> np.ndarray:
    """A CT-like 12-bit phantom, *frames* slices of it: a body with lungs,
    a spine and a soft gradient, moving a little from slice to slice, and
    scanner-like noise; the same numbers on every run."""
    rng = np.random.default_rng(seed)
    y, x = (np.mgrid[0:side, 0:side] / side) - 0.5
    out = np.empty((frames, side, side), dtype=np.uint16)
    for f in range(frames):
        shift = 0.004 * f
        hu = np.full((side, side), -1000.0)  # air
        body = (x / 0.44) ** 2 + ((y - shift) / 0.34) ** 2 < 1
        hu[body] = (40 + 60 * x)[body]  # soft tissue, brighter to one side as with beam hardening
        for cx in (-0.18, 0.18):  # lungs
            hu[((x - cx) / 0.13) ** 2 + ((y + 0.02 - shift) / (0.2 - shift)) ** 2 < 1] = -820
        hu[(x**2 + (y - 0.2 - shift) ** 2) < 0.045**2] = 700  # vertebra
        hu += rng.normal(0, 12, hu.shape)
        out[f] = np.clip(hu + 1024, 0, 4095).astype(np.uint16)
    return out


def rgb_pixels(frames: int, side: int = 1024, seed: int = 14) -> np.ndarray:
    """A photo-like 8-bit RGB image: smooth colour fields, a few discs, mild noise."""
    rng = np.random.default_rng(seed)
    y, x = (np.mgrid[0:side, 0:side] / side) - 0.5
    out = np.empty((frames, side, side, 3), dtype=np.uint8)
    for f in range(frames):
        r = 128 + 90 * np.sin(2 * np.pi * (2 * x + f / 10))
        g = 128 + 90 * np.cos(2 * np.pi * 1.5 * y)
        b = 255 * (1 - np.hypot(x, y))
        disc = (x - 0.2) ** 2 + (y + 0.1 * f / max(frames, 1)) ** 2 < 0.1**2
        r[disc], g[disc], b[disc] = 230, 40, 60
        rgb = np.stack([r, g, b], axis=-1) + rng.normal(0, 3, (side, side, 3))
        out[f] = np.clip(rgb, 0, 255).astype(np.uint8)
    return out


def image_file(path: Path, pixels: np.ndarray) -> Path:
    """*pixels* (frames, rows, columns[, 3]) as a multi-frame Secondary
    Capture object in Explicit VR Little Endian."""
    colour = pixels.ndim == 4
    ds = synth.ct(patient_id="BENCH-CODECS", pixel_bytes=2)
    ds.SOPClassUID = RGB_SOP if colour else CT_SOP
    ds.Modality = "OT" if colour else "CT"
    ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[1:3]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    else:
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = pixels.tobytes()
    return synth.write(ds, path)


def part10(dataset: bytes, like: Path, syntax: str, path: Path) -> Path:
    """A Part 10 file of *dataset* (what ``convert`` returns: no file
    meta) in *syntax*, with the file meta of *like* otherwise."""
    meta = pydicom.dcmread(like, stop_before_pixels=True).file_meta
    meta.TransferSyntaxUID = UID(syntax)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=True)
    path.write_bytes(b"\0" * 128 + b"DICM" + fp.getvalue() + dataset)
    return path


@dataclass
class Conversion:
    name: str
    source: str  # which of an image's files it starts from
    target: str
    tool: str | None  # the DCMTK tool doing the same; None: DCMTK cannot


def conversions(lossy_jpeg: str) -> list[Conversion]:
    return [
        Conversion(f"{lossy_jpeg} decode", "jpeg", ExplicitVRLittleEndian, "dcmdjpeg"),
        Conversion("JPEG-LS Lossless encode", "raw", JPEGLSLossless, "dcmcjpls"),
        Conversion("JPEG-LS Lossless decode", "jls", ExplicitVRLittleEndian, "dcmdjpls"),
        Conversion("RLE Lossless encode", "raw", RLELossless, "dcmcrle"),
        Conversion("RLE Lossless decode", "rle", ExplicitVRLittleEndian, "dcmdrle"),
        # Debian's DCMTK has no JPEG 2000 codec.
        Conversion("JPEG 2000 Lossless encode", "raw", JPEG2000Lossless, None),
        Conversion("JPEG 2000 Lossless decode", "j2k", ExplicitVRLittleEndian, None),
    ]


def dcmtk_run(tool: str, source: Path, out: Path, *options: str) -> float:
    """Seconds of one run of DCMTK's *tool* from *source* to *out*."""
    start = time.perf_counter()
    done = subprocess.run([peers.dcmtk(tool), *options, str(source), str(out)], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{tool} {source.name} failed: {done.stderr[-1000:]}")
    return elapsed


def syntax_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def run_codecs(root: Path, frames: int, repeats: int, sample: Callable[[str, str, str, float], None]) -> None:
    """Milliseconds per frame of each conversion of a 512x512 16-bit CT and
    a 1024x1024 RGB image, *frames* frames each: pacsd's ``convert`` in this
    process (the best of *repeats*), and DCMTK's tool on the same file (the
    best of *repeats*, less the best ``dcmconv`` copy of that file: start-up,
    reading and writing, which a conversion inside pacsd does not repeat)."""
    work = root / "codecs"
    work.mkdir()
    images = [
        ("CT 512x512 16-bit", "ct", ct_pixels(frames), "JPEG Extended", "+ee"),
        ("RGB 1024x1024 8-bit", "rgb", rgb_pixels(frames), "JPEG Baseline", "+eb"),
    ]
    for label, stem, pixels, lossy_jpeg, jpeg_mode in images:
        raw = image_file(work / f"{stem}.dcm", pixels)
        files = {"raw": raw, "jpeg": work / f"{stem}-jpeg.dcm", "jls": work / f"{stem}-jls.dcm"}
        files["rle"] = work / f"{stem}-rle.dcm"
        # Compressed sources made by DCMTK where it can, by pacsd where only it can.
        dcmtk_run("dcmcjpeg", raw, files["jpeg"], jpeg_mode)
        dcmtk_run("dcmcjpls", raw, files["jls"])
        dcmtk_run("dcmcrle", raw, files["rle"])
        files["j2k"] = part10(convert(raw, JPEG2000Lossless), raw, JPEG2000Lossless, work / f"{stem}-j2k.dcm")
        for conv in conversions(lossy_jpeg):
            source = files[conv.source]
            data = source.read_bytes()
            best = min(_timed(convert, data, conv.target) for _ in range(repeats))
            sample("pacsd", f"{label}: {conv.name}", "ms/frame", best * 1000 / frames)
            if conv.tool is None:
                continue
            out = work / "out.dcm"
            tool = min(dcmtk_run(conv.tool, source, out) for _ in range(repeats))
            if syntax_of(out) != conv.target:
                raise RuntimeError(f"{conv.tool} wrote {syntax_of(out)}, not {conv.target}")
            copy = min(dcmtk_run("dcmconv", source, out) for _ in range(repeats))
            sample("dcmtk", f"{label}: {conv.name}", "ms/frame", max(tool - copy, 0.0) * 1000 / frames)
    shutil.rmtree(work)


def _timed(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


# -- move-jls: C-MOVE of JPEG-LS objects to an uncompressed-only storescp ------

JLS_MOVES = 3  # C-MOVEs per archive and round (one takes a second or more: every object is decoded)


def make_jls_study(root: Path, count: int) -> tuple[Path, str, bytes]:
    """*count* JPEG-LS Lossless CT objects of one new study (one 512x512
    16-bit image, encoded once by pacsd's encoder; fresh UIDs each): their
    directory, the study UID, and the uncompressed pixel bytes."""
    out = root / "jls"
    out.mkdir()
    pixels = ct_pixels(1)[0]
    raw = image_file(root / "jls-source.dcm", pixels[np.newaxis])
    first = synth.ct(patient_id="BENCH-JLS", pixel_bytes=2)
    ds = pydicom.dcmread(part10(convert(raw, JPEGLSLossless), raw, JPEGLSLossless, root / "jls-one.dcm"))
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "PatientID", "PatientName"):
        setattr(ds, keyword, getattr(first, keyword))
    ds.SOPClassUID = CTImageStorage
    del ds.NumberOfFrames
    for n in range(count):  # the one encoded image, under a new instance UID each time
        ds.SOPInstanceUID = synth.new_uid()
        ds.InstanceNumber = n + 1
        synth.set_meta(ds, JPEGLSLossless)
        ds.save_as(out / f"{n:05}.dcm", enforce_file_format=True)
    return out, first.StudyInstanceUID, pixels.tobytes()


def uncompressed_check(pixels: bytes) -> Callable[[str, Path], None]:
    """A check of what a C-MOVE delivered: every file uncompressed, and
    (one of them read whole) the original pixels, bit for bit."""

    def check(peer: str, received: Path) -> None:
        files = sorted(received.iterdir())
        compressed = [f.name for f in files if syntax_of(f) not in UNCOMPRESSED]
        if compressed:
            raise RuntimeError(f"C-MOVE from {peer}: {len(compressed)} files arrived compressed, e.g. {compressed[0]}")
        if files and pydicom.dcmread(files[0]).PixelData != pixels:
            raise RuntimeError(f"C-MOVE from {peer}: {files[0].name} does not hold the original pixels")

    return check


def serving(stack: ExitStack, root: Path, archives: list[str], files: Path, *options: str) -> list[tuple[Peer, Path]]:
    """Each of *archives* up (until *stack* closes) holding *files* (sent
    by storescu with *options*), with a DEST storescp of its own: the
    archive and the directory DEST writes to."""
    running = []
    for name in archives:
        work = Path(tempfile.mkdtemp(dir=root))
        # The C-MOVE destination keeps what it receives in memory where it can:
        # on disk, its own file creation was most of what a move measured.
        received = Path(tempfile.mkdtemp(dir=MEMORY if MEMORY.is_dir() else work))
        stack.callback(shutil.rmtree, received, ignore_errors=True)
        dest = stack.enter_context(storescp(work, ae_title="DEST", out=received))
        peer = stack.enter_context(PEERS[name](work, ("DEST", dest.port)))
        ingest(peer, [files], *options)
        running.append((peer, received))
    return running


# -- DICOMweb: QIDO-RS, /metadata, WADO-RS and STOW-RS against Orthanc's plugin

WEB_ARCHIVES = ("pacsd", "orthanc")  # storescp serves no DICOMweb
DICOM_JSON = "application/dicom+json"
DICOM_PARTS = 'multipart/related; type="application/dicom"'
STUDIES_PER_PATIENT = 4  # in the QIDO set: a search by PatientID matches 4 studies
QIDO_LIMIT = 100
NAME_PREFIX = "Generated^Patient00000"  # synth names patients {p:06}: 0-9 here, and the series patient
STOW_BOUNDARY = "pacsd-bench-stow-boundary"
NUMBER_OF_STUDY_RELATED_INSTANCES = "00201208"


@dataclass
class Stow:
    label: str
    study_uid: str
    instances: int
    bodies: list[bytes]  # one multipart/related request body each


@dataclass
class WebSets:
    studies: Path  # one small instance per study, STUDIES_PER_PATIENT studies per patient
    series: Path  # one series, for /metadata and WADO-RS
    series_path: str  # its URL path under a DICOMweb root
    searches: list[tuple[str, dict[str, str], int]]  # (label, query, matches)
    stows: list[Stow]


def multipart_body(files: list[bytes]) -> bytes:
    parts = [f"--{STOW_BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + f + b"\r\n" for f in files]
    return b"".join(parts) + f"--{STOW_BOUNDARY}--\r\n".encode()


def make_web_sets(root: Path, studies: int, instances: int, pixel_bytes: int, stow: int, batches: int) -> WebSets:
    """The QIDO set (*studies* studies), the series of *instances* objects
    of *pixel_bytes*, and two STOW studies of *stow* small objects (one
    request of them all; *batches* requests), each its own new study."""
    synth.generate(root / "web-studies", studies, 1, 1, 2048, max(1, studies // STUDIES_PER_PATIENT), "BENCHWEB")
    synth.generate(root / "web-series", 1, 1, instances, pixel_bytes, 1, "BENCHSER")
    first = pydicom.dcmread(next(iter(sorted((root / "web-series").iterdir()))), stop_before_pixels=True)
    names = [
        str(pydicom.dcmread(f, stop_before_pixels=True).PatientName)
        for f in [*sorted((root / "web-studies").iterdir()), root / "web-series" / f"{0:06}-000-00000.dcm"]
    ]
    by_id = sum(name == "Generated^Patient000000" for name in names[:-1])
    searches = [
        (f"by PatientID ({by_id} matches)", {"PatientID": "BENCHWEB000000"}, by_id),
        (
            f"by PatientName wildcard ({sum(n.startswith(NAME_PREFIX) for n in names)} matches)",
            {"PatientName": NAME_PREFIX + "*"},
            sum(n.startswith(NAME_PREFIX) for n in names),
        ),
        (f"all, limit={QIDO_LIMIT}", {"limit": str(QIDO_LIMIT)}, min(QIDO_LIMIT, studies + 1)),
    ]
    stows = []
    for requests in (1, batches):
        folder = root / f"web-stow-{requests}"
        synth.generate(folder, 1, 1, stow, 2048, 1, f"BENCHSTOW{requests}")
        files = [f.read_bytes() for f in sorted(folder.iterdir())]
        size = -(-len(files) // requests)
        label = "1 request" if requests == 1 else f"{requests} requests of {size}"
        study_uid = pydicom.dcmread(folder / f"{0:06}-000-00000.dcm", stop_before_pixels=True).StudyInstanceUID
        bodies = [multipart_body(files[n : n + size]) for n in range(0, len(files), size)]
        stows.append(Stow(label, study_uid, len(files), bodies))
    series_path = f"/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}"
    return WebSets(root / "web-studies", root / "web-series", series_path, searches, stows)


class Web:
    """One peer's DICOMweb over one kept-alive HTTP connection; any answer
    but 200 is an error naming the peer, the request and what it said."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.name = peer.name
        self.http = httpx.Client(base_url=peer.web, timeout=600)

    def send(self, method: str, path: str, accept: str = DICOM_JSON, **kwargs: Any) -> tuple[float, httpx.Response]:
        """Seconds to the end of the answer's body, and the answer."""
        start = time.perf_counter()
        answer = self.http.request(method, path, headers={"Accept": accept, **kwargs.pop("headers", {})}, **kwargs)
        seconds = time.perf_counter() - start
        if answer.status_code != 200:
            raise RuntimeError(f"{method} {path} to {self.name}: {answer.status_code} {answer.text[:500]}")
        return seconds, answer

    def array(self, path: str, expected: int, **kwargs: Any) -> float:
        """Seconds of a GET answered with a DICOM JSON array of *expected* objects."""
        seconds, answer = self.send("GET", path, **kwargs)
        got = len(answer.json())
        if got != expected:
            raise RuntimeError(f"GET {path} to {self.name}: {got} objects, not {expected}")
        return seconds

    def instances_in_study(self, study_uid: str) -> int:
        params = {"StudyInstanceUID": study_uid, "includefield": NUMBER_OF_STUDY_RELATED_INSTANCES}
        _, answer = self.send("GET", "/studies", params=params)
        found = answer.json()
        return int(found[0][NUMBER_OF_STUDY_RELATED_INSTANCES]["Value"][0]) if found else 0


def dicom_parts(body: bytes, content_type: str) -> int:
    """How many parts the multipart/related *body* holds, each checked to
    be a Part 10 file (its preamble, then ``DICM``)."""
    header = email.message.Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or header.get_content_type() != "multipart/related":
        raise RuntimeError(f"not a multipart/related answer: {content_type}")
    pieces = (b"\r\n" + body).split(b"\r\n--" + boundary.encode())
    if len(pieces) < 2 or not pieces[-1].startswith(b"--"):
        raise RuntimeError("the multipart answer does not end with its closing delimiter")
    for n, piece in enumerate(pieces[1:-1]):
        _, blank, content = piece.partition(b"\r\n\r\n")
        if not blank or content[128:132] != b"DICM":
            raise RuntimeError(f"part {n + 1} of the multipart answer is not a Part 10 file")
    return len(pieces) - 2


@contextmanager
def web_archives(works: dict[str, Path]) -> Iterator[list[Web]]:
    """Each archive of *works* (name -> its directory) up with DICOMweb, in
    that order; stopped on the way out."""
    with ExitStack() as stack:
        webs = []
        for name, work in works.items():
            web = Web(stack.enter_context(PEERS[name](work, None, web=True)))
            stack.callback(web.http.close)
            webs.append(web)
        yield webs


def turns(webs: list[Web], n: int) -> list[Web]:
    return webs if n % 2 else webs[::-1]


def run_web(
    root: Path,
    sets: WebSets,
    order: list[str],
    args: argparse.Namespace,
    sample: Callable[[str, str, str, float], None],
) -> None:
    """One round of the DICOMweb workloads, both archives fresh and up at
    once, taking turns request by request: loaded over DICOM with the QIDO
    set and the series, then searched; restarted (pacsd's metadata cache
    deleted) for the cold /metadata, then the warm ones, WADO-RS and STOW-RS."""
    wanted = set(args.only)
    works = {name: Path(tempfile.mkdtemp(dir=root)) for name in order if name in WEB_ARCHIVES}
    with web_archives(works) as webs:
        for web in webs:
            ingest(web.peer, [sets.studies, sets.series])
        if "qido" in wanted:
            qido_latencies(webs, sets, args.qido_requests, sample)
    if wanted & {"metadata", "wado", "stow"}:
        if "pacsd" in works:  # Orthanc keeps no such cache on disk
            shutil.rmtree(works["pacsd"] / "data" / "cache" / "metadata", ignore_errors=True)
        with web_archives(works) as webs:
            count = len(list(sets.series.iterdir()))
            if "metadata" in wanted:
                metadata_latencies(webs, sets.series_path, count, args.metadata_repeats, sample)
            if "wado" in wanted:
                wado_rates(webs, sets.series_path, count, args.wado_repeats, sample)
            if "stow" in wanted:
                stow_rates(webs, sets.stows, sample)
    for work in works.values():
        shutil.rmtree(work)


def qido_latencies(
    webs: list[Web], sets: WebSets, requests: int, sample: Callable[[str, str, str, float], None]
) -> None:
    """The median ms of *requests* study searches of each shape (the first
    of each, untimed, warms up); every answer must hold the expected matches."""
    for label, query, matches in sets.searches:
        # Not percent-encoded: Orthanc's plugin (1.7) matches %5E and %2A literally.
        search = "/studies?" + "&".join(f"{key}={value}" for key, value in query.items())
        times: dict[str, list[float]] = {web.name: [] for web in webs}
        for n in range(requests + 1):
            for web in turns(webs, n):
                seconds = web.array(search, matches)
                if n:
                    times[web.name].append(seconds * 1000)
        for name, values in times.items():
            sample(name, f"QIDO studies {label}", "ms", statistics.median(values))


def metadata_latencies(
    webs: list[Web], series: str, count: int, repeats: int, sample: Callable[[str, str, str, float], None]
) -> None:
    """Ms of each archive's first /metadata of the series since it started,
    then the median of *repeats* more."""
    for web in webs:
        sample(web.name, f"metadata {count}-instance series, cold", "ms", web.array(series + "/metadata", count) * 1000)
    times: dict[str, list[float]] = {web.name: [] for web in webs}
    for n in range(repeats):
        for web in turns(webs, n):
            times[web.name].append(web.array(series + "/metadata", count) * 1000)
    for name, values in times.items():
        sample(name, f"metadata {count}-instance series, warm", "ms", statistics.median(values))


def wado_rates(
    webs: list[Web], series: str, count: int, repeats: int, sample: Callable[[str, str, str, float], None]
) -> None:
    """The median MB/s of *repeats* WADO-RS retrieves of the series as
    stored, each answer checked to hold *count* Part 10 files."""
    rates: dict[str, list[float]] = {web.name: [] for web in webs}
    for n in range(repeats):
        for web in turns(webs, n):
            seconds, answer = web.send("GET", series, accept=DICOM_PARTS + "; transfer-syntax=*")
            got = dicom_parts(answer.content, answer.headers.get("content-type", ""))
            if got != count:
                raise RuntimeError(f"WADO-RS of the series from {web.name}: {got} parts, not {count}")
            rates[web.name].append(len(answer.content) / seconds / 1e6)
    for name, values in rates.items():
        sample(name, f"WADO-RS {count}-instance series", "MB/s", statistics.median(values))


def stow_rates(webs: list[Web], stows: list[Stow], sample: Callable[[str, str, str, float], None]) -> None:
    """Instances/s of each STOW (its requests one after the other), each
    answered 200, after which a QIDO search must count them all."""
    for n, stow in enumerate(stows):
        for web in turns(webs, n):
            content_type = f"{DICOM_PARTS}; boundary={STOW_BOUNDARY}"
            seconds = sum(
                web.send("POST", "/studies", content=body, headers={"Content-Type": content_type})[0]
                for body in stow.bodies
            )
            held = web.instances_in_study(stow.study_uid)
            if held != stow.instances:
                raise RuntimeError(f"after STOW-RS of {stow.instances}, {web.name} holds {held}")
            sample(web.name, f"STOW-RS {stow.instances} instances, {stow.label}", "inst/s", stow.instances / seconds)


@dataclass
class DataSet:
    name: str
    files: int
    bytes: int
    parts: list[Path]  # the same files split into 4 directories
    whole: Path


def make_set(root: Path, name: str, studies: int, instances: int, pixel_bytes: int) -> DataSet:
    whole = root / name
    synth.generate(whole, studies, 1, instances, pixel_bytes, studies, patient_prefix="BENCH")
    files = sorted(whole.iterdir())
    parts = [root / f"{name}-part{i}" for i in range(4)]
    for part in parts:
        part.mkdir()
    for n, f in enumerate(files):
        os.link(f, parts[n % 4] / f.name)
    return DataSet(name, len(files), sum(f.stat().st_size for f in files), parts, whole)


def run(args: argparse.Namespace) -> list[Row]:
    """Every workload for every peer, *rounds* times; the median of each.

    Peers take turns within each workload, in a rotating order, so a slow
    spell of the (shared) machine falls on all of them alike.
    """
    root = Path(tempfile.mkdtemp(prefix="pacsd-bench-"))
    samples: dict[tuple[str, str, str], list[float]] = {}

    def sample(peer: str, workload: str, unit: str, value: float) -> None:
        samples.setdefault((peer, workload, unit), []).append(value)

    try:
        if "mwl" in args.only:
            run_mwl(root, args.mwl_items, args.mwl_queries, sample)
        if "codecs" in args.only:
            run_codecs(root, args.frames, args.codec_repeats, sample)
        wanted = set(args.only)
        small = large = None
        if {"store-small", "find", "move"} & wanted:
            small = make_set(root, "small", args.small // 100 or 1, min(100, args.small), args.small_bytes)
        if "store-large" in wanted:
            large = make_set(root, "large", 4, max(1, args.large // 4), args.large_bytes)
        jls = make_jls_study(root, args.jls) if "move-jls" in wanted else None
        web = None
        if wanted & set(WEB_WORKLOADS):
            web = make_web_sets(root, args.web_studies, args.web_series, args.web_bytes, args.stow, args.stow_batches)
        for round_ in range(args.rounds):
            shift = round_ % len(args.peers)
            order = args.peers[shift:] + args.peers[:shift]
            for data in (small, large):
                if data is None or f"store-{data.name}" not in wanted:
                    continue
                for label, parts in (("1 assoc", [data.whole]), ("4 assoc", data.parts)):
                    for name in order:
                        work = Path(tempfile.mkdtemp(dir=root))
                        with PEERS[name](work, None) as peer:
                            seconds = ingest(peer, parts)
                        shutil.rmtree(work)
                        sample(name, f"store {data.name} {label}", "inst/s", data.files / seconds)
                        sample(name, f"store {data.name} {label} MB/s", "MB/s", data.bytes / seconds / 1e6)
            archives = [name for name in order if name != "storescp"]
            if archives and small and {"find", "move"} & wanted:
                # Every archive up at once, each with the small set, so that
                # their C-FIND queries can alternate.
                with ExitStack() as stack:
                    running = serving(stack, root, archives, small.whole)
                    if "find" in wanted:
                        for name, (ms, each) in find_latencies([peer for peer, _ in running], args.queries).items():
                            sample(name, "C-FIND study median", "ms", ms)
                            sample(name, f"C-FIND study, {REPEATS} on one assoc", "ms/query", each)
                    if "move" in wanted:
                        move_study = pydicom.dcmread(next(iter(sorted(small.whole.iterdir())))).StudyInstanceUID
                        move_count = min(100, args.small)
                        for name, rate in move_rates(running, move_study, move_count).items():
                            sample(name, f"C-MOVE {move_count}-instance study", "inst/s", rate)
            if archives and jls:
                folder, study_uid, pixels = jls
                with ExitStack() as stack:
                    running = serving(stack, root, archives, folder, "-xt")  # sent as JPEG-LS
                    check = uncompressed_check(pixels)
                    for name, rate in move_rates(running, study_uid, args.jls, args.jls_moves, check).items():
                        sample(name, f"C-MOVE {args.jls} JPEG-LS to uncompressed", "inst/s", rate)
            if web:
                run_web(root, web, order, args, sample)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    workloads = list(dict.fromkeys(workload for _, workload, _ in samples))
    return [
        Row(peer, workload, statistics.median(values), unit)
        for workload in workloads
        for (peer, w, unit), values in samples.items()
        if w == workload
    ]


def table(rows: list[Row]) -> str:
    """The rows as a table, pacsd first and its ratio to each other peer.
    Consecutive workloads share a header while one's peers include the
    other's (the codecs against DCMTK, the archives against each other)."""
    by = {(r.peer, r.workload): r for r in rows}
    groups: list[tuple[list[str], list[str]]] = []  # (peers, workloads)
    for w in dict.fromkeys(r.workload for r in rows):
        peers = sorted(dict.fromkeys(r.peer for r in rows if r.workload == w), key=lambda p: p != "pacsd")
        if groups and (set(peers) <= set(groups[-1][0]) or set(groups[-1][0]) <= set(peers)):
            groups[-1][0].extend(p for p in peers if p not in groups[-1][0])
            groups[-1][1].append(w)
        else:
            groups.append((peers, [w]))
    units = {r.workload: r.unit for r in rows}
    width = max(44, *(len(f"{w} ({units[w]})") + 2 for w in units))
    lines = []
    for peers, workloads in groups:
        others = [p for p in peers if p != "pacsd"]
        if lines:
            lines.append("")
        header = f"{'workload':<{width}}" + "".join(f"{p:>12}" for p in peers)
        lines.append(header + "".join(f"{'vs ' + p:>14}" for p in others))
        for w in workloads:
            cells = []
            for p in peers:
                r = by.get((p, w))
                cells.append(f"{r.value:>12.{2 if r.value < 10 else 1}f}" if r else f"{'–':>12}")
            ratios = []
            ours = by.get(("pacsd", w))
            for other in others:
                theirs = by.get((other, w))
                if ours and theirs and theirs.value and ours.value:
                    # For latencies lower is better: report the speed-up either way.
                    ratio = theirs.value / ours.value if ours.unit.startswith("ms") else ours.value / theirs.value
                    ratios.append(f"{ratio:>13.2f}x")
                else:
                    ratios.append(f"{'–':>14}")
            lines.append(f"{w + ' (' + units[w] + ')':<{width}}" + "".join(cells) + "".join(ratios))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few objects, to check the bench still works")
    p.add_argument("--small", type=int, default=1000, help="small objects (default 1000)")
    p.add_argument("--small-bytes", type=int, default=8 * 1024, help="pixel bytes per small object")
    p.add_argument("--large", type=int, default=400, help="large objects, in 4 studies (default 400)")
    p.add_argument("--large-bytes", type=int, default=512 * 1024, help="pixel bytes per large object")
    p.add_argument("--queries", type=int, default=20, help="C-FIND queries per peer (median)")
    p.add_argument("--mwl-items", type=int, default=10_000, help="worklist items (default 10000)")
    p.add_argument("--mwl-queries", type=int, default=50, help="findscu -W runs per peer (median)")
    p.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    p.add_argument("--only", nargs="+", default=WORKLOADS, choices=WORKLOADS, help="workloads to run (default all)")
    p.add_argument("--frames", type=int, default=FRAMES, help=f"frames per codecs image (default {FRAMES})")
    p.add_argument("--codec-repeats", type=int, default=CODEC_REPEATS, help="runs per conversion (the best counts)")
    p.add_argument("--jls", type=int, default=100, help="JPEG-LS objects in the move-jls study (default 100)")
    p.add_argument("--jls-moves", type=int, default=JLS_MOVES, help="move-jls C-MOVEs per archive and round")
    p.add_argument("--web-studies", type=int, default=200, help="studies in the QIDO set (default 200)")
    p.add_argument("--web-series", type=int, default=500, help="instances in the metadata/WADO series (default 500)")
    p.add_argument("--web-bytes", type=int, default=512 * 1024, help="pixel bytes per instance of that series")
    p.add_argument("--stow", type=int, default=500, help="small instances per STOW-RS study (default 500)")
    p.add_argument("--stow-batches", type=int, default=10, help="requests of the batched STOW-RS (default 10)")
    p.add_argument("--qido-requests", type=int, default=20, help="QIDO requests per query shape and peer (median)")
    p.add_argument("--metadata-repeats", type=int, default=10, help="warm /metadata requests per peer (median)")
    p.add_argument("--wado-repeats", type=int, default=3, help="WADO-RS retrieves per peer and round (median)")
    p.add_argument("--rounds", type=int, default=3, help="runs of every workload; the table shows medians")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.small, args.large, args.queries, args.large_bytes, args.rounds = 8, 4, 2, 64 * 1024, 1
        args.mwl_items, args.mwl_queries = 200, 3
        args.frames, args.codec_repeats, args.jls, args.jls_moves = 1, 1, 8, 1
        args.web_studies, args.web_series, args.web_bytes, args.stow, args.stow_batches = 8, 6, 8 * 1024, 6, 2
        args.qido_requests, args.metadata_repeats, args.wado_repeats = 2, 2, 1
    rows = run(args)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
