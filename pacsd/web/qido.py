"""QIDO-RS (PS3.18 10.6): the six search paths under ``/dicomweb``.

Each search becomes one C-FIND identifier for :meth:`Archive.find`, so it
matches exactly as C-FIND does (case-insensitive names, wildcards, date
and time ranges, UID lists), with three DICOMweb options: relational (no
parent UID needed for ``/series`` and ``/instances``), strict (a key the
level cannot match is a 400; an attribute the index does not hold is left
out of the answer rather than sent empty, which would claim it is empty)
and ``fuzzymatching`` on person names.

Answers are ``application/dicom+json`` (PS3.18 Annex F), ``200`` with an
array, ``[]`` when nothing matches. At most :data:`MAX_RESULTS` matches
are answered; a result cut by that maximum (not by the client's own
``limit``) carries a ``Warning: 299`` header, and ``offset`` pages on.
"""

from __future__ import annotations

import json
from itertools import islice
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pacsd.domain import uid
from pacsd.domain.query import UNIQUE_KEYS, InformationModel, Level, SearchOptions, text_value
from pacsd.ports import no_watch
from pacsd.services.archive import Archive
from pacsd.web import accept, dicomjson, query, urls
from pacsd.web.statuses import BAD_REQUEST, NOT_ACCEPTABLE, HttpError

ROOT = "/dicomweb"
DICOM_JSON = "application/dicom+json"
OFFERS = (DICOM_JSON, "application/json")
MAX_RESULTS = 1000  # matches per response; offset pages past them

