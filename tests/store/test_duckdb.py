"""The DuckDB store: schema, batch writes, envelope mapping, timed queries, retention, WAL position."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest

from scorewatch.errors import BadRequest, Timeout
from scorewatch.store import duckdb as duckdb_store
from scorewatch.store import rows as store_rows
from scorewatch.store.base import StoreRefused, StoreUnavailable
from scorewatch.store.duckdb import DuckDBStore
from scorewatch.store.schema import POSITION, TABLES


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    s = DuckDBStore(tmp_path / "t.duckdb")
    yield s
    s.close()


def _batch(envelopes: list[dict], app_id: str = "app-1") -> pa.Table:
    n = len(envelopes)
    return pa.table({"env": [orjson.dumps(e).decode() for e in envelopes], "appId": [app_id] * n,
                     "appName": ["shop"] * n, "iKey": ["ikey-1"] * n})


def test_tables_have_the_schema_columns(store: DuckDBStore) -> None:
    for table, cols in TABLES.items():
        result = store.query(f"SELECT * FROM {table} LIMIT 0")
        assert [c[0] for c in result.columns] == [c.name for c in cols] + [POSITION]  # POSITION: not KQL's
        kinds = dict(result.columns)
        assert kinds["timestamp"] == "datetime" and kinds["customDimensions"] == "dynamic"
        if "success" in kinds:
            assert kinds["success"] == "bool"


def test_write_batch_and_query(store: DuckDBStore) -> None:
    now = datetime(2026, 1, 1, 12, 0)
    written = store.write_batch("requests", [
        {"timestamp": now, "name": "a", "duration": 12.5, "success": True, "customDimensions": {"k": 1}},
        {"timestamp": now, "name": "b", "customDimensions": '{"k": 2}'}])
    assert written == 2
    result = store.query("SELECT name, duration, success, customDimensions->>'k' FROM requests ORDER BY name")
    assert result.rows == [["a", 12.5, True, "1"], ["b", None, None, "2"]]
    assert store.query("SELECT name FROM requests WHERE name = ?", ["b"]).rows == [["b"]]
    with pytest.raises(BadRequest):
        store.write_batch("nope", [{"a": 1}])


def test_envelope_durations_timestamps_and_counts(store: DuckDBStore) -> None:
    def req(duration: object, time: str, **extra: object) -> dict:
        return {"time": time, "iKey": "ikey-1", **extra,
                "data": {"baseType": "RequestData", "baseData": {"name": str(duration), "duration": duration}}}

    written = store.write_envelopes({"requests": _batch([
        req("0.00:00:00.058", "2026-01-01T00:00:00Z"),
        req("00:00:00.0580000", "2026-01-01T00:00:00.1234567Z"),
        req("1.02:03:04.5", "2026-01-01T02:00:00+02:00"),
        req(250, "2026-01-01T00:00:00", sampleRate=10),
        req("garbage", "not a time"),
    ])}, position=7)
    assert written == {"requests": 5}
    rows = store.query("SELECT name, duration, performanceBucket, timestamp, itemCount, appId, appName, iKey "
                       "FROM requests ORDER BY name").rows
    by_name = {r[0]: r[1:] for r in rows}
    assert by_name["0.00:00:00.058"][:2] == [58.0, "<250ms"]
    assert by_name["00:00:00.0580000"][:3] == [58.0, "<250ms", datetime(2026, 1, 1, 0, 0, 0, 123456)]
    assert by_name["1.02:03:04.5"][:3] == [93784500.0, ">=5min", datetime(2026, 1, 1, 0, 0)]
    assert by_name["250"] == [250.0, "250ms-500ms", datetime(2026, 1, 1), 10, "app-1", "shop", "ikey-1"]
    assert by_name["garbage"][0] is None and by_name["garbage"][2] is not None  # ingestion time
    assert store.applied_position() == 7
    ids = store.query("SELECT count(DISTINCT itemId) FROM requests").rows
    assert ids == [[5]]


def test_position_is_kept_across_reopen(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "t.duckdb")
    assert store.applied_position() == 0
    store.write_envelopes({"traces": _batch([{"time": "2026-01-01T00:00:00Z", "data": {
        "baseType": "MessageData", "baseData": {"message": "m"}}}])}, position=41)
    store.close()
    store = DuckDBStore(tmp_path / "t.duckdb")
    assert store.applied_position() == 41
    assert store.count("traces") == 1
    store.close()


def test_a_failing_batch_writes_nothing(store: DuckDBStore) -> None:
    good = _batch([{"time": "2026-01-01T00:00:00Z", "data": {"baseType": "MessageData",
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
    requests = _batch([{"time": "2026-01-01T00:00:00Z", "data": {"baseType": "RequestData",
                                                                 "baseData": {"name": str(i)}}} for i in range(1000)])
    traces = _batch([{"time": "2026-01-01T00:00:00Z", "data": {"baseType": "MessageData",
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


def test_numbers_past_an_integer_column_are_clamped(store: DuckDBStore) -> None:
    metric = {"time": "2026-01-01T00:00:00Z", "data": {"baseType": "MetricData", "baseData": {
        "metrics": [{"name": "h", "value": 1.5, "count": 2**31 + 5}]}}}
    sampled = {"time": "2026-01-01T00:00:00Z", "sampleRate": 1e-9,
               "data": {"baseType": "MessageData", "baseData": {"message": "rare"}}}
    store.write_envelopes({"customMetrics": _batch([metric]), "traces": _batch([sampled])})
    assert store.query("SELECT valueCount FROM customMetrics").rows == [[2**31 - 1]]
    assert store.query("SELECT itemCount FROM traces").rows == [[2**31 - 1]]


def _raw_batch(envelope: bytes) -> pa.Table:
    env = pa.LargeStringArray.from_buffers(1, pa.py_buffer(np.array([0, len(envelope)], dtype=np.int64)),
                                           pa.py_buffer(envelope))  # as the writer builds it: unchecked bytes
    return pa.table({"env": env, "appId": ["a"], "appName": ["n"], "iKey": ["k"]})


def test_a_refused_write_names_the_real_error_and_keeps_nothing(store: DuckDBStore) -> None:
    bad = _raw_batch(b'{"data": {"baseType": "MessageData", "baseData": {"message": "\xff"}}}')
    good = _batch([{"time": "2026-01-01T00:00:00Z", "data": {"baseType": "MessageData",
                                                              "baseData": {"message": "m"}}}])
    with pytest.raises(StoreRefused) as refused:
        store.write_envelopes({"requests": good, "traces": bad}, position=3)
    assert "aborted" not in str(refused.value) and "UTF-8" in str(refused.value), refused.value
    assert "INSERT" not in str(refused.value)  # no generated SQL in the message
    assert store.count("requests") == 0 and store.applied_position() == 0
    assert store.write_envelopes({"traces": good}, position=4) == {"traces": 1}  # the store goes on


def test_dry_run_keeps_nothing(store: DuckDBStore) -> None:
    good = _batch([{"time": "2026-01-01T00:00:00Z", "data": {"baseType": "MessageData",
                                                              "baseData": {"message": "m"}}}])
    assert store.write_envelopes({"traces": good}, position=9, dry_run=True) == {"traces": 1}
    assert store.count("traces") == 0 and store.applied_position() == 0


def test_out_of_memory_is_unavailable_not_refused(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "t.duckdb", memory_limit="1MB")
    try:
        batch = _batch([{"data": {"baseType": "MessageData", "baseData": {"message": "m" * 150}}}] * 3000)
        with pytest.raises(StoreUnavailable, match="Out of Memory"):
            store.write_envelopes({"traces": batch}, position=1)
        store._con.execute("SET memory_limit = '512MB'")  # the pressure is gone
        assert store.write_envelopes({"traces": batch}, position=1) == {"traces": 3000}
    finally:
        store.close()


def test_a_large_table_is_inserted_in_parts_of_one_transaction(store: DuckDBStore,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_rows, "STATEMENT_BYTES", 2000)
    lines = [{"time": "2026-01-01T00:00:00Z", "data": {"baseType": "MessageData",
                                                       "baseData": {"message": f"m{i}"}}} for i in range(100)]
    assert store.write_envelopes({"traces": _batch(lines)}, position=2) == {"traces": 100}
    bad = pa.concat_tables([_batch(lines).cast(_raw_batch(b"{}").schema), _raw_batch(b'{"data": {"baseData": {"message": "\xfe"}}}')])
    with pytest.raises(StoreRefused):  # the last part fails: the parts before it are rolled back too
        store.write_envelopes({"traces": bad}, position=3)
    assert store.count("traces") == 100 and store.applied_position() == 2


def test_query_errors_do_not_show_the_sql(store: DuckDBStore) -> None:
    with pytest.raises(BadRequest) as failed:
        store.query("SELECT CAST('abc' || range AS INTEGER) AS secret_generated_alias FROM range(1)")
    assert "secret_generated_alias" not in failed.value.message and "LINE" not in failed.value.message
    assert "Could not convert" in failed.value.message


def test_retention_removes_old_rows_of_that_app_only(store: DuckDBStore) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    for table in ("requests", "traces", "customMetrics"):
        store.write_batch(table, [
            {"timestamp": now - timedelta(days=40), "appId": "a", "name": "old-a"},
            {"timestamp": now - timedelta(days=5), "appId": "a", "name": "new-a"},
            {"timestamp": now - timedelta(days=40), "appId": "b", "name": "old-b"},
        ])
    assert store.apply_retention("a", 30) == 3
    for table in ("requests", "customMetrics"):
        assert sorted(r[0] for r in store.query(f"SELECT name FROM {table}").rows) == ["new-a", "old-b"]
    assert store.apply_retention("a", 30) == 0
    assert store.size_bytes() > 0


def _message(text: str, time: str = "2026-01-01T10:00:00Z") -> dict:
    return {"time": time, "data": {"baseType": "MessageData", "baseData": {"message": text}}}


def test_rows_take_increasing_positions_across_writes_and_reopen(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "t.duckdb")
    assert store.row_position() == 0
    store.write_envelopes({"traces": _batch([_message("a"), _message("b")]),
                           "customMetrics": _batch([{"time": "2026-01-01T10:00:00Z", "data": {
                               "baseType": "MetricData", "baseData": {"metrics": [
                                   {"name": "m1", "value": 1}, {"name": "m2", "value": 2}]}}}])})
    store.write_batch("traces", [{"timestamp": datetime(2026, 1, 1), "message": "c", "appId": "app-1"}])
    assert store.row_position() == 4
    store.close()
    store = DuckDBStore(tmp_path / "t.duckdb")
    assert store.row_position() == 4
    store.write_envelopes({"traces": _batch([_message("d")])})
    traces = store.export_rows("traces", "app-1", after=0, upto=store.row_position())
    assert traces.column("message").to_pylist() == ["a", "b", "c", "d"]
    assert traces.column(POSITION).to_pylist() == [1, 2, 4, 5]
    metrics = store.export_rows("customMetrics", "app-1", after=0, upto=5)  # one envelope, one position
    assert metrics.column("name").to_pylist() == ["m1", "m2"] and metrics.column(POSITION).to_pylist() == [3, 3]
    store.close()


def test_a_failed_write_takes_no_positions(store: DuckDBStore) -> None:
    with pytest.raises(BadRequest):
        store.write_envelopes({"traces": _batch([_message("a")]), "nope": _batch([_message("b")])})
    assert store.row_position() == 0
    store.write_envelopes({"traces": _batch([_message("c")])})
    assert store.export_rows("traces", "app-1", after=0, upto=1).column(POSITION).to_pylist() == [1]


def test_export_rows_ranges_apps_times_and_maps(store: DuckDBStore) -> None:
    store.write_envelopes({"traces": _batch([_message(f"a{i}", f"2026-01-01T{10 + i}:00:00Z") for i in range(4)])})
    store.write_envelopes({"traces": _batch([_message("other")], app_id="app-2")})
    store.write_batch("requests", [{"timestamp": datetime(2026, 1, 1), "appId": "app-1", "name": "r",
                                    "customDimensions": {"k": "v", "n": 3}, "customMeasurements": {"m": 1.5}}])
    assert store.export_rows("traces", "app-1", after=1, upto=3).column("message").to_pylist() == ["a1", "a2"]
    assert store.export_count("app-1", ["traces", "requests"], after=0) == 5
    assert store.export_count("app-1", ["traces"], after=0, upto=5) == 4  # position 5 is app-2's
    since, until = datetime(2026, 1, 1, 11, tzinfo=UTC), datetime(2026, 1, 1, 13, tzinfo=UTC)
    timed = store.export_rows("traces", "app-1", after=0, upto=6, since=since, until=until)
    assert timed.column("message").to_pylist() == ["a1", "a2"]
    assert store.export_count("app-1", ["traces"], after=0, since=since, until=until) == 2
    row = store.export_rows("requests", "app-1", after=0, upto=6, maps=True).to_pylist()[0]
    assert orjson.loads(row["customDimensions"]) == {"k": "v", "n": 3}
    assert row["customDimensionsMap"] == [("k", "v"), ("n", "3")]
    assert row["customMeasurementsMap"] == [("m", 1.5)]
    assert "customMeasurementsMap" not in store.export_rows("customMetrics", "app-1", after=0, upto=6,
                                                           maps=True).column_names
    with pytest.raises(BadRequest):
        store.export_rows("nope", "app-1", after=0, upto=1)


def test_retention_keeps_rows_above_a_position(store: DuckDBStore) -> None:
    old = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=40)
    store.write_batch("traces", [{"timestamp": old, "appId": "a", "message": f"m{i}"} for i in range(5)])
    assert store.apply_retention("a", 30, keep_after=3) == 3
    assert store.export_rows("traces", "a", after=0, upto=5).column("message").to_pylist() == ["m3", "m4"]
    assert store.apply_retention("a", 30) == 2


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
