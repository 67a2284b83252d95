"""The ClickHouse store beyond what every store promises: exactly once without transactions (a write
cut off half-way and replayed is deduplicated), one stream of positions per writer, read-only and
timed queries, errors that say "later" from errors that say "never", and the TTL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scorewatch.errors import BadRequest, ConfigError, Timeout
from scorewatch.store import clickhouse_sql
from scorewatch.store.backends import open_clickhouse, parse
from scorewatch.store.base import STREAM_BITS, StoreRefused, StoreUnavailable
from scorewatch.store.clickhouse import ClickHouseStore, write_error
from scorewatch.store.schema import POSITION
from tests.backends import chdb_store, have_chdb
from tests.helpers import free_port
from tests.store.conftest import batch, message

pytestmark = pytest.mark.skipif(not have_chdb(), reason="chdb is not installed")


def _again(store: ClickHouseStore) -> ClickHouseStore:
    """The same database and stream opened again, as a restarted hub opens it."""
    store.close()
    return open_clickhouse(parse(store.name), stream=store.stream, ttl_days=0)  # type: ignore[return-value]


def _requests(n: int, tag: str) -> list[dict]:
    return [{"time": "2026-01-01T00:00:00Z", "data": {"baseType": "RequestData",
                                                      "baseData": {"name": f"{tag}{i}"}}} for i in range(n)]


def test_a_write_cut_off_half_way_is_replayed_without_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    store = chdb_store("replay")
    store.write_envelopes({"traces": batch([message("before")])}, position=3)
    batches = {"requests": batch(_requests(50, "r")), "traces": batch([message("t1"), message("t2")])}
    real_insert, calls = ClickHouseStore._insert, []

    def insert_then_die(self: Any, table: str, rows: Any, settings: dict) -> None:
        calls.append(table)
        if len(calls) == 2:  # the process dies after the first table went in
            raise StoreUnavailable("killed")
        real_insert(self, table, rows, settings)

    monkeypatch.setattr(ClickHouseStore, "_insert", insert_then_die)
    with pytest.raises(StoreUnavailable):
        store.write_envelopes(batches, position=9)
    monkeypatch.setattr(ClickHouseStore, "_insert", real_insert)
    assert store.count("requests") == 50  # half of the write is in, not recorded as applied

    store = _again(store)
    assert (store.applied_position(), store.interrupted_position()) == (3, 9)
    store.write_envelopes(batches, position=9)  # the log replays the same records as one batch
    assert (store.count("requests"), store.count("traces")) == (50, 3)
    assert (store.applied_position(), store.interrupted_position()) == (9, None)
    positions = store.export_rows("requests", "app-1", after=0, upto=store.row_position()).column(POSITION)
    assert positions.to_pylist() == list(range(2, 52))  # the replay took the same positions
    store.write_envelopes({"requests": batch(_requests(50, "r"))}, position=10)  # the same content, a new record
    assert store.count("requests") == 100
    store.close()


def test_a_write_whose_rows_went_in_but_not_its_record_is_retried_without_duplicates(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The server goes away after a write's rows went in and before the write was recorded as
    applied (the hub's writer sees an error and retries the same write once the server is back):
    the retry is deduplicated, takes the same positions, and only then is the write applied."""
    store = chdb_store("retry")
    store.write_envelopes({"traces": batch([message("before")])}, position=3)
    batches = {"requests": batch(_requests(50, "r")), "traces": batch([message("t1"), message("t2")])}
    client = store.client()
    real_insert, state_writes = client.insert, []

    def server_gone_after_the_rows(table: str, *args: Any, **kwargs: Any) -> Any:
        if table == "scorewatch_streams":
            state_writes.append(table)
            if len(state_writes) == 2:  # the record that the write is applied, after its rows
                raise ConnectionRefusedError(111, "Connection refused")
        return real_insert(table, *args, **kwargs)

    monkeypatch.setattr(client, "insert", server_gone_after_the_rows)
    with pytest.raises(StoreUnavailable):
        store.write_envelopes(batches, position=9)
    assert (store.count("requests"), store.count("traces")) == (50, 3)  # the rows went in...
    assert (store.applied_position(), store.row_position()) == (3, 1)  # ...the write is not applied

    store.write_envelopes(batches, position=9)  # the writer's retry
    assert (store.count("requests"), store.count("traces")) == (50, 3)
    assert (store.applied_position(), store.interrupted_position()) == (9, None)
    positions = store.export_rows("requests", "app-1", after=0, upto=store.row_position()).column(POSITION)
    assert positions.to_pylist() == list(range(2, 52))
    store = _again(store)
    assert (store.applied_position(), store.interrupted_position(), store.row_position()) == (9, None, 53)
    store.close()


