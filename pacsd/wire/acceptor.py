"""Accepting associations and serving their messages.

Each connection is served here for its whole life, in the thread that
accepted it: A-ASSOCIATE-RQ, negotiation, then one DIMSE message after
another, each handed to the service for its command, until release or
abort.
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

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

from pacsd import log, uid
from pacsd.wire import command, pdu
from pacsd.wire.link import Aborted, Link, Message, Released, SocketReader
from pacsd.wire.pdu import ProtocolError

# Every association gets a serial for its log lines, whichever path serves it.
serials = itertools.count(1)

# A-ASSOCIATE-RJ (result, source, reason), PS3.8 9.3.4.
REJECT_CALLING_AE = (0x01, 0x01, 0x03)  # permanent; service user; calling AE not recognised
REJECT_BUSY = (0x02, 0x03, 0x02)  # transient; provider (presentation); local limit exceeded

_log = log.get("pacsd.association")


@dataclass(frozen=True)
class Session:
    """Who is on the other end of an association on the lean path."""

    serial: int
    calling_ae: str
    called_ae: str
    peer: str

    def fields(self) -> dict[str, Any]:
        """Identifiers for every log line about this association."""
        return {"assoc": self.serial, "calling_ae": self.calling_ae, "peer": self.peer}


Service = Callable[[Link, Message, Session], None]

OFFERS_KEPT = 256  # distinct A-ASSOCIATE-RQs whose answers are remembered


@dataclass(frozen=True)
class Offer:
    """An A-ASSOCIATE-RQ and our answer to it, which depends on nothing else."""

    calling_ae: str
    called_ae: str
    ac: bytes  # the encoded A-ASSOCIATE-AC
    contexts: list[PresentationContext]  # accepted
    peer_max_pdu: int


class Acceptor:
    def __init__(
        self,
        contexts: list[PresentationContext],
        services: dict[int, Service],
        allowed_calling_aes: Iterable[str],
        max_associations: int,
        network_timeout: float,
    ) -> None:
        self.contexts = contexts
        self.services = services
        self.allowed = {ae.strip() for ae in allowed_calling_aes}
        self.max_associations = max_associations
        self.network_timeout = network_timeout
        self._active = 0
        self._lock = threading.Lock()
        # A device proposes the same contexts every time: its request bytes
        # map to the same answer, and decoding, negotiating and encoding
        # took a third of a short association (a C-FIND, a C-ECHO).
        self._offers: dict[bytes, Offer] = {}

    def serve(self, sock: socket.socket, address: tuple[str, int]) -> None:
        """Run one association to its end; closes *sock*."""
        peer = f"{address[0]}:{address[1]}"
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.network_timeout)
        reader = SocketReader(sock)
        try:
            offer = self._offer(reader)
        except (OSError, ProtocolError) as exc:
            _log.warning("connection_dropped", reason=str(exc), peer=peer)
            sock.close()
            return
        session = Session(next(serials), offer.calling_ae, offer.called_ae, peer)
        try:
            if not self._admit(sock, session):
                return
            try:
                sock.sendall(offer.ac)
                link = Link(sock, offer.contexts, offer.peer_max_pdu, reader)
                _log.info("association_opened", called_ae=session.called_ae, **session.fields())
                how = self._run(link, session)
                _log.info("association_closed", how=how, **session.fields())
            finally:
                with self._lock:
                    self._active -= 1
        except OSError as exc:
            _log.info("association_closed", how="aborted", reason=f"connection lost: {exc}", **session.fields())
        finally:
            sock.close()

    def _admit(self, sock: socket.socket, session: Session) -> bool:
        """Count the association in, or reject it and say why."""
        if self.allowed and session.calling_ae not in self.allowed:
            reason, rsd = "calling AE title not in allowed_calling_aes", REJECT_CALLING_AE
        else:
            with self._lock:
                if self._active < self.max_associations:
                    self._active += 1
                    return True
            reason, rsd = "too many associations", REJECT_BUSY
        sock.sendall(pdu.fixed(pdu.ASSOCIATE_RJ, *rsd))
        _log.warning("association_rejected", reason=reason, **session.fields())
        return False

    def _offer(self, reader: SocketReader) -> Offer:
        """Read the A-ASSOCIATE-RQ; its answer, from memory if seen before."""
        kind, body = pdu.read(reader)
        if kind != pdu.ASSOCIATE_RQ:
            raise ProtocolError(f"first PDU is type 0x{kind:02X}, not A-ASSOCIATE-RQ")
        offer = self._offers.get(body)
        if offer is None:
            offer = self._negotiate(_decode_request(kind, body))
            if len(self._offers) >= OFFERS_KEPT:
                self._offers.clear()
            self._offers[body] = offer
        return offer

    def _negotiate(self, rq: A_ASSOCIATE) -> Offer:
        roles = {
            item.sop_class_uid: (item.scu_role, item.scp_role)
            for item in rq.user_information
            if isinstance(item, SCP_SCU_RoleSelectionNegotiation) and item.sop_class_uid is not None
        }
        result, ac_roles = negotiate_as_acceptor(rq.presentation_context_definition_list, self.contexts, roles or None)
        ac = A_ASSOCIATE()
        ac.application_context_name = APPLICATION_CONTEXT_NAME
        ac.calling_ae_title = rq.calling_ae_title
        ac.called_ae_title = rq.called_ae_title
        ac.result = 0x00
        ac.result_source = 0x01
        ac.presentation_context_definition_results_list = result
        ac.user_information = [*user_information(), *ac_roles]
        encoded = A_ASSOCIATE_AC()
        encoded.from_primitive(ac)
        return Offer(
            calling_ae=str(rq.calling_ae_title).strip(),
            called_ae=str(rq.called_ae_title).strip(),
            ac=encoded.encode(),
            contexts=[cx for cx in result if cx.result == 0x00],
            peer_max_pdu=int(rq.maximum_length_received or 0),
        )

    def _run(self, link: Link, session: Session) -> str:
        """Serve messages until the association ends; returns how it ended."""
        try:
            while True:
                message = link.receive()
                field = message.command.field
                if field == command.C_CANCEL_RQ:
                    continue  # for an operation already finished: ignored (PS3.7 9.3.2.3)
                service = self.services.get(field)
                if service is None:
                    raise ProtocolError(f"command 0x{field:04X} is not served on this association")
                service(link, message, session)
        except Released:
            return "released"
        except Aborted:
            return "aborted"
        except ProtocolError as exc:
            _log.warning("association_aborting", reason=str(exc), **session.fields())
            link.abort()
            return "aborted"
        except TimeoutError:
            _log.warning("association_aborting", reason="network timeout", **session.fields())
            link.abort()
            return "aborted"
        except OSError:
            raise  # the connection is gone: serve() logs it
        except Exception:  # a bug in a service: this association ends, the server keeps serving
            _log.exception("association_aborting", reason="internal error", **session.fields())
            link.abort()
            return "aborted"


def user_information() -> list[Any]:
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = pdu.MAX_PDU
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = uid.IMPLEMENTATION_CLASS_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = uid.IMPLEMENTATION_VERSION_NAME
    return [max_length, implementation, version]


def _decode_request(kind: int, body: bytes) -> A_ASSOCIATE:
    rq = A_ASSOCIATE_RQ()
    try:
        rq.decode(pdu.whole(kind, body))
        return rq.to_primitive()
    except Exception as exc:
        raise ProtocolError(f"A-ASSOCIATE-RQ cannot be decoded: {exc}") from None
