"""Where the control plane keeps its records: deployments, registered models, compute targets.

Each kind is behind the same small interface, :class:`RecordStore` (``load``/``save``/``list``/
``delete``), so a shared backend can replace the files. Here each record is a JSON file in the
workspace (mode 0600, replaced atomically); the hub is their only writer.

    deployments/<service>/deployment.json   a Deployment (spec and status)
    models/<name>/<version>.json            a ModelRecord; its files are in models/<name>/<version>/
    computes/<name>.json                    a ComputeRecord
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import orjson

from scorewatch.deploy.records import ComputeRecord, Deployment, ModelRecord, Record
from scorewatch.errors import ConfigError
from scorewatch.files import read_json, write_atomic
from scorewatch.workspace import Workspace

log = logging.getLogger("scorewatch.deploy")
R = TypeVar("R", bound=Record)


class RecordStore(Protocol[R]):  # type: ignore[misc]
    def load(self, key: str) -> R | None: ...
    def save(self, key: str, record: R) -> None: ...
    def list(self) -> list[R]: ...
    def delete(self, key: str) -> None: ...


class JsonFiles(Generic[R]):
    """Records of one kind, one JSON file each: ``path(key)`` names the file, ``pattern`` finds them all."""

    def __init__(self, kind: type[R], root: Path, path: Callable[[str], Path], pattern: str) -> None:
        self.kind, self.root, self._path, self.pattern = kind, root, path, pattern
        self._refused: set[str] = set()

    def load(self, key: str) -> R | None:
        return self._read(self._path(key))

    def save(self, key: str, record: R) -> None:
        path = self._path(key)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path, orjson.dumps(record.to_dict(), option=orjson.OPT_INDENT_2), durable=False)

    def list(self) -> list[R]:
        """Every record; one that cannot be read is left out, and said once (the rest go on working)."""
        records = []
        for path in sorted(self.root.glob(self.pattern)):
            try:
                record = self._read(path)
            except ConfigError as exc:
                if str(path) not in self._refused:
                    self._refused.add(str(path))
                    log.error("%s; it is left out until it is mended or removed", exc)
                continue
            if record is not None:
                records.append(record)
        return records

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def _read(self, path: Path) -> R | None:
        data = read_json(path, None)
        if data is None:
            return None
        try:
            return self.kind.from_dict(data)
        except Exception as exc:
            raise ConfigError(f"{path} is not a valid {self.kind.__name__} record: {exc}") from None


def deployments(workspace: Workspace) -> JsonFiles[Deployment]:
    root = deployments_dir(workspace)
    return JsonFiles(Deployment, root, lambda name: root / name / "deployment.json", "*/deployment.json")


def models(workspace: Workspace) -> JsonFiles[ModelRecord]:
    """Keys are ``name:version``."""
    root = workspace.models_dir

    def path(key: str) -> Path:
        name, _, version = key.rpartition(":")
        return root / name / f"{version}.json"

    return JsonFiles(ModelRecord, root, path, "*/*.json")


def computes(workspace: Workspace) -> JsonFiles[ComputeRecord]:
    root = workspace.home / "computes"
    return JsonFiles(ComputeRecord, root, lambda name: root / f"{name}.json", "*.json")


def deployments_dir(workspace: Workspace) -> Path:
    return workspace.home / "deployments"


def service_dir(workspace: Workspace, name: str) -> Path:
    """Everything the hub keeps for one service: its record, its keys, its consoles, its app snapshots."""
    return deployments_dir(workspace) / name


def private_file(path: Path, data: bytes) -> None:
    """Write ``path`` (mode 0600) atomically: keys."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, data, mode=0o600, durable=False)
    os.chmod(path, 0o600)
