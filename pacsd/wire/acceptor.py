"""Accepting associations and serving their messages.

Each connection is served here for its whole life, in the thread that
accepted it: A-ASSOCIATE-RQ, negotiation, then one DIMSE message after
another, each handed to the service for its command, until release or
abort.

Every way this can go wrong gets an answer (PS3.8): A-ASSOCIATE-RJ for a
request we will not take, A-ABORT with source 2 (service provider) for
what the upper layer detects or a budget refuses, source 0 for the
DIMSE side's own reasons. A connection is never just closed on a peer
that may still be listening.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydicom.uid import UID
from pynetdicom._globals import APPLICATION_CONTEXT_NAME
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor

from pacsd import log
from pacsd.domain import uid
from pacsd.domain.limits import BudgetExceeded, Limits
from pacsd.wire import command, pdu
from pacsd.wire.link import Aborted, Link, Message, Released, SocketReader
from pacsd.wire.pdu import Closed, PduError, ProtocolError

# Every association gets a serial for its log lines, whichever path serves it.
serials = itertools.count(1)

# A-ASSOCIATE-RJ (result, source, reason), PS3.8 9.3.4.
Rejection = tuple[int, int, int]
REJECT_NO_REASON = (0x01, 0x01, 0x01)  # permanent; service user; no reason given
REJECT_APPLICATION_CONTEXT = (0x01, 0x01, 0x02)  # permanent; service user; application context not supported
REJECT_CALLING_AE = (0x01, 0x01, 0x03)  # permanent; service user; calling AE not recognised
REJECT_CALLED_AE = (0x01, 0x01, 0x07)  # permanent; service user; called AE not recognised
REJECT_PROTOCOL_VERSION = (0x01, 0x02, 0x02)  # permanent; provider (ACSE); protocol version not supported
REJECT_TOO_LARGE = (0x01, 0x03, 0x02)  # permanent; provider (presentation); local limit exceeded
REJECT_BUSY = (0x02, 0x03, 0x02)  # transient; provider (presentation); local limit exceeded

RQ_FIXED_BYTES = 68  # protocol version, reserved, called and calling AE, reserved (PS3.8 9.3.2)
DRAIN_SECONDS = 1.0  # after an abort, reading what the peer still sends so it sees our answer
CONTEXT_COST = 1024  # bytes a remembered accepted context is counted as (decoded objects)

_log = log.get("pacsd.association")


@dataclass(frozen=True)
class Association:
    """Who is on the other end of an association on the lean path."""

    serial: int
    calling_ae: str
    called_ae: str
    peer: str

    def log_fields(self) -> dict[str, Any]:
        """Identifiers for every log line about this association."""
        return {"assoc": self.serial, "calling_ae": self.calling_ae, "peer": self.peer}


Service = Callable[[Link, Message, Association], None]


@dataclass(frozen=True)
class Offer:
    """An A-ASSOCIATE-RQ and our answer to it, which depends on nothing else:
    an A-ASSOCIATE-AC, or the rejection and why."""

    calling_ae: str
    called_ae: str
    ac: bytes  # the encoded A-ASSOCIATE-AC; empty when rejected
    contexts: list[PresentationContext]  # accepted
    peer_max_pdu: int
    rejection: Rejection | None = None
    reason: str = ""

    def cost(self, request: bytes) -> int:
        return len(request) + len(self.ac) + CONTEXT_COST * len(self.contexts)


class OfferCache:
    """Answers to A-ASSOCIATE-RQs seen before, by their bytes, at most
    *max_bytes* of them in all (the least recently used go first)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._offers: OrderedDict[bytes, Offer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, request: bytes) -> Offer | None:
        with self._lock:
            offer = self._offers.get(request)
            if offer is not None:
                self._offers.move_to_end(request)
            return offer

    def put(self, request: bytes, offer: Offer) -> None:
        cost = offer.cost(request)
        if cost > self.max_bytes:
            return
        with self._lock:
            if request in self._offers:
                return
            self._offers[request] = offer
            self.size += cost
            while self.size > self.max_bytes:
                old_request, old = self._offers.popitem(last=False)
                self.size -= old.cost(old_request)

    def __len__(self) -> int:
        return len(self._offers)


