"""Transcoding on the way out (issue 14), against a real `pacsd serve`:
every codec reaches an uncompressed-only client (pynetdicom C-GET, DCMTK
storescp as C-MOVE destination) with the pixels pydicom decodes from the
original; uncompressed images reach compressed-only clients bit-exact;
the stored syntax wins when accepted; a corrupt object fails alone; a
lossless original is never made lossy; each conversion is logged."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, build_role, evt
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from pynetdicom.transport import ThreadedAssociationServer

from pacsd.testing.peers import free_port
from pacsd.testing.samples import ORIGINALS, sample
from tests.e2e import transcoding_data as data
from tests.e2e.conftest import SCU, Server, StoreSCP
from tests.e2e.transcoding_data import Original

# The compressed originals of tests/unit/test_transcode.py, one study each, through the network.
NAMES = [name for name, _ in ORIGINALS]
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


class OnlySCP:
    """A pynetdicom storage SCP taking CT images in one transfer syntax only."""

    def __init__(self, ae_title: str, syntax: str) -> None:
        self.ae_title = ae_title
        self.port = free_port()
        self.received: dict[str, Dataset] = {}
        ae = AE(ae_title=ae_title)
        ae.add_supported_context(CTImageStorage, [syntax])
        handlers = [(evt.EVT_C_STORE, self._on_store)]
        self.server: ThreadedAssociationServer = ae.start_server(  # type: ignore[assignment]
            ("127.0.0.1", self.port), block=False, evt_handlers=handlers
        )

    def _on_store(self, event: Any) -> int:
        ds: Dataset = event.dataset
        ds.file_meta = event.file_meta
        self.received[str(ds.SOPInstanceUID)] = ds
        return 0x0000

    def toml(self) -> str:
        return f'[remotes.{self.ae_title}]\nhost = "127.0.0.1"\nport = {self.port}\n'

    def stop(self) -> None:
        self.server.shutdown()


@dataclass
class Setup:
    server: Server
    dest: StoreSCP  # DCMTK storescp in its default mode: uncompressed only
    accept_all: StoreSCP  # storescp +xa
    jls: OnlySCP
    work: Path
    originals: dict[str, Original] = field(default_factory=dict)

    def store(self, *objects: Original) -> None:
        statuses = SCU(self.server).store(*(o.path for o in objects))
        assert [s.Status for s in statuses] == [0] * len(objects)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("transcoding")
    dest = StoreSCP(work)
    accept_all = StoreSCP(work, ae_title="ALLDEST", extra=("+xa",))
    jls = OnlySCP("JLSDEST", JPEGLSLossless)
    server = Server(work, extra_toml=dest.toml() + accept_all.toml() + jls.toml())
    try:
        server.start()
        setup = Setup(server, dest, accept_all, jls, work)
        for name, lossless in ORIGINALS:
            setup.originals[name] = data.relabelled(sample(name), work / f"original-{name}", lossless)
        # Each as sent: pynetdicom proposes exactly the file's syntax and sends its bytes.
        setup.store(*setup.originals.values())
        yield setup
    finally:  # also when setting up failed
        server.stop()
        dest.stop()
        accept_all.stop()
        jls.stop()


# -- retrieving ----------------------------------------------------------------


@dataclass
class Outcome:
    status: int
    completed: int
    failed: int
    comment: str
    failed_uids: list[str]
    received: dict[str, Dataset]


def _outcome(responses: list[tuple[Dataset, Dataset | None]], received: dict[str, Dataset]) -> Outcome:
    final, identifier = responses[-1]
    failed = identifier.get("FailedSOPInstanceUIDList", []) if identifier is not None else []
    return Outcome(
        final.Status,
        final.get("NumberOfCompletedSuboperations", 0),
        final.get("NumberOfFailedSuboperations", 0),
        str(final.get("ErrorComment", "")),
        [failed] if isinstance(failed, str) else [str(uid) for uid in failed],
        received,
    )


def study_keys(study: str) -> Dataset:
    keys = Dataset()
    keys.QueryRetrieveLevel = "STUDY"
    keys.StudyInstanceUID = study
    return keys


def c_get(server: Server, study: str, sop_classes: set[str], *syntaxes: str) -> Outcome:
    """A C-GET of *study* by a client proposing only *syntaxes* (one context) for *sop_classes* (SCP role)."""
    received: dict[str, Dataset] = {}

    def on_store(event: Any) -> int:
        ds: Dataset = event.dataset
        ds.file_meta = event.file_meta
        received[str(ds.SOPInstanceUID)] = ds
        return 0x0000

    ae = AE(ae_title="GETONLY")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for sop_class in sorted(sop_classes):
        ae.add_requested_context(sop_class, list(syntaxes))
    roles = [build_role(sop_class, scp_role=True) for sop_class in sorted(sop_classes)]
    assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title, ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])  # fmt: skip
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_get(study_keys(study), StudyRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()
    return _outcome(responses, received)


def c_move(server: Server, study: str, destination: str) -> Outcome:
    ae = AE(ae_title="MOVER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title)
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_move(study_keys(study), destination, StudyRootQueryRetrieveInformationModelMove))
    finally:
        assoc.release()
    return _outcome(responses, {})


def written(dest: StoreSCP, *sops: str) -> dict[str, Dataset]:
    """What storescp wrote of *sops* (its files are named <modality>.<SOP Instance UID>)."""
    return {sop: pydicom.dcmread(path) for sop in sops for path in dest.out.glob(f"*.{sop}")}


def forget(dest: StoreSCP, *sops: str) -> None:
    for sop in sops:
        for path in dest.out.glob(f"*.{sop}"):
            path.unlink()


def conversions(server: Server, event: str, sop: str) -> list[dict[str, Any]]:
    return [e for e in server.events(event) if e.get("sop_instance_uid") == sop]


def assert_decodes_as_original(ds: Dataset, original: Original, syntax: str) -> None:
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert ds.SOPInstanceUID == original.sop
    pixels = ds.pixel_array
    assert (pixels.dtype, pixels.shape) == (original.pixels.dtype, original.pixels.shape)
    # The same decoder on both sides: exact, for lossy originals too.
    assert np.array_equal(pixels, original.pixels)
    assert ds.PhotometricInterpretation == original.photometric
    if not original.lossless:
        assert ds.LossyImageCompression == "01"


# -- 1. every codec to an uncompressed-only client -----------------------------


@pytest.mark.parametrize("name", NAMES)
def test_originals_are_stored_as_sent(setup: Setup, name: str) -> None:
    original = setup.originals[name]
    stored = [p for p in setup.server.files() if split_dataset(p)[0].MediaStorageSOPInstanceUID == original.sop]
    assert len(stored) == 1
    meta, offset = split_dataset(stored[0])
    sent_meta, sent_offset = split_dataset(original.path)
    assert meta.TransferSyntaxUID == original.syntax
    assert stored[0].read_bytes()[offset:] == original.path.read_bytes()[sent_offset:]


@pytest.mark.parametrize("syntax", UNCOMPRESSED, ids=lambda s: UID(s).keyword)
@pytest.mark.parametrize("name", NAMES)
def test_c_get_decodes_each_codec_for_an_uncompressed_only_client(setup: Setup, name: str, syntax: str) -> None:
    original = setup.originals[name]
    got = c_get(setup.server, original.study, {original.sop_class}, syntax)
    assert (got.status, got.completed, got.failed) == (0x0000, 1, 0), got.comment
    assert set(got.received) == {original.sop}
    assert_decodes_as_original(got.received[original.sop], original, syntax)


@pytest.mark.parametrize("name", NAMES)
def test_c_move_decodes_each_codec_for_a_default_storescp(setup: Setup, name: str) -> None:
    original = setup.originals[name]
    forget(setup.dest, original.sop)
    moved = c_move(setup.server, original.study, setup.dest.ae_title)
    assert (moved.status, moved.completed, moved.failed) == (0x0000, 1, 0), moved.comment
    files = written(setup.dest, original.sop)
    assert set(files) == {original.sop}
    # storescp's default preference among the uncompressed syntaxes pacsd proposes.
    assert_decodes_as_original(files[original.sop], original, ExplicitVRLittleEndian)


def test_c_get_takes_the_requesters_first_syntax_of_a_context(setup: Setup) -> None:
    original = setup.originals["MR_small_RLE.dcm"]
    got = c_get(setup.server, original.study, {original.sop_class}, JPEG2000Lossless, ExplicitVRLittleEndian)
    assert (got.status, got.completed) == (0x0000, 1), got.comment
    assert_decodes_as_original(got.received[original.sop], original, JPEG2000Lossless)


# -- 2. the reverse: an uncompressed CT to compressed-only clients ------------


@pytest.fixture(scope="module")
def cts(setup: Setup) -> dict[bool, Original]:
    """A synthetic 512x512 16-bit CT, signed and unsigned, one study each."""
    made = {signed: data.ct(setup.work / f"ct-signed-{signed}.dcm", signed) for signed in (False, True)}
    setup.store(*made.values())
    return made


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=lambda s: UID(s).keyword)
def test_c_get_encodes_an_uncompressed_ct_for_a_compressed_only_client(
    setup: Setup, cts: dict[bool, Original], syntax: str, signed: bool
) -> None:
    original = cts[signed]
    got = c_get(setup.server, original.study, {CTImageStorage}, syntax)
    assert (got.status, got.completed, got.failed) == (0x0000, 1, 0), got.comment
    ds = got.received[original.sop]
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert ds.PixelRepresentation == int(signed)
    assert np.array_equal(ds.pixel_array, data.ct_pixels(signed))
    assert "LossyImageCompression" not in ds or ds.LossyImageCompression == "00"


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_c_move_encodes_an_uncompressed_ct_for_a_jpeg_ls_only_scp(
    setup: Setup, cts: dict[bool, Original], signed: bool
) -> None:
    original = cts[signed]
    moved = c_move(setup.server, original.study, setup.jls.ae_title)
    assert (moved.status, moved.completed, moved.failed) == (0x0000, 1, 0), moved.comment
    ds = setup.jls.received[original.sop]
    assert ds.file_meta.TransferSyntaxUID == JPEGLSLossless
    assert np.array_equal(ds.pixel_array, data.ct_pixels(signed))


# -- 3. the stored syntax, when accepted, goes as stored -----------------------


def test_an_accepted_stored_syntax_goes_as_stored(setup: Setup) -> None:
    original = data.relabelled(sample("MR_small_jpeg_ls_lossless.dcm"), setup.work / "as-stored.dcm")
    setup.store(original)
    moved = c_move(setup.server, original.study, setup.accept_all.ae_title)
    assert (moved.status, moved.completed, moved.failed) == (0x0000, 1, 0), moved.comment
    ds = written(setup.accept_all, original.sop)[original.sop]
    assert ds.file_meta.TransferSyntaxUID == JPEGLSLossless
    assert ds.PixelData == pydicom.dcmread(original.path).PixelData  # the stored fragments, not re-encoded
    assert conversions(setup.server, "retrieve_transfer_syntax", original.sop) == []


# -- 4. a corrupt compressed object fails alone --------------------------------


@pytest.fixture(scope="module")
def corrupt_study(setup: Setup) -> tuple[list[Original], Original]:
    """Two good JPEG-LS images and one whose frame lost its last bytes, in one study."""
    source = sample("MR_small_jpeg_ls_lossless.dcm")
    first = data.relabelled(source, setup.work / "good-1.dcm")
    second = data.relabelled(source, setup.work / "good-2.dcm", study=first.study)
    bad = data.truncated(source, setup.work / "truncated.dcm", first.study)
    setup.store(first, bad, second)
    return [first, second], bad


@pytest.mark.parametrize("service", ["c-get", "c-move"])
def test_a_corrupt_object_fails_alone_and_the_server_keeps_serving(
    setup: Setup, corrupt_study: tuple[list[Original], Original], service: str
) -> None:
    good, bad = corrupt_study
    before = len(conversions(setup.server, "retrieve_conversion_failed", bad.sop))
    if service == "c-get":
        outcome = c_get(setup.server, bad.study, {bad.sop_class}, ExplicitVRLittleEndian)
        arrived = outcome.received
    else:
        forget(setup.dest, *(o.sop for o in [*good, bad]))
        outcome = c_move(setup.server, bad.study, setup.dest.ae_title)
        arrived = written(setup.dest, *(o.sop for o in [*good, bad]))
    assert (outcome.status, outcome.completed, outcome.failed) == (0xB000, 2, 1), outcome.comment
    assert outcome.failed_uids == [bad.sop]
    assert set(arrived) == {o.sop for o in good}
    for original in good:
        assert_decodes_as_original(arrived[original.sop], original, ExplicitVRLittleEndian)
    failures = conversions(setup.server, "retrieve_conversion_failed", bad.sop)
    assert len(failures) == before + 1
    logged = failures[-1]
    assert (logged["from"], logged["to"]) == (JPEGLSLossless, ExplicitVRLittleEndian)
    assert "end-of-image" in logged["reason"]
    # The comment names the instance and the codec's reason (pacsd does not cut it to LO's 64 characters).
    assert bad.sop in outcome.comment and logged["reason"] in outcome.comment
    # Still serving: an echo, and a retrieve that converts.
    setup.server.echoscu()
    again = c_get(setup.server, good[0].study, {bad.sop_class}, ImplicitVRLittleEndian)
    assert (again.completed, again.failed) == (2, 1)
    assert set(again.received) == {o.sop for o in good}


# -- 5. the lossy gate ---------------------------------------------------------


@pytest.mark.parametrize(
    ("syntax", "reason"),
    [
        (JPEGBaseline8Bit, "none of which pacsd can encode"),  # a lossy-only syntax pacsd has no encoder for
        (JPEG2000, "converting to a lossy syntax is not allowed"),  # pacsd can encode it, but only lossily
    ],
    ids=["JPEGBaseline8Bit", "JPEG2000"],
)
def test_a_lossless_original_is_not_made_lossy(
    setup: Setup, cts: dict[bool, Original], syntax: str, reason: str
) -> None:
    original = cts[False]
    got = c_get(setup.server, original.study, {CTImageStorage}, syntax)
    assert (got.status, got.completed, got.failed) == (0xB000, 0, 1)
    assert got.failed_uids == [original.sop]
    assert got.received == {}
    assert original.sop in got.comment and reason in got.comment
    assert all(e["to"] != syntax for e in conversions(setup.server, "retrieve_transfer_syntax", original.sop))
    assert [
        e["reason"] for e in conversions(setup.server, "retrieve_unsendable", original.sop) if reason in e["reason"]
    ]
    setup.server.echoscu()


# -- 6. each conversion is logged ----------------------------------------------


def test_a_conversion_is_logged_with_both_syntaxes_and_its_duration(setup: Setup) -> None:
    original = data.relabelled(sample("MR_small_RLE.dcm"), setup.work / "logged.dcm")
    setup.store(original)
    got = c_get(setup.server, original.study, {original.sop_class}, ImplicitVRLittleEndian)
    assert got.completed == 1
    (logged,) = conversions(setup.server, "retrieve_transfer_syntax", original.sop)
    assert (logged["from"], logged["to"]) == (RLELossless, ImplicitVRLittleEndian)
    assert isinstance(logged["ms"], int | float) and logged["ms"] >= 0
