"""The hub's shared state: small JSON documents by key, in the workspace or in the shared store.

Applications and keys (``apps``), export rules (``exports``), each rule's checkpoints and status
(``exports/<rule id>/...``), deployments, registered models, compute targets and services' keys
(``deployments/...``, ``models/...``, ``computes/...``, see :mod:`scorewatch.deploy.store`) are
*documents*. With one hub (DuckDB, or
chdb) they are the workspace's JSON files, as before: ``apps`` is ``<home>/apps.json``. With hub
replicas on one ClickHouse server they live in that server (``scorewatch_documents``), so any replica
answers any request and ``scorewatch app ...`` works from any machine that reaches the server.

- :meth:`Documents.edit` is the one way to change a document from its current value (a read, a
  change, a write that fails if someone wrote in between, retried): two writers never lose each
  other's change. Files do it under an exclusive ``flock``; ClickHouse with a compare-and-set: a
  document's version ``v + 1`` is written with the insert deduplication token ``key:v+1``, so of two
  writers only the first insert lands, and each reads back which one did.
- :meth:`Documents.stamp` tells a reader whether to read again (a file's mtime; a version).
- :func:`lease` lets one replica at a time do what must be done once (export, retention).
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from scorewatch.errors import ConfigError, ServiceUnavailable
from scorewatch.files import file_stamp, locked, read_json, write_atomic

if TYPE_CHECKING:
    from scorewatch.settings import Settings
    from scorewatch.store.backends import StoreSpec
    from scorewatch.store.base import Store
    from scorewatch.workspace import Workspace

log = logging.getLogger("scorewatch.documents")
_UNCHANGED = object()  # returned by an edit's change: nothing to write


class Documents(Protocol):
    shared: bool  # other processes on other machines read and write them too

    def read(self, key: str, default: Any = None) -> Any:
        """The document at ``key``, or ``default``."""
        ...

    def write(self, key: str, value: Any, *, public: bool = False, durable: bool = True) -> None:
        """Replace the document at ``key`` (``public``: readable by other local users; ``durable``:
        synced to disk; both only matter to files)."""
        ...

    def edit(self, key: str, change: Callable[[Any], Any], default: Any = None) -> Any:
        """Apply ``change`` to the document's value (``default`` when there is none) and write what it
        returns, atomically; returns the value written (``change`` may run more than once; it returns
        :data:`UNCHANGED` to write nothing, and then the current value is returned)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the document ``key`` and every document under ``key/``."""
        ...

    def keys(self, prefix: str) -> list[str]:
        """The keys of the documents under ``prefix/``, sorted."""
        ...

    def values(self, prefix: str, pattern: str | None = None) -> dict[str, Any]:
        """The documents under ``prefix/`` by key, in one read; ``pattern`` keeps those whose key
        after ``prefix/`` matches it, a glob whose ``*`` stays within one ``/``-separated part
        (``"*/deployment"``)."""
        ...

    def stamp(self, key: str) -> Hashable:
        """A value that changes when the document does (a reader keeps the one it read with)."""
        ...

    def forget(self, key: str) -> None:
        """The next :meth:`stamp` of ``key`` looks at the document itself (not a cached stamp)."""
        ...


UNCHANGED = _UNCHANGED


class CachedDocument:
    """One document, kept in memory and read again only when its stamp changes: cheap enough to ask
    on every request. ``load`` is called with the document's value (None when there is none) each
    time it is read."""

    def __init__(self, documents: Documents, key: str, load: Callable[[Any], None]) -> None:
        self.documents, self.key, self.load = documents, key, load
        self._stamp: Hashable = None
        self._reading = threading.RLock()

    def refresh(self) -> bool:
        """Read the document again if it changed since the last read; True when it did."""
        with self._reading:  # one reader at a time: a slower read of an older value cannot land last
            stamp = self.documents.stamp(self.key)
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            self.load(self.documents.read(self.key))
            return True

    def reread(self) -> None:
        """Read it now, whatever its stamp says (after this process wrote it)."""
        with self._reading:
            self._stamp = None
            self.refresh()


class FileDocuments:
    """Documents as JSON files under ``root``: ``key`` is ``<root>/<key>.json`` (mode 0600 unless public)."""

    shared = False

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._refused: set[str] = set()

    @classmethod
    def of_file(cls, path: str | os.PathLike[str]) -> tuple[FileDocuments, str]:
        """The documents holding the JSON file ``path``, and its key."""
        path = Path(path)
        return cls(path.parent), path.name.removesuffix(".json")

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def read(self, key: str, default: Any = None) -> Any:
        return read_json(self.path(key), default)

    def write(self, key: str, value: Any, *, public: bool = False, durable: bool = True) -> None:
        path = self.path(key)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path, orjson.dumps(value, option=orjson.OPT_INDENT_2), mode=0o644 if public else 0o600,
                     durable=durable)

    def edit(self, key: str, change: Callable[[Any], Any], default: Any = None) -> Any:
        path = self.path(key)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with locked(path):
            current = read_json(path, default)
            value = change(current)
            if value is _UNCHANGED:
                return current
            write_atomic(path, orjson.dumps(value, option=orjson.OPT_INDENT_2))
        return value

    def delete(self, key: str) -> None:
        import shutil

        self.path(key).unlink(missing_ok=True)
        shutil.rmtree(self.root / key, ignore_errors=True)

    def keys(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        return sorted(str(p.relative_to(self.root).with_suffix("")) for p in folder.rglob("*.json")) \
            if folder.is_dir() else []

    def values(self, prefix: str, pattern: str | None = None) -> dict[str, Any]:
        """(A file that is not valid JSON, such as one edited by hand, is left out and said once.)"""
        folder = self.root / prefix
        if not folder.is_dir():
            return {}
        found = {}
        for path in sorted(folder.glob(pattern + ".json") if pattern else folder.rglob("*.json")):
            try:
                value = read_json(path, None)
            except ConfigError as exc:
                if str(path) not in self._refused:
                    self._refused.add(str(path))
                    log.error("%s; it is left out until it is mended or removed", exc)
                continue
            if value is not None:
                found[str(path.relative_to(self.root).with_suffix(""))] = value
        return found

    def stamp(self, key: str) -> Hashable:
        return file_stamp(self.path(key))

    def forget(self, key: str) -> None:
        pass  # a file's stamp is never cached


class ClickHouseDocuments:
    """Documents in the table ``scorewatch_documents`` of a ClickHouse database, reached through
    ``client()`` (a clickhouse-connect client bound to it). A reader asks whether a document changed
    at most every ``poll_s`` (a query each time). While the server cannot be reached, every call
    raises :class:`~scorewatch.errors.ServiceUnavailable` (503 with Retry-After)."""

    shared = True

    def __init__(self, client: Callable[[], Any], *, poll_s: float = 1.0) -> None:
        self._connect = client
        self.poll_s = poll_s
        self._writer = f"{socket.gethostname()}:{os.getpid()}"
        self._stamps: dict[str, tuple[int, float]] = {}  # key → (version, when asked)
        self._lock = threading.Lock()

    def _client(self) -> Any:
        return _Unavailable(self._connect())

    def _current(self, key: str) -> tuple[Any, int]:
        rows = self._client().query(
            "SELECT argMax(value, version), argMax(deleted, version), max(version) FROM scorewatch_documents "
            "WHERE key = %(key)s", parameters={"key": key}).result_rows
        value, deleted, version = rows[0] if rows else (None, False, 0)
        version = int(version or 0)
        if not version or deleted or value is None:
            return None, version
        return orjson.loads(value), version

    def read(self, key: str, default: Any = None) -> Any:
        value, version = self._current(key)
        return default if value is None else value

    def _put(self, key: str, value: Any, version: int, *, deleted: bool = False) -> bool:
        """Write ``value`` as version ``version`` of ``key``; True when this write is the one that landed."""
        nonce = f"{self._writer}:{uuid.uuid4().hex}"
        text = "" if deleted else orjson.dumps(value).decode()
        self._client().insert("scorewatch_documents", [[key, version, text, deleted, nonce]],
                              column_names=["key", "version", "value", "deleted", "writer"],
                              settings={"insert_deduplicate": 1, "insert_deduplication_token": f"{key}:{version}"})
        rows = self._client().query("SELECT writer FROM scorewatch_documents WHERE key = %(key)s AND version = %(v)s",
                                    parameters={"key": key, "v": version}).result_rows
        return any(row[0] == nonce for row in rows)

    def edit(self, key: str, change: Callable[[Any], Any], default: Any = None) -> Any:
        while True:
            current, version = self._current(key)
            value = change(default if current is None else current)
            if value is _UNCHANGED:
                return current if current is not None else default
            if self._put(key, value, version + 1):
                self.forget(key)
                return value
            time.sleep(0.01)  # another writer came first: read its value and change that

    def write(self, key: str, value: Any, *, public: bool = False, durable: bool = True) -> None:
        self.edit(key, lambda _: value)

    def delete(self, key: str) -> None:
        rows = self._client().query(
            "SELECT key, max(version), argMax(deleted, version) FROM scorewatch_documents WHERE key = %(key)s "
            "OR startsWith(key, %(prefix)s) GROUP BY key", parameters={"key": key, "prefix": key + "/"}).result_rows
        for name, version, deleted in rows:
            if not deleted:
                self._put(name, None, int(version) + 1, deleted=True)
        with self._lock:
            self._stamps.clear()

    def keys(self, prefix: str) -> list[str]:
        rows = self._client().query(
            "SELECT key FROM scorewatch_documents WHERE startsWith(key, %(prefix)s) GROUP BY key "
            "HAVING NOT argMax(deleted, version) ORDER BY key", parameters={"prefix": prefix + "/"}).result_rows
        return [row[0] for row in rows]

    def values(self, prefix: str, pattern: str | None = None) -> dict[str, Any]:
        rows = self._client().query(
            "SELECT key, argMax(value, version) FROM scorewatch_documents WHERE startsWith(key, %(prefix)s) "
            "GROUP BY key HAVING NOT argMax(deleted, version) ORDER BY key",
            parameters={"prefix": prefix + "/"}).result_rows
        return {key: orjson.loads(value) for key, value in rows if value and matches(key[len(prefix) + 1:], pattern)}

    def stamp(self, key: str) -> Hashable:
        with self._lock:
            known = self._stamps.get(key)
            if known is not None and time.monotonic() - known[1] < self.poll_s:
                return known[0]
        rows = self._client().query("SELECT max(version) FROM scorewatch_documents WHERE key = %(key)s",
                                    parameters={"key": key}).result_rows
        version = int(rows[0][0] or 0) if rows else 0
        with self._lock:
            self._stamps[key] = (version, time.monotonic())
        return version

    def forget(self, key: str) -> None:
        with self._lock:
            self._stamps.pop(key, None)


class _Unavailable:
    """A client whose errors reaching the server are a 503 (the shared state is there)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            from scorewatch.errors import ServiceUnavailable
            from scorewatch.store.clickhouse import OperationalError

            try:
                return method(*args, **kwargs)
            except (OperationalError, OSError) as exc:
                raise ServiceUnavailable(f"the shared store cannot be reached: {exc}", retry_after=5) from None
        return call


