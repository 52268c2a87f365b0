"""C-FIND SCP (Patient Root and Study Root): stream matches from the index,
and through the caching proxy from the upstreams, merged."""

from __future__ import annotations

import time

from pydicom.dataset import Dataset

from pacsd import log
from pacsd.dimse import qr, statuses
from pacsd.domain.errors import InvalidQuery
from pacsd.domain.limits import Limits
from pacsd.domain.query import UNIQUE_KEYS, query_level, text_value
from pacsd.index import search
from pacsd.upstream.fetch import Proxy
from pacsd.upstream.query import upstream_matches
from pacsd.upstream.session import Cancelled
from pacsd.wire import command
from pacsd.wire.acceptor import Session
from pacsd.wire.link import LINK_ENDED, Link, Message

_log = log.get("pacsd.find")


def serve_find(
    link: Link, message: Message, session: Session, ae_title: str, proxy: Proxy | None, limits: Limits
) -> None:
    start = time.perf_counter()
    model = qr.model(link, message, command.C_FIND_RSP, qr.FIND, session)
    if model is None:
        return
    where = session.fields()
    matches = 0
    problems: list[str] = []

    def answer(status: int, comment: str = "") -> None:
        qr.respond(link, message, command.C_FIND_RSP, status, comment)

    def send(response: Dataset) -> None:
        nonlocal matches
        matches += 1
        qr.respond(link, message, command.C_FIND_RSP, statuses.PENDING, identifier=response)

    try:
        query = qr.identifier(message, limits, session)
        level = query_level(query, model)
        unique = UNIQUE_KEYS[level]
        if proxy is not None and unique not in query:
            setattr(query, unique, "")  # merged answers are de-duplicated on it
        seen: set[str] = set()
        # search.find holds no read while we send: a client that stops
        # reading does not pin the index's WAL.
        for response in search.find(query, model, ae_title, limits.max_query_values):
            if qr.cancelled(link, message.command):
                raise Cancelled
            seen.add(text_value(response.get(unique)))
            send(response)
        if proxy is not None:
            for response in upstream_matches(proxy, query, model, qr.watch(link, message.command), problems, where):
                key = text_value(response.get(unique))
                if key and key in seen:
                    continue  # local data wins
                seen.add(key)
                send(response)
    except Cancelled:
        _log.info("find_cancelled", matches=matches, **where)
        answer(statuses.CANCELLED)
        return
    except InvalidQuery as exc:
        _log.warning("find_refused", reason=str(exc), model=model.value, **where)
        answer(statuses.IDENTIFIER_INVALID, str(exc))
        return
    except LINK_ENDED:
        raise
    except Exception as exc:
        _log.exception("find_failed", **where)
        answer(statuses.UNABLE_TO_PROCESS, f"internal error: {type(exc).__name__}")
        return
    _log.info(
        "find",
        model=model.value,
        qr_level=str(query.get("QueryRetrieveLevel", "")),
        matches=matches,
        upstream_problems=len(problems),
        ms=log.ms_since(start),
        **where,
    )
    if problems:
        answer(statuses.LOCAL_ONLY, "answered from local data only: " + "; ".join(problems))
    else:
        answer(statuses.SUCCESS)
