"""Retrieve sub-operations: C-STORE each selected instance, count, report.

Shared by C-MOVE (the C-STOREs go over an association we open to the
destination) and C-GET (they go back over the requester's association).
Each instance goes out as the bytes of its file whenever the peer accepted
the syntax it is stored in; only otherwise is it decoded and re-encoded
(explicit <-> implicit VR), and that is logged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING, code_to_category

from pacsd import log
from pacsd.dimse import qr
from pacsd.domain.outcomes import Shortfall, StoredInstance
from pacsd.ports import LogFields
from pacsd.services.archive import Archive
from pacsd.wire import command, dataset, requestor, statuses
from pacsd.wire.link import Link, Message, Payload

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

    def counts(self, with_remaining: bool) -> list[tuple[int, str, int]]:
        elements = [
            (command.COMPLETED, "US", clamp(self.completed)),
            (command.FAILED, "US", clamp(self.failed + self.unfetched)),
            (command.WARNING, "US", clamp(self.warning)),
        ]
        if with_remaining:
            elements.append((command.REMAINING, "US", clamp(self.remaining)))
        return elements

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
    comment = "; ".join(tally.notes)
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
        usable: dict[tuple[str, str], int],
        originator: tuple[str, int] | None,
        log_fields: LogFields,
    ) -> None:
        self.link = link
        self.request = request
        self.field = field
        self.archive = archive
        self.out = out
        self.usable = usable  # (SOP class, transfer syntax) -> context ID on *out*
        self.originator = originator
        self.log_fields = log_fields

    def run(self, stored: list[StoredInstance]) -> Tally:
        """Send everything (or until the requester cancels), with a Pending
        response after each sub-operation; returns the tally, cancelled
        if ``remaining`` is not zero."""
        tally = Tally(len(stored))
        upcoming = self._prepare(stored[0]) if stored else None
        for n, instance in enumerate(stored):
            if qr.cancelled(self.link, self.request.command):
                _log.info("retrieve_cancelled", sent=n, remaining=tally.remaining, **self.log_fields)
                return tally
            prepared = upcoming
            if isinstance(prepared, tuple):
                context_id, data = prepared
                requestor.send_c_store(
                    self.out, context_id, instance.sop_class_uid, instance.sop_uid, data, message_id(n), self.originator
                )
            # Read the next file while the peer stores this one.
            upcoming = self._prepare(stored[n + 1]) if n + 1 < len(stored) else None
            if isinstance(prepared, tuple):
                status = requestor.store_response(self.out, message_id(n)).status
            else:
                status = statuses.UNABLE_TO_PROCESS
            tally.count(status, instance.sop_uid)
            if tally.remaining:
                qr.respond(self.link, self.request, self.field, statuses.PENDING, counts=tally.counts(True))
        return tally

    def finish(self, tally: Tally) -> None:
        finish(self.link, self.request, self.field, tally)

    def _prepare(self, instance: StoredInstance) -> tuple[int, Payload] | None:
        """(context ID, dataset) to send *instance* with, or None if it
        cannot be sent (that sub-operation fails). A large dataset is sent
        from its file as it is read, never held whole."""
        context_id = self.usable.get((instance.sop_class_uid, instance.transfer_syntax))
        try:
            if context_id is not None:
                return context_id, self.archive.open_instance(instance)
            return self._converted(instance)
        except (OSError, ValueError) as exc:  # file gone or damaged: that one fails
            _log.error("retrieve_unreadable", sop_instance_uid=instance.sop_uid, error=str(exc), **self.log_fields)
            return None

    def _converted(self, instance: StoredInstance) -> tuple[int, bytes] | None:
        """The instance re-encoded in an uncompressed syntax the peer took."""
        offered = {ts: cx for (sop_class, ts), cx in self.usable.items() if sop_class == instance.sop_class_uid}
        note = syntax_note(instance, set(offered))
        _log.warning("retrieve_transfer_syntax", sop_instance_uid=instance.sop_uid, note=note, **self.log_fields)
        if UID(instance.transfer_syntax).is_compressed:
            return None
        for syntax, context_id in sorted(offered.items()):
            if not UID(syntax).is_compressed:
                ds = self.archive.load_instance(instance)
                return context_id, dataset.encode(ds, UID(syntax))
        return None


MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1-255
UNCOMPRESSED: list[str | UID] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def contexts(stored: Iterable[StoredInstance]) -> list[PresentationContext]:
    """Contexts for a sub-association: each SOP class in each stored syntax
    first, then an uncompressed fallback per SOP class while IDs remain."""
    exact = sorted({(i.sop_class_uid, i.transfer_syntax) for i in stored})
    result = [build_context(sop_class, [syntax]) for sop_class, syntax in exact[:MAX_CONTEXTS]]
    for sop_class in sorted({sop_class for sop_class, _ in exact}):
        if len(result) >= MAX_CONTEXTS:
            break
        result.append(build_context(sop_class, UNCOMPRESSED))
    return result


def syntax_note(instance: StoredInstance, offered: set[str]) -> str:
    """'' if the peer takes the stored syntax, else what will happen."""
    if instance.transfer_syntax in offered:
        return ""
    stored = UID(instance.transfer_syntax)
    if offered and not stored.is_compressed and any(not UID(t).is_compressed for t in offered):
        return f"converting from {stored.name} to a syntax the peer accepted"
    return f"peer accepted no transfer syntax usable for {stored.name}"
