"""The ingest pipeline when the store or the disk fails: acknowledged items are stored or quarantined,
never dropped; a store that cannot write for now pauses ingest (503) instead of losing anything; the
log is synced before a request is answered."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from scorewatch.apps import Application
from scorewatch.errors import ServiceUnavailable
from scorewatch.ingest.metrics import IngestMetrics
from scorewatch.ingest.pipeline import Ingestor
from scorewatch.ingest.quarantine import Quarantine
from scorewatch.ingest.track import Accepted
from scorewatch.ingest.wal import WriteAheadLog
from scorewatch.store.base import Store
from scorewatch.store.clickhouse import ClickHouseStore
from scorewatch.store.duckdb import DuckDBStore
from tests.backends import chdb_store

APP = Application("a", "id-a", "key-a", 90)


def _line(message: str) -> bytes:
    return orjson.dumps({"iKey": "key-a", "time": "2026-01-01T00:00:00Z",
                         "data": {"baseType": "MessageData", "baseData": {"message": message}}})


def _accepted(lines: list[bytes]) -> Accepted:
    return Accepted(lines=lines, base_types=["MessageData"] * len(lines), apps=[APP] * len(lines))


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[DuckDBStore, Quarantine, IngestMetrics]]:
    store = DuckDBStore(tmp_path / "t.duckdb")
    yield store, Quarantine(tmp_path / "quarantine"), IngestMetrics()
    store.close()


def _ingestor(tmp_path: Path, store: Store, quarantine: Quarantine, metrics: IngestMetrics,
              **options: object) -> Ingestor:
    settings: dict = {"queue_items": 10_000, "batch_items": 1000, "linger_s": 0.01, "retry_min_s": 0.02,
                      "retry_max_s": 0.05, **options}
    return Ingestor(store, WriteAheadLog(tmp_path / "wal"), metrics, quarantine, **settings)


def test_items_the_store_refuses_are_quarantined_and_the_rest_of_the_request_stored(
        tmp_path: Path, parts: tuple[DuckDBStore, Quarantine, IngestMetrics],
        caplog: pytest.LogCaptureFixture) -> None:
    """A record the store refuses (here: text a hub without today's admission checks logged) keeps
    its good items; the refused ones wait in the quarantine, with the store's real reason."""
    store, quarantine, metrics = parts
    ingestor = _ingestor(tmp_path, store, quarantine, metrics)
    ingestor.start()
    lines = [_line(f"m{i}") for i in range(10)]
    lines[3] = _line("bad-XX").replace(b"XX", b"\xff")
    lines[7] = _line("bad-YY").replace(b"YY", b"\xfe")
    try:
        with caplog.at_level(logging.ERROR, logger="scorewatch.hub"):
            asyncio.run(ingestor.submit(_accepted(lines)))
            asyncio.run(ingestor.submit(_accepted([_line("after")])))
            assert ingestor.flush(30)
    finally:
        ingestor.stop()
    stored = sorted(r[0] for r in store.query("SELECT message FROM traces").rows)
    assert stored == sorted([f"m{i}" for i in range(10) if i not in (3, 7)] + ["after"])
    entries = quarantine.entries()
    assert [(e.first_item, e.items) for e in entries] == [(3, 1), (7, 1)]
    assert quarantine.items(entries[0].name) == [lines[3]]
    assert "UTF-8" in entries[0].error
    assert metrics.quarantined == 2 and store.applied_position() == 2
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "UTF-8" in messages and "aborted" not in messages
    assert (tmp_path / "quarantine").stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (tmp_path / "quarantine").iterdir())


