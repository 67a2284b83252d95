"""Small JSON files of the workspace: read with a clear error, replaced atomically, edited under a lock.

The CLI edits them whether or not the hub runs (``apps.json``, ``exports.json``), and the hub re-reads
them when they change, so a writer takes an exclusive ``flock`` on ``<file>.lock`` and replaces the
file in one ``rename``: a reader sees the old content or the new, never half of it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from scorewatch.errors import ConfigError


def read_json(path: Path, default: Any) -> Any:
    """The JSON held in ``path``; ``default`` when there is no such file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return default
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` in one rename (through ``<name>.tmp``, created with ``mode``).

    ``durable`` fsyncs the data and the directory entry, so the new content survives a crash of the
    machine, not only of the process.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def file_stamp(path: Path) -> tuple[int, int]:
    """A file's modification time and size ((0, 0) when there is none): it changes when the file does."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a ``<name>.lock`` file beside it) while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
