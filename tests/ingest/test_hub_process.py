"""The hub as users run it (``scorewatch hub`` in its own process): durability under SIGKILL, keys kept
out of its output, retention on start, and the query API seeing one application only; the tests of
what reaches the store run with each backend (DuckDB; ClickHouse on chdb, ``--store chdb:///DIR``)."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from scorewatch.store.duckdb import DuckDBStore
from scorewatch.workspace import Workspace
from tests.backends import BACKENDS, skip_without, store_url
from tests.helpers import ServerProcess, free_port, wait_for_http

_running: list[ServerProcess] = []


@pytest.fixture(autouse=True)
def stop_hubs() -> Iterator[None]:
    """Whatever a test leaves running (an assertion failed midway) is stopped here."""
    yield
    while _running:
        _running.pop().stop()


def start_hub(home: Path, log_dir: Path, backend: str = "duckdb", **env: str) -> tuple[ServerProcess, str]:
    port = free_port()
    store = ["--store", store_url(backend, home.parent)] if backend != "duckdb" else []
    server = ServerProcess(["hub", "--home", str(home), "--port", str(port), *store], log_dir=log_dir,
                           env={f"SCOREWATCH_{k.upper()}": v for k, v in env.items()}).start()
    _running.append(server)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/health", proc=server.proc, expect_status=200, timeout=60)
    except Exception:
        server.stop()
        raise AssertionError(server.output()) from None
    return server, url


def items(ikey: str, batch: int, size: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()  # recent: retention (90 days) runs on every start
    return [{"time": now, "iKey": ikey,
             "data": {"baseType": "MessageData", "baseData": {"message": f"b{batch}-i{i}"}}} for i in range(size)]


# Opens a stopped hub's store in a process of its own (this process's chdb engine is elsewhere):
# argv: home, store URL, then "read" (prints the messages of traces) or "write" (JSON rows for traces).
_OFFLINE = """
import sys, orjson
from datetime import datetime
from scorewatch.settings import Settings
from scorewatch.store.backends import open_store
from scorewatch.workspace import Workspace
home, url, action = sys.argv[1:4]
store = open_store(Workspace(home), Settings.from_env({}, home=home, store=url, clickhouse_ttl_days=0))
if action == "read":
    print(orjson.dumps([r[0] for r in store.query("SELECT message FROM traces").rows]).decode())
else:
    rows = orjson.loads(sys.argv[4])
    for row in rows:
        row["timestamp"] = datetime.fromisoformat(row["timestamp"])
    store.write_batch("traces", rows)
