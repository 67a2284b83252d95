"""The hub's write-ahead log: what makes a 200 from ingest mean "durable".

Accepted items are appended here and synced to the disk (``fdatasync``) *before* the hub answers.
Records are numbered by a sequence that never goes back; the store records the last sequence it
applied in the same transaction as the rows (``DuckDBStore.write_envelopes(position=...)``). After a
crash the hub replays only the records after that position, so nothing is lost and nothing is stored
twice.

Files: ``<store>/wal/<first sequence, 20 digits>.wal`` (mode 0600). Each record is a 24-byte header,
``magic:u32 length:u32 seq:u64 payload_crc32:u32 header_crc32:u32``, then ``length`` payload bytes.
The magic and the header's own checksum mean that neither a zero-filled tail (what some filesystems
leave after a power loss) nor a torn write reads as a record. Reading:

- a torn or zero-filled tail of the last segment (a crash mid-write, never answered 200) is cut off
  on open, with a warning;
- anything else that does not read as a record (a corrupt region, a record whose sequence does not
  follow the one before) is skipped up to the next record that reads whole, logged as an error and
  counted (:attr:`WriteAheadLog.corruptions`, on ``/metrics``): never a silent cut;
- a failed append (a full disk) is truncated back to the last good record before it is reported, so
  no partial record sits in front of later ones.

Segments whose records are all applied are deleted by :meth:`release`. Segments from before the
header had a magic (``*.log``: ``length:u32 crc32:u32 seq:u64``) are still replayed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger("scorewatch.hub")

MAGIC = 0x53574C31  # "SWL1"
_HEAD = struct.Struct("<IIQI")  # magic, length, seq, payload crc; then the crc of these 20 bytes
_HEADER_SIZE = _HEAD.size + 4
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LEGACY = struct.Struct("<IIQ")  # length, crc32, seq (segments named *.log)
SEGMENT_BYTES = 64 * 1024 * 1024
SUFFIX = ".wal"


def _header(payload: bytes, seq: int) -> bytes:
    head = _HEAD.pack(MAGIC, len(payload), seq, zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head))


@dataclass
class _Scan:
    """What reading one segment found: its records, where the last one ends, and what was wrong."""

    records: list[tuple[int, bytes]]
    good_end: int
    problems: list[str]
    torn_tail: int  # bytes after the last record that hold no record (zeros or a torn write)


class WriteAheadLog:
    """Append, replay and release; ``sync`` is what makes appended bytes durable (``os.fdatasync``,
    injectable so a test can see the order write → sync → answer)."""

    def __init__(self, directory: str | os.PathLike[str], *, segment_bytes: int = SEGMENT_BYTES,
                 sync: Callable[[int], None] = os.fdatasync) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._sync = sync
        self.last_seq = 0
        self.corruptions = 0  # corrupt regions found (each logged as an error)
        segments = self._segments()
        for i, (first, path) in enumerate(segments):
            last = self._check(path, after=self.last_seq, last_segment=(i == len(segments) - 1))
            self.last_seq = max(self.last_seq, last if last else first - 1)
        self._file: BinaryIO | None = None
        self._size = 0

    def _segments(self) -> list[tuple[int, Path]]:
        found = []
        for path in (*self.dir.glob("*.log"), *self.dir.glob("*" + SUFFIX)):
            try:
                found.append((int(path.stem), path))
            except ValueError:
                continue
        return sorted(found)

    def _check(self, path: Path, *, after: int, last_segment: bool) -> int:
        """Read ``path`` on open: report what is wrong, cut a torn tail of the last segment; returns
        the last good sequence in it (0 if none)."""
        scan = _read(path, after)
        for problem in scan.problems:
            self.corruptions += 1
            log.error("write-ahead log %s: %s", path.name, problem)
        if scan.torn_tail:
            if last_segment and path.suffix == SUFFIX:
                log.warning("write-ahead log %s: cut %d bytes of an unfinished record at the end (a crash "
                            "while it was written; it was never acknowledged)", path.name, scan.torn_tail)
                with open(path, "r+b") as fh:
                    fh.truncate(scan.good_end)
                    os.fsync(fh.fileno())
            else:
                self.corruptions += 1
                log.error("write-ahead log %s: %d bytes at its end hold no record (kept in the file)",
                          path.name, scan.torn_tail)
        return scan.records[-1][0] if scan.records else 0

    def follow(self, position: int) -> None:
        """Never hand out a sequence at or below ``position`` (the store's applied position), even
        when the segments that held it are gone."""
        self.last_seq = max(self.last_seq, position)

    # -- appending (one thread: the hub's WAL writer) ------------------------------------------------

    def append(self, payloads: list[bytes]) -> list[int]:
        """Write ``payloads`` as records and sync once (group commit); returns their sequences.

        On failure (a full disk) the segment is cut back to where it was and the sequences are not
        used: the next append starts from the last good record.
        """
        if self._file is None or self._size >= self.segment_bytes:
            self._open_segment()
        assert self._file is not None
        seqs = list(range(self.last_seq + 1, self.last_seq + 1 + len(payloads)))
        parts = []
        for seq, payload in zip(seqs, payloads, strict=True):
            parts.append(_header(payload, seq))
            parts.append(payload)
        data = b"".join(parts)
        try:
            self._file.write(data)
            self._file.flush()
            self._sync(self._file.fileno())
        except BaseException:
            self._cut_back()
            raise
        self._size += len(data)
        self.last_seq = seqs[-1]
        return seqs

    def _cut_back(self) -> None:
        """Drop what a failed append left in the segment (buffered or written)."""
        file, self._file = self._file, None
        assert file is not None
        with contextlib.suppress(OSError):
            file.close()  # flushing again may fail too; the truncate below decides
        try:
            fd = os.open(self._segment_path(), os.O_WRONLY)
            try:
                os.ftruncate(fd, self._size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:  # the partial record stays; reading skips it and reports it
            log.error("write-ahead log: could not cut a failed append back: %s", exc)

    def _segment_path(self) -> Path:
        return self.dir / f"{self._first:020d}{SUFFIX}"

    def _open_segment(self) -> None:
        if self._file is not None:
            self._file.close()
        self._first = self.last_seq + 1
        path = self._segment_path()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "ab")
        self._size = os.fstat(fd).st_size
        # The new file's directory entry must be durable too, or a crash could lose the whole segment.
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- replay and release ---------------------------------------------------------------------------

    def replay(self, after: int) -> Iterator[tuple[int, bytes]]:
        """Every record with a sequence greater than ``after``, in order (problems were reported
        when the log was opened)."""
        last = 0
        for _first, path in self._segments():
            for seq, payload in _read(path, last).records:
                last = seq
                if seq > after:
                    yield seq, payload

    def release(self, applied: int) -> int:
        """Delete segments whose records are all at or below ``applied``; returns how many went.

        The segment being appended to is never deleted (see :meth:`rotate_if_applied`).
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


def _read(path: Path, after: int) -> _Scan:
    """The records of one segment whose sequences follow ``after`` and each other."""
    with open(path, "rb") as fh:
        data = fh.read()
    if path.suffix != SUFFIX:
        return _read_legacy(data)
    records: list[tuple[int, bytes]] = []
    problems: list[str] = []
    pos = good_end = 0
    last = after
    while pos < len(data):
        record = _record_at(data, pos)
        if record is not None:
            seq, payload, end = record
            if seq <= last:
                problems.append(f"record {seq} at byte {pos} does not follow record {last}; skipped")
            else:
                records.append((seq, payload))
                last = seq
            pos = good_end = end
            continue
        following = _next_record(data, pos + 1)
        if following is None:  # nothing reads as a record up to the end
            break
        problems.append(f"bytes {pos}-{following} do not read as records (corrupt); skipped to the "
                        f"record at byte {following}")
        pos = following
    return _Scan(records, good_end, problems, len(data) - good_end)


def _record_at(data: bytes, pos: int) -> tuple[int, bytes, int] | None:
    """(seq, payload, end) of a whole record at ``pos``, or None."""
    if pos + _HEADER_SIZE > len(data) or data[pos:pos + 4] != _MAGIC_BYTES:
        return None
    head = data[pos:pos + _HEAD.size]
    if zlib.crc32(head) != struct.unpack_from("<I", data, pos + _HEAD.size)[0]:
        return None
    _magic, length, seq, crc = _HEAD.unpack(head)
    start = pos + _HEADER_SIZE
    end = start + length
    if end > len(data) or zlib.crc32(data[start:end]) != crc:
        return None
    return seq, data[start:end], end


def _next_record(data: bytes, pos: int) -> int | None:
    """Where the next whole record starts at or after ``pos``."""
    while (pos := data.find(_MAGIC_BYTES, pos)) >= 0:
        if _record_at(data, pos) is not None:
            return pos
        pos += 1
    return None


def _read_legacy(data: bytes) -> _Scan:
    records = []
    pos = 0
    while pos + _LEGACY.size <= len(data):
        length, crc, seq = _LEGACY.unpack_from(data, pos)
        start, end = pos + _LEGACY.size, pos + _LEGACY.size + length
        if end > len(data) or zlib.crc32(data[start:end]) != crc or (length == 0 and crc == 0):
            break
        records.append((seq, data[start:end]))
        pos = end
    return _Scan(records, pos, [], 0)
