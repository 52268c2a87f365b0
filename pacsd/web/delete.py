"""DELETE of a study, series or instance under ``/dicomweb/studies`` (a
pacsd extension, as Azure's DICOM service and dcm4chee offer; PS3.18 has
no DELETE).

``DELETE /dicomweb/studies/{study}[/series/{series}[/instances/{instance}]]``:
204 once the rows are gone (the files go right after, or at the next
start-up after a crash); 404 if no such study, series in that study or
instance in that series is stored here (the caching proxy's upstreams are
not asked); 400 for an invalid UID in the path.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pacsd.domain import uid
from pacsd.domain.deletion import DeleteTarget
from pacsd.services.archive import Archive

STUDY = "/dicomweb/studies/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{instance}"
NO_CONTENT = 204


class DeleteRoutes:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def routes(self) -> list[Route]:
        return [Route(path, self.delete, methods=["DELETE"]) for path in (STUDY, SERIES, INSTANCE)]

    async def delete(self, request: Request) -> Response:
        params = request.path_params
        target = DeleteTarget(
            uid.require(params["study"], "Study Instance UID in the path"),
            uid.require(params["series"], "Series Instance UID in the path") if "series" in params else "",
            uid.require(params["instance"], "SOP Instance UID in the path") if "instance" in params else "",
        )
        await run_in_threadpool(self.archive.delete, target)
        return Response(status_code=NO_CONTENT)
