"""BatchProcessor: bounds, flushing, shutdown leftovers, and surviving fork."""

from __future__ import annotations

import os

import orjson

from scorewatch.telemetry.exporter import AppInsightsExporter, InMemoryExporter
from scorewatch.telemetry.metrics import ExporterStats
from scorewatch.telemetry.processor import BatchProcessor
from scorewatch.telemetry.spool import Spool


def build(record):
    return [orjson.dumps({"n": record[2]})]


def test_batches_by_size_and_flushes_on_demand():
    exporter = InMemoryExporter()
    processor = BatchProcessor(exporter, build, batch_size=10, interval_s=60)
    try:
        for n in range(25):
            assert processor.emit(("x", 0, n))
        assert processor.force_flush(5)
        assert [i["n"] for i in exporter.items] == list(range(25))
        assert exporter.batches == 3
        assert processor.stats.counts["queued"] == 25 and processor.depth() == 0
    finally:
        processor.shutdown(5)


def test_large_payloads_are_bounded_by_bytes():
    exporter = InMemoryExporter()
    processor = BatchProcessor(exporter, build, max_queue_bytes=1000, interval_s=60)
    try:
        assert processor.emit(("x", 600, 1))
        assert not processor.emit(("x", 600, 2))
        assert processor.emit(("x", 0, 3))  # small records are bounded by count only
        assert processor.stats.dropped["queue_bytes"] == 1
        processor.force_flush(5)
        assert processor.emit(("x", 600, 4))  # the bytes are given back once sent
    finally:
        processor.shutdown(5)


def test_a_broken_record_is_counted_and_the_rest_goes_on():
    exporter = InMemoryExporter()

    def picky(record):
        if record[2] == 1:
            raise ValueError("cannot build")
        return build(record)

    processor = BatchProcessor(exporter, picky, interval_s=60)
    for n in range(3):
        processor.emit(("x", 0, n))
    processor.shutdown(5)
    assert [i["n"] for i in exporter.items] == [0, 2] and processor.stats.dropped["invalid"] == 1
    assert not processor.emit(("x", 0, 9)) and processor.stats.dropped["shutdown"] == 1


def test_shutdown_spools_what_an_unreachable_receiver_did_not_take(tmp_path):
    stats = ExporterStats()
    spool = Spool(tmp_path / "spool", 10_000_000, stats)
    exporter = AppInsightsExporter("http://127.0.0.1:9/v2.1/track", spool=spool, stats=stats)
    processor = BatchProcessor(exporter, build, stats=stats, interval_s=60)
    for n in range(7):
        processor.emit(("x", 0, n))
    processor.shutdown(5)
    assert stats.counts["spooled"] == 7 and spool.pending()[0] >= 1


def test_the_child_of_a_fork_gets_its_own_worker(tmp_path):
    exporter = InMemoryExporter()
    processor = BatchProcessor(exporter, build, interval_s=60)
    processor.emit(("x", 0, "parent"))
    result = tmp_path / "child.json"
    pid = os.fork()
    if pid == 0:  # child: the parent's queued record is not ours; new ones are sent by a new thread
        try:
            processor.emit(("x", 0, "child"))
            processor.force_flush(5)
            result.write_bytes(orjson.dumps([i["n"] for i in exporter.items]))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    processor.shutdown(5)
    assert orjson.loads(result.read_bytes()) == ["child"]
    assert [i["n"] for i in exporter.items] == ["parent"]
