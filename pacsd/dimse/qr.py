"""What the Query/Retrieve adapters share: SOP classes to information
models, reading the identifier, answering, and noticing C-CANCEL."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import TypeVar

from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID, ExplicitVRLittleEndian
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from pacsd import log
from pacsd.domain.errors import Cancelled, InvalidQuery
from pacsd.domain.inflate import InflateError, inflate
from pacsd.domain.limits import BudgetExceeded, Limits
from pacsd.domain.query import InformationModel, QueryOverBudget
from pacsd.ports import LogFields
from pacsd.wire import command, dataset, statuses
from pacsd.wire.acceptor import Association
from pacsd.wire.command import Command
from pacsd.wire.link import LINK_ENDED, ClientGone, Link, Message

FIND = {
    PatientRootQueryRetrieveInformationModelFind: InformationModel.PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelFind: InformationModel.STUDY_ROOT,
}
MOVE = {
    PatientRootQueryRetrieveInformationModelMove: InformationModel.PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelMove: InformationModel.STUDY_ROOT,
}
GET = {
    PatientRootQueryRetrieveInformationModelGet: InformationModel.PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelGet: InformationModel.STUDY_ROOT,
}
SOP_CLASSES = [*FIND, *MOVE, *GET]

_log = log.get("pacsd.qr")

Model = TypeVar("Model", bound=Enum)  # InformationModel, or the worklist's


def model(
    link: Link, message: Message, field: int, models: Mapping[str, Model], association: Association
) -> Model | None:
    """The information model of the request's context; None once a request
    on a context of another SOP class has been answered 0x0122."""
    refused = statuses.wrong_context(message, models)
    if refused:
        _log.warning("request_refused", status=f"0x{statuses.SOP_CLASS_NOT_SUPPORTED:04X}", reason=refused,
                     **association.log_fields())  # fmt: skip
        respond(link, message, field, statuses.SOP_CLASS_NOT_SUPPORTED, refused)
        return None
    return models[str(message.context.abstract_syntax)]


def identifier(message: Message, limits: Limits) -> Dataset:
    """The request identifier, decoded within the query budgets.

    A decoding failure is InvalidQuery; an identifier that is (or inflates
    to) more than ``max_identifier_bytes`` or inflates too far is
    QueryOverBudget (also an InvalidQuery; :func:`refuse` answers and logs
    both). A key listing more than ``max_query_values`` values is the
    Archive's to refuse, as QueryOverBudget too.
    """
    if not isinstance(message.dataset, bytes) or not message.dataset:  # only C-STORE datasets spool
        raise InvalidQuery("the request has no identifier")
    return _decode(message.dataset, dataset.syntax_of(message.context), limits)


def log_over_budget(exc: QueryOverBudget, log_fields: LogFields) -> None:
    _log.warning("budget_exceeded", budget=exc.budget, reason=str(exc), **log_fields)


def refuse(
    link: Link, message: Message, field: int, exc: InvalidQuery, event: str, log_fields: LogFields, **extra: object
) -> None:
    """Answer an identifier that cannot be answered as asked: 0xA900 with
    the reason, logged as *event* (and as ``budget_exceeded`` if it is over one)."""
    if isinstance(exc, QueryOverBudget):
        log_over_budget(exc, log_fields)
    _log.warning(event, reason=str(exc), **extra, **log_fields)
    respond(link, message, field, statuses.IDENTIFIER_INVALID, str(exc))


def _decode(data: bytes, syntax: UID, limits: Limits) -> Dataset:
    if len(data) > limits.max_identifier_bytes:
        raise QueryOverBudget(
            "max_identifier_bytes",
            f"identifier of {len(data)} bytes, more than {limits.max_identifier_bytes} (max_identifier_bytes)",
        )
    if syntax.is_deflated:
        # Inflated here within the budget, never by pydicom (which has no
        # bound), then read as the explicit VR little endian it wraps.
        data = _inflated(data, limits)
        syntax = ExplicitVRLittleEndian
    try:
        ds = dataset.decode(data, syntax)
        # Decode every element now, so bad values fail here and not mid-query.
        for elem in ds:
            if elem.VR == "UN" and isinstance(elem.value, bytes):
                _as_known_vr(ds, elem.tag, elem.value)
    except Exception as exc:
        raise InvalidQuery(f"identifier cannot be decoded: {exc}") from None
    return ds


def _as_known_vr(ds: Dataset, tag: BaseTag, value: bytes) -> None:
    """A public text key sent as UN read with its own VR: an SCU writing
    explicit VR sends a list longer than 64 KiB (40 000 UIDs) that way."""
    if not dictionary_has_tag(tag):
        return
    vr = dictionary_VR(tag)
    if vr not in dataset.TEXT_VRS:
        return
    raw = RawDataElement(tag, vr, len(value), value, 0, False, True)
    ds[tag] = convert_raw_data_element(raw, ds=ds)


def _inflated(data: bytes, limits: Limits) -> bytes:
    try:
        return inflate(data, limits.max_identifier_bytes, limits.max_inflate_ratio, limits.inflate_ratio_after)
    except InflateError as exc:
        raise InvalidQuery(f"identifier cannot be decoded: {exc}") from None
    except BudgetExceeded as exc:
        if exc.budget == "max_inflated_bytes":  # the identifier's own budget bounded it
            raise QueryOverBudget(
                "max_identifier_bytes",
                f"deflated identifier inflates to more than {limits.max_identifier_bytes} bytes (max_identifier_bytes)",
            ) from None
        raise QueryOverBudget(exc.budget, f"identifier: {exc}") from None


def respond(
    link: Link,
    message: Message,
    field: int,
    status: int,
    comment: str = "",
    identifier: Dataset | None = None,
    counts: list[tuple[int, str, int]] | None = None,
) -> None:
    """Send one response to *message*, with an identifier if given."""
    data = dataset.encode(identifier, dataset.syntax_of(message.context)) if identifier is not None else None
    cmd = command.response(message.command, field, status, comment, counts, has_dataset=data is not None)
    link.send(int(message.context.context_id or 0), cmd, data)


def watch(link: Link, request: Command) -> Callable[[], None]:
    """A :data:`pacsd.ports.Watch` for *request*: raises Cancelled once the
    peer has sent C-CANCEL for it, ClientGone once its link has ended."""

    def check() -> None:
        try:
            if cancelled(link, request):
                raise Cancelled
        except LINK_ENDED as exc:
            raise ClientGone(f"{type(exc).__name__}: {exc}") from exc

    return check


def cancelled(link: Link, request: Command) -> bool:
    """Whether the peer has sent C-CANCEL for *request* (never blocks)."""
    message_id = request.us(command.MESSAGE_ID)
    while message_id not in link.cancels and link.pending():
        link.note_cancel(link.receive())
    return message_id in link.cancels
