"""Which store a hub opens, from the ``store`` setting (``scorewatch hub --store ...``).

- ``duckdb`` (the default): the embedded DuckDB file in the workspace, one hub.
- ``chdb:///DIR`` (or ``chdb://relative/dir``): ClickHouse's engine in the hub's own process (chdb),
  on the directory ``DIR``; one process at a time, as DuckDB. ``?database=NAME`` picks a database
  (default ``scorewatch``).
- ``clickhouse://[USER@]HOST[:PORT][/DATABASE]`` a ClickHouse server over HTTP (port 8123),
  ``clickhouses://...`` over HTTPS (8443). The database (default ``scorewatch``) is created when
  missing. The password comes from ``SCOREWATCH_CLICKHOUSE_PASSWORD`` or from the URL when the URL
  itself comes from the environment (``SCOREWATCH_STORE``): never from a command line, where ``ps``
  shows it. Such a store is *shared*: several hubs write it, and applications, export rules and
  checkpoints live in it too.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from scorewatch.errors import ConfigError
from scorewatch.files import read_json, write_atomic

if TYPE_CHECKING:
    from scorewatch.settings import Settings
    from scorewatch.store.base import Store
    from scorewatch.workspace import Workspace

log = logging.getLogger("scorewatch.store")

DEFAULT_DATABASE = "scorewatch"
_DATABASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_OPTIONS = {"secure", "database", "async_insert", "connect_timeout", "send_receive_timeout", "verify", "compress"}


@dataclass(frozen=True)
class StoreSpec:
    """A parsed ``store`` setting."""

    kind: str                 # duckdb | chdb | clickhouse
    path: str = ""            # chdb: the directory
    host: str = ""
    port: int = 0
    secure: bool = False
    username: str = ""
    password: str = ""
    database: str = DEFAULT_DATABASE
    options: tuple[tuple[str, str], ...] = ()

    @property
    def shared(self) -> bool:
        return self.kind == "clickhouse"

    def describe(self) -> str:
        """The store without its password, for logs, ``/health`` and config.json."""
        if self.kind == "duckdb":
            return "duckdb"
        if self.kind == "chdb":
            return f"chdb://{self.path}?database={self.database}"
        user = f"{self.username}@" if self.username else ""
        scheme = "clickhouses" if self.secure else "clickhouse"
        return f"{scheme}://{user}{self.host}:{self.port}/{self.database}"


def parse(text: str, *, password: str = "") -> StoreSpec:
    """The store named by ``text`` (see the module's docstring); ``password`` from the settings."""
    text = (text or "duckdb").strip()
    if text == "duckdb":
        return StoreSpec("duckdb")
    parts = urlsplit(text)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - _OPTIONS
    if unknown:
        raise ConfigError(f"unknown option {sorted(unknown)[0]!r} in the store URL; known: {', '.join(sorted(_OPTIONS))}")
    if parts.scheme == "chdb":
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise ConfigError("a chdb store needs a directory: chdb:///path/to/dir")
        return StoreSpec("chdb", path=str(Path(path).expanduser().resolve()),
                         database=_database(query.get("database", DEFAULT_DATABASE)))
    if parts.scheme in ("clickhouse", "clickhouses"):
        if not parts.hostname:
            raise ConfigError(f"the store URL {_safe(text)!r} names no host: clickhouse://HOST[:PORT]/DATABASE")
        secure = parts.scheme == "clickhouses" or query.get("secure", "").lower() in ("1", "true", "yes")
        try:
            port = parts.port or (8443 if secure else 8123)
        except ValueError:
            raise ConfigError(f"the store URL {_safe(text)!r} has an invalid port") from None
        database = _database(unquote(parts.path.strip("/")) or query.get("database", DEFAULT_DATABASE))
        options = tuple(sorted((k, v) for k, v in query.items() if k not in ("secure", "database")))
        return StoreSpec("clickhouse", host=parts.hostname, port=port, secure=secure,
                         username=unquote(parts.username or ""), password=password or unquote(parts.password or ""),
                         database=database, options=options)
    raise ConfigError(f"unknown store {_safe(text)!r}: use duckdb, chdb:///DIR or clickhouse://HOST[:PORT]/DATABASE")


def has_password(text: str) -> bool:
    """Whether a store URL carries a password (refused on command lines)."""
    try:
        return bool(urlsplit(text).password)
    except ValueError:
        return False


def _safe(text: str) -> str:
    parts = urlsplit(text)
    if parts.password:
        return text.replace(f":{parts.password}@", ":***@")
    return text


def _database(name: str) -> str:
    if not _DATABASE.match(name):
        raise ConfigError(f"invalid ClickHouse database name {name!r}: letters, digits and '_'")
    return name


def clickhouse_connector(spec: StoreSpec) -> Any:
    """A function making a ``clickhouse_connect`` client for ``spec`` (the store binds it to its database)."""
    from scorewatch.store.clickhouse import get_client, require_client_library

    require_client_library()
    options = dict(spec.options)

    def connect() -> Any:
        if spec.kind == "chdb":
            return get_client(dsn=f"chdb://{spec.path}")
        kwargs: dict[str, Any] = {"host": spec.host, "port": spec.port, "username": spec.username or "default",
                                  "password": spec.password,
                                  "interface": "https" if spec.secure else "http",
                                  "autogenerate_session_id": False,
                                  "compress": "lz4" if options.get("compress", "lz4") not in ("0", "false", "no")
                                  else False,
                                  "connect_timeout": float(options.get("connect_timeout", 10)),
                                  "send_receive_timeout": float(options.get("send_receive_timeout", 300))}
        if "verify" in options:
            kwargs["verify"] = options["verify"].lower() not in ("0", "false", "no")
        return get_client(**kwargs)

    return connect


def open_clickhouse(spec: StoreSpec, *, stream: int | None = None, ttl_days: int = 730) -> Store:
    """The ClickHouse store of ``spec``: its database made when missing, then its tables. An
    unreachable or misconfigured server is a :class:`ConfigError` naming it (without password)."""
    from scorewatch.store.clickhouse import ClickHouseError, ClickHouseStore, OperationalError, engine_message

    if spec.kind == "chdb" and spec.path not in _OPENED and _held(Path(spec.path) / "status"):
        raise ConfigError(f"cannot open the store {spec.describe()}: another process has it open. Only one process "
                          "may open a chdb directory; is a hub already running on this workspace?")
    try:
        store = ClickHouseStore(clickhouse_connector(spec), database=spec.database,
                                stream=stream, ttl_days=ttl_days, shared=spec.shared, name=spec.describe(),
                                async_insert=dict(spec.options).get("async_insert", "0") in ("1", "true"))
    except (OperationalError, OSError) as exc:
        raise ConfigError(f"cannot reach the store {spec.describe()}: {engine_message(exc)}") from None
    except ClickHouseError as exc:
        raise ConfigError(f"cannot use the store {spec.describe()}: {engine_message(exc)}") from None
    if spec.kind == "chdb":
        _OPENED.add(spec.path)
    return store


_OPENED: set[str] = set()  # chdb directories this process's engine has open (their lock is ours)


def _held(status: Path) -> bool:
    """Whether another process holds the lock a chdb engine takes on its directory's status file."""
    try:
        fd = os.open(status, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def store_spec(workspace: Workspace, settings: Settings, *, recorded: bool = True) -> StoreSpec:
    """The store the ``store`` setting names; with the default (duckdb) and ``recorded``, the store
    the last hub of this workspace recorded in config.json (what a command other than the hub uses)."""
    text = settings.store
    if recorded and text == "duckdb":
        text = workspace.read_config().get("store", "duckdb")
    return parse(text, password=settings.clickhouse_password)


def open_store(workspace: Workspace, settings: Settings, *, reader: bool = False) -> Store:
    """The hub's store (the ``store`` setting). A ClickHouse store writes under this workspace's
    stream, kept in ``<home>/store/stream.json`` beside the write-ahead log whose positions it
    records. ``reader``: a command that reads (the store this workspace's hub recorded; a shared
    ClickHouse store is opened without a stream)."""
    spec = store_spec(workspace, settings, recorded=reader)
    if spec.kind == "duckdb":
        from scorewatch.store.duckdb import DuckDBStore

        return DuckDBStore(workspace.store_dir / "telemetry.duckdb", threads=settings.store_threads or None)
    if reader and spec.shared:
        from scorewatch.store.clickhouse import READER

        return open_clickhouse(spec, stream=READER, ttl_days=settings.clickhouse_ttl_days)
    marker = workspace.store_dir / "stream.json"
    saved = read_json(marker, {})
    stream = saved.get("stream") if isinstance(saved, dict) and saved.get("store") == spec.describe() else None
    store = open_clickhouse(spec, stream=stream, ttl_days=settings.clickhouse_ttl_days)
    if stream is None:
        workspace.store_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(marker, orjson.dumps({"store": spec.describe(), "stream": store.stream}))  # type: ignore[attr-defined]
    return store
