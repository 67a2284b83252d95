"""Export run by the hub: rules followed as they change, numbers on /metrics and in `export show`,
retention that waits for them, and exactly once across SIGKILL of the hub and a target outage."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fsspec
import httpx
import orjson
import pytest
from click.testing import CliRunner

from scorewatch.export.cli import export
from scorewatch.export.rules import RuleBook
from scorewatch.store.duckdb import DuckDBStore
from scorewatch.workspace import Workspace
from tests.export import readback
from tests.export.servers import Azurite
from tests.helpers import ServerProcess, free_port, wait_for_http, wait_until
from tests.ingest.conftest import RunningHub, running_hub


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(export, [*args, "--home", str(home)], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def metric(text: str, name: str, rule: str = "r") -> float | None:
    prefix = f'{name}{{rule="{rule}",app="default"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return None


def post(url: str, ikey: str, messages: list[str], client: httpx.Client | None = None) -> None:
    now = datetime.now(UTC).isoformat()
    body = orjson.dumps([{"time": now, "iKey": ikey, "data": {"baseType": "MessageData",
                                                              "baseData": {"message": m}}} for m in messages])
    response = (client or httpx).post(f"{url}/v2.1/track", content=body, timeout=30)  # type: ignore[attr-defined]
    assert response.status_code == 200, response.text


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[RunningHub]:
    with running_hub(tmp_path / "ws", export_interval_s=0.2) as running:
        yield running


def exported(root: Path, fmt: str) -> Counter[str]:
    return Counter(readback.item_ids(readback.files(fsspec.filesystem("file"), str(root)), fmt))


def stored(hub: RunningHub) -> Counter[str]:
    return Counter(r[0] for r in hub.rows("SELECT itemId FROM traces"))


def test_the_hub_follows_its_rules(hub: RunningHub, tmp_path: Path) -> None:
    home, out = hub.workspace.home, tmp_path / "out"
    cli(home, "add", "r", "--to", str(out), "--format", "parquet", "--tables", "traces")
    wait_until(lambda: (home / "exports").exists() and any((home / "exports").iterdir()), what="the rule starts")
    post(hub.url, hub.ikey, [f"a{i}" for i in range(50)])
    wait_until(lambda: exported(out, "parquet") == stored(hub), what="the items exported")

    text = httpx.get(f"{hub.url}/metrics").text
    assert metric(text, "scorewatch_export_items_total") == 50
    assert metric(text, "scorewatch_export_files_written_total") == len(list(out.rglob("*.parquet")))
    assert metric(text, "scorewatch_export_bytes_written_total") == sum(p.stat().st_size for p in out.rglob("*.parquet"))
    assert metric(text, "scorewatch_export_failures_total") == 0 and metric(text, "scorewatch_export_paused") == 0
    wait_until(lambda: metric(httpx.get(f"{hub.url}/metrics").text, "scorewatch_export_lag_items") == 0)
    shown = cli(home, "show", "r")
    assert "exported:     50 rows in" in shown and "lag:          0 rows, 0.0 s" in shown

    cli(home, "pause", "r")
    wait_until(lambda: metric(httpx.get(f"{hub.url}/metrics").text, "scorewatch_export_paused") == 1)
    time.sleep(0.5)  # the runner of the paused rule finishes its round and stops
    post(hub.url, hub.ikey, [f"b{i}" for i in range(20)])
    hub.hub.ingestor.flush()
    time.sleep(1.0)
    assert sum(exported(out, "parquet").values()) == 50  # paused: nothing more goes out
    wait_until(lambda: metric(httpx.get(f"{hub.url}/metrics").text, "scorewatch_export_lag_items") == 20,
               what="the paused rule's lag counted")
    cli(home, "resume", "r")
    wait_until(lambda: exported(out, "parquet") == stored(hub), what="the paused items exported after resume")

    rule_id = RuleBook(home / "exports.json").get("r").id
    cli(home, "remove", "r")
    wait_until(lambda: not (home / "exports" / rule_id).exists(), what="the state of the removed rule gone")
    assert 'rule="r"' not in httpx.get(f"{hub.url}/metrics").text


def _old(hub: RunningHub, count: int, days: int = 40) -> None:
    when = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=days)
    hub.hub.store.write_batch("traces", [{"timestamp": when, "message": f"old{i}", "appId": hub.default["app_id"],
                                          "itemId": f"old-{i}"} for i in range(count)])


def test_retention_waits_for_a_paused_rule_up_to_the_limit(hub: RunningHub, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    home = hub.workspace.home
    cli(home, "add", "r", "--to", str(tmp_path / "out"), "--from-beginning")
    cli(home, "pause", "r")
    wait_until(lambda: metric(httpx.get(f"{hub.url}/metrics").text, "scorewatch_export_paused") == 1)
    _old(hub, 5)
    hub.hub.registry.set_retention("default", 30)
    assert hub.hub.apply_retention() == 0  # paused for less than export_pause_limit_days: kept
    assert len(stored(hub)) == 5

    long_ago = (datetime.now(UTC) - timedelta(days=8)).isoformat(timespec="seconds")
    RuleBook(home / "exports.json").update("r", paused_at=long_ago)
    with caplog.at_level(logging.ERROR, "scorewatch.export"):
        assert hub.hub.apply_retention() == 5
    assert "past the 7-day limit: retention deletes 5 rows of default it has not exported" in caplog.text
    text = httpx.get(f"{hub.url}/metrics").text
    assert metric(text, "scorewatch_export_retention_overridden") == 1
    assert metric(text, "scorewatch_export_rows_expired_unexported_total") == 5
    assert 'scorewatch_retention_rows_deleted_total{app="default"} 5' in text


def test_retention_keeps_rows_an_active_rule_has_not_exported(hub: RunningHub, tmp_path: Path) -> None:
    home = hub.workspace.home
    out = tmp_path / "out"
    (tmp_path / "blocked").write_text("a file where the rule's folder should be")
    cli(home, "add", "r", "--to", str(out), "--from-beginning")
    RuleBook(home / "exports.json").update("r", url=f"file://{tmp_path / 'blocked' / 'out'}")  # it now fails
    _old(hub, 5)
    wait_until(lambda: (metric(httpx.get(f"{hub.url}/metrics").text, "scorewatch_export_failures_total") or 0) >= 1,
               what="the rule failing")
    hub.hub.registry.set_retention("default", 30)
    assert hub.hub.apply_retention() == 0
    assert len(stored(hub)) == 5


# -- the hub as its own process: SIGKILL and target outages ---------------------------------------------


class Stream:
    """A steady stream of items into the hub (the same URL across restarts; a refused or unanswered
    batch is sent again, so a batch may be stored twice: the store is what the target must match)."""

    def __init__(self, url: str, ikey: str) -> None:
        self.url, self.ikey = url, ikey
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        batch = 0
        with httpx.Client() as client:
            while not self._stop.is_set():
                try:
                    post(self.url, self.ikey, [f"s{batch}-{i}" for i in range(50)], client)
                except (httpx.HTTPError, AssertionError):
                    time.sleep(0.2)  # the hub is down: the same batch again
                    continue
                self.accepted += 50
                batch += 1
                time.sleep(0.01)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def wait_for(self, more: int, timeout: float = 60.0) -> None:
        target = self.accepted + more
        wait_until(lambda: self.accepted >= target, timeout, f"{more} more items accepted")


class HubProcess:
    """``scorewatch hub`` in its own process, restartable on the same port."""

    def __init__(self, home: Path, log_dir: Path, env: dict[str, str]) -> None:
        self.home, self.log_dir, self.port = home, log_dir, free_port()
        self.env = {"SCOREWATCH_EXPORT_INTERVAL_S": "0.2", "SCOREWATCH_EXPORT_RETRY_MAX_S": "2",
                    "SCOREWATCH_INGEST_LINGER_MS": "50", **env}
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: ServerProcess | None = None
        self.logs: list[str] = []

    def start(self) -> HubProcess:
        self.server = ServerProcess(["hub", "--home", str(self.home), "--port", str(self.port)],
                                    log_dir=self.log_dir, env=self.env).start()
        wait_for_http(self.url + "/health", proc=self.server.proc, expect_status=200, timeout=60)
        return self

    def kill(self) -> None:
        assert self.server is not None
        self.server.kill()
        self.logs.append(self.server.output())

    def stop(self) -> None:
        if self.server is not None and self.server.proc is not None and self.server.proc.poll() is None:
            self.server.stop(60)
            self.logs.append(self.server.output())
        self.server = None

    @property
    def ikey(self) -> str:
        return orjson.loads((self.home / "config.json").read_bytes())["default_app"]["instrumentation_key"]

    def caught_up(self) -> None:
        """Everything accepted is stored and exported (lag 0, seen twice a second apart)."""
        def lag() -> float | None:
            text = httpx.get(f"{self.url}/metrics", timeout=10).text
            queued = float(text.split("\nscorewatch_ingest_queue_items ")[1].split("\n")[0])
            return metric(text, "scorewatch_export_lag_items") if queued == 0 else None

        for _ in range(2):
            wait_until(lambda: lag() == 0, 120, "the export caught up")
            time.sleep(1.0)

    def stored_ids(self) -> Counter[str]:
        store = DuckDBStore(Workspace(self.home).store_dir / "telemetry.duckdb")
        try:
            return Counter(r[0] for r in store.query("SELECT itemId FROM traces").rows)
        finally:
            store.close()


def wait_for_a_round_being_written(home: Path, timeout: float = 10.0) -> None:
    """Until a rule's checkpoint shows a round whose files are being written (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in (home / "exports").glob("*/checkpoint.json"):
            try:
                if orjson.loads(path.read_bytes())["pending"]:
                    return
            except (OSError, orjson.JSONDecodeError):
                pass
        time.sleep(0.001)


