"""The quarantine: accepted items the store refused, kept instead of deleted.

A 200 from ingest promises the items are kept. When the store still refuses some (a case the
admission checks did not foresee), the hub's writer moves them here, in the workspace, before it
records their write-ahead-log record as applied: ``<home>/quarantine/<seq>-<first item>.ndjson``
(directory 0700, files 0600). Each file is a JSON header line (``seq``, ``first_item``, ``items``,
``error``, ``time``, ``apps``: instrumentation key → [appId, name]) and then the items' envelopes,
one per line, exactly as they were accepted. Names are deterministic, so a record quarantined again
after a crash overwrites its own file.

``scorewatch quarantine list|replay|drop`` (:mod:`scorewatch.ingest.cli`) shows them, sends them to
the hub again (``POST /v2/track``; an envelope carries its instrumentation key) or deletes them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from scorewatch.errors import NotFound
from scorewatch.ingest.records import Record
from scorewatch.workspace import Workspace


def quarantine_dir(workspace: Workspace) -> Path:
    return workspace.home / "quarantine"


@dataclass
class Entry:
    """One quarantine file: its name (the id the CLI takes) and its header."""

    name: str
    seq: int
    first_item: int
    items: int
    error: str
    time: str
    apps: dict[str, list[str]]

    def public(self) -> dict[str, Any]:
        return {"id": self.name, "seq": self.seq, "first_item": self.first_item, "items": self.items,
                "error": self.error, "time": self.time, "apps": sorted(name for _, name in self.apps.values())}


class Quarantine:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)

    def put(self, record: Record, first_item: int, error: str) -> str:
        """Keep ``record``'s items durably (written, synced, renamed, directory synced); returns the id."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{record.seq:020d}-{first_item:09d}"
        apps = {ikey: [app_id, app_name] for ikey, app_id, app_name
                in zip(record.ikeys, record.app_ids, record.app_names, strict=True)}
        header = {"seq": record.seq, "first_item": first_item, "items": record.count, "error": error,
                  "time": datetime.now(UTC).isoformat(), "apps": apps}
        tmp = self.dir / f".{name}.tmp"
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            fh.write(orjson.dumps(header) + b"\n")
            for line in record.lines():
                fh.write(line + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.dir / f"{name}.ndjson")
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return name

    def entries(self) -> list[Entry]:
        """Every quarantined part, oldest record first."""
        out = []
        for path in sorted(self.dir.glob("*.ndjson")):
            with open(path, "rb") as fh:
                head = orjson.loads(fh.readline())
            out.append(Entry(path.stem, head["seq"], head["first_item"], head["items"], head["error"],
                             head["time"], head["apps"]))
        return out

    def items(self, name: str) -> list[bytes]:
        """The envelopes of entry ``name``, as accepted."""
        return self._path(name).read_bytes().split(b"\n")[1:-1]

    def drop(self, name: str) -> None:
        self._path(name).unlink()

    def keep_only(self, name: str, indexes: list[int]) -> None:
        """Keep only the items at ``indexes`` of entry ``name`` (after a replay took the others)."""
        path = self._path(name)
        head, *items = path.read_bytes().split(b"\n")[:-1]
        header = orjson.loads(head)
        header["items"] = len(indexes)
        tmp = self.dir / f".{name}.tmp"
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            fh.write(b"\n".join([orjson.dumps(header), *(items[i] for i in indexes)]) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def _path(self, name: str) -> Path:
        path = self.dir / f"{name}.ndjson"
        if "/" in name or not path.is_file():
            raise NotFound(f"no quarantined items with id {name!r} (see `scorewatch quarantine list`)")
        return path
