"""Ingest goes first: an export reads its rows in a pause of the store's writes (a read beside a
DuckDB write makes the write dearer), and reads beside them only once it is ``export_max_lag_s``
behind. bench/export.py measures what this is for: ingest's rate with a rule against without one.

Where a test needs the store busy for a set time, another thread holds the writes back
(``between_writes`` held open): to the export that is a writer that never pauses, and unlike a real
write loop it stays so on a loaded machine. A real flood of writes shows what "busy" means.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from scorewatch.documents import FileDocuments
from scorewatch.export.exporter import Exporter
from scorewatch.export.rules import Rule, RuleBook
from scorewatch.export.service import ExportService
from scorewatch.export.targets import Target
from scorewatch.settings import Settings
from scorewatch.store.duckdb import DuckDBStore
from tests.export import telemetry
from tests.export.telemetry import APP_ID, APP_NAME, IKEY
from tests.export.test_exporter import exported_ids, stored_ids
from tests.helpers import wait_until

TABLES = ["requests", "traces"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    store = DuckDBStore(tmp_path / "telemetry.duckdb")
    telemetry.write(store, telemetry.envelopes() * 2 + telemetry.messages(30))
    yield store
    store.close()


@contextmanager
def in_thread(work: Callable[[threading.Event], object]) -> Iterator[None]:
    """``work(done)`` running in another thread while the block runs; ``done`` is set when it ends."""
    done = threading.Event()
    thread = threading.Thread(target=work, args=(done,))
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(30)


@contextmanager
def writes_held(store: DuckDBStore) -> Iterator[None]:
    """The store's writes held back from another thread until the block ends: to the export, the
    store is busy writing all that time."""
    held = threading.Event()

    def hold(done: threading.Event) -> None:
        with store.between_writes(5) as between:
            assert between
            held.set()
            done.wait(60)

    with in_thread(hold):
        assert held.wait(10)
        yield


def rule(tmp_path: Path) -> Rule:
    return Rule(name="r", app=APP_NAME, app_id=APP_ID, ikey=IKEY, url=f"file://{tmp_path / 'out'}",
                format="parquet", tables=TABLES, start="beginning")


def test_a_block_between_writes_holds_the_writes_back(store: DuckDBStore) -> None:
    before = store.row_position()
    with store.between_writes(5) as between:
        assert between
        writer = threading.Thread(target=telemetry.write, args=(store, telemetry.messages(3)))
        writer.start()
        writer.join(0.3)
        assert writer.is_alive() and store.row_position() == before  # the write waits for the block
    writer.join(10)
    assert store.row_position() == before + 3


@contextmanager
def flood(store: DuckDBStore) -> Iterator[None]:
    """Ingest in a flood: batch after batch written from another thread until the block ends."""
    lines = [orjson.dumps(m).decode() for m in telemetry.messages(2000)]
    batch = {"traces": pa.table({"env": lines, "appId": [APP_ID] * len(lines), "appName": [APP_NAME] * len(lines),
                                 "iKey": [IKEY] * len(lines)})}

    def write(done: threading.Event) -> None:
        while not done.is_set():
            store.write_envelopes(batch)

    with in_thread(write):
        yield


def test_a_block_waits_while_the_writes_keep_the_store_busy(store: DuckDBStore) -> None:
    with flood(store):
        time.sleep(1.2)  # a second of writes: the store is busy
        started = time.monotonic()
        with store.between_writes(0.5) as between:
            assert not between  # the block runs beside the writes, after waiting the whole timeout
        assert time.monotonic() - started >= 0.5
    with store.between_writes(10) as between:
        assert between  # the flood is over: within about a second the store has time again
    with writes_held(store), store.between_writes(0.3) as between:
        assert not between  # a write (here: another block) in progress all the time


def test_a_round_without_a_pause_writes_nothing_and_one_without_patience_reads_beside(
        store: DuckDBStore, tmp_path: Path) -> None:
    r = rule(tmp_path)
    exporter = Exporter(store, r, Target.open(r.url, Settings.from_env()), FileDocuments(tmp_path / "state"),
                        max_items=1000)
    before = exporter.checkpoint
    with writes_held(store):
        assert exporter.round(wait_s=0.2)  # there is more to export: ask again
        assert exporter.checkpoint == before and not (tmp_path / "out").exists()
        while exporter.round(wait_s=0):  # no patience left: it reads beside the writes
            pass
    assert exported_ids(tmp_path / "out", "parquet") == stored_ids(store, TABLES)


def exported_after(service: ExportService, seconds: float) -> float | None:
    """Seconds until the service's rule had exported anything (None: not within ``seconds``),
    calling ``sync`` as the hub does, only more often."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        service.sync()
        runner = next(iter(service.runners.values()), None)
        if runner is not None and runner.checkpoint is not None and runner.checkpoint.items:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def service_for(store: DuckDBStore, tmp_path: Path, max_lag_s: float) -> ExportService:
    documents = FileDocuments(tmp_path / "home")
    RuleBook(documents).add(rule(tmp_path))
    return ExportService(store, documents, Settings.from_env().replace(export_max_lag_s=max_lag_s,
                                                                      export_interval_s=0.2))


def test_the_export_waits_for_ingest_until_it_is_export_max_lag_s_behind(
        store: DuckDBStore, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    service = service_for(store, tmp_path, max_lag_s=2.0)
    try:
        with caplog.at_level(logging.INFO, logger="scorewatch.export"), writes_held(store):
            took = exported_after(service, 20)
            assert took is not None and took >= 1.5  # not before it was (about) 2 s behind
        assert "2 s behind while ingest keeps the store busy" in caplog.text
        wait_until(lambda: exported_ids(tmp_path / "out", "parquet") == stored_ids(store, TABLES), 20,
                   "every row exported once")
    finally:
        service.stop()


def test_the_export_reads_in_the_first_pause_of_ingest(store: DuckDBStore, tmp_path: Path) -> None:
    service = service_for(store, tmp_path, max_lag_s=60.0)
    try:
        with writes_held(store):
            assert exported_after(service, 1.5) is None  # ingest is writing, and the export is not far behind
        took = exported_after(service, 10)
        assert took is not None and took < 5  # the writes paused: it read then, not 60 s later
    finally:
        service.stop()
