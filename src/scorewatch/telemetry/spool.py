"""The disk spool: telemetry batches waiting for an unreachable or overloaded receiver.

Each batch is one file in ``Workspace.spool_dir``, holding the exact gzip body to POST again. Names sort
by age (``<time_ns>-<pid>-<seq>-<items>.json.gz``) so the oldest is replayed, and dropped when the spool
is over ``max_bytes``, first. Several worker processes share one spool: a batch is claimed by renaming
it (atomic), so each is sent by exactly one of them; claims of processes that died are released when
a spool is opened.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from scorewatch.telemetry.metrics import ExporterStats

SUFFIX = ".json.gz"
CLAIM = ".claimed-"


@dataclass
class SpoolEntry:
    path: Path
    items: int

    def read(self) -> bytes:
        return self.path.read_bytes()


class Spool:
    """A bounded directory of gzip batches; oldest dropped first and counted as ``spool_full``."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, stats: ExporterStats) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.stats = stats
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._release_dead_claims()

    def put(self, body: bytes, items: int) -> bool:
        """Write one batch; False (and counted as dropped) if it alone exceeds the bound."""
        if len(body) > self.max_bytes:
            self.stats.drop("spool_full", items)
            return False
        with self._lock:
            self._make_room(len(body))
            name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq)}-{items}{SUFFIX}"
            tmp = self.directory / ("." + name + ".tmp")
            with open(tmp, "wb") as fh:
                fh.write(body)
            os.replace(tmp, self.directory / name)
        self.stats.add("spooled", items)
        return True

    def claim_oldest(self) -> SpoolEntry | None:
        """Take the oldest unclaimed batch for sending, or None when the spool is empty."""
        for path in self._batches():
            claimed = path.with_name(path.name + CLAIM + str(os.getpid()))
            try:
                os.rename(path, claimed)
            except FileNotFoundError:
                continue  # another worker process took it
            return SpoolEntry(claimed, _items_of(path.name))
        return None

    def done(self, entry: SpoolEntry) -> None:
        """The batch was delivered (or finally rejected): remove it."""
        entry.path.unlink(missing_ok=True)

    def release(self, entry: SpoolEntry) -> None:
        """Sending failed: put the batch back for a later attempt."""
        original = entry.path.with_name(entry.path.name.split(CLAIM)[0])
        with contextlib.suppress(FileNotFoundError):
            os.rename(entry.path, original)

    def pending(self) -> tuple[int, int]:
        """(batches, bytes) waiting, claimed ones included."""
        count = size = 0
        for path in self.directory.iterdir():
            if SUFFIX in path.name and not path.name.startswith("."):
                count += 1
                size += _size(path)
        return count, size

    def is_empty(self) -> bool:
        return not any(self._batches())

    def _batches(self) -> list[Path]:
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith(SUFFIX) and not n.startswith("."))
        except FileNotFoundError:
            return []
        return [self.directory / n for n in names]

    def _make_room(self, incoming: int) -> None:
        batches = self._batches()
        total = sum(_size(p) for p in batches)
        for path in batches:
            if total + incoming <= self.max_bytes:
                break
            size = _size(path)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            total -= size
            self.stats.drop("spool_full", _items_of(path.name))

    def _release_dead_claims(self) -> None:
        for path in self.directory.iterdir():
            name = path.name
            if CLAIM not in name:
                continue
            pid = name.rsplit(CLAIM, 1)[1]
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(path, path.with_name(name.split(CLAIM)[0]))


def _items_of(name: str) -> int:
    try:
        return int(name.split(CLAIM)[0].removesuffix(SUFFIX).rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
