"""What every store promises (store/base.py), on DuckDB and on ClickHouse (chdb): batch writes, the
envelope mapping, positions across a restart, dry runs, retention, reading in position order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from scorewatch.errors import BadRequest
from scorewatch.store.schema import POSITION
from tests.store.conftest import Opened, batch, message


def _rows(store: Any, sql: str) -> list[list[Any]]:
    return [list(r) for r in store.query(sql).rows]


def test_write_batch_and_query(any_store: Any) -> None:
    now = datetime(2026, 1, 1, 12, 0)
    written = any_store.write_batch("requests", [
        {"timestamp": now, "name": "a", "duration": 12.5, "success": True, "customDimensions": {"k": 1}},
        {"timestamp": now, "name": "b", "customDimensions": '{"k": 2}'}])
    assert written == 2
    rows = _rows(any_store, "SELECT name, duration, success, customDimensions FROM requests ORDER BY name")
    assert [r[:3] for r in rows] == [["a", 12.5, True], ["b", None, None]]
    assert [orjson.loads(r[3]) for r in rows] == [{"k": 1}, {"k": 2}]
    with pytest.raises(BadRequest):
        any_store.write_batch("nope", [{"a": 1}])


def test_envelope_durations_timestamps_and_counts(any_store: Any) -> None:
    def req(duration: object, time: str, **extra: object) -> dict:
        return {"time": time, "iKey": "ikey-1", **extra,
                "data": {"baseType": "RequestData", "baseData": {"name": str(duration), "duration": duration}}}

    written = any_store.write_envelopes({"requests": batch([
        req("0.00:00:00.058", "2026-01-01T00:00:00Z"),
        req("00:00:00.0580000", "2026-01-01T00:00:00.1234567Z"),
        req("1.02:03:04.5", "2026-01-01T02:00:00+02:00"),
        req(250, "2026-01-01T00:00:00", sampleRate=10),
        req("garbage", "not a time"),
    ])}, position=7)
    assert written == {"requests": 5}
    rows = _rows(any_store, "SELECT name, duration, performanceBucket, timestamp, itemCount, appId, appName, iKey "
                            "FROM requests ORDER BY name")
    by_name = {r[0]: r[1:] for r in rows}
    assert by_name["0.00:00:00.058"][:2] == [58.0, "<250ms"]
    assert by_name["00:00:00.0580000"][:3] == [58.0, "<250ms", datetime(2026, 1, 1, 0, 0, 0, 123456)]
    assert by_name["1.02:03:04.5"][:3] == [93784500.0, ">=5min", datetime(2026, 1, 1, 0, 0)]
    assert by_name["250"] == [250.0, "250ms-500ms", datetime(2026, 1, 1), 10, "app-1", "shop", "ikey-1"]
    assert by_name["garbage"][0] is None and by_name["garbage"][2] is not None  # ingestion time
    assert any_store.applied_position() == 7
    assert _rows(any_store, "SELECT count(DISTINCT itemId) FROM requests") == [[5]]


def test_every_table_maps_its_envelope(any_store: Any) -> None:
    """One envelope of each kind, with its tags, properties and the rules' edge cases, lands alike."""
    tags = {"ai.operation.id": "op1", "ai.cloud.role": "svc", "ai.internal.sdkVersion": "py:1"}
    envelopes = {
        "dependencies": {"time": "2026-01-01T00:00:00Z", "tags": tags, "data": {"baseType": "RemoteDependencyData",
            "baseData": {"name": "GET /x", "target": "api", "type": "HTTP", "success": "False", "resultCode": "503",
                         "duration": "00:00:01.5", "properties": {"p": 1}, "measurements": {"m": 2.5}}}},
        "exceptions": {"time": "2026-01-01T00:00:00Z", "tags": tags, "data": {"baseType": "ExceptionData",
            "baseData": {"severityLevel": "Error", "exceptions": [
                {"typeName": "Outer", "message": "o", "parsedStack": [{"method": "f", "assembly": "a.py"}]},
                {"typeName": "Inner", "message": "i", "assembly": "b.py"}]}}},
        "traces": {"time": "2026-01-01T00:00:00Z", "tags": tags, "data": {"baseType": "MessageData",
            "baseData": {"message": "hi", "severityLevel": "WARNING"}}},
        "customEvents": {"time": "2026-01-01T00:00:00Z", "data": {"baseType": "EventData", "baseData": {"name": "e"}}},
        "customMetrics": {"time": "2026-01-01T00:00:00Z", "data": {"baseType": "MetricData", "baseData": {
            "metrics": [{"name": "h", "value": 1.5, "count": 2**31 + 5}, {"name": "g", "value": 2, "min": 1}]}}},
        "pageViews": {"time": "2026-01-01T00:00:00Z", "data": {"baseType": "PageViewData",
            "baseData": {"name": "home", "url": "http://x/", "duration": 3200}}},
        "availabilityResults": {"time": "2026-01-01T00:00:00Z", "data": {"baseType": "AvailabilityData",
            "baseData": {"name": "ping", "runLocation": "eu", "success": True, "message": "ok", "duration": 10}}},
    }
    written = any_store.write_envelopes({t: batch([e]) for t, e in envelopes.items()}, position=1)
    assert set(written) == set(envelopes)
    assert _rows(any_store, "SELECT name, target, type, success, resultCode, duration, performanceBucket, "
                            "operation_Id, cloud_RoleName, sdkVersion, itemType FROM dependencies") == [
        ["GET /x", "api", "HTTP", False, "503", 1500.0, "1sec-3sec", "op1", "svc", "py:1", "dependency"]]
    dims, measures = _rows(any_store, "SELECT customDimensions, customMeasurements FROM dependencies")[0]
    assert (orjson.loads(dims), orjson.loads(measures)) == ({"p": 1}, {"m": 2.5})
    assert _rows(any_store, "SELECT problemId, handledAt, type, message, assembly, method, innermostType, "
                            "innermostMessage, innermostAssembly, severityLevel FROM exceptions") == [
        ["Outer", "UserCode", "Outer", "o", "a.py", "f", "Inner", "i", "b.py", 3]]
    assert len(orjson.loads(_rows(any_store, "SELECT details FROM exceptions")[0][0])) == 2
    assert _rows(any_store, "SELECT message, severityLevel FROM traces") == [["hi", 2]]
    assert _rows(any_store, "SELECT name, itemType FROM customEvents") == [["e", "customEvent"]]
    assert _rows(any_store, "SELECT name, value, valueCount, valueSum, valueMin, valueMax, valueStdDev "
                            "FROM customMetrics ORDER BY name") == [
        ["g", 2.0, 1, 2.0, 1.0, 2.0, 0.0], ["h", 1.5, 2**31 - 1, 1.5, 1.5, 1.5, 0.0]]
    assert _rows(any_store, "SELECT name, url, duration, performanceBucket FROM pageViews") == [
        ["home", "http://x/", 3200.0, "3sec-7sec"]]
    assert _rows(any_store, "SELECT name, location, success, message, duration, size FROM availabilityResults") == [
        ["ping", "eu", True, "ok", 10.0, None]]


