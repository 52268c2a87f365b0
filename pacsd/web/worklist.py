"""The RIS worklist API: ``/dicomweb/mwlitems``.

- ``POST`` one DICOM JSON item or an array: 201 with the stored items
  (generated UIDs and IDs filled in), 200 if every one already existed;
- ``GET ?PatientID=..&Modality=..``: the matching items, an array (empty
  when nothing matches);
- ``DELETE /{StudyInstanceUID}/{ScheduledProcedureStepID}``: 204, or 404.

Each handler makes one Archive call in a worker thread (SQL must not run
on the event loop); refusals become statuses in :mod:`pacsd.web.app`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydicom.dataset import Dataset
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pacsd.services.archive import Archive
from pacsd.web import dicomjson, query
from pacsd.web.statuses import NOT_FOUND, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, HttpError

DICOM_JSON = "application/dicom+json"
ROOT = "/dicomweb/mwlitems"


class DicomJSONResponse(Response):
    media_type = DICOM_JSON


def encode(datasets: Sequence[Dataset]) -> bytes:
    """DICOM JSON, whose text is UTF-8 whatever the item's character set
    was: a Specific Character Set says so (as DCMTK's dcm2json does)."""
    objects = [ds.to_json_dict() for ds in datasets]
    for obj in objects:
        if "00080005" in obj:
            obj["00080005"] = {"vr": "CS", "Value": ["ISO_IR 192"]}
    return json.dumps(objects, ensure_ascii=False).encode()


class WorklistRoutes:
    def __init__(self, archive: Archive, max_body_bytes: int) -> None:
        self.archive = archive
        self.max_body_bytes = max_body_bytes

    def routes(self) -> list[Route]:
        return [
            Route(ROOT, self.create, methods=["POST"]),
            Route(ROOT, self.search, methods=["GET"]),
            Route(ROOT + "/{study_uid}/{sps_id}", self.remove, methods=["DELETE"]),
        ]

    async def create(self, request: Request) -> Response:
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != DICOM_JSON:
            shown = media_type or "none"
            raise HttpError(UNSUPPORTED_MEDIA_TYPE, f"Content-Type {shown}: send {DICOM_JSON}")
        items = dicomjson.items(await self._body(request))

        def create() -> tuple[bytes, bool]:
            entries = self.archive.worklist_create(items)
            return encode([entry.dataset for entry in entries]), any(entry.created for entry in entries)

        body, created = await run_in_threadpool(create)
        return DicomJSONResponse(body, status_code=201 if created else 200)

    async def search(self, request: Request) -> Response:
        asked = query.search(request.query_params.multi_items())

        def search() -> bytes:
            found = self.archive.worklist_search(asked.identifier, include_done=asked.include_done)
            end = None if asked.limit is None else asked.offset + asked.limit
            return encode(found[asked.offset : end])

        return DicomJSONResponse(await run_in_threadpool(search))

    async def remove(self, request: Request) -> Response:
        study_uid, sps_id = request.path_params["study_uid"], request.path_params["sps_id"]
        if not await run_in_threadpool(self.archive.worklist_remove, study_uid, sps_id):
            raise HttpError(NOT_FOUND, f"no worklist item with StudyInstanceUID {study_uid} and SPS ID {sps_id}")
        return Response(status_code=204)

    async def _body(self, request: Request) -> bytes:
        """The request body, refused (413) as soon as it passes the bound:
        a client cannot make the server hold more than that."""
        limit = self.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise HttpError(PAYLOAD_TOO_LARGE, f"body of {declared} bytes; at most {limit} accepted")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(PAYLOAD_TOO_LARGE, f"body over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
