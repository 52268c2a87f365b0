"""Retrieve sub-operations: C-STORE each selected instance, count, report.

Shared by C-MOVE (the C-STOREs go over an association we open to the
destination) and C-GET (they go back over the requester's association).
Each instance goes out as the bytes of its file whenever the peer accepted
the syntax it is stored in; only otherwise is it converted, as the Archive's
send plan decides, and that is logged.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING, code_to_category

from pacsd import log
from pacsd.dimse import qr
from pacsd.domain import transfer
from pacsd.domain.errors import ConversionFailed, NotSendable, Unreadable
from pacsd.domain.outcomes import Shortfall, StoredInstance
from pacsd.ports import LogFields
from pacsd.services.archive import Archive
from pacsd.services.retrieve import Outgoing
from pacsd.wire import command, requestor, statuses
from pacsd.wire.link import Link, Message

_log = log.get("pacsd.retrieve")

US_MAX = 0xFFFF  # sub-operation counts and Message IDs are US (PS3.7 E.1-1)


def clamp(count: int) -> int:
    """A sub-operation count as the US field can carry it: a retrieve of
    more than 65 535 instances reports 65 535 until fewer remain."""
    return min(count, US_MAX)


def message_id(n: int) -> int:
    """The Message ID of the *n*-th sub-operation (from 0): 1 to 65 535,
    then round again (IDs need only be unique among outstanding messages,
    and we have one at a time)."""
    return n % US_MAX + 1


@dataclass
class Tally:
    total: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)
    # Caching proxy: instances that could not be fetched, and why.
    unfetched: int = 0
    notes: list[str] = field(default_factory=list)
    # Instances that could not be sent (unreadable, no usable syntax, conversion failed).
    unsent: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.total - self.completed - self.failed - self.warning

    def count(self, status: int, sop_uid: str) -> None:
        """Count one sub-operation by its C-STORE status, in pynetdicom's
        categories (PS3.7 C: 0x0001, 0x0107, 0x0116 and 0xB000-0xBFFF are
        warnings; anything else but success fails)."""
        category = code_to_category(status)
        if category == STATUS_SUCCESS:
            self.completed += 1
        elif category == STATUS_WARNING:
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(sop_uid)

    def reason(self, why: str) -> None:
        """Why a sub-operation could not be sent; the first goes in the final comment."""
        if not self.reasons:
            self.reasons.append(why)
        self.unsent += 1

    def counts(self, with_remaining: bool) -> list[tuple[int, str, int]]:
        elements = [
            (command.COMPLETED, "US", clamp(self.completed)),
            (command.FAILED, "US", clamp(self.failed + self.unfetched)),
            (command.WARNING, "US", clamp(self.warning)),
        ]
        if with_remaining:
            elements.append((command.REMAINING, "US", clamp(self.remaining)))
        return elements

    def comment_reasons(self) -> list[str]:
        more = self.unsent - len(self.reasons)
        return [*self.reasons, f"and {more} more not sent"] if more else self.reasons

    def failed_list(self) -> Dataset | None:
        if not self.failed_uids:
            return None
        ds = Dataset()
        ds.FailedSOPInstanceUIDList = self.failed_uids
        return ds


def unfetched(shortfalls: list[Shortfall]) -> Tally:
    """What the caching proxy could not fetch, as counts and comments for
    the final response. If the client cancelled, all of it remains (the
    tally then reads as cancelled)."""
    tally = Tally(0, unfetched=sum(s.expected for s in shortfalls), notes=[s.reason for s in shortfalls])
    if any(s.cancelled for s in shortfalls):
        tally.total, tally.unfetched = tally.unfetched, 0
    return tally


def final_status(tally: Tally) -> int:
    """The final status of a retrieve (PS3.4 C.4.2.1.5, C.4.3.1.4): cancel
    if anything remains, success if everything went, failure if nothing
    could be sent because the proxy could not fetch it (or the requester
    took no role for it), else a warning that some sub-operations failed."""
    unfetched = tally.unfetched or tally.notes
    if tally.remaining:
        return statuses.CANCELLED
    if not (tally.failed or tally.warning or unfetched):
        return statuses.SUCCESS
    if unfetched and not (tally.completed or tally.warning):
        return statuses.UNABLE_TO_PERFORM_SUBOPERATIONS
    return statuses.SUBOPERATIONS_FAILED


def finish(link: Link, request: Message, field: int, tally: Tally) -> None:
    """The final response for *tally*, with its counts and comment."""
    status = final_status(tally)
    counts = tally.counts(with_remaining=status == statuses.CANCELLED)
    comment = "; ".join([*tally.notes, *tally.comment_reasons()])
    qr.respond(link, request, field, status, comment, identifier=tally.failed_list(), counts=counts)


class SubOperations:
    """One retrieve: *stored* goes over *out*; progress and the final
    status go to the requester on *link* as *field* responses."""

    def __init__(
        self,
        link: Link,
        request: Message,
        field: int,
        archive: Archive,
        out: Link,
        accepted: Accepted,
        originator: tuple[str, int] | None,
        log_fields: LogFields,
    ) -> None:
        self.link = link
        self.request = request
        self.field = field
        self.archive = archive
        self.out = out
        self.accepted = accepted
        self.originator = originator
        self.log_fields = log_fields

    def run(self, stored: list[StoredInstance]) -> Tally:
        """Send everything (or until the requester cancels), with a Pending
        response after each sub-operation; returns the tally, cancelled
        if ``remaining`` is not zero. The next instances are read or
        converted while the peer stores the current one."""
        tally = Tally(len(stored))
        ahead: deque[Future[Outgoing]] = deque()
        queued = 0

        def prepare_ahead() -> None:
            nonlocal queued
            while queued < len(stored) and len(ahead) < self.archive.prepare_ahead:
                instance = stored[queued]
                ahead.append(self.archive.prepare_send(instance, list(self.accepted.get(instance.sop_class_uid, {}))))
                queued += 1

        for n, instance in enumerate(stored):
            if qr.cancelled(self.link, self.request.command):
                _log.info("retrieve_cancelled", sent=n, remaining=tally.remaining, **self.log_fields)
                return tally
            prepare_ahead()
            outgoing = self._ready(instance, ahead.popleft(), tally)
            if outgoing is not None:
                context_id = self.accepted[instance.sop_class_uid][outgoing.syntax]
                requestor.send_c_store(self.out, context_id, instance.sop_class_uid, instance.sop_uid,
                                       outgoing.data, message_id(n), self.originator)  # fmt: skip
            prepare_ahead()
            if outgoing is not None:
                status = requestor.store_response(self.out, message_id(n)).status
            else:
                status = statuses.UNABLE_TO_PROCESS
            tally.count(status, instance.sop_uid)
            if tally.remaining:
                qr.respond(self.link, self.request, self.field, statuses.PENDING, counts=tally.counts(True))
        return tally

    def finish(self, tally: Tally) -> None:
        finish(self.link, self.request, self.field, tally)

    def _ready(self, instance: StoredInstance, preparing: Future[Outgoing], tally: Tally) -> Outgoing | None:
        """The prepared instance, or None if it cannot be sent (its
        sub-operation fails; the first reason goes in the final comment)."""
        uid, stored = instance.sop_uid, instance.transfer_syntax
        try:
            outgoing = preparing.result()
        except Unreadable as exc:
            _log.error("retrieve_unreadable", sop_instance_uid=uid, error=str(exc), **self.log_fields)
            tally.reason(f"{uid}: {exc}")
            return None
        except ConversionFailed as exc:
            _log.error("retrieve_conversion_failed", sop_instance_uid=uid, reason=exc.reason,
                       **{"from": stored, "to": exc.target}, **self.log_fields)  # fmt: skip
            tally.reason(f"{uid}: {exc}")
            return None
        except NotSendable as exc:
            _log.warning("retrieve_unsendable", sop_instance_uid=uid, reason=str(exc), **self.log_fields)
            tally.reason(f"{uid}: {exc}")
            return None
        if outgoing.converted_from:
            _log.info("retrieve_transfer_syntax", sop_instance_uid=uid, ms=round(outgoing.ms, 1),
                      **{"from": outgoing.converted_from, "to": outgoing.syntax}, **self.log_fields)  # fmt: skip
        return outgoing


# Per SOP class, the transfer syntaxes the peer accepted for it (in the
# order of its preference) and the context each goes on.
Accepted = dict[str, dict[str, int]]


def accepted(contexts: dict[int, PresentationContext], peer_is_scp: bool = False) -> Accepted:
    """What the peer accepted, from an association's contexts (in the order
    they were proposed); with *peer_is_scp*, only those on which the peer
    took the SCP role (a C-GET's storage contexts)."""
    result: Accepted = {}
    for context_id, cx in sorted(contexts.items()):
        if peer_is_scp and not cx.as_scu:
            continue
        by_syntax = result.setdefault(str(cx.abstract_syntax), {})
        by_syntax.setdefault(str(cx.transfer_syntax[0]), context_id)
    return result


def contexts(stored: Iterable[StoredInstance]) -> list[PresentationContext]:
    """Contexts for a C-MOVE sub-association: per SOP class, each stored
    syntax and those pacsd can convert to (:func:`transfer.proposals`)."""
    pairs = {(i.sop_class_uid, i.transfer_syntax) for i in stored}
    return [build_context(p.sop_class, list(p.syntaxes)) for p in transfer.proposals(pairs)]