def test_position_is_kept_across_reopen(opened: Opened) -> None:
    assert opened.store.applied_position() == 0
    opened.store.write_envelopes({"traces": batch([message("m")])}, position=41)
    store = opened.reopen()
    assert store.applied_position() == 41 and store.interrupted_position() is None
    assert store.count("traces") == 1


def test_numbers_past_an_integer_column_are_clamped(any_store: Any) -> None:
    sampled = {"time": "2026-01-01T00:00:00Z", "sampleRate": 1e-9,
               "data": {"baseType": "MessageData", "baseData": {"message": "rare"}}}
    any_store.write_envelopes({"traces": batch([sampled])})
    assert _rows(any_store, "SELECT itemCount FROM traces") == [[2**31 - 1]]


def test_dry_run_keeps_nothing(any_store: Any) -> None:
    assert any_store.write_envelopes({"traces": batch([message("m")])}, position=9, dry_run=True) == {"traces": 1}
    assert any_store.count("traces") == 0 and any_store.applied_position() == 0 and any_store.row_position() == 0


def test_retention_removes_old_rows_of_that_app_only(any_store: Any) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    for table in ("requests", "traces", "customMetrics"):
        any_store.write_batch(table, [
            {"timestamp": now - timedelta(days=40), "appId": "a", "name": "old-a"},
            {"timestamp": now - timedelta(days=5), "appId": "a", "name": "new-a"},
            {"timestamp": now - timedelta(days=40), "appId": "b", "name": "old-b"},
        ])
    assert any_store.apply_retention("a", 30) == 3
    for table in ("requests", "customMetrics"):
        assert sorted(r[0] for r in any_store.query(f"SELECT name FROM {table}").rows) == ["new-a", "old-b"]
    assert any_store.apply_retention("a", 30) == 0
    assert any_store.size_bytes() > 0