# Default return attributes (PS3.18 Table 10.6.3-3, -4, -5, RetrieveURL
# apart). Those the index does not hold (InstanceAvailability,
# TimezoneOffsetFromUTC, PerformedProcedureStepStart*, Rows, Columns,
# BitsAllocated, NumberOfFrames) are asked for and left out by the strict
# search, so they appear once the index learns them.
DEFAULTS = {
    Level.STUDY: (
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "InstanceAvailability",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "TimezoneOffsetFromUTC",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    Level.SERIES: (
        "Modality",
        "TimezoneOffsetFromUTC",
        "SeriesDescription",
        "SeriesInstanceUID",
        "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "RequestAttributesSequence",
    ),
    Level.IMAGE: (
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceAvailability",
        "TimezoneOffsetFromUTC",
        "InstanceNumber",
        "Rows",
        "Columns",
        "BitsAllocated",
        "NumberOfFrames",
    ),
}
# What includefield=all adds: the rest of what the index holds.
MORE = {
    Level.STUDY: (
        "StudyDescription",
        "IssuerOfPatientID",
        "SOPClassesInStudy",
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries",
        "NumberOfPatientRelatedInstances",
    ),
    Level.SERIES: ("SeriesDate", "SeriesTime", "BodyPartExamined"),
    Level.IMAGE: (),
}
LEVELS = (Level.STUDY, Level.SERIES, Level.IMAGE)
PATH_KEYS = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID"}
RETRIEVE_URL = 0x00081190
QUERY_LEVEL = 0x00080052


class QidoRoutes:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def routes(self) -> list[Route]:
        def route(path: str, level: Level) -> Route:
            async def endpoint(request: Request) -> Response:
                return await self.search(request, level)

            return Route(ROOT + path, endpoint, methods=["GET"], name=f"qido {path}")

        return [
            route("/studies", Level.STUDY),
            route("/series", Level.SERIES),
            route("/instances", Level.IMAGE),
            route("/studies/{study}/series", Level.SERIES),
            route("/studies/{study}/instances", Level.IMAGE),
            route("/studies/{study}/series/{series}/instances", Level.IMAGE),
        ]

    async def search(self, request: Request, level: Level) -> Response:
        chosen = accept.negotiate(request.headers.get("accept"), OFFERS)
        if chosen is None:
            raise HttpError(NOT_ACCEPTABLE, f"Accept {request.headers.get('accept')!r}: searches answer {DICOM_JSON}")
        asked = query.qido(request.query_params.multi_items())
        identifier = _identifier(asked, level, request.path_params)
        wanted = MAX_RESULTS if asked.limit is None else min(asked.limit, MAX_RESULTS)
        # One match more than wanted tells whether the answer was cut.
        expected = asked.offset + wanted + 1
        options = SearchOptions(fuzzy_names=asked.fuzzy, relational=True, strict=True, expected=expected)
        base = urls.request_base(request) + ROOT

        def find() -> tuple[list[dict[str, Any]], list[str]]:
            matches = self.archive.find(
                identifier, InformationModel.STUDY_ROOT, no_watch, {"protocol": "qido"}, options
            )
            found = list(islice(matches, asked.offset, asked.offset + wanted + 1))
            return [_json(match, level, base) for match in found], matches.problems

        answers, problems = await run_in_threadpool(find)
        warnings = [f"upstream not asked: {problem}" for problem in problems]
        if len(answers) > wanted:
            answers = answers[:wanted]
            if asked.limit is None or asked.limit > MAX_RESULTS:
                warnings.append(
                    f"the matches exceed the maximum of {MAX_RESULTS} per response;"
                    f" ask for the rest with offset={asked.offset + MAX_RESULTS}"
                )
        headers = {"Warning": ", ".join(_warning(text) for text in warnings)} if warnings else {}
        body = json.dumps(answers, ensure_ascii=False).encode()
        return Response(body, media_type=chosen.media_type.essence, headers=headers)


def _identifier(asked: query.QidoSearch, level: Level, path: dict[str, str]) -> Dataset:
    identifier = asked.keys
    for name, keyword in PATH_KEYS.items():
        if name not in path:
            continue
        if keyword in identifier:
            raise HttpError(BAD_REQUEST, f"{keyword} is given by the path", parameter=keyword)
        value = path[name]
        if not uid.is_valid(value):
            raise HttpError(BAD_REQUEST, f"{keyword} in the path is not a UID: {value[:80]!r}", parameter=keyword)
        identifier.add_new(keyword, "UI", value)
    identifier.QueryRetrieveLevel = level.name
    above = [lv for lv in LEVELS if lv < level and not (lv is Level.STUDY and "study" in path)]
    above = [lv for lv in above if not (lv is Level.SERIES and "series" in path)]
    returned = [kw for lv in [*above, level] for kw in DEFAULTS[lv]]
    if asked.include_all:
        returned += [kw for lv in LEVELS if lv <= level for kw in (*DEFAULTS[lv], *MORE[lv])]
    # The unique keys the RetrieveURL is made of.
    returned += [UNIQUE_KEYS[lv] for lv in LEVELS if lv <= level]
    for keyword in returned:
        if keyword not in identifier:
            _empty(identifier, int(tag_for_keyword(keyword) or 0))
    for tag in asked.fields:
        if tag not in identifier:
            _empty(identifier, tag)
    return identifier


def _empty(identifier: Dataset, tag: int) -> None:
    vr = dictionary_VR(tag).split(" or ")[0]
    identifier.add_new(tag, vr, [] if vr == "SQ" else None)


def _json(match: Dataset, level: Level, base: str) -> dict[str, Any]:
    """One match as PS3.18 F DICOM JSON, with its RetrieveURL."""
    if QUERY_LEVEL in match:
        del match[QUERY_LEVEL]
    url = f"{base}/studies/{text_value(match.get('StudyInstanceUID'))}"
    if level >= Level.SERIES:
        url += f"/series/{text_value(match.get('SeriesInstanceUID'))}"
    if level >= Level.IMAGE:
        url += f"/instances/{text_value(match.get('SOPInstanceUID'))}"
    match.add_new(RETRIEVE_URL, "UR", url)
    obj = dicomjson.to_json(match)
    if "00080005" in obj:  # the JSON text is UTF-8, whatever the match was
        obj["00080005"] = {"vr": "CS", "Value": ["ISO_IR 192"]}
    return obj


def _warning(text: str) -> str:
    """An RFC 7234 Warning value: code 299 (miscellaneous persistent)."""
    return '299 pacsd "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
