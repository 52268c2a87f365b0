"""The HTTP app's error paths that a real client cannot provoke: a bug in
a use case answers a JSON 500 naming only the exception's type, logs its
traceback, and the next request is served. In process (httpx's ASGI
transport), over a real Archive on a real index; the fault is raised by
the Archive itself."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from pydicom.dataset import Dataset
from structlog.testing import capture_logs

from pacsd.services.archive import Archive
from pacsd.web.app import build_app


class Broken(Exception):
    """Stands for a bug: nothing in the status table names it."""


def requests(app: Any, *calls: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pacsd") as client:
            return [await client.request(method, url, **kwargs) for method, url, kwargs in calls]

    return anyio.run(run)


def test_an_unexpected_exception_is_a_json_500_and_the_app_serves_on(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_search = archive.worklist_search
    calls = 0

    def search_once_broken(identifier: Dataset, include_done: bool = False) -> list[Dataset]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Broken("secret detail /etc/passwd")
        return real_search(identifier, include_done)

    monkeypatch.setattr(archive, "worklist_search", search_once_broken)
    get = ("GET", "/dicomweb/mwlitems", {"params": {"PatientID": "X"}})
    with capture_logs() as logged:
        failed, served = requests(build_app(archive), get, get)
    assert failed.status_code == 500
    assert failed.json() == {"error": "internal error: Broken"}
    assert "secret" not in failed.text and "Traceback" not in failed.text
    assert served.status_code == 200 and served.json() == []
    failures = [e for e in logged if e["event"] == "http_failed"]
    assert len(failures) == 1 and failures[0]["exc_info"] is True
    assert [e["status"] for e in logged if e["event"] == "http_request"] == [500, 200]


def test_an_over_long_declared_body_is_refused_before_it_is_read(archive: Archive) -> None:
    body = b"[" + b" " * 2048 + b"]"
    post = ("POST", "/dicomweb/mwlitems", {"content": body, "headers": {"Content-Type": "application/dicom+json"}})
    [response] = requests(build_app(archive, max_body_bytes=1024), post)
    assert response.status_code == 413
    assert "1024" in response.json()["error"]


def test_each_request_is_logged_with_its_route_template_status_and_bytes(archive: Archive) -> None:
    study = "1.2.826.0.1.3680043.8.498.1"
    calls = [
        ("GET", f"/dicomweb/studies/{study}/metadata", {}),
        ("GET", "/dicomweb/mwlitems", {"params": {"PatientID": "X"}}),
        ("GET", "/dicomweb/nothing/here", {}),
    ]
    with capture_logs() as logged:
        answers = requests(build_app(archive), *calls)
    access = [e for e in logged if e["event"] == "http_request"]
    assert [(e["route"], e["path"], e["status"]) for e in access] == [
        ("/dicomweb/studies/{study}/metadata", f"/dicomweb/studies/{study}/metadata", 404),
        ("/dicomweb/mwlitems", "/dicomweb/mwlitems", 200),
        ("", "/dicomweb/nothing/here", 404),
    ]
    assert [e["bytes"] for e in access] == [len(answer.content) for answer in answers]
    assert all(e["bytes"] > 0 for e in access)
