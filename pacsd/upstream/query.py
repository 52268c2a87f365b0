"""C-FIND through the proxy: what the upstreams hold, for merging.

Nothing here writes: an upstream's answer is passed on to the client and
forgotten (DESIGN.md failure 2: ghost rows from queries).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from pacsd import log
from pacsd.domain.query import InformationModel
from pacsd.ports import LogFields, Watch
from pacsd.upstream.session import SYNTAXES, UpstreamError, UpstreamSession, outgoing

if TYPE_CHECKING:
    from pacsd.upstream.fetch import Proxy

_log = log.get("pacsd.virtual")

FIND = {
    InformationModel.PATIENT_ROOT: str(PatientRootQueryRetrieveInformationModelFind),
    InformationModel.STUDY_ROOT: str(StudyRootQueryRetrieveInformationModelFind),
}


def upstream_matches(
    proxy: Proxy, query: Dataset, model: InformationModel, watch: Watch, problems: list[str], log_fields: LogFields
) -> Iterator[Dataset]:
    """Every upstream's responses to *query*, through its query filter. An
    upstream that fails adds to *problems* and is skipped."""
    for upstream in proxy.upstreams:
        name = upstream.remote.name
        keys = outgoing(upstream, query)
        if keys is None:
            continue  # the filter keeps this query from this upstream
        deadline = time.monotonic() + upstream.fetch_timeout
        abstract = FIND[model]
        try:
            contexts = [build_context(abstract, SYNTAXES)]
            with UpstreamSession.open(upstream, proxy.ae_title, contexts, deadline, proxy.limits) as session:
                yield from session.find(abstract, keys, watch)
        except UpstreamError as exc:
            _log.warning("upstream_find_failed", upstream=name, reason=str(exc), **log_fields)
            problems.append(str(exc))
