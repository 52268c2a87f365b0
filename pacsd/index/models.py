"""The index schema described as peewee models: a readable map of the
tables, kept in step with :mod:`pacsd.index.migrations` (which is what runs)
by ``tests/unit/test_migrations.py``.

The models are bound to no database: nothing at runtime goes through them,
so one process can hold several indexes. To query with them (a test, a
one-off script) bind them for a while, e.g.
``peewee.SqliteDatabase(path).bind_ctx(MODELS)``.
"""

from __future__ import annotations

from peewee import (
    SQL,
    AutoField,
    BigIntegerField,
    BlobField,
    Check,
    CompositeKey,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)
from playhouse.sqlite_ext import AutoIncrementField


class BaseModel(Model):
    class Meta:
        legacy_table_names = False


class Patient(BaseModel):
    id = AutoField()
    patient_id = TextField()
    issuer = TextField(default="")
    no_id_study_uid = TextField(default="")
    name = TextField(default="")
    # PatientName folded for matching (see index.matching.fold_pn), one
    # column per component group: alphabetic, ideographic, phonetic.
    name_fold = TextField(default="", index=True)
    name_fold_ideo = TextField(default="")
    name_fold_phon = TextField(default="")
    birth_date = TextField(default="", index=True)
    sex = TextField(default="")

    class Meta:
        indexes = ((("patient_id", "issuer", "no_id_study_uid"), True),)
        constraints = [Check("(patient_id = '') = (no_id_study_uid != '')")]


class Study(BaseModel):
    id = AutoField()
    study_uid = TextField(unique=True)
    patient = ForeignKeyField(Patient, backref="studies", column_name="patient_pk", on_delete="RESTRICT", index=True)
    study_date = TextField(default="", index=True)
    study_time = TextField(default="")
    accession = TextField(default="", index=True)
    description = TextField(default="")
    referring_physician = TextField(default="")
    referring_fold = TextField(default="")
    study_id = TextField(default="")


class Series(BaseModel):
    id = AutoField()
    series_uid = TextField(unique=True)
    study = ForeignKeyField(Study, backref="series", column_name="study_pk", on_delete="RESTRICT", index=True)
    modality = TextField(default="", index=True)
    series_number = IntegerField(null=True)
    description = TextField(default="")
    series_date = TextField(default="")
    series_time = TextField(default="")
    body_part = TextField(default="")


class SeriesRequest(BaseModel):
    """Items of a series' Request Attributes Sequence, for sequence matching."""

    id = AutoField()
    series = ForeignKeyField(Series, backref="requests", column_name="series_pk", on_delete="CASCADE", index=True)
    requested_procedure_id = TextField(default="")
    scheduled_procedure_step_id = TextField(default="")
    accession = TextField(default="")


class Instance(BaseModel):
    id = AutoField()
    sop_uid = TextField(unique=True)
    series = ForeignKeyField(Series, backref="instances", column_name="series_pk", on_delete="RESTRICT", index=True)
    sop_class_uid = TextField()
    instance_number = IntegerField(null=True)
    transfer_syntax = TextField()
    path = TextField(unique=True)  # relative to data_dir/files
    size = BigIntegerField()
    received_at = DateTimeField(constraints=[SQL("DEFAULT CURRENT_TIMESTAMP")])


class Change(BaseModel):
    """The change feed: one row per change, in the changing transaction."""

    seq = AutoIncrementField()  # AUTOINCREMENT: a sequence number is never reused
    at = DateTimeField(constraints=[SQL("DEFAULT CURRENT_TIMESTAMP")])
    action = TextField(constraints=[Check("action IN ('create', 'update', 'merge', 'delete')")])
    level = TextField(constraints=[Check("level IN ('patient', 'study', 'series', 'instance')")])
    row_id = IntegerField()
    uid = TextField()  # before migration 4 the only field: a UID, or a display string for patients
    # Migration 4: the concerned UIDs, and the patient's ID and Issuer, apart.
    patient_id = TextField(default="")
    issuer = TextField(default="")
    study_uid = TextField(default="")
    series_uid = TextField(default="")
    sop_uid = TextField(default="")