def test_rows_take_increasing_positions_across_writes_and_reopen(opened: Opened) -> None:
    store = opened.store
    assert store.row_position() == 0
    store.write_envelopes({"traces": batch([message("a"), message("b")]),
                           "customMetrics": batch([{"time": "2026-01-01T10:00:00Z", "data": {
                               "baseType": "MetricData", "baseData": {"metrics": [
                                   {"name": "m1", "value": 1}, {"name": "m2", "value": 2}]}}}])})
    store.write_batch("traces", [{"timestamp": datetime(2026, 1, 1), "message": "c", "appId": "app-1"}])
    assert store.row_position() == 4 and store.row_positions() == {0: 4}
    store = opened.reopen()
    assert store.row_position() == 4
    store.write_envelopes({"traces": batch([message("d")])})
    traces = store.export_rows("traces", "app-1", after=0, upto=store.row_position())
    assert traces.column("message").to_pylist() == ["a", "b", "c", "d"]
    assert traces.column(POSITION).to_pylist() == [1, 2, 4, 5]
    metrics = store.export_rows("customMetrics", "app-1", after=0, upto=5)  # one envelope, one position
    assert metrics.column("name").to_pylist() == ["m1", "m2"] and metrics.column(POSITION).to_pylist() == [3, 3]


def test_export_rows_ranges_apps_times_and_maps(any_store: Any) -> None:
    store = any_store
    store.write_envelopes({"traces": batch([message(f"a{i}", f"2026-01-01T{10 + i}:00:00Z") for i in range(4)])})
    store.write_envelopes({"traces": batch([message("other")], app_id="app-2")})
    store.write_batch("requests", [{"timestamp": datetime(2026, 1, 1), "appId": "app-1", "name": "r",
                                    "customDimensions": {"k": "v", "n": 3}, "customMeasurements": {"m": 1.5}}])
    assert store.export_rows("traces", "app-1", after=1, upto=3).column("message").to_pylist() == ["a1", "a2"]
    assert store.export_count("app-1", ["traces", "requests"], after=0) == 5
    assert store.export_count("app-1", ["traces"], after=0, upto=5) == 4  # position 5 is app-2's
    since, until = datetime(2026, 1, 1, 11, tzinfo=UTC), datetime(2026, 1, 1, 13, tzinfo=UTC)
    timed = store.export_rows("traces", "app-1", after=0, upto=6, since=since, until=until)
    assert timed.column("message").to_pylist() == ["a1", "a2"]
    assert store.export_count("app-1", ["traces"], after=0, since=since, until=until) == 2
    rows = store.export_rows("requests", "app-1", after=0, upto=6, maps=True)
    assert rows.schema.field("timestamp").type.tz is None  # naive UTC, as the contract says
    row = rows.to_pylist()[0]
    assert orjson.loads(row["customDimensions"]) == {"k": "v", "n": 3}
    assert row["customDimensionsMap"] == [("k", "v"), ("n", "3")]
    assert row["customMeasurementsMap"] == [("m", 1.5)]
    assert "customMeasurementsMap" not in store.export_rows("customMetrics", "app-1", after=0, upto=6,
                                                           maps=True).column_names
    with pytest.raises(BadRequest):
        store.export_rows("nope", "app-1", after=0, upto=1)


def test_retention_keeps_rows_above_a_position(any_store: Any) -> None:
    old = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=40)
    any_store.write_batch("traces", [{"timestamp": old, "appId": "a", "message": f"m{i}"} for i in range(5)])
    assert any_store.apply_retention("a", 30, keep_after=3) == 3
    assert any_store.export_rows("traces", "a", after=0, upto=5).column("message").to_pylist() == ["m3", "m4"]
    assert any_store.apply_retention("a", 30, keep_after={0: 4}) == 1  # per stream
    assert any_store.apply_retention("a", 30) == 1


def test_every_column_of_every_table_has_a_rule() -> None:
    """The envelope mapping is declared once (store/envelopes.py) and rendered by each store: a schema
    column without a rule would be silently null on one engine or fail on the other."""
    from scorewatch.store import envelopes
    from scorewatch.store.schema import TABLES

    for table in envelopes.BASE_TYPES.values():
        assert list(envelopes.columns(table)) == [c.name for c in TABLES[table]]
    original = dict(envelopes.OWN["requests"])
    try:
        del envelopes.OWN["requests"]["url"]
        with pytest.raises(KeyError, match="has no rule"):
            envelopes.columns("requests")
    finally:
        envelopes.OWN["requests"].clear()
        envelopes.OWN["requests"].update(original)
