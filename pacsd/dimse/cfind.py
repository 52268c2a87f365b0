"""The C-FIND response driver, for every information model that answers
with matches (Query/Retrieve, Modality Worklist): one Pending response per
match, C-CANCEL noticed between matches, one final status."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from enum import Enum
from typing import Protocol, TypeVar

from pydicom.dataset import Dataset

from pacsd import log
from pacsd.dimse import qr
from pacsd.domain.errors import Cancelled, InvalidQuery
from pacsd.domain.limits import Limits
from pacsd.ports import Watch
from pacsd.wire import command, statuses
from pacsd.wire.acceptor import Association
from pacsd.wire.link import LINK_ENDED, Link, Message

_log = log.get("pacsd.find")


class Answer(Protocol):
    """What a search hands the driver: the matches, and once they have been
    read, the problems that make the answer partial (none: complete)."""

    problems: list[str]

    def __iter__(self) -> Iterator[Dataset]: ...


# The information model a context's abstract syntax names: Query/Retrieve's
# InformationModel, or the worklist's own (it has no Q/R levels).
Model = TypeVar("Model", bound=Enum)
Search = Callable[[Dataset, Model, Watch], Answer]


def serve(
    link: Link,
    message: Message,
    association: Association,
    models: Mapping[str, Model],
    limits: Limits,
    search: Search[Model],
    event: str,
) -> None:
    """Answer one C-FIND with *search*; log *event* (and ``<event>_refused``,
    ``_cancelled``, ``_failed``)."""
    start = time.perf_counter()
    model = qr.model(link, message, command.C_FIND_RSP, models, association)
    if model is None:
        return
    log_fields = association.log_fields()
    matches = 0

    def answer(status: int, comment: str = "", identifier: Dataset | None = None) -> None:
        qr.respond(link, message, command.C_FIND_RSP, status, comment, identifier=identifier)

    try:
        identifier = qr.identifier(message, limits)
        found = search(identifier, model, qr.watch(link, message.command))
        for match in found:
            answer(statuses.PENDING, identifier=match)
            matches += 1
    except Cancelled:
        _log.info(f"{event}_cancelled", matches=matches, **log_fields)
        return answer(statuses.CANCELLED)
    except InvalidQuery as exc:
        return qr.refuse(link, message, command.C_FIND_RSP, exc, f"{event}_refused", log_fields, model=model.value)
    except LINK_ENDED:
        raise
    except Exception as exc:
        _log.exception(f"{event}_failed", **log_fields)
        return answer(statuses.UNABLE_TO_PROCESS, f"internal error: {type(exc).__name__}")
    if "QueryRetrieveLevel" in identifier:  # a worklist query has none
        log_fields = {**log_fields, "qr_level": str(identifier.QueryRetrieveLevel)}
    _log.info(event, model=model.value, matches=matches, upstream_problems=len(found.problems), ms=log.ms_since(start),
              **log_fields)  # fmt: skip
    if found.problems:
        answer(statuses.LOCAL_ONLY, "answered from local data only: " + "; ".join(found.problems))
    else:
        answer(statuses.SUCCESS)