class Acceptor:
    def __init__(
        self,
        contexts: list[PresentationContext],
        services: dict[int, Service],
        allowed_calling_aes: Iterable[str],
        max_associations: int,
        network_timeout: float,
        *,
        ae_title: str = "",
        check_called_ae: bool = False,
        limits: Limits | None = None,
        spool_dir: str | None = None,
    ) -> None:
        """*check_called_ae*: refuse requests whose called AE title is not
        *ae_title*; *spool_dir*: where large C-STORE datasets are spooled."""
        self.contexts = contexts
        self.services = services
        self.allowed = {ae.strip() for ae in allowed_calling_aes}
        self.max_associations = max_associations
        self.network_timeout = network_timeout
        self.ae_title = ae_title.strip()
        self.check_called_ae = check_called_ae
        self.limits = limits or Limits()
        self.spool_dir = spool_dir
        self._active = 0
        self._connections = 0
        self._lock = threading.Lock()
        # A device proposes the same contexts every time: its request bytes
        # map to the same answer, and decoding, negotiating and encoding
        # took a third of a short association (a C-FIND, a C-ECHO).
        self._offers = OfferCache(self.limits.associate_cache_bytes)

    def serve(self, sock: socket.socket, address: tuple[str, int]) -> None:
        """Run one connection to its end; closes *sock*."""
        peer = f"{address[0]}:{address[1]}"
        try:
            if not self._connect():
                # Refused at once, unread: a slot must not wait for a request.
                _send_quietly(sock, pdu.fixed(pdu.ASSOCIATE_RJ, *REJECT_BUSY))
                _log.warning("association_rejected", reason="too many connections (max_connections)", peer=peer)
                return
            try:
                self._serve(sock, peer)
            finally:
                with self._lock:
                    self._connections -= 1
        finally:
            sock.close()

    def _connect(self) -> bool:
        with self._lock:
            if self._connections >= self.limits.max_connections:
                return False
            self._connections += 1
            return True

    def _serve(self, sock: socket.socket, peer: str) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.network_timeout)
        reader = SocketReader(sock)
        reader.end, reader.end_budget = time.monotonic() + self.limits.associate_timeout, "associate_timeout"
        offer = self._first_pdu(sock, reader, peer)
        if offer is None:
            return
        association = Association(next(serials), offer.calling_ae, offer.called_ae, peer)
        try:
            if not self._admit(sock, offer, association):
                _drain(sock)
                return
            try:
                sock.sendall(offer.ac)
                reader.end, reader.end_budget = (
                    time.monotonic() + self.limits.association_timeout,
                    "association_timeout",
                )
                link = Link(sock, offer.contexts, offer.peer_max_pdu, reader, self.limits, self.spool_dir)
                _log.info("association_opened", called_ae=association.called_ae, **association.log_fields())
                how = self._run(link, association)
                _log.info("association_closed", how=how, **association.log_fields())
            finally:
                with self._lock:
                    self._active -= 1
        except OSError as exc:
            _log.info("association_closed", how="aborted", reason=f"connection lost: {exc}", **association.log_fields())

    def _first_pdu(self, sock: socket.socket, reader: SocketReader, peer: str) -> Offer | None:
        """The answer to the connection's A-ASSOCIATE-RQ; None when the
        connection was answered otherwise (A-ABORT, A-ASSOCIATE-RJ) or is gone."""
        try:
            return self._offer(reader)
        except BudgetExceeded as exc:
            _log.warning("budget_exceeded", budget=exc.budget, reason=str(exc), peer=peer)
            if exc.budget == "max_associate_request_bytes":
                answer = pdu.fixed(pdu.ASSOCIATE_RJ, *REJECT_TOO_LARGE)
                result, source, why = REJECT_TOO_LARGE
                _log.warning(
                    "association_rejected", reason=str(exc), result=result, source=source, reject_reason=why, peer=peer
                )
            else:
                answer = pdu.abort(pdu.SOURCE_PROVIDER, pdu.REASON_NOT_SPECIFIED)
        except Closed as exc:
            _log.warning("connection_dropped", reason=str(exc), peer=peer)
            return None
        except PduError as exc:
            _log.warning("association_rejected", reason=str(exc), answer="A-ABORT", abort_reason=exc.reason, peer=peer)
            answer = pdu.abort(pdu.SOURCE_PROVIDER, exc.reason)
        except TimeoutError:
            _log.warning("connection_dropped", reason="network timeout", peer=peer)
            answer = pdu.abort(pdu.SOURCE_PROVIDER, pdu.REASON_NOT_SPECIFIED)
        except OSError as exc:
            _log.warning("connection_dropped", reason=str(exc), peer=peer)
            return None
        _send_quietly(sock, answer)
        _drain(sock)
        return None

    def _admit(self, sock: socket.socket, offer: Offer, association: Association) -> bool:
        """Count the association in, or reject it and say why."""
        if offer.rejection is not None:
            reason, rsd = offer.reason, offer.rejection
        else:
            with self._lock:
                if self._active < self.max_associations:
                    self._active += 1
                    return True
            reason, rsd = "too many associations", REJECT_BUSY
        sock.sendall(pdu.fixed(pdu.ASSOCIATE_RJ, *rsd))
        result, source, why = rsd
        _log.warning(
            "association_rejected",
            reason=reason,
            result=result,
            source=source,
            reject_reason=why,
            called_ae=association.called_ae,
            **association.log_fields(),
        )
        return False

    def _offer(self, reader: SocketReader) -> Offer:
        """Read the A-ASSOCIATE-RQ (refused unread past its budget); its
        answer, from memory if seen before."""
        limits = self.limits
        kind, body = pdu.read(
            reader, limits.max_associate_request_bytes, "max_associate_request_bytes", limits.pdu_timeout
        )
        if kind == pdu.ABORT:  # the peer gave up first: nothing to answer
            raise Closed("A-ABORT instead of A-ASSOCIATE-RQ")
        if kind != pdu.ASSOCIATE_RQ:
            raise PduError(f"first PDU is type 0x{kind:02X}, not A-ASSOCIATE-RQ", pdu.REASON_UNEXPECTED_PDU)
        offer = self._offers.get(body)
        if offer is None:
            offer = self._answer(body)
            self._offers.put(body, offer)
        return offer

    def _answer(self, body: bytes) -> Offer:
        """Our answer to the A-ASSOCIATE-RQ *body*: checks that need no
        decoding first, then pynetdicom decodes and negotiates."""
        if len(body) < RQ_FIXED_BYTES:
            raise PduError(f"A-ASSOCIATE-RQ of {len(body)} bytes is shorter than its fixed fields")
        called_ae = _ae_title(body[4:20])
        calling_ae = _ae_title(body[20:36])

        def reject(rejection: Rejection, reason: str) -> Offer:
            return Offer(calling_ae, called_ae, b"", [], 0, rejection, reason)

        version = int.from_bytes(body[0:2], "big")
        if not version & 0x0001:  # PS3.8 9.3.2: a version 1 receiver only tests bit 0
            return reject(REJECT_PROTOCOL_VERSION, f"protocol version 0x{version:04X} does not include version 1")
        rq = _decode_request(body)
        context_name = str(rq.application_context_name or "")
        if context_name != APPLICATION_CONTEXT_NAME:
            return reject(REJECT_APPLICATION_CONTEXT, f"application context name {context_name!r} is not DICOM's")
        if self.check_called_ae and called_ae != self.ae_title:
            return reject(REJECT_CALLED_AE, f"called AE title {called_ae!r} is not ours ({self.ae_title!r})")
        if self.allowed and calling_ae not in self.allowed:
            return reject(REJECT_CALLING_AE, "calling AE title not in allowed_calling_aes")
        if not rq.presentation_context_definition_list:
            return reject(REJECT_NO_REASON, "no presentation context proposed")
        offer = self._negotiate(rq, calling_ae, called_ae)
        if not offer.contexts:
            return reject(REJECT_NO_REASON, "no proposed presentation context is acceptable")
        return offer

    def _negotiate(self, rq: A_ASSOCIATE, calling_ae: str, called_ae: str) -> Offer:
        roles = {
            item.sop_class_uid: (item.scu_role, item.scp_role)
            for item in rq.user_information
            if isinstance(item, SCP_SCU_RoleSelectionNegotiation) and item.sop_class_uid is not None
        }
        result, ac_roles = negotiate_as_acceptor(rq.presentation_context_definition_list, self.contexts, roles or None)
        _prefer_proposer_order(rq.presentation_context_definition_list, result, self.contexts, roles)
        ac = A_ASSOCIATE()
        ac.application_context_name = APPLICATION_CONTEXT_NAME
        ac.calling_ae_title = rq.calling_ae_title
        ac.called_ae_title = rq.called_ae_title
        ac.result = 0x00
        ac.result_source = 0x01
        ac.presentation_context_definition_results_list = result
        ac.user_information = [*user_information(self.limits.max_pdu_bytes), *ac_roles]
        encoded = A_ASSOCIATE_AC()
        encoded.from_primitive(ac)
        return Offer(
            calling_ae=calling_ae,
            called_ae=called_ae,
            ac=encoded.encode(),
            contexts=[cx for cx in result if cx.result == 0x00],
            peer_max_pdu=int(rq.maximum_length_received or 0),
        )

    def _run(self, link: Link, association: Association) -> str:
        """Serve messages until the association ends; returns how it ended."""
        log_fields = association.log_fields()
        try:
            while True:
                message = link.receive()
                self._dispatch(link, message, association)
        except Released:
            return "released"
        except Aborted:
            return "aborted"
        except BudgetExceeded as exc:
            _log.warning("budget_exceeded", budget=exc.budget, reason=str(exc), **log_fields)
            return _abort(link, pdu.SOURCE_PROVIDER, pdu.REASON_NOT_SPECIFIED)
        except PduError as exc:
            _log.warning("association_aborting", reason=str(exc), abort_reason=exc.reason, **log_fields)
            return _abort(link, pdu.SOURCE_PROVIDER, exc.reason)
        except ProtocolError as exc:  # the DIMSE side's: a service-user abort
            _log.warning("association_aborting", reason=str(exc), **log_fields)
            return _abort(link, pdu.SOURCE_USER, pdu.REASON_NOT_SPECIFIED)
        except TimeoutError:
            _log.warning("association_aborting", reason="network timeout", **log_fields)
            return _abort(link, pdu.SOURCE_PROVIDER, pdu.REASON_NOT_SPECIFIED)
        except OSError:
            raise  # the connection is gone: serve() logs it
        except Exception:  # a bug in a service: this association ends, the server keeps serving
            _log.exception("association_aborting", reason="internal error", **log_fields)
            return _abort(link, pdu.SOURCE_USER, pdu.REASON_NOT_SPECIFIED)

    def _dispatch(self, link: Link, message: Message, association: Association) -> None:
        field = message.command.field
        if field == command.C_CANCEL_RQ:
            return  # for an operation already finished: ignored (PS3.7 9.3.2.3)
        service = self.services.get(field)
        if service is None:
            message.discard()
            raise ProtocolError(f"command 0x{field:04X} is not served on this association")
        try:
            service(link, message, association)
        finally:
            # A spooled dataset never outlives its service: one that keeps
            # the file has renamed it away, anything else is dropped here.
            message.discard()