def matches(key: str, pattern: str | None) -> bool:
    """Whether ``key`` matches the glob ``pattern`` part by part (``*`` stays within one part)."""
    if pattern is None:
        return True
    parts, wanted = key.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True))


def lease(documents: Documents, name: str, holder: str, ttl_s: float) -> bool:
    """Take or keep the lease ``name`` for ``holder`` for ``ttl_s`` seconds; True while held. With
    one hub (documents that are not shared) it is always held. Replicas' clocks are assumed to agree
    to well within ``ttl_s`` (NTP)."""
    if not documents.shared:
        return True
    now = time.time()

    def take(current: Any) -> Any:
        if isinstance(current, dict) and current.get("holder") != holder and current.get("until", 0) > now:
            return UNCHANGED  # someone else holds it
        return {"holder": holder, "until": now + ttl_s, "since": current.get("since", now)
                if isinstance(current, dict) and current.get("holder") == holder else now}

    held = documents.edit(f"leases/{name}", take)
    return isinstance(held, dict) and held.get("holder") == holder


def release(documents: Documents, name: str, holder: str) -> None:
    """Give up the lease ``name`` when ``holder`` holds it (a replica that stops: another takes it at
    its next try rather than once the lease runs out). A store that cannot be reached now is left be:
    the lease then runs out by itself."""
    if documents.shared:
        with contextlib.suppress(ServiceUnavailable):
            documents.edit(f"leases/{name}", lambda current: {"holder": "", "until": 0.0}
                           if isinstance(current, dict) and current.get("holder") == holder else UNCHANGED)


