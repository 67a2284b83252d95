"""Hub replicas on one ClickHouse: any replica answers any request (one store, one set of
applications and keys), each writes its own stream of positions, one of them runs the export (every
item of every stream exported once), and a ClickHouse that goes away is a 503 with Retry-After at
ingest, never a lost item, and a clear error at start.

The hubs are real processes (``scorewatch hub`` with ``SCOREWATCH_STORE=clickhouse://...``); the
ClickHouse they share is chdb behind ClickHouse's HTTP interface (tests/clickhouse_http.py), as no
ClickHouse server can run here.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import httpx
import orjson
import pytest

from tests.backends import ClickHouse, have_chdb
from tests.export import readback
from tests.helpers import ServerProcess, free_port, wait_for_http, wait_until

pytestmark = pytest.mark.skipif(not have_chdb(), reason="chdb is not installed")


@pytest.fixture
def clickhouse(tmp_path: Path) -> Iterator[ClickHouse]:
    server = ClickHouse(tmp_path / "clickhouse").start()
    yield server
    server.stop()


class Replica:
    def __init__(self, home: Path, log_dir: Path, store: str) -> None:
        self.home, self.port = home, free_port()
        # quick rounds: a batch written within 20 ms, an export that caught up looks again every 0.5 s
        self.env = {"SCOREWATCH_STORE": store, "SCOREWATCH_INGEST_LINGER_MS": "20", "SCOREWATCH_EXPORT_INTERVAL_S": "0.5"}
        self.server = ServerProcess(["hub", "--home", str(home), "--port", str(self.port)], log_dir=log_dir,
                                    env=self.env)
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> Replica:
        self.server.start()
        try:
            wait_for_http(self.url + "/health", proc=self.server.proc, expect_status=200, timeout=60)
        except Exception:
            self.server.stop()
            raise AssertionError(self.server.output()) from None
        return self

    @property
    def default(self) -> dict[str, Any]:
        return orjson.loads((self.home / "config.json").read_bytes())["default_app"]

    def health(self) -> dict[str, Any]:
        return httpx.get(self.url + "/health").json()

    def send(self, ikey: str, tag: str, n: int) -> httpx.Response:
        return httpx.post(f"{self.url}/v2.1/track", content=orjson.dumps(items(ikey, tag, n)), timeout=30)

    def count(self, app: dict[str, Any], kql: str = "traces | count") -> int:
        response = httpx.get(f"{self.url}/v1/apps/{app['app_id']}/query", params={"query": kql, "timespan": "P30D"},
                             headers={"x-api-key": app["api_key"]}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["tables"][0]["rows"][0][0]

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "scorewatch", *args, "--home", str(self.home)],
                              env={**self.server.env}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
def replicas(tmp_path: Path, clickhouse: ClickHouse) -> Iterator[Callable[[str], Replica]]:
    started: list[Replica] = []

    def start(name: str) -> Replica:
        replica = Replica(tmp_path / name, tmp_path, clickhouse.url).start()
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.server.stop()


def items(ikey: str, tag: str, n: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    return [{"time": now, "iKey": ikey, "data": {"baseType": "MessageData", "baseData": {"message": f"{tag}-{i}"}}}
            for i in range(n)]


def eventually(check: Callable[[], Any], what: str | Callable[[], str], timeout: float = 30.0) -> Any:
    return wait_until(check, timeout, what)


def test_any_replica_answers_any_request(replicas: Callable[[str], Replica]) -> None:
    a, b = replicas("a"), replicas("b")
    assert {a.health()["stream"], b.health()["stream"]} == {0, 1}  # a stream of positions each
    assert a.default["app_id"] == b.default["app_id"]  # one default application, in ClickHouse
    ikey = a.default["instrumentation_key"]
    assert a.send(ikey, "a", 300).status_code == 200
    assert b.send(ikey, "b", 200).status_code == 200
    for replica in (a, b):  # each sees what both stored, with its own API key
        eventually(lambda replica=replica: replica.count(replica.default) == 500, "500 traces seen")
    alpha = orjson.loads(a.cli("app", "create", "alpha", "--json"))  # made through one replica's workspace...
    eventually(lambda: b.send(alpha["instrumentation_key"], "alpha", 5).status_code == 200,
               "the other replica taking the new application's key")
    assert eventually(lambda: a.count(alpha) == 5, "alpha's rows") and b.count(alpha) == 5
    assert not (b.home / "apps.json").exists()  # nothing of the shared state in a replica's files


def test_one_replica_exports_every_stream_once(tmp_path: Path, replicas: Callable[[str], Replica]) -> None:
    a, b = replicas("a"), replicas("b")
    ikey = a.default["instrumentation_key"]
    a.send(ikey, "before-a", 100)
    b.send(ikey, "before-b", 100)
    out = tmp_path / "out"
    a.cli("export", "add", "r", "--to", f"file://{out}", "--format", "parquet", "--from-beginning")
    eventually(lambda: [a.health()["runs_export"], b.health()["runs_export"]].count(True) == 1, "one exporter")
    a.send(ikey, "after-a", 150)
    b.send(ikey, "after-b", 50)

    def exported() -> list[str]:
        return readback.item_ids(readback.files(fsspec.filesystem("file"), str(out)), "parquet") if out.exists() else []

    ids = eventually(lambda: (found := exported()) and len(found) >= 400 and found, "400 rows exported", 60)
    time.sleep(1.5)  # three rounds more: nothing is exported twice
    ids = exported()
    assert len(ids) == len(set(ids)) == 400 == a.count(a.default)
    show = orjson.loads(b.cli("export", "show", "r", "--json"))  # any replica's workspace shows it
    assert show["items"] == 400


def test_a_clickhouse_that_goes_away_is_503_then_nothing_is_lost(clickhouse: ClickHouse,
                                                                  replicas: Callable[[str], Replica]) -> None:
    a = replicas("a")
    ikey = a.default["instrumentation_key"]
    assert a.send(ikey, "up", 100).status_code == 200
    eventually(lambda: a.count(a.default) == 100, "100 traces")
    clickhouse.stop()
    accepted, refused = 0, None
    deadline = time.monotonic() + 60
    while refused is None and time.monotonic() < deadline:  # what is answered 200 is in the log
        response = a.send(ikey, f"down{accepted}", 10)
        if response.status_code == 200:
            accepted += 1
        else:
            refused = response
        time.sleep(0.1)
    assert refused is not None and refused.status_code == 503 and refused.headers.get("retry-after"), refused
    assert "store cannot write" in refused.json()["error"]["message"]
    assert a.health()["store_unavailable"]
    clickhouse.start()  # the same data directory
    eventually(lambda: a.send(ikey, "back", 10).status_code == 200, "ingest resuming", 60)
    expected = 100 + 10 * accepted + 10
    eventually(lambda: a.count(a.default) == expected, lambda: f"{expected} traces, none lost (found {a.count(a.default)})", 60)
    assert a.count(a.default, "traces | summarize dcount(message)") == expected  # none twice
    assert "Traceback" not in a.server.output()


def test_an_unreachable_clickhouse_is_a_clear_error_at_start(tmp_path: Path) -> None:
    env = {"SCOREWATCH_STORE": f"clickhouse://127.0.0.1:{free_port()}/telemetry?connect_timeout=1"}
    done = subprocess.run([sys.executable, "-m", "scorewatch", "hub", "--home", str(tmp_path / "ws"),
                           "--port", str(free_port())], env={**__import__("os").environ, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "cannot reach the store clickhouse://127.0.0.1" in done.stderr and "Traceback" not in done.stderr