@pytest.mark.slow
def test_sigkill_of_the_hub_twice_mid_stream_exports_every_item_once(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "ws", tmp_path, {"SCOREWATCH_EXPORT_MAX_ITEMS": "300"}).start()
    out = tmp_path / "out"
    try:
        cli(hub.home, "add", "r", "--to", str(out), "--format", "appinsights", "--from-beginning")
        killed_mid_round = 0
        with Stream(hub.url, hub.ikey) as stream:
            for _ in range(2):
                stream.wait_for(3000)
                wait_for_a_round_being_written(hub.home)
                hub.kill()  # SIGKILL, mid-stream, and (most often) between a round's two checkpoints
                killed_mid_round += any(orjson.loads(c.read_bytes())["pending"]
                                        for c in (hub.home / "exports").glob("*/checkpoint.json"))
                hub.start()
            stream.wait_for(2000)
        hub.caught_up()
        hub.stop()
        assert killed_mid_round >= 1  # the redo of an interrupted round was exercised
        in_store = hub.stored_ids()
        assert len(in_store) >= 8000 and max(in_store.values()) == 1
        assert exported(out, "appinsights") == in_store  # every stored item, exactly once
    finally:
        hub.stop()


@pytest.mark.slow
def test_azurite_down_for_30s_then_back_every_item_once(tmp_path: Path) -> None:
    azurite = Azurite(tmp_path, location=tmp_path / "azurite-data").start()
    container = "c" + uuid.uuid4().hex[:12]
    azurite.filesystem().mkdir(container)
    env = {"SCOREWATCH_EXPORT_AZURE_CONNECTION_STRING": azurite.connection_string()}
    hub = HubProcess(tmp_path / "ws", tmp_path, env).start()
    try:
        cli(hub.home, "add", "r", "--to", f"az://{container}/diag", "--format", "diagnostic", "--from-beginning",
            env=env)
        with Stream(hub.url, hub.ikey) as stream:
            stream.wait_for(2000)
            azurite.stop()  # the target goes away for 30 s while items keep coming
            down_until = time.monotonic() + 30
            wait_until(lambda: (metric(httpx.get(f"{hub.url}/metrics").text, "scorewatch_export_failures_total")
                                or 0) >= 1, 30, "the export failing")
            stream.wait_for(500)


            def waiting() -> str | None:  # the metrics once the lag shows items waiting for the target
                text = httpx.get(f"{hub.url}/metrics").text
                return text if (metric(text, "scorewatch_export_lag_seconds") or 0) > 0 else None

            assert (metric(wait_until(waiting, 20, "the lag growing"), "scorewatch_export_lag_items") or 0) > 0
            time.sleep(max(0.0, down_until - time.monotonic()))
            azurite.start()
            stream.wait_for(1000)
        hub.caught_up()
        text = httpx.get(f"{hub.url}/metrics").text
        hub.stop()
        assert (metric(text, "scorewatch_export_failures_total") or 0) >= 1
        output = "\n".join(hub.logs)
        assert "export rule r:" in output and azurite.connection_string() not in output
        assert "AccountKey" not in output
        in_store = hub.stored_ids()
        files = readback.files(azurite.filesystem(), f"{container}/diag")
        assert Counter(readback.item_ids(files, "diagnostic")) == in_store
        assert all(name.endswith("/m=00/PT1H.json") for name in files)
    finally:
        hub.stop()
        azurite.stop()