def test_a_store_that_cannot_write_for_now_pauses_ingest_and_loses_nothing(tmp_path: Path) -> None:
    """Out of memory (a store with 1 MB to work with): the writer keeps the batch, admission answers
    503 with a retry time until the store writes again, then everything is stored once."""
    store = DuckDBStore(tmp_path / "t.duckdb", memory_limit="1MB")
    metrics = IngestMetrics()
    ingestor = _ingestor(tmp_path, store, Quarantine(tmp_path / "quarantine"), metrics)
    ingestor.start()
    try:
        asyncio.run(ingestor.submit(_accepted([_line("m" * 150 + str(i)) for i in range(3000)])))
        assert not ingestor.flush(1.0)  # not written: the store has no memory
        assert ingestor.unavailable is not None and "Out of Memory" in ingestor.unavailable
        with pytest.raises(ServiceUnavailable) as refused:
            asyncio.run(ingestor.submit(_accepted([_line("more")])))
        assert refused.value.retry_after > 0 and refused.value.status == 503
        assert store.count("traces") == 0 and ingestor.applied == 0 and metrics.quarantined == 0
        store._con.execute("SET memory_limit = '512MB'")  # the pressure is gone
        assert ingestor.flush(30)
        assert ingestor.unavailable is None
        asyncio.run(ingestor.submit(_accepted([_line("more")])))
        assert ingestor.flush(30)
    finally:
        ingestor.stop()
        store.close()
    store = DuckDBStore(tmp_path / "t.duckdb")
    assert store.count("traces") == 3001 and store.applied_position() == 2
    store.close()


def test_the_log_is_synced_before_the_answer(tmp_path: Path,
                                             parts: tuple[DuckDBStore, Quarantine, IngestMetrics]) -> None:
    """The order that makes a 200 durable: record written, then synced, then the request answered."""
    store, quarantine, metrics = parts
    events: list[str] = []
    release = threading.Event()
    wal_dir = tmp_path / "wal"

    def sync(fd: int) -> None:
        size = sum(p.stat().st_size for p in wal_dir.glob("*.wal"))
        events.append(f"sync after {size} bytes written")
        assert release.wait(30)

    ingestor = Ingestor(store, WriteAheadLog(wal_dir, sync=sync), metrics, quarantine, queue_items=100)
    ingestor.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answered = pool.submit(asyncio.run, ingestor.submit(_accepted([_line("durable")])))
            with pytest.raises(concurrent.futures.TimeoutError):
                answered.result(timeout=0.5)  # the sync has not returned: no answer yet
            assert len(events) == 1 and not events[0].startswith("sync after 0 ")
            release.set()
            answered.result(timeout=30)
            events.append("answered")
        assert events[-1] == "answered" and events[0].startswith("sync after")
    finally:
        release.set()
        ingestor.stop()


def test_new_sequences_follow_the_store_even_when_the_log_is_gone(
        tmp_path: Path, parts: tuple[DuckDBStore, Quarantine, IngestMetrics]) -> None:
    store, quarantine, metrics = parts
    store.write_envelopes({}, position=500)  # the store applied up to 500; the log directory is new
    ingestor = _ingestor(tmp_path, store, quarantine, metrics)
    ingestor.start()
    try:
        asyncio.run(ingestor.submit(_accepted([_line("next")])))
        assert ingestor.flush(30)
    finally:
        ingestor.stop()
    assert store.applied_position() == 501 and store.count("traces") == 1


def test_a_batch_retried_after_the_store_went_away_half_way_is_stored_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ClickHouse (no transaction over a write) goes away after a batch's rows went in and before the
    batch is recorded as applied: the writer pauses ingest, writes the batch again once the store is
    back, and every item is stored once."""
    store = chdb_store("faults")
    real_save, failed = ClickHouseStore._save_state, []

    def gone_once(self: ClickHouseStore, *, pending: int, **positions: Any) -> None:
        if pending == 0 and not failed:  # the record that the batch is applied, after its rows
            failed.append(True)
            raise ConnectionRefusedError(111, "Connection refused")
        real_save(self, pending=pending, **positions)

    monkeypatch.setattr(ClickHouseStore, "_save_state", gone_once)
    metrics = IngestMetrics()
    ingestor = _ingestor(tmp_path, store, Quarantine(tmp_path / "quarantine"), metrics)
    ingestor.start()
    try:
        asyncio.run(ingestor.submit(_accepted([_line(f"m{i}") for i in range(100)])))
        assert ingestor.flush(30)
        asyncio.run(ingestor.submit(_accepted([_line("after")])))
        assert ingestor.flush(30)
    finally:
        ingestor.stop()
    assert failed and metrics.store_unavailable >= 1 and ingestor.unavailable is None
    assert store.count("traces") == 101 and store.applied_position() == 2
    assert store.query("SELECT count(DISTINCT message) FROM traces").rows == [[101]]
    store.close()