class Fetch(BaseModel):
    """One fetch of a study from an upstream by the caching proxy.

    An audit record, not index data: a 'done' row is written in the same
    transaction as the fetched study's rows (so "this study was fetched
    whole" is true exactly when they are there); a 'failed' row is written
    on its own and links to nothing.
    """

    id = AutoField()
    at = DateTimeField(constraints=[SQL("DEFAULT CURRENT_TIMESTAMP")])
    study_uid = TextField(index=True)
    upstream = TextField()
    outcome = TextField(constraints=[Check("outcome IN ('done', 'failed')")])
    expected = IntegerField()
    received = IntegerField()
    seconds = FloatField()
    detail = TextField()
    stale = IntegerField(default=0)  # migration 7: 1 once a delete removed part of the study


class WriteAhead(BaseModel):
    """The bytes of a stored file not yet known to be on disk.

    A small object is committed with its bytes in this table, in the same
    transaction as its rows: one flush (the WAL's) makes both durable, where
    fsyncing the file and its directory first took two more. Its file is in
    place (written, not fsynced) before that commit; :mod:`pacsd.storage.syncer`
    flushes such files in batches and then deletes their rows here, and
    start-up rewrites the file of every row still here.
    """

    instance = ForeignKeyField(Instance, primary_key=True, column_name="instance_pk", on_delete="CASCADE")
    data = BlobField()


class WorklistItem(BaseModel):
    """One Scheduled Procedure Step of the worklist (migration 5), on its
    patient; the whole item in ``dataset`` (DICOM JSON)."""

    id = AutoField()
    patient = ForeignKeyField(Patient, column_name="patient_pk", on_delete="RESTRICT", index=True)
    study_uid = TextField()
    sps_id = TextField()
    digest = TextField()  # of the item as given: identical re-adds are recognised by it
    accession = TextField()
    requested_procedure_id = TextField()
    name_fold = TextField()
    name_fold_ideo = TextField()
    name_fold_phon = TextField()
    modality = TextField()
    start_date = TextField(index=True)
    start_time = TextField()
    start_at = TextField()  # date and time as one sortable value, for combined ranges
    performer_fold = TextField()
    status = TextField()
    dataset = TextField()
    created_at = DateTimeField(constraints=[SQL("DEFAULT CURRENT_TIMESTAMP")])
    updated_at = DateTimeField(constraints=[SQL("DEFAULT CURRENT_TIMESTAMP")])

    class Meta:
        indexes = ((("study_uid", "sps_id"), True),)


class WorklistStation(BaseModel):
    """A Scheduled Station AE Title of a worklist item (a step may name several)."""

    item = ForeignKeyField(WorklistItem, column_name="item_pk", on_delete="CASCADE")
    ae = TextField(index=True)

    class Meta:
        primary_key = CompositeKey("item", "ae")


class Mpps(BaseModel):
    """A Modality Performed Procedure Step (migration 6), whole in ``dataset``."""

    id = AutoField()
    sop_uid = TextField(unique=True)
    patient = ForeignKeyField(Patient, column_name="patient_pk", on_delete="RESTRICT", null=True, index=True)
    status = TextField()
    dataset = TextField()
    created_at = DateTimeField(constraints=[SQL("DEFAULT CURRENT_TIMESTAMP")])
    updated_at = DateTimeField(constraints=[SQL("DEFAULT CURRENT_TIMESTAMP")])


class MppsSeries(BaseModel):
    """A series an MPPS lists as performed (Performed Series Sequence)."""

    mpps = ForeignKeyField(Mpps, column_name="mpps_pk", on_delete="CASCADE")
    series_uid = TextField(index=True)

    class Meta:
        primary_key = CompositeKey("mpps", "series_uid")


class Removal(BaseModel):
    """A file whose rows a delete removed, until it is unlinked (migration 7,
    :mod:`pacsd.services.deletion`)."""

    path = TextField(primary_key=True)  # relative to data_dir/files
    at = DateTimeField(constraints=[SQL("DEFAULT CURRENT_TIMESTAMP")])


MODELS = [
    Patient, Study, Series, SeriesRequest, Instance, Change, Fetch, WriteAhead, WorklistItem, WorklistStation, Mpps,
    MppsSeries, Removal,
]  # fmt: skip
