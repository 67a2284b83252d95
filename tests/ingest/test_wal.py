"""The write-ahead log: append, replay after a position, torn tails, rotation and release."""

from __future__ import annotations

import errno
import logging
import os
import struct
import zlib
from pathlib import Path

import pytest

from scorewatch.apps import Application
from scorewatch.ingest.records import decode, encode
from scorewatch.ingest.track import Accepted
from scorewatch.ingest.wal import WriteAheadLog


def test_append_and_replay_after_a_position(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    assert wal.append([b"a", b"b"]) == [1, 2]
    assert wal.append([b"c"]) == [3]
    assert list(wal.replay(1)) == [(2, b"b"), (3, b"c")]
    wal.close()
    with WriteAheadLog(tmp_path) as reopened:
        assert reopened.last_seq == 3
        assert reopened.append([b"d"]) == [4]  # sequences never go back
        assert [seq for seq, _ in reopened.replay(0)] == [1, 2, 3, 4]


def test_torn_tail_is_cut_off(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.append([b"first", b"second"])
    wal.close()
    segment = next(tmp_path.glob("*.wal"))
    data = segment.read_bytes()
    segment.write_bytes(data[:-3])  # a crash in the middle of the last record
    with WriteAheadLog(tmp_path) as reopened:
        assert list(reopened.replay(0)) == [(1, b"first")]
        assert reopened.append([b"third"]) == [2]
        assert [p for _, p in reopened.replay(0)] == [b"first", b"third"]


def test_a_torn_last_record_is_cut_off(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.append([b"good", b"flipped"])
    wal.close()
    segment = next(tmp_path.glob("*.wal"))
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF
    segment.write_bytes(bytes(data))
    with WriteAheadLog(tmp_path) as reopened:
        assert list(reopened.replay(0)) == [(1, b"good")]
        assert reopened.append([b"next"]) == [2]


def test_a_zero_filled_tail_is_no_record_and_sequences_never_go_back(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.append([b"a", b"b", b"c"])
    wal.close()
    segment = next(tmp_path.glob("*.wal"))
    with open(segment, "ab") as fh:
        fh.write(bytes(4096))  # what some filesystems leave after a power loss
    with WriteAheadLog(tmp_path) as reopened:
        assert reopened.last_seq == 3
        assert reopened.append([b"d"]) == [4]
    with WriteAheadLog(tmp_path) as again:
        assert list(again.replay(0)) == [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d")]
        assert again.corruptions == 0


def test_corruption_in_the_middle_is_reported_and_skipped_not_cut(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.append([b"one" * 10, b"two" * 10, b"three" * 10])
    wal.close()
    segment = next(tmp_path.glob("*.wal"))
    data = bytearray(segment.read_bytes())
    data[data.index(b"two") + 5] ^= 0xFF  # bit rot inside the second record
    segment.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="scorewatch.hub"), WriteAheadLog(tmp_path) as reopened:
        assert [seq for seq, _ in reopened.replay(0)] == [1, 3]  # the third survives the second
        assert reopened.corruptions == 1
        assert reopened.append([b"four"]) == [4]
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    assert segment.stat().st_size == len(data)  # nothing was cut


def test_a_failed_append_is_cut_back_to_the_last_good_record(tmp_path: Path) -> None:
    failing = [OSError(errno.ENOSPC, "No space left on device")]

    def sync(fd: int) -> None:
        if failing:
            raise failing.pop()
        os.fdatasync(fd)

    wal = WriteAheadLog(tmp_path, sync=sync)
    failing.clear()
    assert wal.append([b"kept"]) == [1]
    size = next(tmp_path.glob("*.wal")).stat().st_size
    failing.append(OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError):
        wal.append([b"never acknowledged", b"nor this"])
    assert next(tmp_path.glob("*.wal")).stat().st_size == size
    assert wal.append([b"next"]) == [2]
    wal.close()
    with WriteAheadLog(tmp_path) as reopened:
        assert list(reopened.replay(0)) == [(1, b"kept"), (2, b"next")]
        assert reopened.corruptions == 0


def test_segments_of_the_previous_format_are_replayed(tmp_path: Path) -> None:
    legacy = struct.Struct("<IIQ")
    with open(tmp_path / f"{1:020d}.log", "wb") as fh:
        for seq, payload in ((1, b"old-1"), (2, b"old-2")):
            fh.write(legacy.pack(len(payload), zlib.crc32(payload), seq) + payload)
    with WriteAheadLog(tmp_path) as wal:
        assert wal.last_seq == 2
        assert wal.append([b"new"]) == [3]
        assert list(wal.replay(1)) == [(2, b"old-2"), (3, b"new")]


def test_segments_are_private(tmp_path: Path) -> None:
    with WriteAheadLog(tmp_path / "wal") as wal:
        wal.append([b"x"])
    assert (tmp_path / "wal").stat().st_mode & 0o777 == 0o700
    assert next((tmp_path / "wal").glob("*.wal")).stat().st_mode & 0o777 == 0o600


def test_release_deletes_applied_segments_only(tmp_path: Path) -> None:
    with WriteAheadLog(tmp_path, segment_bytes=100) as wal:
        for i in range(6):
            wal.append([bytes(80) + bytes([i])])  # every append fills a segment: one record per file
        assert len(list(tmp_path.glob("*.wal"))) == 6
        assert wal.release(3) == 3
        assert [seq for seq, _ in wal.replay(0)] == [4, 5, 6]
        wal.rotate_if_applied(6, min_bytes=0)
        wal.release(6)
        assert list(wal.replay(0)) == []
        assert wal.append([b"x"]) == [7]


def test_payload_round_trip(tmp_path: Path) -> None:
    alpha = Application("alpha", "id-a", "key-a", 90)
    beta = Application("beta", "id-b", "key-b", 90)
    accepted = Accepted(lines=[b'{"iKey":"key-a","data":{"baseType":"MessageData"}}',
                               b'{"iKey":"key-b","data":{"baseType":"EventData"}}'],
                        base_types=["MessageData", "EventData"], apps=[alpha, beta])
    record = decode(9, encode(accepted))
    assert record.seq == 9 and record.lines() == accepted.lines
    assert record.base_types == ["MessageData", "EventData"]
    assert (record.app_ids, record.app_names, record.ikeys) == (["id-a", "id-b"], ["alpha", "beta"],
                                                                ["key-a", "key-b"])


def test_track_body_round_trip_accepts_the_same_items() -> None:
    import gzip

    import orjson

    from scorewatch.ingest.track import parse_track

    alpha = Application("alpha", "id-a", "key-a", 90)
    items = [{"iKey": "key-a", "data": {"baseType": "MessageData", "baseData": {"message": "1"}}},
             {"iKey": "unknown", "data": {"baseType": "MessageData", "baseData": {"message": "2"}}},
             {"iKey": "key-a", "data": {"baseType": "Nope", "baseData": {}}},
             {"iKey": "key-a", "data": {"baseType": "EventData", "baseData": {"name": "4"}}}]
    body = gzip.compress(orjson.dumps(items))
    accepted = parse_track(gzip.decompress(body), {"key-a": alpha}.get)
    accepted.body, accepted.encoding = body, "gzip"
    record = decode(3, encode(accepted))
    assert record.lines() == [bytes(line) for line in accepted.lines] and record.count == 2
    assert record.base_types == ["MessageData", "EventData"] and record.app_ids == ["id-a", "id-a"]