store.close()
"""


def offline(home: Path, backend: str, action: str, rows: list[dict[str, Any]] | None = None) -> Any:
    args = [sys.executable, "-c", _OFFLINE, str(home), store_url(backend, home.parent), action]
    done = subprocess.run(args + ([orjson.dumps(rows, default=str).decode()] if rows else []),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout) if action == "read" else None


def stored_messages(home: Path, backend: str = "duckdb") -> list[str]:
    if backend != "duckdb":
        return offline(home, backend, "read")
    store = DuckDBStore(Workspace(home).store_dir / "telemetry.duckdb")
    try:
        return [row[0] for row in store.query("SELECT message FROM traces").rows]
    finally:
        store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_right_after_200_loses_nothing_and_stores_nothing_twice(tmp_path: Path, backend: str) -> None:
    skip_without(backend)
    home = tmp_path / "ws"
    # The writer waits long for a full batch, so every accepted item is still only in the log when killed.
    server, url = start_hub(home, tmp_path, backend, ingest_linger_ms="600000", ingest_batch_items="1000000")
    ikey = orjson.loads((home / "config.json").read_bytes())["default_app"]["instrumentation_key"]
    with httpx.Client() as client:
        for batch in range(10):
            response = client.post(f"{url}/v2.1/track", content=orjson.dumps(items(ikey, batch, 50)))
            assert response.status_code == 200
    server.kill()  # SIGKILL

    server, url = start_hub(home, tmp_path, backend)  # replays the log into the store on start
    with httpx.Client() as client:
        assert client.post(f"{url}/v2.1/track", content=orjson.dumps(items(ikey, 99, 5))).status_code == 200
    server.stop()
    assert "replayed 500 items from the write-ahead log" in server.output()
    messages = stored_messages(home, backend)
    expected = {f"b{b}-i{i}" for b in range(10) for i in range(50)} | {f"b99-i{i}" for i in range(5)}
    assert len(messages) == len(expected) and set(messages) == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_while_the_writer_is_busy_neither_loses_nor_duplicates(tmp_path: Path, backend: str) -> None:
    skip_without(backend)
    home = tmp_path / "ws"
    server, url = start_hub(home, tmp_path, backend, ingest_linger_ms="0", ingest_batch_items="200")
    ikey = orjson.loads((home / "config.json").read_bytes())["default_app"]["instrumentation_key"]

    def send(batch: int) -> int:
        response = httpx.post(f"{url}/v2.1/track", content=orjson.dumps(items(ikey, batch, 100)), timeout=30)
        assert response.status_code == 200
        return batch

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        accepted = list(pool.map(send, range(40)))
    server.kill()
    server, url = start_hub(home, tmp_path, backend)
    server.stop()
    messages = stored_messages(home, backend)
    assert len(messages) == len(set(messages)) == 40 * 100
    assert set(messages) == {f"b{b}-i{i}" for b in accepted for i in range(100)}


def test_keys_never_appear_in_the_hub_output(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    server, url = start_hub(home, tmp_path)
    try:
        default = orjson.loads((home / "config.json").read_bytes())["default_app"]
        ikey, api_key = default["instrumentation_key"], default["api_key"]
        unknown = "5ec12e7-0000-4000-8000-unknownkey42"
        with httpx.Client() as client:
            client.post(f"{url}/v2.1/track", content=orjson.dumps(items(ikey, 0, 3) + items(unknown, 1, 1)))
            client.post(f"{url}/v2.1/track", content=orjson.dumps(items(unknown, 2, 2)))
            client.post(f"{url}/v2.1/track", content=b'[{"iKey": "' + ikey.encode() + b'", "data": 5}]')
            client.post(f"{url}/v1/logs", content=b"\xff", headers={"x-instrumentation-key": ikey})
            client.post(f"{url}/v1/logs", content=b"{}", headers={"x-instrumentation-key": unknown,
                                                                 "content-type": "application/json"})
            query = f"{url}/v1/apps/{default['app_id']}/query"
            assert client.get(query, params={"query": "traces | count"},
                              headers={"x-api-key": api_key}).status_code == 200
            assert client.get(query, params={"query": "traces | where"},
                              headers={"x-api-key": api_key}).status_code == 400
            assert client.get(query, params={"query": "traces"},
                              headers={"x-api-key": api_key + "x"}).status_code == 403
    finally:
        server.stop()
    output = server.output()
    assert "Uvicorn running" in output  # the output was captured at all
    for secret in (ikey, api_key, unknown):
        assert secret not in output


@pytest.mark.parametrize("backend", BACKENDS)
def test_retention_on_start_removes_old_rows_only(tmp_path: Path, backend: str) -> None:
    skip_without(backend)
    home = tmp_path / "ws"
    server, _url = start_hub(home, tmp_path, backend)
    server.stop()
    app_id = orjson.loads((home / "config.json").read_bytes())["default_app"]["app_id"]
    now = datetime.now(UTC).replace(tzinfo=None)
    offline(home, backend, "write", [
        {"timestamp": now - timedelta(days=120), "message": "old", "appId": app_id},
        {"timestamp": now - timedelta(days=10), "message": "recent", "appId": app_id},
        {"timestamp": now - timedelta(days=120), "message": "other app", "appId": "someone-else"},
    ]) if backend != "duckdb" else _write_duckdb(home, app_id, now)
    server, _url = start_hub(home, tmp_path, backend)  # default retention: 90 days, applied on start
    server.stop()
    assert sorted(stored_messages(home, backend)) == ["other app", "recent"]


def _write_duckdb(home: Path, app_id: str, now: datetime) -> None:
    store = DuckDBStore(Workspace(home).store_dir / "telemetry.duckdb")
    store.write_batch("traces", [
        {"timestamp": now - timedelta(days=120), "message": "old", "appId": app_id},
        {"timestamp": now - timedelta(days=10), "message": "recent", "appId": app_id},
        {"timestamp": now - timedelta(days=120), "message": "other app", "appId": "someone-else"},
    ])
    store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_query_api_sees_one_application_only(tmp_path: Path, backend: str) -> None:
    from click.testing import CliRunner

    from scorewatch.ingest.cli import app as app_cli

    skip_without(backend)
    home = tmp_path / "ws"
    server, url = start_hub(home, tmp_path, backend)
    try:
        runner = CliRunner()
        apps = {}
        for name in ("alpha", "beta"):
            result = runner.invoke(app_cli, ["create", name, "--home", str(home), "--json"])
            assert result.exit_code == 0, result.output
            apps[name] = orjson.loads(result.output)
        body = (items(apps["alpha"]["instrumentation_key"], 1, 3)
                + items(apps["beta"]["instrumentation_key"], 2, 2))
        response = httpx.post(f"{url}/v2.1/track", content=orjson.dumps(body))
        assert response.json()["itemsAccepted"] == 5  # the hub picked up apps created while it runs

        def count(app: dict[str, Any], key: str) -> httpx.Response:
            return httpx.get(f"{url}/v1/apps/{app['app_id']}/query",
                             params={"query": "traces | count", "timespan": "P3650D"}, headers={"x-api-key": key})

        def wait_count(app: dict[str, Any], expected: int) -> None:
            for _ in range(200):
                response = count(app, app["api_key"])
                assert response.status_code == 200, response.text
                if response.json()["tables"][0]["rows"] == [[expected]]:
                    return
            raise AssertionError(response.text)

        wait_count(apps["alpha"], 3)
        wait_count(apps["beta"], 2)
        assert count(apps["alpha"], apps["beta"]["api_key"]).status_code == 403
        assert count(apps["beta"], apps["alpha"]["api_key"]).status_code == 403
        assert httpx.get(f"{url}/v1/apps/{apps['alpha']['app_id']}/query",
                         params={"query": "traces | count"}).status_code == 401
    finally:
        server.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_second_hub_on_the_same_workspace_is_a_clear_error(tmp_path: Path, backend: str) -> None:
    skip_without(backend)
    home = tmp_path / "ws"
    server, _url = start_hub(home, tmp_path, backend)
    store = ["--store", store_url(backend, tmp_path)] if backend != "duckdb" else []
    try:
        second = subprocess.run([sys.executable, "-m", "scorewatch", "hub", "--home", str(home),
                                 "--port", str(free_port()), *store], capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert second.returncode == 2
    assert "is a hub already running" in second.stderr and "Traceback" not in second.stderr


def test_what_the_hub_writes_is_private_to_the_workspace_owner(tmp_path: Path) -> None:
    """The store, its log, the registry and the quarantine: 0600 files in 0700 directories (they were
    0644 under 0755, readable by every local user)."""
    import os
    import stat

    home = tmp_path / "ws"
    server, url = start_hub(home, tmp_path)
    ikey = orjson.loads((home / "config.json").read_bytes())["default_app"]["instrumentation_key"]
    assert httpx.post(f"{url}/v2.1/track", content=orjson.dumps(items(ikey, 0, 3))).status_code == 200
    server.stop()
    found = []
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            mode = (Path(root) / name).stat().st_mode
            found.append(name)
            assert stat.S_IMODE(mode) & 0o077 == 0, f"{Path(root) / name} is {oct(stat.S_IMODE(mode))}"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert {"telemetry.duckdb", "wal", "config.json"} <= set(found)
