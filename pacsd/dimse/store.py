"""C-STORE SCP: hand the encoded dataset to ingest, map its answer."""

from __future__ import annotations

import time
from typing import cast

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE

from pacsd import log
from pacsd.dimse import EventHandler, association, statuses
from pacsd.errors import Refusal
from pacsd.ingest import Ingest, Received

_log = log.get("pacsd.store")


def handle_store(event: evt.Event, ingest: Ingest) -> Dataset:
    start = time.perf_counter()
    request = cast(C_STORE, event.request)
    received = Received(
        dataset=event.encoded_dataset(include_meta=False),
        transfer_syntax=str(event.context.transfer_syntax),
        sop_class_uid=str(request.AffectedSOPClassUID or ""),
        sop_instance_uid=str(request.AffectedSOPInstanceUID or ""),
        source_ae=event.assoc.requestor.ae_title,
    )
    where = association.fields(event.assoc)
    try:
        outcome = ingest.store(received)
    except Refusal as refusal:
        code = statuses.store_refusal_code(refusal)
        _log.warning(
            "store_refused",
            sop_instance_uid=received.sop_instance_uid,
            status=f"0x{code:04X}",
            reason=str(refusal),
            ms=log.ms_since(start),
            **where,
        )
        return statuses.status(code, str(refusal))
    except Exception as exc:  # a bug: answer, log, keep serving
        _log.exception("store_failed", sop_instance_uid=received.sop_instance_uid, **where)
        return statuses.status(statuses.PROCESSING_FAILURE, f"internal error: {type(exc).__name__}")
    code = statuses.STORE_RESULTS[outcome.result]
    _log.info(
        "stored",
        result=outcome.result.value,
        sop_instance_uid=received.sop_instance_uid,
        study_uid=outcome.header.study_uid,
        status=f"0x{code:04X}",
        ms=log.ms_since(start),
        **where,
    )
    return statuses.status(code, outcome.comment)


def handlers(ingest: Ingest) -> list[EventHandler]:
    return [(evt.EVT_C_STORE, handle_store, [ingest])]
