"""Making studies local: fetch from an upstream, commit all or nothing.

For each study a C-MOVE/C-GET asks for and that was not fetched whole
before:

1. under the study's lock (one fetch per study across workers; a second
   client waits, then finds it done), and one of the upstream's fetch slots;
2. ask the upstream what it holds (C-FIND SERIES, then IMAGE per series):
   the expected SOP instances. If all of them are local already, done;
3. open a staging directory named by a fresh Message ID and retrieve the
   study into it (C-MOVE to our own AE title: arrivals carry that Move
   Originator Message ID; or C-GET on the same association). Arrivals are
   validated as ingest validates, written and fsynced, never indexed;
4. only if the upstream finished with success and every expected object
   (and nothing else) arrived: index them all in one savepoint, with a
   'done' fetch record. Any other ending leaves no row and no staged file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from pydicom.dataset import Dataset
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from pacsd import log
from pacsd.config import Settings, Upstream
from pacsd.domain import uid
from pacsd.domain.errors import Cancelled, Refusal
from pacsd.domain.header import Header
from pacsd.domain.outcomes import FetchRecord, Shortfall
from pacsd.domain.query import InformationModel, text_value
from pacsd.domain.received import Received
from pacsd.ports import FetchSink, Index, LogFields, Watch
from pacsd.upstream import query
from pacsd.upstream.session import SYNTAXES, UpstreamError, UpstreamSession, final_status, outgoing
from pacsd.upstream.staging import LockTimeout, StagedFetch, Staging
from pacsd.wire import command, dataset, statuses
from pacsd.wire.link import ClientGone, Message

_log = log.get("pacsd.virtual")

FIND = str(StudyRootQueryRetrieveInformationModelFind)
MOVE = str(StudyRootQueryRetrieveInformationModelMove)
GET = str(StudyRootQueryRetrieveInformationModelGet)
MAX_GET_CONTEXTS = 126  # and one for the C-GET itself; IDs are odd numbers up to 255


class FetchFailed(Exception):
    """The fetch ended without a whole, consistent study; says why."""

    def __init__(self, reason: str, expected: int = 0, cancelled: bool = False) -> None:
        super().__init__(reason)
        self.expected = expected
        self.cancelled = cancelled


class Proxy:
    """The caching proxy as a :class:`pacsd.ports.Source` of the Archive."""

    def __init__(self, settings: Settings, index: Index, staging: Staging) -> None:
        assert settings.virtual is not None
        self.ae_title = settings.server.ae_title
        self.upstreams = settings.virtual.upstreams
        self.index = index
        self.staging = staging
        self.limits = settings.limits
        self.spool_dir = str(staging.storage.tmp)
        self._upstream_aes = {u.remote.ae_title for u in self.upstreams}

    # -- arrivals ----------------------------------------------------------

    def fetch_of(self, originator_ae: str, originator_id: int, calling_ae: str) -> int | None:
        """The Message ID of the fetch a C-STORE belongs to: sent by an
        upstream on behalf of our own C-MOVE. None: an ordinary store."""
        if originator_ae == self.ae_title and calling_ae in self._upstream_aes and originator_id:
            return originator_id
        return None

    def stage(self, fetch_id: int, received: Received) -> Header:
        """Keep an arrival of fetch *fetch_id* in staging (C-MOVE arrivals
        on any association, C-GET ones on the fetch's); raises a Refusal."""
        return self.staging.stage(fetch_id, received.source_ae, received)

    def _answer_arrival(self, fetch_id: int, received: Received, log_fields: LogFields) -> tuple[int, str]:
        """Stage an arrival of our own C-GET; the (status, comment) for the upstream."""
        try:
            self.stage(fetch_id, received)
        except Exception as exc:  # a bug as well as a refusal: the fetch then misses this object and fails
            code, comment = statuses.store_failure(exc)
            _log.warning("stage_refused", sop_instance_uid=received.sop_instance_uid, status=f"0x{code:04X}",
                         reason=comment, fetch=fetch_id, **log_fields)  # fmt: skip
            return code, comment
        return statuses.SUCCESS, ""

    # -- queries ---------------------------------------------------------------

    def matches(
        self, identifier: Dataset, model: InformationModel, watch: Watch, problems: list[str], log_fields: LogFields
    ) -> Iterator[Dataset]:
        return query.upstream_matches(self, identifier, model, watch, problems, log_fields)

    # -- retrieves ---------------------------------------------------------

    def make_local(self, identifier: Dataset, watch: Watch, sink: FetchSink, log_fields: LogFields) -> list[Shortfall]:
        """Fetch what a C-MOVE/C-GET *identifier* asks for and is not local,
        handing each whole study to *sink*. Returns what could not be made
        local; raises what our client's link raised if it went away."""
        studies, shortfalls = self._studies(identifier, watch, log_fields)
        for study_uid in studies:
            if self.index.fetched_whole(study_uid):
                continue
            shortfall = self._make_study_local(study_uid, watch, sink, log_fields)
            if shortfall is not None:
                shortfalls.append(shortfall)
                if shortfall.cancelled:
                    break
        return shortfalls

    def _studies(self, query: Dataset, watch: Watch, log_fields: LogFields) -> tuple[list[str], list[Shortfall]]:
        """The studies *query* names, or those the upstreams hold for its
        patient or its accession number (patient level, relational retrieve)."""
        named = [u.strip() for u in text_value(query.get("StudyInstanceUID")).split("\\") if u.strip()]
        if named and not any(c in u for u in named for c in "*?"):
            return [u for u in named if uid.is_valid(u)], []  # a malformed UID matches nothing anywhere
        patient_id = text_value(query.get("PatientID")).strip()
        accession = text_value(query.get("AccessionNumber")).strip()
        if not (patient_id or accession):
            return [], []
        keys = Dataset()
        keys.QueryRetrieveLevel = "STUDY"
        if patient_id:
            keys.PatientID = patient_id
            if "IssuerOfPatientID" in query:
                keys.IssuerOfPatientID = query.IssuerOfPatientID
        if accession:
            keys.AccessionNumber = accession
        keys.StudyInstanceUID = ""
        studies: list[str] = []
        shortfalls = []
        for upstream in self.upstreams:
            try:
                for ds in self.find(upstream, keys, watch, time.monotonic() + upstream.fetch_timeout):
                    study_uid = text_value(ds.get("StudyInstanceUID")).strip()
                    if uid.is_valid(study_uid) and study_uid not in studies:
                        studies.append(study_uid)
            except UpstreamError as exc:
                _log.warning("upstream_find_failed", upstream=upstream.remote.name, reason=str(exc), **log_fields)
                shortfalls.append(Shortfall("", 0, f"cannot ask {upstream.remote.name} for the studies: {exc}"))
        return studies, shortfalls

    def _make_study_local(
        self, study_uid: str, watch: Watch, sink: FetchSink, log_fields: LogFields
    ) -> Shortfall | None:
        problems = []
        longest = max(u.fetch_timeout for u in self.upstreams)
        try:
            with self.staging.study_lock(study_uid, watch, longest):
                if self.index.fetched_whole(study_uid):  # another client's fetch, which we waited for
                    return None
                for upstream in self.upstreams:
                    name = upstream.remote.name
                    with self.staging.slot(name, upstream.max_fetches, watch, upstream.fetch_timeout):
                        try:
                            expected = self._fetch(upstream, study_uid, watch, sink, log_fields)
                        except UpstreamError as exc:
                            problems.append(str(exc))
                            continue
                        except FetchFailed as exc:
                            return Shortfall(study_uid, exc.expected, str(exc), exc.cancelled)
                    if expected:
                        return None
        except Cancelled:  # while waiting for a lock, or asking what the upstream holds
            return Shortfall(study_uid, 0, "cancelled by the client before the fetch began", True)
        except LockTimeout as exc:  # another fetch of the study, or every fetch slot, held too long
            _log.warning("fetch_lock_timeout", study_uid=study_uid, reason=str(exc), **log_fields)
            return Shortfall(study_uid, 0, f"study {study_uid} not fetched: {exc}")
        if problems:
            return Shortfall(study_uid, 0, "; ".join(problems))
        return None  # no upstream holds it: what is local is all there is

    def _fetch(self, upstream: Upstream, study_uid: str, watch: Watch, sink: FetchSink, log_fields: LogFields) -> int:
        """Fetch one study whole from *upstream*; the number of instances it
        holds (0: none, nothing to do). Raises UpstreamError before anything
        was retrieved, FetchFailed or Cancelled after."""
        start = time.monotonic()
        deadline = start + upstream.fetch_timeout
        name = upstream.remote.name
        expected = self._survey(upstream, study_uid, watch, deadline)
        if not expected:
            return 0
        if set(expected) <= self.index.stored_sops(study_uid):
            return len(expected)
        log_fields = {"upstream": name, "study_uid": study_uid, "expected": len(expected), **log_fields}
        _log.info("fetch_started", method=upstream.retrieve, **log_fields)
        staged = self.staging.open(upstream.remote.ae_title, study_uid, len(expected))
        received = 0
        try:
            try:
                self._retrieve(upstream, study_uid, staged, expected, watch, deadline)
            except UpstreamError as exc:  # the retrieve had begun: a failed fetch, not an unreachable upstream
                raise FetchFailed(str(exc)) from None
            received = len(staged.objects())
            self._commit(sink, upstream, study_uid, staged, expected, received, start)
        except Cancelled:
            reason = f"cancelled by the client after {len(staged.objects())} of {len(expected)} arrived"
            self._failed(sink, upstream, study_uid, len(expected), len(staged.objects()), start, reason, log_fields)
            raise FetchFailed(reason, len(expected), cancelled=True) from None
        except (FetchFailed, Refusal) as exc:
            reason = str(exc) if isinstance(exc, FetchFailed) else f"{name}: the fetched study was refused: {exc}"
            self._failed(sink, upstream, study_uid, len(expected), len(staged.objects()), start, reason, log_fields)
            raise FetchFailed(reason, len(expected)) from None
        except ClientGone:
            self._failed(
                sink,
                upstream,
                study_uid,
                len(expected),
                len(staged.objects()),
                start,
                "our client went away",
                log_fields,
            )
            raise
        finally:
            self.staging.discard(staged)
        _log.info(
            "fetch_done",
            outcome="done",
            received=len(expected),
            ms=round((time.monotonic() - start) * 1000, 1),
            **log_fields,
        )
        return len(expected)

    def _survey(self, upstream: Upstream, study_uid: str, watch: Watch, deadline: float) -> dict[str, str]:
        """SOP Instance UID -> SOP Class UID of every instance *upstream*
        holds in the study."""
        series_keys = Dataset()
        series_keys.QueryRetrieveLevel = "SERIES"
        series_keys.StudyInstanceUID = study_uid
        series_keys.SeriesInstanceUID = ""
        expected: dict[str, str] = {}
        with UpstreamSession.open(
            upstream, self.ae_title, [build_context(FIND, SYNTAXES)], deadline, self.limits
        ) as session:
            series = [text_value(ds.get("SeriesInstanceUID")).strip() for ds in _find(session, series_keys, watch)]
            for series_uid in filter(None, series):
                keys = Dataset()
                keys.QueryRetrieveLevel = "IMAGE"
                keys.StudyInstanceUID = study_uid
                keys.SeriesInstanceUID = series_uid
                keys.SOPInstanceUID = ""
                keys.SOPClassUID = ""
                for ds in _find(session, keys, watch):
                    sop = text_value(ds.get("SOPInstanceUID")).strip()
                    if sop:
                        expected[sop] = text_value(ds.get("SOPClassUID")).strip()
        return expected

    def _retrieve(
        self, upstream: Upstream, study_uid: str, staged: StagedFetch, expected: dict[str, str], watch: Watch,
        deadline: float,
    ) -> None:  # fmt: skip
        keys = Dataset()
        keys.QueryRetrieveLevel = "STUDY"
        keys.StudyInstanceUID = study_uid
        name = upstream.remote.name
        if upstream.retrieve == "move":
            contexts = [build_context(MOVE, SYNTAXES)]
        else:
            contexts = [build_context(GET, SYNTAXES)]
            for sop_class in sorted(set(expected.values()))[:MAX_GET_CONTEXTS]:
                cx = build_context(sop_class, SYNTAXES)
                cx.scp_role = True
                contexts.append(cx)
        with UpstreamSession.open(upstream, self.ae_title, contexts, deadline, self.limits, self.spool_dir) as session:
            if upstream.retrieve == "move":
                abstract, field = MOVE, command.C_MOVE_RQ
                extra = [(command.MOVE_DESTINATION, "AE", self.ae_title)]
            else:
                abstract, field, extra = GET, command.C_GET_RQ, []
            message_id = session.request(abstract, field, keys, staged.message_id, extra)
            final: Message | None = None
            for message in session.responses(message_id, watch):
                if message.command.field == command.C_STORE_RQ:
                    received = dataset.received(message, upstream.remote.ae_title)
                    try:
                        answer = self._answer_arrival(staged.message_id, received, {"upstream": name})
                    finally:
                        message.discard()  # staged (copied) by now, or refused
                    session.answer_store(message, *answer)
                else:
                    final = message
        assert final is not None
        status, comment = final_status(final)
        counts = {k: final.command.us(e) for k, e in (("completed", command.COMPLETED), ("failed", command.FAILED),
                                                      ("warning", command.WARNING))}  # fmt: skip
        if status != statuses.SUCCESS:
            detail = f": {comment}" if comment else ""
            raise FetchFailed(
                f"{name} ended the C-{upstream.retrieve.upper()} with 0x{status:04X} (completed {counts['completed']}, "
                f"failed {counts['failed']}, warning {counts['warning']}){detail}"
            )

    def _commit(
        self, sink: FetchSink, upstream: Upstream, study_uid: str, staged: StagedFetch, expected: dict[str, str],
        received: int, start: float,
    ) -> None:  # fmt: skip
        name = upstream.remote.name
        files = staged.objects()
        arrived = {path.stem for path in files}
        missing = sorted(set(expected) - arrived)
        if missing:
            raise FetchFailed(
                f"{name} reported success but sent {len(expected) - len(missing)} of {len(expected)} objects "
                f"(missing {missing[0]}{' and more' if len(missing) > 1 else ''})"
            )
        unexpected = sorted(arrived - set(expected))
        if unexpected:
            raise FetchFailed(f"{name} sent {len(unexpected)} object(s) it had not announced, e.g. {unexpected[0]}")

        fetch = FetchRecord(study_uid, name, True, len(expected), received, time.monotonic() - start)
        sink.store_fetched(files, fetch)

    def _failed(
        self, sink: FetchSink, upstream: Upstream, study_uid: str, expected: int, received: int, start: float,
        reason: str, log_fields: LogFields,
    ) -> None:  # fmt: skip
        seconds = time.monotonic() - start
        _log.warning("fetch_failed", outcome="failed", received=received, reason=reason, ms=round(seconds * 1000, 1),
                     **log_fields)  # fmt: skip

        try:
            sink.record_fetch(FetchRecord(study_uid, upstream.remote.name, False, expected, received, seconds, reason))
        except Exception:
            _log.exception("fetch_record_failed", **log_fields)

    def find(self, upstream: Upstream, keys: Dataset, watch: Watch, deadline: float) -> list[Dataset]:
        """C-FIND (Study Root) on *upstream*, through its query filter."""
        with UpstreamSession.open(
            upstream, self.ae_title, [build_context(FIND, SYNTAXES)], deadline, self.limits
        ) as session:
            return list(_find(session, keys, watch))


def _find(session: UpstreamSession, keys: Dataset, watch: Watch) -> list[Dataset]:
    """One Study Root C-FIND on an open session, through the query filter."""
    query = outgoing(session.upstream, keys)
    return [] if query is None else list(session.find(FIND, query, watch))
