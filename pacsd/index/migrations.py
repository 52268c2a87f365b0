"""The index schema as numbered, append-only migrations.

Each migration runs once, in order, in a write transaction of its own that
also records its number in ``PRAGMA user_version``: an index is at version
N when migrations 1..N have run, whoever made it (versions 1-3 were made
by peewee's ``create_tables`` before this module; their statements are
copied here as it spelled them, so an index made now is the same). Never
edit or drop a migration that has shipped: add one. A column is added with
``ALTER TABLE ... ADD COLUMN`` and backfilled in the same migration; old
columns are kept.

The invariants live in the schema, as constraints, not as checks in Python:

- a patient is unique by (patient_id, issuer, no_id_study_uid). For every
  patient with an ID, no_id_study_uid is '' (CHECK), so the UNIQUE holds on
  (PatientID, IssuerOfPatientID) exactly as DESIGN.md says. An object with
  no PatientID gets a patient of its own per study, keyed by the study UID,
  so two unidentified people are never joined into one patient.
- study, series and instance UIDs are UNIQUE and each row names exactly one
  parent (NOT NULL foreign key).
- foreign-key columns are named ``*_pk`` so they never read like the DICOM
  attributes (PatientID, StudyID) stored beside them.
- issuer is never NULL: SQLite treats NULLs as distinct under UNIQUE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import apsw

from pacsd.domain.errors import StartupError
from pacsd.index.dialect import SQLITE


class SchemaError(StartupError):
    """The index was written by a newer pacsd, or cannot be upgraded."""


Step = Callable[[apsw.Connection], None]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Step


def _script(*statements: str) -> Step:
    script = ";\n".join(statements)

    def apply(conn: apsw.Connection) -> None:
        conn.execute(script)

    return apply


INITIAL = _script(
    'CREATE TABLE "patient" ("id" INTEGER NOT NULL PRIMARY KEY, "patient_id" TEXT NOT NULL,'
    ' "issuer" TEXT NOT NULL, "no_id_study_uid" TEXT NOT NULL, "name" TEXT NOT NULL, "name_fold" TEXT NOT NULL,'
    ' "name_fold_ideo" TEXT NOT NULL, "name_fold_phon" TEXT NOT NULL, "birth_date" TEXT NOT NULL,'
    " \"sex\" TEXT NOT NULL, CHECK ((patient_id = '') = (no_id_study_uid != '')))",
    'CREATE INDEX "patient_name_fold" ON "patient" ("name_fold")',
    'CREATE INDEX "patient_birth_date" ON "patient" ("birth_date")',
    'CREATE UNIQUE INDEX "patient_patient_id_issuer_no_id_study_uid"'
    ' ON "patient" ("patient_id", "issuer", "no_id_study_uid")',
    'CREATE TABLE "study" ("id" INTEGER NOT NULL PRIMARY KEY, "study_uid" TEXT NOT NULL,'
    ' "patient_pk" INTEGER NOT NULL, "study_date" TEXT NOT NULL, "study_time" TEXT NOT NULL,'
    ' "accession" TEXT NOT NULL, "description" TEXT NOT NULL, "referring_physician" TEXT NOT NULL,'
    ' "referring_fold" TEXT NOT NULL, "study_id" TEXT NOT NULL,'
    ' FOREIGN KEY ("patient_pk") REFERENCES "patient" ("id") ON DELETE RESTRICT)',
    'CREATE UNIQUE INDEX "study_study_uid" ON "study" ("study_uid")',
    'CREATE INDEX "study_patient_pk" ON "study" ("patient_pk")',
    'CREATE INDEX "study_study_date" ON "study" ("study_date")',
    'CREATE INDEX "study_accession" ON "study" ("accession")',
    'CREATE TABLE "series" ("id" INTEGER NOT NULL PRIMARY KEY, "series_uid" TEXT NOT NULL,'
    ' "study_pk" INTEGER NOT NULL, "modality" TEXT NOT NULL, "series_number" INTEGER,'
    ' "description" TEXT NOT NULL, "series_date" TEXT NOT NULL, "series_time" TEXT NOT NULL,'
    ' "body_part" TEXT NOT NULL, FOREIGN KEY ("study_pk") REFERENCES "study" ("id") ON DELETE RESTRICT)',
    'CREATE UNIQUE INDEX "series_series_uid" ON "series" ("series_uid")',
    'CREATE INDEX "series_study_pk" ON "series" ("study_pk")',
    'CREATE INDEX "series_modality" ON "series" ("modality")',
    'CREATE TABLE "instance" ("id" INTEGER NOT NULL PRIMARY KEY, "sop_uid" TEXT NOT NULL,'
    ' "series_pk" INTEGER NOT NULL, "sop_class_uid" TEXT NOT NULL, "instance_number" INTEGER,'
    ' "transfer_syntax" TEXT NOT NULL, "path" TEXT NOT NULL, "size" INTEGER NOT NULL,'
    ' "received_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,'
    ' FOREIGN KEY ("series_pk") REFERENCES "series" ("id") ON DELETE RESTRICT)',
    'CREATE UNIQUE INDEX "instance_sop_uid" ON "instance" ("sop_uid")',
    'CREATE INDEX "instance_series_pk" ON "instance" ("series_pk")',
    'CREATE UNIQUE INDEX "instance_path" ON "instance" ("path")',
    # Items of a series' Request Attributes Sequence, for sequence matching.
    'CREATE TABLE "series_request" ("id" INTEGER NOT NULL PRIMARY KEY, "series_pk" INTEGER NOT NULL,'
    ' "requested_procedure_id" TEXT NOT NULL, "scheduled_procedure_step_id" TEXT NOT NULL,'
    ' "accession" TEXT NOT NULL, FOREIGN KEY ("series_pk") REFERENCES "series" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "series_request_series_pk" ON "series_request" ("series_pk")',
    # The change feed: one row per change, in the changing transaction.
    # AUTOINCREMENT: a sequence number is never reused.
    'CREATE TABLE "change" ("seq" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,'
    ' "at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,'
    " \"action\" TEXT NOT NULL CHECK (action IN ('create', 'update', 'merge', 'delete')),"
    " \"level\" TEXT NOT NULL CHECK (level IN ('patient', 'study', 'series', 'instance')),"
    ' "row_id" INTEGER NOT NULL, "uid" TEXT NOT NULL)',
)

# One fetch of a study by the caching proxy. An audit record, not index
# data: a 'done' row is written in the same transaction as the fetched
# study's rows (so "this study was fetched whole" is true exactly when they
# are there); a 'failed' row is written on its own and links to nothing.
FETCH = _script(
    'CREATE TABLE "fetch" ("id" INTEGER NOT NULL PRIMARY KEY, "at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,'
    ' "study_uid" TEXT NOT NULL, "upstream" TEXT NOT NULL,'
    " \"outcome\" TEXT NOT NULL CHECK (outcome IN ('done', 'failed')), \"expected\" INTEGER NOT NULL,"
    ' "received" INTEGER NOT NULL, "seconds" REAL NOT NULL, "detail" TEXT NOT NULL)',
    'CREATE INDEX "fetch_study_uid" ON "fetch" ("study_uid")',
)

# The bytes of a stored file not yet known to be on disk. A small object is
# committed with its bytes here, in the same transaction as its rows: one
# flush (the WAL's) makes both durable, where fsyncing the file and its
# directory first took two more. Its file is in place (written, not
# fsynced) before that commit; pacsd.storage.syncer flushes such files in
# batches and then deletes their rows here, and start-up rewrites the file
# of every row still here.
WRITE_AHEAD = _script(
    'CREATE TABLE "write_ahead" ("instance_pk" INTEGER NOT NULL PRIMARY KEY, "data" BLOB NOT NULL,'
    ' FOREIGN KEY ("instance_pk") REFERENCES "instance" ("id") ON DELETE CASCADE)',
)

# The change feed names what changed in separate fields: the level's UID and
# those of its parents, and the patient's PatientID and Issuer (for a patient
# without PatientID, study_uid names the study it is keyed by). The old
# `uid` column (a display string for patients) stays, and is still written.
_PATIENT_OF = "patient_id = p.patient_id, issuer = p.issuer"
_FIELDS = ("patient_id", "issuer", "study_uid", "series_uid", "sop_uid")
CHANGE_FIELDS = _script(
    *(f"ALTER TABLE change ADD COLUMN {column} TEXT NOT NULL DEFAULT ''" for column in _FIELDS),
    # The level's own UID first, from `uid`: it stays even if a row is gone.
    "UPDATE change SET study_uid = uid WHERE level = 'study'",
    "UPDATE change SET series_uid = uid WHERE level = 'series'",
    "UPDATE change SET sop_uid = uid WHERE level = 'instance'",
    f"UPDATE change SET {_PATIENT_OF}, study_uid = p.no_id_study_uid FROM patient p"
    " WHERE change.level = 'patient' AND p.id = change.row_id",
    f"UPDATE change SET {_PATIENT_OF} FROM study s JOIN patient p ON p.id = s.patient_pk"
    " WHERE change.level = 'study' AND s.id = change.row_id",
    f"UPDATE change SET {_PATIENT_OF}, study_uid = s.study_uid FROM series se"
    " JOIN study s ON s.id = se.study_pk JOIN patient p ON p.id = s.patient_pk"
    " WHERE change.level = 'series' AND se.id = change.row_id",
    f"UPDATE change SET {_PATIENT_OF}, study_uid = s.study_uid, series_uid = se.series_uid FROM instance i"
    " JOIN series se ON se.id = i.series_pk JOIN study s ON s.id = se.study_pk JOIN patient p ON p.id = s.patient_pk"
    " WHERE change.level = 'instance' AND i.id = change.row_id",
)

# Worklist items (Modality Worklist): one row per Scheduled Procedure Step,
# on the same patient table as the images. The item is kept whole (DICOM
# JSON, `dataset`); the columns are what a worklist query matches on (names
# folded as for images), `start_at` the date and time as one sortable value.
# A step may name several station AE titles: one worklist_station row each.
WORKLIST = _script(
    'CREATE TABLE "worklist_item" ("id" INTEGER NOT NULL PRIMARY KEY, "patient_pk" INTEGER NOT NULL,'
    ' "study_uid" TEXT NOT NULL, "sps_id" TEXT NOT NULL, "digest" TEXT NOT NULL, "accession" TEXT NOT NULL,'
    ' "requested_procedure_id" TEXT NOT NULL, "name_fold" TEXT NOT NULL, "name_fold_ideo" TEXT NOT NULL,'
    ' "name_fold_phon" TEXT NOT NULL, "modality" TEXT NOT NULL, "start_date" TEXT NOT NULL,'
    ' "start_time" TEXT NOT NULL, "start_at" TEXT NOT NULL, "performer_fold" TEXT NOT NULL,'
    ' "status" TEXT NOT NULL, "dataset" TEXT NOT NULL,'
    ' "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,'
    ' "updated_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,'
    ' FOREIGN KEY ("patient_pk") REFERENCES "patient" ("id") ON DELETE RESTRICT)',
    'CREATE UNIQUE INDEX "worklist_item_study_uid_sps_id" ON "worklist_item" ("study_uid", "sps_id")',
    'CREATE INDEX "worklist_item_patient_pk" ON "worklist_item" ("patient_pk")',
    'CREATE INDEX "worklist_item_start_date" ON "worklist_item" ("start_date")',
    'CREATE TABLE "worklist_station" ("item_pk" INTEGER NOT NULL, "ae" TEXT NOT NULL,'
    ' PRIMARY KEY ("item_pk", "ae"), FOREIGN KEY ("item_pk") REFERENCES "worklist_item" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "worklist_station_ae" ON "worklist_station" ("ae")',
)

# Modality Performed Procedure Steps: each kept whole (DICOM JSON), on its
# patient when it names one (PatientID), with the series it lists as
# performed, so "which images did this procedure produce" is a join.
MPPS = _script(
    'CREATE TABLE "mpps" ("id" INTEGER NOT NULL PRIMARY KEY, "sop_uid" TEXT NOT NULL, "patient_pk" INTEGER,'
    ' "status" TEXT NOT NULL, "dataset" TEXT NOT NULL,'
    ' "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,'
    ' "updated_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,'
    ' FOREIGN KEY ("patient_pk") REFERENCES "patient" ("id") ON DELETE RESTRICT)',
    'CREATE UNIQUE INDEX "mpps_sop_uid" ON "mpps" ("sop_uid")',
    'CREATE INDEX "mpps_patient_pk" ON "mpps" ("patient_pk")',
    'CREATE TABLE "mpps_series" ("mpps_pk" INTEGER NOT NULL, "series_uid" TEXT NOT NULL,'
    ' PRIMARY KEY ("mpps_pk", "series_uid"), FOREIGN KEY ("mpps_pk") REFERENCES "mpps" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "mpps_series_series_uid" ON "mpps_series" ("series_uid")',
)

# Deletion (DICOMweb DELETE, pacsd.services.deletion): the rows of a deleted
# study, series or instance go in one transaction that also lists their
# files here; the files are unlinked after that commit and their rows here
# dropped once they are gone, and start-up finishes whatever a crash left
# listed. So the index never names a file that a delete removed, and a file
# whose rows are gone is either listed here or gone. A path listed here that
# an instance row names again (the object was stored anew) keeps its file.
# `fetch.stale`: a delete removed some of what that fetch brought, so the
# caching proxy must no longer believe the study local.
REMOVAL = _script(
    'CREATE TABLE "removal" ("path" TEXT NOT NULL PRIMARY KEY, "at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP)',
    'ALTER TABLE "fetch" ADD COLUMN "stale" INTEGER NOT NULL DEFAULT 0',
)

MIGRATIONS = (
    Migration(1, "initial", INITIAL),
    Migration(2, "fetch", FETCH),
    Migration(3, "write_ahead", WRITE_AHEAD),
    Migration(4, "change_fields", CHANGE_FIELDS),
    Migration(5, "worklist", WORKLIST),
    Migration(6, "mpps", MPPS),
    Migration(7, "removal", REMOVAL),
)
LATEST = MIGRATIONS[-1].version
assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1)), "migrations are numbered 1..N in order"


ANY_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1"


def version_of(conn: apsw.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0]) if row else 0


def _refuse_newer(conn: apsw.Connection, version: int) -> None:
    if version > LATEST:
        raise SchemaError(
            conn.filename, f"index schema version {version} is newer than this pacsd ({LATEST}); upgrade pacsd"
        )


def migrate(conn: apsw.Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Run the migrations *conn*'s index has not had; returns its version now.

    Each runs in a write transaction that first reads the version again, so
    two processes opening one old index at once upgrade it once.
    """
    version = version_of(conn)
    _refuse_newer(conn, version)
    if version == 0 and conn.execute(ANY_TABLE).fetchone() is not None:
        # Tables, but never versioned: another program's database.
        raise SchemaError(conn.filename, "index schema version 0 holds tables: not a pacsd index")
    for migration in migrations:
        if version >= migration.version:
            continue
        conn.execute(SQLITE.begin_write)
        try:
            version = version_of(conn)
            _refuse_newer(conn, version)
            if version < migration.version:
                migration.apply(conn)
                conn.execute(f"PRAGMA user_version = {migration.version}")
                version = migration.version
            conn.execute("COMMIT")
        except BaseException:
            if not conn.getautocommit():
                conn.execute("ROLLBACK")
            raise
    return version
