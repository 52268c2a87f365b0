"""TOML configuration read into typed, validated settings.

Every problem is reported as one :class:`ConfigError` naming the file and
the key, so ``pacsd`` can print a single line and exit with status 2.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pacsd.domain.limits import DEFAULT_OBJECT_BYTES_BY_CLASS, GiB, KiB, Limits, MiB

DEFAULT_AE_TITLE = "PACSD"
MAX_SECONDS = 7 * 86400.0  # no timeout of ours is longer than a week
DEFAULT_PORT = 11112


def default_workers() -> int:
    """One serving process. With pacsd's own upper layer a process is no
    longer CPU-bound on stores: they wait on fsync, and one process groups
    the commits of all associations. Interleaved runs here, 4 concurrent
    storescu: 8 KB objects 437-572 inst/s with one worker against 343-517
    with two; 512 KB objects 172-186 against 194-199. More workers pay off
    for many senders of large objects on more cores."""
    return 1


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Remote:
    """A known application entity: C-MOVE destination, upstream, ..."""

    name: str
    ae_title: str
    host: str
    port: int
    # A modality that sends no Scheduled Station AE Title in a worklist query
    # sees only the items scheduled for its own (calling) AE title, not everyone's.
    worklist_own_items_only: bool = False


@dataclass(frozen=True)
class ServerSettings:
    ae_title: str = DEFAULT_AE_TITLE
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Path = Path("var")
    max_associations: int = 100
    # Seconds without a PDU before an association is aborted.
    network_timeout: float = 60.0
    # When not empty, only these calling AE titles may associate.
    allowed_calling_aes: tuple[str, ...] = ()
    # Processes serving the port (SO_REUSEPORT); 1 = a single process.
    workers: int = 1
    # Reject associations whose called AE title is not ours (Orthanc's DicomCheckCalledAet).
    check_called_ae: bool = True


# A query filter: (direction, identifier) -> identifier or None (drop it).
# direction is "query" (going upstream) or "response" (coming back).
QueryFilter = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Upstream:
    """A PACS the caching proxy answers from and fetches from."""

    remote: Remote
    retrieve: str = "move"  # "move" (to pacsd's own AE title) or "get"
    connect_timeout: float = 10.0  # opening the association
    response_timeout: float = 30.0  # silence from the upstream mid-operation
    fetch_timeout: float = 600.0  # one whole fetch
    max_fetches: int = 2  # concurrent fetches from this upstream, all workers together
    query_filter: QueryFilter | None = None
    query_filter_name: str = ""


@dataclass(frozen=True)
class VirtualSettings:
    upstreams: tuple[Upstream, ...]


@dataclass(frozen=True)
class HttpSettings:
    """The HTTP server (worklist API, DICOMweb, viewer); port 0 = off."""

    host: str = "127.0.0.1"
    port: int = 0
    cors_origins: tuple[str, ...] = ()  # origins (or "*") answered with CORS headers on /dicomweb
    viewer_dir: Path | None = None  # the installed OHIF viewer; None: <data_dir>/viewer

    @property
    def enabled(self) -> bool:
        return self.port != 0


@dataclass(frozen=True)
class WorklistSettings:
    # Items never started whose start date is more than this many days ago
    # are not answered (0: never expire).
    expire_after_days: int = 0


def default_conversion_processes() -> int:
    """Half the CPUs, at least one: conversions never take every core from ingest."""
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True)
class TranscodeSettings:
    """Conversions on the way out (README "Retrieve")."""

    processes: int = field(default_factory=default_conversion_processes)  # per serving process
    # Whether a lossless original may be sent lossy (JPEG-LS near-lossless,
    # JPEG 2000) to a recipient that accepts nothing lossless pacsd can encode.
    allow_lossy: bool = False


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    worklist: WorklistSettings = field(default_factory=WorklistSettings)
    transcode: TranscodeSettings = field(default_factory=TranscodeSettings)
    remotes: dict[str, Remote] = field(default_factory=dict)
    virtual: VirtualSettings | None = None  # None: the caching proxy is off
    limits: Limits = field(default_factory=Limits)
    source: str = "<embedded default>"

    def worklist_own_items_only(self) -> frozenset[str]:
        """The AE titles of the remotes with ``worklist_own_items_only = true``."""
        return frozenset(r.ae_title for r in self.remotes.values() if r.worklist_own_items_only)


def _check_ae_title(where: str, value: str) -> str:
    # PS3.5 AE VR: 1-16 characters of the default repertoire, no backslash
    # or control characters; leading/trailing spaces are not significant.
    stripped = value.strip()
    if not 1 <= len(stripped) <= 16 or any(c == "\\" or not (" " <= c <= "~") for c in stripped):
        raise ConfigError(f"{where}: not a valid AE title: {value!r} (1-16 printable ASCII characters)")
    return stripped


def _plain(number: float) -> str:
    return str(int(number)) if number == int(number) else str(number)


class _Reader:
    """Pulls typed values out of one TOML table, rejecting unknown keys."""

    def __init__(self, source: str, table: dict[str, Any], prefix: str) -> None:
        self.source = source
        self.table = dict(table)
        self.prefix = prefix

    def where(self, key: str) -> str:
        return f"{self.source}: [{self.prefix}] {key}" if self.prefix else f"{self.source}: {key}"

    def get(self, key: str, kind: type, default: Any) -> Any:
        if key not in self.table:
            return default
        value = self.table.pop(key)
        # bool is an int subclass in Python; a port of `true` is a mistake.
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(f"{self.where(key)}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
        return value

    def number(self, key: str, kind: type, default: Any, low: float, high: float) -> Any:
        """An int or float within [*low*, *high*]; NaN and infinities are refused."""
        value = self.get(key, kind, default)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{self.where(key)}: must be a finite number, got {value!r}")
        if not low <= value <= high:
            raise ConfigError(f"{self.where(key)}: {value!r} is not between {_plain(low)} and {_plain(high)}")
        return value

    def port(self, key: str, default: int) -> int:
        value: int = self.get(key, int, default)
        if not 1 <= value <= 65535:
            raise ConfigError(f"{self.where(key)}: port {value} is outside 1-65535")
        return value

    def finish(self) -> None:
        if self.table:
            key = sorted(self.table)[0]
            raise ConfigError(f"{self.where(key)}: unknown key")


def _server(source: str, table: dict[str, Any], base: Path) -> ServerSettings:
    r = _Reader(source, table, "server")
    ae_title = _check_ae_title(r.where("ae_title"), r.get("ae_title", str, DEFAULT_AE_TITLE))
    host = r.get("host", str, "127.0.0.1")
    port = r.port("port", DEFAULT_PORT)
    data_dir = Path(r.get("data_dir", str, "var"))
    max_assoc = r.number("max_associations", int, 100, 1, 10_000)
    timeout = r.number("network_timeout", float, 60.0, 0.001, MAX_SECONDS)
    workers = r.number("workers", int, default_workers(), 1, 64)
    check_called_ae = r.get("check_called_ae", bool, True)
    allowed = r.get("allowed_calling_aes", list, [])
    for n, title in enumerate(allowed):
        if not isinstance(title, str):
            raise ConfigError(f"{r.where('allowed_calling_aes')}: entry {n + 1} is not a string: {title!r}")
        _check_ae_title(r.where("allowed_calling_aes"), title)
    r.finish()
    # A relative data_dir is relative to the config file, so a config works
    # whatever directory the server is started from.
    if not data_dir.is_absolute():
        data_dir = (base / data_dir).resolve()
    allowed_aes = tuple(title.strip() for title in allowed)
    return ServerSettings(ae_title, host, port, data_dir, max_assoc, timeout, allowed_aes, workers, check_called_ae)


# An Origin header's value: scheme://host[:port], nothing after it.
_ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:[0-9]{1,5})?\Z")


def _http(source: str, table: dict[str, Any], server: ServerSettings, base: Path) -> HttpSettings:
    r = _Reader(source, table, "http")
    host = r.get("host", str, "127.0.0.1")
    port = r.number("port", int, 0, 0, 65535)  # 0: no HTTP server
    origins = r.get("cors_origins", list, [])
    viewer = r.get("viewer_dir", str, None)
    r.finish()
    if port and port == server.port:
        raise ConfigError(f"{r.where('port')}: {port} is the DICOM port ([server] port)")
    for origin in origins:
        # A trailing slash or path never equals a browser's Origin: refuse
        # it rather than silently allow nothing.
        if not isinstance(origin, str) or not (origin == "*" or _ORIGIN.match(origin)):
            raise ConfigError(f'{r.where("cors_origins")}: {origin!r} is not "*" nor an origin like https://host:port')
    viewer_dir = None
    if viewer is not None:
        viewer_dir = Path(viewer) if Path(viewer).is_absolute() else (base / viewer).resolve()
    return HttpSettings(host, port, tuple(origins), viewer_dir)


def _worklist(source: str, table: dict[str, Any]) -> WorklistSettings:
    r = _Reader(source, table, "worklist")
    days = r.number("expire_after_days", int, 0, 0, 36_500)
    r.finish()
    return WorklistSettings(days)


def _transcode(source: str, table: dict[str, Any]) -> TranscodeSettings:
    r = _Reader(source, table, "transcode")
    processes = r.number("processes", int, default_conversion_processes(), 1, 64)
    allow_lossy = r.get("allow_lossy", bool, False)
    r.finish()
    return TranscodeSettings(processes, allow_lossy)


# [limits] key -> (type, lowest, highest); defaults come from Limits.
_LIMIT_RANGES: dict[str, tuple[type, float, float]] = {
    "max_connections": (int, 1, 100_000),
    "associate_timeout": (float, 0.001, MAX_SECONDS),
    "pdu_timeout": (float, 0.001, MAX_SECONDS),
    "association_timeout": (float, 0.001, MAX_SECONDS),
    "max_associate_request_bytes": (int, 4 * KiB, 16 * MiB),
    "associate_cache_bytes": (int, 0, 1 * GiB),
    "max_pdu_bytes": (int, 4 * KiB, 128 * MiB),
    "max_command_bytes": (int, 1 * KiB, 16 * MiB),
    "max_fragments": (int, 16, 1 << 32),
    "max_object_bytes": (int, 1 * KiB, 1 << 50),
    "spool_bytes": (int, 64 * KiB, 1 * GiB),
    "max_inflated_bytes": (int, 1 * KiB, 64 * GiB),
    "max_inflate_ratio": (int, 2, 1 << 20),
    "inflate_ratio_after": (int, 0, 64 * GiB),
    "max_identifier_bytes": (int, 1 * KiB, 256 * MiB),
    "max_query_values": (int, 1, 10_000_000),
}


def _limits(source: str, table: dict[str, Any]) -> Limits:
    r = _Reader(source, table, "limits")
    defaults = Limits()
    values: dict[str, Any] = {}
    for key, (kind, low, high) in _LIMIT_RANGES.items():
        values[key] = r.number(key, kind, getattr(defaults, key), low, high)
    by_class = dict(DEFAULT_OBJECT_BYTES_BY_CLASS)
    c = _Reader(source, r.get("object_bytes_by_class", dict, {}), "limits.object_bytes_by_class")
    for prefix in list(c.table):
        if not prefix or any(ch not in "0123456789." for ch in prefix):
            raise ConfigError(f"{c.where(repr(prefix))}: not a SOP Class UID or UID prefix")
        by_class[prefix] = c.number(prefix, int, 0, 1 * KiB, 1 << 50)
    r.finish()
    return Limits(**values, object_bytes_by_class=by_class)


def _remotes(source: str, table: dict[str, Any]) -> dict[str, Remote]:
    remotes = {}
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: [remotes] {name}: expected a table [remotes.{name}]")
        r = _Reader(source, entry, f"remotes.{name}")
        ae_title = _check_ae_title(r.where("ae_title"), r.get("ae_title", str, name))
        if "host" not in entry:
            raise ConfigError(f"{r.where('host')}: missing")
        if "port" not in entry:
            raise ConfigError(f"{r.where('port')}: missing")
        host = r.get("host", str, "")
        port = r.port("port", 0)
        own_items_only = r.get("worklist_own_items_only", bool, False)
        r.finish()
        remotes[name] = Remote(name, ae_title, host, port, own_items_only)
    return remotes


def _query_filter(where: str, name: str) -> QueryFilter:
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{where}: expected 'module:function', got {name!r}")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:
        raise ConfigError(f"{where}: cannot load {name!r}: {exc}") from None
    if not callable(function):
        raise ConfigError(f"{where}: {name!r} is not callable")
    return function  # type: ignore[no-any-return]


def _virtual(source: str, table: dict[str, Any], remotes: dict[str, Remote]) -> VirtualSettings:
    r = _Reader(source, table, "virtual")
    names = r.get("upstreams", list, [])
    if not names:
        raise ConfigError(f"{r.where('upstreams')}: name at least one [remotes] entry")
    upstreams = []
    for name in names:
        if not isinstance(name, str) or name not in remotes:
            raise ConfigError(f"{r.where('upstreams')}: {name!r} is not a [remotes] entry")
        u = _Reader(source, r.get(name, dict, {}), f"virtual.{name}")
        retrieve = u.get("retrieve", str, "move")
        if retrieve not in ("move", "get"):
            raise ConfigError(f'{u.where("retrieve")}: expected "move" or "get", got {retrieve!r}')
        timeouts = {}
        for key, default in (("connect_timeout", 10.0), ("response_timeout", 30.0), ("fetch_timeout", 600.0)):
            timeouts[key] = u.number(key, float, default, 0.001, MAX_SECONDS)
        max_fetches = u.number("max_fetches", int, 2, 1, 64)
        filter_name = u.get("query_filter", str, "")
        query_filter = _query_filter(u.where("query_filter"), filter_name) if filter_name else None
        u.finish()
        upstreams.append(
            Upstream(remotes[name], retrieve, max_fetches=max_fetches, query_filter=query_filter,
                     query_filter_name=filter_name, **timeouts)
        )  # fmt: skip
    r.finish()
    return VirtualSettings(tuple(upstreams))


def parse(text: str, source: str, base: Path) -> Settings:
    """Parse TOML *text*; *base* anchors relative paths."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    top = _Reader(source, doc, "")
    server = _server(source, top.get("server", dict, {}), base)
    http = _http(source, top.get("http", dict, {}), server, base)
    worklist = _worklist(source, top.get("worklist", dict, {}))
    transcode = _transcode(source, top.get("transcode", dict, {}))
    remotes = _remotes(source, top.get("remotes", dict, {}))
    virtual_table = top.get("virtual", dict, None)
    virtual = _virtual(source, virtual_table, remotes) if virtual_table is not None else None
    limits = _limits(source, top.get("limits", dict, {}))
    top.finish()
    return Settings(
        server=server,
        http=http,
        worklist=worklist,
        transcode=transcode,
        remotes=remotes,
        virtual=virtual,
        limits=limits,
        source=source,
    )


def load(path: Path | None) -> Settings:
    """Read the config at *path*, or the embedded default when it is None.

    The embedded default serves out of ``./var`` relative to the current
    directory, as the README promises.
    """
    if path is None:
        return Settings(server=ServerSettings(data_dir=Path.cwd() / "var", workers=default_workers()))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    return parse(text, str(path), path.resolve().parent)
