"""Query filters for the proxy tests ([virtual.NAME] query_filter)."""

from __future__ import annotations

from pydicom.dataset import Dataset

# In the upstream's answers about this study, one stored object is announced
# under another SOP Instance UID, which the upstream then never sends (as a
# PACS whose index and storage disagree would).
GHOST_STUDY = "2.25.77770000000000000000000000000000000001"
GHOST_REAL = "2.25.77770000000000000000000000000000000011"
GHOST_ANNOUNCED = "2.25.77770000000000000000000000000000000099"


# Answers about patients with IDs like this never leave the proxy (a site
# keeping national identifiers out of its workstations' lists).
HIDDEN_PREFIX = "SECRET-"


def test_filter(direction: str, ds: Dataset) -> Dataset | None:
    if direction == "response" and str(ds.get("PatientID", "")).startswith(HIDDEN_PREFIX):
        return None
    if direction == "response" and ds.get("SOPInstanceUID") == GHOST_REAL:
        ds.SOPInstanceUID = GHOST_ANNOUNCED
    return ds
