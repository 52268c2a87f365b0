"""The Archive: the one object protocol adapters hold (like Orthanc's
ServerContext). Each public method is one use case; adapters translate
their protocol to a call and map its outcome or exception through their
own status table. Whether a caching proxy is configured is known here
(``source``), never in an adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path

from pydicom.dataset import Dataset

from pacsd.domain import charset, transfer
from pacsd.domain.deletion import Deleted, DeleteTarget
from pacsd.domain.errors import OverBudget
from pacsd.domain.limits import Limits
from pacsd.domain.outcomes import Change, FetchRecord, Outcome, Result, RetrievePlan, StoredInstance
from pacsd.domain.query import C_FIND, UNIQUE_KEYS, InformationModel, SearchOptions, query_level, text_value
from pacsd.domain.received import Received
from pacsd.domain.worklist import WorklistEntry
from pacsd.ports import FileStore, Flusher, Index, LogFields, Source, Watch, no_watch
from pacsd.services import deletion, mpps, pixels, rendering, retrieve, worklist
from pacsd.services.conversions import Conversions
from pacsd.services.ingest import Ingest
from pacsd.services.metadata import MetadataCache
from pacsd.services.retrieve import Outgoing


class Matches:
    """The matches of one query, as they are read: local ones first, then
    the caching proxy's upstreams' (de-duplicated on the level's unique
    key: local data wins). ``problems`` names the upstreams that could not
    be asked; complete once iteration has ended."""

    def __init__(self, responses: Iterator[Dataset], problems: list[str]) -> None:
        self._responses = responses
        self.problems = problems

    def __iter__(self) -> Iterator[Dataset]:
        return self._responses


class Archive:
    def __init__(
        self,
        *,
        ae_title: str,
        limits: Limits,
        index: Index,
        storage: FileStore,
        flusher: Flusher,
        source: Source | None = None,
        worklist_own_items_only: frozenset[str] = frozenset(),
        worklist_expire_days: int = 0,
        conversions: Conversions | None = None,
        allow_lossy: bool = False,
    ) -> None:
        self.ae_title = ae_title  # answers name it as the Retrieve AE Title
        self.limits = limits
        self.index = index
        self.storage = storage
        self.source = source
        self.ingest = Ingest(storage, index, flusher, limits)
        # Calling AE titles that see only their own worklist items when their
        # query names no Scheduled Station AE Title ([remotes] worklist_own_items_only).
        self.worklist_own_items_only = worklist_own_items_only
        self.worklist_expire_days = worklist_expire_days  # [worklist] expire_after_days
        self.conversions = conversions or Conversions(1)  # [transcode] processes
        self.allow_lossy = allow_lossy  # [transcode] allow_lossy
        # Instances a retrieve has in preparation besides the one being sent:
        # enough to keep every conversion process busy meanwhile.
        self.prepare_ahead = self.conversions.processes + 1
        self.metadata_cache = MetadataCache(storage)

    # -- objects in ------------------------------------------------------------

    def store(self, received: Received, move_originator: tuple[str, int] = ("", 0)) -> Outcome:
        """Store an arriving object; raises a Refusal. An arrival an upstream
        sends for a fetch of the caching proxy (named by the Move Originator)
        is staged for that fetch instead, and indexed only with its study."""
        if self.source is not None:
            fetch_id = self.source.fetch_of(*move_originator, received.source_ae)
            if fetch_id is not None:
                return Outcome(Result.STAGED, self.source.stage(fetch_id, received))
        return self.ingest.store(received)

    def store_upload(self, received: Received, study_uid: str | None = None) -> Outcome:
        """Store an object uploaded over HTTP (STOW-RS): the C-STORE ingest,
        never a proxy fetch's arrival. With *study_uid* (the study the
        request names) an object of another study is refused, StudyMismatch."""
        budget = self.limits.object_bytes(received.sop_class_uid)
        if len(received.dataset) > budget:
            raise OverBudget("max_object_bytes", f"dataset of {len(received.dataset)} bytes exceeds {budget}")
        return self.ingest.store(received, study_uid)

    def store_fetched(self, files: list[Path], fetch: FetchRecord) -> int:
        """Index a study the caching proxy fetched whole, with its fetch
        record, in one unit of work (:class:`pacsd.ports.FetchSink`)."""
        return self.ingest.store_all(files, fetch)

    def record_fetch(self, fetch: FetchRecord) -> None:
        self.index.write(lambda tx: tx.record_fetch(fetch), lambda _: None)

    def delete(self, target: DeleteTarget) -> Deleted:
        """Delete a stored study, series or instance, files and rows, and
        the parents left empty (NoSuchResource if not stored here: the
        caching proxy's upstreams are never asked, nor changed)."""
        return deletion.delete(self.index, self.storage, target, self.forget_metadata)

    # -- queries ---------------------------------------------------------------

    def find(
        self,
        identifier: Dataset,
        model: InformationModel,
        watch: Watch,
        log_fields: LogFields,
        options: SearchOptions = C_FIND,
    ) -> Matches:
        """The matches of a C-FIND identifier (InvalidQuery if it cannot be
        answered as asked; *watch* raises Cancelled between matches).
        *options* (fuzzy names, relational, strict) apply to the local
        index; the caching proxy's upstreams are asked the identifier as is."""
        problems: list[str] = []
        return Matches(self._matches(identifier, model, watch, problems, log_fields, options), problems)

    def _matches(
        self,
        identifier: Dataset,
        model: InformationModel,
        watch: Watch,
        problems: list[str],
        log_fields: LogFields,
        options: SearchOptions,
    ) -> Iterator[Dataset]:
        unique = UNIQUE_KEYS[query_level(identifier, model)]
        if self.source is not None and unique not in identifier:
            setattr(identifier, unique, "")  # merged answers are de-duplicated on it
        terms = charset.requested(identifier)
        seen: set[str] = set()
        # The index holds no read while a match is handed on: a client that
        # stops reading does not pin the index's WAL.
        for match in self.index.matches(identifier, model, self.limits.max_query_values, options):
            watch()
            seen.add(text_value(match.get(unique)))
            match.RetrieveAETitle = self.ae_title
            charset.declare(match, terms)
            yield match
        if self.source is None:
            return
        for match in self.source.matches(identifier, model, watch, problems, log_fields):
            key = text_value(match.get(unique))
            if key and key in seen:
                continue  # local data wins
            seen.add(key)
            match.RetrieveAETitle = self.ae_title  # clients retrieve through pacsd
            yield match

    # -- retrieves -------------------------------------------------------------

    def plan_retrieve(
        self,
        identifier: Dataset,
        model: InformationModel,
        watch: Watch,
        log_fields: LogFields,
        before_fetch: Callable[[], None] | None = None,
    ) -> RetrievePlan:
        """What a retrieve identifier asks for (InvalidQuery if it cannot be
        answered). Through the caching proxy, studies not local are fetched
        first; *before_fetch* runs before that and may raise to stop it
        (a C-MOVE checks its destination takes objects)."""
        max_values = self.limits.max_query_values
        instances = self.index.instances(identifier, model, max_values)
        if self.source is None:
            return RetrievePlan(instances, [])
        if before_fetch is not None:
            before_fetch()
        shortfalls = self.source.make_local(identifier, watch, self, log_fields)
        plan = RetrievePlan([], shortfalls)
        if not plan.cancelled:
            plan.instances = self.index.instances(identifier, model, max_values)
        return plan

    def prepare_send(self, instance: StoredInstance, accepted: Sequence[str]) -> Future[Outgoing]:
        """*instance* as a recipient that takes the transfer syntaxes
        *accepted* (its preference first) can receive it: as stored, or
        converted by the send plan; the future fails with a NotSendable
        naming why it cannot go. Conversions run in the pool, so a caller
        sends one instance while the next is prepared."""
        return retrieve.prepare(self.storage, self.conversions, instance, accepted, self.allow_lossy)

    def send_refusal(self, instance: StoredInstance, accepted: Sequence[str]) -> str:
        """Why *instance* cannot go in any of *accepted* ('' if it can): the
        send plan, decided before any byte goes out."""
        plan = transfer.send_plan(instance.transfer_syntax, accepted, self.allow_lossy)
        return plan.reason if isinstance(plan, transfer.Refuse) else ""

    # -- WADO-RS metadata, frames, bulk data -------------------------------------

    def metadata(self, instances: Sequence[StoredInstance]) -> list[str]:
        """Each instance's DICOM JSON, BulkDataURIs relative
        (:func:`pacsd.services.metadata.absolute`); Unreadable for a lost file."""
        return self.metadata_cache.get_all(instances, self.conversions)

    def metadata_etag(self, instances: Sequence[StoredInstance]) -> str:
        return self.metadata_cache.etag(instances)

    def forget_metadata(self, instance: StoredInstance) -> None:
        """What deletes or corrects an instance calls: its cached metadata goes."""
        self.metadata_cache.forget(instance)

    def frames(self, instance: StoredInstance, numbers: Sequence[int], native: bool) -> list[bytes]:
        """Frames *numbers* (from 1; NoSuchFrame) native, or as stored
        (compressed); a native frame of a compressed instance is decoded."""
        return pixels.frames(self.storage, instance, numbers, native, self.prepare_send)

    def bulkdata(self, instance: StoredInstance, path: str, native: bool) -> list[bytes]:
        """The binary value a BulkDataURI path names (NoSuchAttribute)."""
        return pixels.bulkdata(self.storage, instance, path, native, self.prepare_send)

    # -- WADO-RS rendered and thumbnails ---------------------------------------------

    def render(self, instance: StoredInstance, frame: int, asked: rendering.Rendering) -> Future[bytes]:
        """Frame *frame* of *instance* as an image, rendered in the conversion
        pool; the future fails with NoSuchFrame (none, or no pixel data),
        Unreadable or ConversionFailed (its pixels cannot be decoded)."""
        path = str(self.storage.absolute(instance.path))
        return self.conversions.call(
            rendering.render, path, frame, asked, source=instance.transfer_syntax, target=asked.media_type
        )

    def representative(self, instances: Sequence[StoredInstance], study_uid: str) -> StoredInstance:
        """The one of *instances* (of study *study_uid*) a study's or
        series' rendered image shows (:func:`rendering.representative`)."""
        if len(instances) == 1:
            return instances[0]
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "IMAGE"
        identifier.StudyInstanceUID = study_uid
        for keyword in ("SeriesInstanceUID", "SeriesNumber", "SOPInstanceUID", "InstanceNumber"):
            setattr(identifier, keyword, None)
        options = SearchOptions(relational=True)
        by_sop = {instance.sop_uid: instance for instance in instances}
        candidates = []
        for match in self.index.matches(identifier, InformationModel.STUDY_ROOT, self.limits.max_query_values, options):
            instance = by_sop.get(text_value(match.get("SOPInstanceUID")))
            if instance is not None:
                numbers = [_integer(match.get(keyword)) for keyword in ("SeriesNumber", "InstanceNumber")]
                candidates.append(rendering.Candidate(instance, text_value(match.get("SeriesInstanceUID")), *numbers))
        return rendering.representative(candidates) if candidates else instances[0]

    def close(self) -> None:
        """Stop the conversion processes (the ports are closed by their owner)."""
        self.conversions.close()

    # -- the worklist ----------------------------------------------------------

    def worklist_create(self, items: list[Dataset]) -> list[WorklistEntry]:
        """Store worklist items for a RIS, all or none (InvalidWorklistItem
        naming the attribute, WorklistConflict, IdentityConflict)."""
        return worklist.create(self.index, items)

    def worklist_find(self, identifier: Dataset, watch: Watch, log_fields: LogFields, calling_ae: str = "") -> Matches:
        """A modality's worklist query (InvalidQuery if it cannot be answered)."""
        own = calling_ae if calling_ae in self.worklist_own_items_only else ""
        answers = worklist.find(self.index, identifier, watch, own_station=own, expire_days=self.worklist_expire_days)
        return Matches(answers, [])

    def worklist_search(self, identifier: Dataset, include_done: bool = False) -> list[Dataset]:
        """The same matching for a RIS or an operator (HTTP, CLI)."""
        return list(
            worklist.find(self.index, identifier, no_watch, include_done, expire_days=self.worklist_expire_days)
        )

    def worklist_remove(self, study_uid: str, sps_id: str) -> bool:
        return worklist.remove(self.index, study_uid, sps_id)

    def worklist_set_status(self, study_uid: str, sps_id: str, status: str) -> WorklistEntry:
        return worklist.set_status(self.index, study_uid, sps_id, status)

    # -- performed procedure steps ----------------------------------------------

    def mpps_create(self, sop_uid: str, dataset: Dataset, log_fields: LogFields) -> None:
        """A modality starts a procedure step (MppsInvalidValue, MppsDuplicate)."""
        mpps.create(self.index, sop_uid, dataset, log_fields)

    def mpps_set(self, sop_uid: str, modification: Dataset, log_fields: LogFields) -> Dataset:
        """A modality updates or ends a step; the step as now stored
        (MppsNoSuchInstance, MppsFinal, MppsNotSettable, MppsInvalidValue)."""
        return mpps.update(self.index, sop_uid, modification, log_fields)

    # -- the change feed and counts --------------------------------------------

    def changes_since(self, seq: int = 0, limit: int = 1000) -> list[Change]:
        return self.index.changes_since(seq, limit)

    def counts(self) -> dict[str, int]:
        return self.index.counts()


def _integer(value: object) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None
