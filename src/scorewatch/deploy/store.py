"""Where the control plane keeps its records: deployments, registered models, compute targets, and
services' keys.

Each is a document (:mod:`scorewatch.documents`), so they live where the workspace's other shared
state lives: with one hub, JSON files in the workspace (mode 0600, replaced atomically); with hub
replicas on a shared ClickHouse, that server, so every replica's control API reads and writes the same
records. Each kind of record is behind one small interface, :class:`Records`
(``load``/``save``/``edit``/``create``/``list``/``delete``). Keys (documents) and files::

    deployments/<service>/deployment   deployments/<service>/deployment.json   a Deployment (spec and status)
    deployments/<service>/keys         deployments/<service>/keys.json         its keys (key authentication)
    models/<name>/<version>            models/<name>/<version>.json            a ModelRecord
    computes/<name>                    computes/<name>.json                    a ComputeRecord

A registered model's files, a service's snapshots and consoles are files of the replica that made
them (``models/<name>/<version>/``, ``deployments/<service>/app/``, ``.../console/``), never documents.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson

from scorewatch.deploy.records import ComputeRecord, Deployment, ModelRecord, Record
from scorewatch.documents import UNCHANGED, Documents, FileDocuments
from scorewatch.errors import ConfigError
from scorewatch.files import write_atomic
from scorewatch.workspace import Workspace

log = logging.getLogger("scorewatch.deploy")
R = TypeVar("R", bound=Record)


class Records(Generic[R]):
    """Records of one kind, one document each: ``<prefix>/<path(key)>``; :meth:`list` finds those
    whose path matches ``pattern``."""

    def __init__(self, kind: type[R], documents: Documents, prefix: str, path: Callable[[str], str],
                 pattern: str) -> None:
        self.kind, self.documents, self.prefix, self._path, self.pattern = kind, documents, prefix, path, pattern
        self._refused: set[str] = set()

    def key(self, key: str) -> str:
        """The document holding the record ``key``."""
        return f"{self.prefix}/{self._path(key)}"

    def load(self, key: str) -> R | None:
        doc = self.key(key)
        return self._parse(doc, self.documents.read(doc))

    def save(self, key: str, record: R) -> None:
        self.documents.write(self.key(key), record.to_dict())

    def edit(self, key: str, change: Callable[[R | None], R | None]) -> R | None:
        """Change the record ``key`` from its current value (None: there is none) atomically, as
        :meth:`Documents.edit` does; ``change`` returns the record to write, or None to write nothing.
        Returns the record as it is then."""
        doc = self.key(key)

        def apply(value: Any) -> Any:
            record = change(self._parse(doc, value))
            return UNCHANGED if record is None else record.to_dict()

        return self._parse(doc, self.documents.edit(doc, apply))

    def create(self, key: str, record: R) -> bool:
        """Write ``record`` as ``key`` unless there is one already; True when this one was written."""
        created = False

        def create(current: R | None) -> R | None:
            nonlocal created
            created = current is None  # the last call is the one written (an edit may be tried again)
            return record if created else None

        self.edit(key, create)
        return created

    def list(self, pattern: str | None = None) -> list[R]:
        """Every record (``pattern``: those whose path matches it); one that cannot be read is left
        out, and said once (the rest go on working)."""
        records = []
        for doc, value in self.documents.values(self.prefix, pattern or self.pattern).items():
            try:
                record = self._parse(doc, value)
            except ConfigError as exc:
                if doc not in self._refused:
                    self._refused.add(doc)
                    log.error("%s; it is left out until it is mended or removed", exc)
                continue
            if record is not None:
                records.append(record)
        return records

    def delete(self, key: str) -> None:
        self.documents.delete(self.key(key))

    def _parse(self, doc: str, value: Any) -> R | None:
        if value is None:
            return None
        try:
            return self.kind.from_dict(value)
        except Exception as exc:
            where = self.documents.path(doc) if isinstance(self.documents, FileDocuments) else f"document {doc}"
            raise ConfigError(f"{where} is not a valid {self.kind.__name__} record: {exc}") from None


class ServiceKeys:
    """Services' keys (``{"primaryKey", "secondaryKey"}``), one document each. A service process reads
    its keys from a file (``deployments/<service>/keys.json``, mode 0600): with the workspace's files
    that file is the document; with a shared store the supervising hub writes it from the document
    before it starts the process (:meth:`materialize`). Keys are never logged."""

    def __init__(self, workspace: Workspace, documents: Documents) -> None:
        self.workspace, self.documents = workspace, documents

    def read(self, name: str) -> dict[str, str] | None:
        value = self.documents.read(_keys_key(name))
        return value if isinstance(value, dict) else None

    def write(self, name: str, keys: dict[str, str]) -> None:
        self.documents.write(_keys_key(name), keys)

    def delete(self, name: str) -> None:
        self.documents.delete(_keys_key(name))

    def materialize(self, name: str) -> None:
        """Make the service's keys file hold its keys (with the workspace's files it already does)."""
        if not self.documents.shared:
            return
        keys = self.read(name)
        path = keys_path(self.workspace, name)
        if keys is None:
            path.unlink(missing_ok=True)
        else:
            private_file(path, orjson.dumps(keys))


def _keys_key(name: str) -> str:
    return f"deployments/{name}/keys"


def _documents(workspace: Workspace, documents: Documents | None) -> Documents:
    return documents if documents is not None else FileDocuments(workspace.home)


def deployments(workspace: Workspace, documents: Documents | None = None) -> Records[Deployment]:
    """The deployments (``documents``: where the workspace's shared state is, default its files)."""
    return Records(Deployment, _documents(workspace, documents), "deployments", lambda name: f"{name}/deployment",
                   "*/deployment")


def models(workspace: Workspace, documents: Documents | None = None) -> Records[ModelRecord]:
    """Keys are ``name:version``."""

    def path(key: str) -> str:
        name, _, version = key.rpartition(":")
        return f"{name}/{version}"

    return Records(ModelRecord, _documents(workspace, documents), "models", path, "*/*")


def computes(workspace: Workspace, documents: Documents | None = None) -> Records[ComputeRecord]:
    return Records(ComputeRecord, _documents(workspace, documents), "computes", lambda name: name, "*")


def service_keys(workspace: Workspace, documents: Documents | None = None) -> ServiceKeys:
    return ServiceKeys(workspace, _documents(workspace, documents))


def deployments_dir(workspace: Workspace) -> Path:
    return workspace.home / "deployments"


def service_dir(workspace: Workspace, name: str) -> Path:
    """Everything the hub keeps for one service: its record, its keys, its consoles, its app snapshots."""
    return deployments_dir(workspace) / name


def keys_path(workspace: Workspace, name: str) -> Path:
    """The file a service process reads its keys from."""
    return service_dir(workspace, name) / "keys.json"


def private_file(path: Path, data: bytes) -> None:
    """Write ``path`` (mode 0600) atomically: keys."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, data, mode=0o600, durable=False)
    os.chmod(path, 0o600)