def open_documents(spec: StoreSpec) -> ClickHouseDocuments:
    """The shared documents of a ClickHouse store, without opening the store itself (what
    ``scorewatch app ...`` needs): a client, the database and the one table."""
    from scorewatch.store import clickhouse_sql as ddl
    from scorewatch.store.backends import clickhouse_connector
    from scorewatch.store.clickhouse import ClickHouseError, OperationalError, engine_message

    try:
        client = clickhouse_connector(spec)()
        client.command(f"CREATE DATABASE IF NOT EXISTS {ddl.quote(spec.database)}")
        client.database = spec.database
        for name, statement in ddl.STATE_DDL:
            if name == "scorewatch_documents":
                client.command(statement)
    except (OperationalError, OSError) as exc:
        raise ConfigError(f"cannot reach the store {spec.describe()}: {engine_message(exc)}") from None
    except ClickHouseError as exc:
        raise ConfigError(f"cannot use the store {spec.describe()}: {engine_message(exc)}") from None
    return ClickHouseDocuments(lambda: client)


def documents_for(workspace: Workspace, settings: Settings, store: Store | None = None) -> Documents:
    """Where the workspace's shared state lives: the shared store when the hub uses one (``store``,
    or the ``store`` setting, or the store the last hub of this workspace recorded in config.json),
    else the workspace's files."""
    if store is not None:
        client = getattr(store, "client", None)
        return ClickHouseDocuments(client) if store.shared and client is not None else FileDocuments(workspace.home)
    from scorewatch.store.backends import store_spec

    spec = store_spec(workspace, settings)
    return open_documents(spec) if spec.shared else FileDocuments(workspace.home)
