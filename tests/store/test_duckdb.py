"""The DuckDB store beyond what every store promises (test_stores.py): one transaction per write,
DuckDB's errors, queries beside an open write, a store made before positions existed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from scorewatch.errors import BadRequest, Timeout
from scorewatch.store import duckdb as duckdb_store
from scorewatch.store import rows as store_rows
from scorewatch.store.base import StoreRefused, StoreUnavailable
from scorewatch.store.duckdb import DuckDBStore
from scorewatch.store.schema import POSITION, TABLES
from tests.store.conftest import batch, message


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    s = DuckDBStore(tmp_path / "t.duckdb")
    yield s
    s.close()


def test_tables_have_the_schema_columns(store: DuckDBStore) -> None:
    for table, cols in TABLES.items():
        result = store.query(f"SELECT * FROM {table} LIMIT 0")
        assert [c[0] for c in result.columns] == [c.name for c in cols] + [POSITION]  # POSITION: not KQL's
        kinds = dict(result.columns)
        assert kinds["timestamp"] == "datetime" and kinds["customDimensions"] == "dynamic"
        if "success" in kinds:
            assert kinds["success"] == "bool"





def test_a_failing_batch_writes_nothing(store: DuckDBStore) -> None:
    good = batch([{"time": "2026-01-01T00:00:00Z", "data": {"baseType": "MessageData",
                                                              "baseData": {"message": "m"}}}])
    with pytest.raises(BadRequest):
        store.write_envelopes({"traces": good, "nope": good}, position=3)
    assert store.count("traces") == 0 and store.applied_position() == 0


def test_query_guards(store: DuckDBStore) -> None:
    with pytest.raises(BadRequest):
        store.query("DELETE FROM requests")
    with pytest.raises(BadRequest):
        store.query("SELECT 1; SELECT 2")
    with pytest.raises(BadRequest):
        store.query("SELECT nope FROM requests")
    result = store.query("SELECT * FROM range(10)", max_rows=3)
    assert result.truncated and len(result.rows) == 3
    assert not store.query("SELECT * FROM range(3)", max_rows=3).truncated


def test_slow_query_is_cancelled(store: DuckDBStore) -> None:
    with pytest.raises(Timeout):
        store.query("SELECT count(*) FROM range(10000000000) a, range(1000) b WHERE a.range + b.range = -1",
                    timeout_s=0.2)
    assert store.query("SELECT 1").rows == [[1]]  # the store is still usable


def test_queries_run_while_a_write_is_open(store: DuckDBStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A query answers while a write is half done (one table and half of the next inserted, the rest
    still to come) and sees none of it: the tables and the log position commit together."""
    requests = batch([{"time": "2026-01-01T00:00:00Z", "data": {"baseType": "RequestData",
                                                                 "baseData": {"name": str(i)}}} for i in range(1000)])
    traces = batch([{"time": "2026-01-01T00:00:00Z", "data": {"baseType": "MessageData",
                                                               "baseData": {"message": str(i)}}} for i in range(1000)])
    paused, resume = threading.Event(), threading.Event()

    def parts(batch: pa.Table) -> Iterator[pa.Table]:  # the requests' second half waits until the test has looked
        if batch.num_rows and batch.column("env")[0].as_py() != requests.column("env")[0].as_py():
            yield batch
            return
        yield batch.slice(0, 500)
        paused.set()
        assert resume.wait(30)
        yield batch.slice(500)

    monkeypatch.setattr(duckdb_store, "statement_parts", parts)
    writer = threading.Thread(target=store.write_envelopes, kwargs={"position": 5, "batches": {
        "traces": traces, "requests": requests}})
    writer.start()
    try:
        assert paused.wait(30), "the write never reached its second table"
        seen: list[int] = []
        reader = threading.Thread(target=lambda: seen.extend(
            [store.count("traces"), store.count("requests"), store.applied_position()]))
        reader.start()
        reader.join(30)
        assert not reader.is_alive(), "a query waited for the open write"
        assert seen == [0, 0, 0]  # traces and half the requests were inserted, yet not visible: one transaction
    finally:
        resume.set()
        writer.join(30)
    assert [store.count("traces"), store.count("requests"), store.applied_position()] == [1000, 1000, 5]



