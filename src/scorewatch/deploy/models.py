"""Registered models: versioned copies in the workspace, as ``Model.register`` makes them in Azure.

Registering ``path`` as ``name`` copies it (a file, or a folder with everything in it) to
``models/<name>/<version>/<basename of path>`` and records it as ``models/<name>/<version>.json``;
the same name again is the next version. A service deployed with a model finds it where Azure's
container does (``azureml-models/<name>/<version>/...``, see :mod:`scorewatch.deploy.launch`), so
``Model.get_model_path(name)`` works in its ``score.py``. Stored versions are never changed.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from scorewatch.deploy import store
from scorewatch.deploy.records import ModelRecord, check_model_name
from scorewatch.documents import Documents
from scorewatch.errors import BadRequest, NotFound
from scorewatch.files import locked
from scorewatch.workspace import Workspace


def not_found(name: str, version: int | None = None) -> NotFound:
    """Azure's ``ModelNotFound`` error, word for word."""
    detail = f"name {name}" + (f", version {version}" if version else "")
    return NotFound(f"ModelNotFound: Model with {detail} not found in provided workspace", code="ModelNotFound")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ModelRegistry:
    """The registered models of a workspace: their records in ``documents`` (see
    :mod:`scorewatch.deploy.store`), their files in this hub's workspace."""

    def __init__(self, workspace: Workspace, documents: Documents | None = None) -> None:
        self.workspace = workspace
        self.records = store.models(workspace, documents)
        self._lock = threading.Lock()

    def register(self, model_path: str, name: str, *, tags: dict[str, str] | None = None,
                 properties: dict[str, str] | None = None, description: str = "") -> ModelRecord:
        """Copy ``model_path`` in as the next version of ``name`` (the version is claimed in the
        records, so registrations through several hub replicas at once get a version each)."""
        check_model_name(name)
        source = Path(model_path)
        if not source.is_absolute():
            raise BadRequest(f"model_path must be an absolute path, not {model_path!r}", details={"field": "model_path"})
        if not source.exists():
            raise BadRequest(f'Error, provided model path "{model_path}" cannot be found',
                             details={"field": "model_path"})
        folder = self.workspace.models_dir / name
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._lock, locked(folder / "versions"):
            partial = folder / ".partial"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(mode=0o700)
            if source.is_dir():
                shutil.copytree(source, partial / source.name, symlinks=False)
            else:
                shutil.copy2(source, partial / source.name)
            sha256 = digest(partial / source.name)
            while True:
                version = max(self.versions(name), default=0) + 1
                stored = folder / str(version)
                shutil.rmtree(stored, ignore_errors=True)  # left by a registration that did not finish
                partial.rename(stored)
                record = ModelRecord(name=name, version=version, path=str(stored / source.name), source=str(source),
                                     sha256=sha256, tags=dict(tags or {}), properties=dict(properties or {}),
                                     description=description or "", created_time=now())
                if self.records.create(record.id, record):
                    return record
                stored.rename(partial)  # another replica took this version meanwhile: the next one

    def versions(self, name: str) -> list[int]:
        return sorted(m.version for m in self.records.list(f"{name}/*") if m.name == name)

    def get(self, name: str, version: int | None = None) -> ModelRecord:
        """The model ``name`` at ``version`` (default: its latest)."""
        check_model_name(name)
        if version is None:
            versions = self.versions(name)
            if not versions:
                raise not_found(name)
            version = versions[-1]
        record = self.records.load(f"{name}:{version}")
        if record is None:
            raise not_found(name, version)
        return record

    def list(self, name: str | None = None, *, tags: Iterable[str | list[str]] = (),
             properties: Iterable[str | list[str]] = (), latest: bool = False) -> list[ModelRecord]:
        """Registered models, newest first, filtered as ``Model.list`` filters (a tag by key, or by
        ``[key, value]``); ``latest``: the latest version of each name only."""
        found = [m for m in self.records.list() if (name is None or m.name == name)
                 and matches(m.tags, tags) and matches(m.properties, properties)]
        found.sort(key=lambda m: (m.created_time, m.version), reverse=True)
        if latest:
            seen: set[str] = set()
            found = [m for m in found if not (m.name in seen or seen.add(m.name))]  # type: ignore[func-returns-value]
        return found

    def delete(self, name: str, version: int) -> None:
        record = self.get(name, version)
        with self._lock:
            self.records.delete(record.id)
            shutil.rmtree(self.workspace.models_dir / name / str(version), ignore_errors=True)


def matches(values: dict[str, str], wanted: Iterable[str | list[str]]) -> bool:
    """Whether ``values`` (tags, properties) has each of ``wanted``: a key, or a ``[key, value]`` pair."""
    return all(values.get(w[0]) == w[1] if isinstance(w, list | tuple) else w in values for w in wanted)


def digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative names and bytes, in name order)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:
            h.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):  # noqa: B023 - read here
                h.update(chunk)
    return h.hexdigest()