def _prefer_proposer_order(
    proposed: list[PresentationContext],
    result: list[PresentationContext],
    supported: list[PresentationContext],
    roles: dict[UID, tuple[bool | None, bool | None]],
) -> None:
    """On a context where the requester takes the SCP role (a C-GET's
    storage contexts), accept the first of its proposed transfer syntaxes
    we support, not ours: it receives in the syntax it prefers, and an
    instance stored in it goes out as stored (pynetdicom picks in the
    acceptor's order, which puts Implicit VR first)."""
    ours = {str(cx.abstract_syntax): set(cx.transfer_syntax) for cx in supported}
    by_id = {cx.context_id: cx for cx in proposed}
    for cx in result:
        if cx.result != 0x00 or cx.abstract_syntax is None or not roles.get(cx.abstract_syntax, (None, None))[1]:
            continue
        offered = by_id[cx.context_id].transfer_syntax
        first = next((syntax for syntax in offered if syntax in ours.get(str(cx.abstract_syntax), set())), None)
        if first is not None:
            cx.transfer_syntax = [first]


def user_information(max_pdu: int = pdu.MAX_PDU) -> list[Any]:
    """Our user information items, announcing *max_pdu* as the largest
    P-DATA-TF we take."""
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = max_pdu
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = uid.IMPLEMENTATION_CLASS_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = uid.IMPLEMENTATION_VERSION_NAME
    return [max_length, implementation, version]


def _ae_title(raw: bytes) -> str:
    return raw.decode("ascii", "replace").strip()


def _decode_request(body: bytes) -> A_ASSOCIATE:
    rq = A_ASSOCIATE_RQ()
    try:
        rq.decode(pdu.whole(pdu.ASSOCIATE_RQ, body))
        return rq.to_primitive()
    except Exception as exc:
        raise PduError(f"A-ASSOCIATE-RQ cannot be decoded: {type(exc).__name__}: {exc}") from None


def _abort(link: Link, source: int, reason: int) -> str:
    link.abort(source, reason)
    _drain(link.sock)
    return "aborted"


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


def _drain(sock: socket.socket) -> None:
    """Stop sending and read (and drop) what the peer still sends, for at
    most DRAIN_SECONDS: closing on unread data resets the connection, and
    the peer could lose our A-ABORT or A-ASSOCIATE-RJ with it."""
    deadline = time.monotonic() + DRAIN_SECONDS
    try:
        sock.shutdown(socket.SHUT_WR)
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            if not sock.recv(1 << 16):
                return
    except OSError:
        pass
