"""The stored instances a DICOMweb resource path names
(``/studies/{study}[/series/{series}[/instances/{instance}]]``), shared by
the routes that read them (WADO-RS, rendered)."""

from __future__ import annotations

from pydicom.dataset import Dataset
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from pacsd.domain import uid
from pacsd.domain.outcomes import StoredInstance
from pacsd.domain.query import InformationModel
from pacsd.ports import no_watch
from pacsd.services.archive import Archive
from pacsd.web.statuses import NOT_FOUND, HttpError


async def stored_instances(archive: Archive, request: Request) -> list[StoredInstance]:
    """What the path names, through the retrieve plan (so the caching proxy
    fetches a study not held here); an invalid UID is a 400 (InvalidUID),
    nothing stored a 404."""
    params = request.path_params
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = uid.require(params["study"], "Study Instance UID in the path")
    if "series" in params:
        identifier.QueryRetrieveLevel = "SERIES"
        identifier.SeriesInstanceUID = uid.require(params["series"], "Series Instance UID in the path")
    if "instance" in params:
        identifier.QueryRetrieveLevel = "IMAGE"
        identifier.SOPInstanceUID = uid.require(params["instance"], "SOP Instance UID in the path")
    fields: dict[str, object] = {"http_path": request.url.path}
    plan = await run_in_threadpool(archive.plan_retrieve, identifier, InformationModel.STUDY_ROOT, no_watch, fields)
    if not plan.instances:
        level = {"STUDY": "study", "SERIES": "series", "IMAGE": "instance"}[identifier.QueryRetrieveLevel]
        shown = "/".join(str(params[key]) for key in ("study", "series", "instance") if key in params)
        raise HttpError(NOT_FOUND, f"no such {level}: {shown}")
    return plan.instances