def _raw_batch(envelope: bytes) -> pa.Table:
    env = pa.LargeStringArray.from_buffers(1, pa.py_buffer(np.array([0, len(envelope)], dtype=np.int64)),
                                           pa.py_buffer(envelope))  # as the writer builds it: unchecked bytes
    return pa.table({"env": env, "appId": ["a"], "appName": ["n"], "iKey": ["k"]})


def test_a_refused_write_names_the_real_error_and_keeps_nothing(store: DuckDBStore) -> None:
    bad = _raw_batch(b'{"data": {"baseType": "MessageData", "baseData": {"message": "\xff"}}}')
    good = batch([{"time": "2026-01-01T00:00:00Z", "data": {"baseType": "MessageData",
                                                              "baseData": {"message": "m"}}}])
    with pytest.raises(StoreRefused) as refused:
        store.write_envelopes({"requests": good, "traces": bad}, position=3)
    assert "aborted" not in str(refused.value) and "UTF-8" in str(refused.value), refused.value
    assert "INSERT" not in str(refused.value)  # no generated SQL in the message
    assert store.count("requests") == 0 and store.applied_position() == 0
    assert store.write_envelopes({"traces": good}, position=4) == {"traces": 1}  # the store goes on



def test_out_of_memory_is_unavailable_not_refused(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "t.duckdb", memory_limit="1MB")
    try:
        big = batch([{"data": {"baseType": "MessageData", "baseData": {"message": "m" * 150}}}] * 3000)
        with pytest.raises(StoreUnavailable, match="Out of Memory"):
            store.write_envelopes({"traces": big}, position=1)
        store._con.execute("SET memory_limit = '512MB'")  # the pressure is gone
        assert store.write_envelopes({"traces": big}, position=1) == {"traces": 3000}
    finally:
        store.close()


def test_a_large_table_is_inserted_in_parts_of_one_transaction(store: DuckDBStore,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_rows, "STATEMENT_BYTES", 2000)
    lines = [{"time": "2026-01-01T00:00:00Z", "data": {"baseType": "MessageData",
                                                       "baseData": {"message": f"m{i}"}}} for i in range(100)]
    assert store.write_envelopes({"traces": batch(lines)}, position=2) == {"traces": 100}
    bad = pa.concat_tables([batch(lines).cast(_raw_batch(b"{}").schema), _raw_batch(b'{"data": {"baseData": {"message": "\xfe"}}}')])
    with pytest.raises(StoreRefused):  # the last part fails: the parts before it are rolled back too
        store.write_envelopes({"traces": bad}, position=3)
    assert store.count("traces") == 100 and store.applied_position() == 2


def test_query_errors_do_not_show_the_sql(store: DuckDBStore) -> None:
    with pytest.raises(BadRequest) as failed:
        store.query("SELECT CAST('abc' || range AS INTEGER) AS secret_generated_alias FROM range(1)")
    assert "secret_generated_alias" not in failed.value.message and "LINE" not in failed.value.message
    assert "Could not convert" in failed.value.message





def test_a_failed_write_takes_no_positions(store: DuckDBStore) -> None:
    with pytest.raises(BadRequest):
        store.write_envelopes({"traces": batch([message("a")]), "nope": batch([message("b")])})
    assert store.row_position() == 0
    store.write_envelopes({"traces": batch([message("c")])})
    assert store.export_rows("traces", "app-1", after=0, upto=1).column(POSITION).to_pylist() == [1]




def test_a_store_made_before_positions_gets_them(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    spec = ", ".join(f'"{c.name}" VARCHAR' if c.type != "datetime" else f'"{c.name}" TIMESTAMP'
                     for c in TABLES["traces"])
    con.execute(f"CREATE TABLE traces ({spec})")
    con.execute("INSERT INTO traces (timestamp, message, appId) VALUES ('2026-01-01', 'legacy', 'a')")
    con.close()
    store = DuckDBStore(path)
    store.write_batch("traces", [{"timestamp": datetime(2026, 1, 1), "message": "new", "appId": "a"}])
    rows = store.export_rows("traces", "a", after=-1, upto=store.row_position())
    assert rows.column("message").to_pylist() == ["legacy", "new"]
    assert rows.column(POSITION).to_pylist() == [0, 1]
    store.close()
