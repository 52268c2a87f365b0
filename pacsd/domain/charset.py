"""Specific Character Set of C-FIND responses.

Stored text is unicode (decoded with each object's own character set).
A response is sent in the character set the query used when every value
fits in it, so a Latin-1 or ISO 2022 (Japanese) workstation gets what it
asked in; otherwise in UTF-8 (ISO_IR 192). Either way it is declared.
"""

from __future__ import annotations

from pydicom.charset import python_encoding
from pydicom.dataset import Dataset
from pydicom.valuerep import PersonName

UTF8 = "ISO_IR 192"


def requested(identifier: Dataset) -> list[str]:
    """The Specific Character Set terms of a request ([] = default repertoire)."""
    value = identifier.get("SpecificCharacterSet")
    if not value:
        return []
    terms = [value] if isinstance(value, str) else list(value)
    return [t.strip() for t in terms]


def _fits(text: str, terms: list[str]) -> bool:
    codecs = [python_encoding.get(t or "ISO_IR 6") for t in terms]
    if any(c is None for c in codecs):
        return False  # a term we do not know: answer in UTF-8
    for ch in text:
        if ch.isascii():
            continue
        if not any(_encodes(ch, c) for c in codecs if c):
            return False
    return True


def _encodes(ch: str, codec: str) -> bool:
    try:
        ch.encode(codec)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _texts(ds: Dataset) -> list[str]:
    texts = []
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                texts.extend(_texts(item))
        elif isinstance(elem.value, (str, PersonName)):
            texts.append(str(elem.value))
    return texts


def declare(response: Dataset, terms: list[str]) -> None:
    """Set the response's Specific Character Set for what it carries."""
    texts = _texts(response)
    if all(t.isascii() for t in texts):
        if terms:
            response.SpecificCharacterSet = terms if len(terms) > 1 else terms[0]
        return
    if terms and all(_fits(t, terms) for t in texts):
        response.SpecificCharacterSet = terms if len(terms) > 1 else terms[0]
    else:
        response.SpecificCharacterSet = UTF8
