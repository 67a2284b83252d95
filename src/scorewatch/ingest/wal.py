"""The hub's write-ahead log: what makes a 200 from ingest mean "durable".

Accepted items are appended here and fsynced *before* the hub answers. Records are numbered by a
sequence that never goes back; the store records the last sequence it applied in the same transaction
as the rows (``DuckDBStore.write_envelopes(position=...)``). After a crash the hub replays only the
records after that position, so nothing is lost and nothing is stored twice.

Files: ``<store>/wal/<first sequence, 20 digits>.log``; each record is
``length:u32 crc32:u32 seq:u64`` then ``length`` payload bytes. A torn record at the end of the last
file (a crash mid-write, never answered 200) is cut off on open. Segments whose records are all applied
are deleted by :meth:`release`.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_HEADER = struct.Struct("<IIQ")
SEGMENT_BYTES = 64 * 1024 * 1024


class WriteAheadLog:
    def __init__(self, directory: str | os.PathLike[str], *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.last_seq = 0
        segments = self._segments()
        for i, (first, path) in enumerate(segments):
            last = self._scan(path, repair=(i == len(segments) - 1))
            self.last_seq = max(self.last_seq, last if last else first - 1)
        self._file: BinaryIO | None = None
        self._size = 0

    def _segments(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.dir.glob("*.log"):
            try:
                found.append((int(path.stem), path))
            except ValueError:
                continue
        return sorted(found)

    def _scan(self, path: Path, *, repair: bool) -> int:
        """The last good sequence in ``path`` (0 if none); truncate a torn tail when ``repair``."""
        last, good = 0, 0
        for seq, _payload, end in self._records(path):
            last, good = seq, end
        if repair and path.stat().st_size != good:
            with open(path, "r+b") as fh:
                fh.truncate(good)
                os.fsync(fh.fileno())
        return last

    @staticmethod
    def _records(path: Path) -> Iterator[tuple[int, bytes, int]]:
        with open(path, "rb") as fh:
            data = fh.read()
        pos = 0
        while pos + _HEADER.size <= len(data):
            length, crc, seq = _HEADER.unpack_from(data, pos)
            start, end = pos + _HEADER.size, pos + _HEADER.size + length
            if end > len(data) or zlib.crc32(data[start:end]) != crc:
                return
            yield seq, data[start:end], end
            pos = end

    # -- appending (one thread: the hub's WAL writer) ------------------------------------------------

    def append(self, payloads: list[bytes]) -> list[int]:
        """Write ``payloads`` as records and fsync once (group commit); returns their sequences."""
        if self._file is None or self._size >= self.segment_bytes:
            self._open_segment()
        assert self._file is not None
        seqs, parts = [], []
        for payload in payloads:
            self.last_seq += 1
            seqs.append(self.last_seq)
            parts.append(_HEADER.pack(len(payload), zlib.crc32(payload), self.last_seq))
            parts.append(payload)
        data = b"".join(parts)
        self._file.write(data)
        self._file.flush()
        os.fdatasync(self._file.fileno())
        self._size += len(data)
        return seqs

    def _open_segment(self) -> None:
        if self._file is not None:
            self._file.close()
        path = self.dir / f"{self.last_seq + 1:020d}.log"
        self._file = open(path, "ab")  # noqa: SIM115 - kept open across appends, closed in close()
        self._size = self._file.tell()
        # The new file's directory entry must be durable too, or a crash could lose the whole segment.
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- replay and release ---------------------------------------------------------------------------

    def replay(self, after: int) -> Iterator[tuple[int, bytes]]:
        """Every record with a sequence greater than ``after``, in order."""
        for _first, path in self._segments():
            for seq, payload, _end in self._records(path):
                if seq > after:
                    yield seq, payload

    def release(self, applied: int) -> int:
        """Delete segments whose records are all at or below ``applied``; returns how many went.

        The segment being appended to is rotated first when it is fully applied and big enough to
        be worth it (call from the appending thread, or while appends are paused).
        """
        segments = self._segments()
        removed = 0
        for (_first, path), (next_first, _next) in zip(segments, segments[1:], strict=False):
            if next_first - 1 <= applied:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def rotate_if_applied(self, applied: int, *, min_bytes: int = 8 * 1024 * 1024) -> None:
        """Start a new segment when everything written so far is applied (so release can drop it)."""
        if self._file is not None and applied >= self.last_seq and self._size >= min_bytes:
            self._open_segment()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
