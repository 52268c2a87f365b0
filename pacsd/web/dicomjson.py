"""DICOM JSON (PS3.18 Annex F) request bodies read into datasets.

pydicom's ``Dataset.from_json`` accepts much that is not DICOM JSON (any
VR string, a PN as a plain string, a number where text belongs) and
fails on the rest with messages that do not say where. So the structure
is checked first, element by element, and every problem names its path
(``ScheduledProcedureStepSequence[0].Modality``) in a
:class:`~pacsd.web.statuses.HttpError` (400).
"""

from __future__ import annotations

import json
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from pacsd.web.statuses import BAD_REQUEST, HttpError

TEXT_VRS = frozenset("AE AS AT CS DA DT LO LT SH ST TM UC UI UR UT".split())
NUMBER_VRS = frozenset("FL FD SL SS UL US SV UV".split())
NUMBER_OR_TEXT_VRS = frozenset(("DS", "IS", "SV", "UV"))  # PS3.18 F.2.3.1: may also come as strings
BINARY_VRS = frozenset("OB OD OF OL OV OW UN".split())
PN_GROUPS = frozenset(("Alphabetic", "Ideographic", "Phonetic"))
KNOWN_VRS = TEXT_VRS | NUMBER_VRS | NUMBER_OR_TEXT_VRS | BINARY_VRS | {"PN", "SQ"}


def items(body: bytes) -> list[Dataset]:
    """The datasets of a POST body: one DICOM JSON object or an array of them."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise HttpError(BAD_REQUEST, f"malformed JSON: {exc}") from None
    objects = document if isinstance(document, list) else [document]
    if not objects:
        raise HttpError(BAD_REQUEST, "an empty array: send one item or more")
    datasets = []
    for n, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise HttpError(BAD_REQUEST, f"item {n} is a JSON {_kind(obj)}, not a DICOM JSON object", item=n)
        try:
            check(obj, "")
        except HttpError as exc:
            exc.fields["item"] = n
            raise
        try:
            datasets.append(Dataset.from_json(obj))
        except Exception as exc:  # what the check above did not foresee
            raise HttpError(BAD_REQUEST, f"not DICOM JSON: {exc}", item=n) from None
    return datasets


def check(obj: dict[str, Any], path: str) -> None:
    """Raise HttpError (400, naming the attribute) unless *obj* is a
    well-formed DICOM JSON dataset of known tags with their VRs."""
    for key, element in obj.items():
        tag = _tag(key, path)
        name = f"{path}{keyword_for_tag(tag) or key.upper()}"
        if not isinstance(element, dict):
            raise _bad(name, f"{name}: expected an object with 'vr', got a JSON {_kind(element)}")
        vr = element.get("vr")
        if not isinstance(vr, str) or vr not in KNOWN_VRS:
            raise _bad(name, f"{name}: unknown VR {vr!r}")
        if tag >> 16 & 1 == 0:  # public: its VR is the dictionary's
            allowed = dictionary_VR(tag).split(" or ")
            if vr not in allowed:
                raise _bad(name, f"{name}: VR {vr} is not the VR of this attribute ({' or '.join(allowed)})")
        if "BulkDataURI" in element:
            raise _bad(name, f"{name}: BulkDataURI is not supported; send the value inline")
        if "Value" in element:
            _check_values(element["Value"], vr, name)
        elif "InlineBinary" in element and not isinstance(element["InlineBinary"], str):
            raise _bad(name, f"{name}: InlineBinary must be a base64 string")


def _check_values(values: Any, vr: str, name: str) -> None:
    if not isinstance(values, list):
        raise _bad(name, f"{name}: 'Value' must be an array, got a JSON {_kind(values)}")
    for n, value in enumerate(values):
        if value is None:
            continue
        if vr == "SQ":
            if not isinstance(value, dict):
                raise _bad(name, f"{name}[{n}]: a sequence item must be an object, got a JSON {_kind(value)}")
            check(value, f"{name}[{n}].")
        elif vr == "PN":
            if not isinstance(value, dict) or not set(value) <= PN_GROUPS:
                raise _bad(name, f"{name}: a person name is an object with Alphabetic/Ideographic/Phonetic")
            if not all(isinstance(part, str) for part in value.values()):
                raise _bad(name, f"{name}: person name components must be strings")
        elif vr in BINARY_VRS:
            raise _bad(name, f"{name}: a {vr} value goes in InlineBinary, not Value")
        else:
            number = isinstance(value, int | float) and not isinstance(value, bool)
            ok = number if vr in NUMBER_VRS else isinstance(value, str)
            if vr in NUMBER_OR_TEXT_VRS:
                ok = number or isinstance(value, str)
            if not ok:
                raise _bad(name, f"{name}: {_kind(value)} {value!r} is not a {vr} value")


def _tag(key: str, path: str) -> int:
    if len(key) != 8 or any(c not in "0123456789abcdefABCDEF" for c in key):
        name = f"{path}{key}"
        raise _bad(name, f"{name}: not a tag (DICOM JSON keys are 8 hexadecimal digits, e.g. 00100020)")
    tag = int(key, 16)
    if tag >> 16 & 1 == 0:
        try:
            dictionary_VR(tag)
        except KeyError:
            raise _bad(f"{path}{key}", f"{path}{key}: unknown tag ({key[:4]},{key[4:]})") from None
    return tag


def _bad(attribute: str, message: str) -> HttpError:
    return HttpError(BAD_REQUEST, message, attribute=attribute)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "number"


# -- answers: datasets written as DICOM JSON ----------------------------------

_INTEGER_VRS = frozenset("IS SL SS UL US SV UV".split())
_FLOAT_VRS = frozenset("DS FL FD".split())
_PN_KEYS = ("Alphabetic", "Ideographic", "Phonetic")


def to_json(ds: Dataset) -> dict[str, Any]:
    """*ds* as PS3.18 F DICOM JSON: numbers for IS/DS/US/..., person names
    as Alphabetic/Ideographic/Phonetic objects, an empty value as the VR
    alone. Written here for the VRs an index answer holds (several times
    faster than ``Dataset.to_json_dict``, which a 1000-match answer
    notices); any other VR (binary) goes to pydicom."""
    obj: dict[str, Any] = {}
    for elem in ds:
        vr, value = elem.VR, elem.value
        key = f"{elem.tag:08X}"
        if vr == "SQ":
            obj[key] = {"vr": vr, "Value": [to_json(item) for item in value]} if value else {"vr": vr}
            continue
        if vr in BINARY_VRS:
            obj[key] = elem.to_json_dict(None, 0)
            continue
        values = (
            []
            if value is None or value == ""
            else list(value)
            if isinstance(value, list | tuple | MultiValue)
            else [value]
        )
        if not values:
            obj[key] = {"vr": vr}
        elif vr == "PN":
            obj[key] = {"vr": vr, "Value": [_person_name(str(v)) for v in values]}
        elif vr in _INTEGER_VRS:
            obj[key] = {"vr": vr, "Value": [None if v == "" else int(v) for v in values]}
        elif vr in _FLOAT_VRS:
            obj[key] = {"vr": vr, "Value": [None if v == "" else float(v) for v in values]}
        else:
            obj[key] = {"vr": vr, "Value": [str(v) for v in values]}
    return obj


def _person_name(value: str) -> dict[str, str]:
    return {name: group for name, group in zip(_PN_KEYS, value.split("=")[:3], strict=False) if group}