def test_each_writer_has_its_own_stream_of_positions() -> None:
    first = chdb_store("streams")
    second = open_clickhouse(parse(first.name), ttl_days=0)  # a second hub on the same database
    assert isinstance(second, ClickHouseStore) and (first.stream, second.stream) == (0, 1)
    first.write_envelopes({"traces": batch([message("a1"), message("a2")])}, position=1)
    second.write_envelopes({"traces": batch([message("b1")])}, position=1)
    base = 1 << STREAM_BITS
    assert second.row_position() == base + 1 and first.row_position() == 2
    assert first.row_positions() == {0: 2, 1: base + 1} == second.row_positions()
    ours = first.export_rows("traces", "app-1", after=0, upto=first.row_position()).column("message").to_pylist()
    theirs = first.export_rows("traces", "app-1", after=base, upto=base + 1).column("message").to_pylist()
    assert (ours, theirs) == (["a1", "a2"], ["b1"])
    assert open_clickhouse(parse(first.name), stream=1, ttl_days=0).applied_position() == 1  # a restart keeps it
    old = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=40)
    first.write_batch("customEvents", [{"timestamp": old, "appId": "a", "name": "x"}] * 2)
    second.write_batch("customEvents", [{"timestamp": old, "appId": "a", "name": "y"}] * 2)
    # retention keeps what an export of each stream has not read: here the first row of each
    assert first.apply_retention("a", 30, keep_after={0: 3, 1: base + 2}) == 2
    assert sorted(r[0] for r in first.query("SELECT name FROM customEvents").rows) == ["x", "y"]
    first.close()
    second.close()


def test_queries_are_read_only_limited_and_timed() -> None:
    store = chdb_store("queries")
    with pytest.raises(BadRequest):
        store.query("DROP TABLE requests")
    with pytest.raises(BadRequest):
        store.query("INSERT INTO customEvents (timestamp, appId) VALUES (now(), 'x')")
    assert store.count("requests") == 0 and store.query("SELECT count() FROM requests").rows == [[0]]
    with pytest.raises(BadRequest, match="query failed in the store") as failed:
        store.query("SELECT nope FROM requests")
    assert "SELECT nope" not in failed.value.message  # the generated SQL is not shown
    result = store.query("SELECT number FROM numbers(100000)", max_rows=3)
    assert result.truncated and len(result.rows) == 3
    assert not store.query("SELECT number FROM numbers(3)", max_rows=3).truncated
    with pytest.raises(Timeout):
        store.query("SELECT count() FROM numbers(100000000000) WHERE number % 7 = 3", timeout_s=0.2)
    assert store.query("SELECT 1").rows == [[1]]
    store.close()


def test_errors_are_later_or_never() -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    assert isinstance(write_error(OperationalError("connection refused")), StoreUnavailable)
    memory = write_error(DatabaseError("Code: 241. DB::Exception: Memory limit exceeded", code=241))
    assert isinstance(memory, StoreUnavailable) and memory.memory
    assert isinstance(write_error(DatabaseError("Code: 243. Not enough space", code=243)), StoreUnavailable)
    refused = write_error(DatabaseError("Code: 27. DB::Exception: Cannot parse input. (CANNOT_PARSE_INPUT_ASSERTION_FAILED)"
                                        " (version 26.9)", code=27))
    assert isinstance(refused, StoreRefused) and "version" not in str(refused)


def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    spec = parse(f"clickhouse://writer@127.0.0.1:{free_port()}/telemetry?connect_timeout=2", password="s3cret")
    with pytest.raises(ConfigError) as failed:
        open_clickhouse(spec)
    message_ = failed.value.message
    assert f"clickhouse://writer@127.0.0.1:{spec.port}/telemetry" in message_ and "s3cret" not in message_


def test_urls() -> None:
    spec = parse("clickhouses://u:pw@ch.example:9443/db1?async_insert=1")
    assert (spec.kind, spec.host, spec.port, spec.secure, spec.username, spec.password, spec.database) == (
        "clickhouse", "ch.example", 9443, True, "u", "pw", "db1")
    assert spec.describe() == "clickhouses://u@ch.example:9443/db1" and spec.shared
    assert parse("clickhouse://h").port == 8123 and parse("clickhouse://h?secure=1").port == 8443
    assert parse("chdb:///tmp/x?database=d").describe() == "chdb:///tmp/x?database=d"
    assert parse("").kind == "duckdb"
    for bad in ("mysql://h", "clickhouse://h/bad-name", "chdb://", "clickhouse:///db", "clickhouse://h?nope=1"):
        with pytest.raises(ConfigError):
            parse(bad)


def test_rows_past_the_ttl_are_dropped() -> None:
    store = chdb_store("ttl", ttl_days=30)
    now = datetime.now(UTC).replace(tzinfo=None)
    store.write_batch("traces", [{"timestamp": now - timedelta(days=40), "appId": "a", "message": "old"},
                                 {"timestamp": now, "appId": "a", "message": "new"}])
    store.client().command("OPTIMIZE TABLE traces FINAL")
    assert [r[0] for r in store.query("SELECT message FROM traces").rows] == ["new"]
    store.close()


def test_another_version_of_the_mapping_gets_its_own_input_tables() -> None:
    store = chdb_store("versions")
    names = {r[0] for r in store.query("SELECT name FROM system.tables WHERE database = currentDatabase()").rows}
    assert clickhouse_sql.input_table("requests") in names
    assert clickhouse_sql.input_table("requests").endswith(clickhouse_sql.version("requests"))
    assert clickhouse_sql.version("requests") != clickhouse_sql.version("traces")
    store.close()
