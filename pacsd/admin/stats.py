"""`pacsd stats`: what the archive holds, read-only."""

from __future__ import annotations

from peewee import fn

from pacsd.index.models import Fetch, Instance, Patient, Series, Study


def counts() -> dict[str, int]:
    """Row counts and bytes stored, from the currently bound index."""
    return {
        "patients": Patient.select().count(),
        "studies": Study.select().count(),
        "series": Series.select().count(),
        "instances": Instance.select().count(),
        "bytes": int(Instance.select(fn.COALESCE(fn.SUM(Instance.size), 0)).scalar()),
        "fetches_done": Fetch.select().where(Fetch.outcome == "done").count(),
        "fetches_failed": Fetch.select().where(Fetch.outcome == "failed").count(),
    }
