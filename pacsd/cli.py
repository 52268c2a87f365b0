"""The `pacsd` command: serve, stats, changes, fsck, import."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pacsd import __version__, log
from pacsd.config import ConfigError, Settings, load
from pacsd.domain.errors import StartupError

if TYPE_CHECKING:
    from pacsd.services.archive import Archive

EXIT_USAGE = 2


def _settings(args: argparse.Namespace) -> Settings:
    return load(args.config)


def _serve(args: argparse.Namespace) -> int:
    from pacsd.bootstrap import ListenError, check_data_dir, serve

    settings = _settings(args)
    check_data_dir(settings)  # before the server locks or binds anything in it
    try:
        serve(settings)
    except ListenError as exc:
        log.say(f"pacsd: {exc}")
        return 1
    return 0


def _index_path(settings: Settings) -> Path:
    """The index of an archive that has served; never creates one."""
    data_dir = settings.server.data_dir
    if data_dir.exists() and not data_dir.is_dir():
        raise StartupError(data_dir, "exists and is not a directory")
    path = data_dir / "index.sqlite"
    if not path.exists() and not path.is_symlink():
        raise StartupError(path, "no index here (has the server run with this data_dir?)")
    return path


def _stats(args: argparse.Namespace) -> int:
    from pacsd.index.sqlite import SqliteIndex

    index = SqliteIndex(_index_path(_settings(args)), readonly=True)
    try:
        result = index.counts()
    finally:
        index.close()
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:<10} {value}")
    return 0


CHANGE_FIELDS = (("patient_id", "patient"), ("issuer", "issuer"), ("study_uid", "study"),
                 ("series_uid", "series"), ("sop_uid", "sop"))  # fmt: skip
DEFAULT_CHANGES = 1000


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least *minimum* (else a usage error, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}: {value}")
        return value

    return parse


def _quoted(value: str) -> str:
    return value if value and not any(c.isspace() or c in "\"'" for c in value) else json.dumps(value)


def _changes(args: argparse.Namespace) -> int:
    from pacsd.index.sqlite import SqliteIndex

    index = SqliteIndex(_index_path(_settings(args)), readonly=True)
    try:
        changes = index.changes_since(args.since, args.limit)
    finally:
        index.close()
    if args.json:
        print(json.dumps([dataclasses.asdict(change) for change in changes]))
        return 0
    for change in changes:
        fields = " ".join(
            f"{label}={_quoted(getattr(change, name))}" for name, label in CHANGE_FIELDS if getattr(change, name)
        )
        print(f"{change.seq:>8}  {change.at}  {change.action:<6}  {change.level:<8}  {fields}")
    return 0


def _fsck(args: argparse.Namespace) -> int:
    from pacsd.admin import fsck
    from pacsd.bootstrap import Node

    settings = _settings(args)
    _index_path(settings)
    node = Node(settings)
    node.start()
    try:
        report = fsck.check(node.archive)
        if args.reindex:
            fsck.reindex(node.archive, report)
    finally:
        node.close()
    for path in report.missing_files:
        print(f"missing file for indexed instance: {path}")
    for path in report.restorable:
        print(f"not yet flushed (its bytes are in the index; the server rewrites it at start-up): {path}")
    for path in report.unindexed_files:
        print(f"unindexed file: {path}")
    for path in report.pending_removal:
        print(f"deleted, not yet removed (the server removes it at start-up): {path}")
    for path in report.reindexed:
        print(f"reindexed: {path}")
    for path, why in report.refused:
        print(f"not reindexed: {path}: {why}")
    print("clean" if report.clean else "problems found")
    return 0 if report.clean else 1


def _import(args: argparse.Namespace) -> int:
    from pacsd.admin.importer import import_files
    from pacsd.bootstrap import Node

    node = Node(_settings(args))
    node.start()
    try:
        counts, problems = import_files(node.archive, args.paths, args.workers)
    finally:
        node.close()
    for path, why in problems:
        log.say(f"{path}: {why}")
    print(" ".join(f"{key}={value}" for key, value in sorted(counts.items())) or "no files")
    return 1 if problems else 0


def _worklist(args: argparse.Namespace) -> int:
    from pacsd.bootstrap import Node

    node = Node(_settings(args))
    node.start()
    try:
        return _WORKLIST_ACTIONS[args.action](node.archive, args)
    finally:
        node.close()


def _worklist_add(archive: Archive, args: argparse.Namespace) -> int:
    from pacsd.admin import worklist

    created, existing, refused = worklist.add(archive, args.files)
    for path, why in refused:
        log.say(f"{path}: {why}")
    print(f"created={created} existing={existing} refused={len(refused)}")
    return 1 if refused else 0


def _worklist_list(archive: Archive, args: argparse.Namespace) -> int:
    from pacsd.admin import worklist

    filters = {name: getattr(args, name) for name in worklist.FILTERS if getattr(args, name) is not None}
    rows = [worklist.row(item) for item in archive.worklist_search(worklist.query(filters), include_done=args.all)]
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print("  ".join(r.values()))
    return 0


def _worklist_remove(archive: Archive, args: argparse.Namespace) -> int:
    if archive.worklist_remove(args.study_uid, args.sps_id):
        return 0
    log.say(f"pacsd: no worklist item {args.study_uid} {args.sps_id} (StudyInstanceUID, ScheduledProcedureStepID)")
    return 1


def _worklist_status(archive: Archive, args: argparse.Namespace) -> int:
    from pacsd.domain.errors import Refusal

    try:
        archive.worklist_set_status(args.study_uid, args.sps_id, args.status)
    except Refusal as exc:
        log.say(f"pacsd: {exc}")
        return 1
    return 0


_WORKLIST_ACTIONS: dict[str, Callable[[Archive, argparse.Namespace], int]] = {
    "add": _worklist_add,
    "list": _worklist_list,
    "remove": _worklist_remove,
    "status": _worklist_status,
}


def _worklist_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wl = sub.add_parser("worklist", help="add, list, remove worklist items and set their status")
    actions = wl.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add items from Part 10 worklist files or DICOM JSON files")
    add.add_argument("files", nargs="+", type=Path)
    listing = actions.add_parser("list", help="list items (COMPLETED, DISCONTINUED, CANCELED only with --all)")
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.add_argument("--all", action="store_true", help="include done items")
    for name in ("patient_id", "patient_name", "accession", "modality", "station", "date", "status"):
        listing.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar="VALUE")
    remove = actions.add_parser("remove", help="remove one item")
    remove.add_argument("study_uid")
    remove.add_argument("sps_id")
    status = actions.add_parser("status", help="set one item's Scheduled Procedure Step Status")
    status.add_argument("study_uid")
    status.add_argument("sps_id")
    status.add_argument("status")
    for action in (add, listing, remove, status):
        action.add_argument("--config", type=Path, help="TOML config file (default: embedded, data in ./var)")
    wl.set_defaults(func=_worklist)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pacsd", description="A DIMSE-native mini-PACS.")
    p.add_argument("--version", action="version", version=f"pacsd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help)
        c.add_argument("--config", type=Path, help="TOML config file (default: embedded, data in ./var)")
        return c

    command("serve", "run the DICOM server").set_defaults(func=_serve)
    stats = command("stats", "count what the archive holds (read-only)")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(func=_stats)
    changes = command("changes", "list the change feed, oldest first (read-only)")
    changes.add_argument("--since", type=_count(0), default=0, metavar="N", help="entries after sequence number N")
    changes.add_argument(
        "--limit", type=_count(1), default=DEFAULT_CHANGES, metavar="N", help=f"at most N (default {DEFAULT_CHANGES})"
    )
    changes.add_argument("--json", action="store_true", help="print one JSON array of entries")
    changes.set_defaults(func=_changes)
    fsck = command("fsck", "find index rows without files and files without rows")
    fsck.add_argument("--reindex", action="store_true", help="index unindexed files through ingest")
    fsck.set_defaults(func=_fsck)
    imp = command("import", "store Part 10 files from disk through the normal ingest path")
    imp.add_argument("paths", nargs="+", type=Path, help="files or directories (recursive)")
    imp.add_argument("--workers", type=int, default=4, help="parallel workers (default 4)")
    imp.set_defaults(func=_import)
    _worklist_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    log.configure()
    try:
        code: int = args.func(args)
    except (ConfigError, StartupError) as exc:
        log.say(f"pacsd: {exc}")
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
