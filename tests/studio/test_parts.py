"""The studio's parts on their own: KQL building, login tokens and sessions, the live tap and leases,
service processes, the transaction's layout, the no-login setting and `scorewatch studio`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette

from scorewatch.apps import Application
from scorewatch.deploy.records import Deployment, ServiceSpec, ServiceStatus
from scorewatch.errors import BadRequest
from scorewatch.kql import compile_query
from scorewatch.studio import queries
from scorewatch.studio.app import studio_routes
from scorewatch.studio.auth import Sessions, consume_login_token, issue_login_token, tokens_dir
from scorewatch.studio.cli import studio
from scorewatch.studio.live import LiveHub, duration_ms
from scorewatch.studio.processes import ProcessSampler, service_processes
from scorewatch.studio.transaction import blob_digests, timeline
from scorewatch.telemetry.control import live_path, state_path
from scorewatch.workspace import Workspace
from tests.ingest.conftest import running_hub

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def in_own_loop(scenario: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``scenario()`` on an event loop of its own thread (the browser tests' Playwright keeps one
    running in this thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, scenario()).result()


# ------------------------------------------------------------------ queries
@pytest.mark.parametrize("text", ['plain', 'quo"te', "back\\slash", "new\nline\ttab", "ctl\x01\x7f", "é ✓ 😀",
                                  '" or true or "', "\ud800lone"])
def test_a_value_becomes_a_literal_that_holds_exactly_it(text: str) -> None:
    compiled = compile_query(f"print v = {queries.kql_string(text)}")
    expected = text.replace("\ud800", "\ufffd")
    assert compiled.columns == [("v", "string")]
    import duckdb

    assert duckdb.sql(compiled.sql).fetchall() == [(expected,)]


def test_filters_from_the_url() -> None:
    f = queries.Filters.parse({"range": "PT6H", "service": "svc", "instance": "i-1", "operation": "POST /x"}, NOW,
                              extra=("operation",))
    assert (f.start, f.end, f.grain) == (datetime(2024, 5, 1, 6, 0, tzinfo=UTC), NOW, "5m")
    assert f.where() == ' | where cloud_RoleName == "svc" and cloud_RoleInstance == "i-1"'
    assert f.params(operation=None, q="x") == {"range": "PT6H", "service": "svc", "instance": "i-1", "q": "x"}
    custom = queries.Filters.parse({"range": "custom", "start": "2024-04-01T00:00", "end": "2024-04-20T00:00"}, NOW)
    assert custom.range == "2024-04-01T00:00/2024-04-20T00:00" and custom.grain == "6h"
    assert queries.Filters.parse({}, NOW).range == "P1D"
    for params in ({"range": "soon"}, {"range": "custom", "end": "2024-04-01"}, {"service": "s" * 1001}):
        with pytest.raises(BadRequest):
            queries.Filters.parse(params, NOW)


def test_every_page_s_kql_compiles() -> None:
    f = queries.Filters.parse({"service": "svc", "operation": "op", "q": "text", "failed": "1"}, NOW,
                              extra=("operation", "q", "failed"))
    built = {**queries.overview(f), **queries.performance(f), **queries.failures(f),
             **queries.search(f, ["request", "trace"]), **queries.search(f, []), **queries.model_data(f),
             **queries.transaction("op-1"), **queries.filter_choices()}
    for name in ("code", "exception", "dependency"):
        built.update({f"failures-{name}": queries.failures(queries.Filters.parse({name: "x"}, NOW, extra=(name,)))[
            "samples"]})
    for name, kql in built.items():
        assert compile_query(kql, app_id=("a", "b"), timespan=f.span, now=NOW).sql, name


def test_search_windows_go_back_from_the_end_and_cover_the_range_once() -> None:
    week = queries.Filters.parse({"range": "P7D"}, NOW)
    windows = queries.search_windows(week)
    assert windows[0] == (NOW - timedelta(hours=1), NOW) and windows[-1][0] == week.start
    assert [end - start for start, end in windows[:4]] == \
        [timedelta(hours=h) - timedelta(microseconds=0 if h == 1 else 1) for h in (1, 3, 12, 48)]
    for (start, _), (_, end) in zip(windows, windows[1:], strict=False):
        assert start - end == timedelta(microseconds=1)  # spans hold both ends: none is read twice
    assert queries.search_windows(queries.Filters.parse({"range": "PT30M"}, NOW)) == [(NOW - timedelta(minutes=30), NOW)]


# ------------------------------------------------------------------ tokens and sessions
def test_a_login_token_works_once_and_not_after_it_runs_out(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws")
    token = issue_login_token(workspace)
    assert token not in str(list(tokens_dir(workspace).iterdir()))  # kept as its digest only
    assert oct(tokens_dir(workspace).stat().st_mode & 0o777) == "0o700"
    assert consume_login_token(workspace, token) is True
    assert consume_login_token(workspace, token) is False
    stale = issue_login_token(workspace, ttl_s=-1)
    assert consume_login_token(workspace, stale) is False
    for bad in ("", "../../config.json", "short", "x" * 500):
        assert consume_login_token(workspace, bad) is False
    issue_login_token(workspace, ttl_s=-1)
    issue_login_token(workspace)  # forgets the tokens that ran out
    assert len(list(tokens_dir(workspace).iterdir())) == 1


def test_sessions_expire_when_idle_and_the_oldest_go_past_the_limit() -> None:
    sessions = Sessions(idle_s=60, limit=2)
    first, second = sessions.create(["a"], "key"), sessions.create(None, "token")
    assert first.id != second.id and first.csrf != first.id
    sessions.create(["b"], "key")
    assert sessions.get(first.id) is None and sessions.get(second.id) is second
    second.seen -= 61
    assert sessions.get(second.id) is None
    assert sessions.get(None) is None and sessions.get("nope") is None


def test_the_studio_command_prints_a_link_that_logs_in(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    Workspace(home).ensure().update_config(hub_url="http://127.0.0.1:9999")
    result = CliRunner().invoke(studio, ["--home", str(home)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("http://127.0.0.1:9999/studio/login?token=")
    assert consume_login_token(Workspace(home), result.output.strip().rsplit("=", 1)[1])
    missing = CliRunner().invoke(studio, ["--home", str(tmp_path / "none")])
    assert missing.exit_code != 0 and "no scorewatch workspace" in str(missing.exception)


def test_without_the_setting_nobody_gets_in_without_a_login_and_with_it_only_from_loopback(tmp_path: Path) -> None:
    with running_hub(tmp_path / "closed") as hub:
        assert httpx.get(f"{hub.url}/studio/default/overview.json").status_code == 401
    with running_hub(tmp_path / "open", studio_local_no_login=True) as hub:
        page = httpx.get(f"{hub.url}/studio/default/overview.json")
        assert page.status_code == 200 and "scorewatch_studio=" in page.headers["set-cookie"]
        # The same studio asked from another address: a login it is.
        transport = httpx.ASGITransport(app=Starlette(routes=studio_routes(hub.hub)), client=("192.0.2.7", 40000))

        async def from_elsewhere() -> int:
            async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
                return (await client.get("/studio/default/overview.json")).status_code

        assert in_own_loop(from_elsewhere) == 401


# ------------------------------------------------------------------ live metrics
class _Ingestor:
    def __init__(self) -> None:
        self.taps: list[Any] = []


class _Accepted:
    def __init__(self, items: list[tuple[str, Application, Any]]) -> None:
        self.lines = [env if isinstance(env, bytes) else orjson.dumps(env) for _, _, env in items]
        self.base_types = [bt for bt, _, _ in items]
        self.apps = [app for _, app, _ in items]


def _app(app_id: str) -> Application:
    return Application(name=app_id, app_id=app_id, instrumentation_key=f"ikey-{app_id}", retention_days=1)


def _env(base_type: str, role: str, **base: Any) -> dict[str, Any]:
    return {"time": "2024-05-01T10:00:00.000000Z", "tags": {"ai.cloud.role": role, "ai.operation.id": "op"},
            "data": {"baseType": base_type, "baseData": base}}


def test_the_tap_counts_each_viewer_s_own_items_and_is_there_only_while_someone_watches(tmp_path: Path) -> None:
    async def scenario() -> None:
        ingestor = _Ingestor()
        live = LiveHub(Workspace(tmp_path / "ws"), ingestor)
        assert ingestor.taps == []
        a_all = live.watch(frozenset({"a"}))
        a_svc = live.watch(frozenset({"a"}), service="svc")
        assert ingestor.taps == [live.tap]
        a, b = _app("a"), _app("b")
        live.tap(_Accepted([
            ("RequestData", a, _env("RequestData", "svc", duration="00:00:00.0200000", success=True, responseCode="200")),
            ("RequestData", a, _env("RequestData", "other", duration=30, success=False, responseCode="500", name="POST /x")),
            ("RequestData", b, _env("RequestData", "svc", duration=5, success=False, responseCode="500")),
            ("ExceptionData", a, _env("ExceptionData", "svc", exceptions=[{"typeName": "ValueError", "message": "m"}])),
            ("RemoteDependencyData", a, _env("RemoteDependencyData", "svc", duration=4, success=False, resultCode="503")),
            ("MessageData", a, _env("MessageData", "svc", message="print")),
        ]))
        live.tap(_Accepted([("RequestData", a, {"not": "an envelope"})]))
        live.tap(_Accepted([("RequestData", a, b"{broken")]))
        everything = a_all.take()
        assert (everything["requests"], everything["failed"], everything["avg_duration_ms"]) == (3, 1, 16.67)
        assert (everything["dependencies"], everything["dependency_failed"], everything["exceptions"]) == (1, 1, 1)
        assert [(f["kind"], f.get("name") or f.get("type")) for f in everything["feed"]] == [
            ("request", "POST /x"), ("exception", "ValueError")]
        service = a_svc.take()
        assert (service["requests"], service["failed"], service["exceptions"]) == (1, 0, 1)
        assert a_all.take()["requests"] == 0  # taken: counted once
        live.leave(a_all)
        live.leave(a_svc)
        assert ingestor.taps == []

    in_own_loop(scenario)


def test_leases_are_held_while_someone_watches_and_ended_after(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws").ensure()
    state_path(workspace.services_dir, "svc-5001").write_text("{}")
    lease = live_path(workspace.services_dir, "svc-5001")

    def until() -> float:
        return float(orjson.loads(lease.read_bytes())["until"]) if lease.exists() else -1.0

    async def scenario() -> None:
        live = LiveHub(workspace, _Ingestor())
        viewer = live.watch(frozenset({"a"}))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if until() > time.time():
                break
        assert until() > time.time() + 10
        live.leave(viewer)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if until() == 0:
                break
        assert until() == 0

    in_own_loop(scenario)


def test_durations_in_every_form_the_track_protocol_has() -> None:
    assert duration_ms("0.00:00:00.058") == pytest.approx(58)
    assert duration_ms("00:00:01.5000000") == pytest.approx(1500)
    assert duration_ms("1.00:00:00") == 86_400_000
    assert (duration_ms(12.5), duration_ms("7"), duration_ms("x"), duration_ms(None), duration_ms(True)) == \
        (12.5, 7.0, 0.0, 0.0, 0.0)


def test_service_processes_are_the_running_workers_and_are_measured(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws").ensure()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (workspace.services_dir / f"my.svc-5001.{os.getpid()}.exporter.json").write_text("{}")
        (workspace.services_dir / f"gone-5002.{child.pid + 10_000_000}.exporter.json").write_text("{}")
        found = service_processes(workspace)
        assert [(p.service, p.pid) for p in found] == [("my.svc-5001", os.getpid())]
        [sample] = ProcessSampler().sample(found)
        assert sample["pid"] == os.getpid() and sample["memory_mb"] > 10 and sample["cpu_percent"] >= 0
    finally:
        child.kill()
        child.wait()


def test_a_deployment_s_processes_come_from_its_record_and_a_reused_pid_is_not_taken(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws").ensure()
    me, started = os.getpid(), psutil.Process().create_time()

    def deployment(name: str, port: int, started: float, others: list[list[float]] | None = None) -> Deployment:
        return Deployment(ServiceSpec(name, "/app/score.py"),
                          ServiceStatus(pid=me, started=started, port=port, others=others or []))

    serving = deployment("svc-a", 5003, started)
    reused = deployment("svc-b", 5004, started - 100)  # the recorded process ended; its pid is another's now
    rolling = deployment("svc-c", 5005, started - 100, others=[[me, started]])  # a new process starting
    (workspace.services_dir / f"svc-a-5003.{me}.exporter.json").write_text("{}")  # its worker: counted once
    (workspace.services_dir / f"by-hand-5006.{me}.exporter.json").write_text("{}")  # `scorewatch serve`
    found = service_processes(workspace, [(serving, "app-1"), (reused, "app-1"), (rolling, "app-2")])
    assert [(p.service, p.pid, p.app_id) for p in found] == [
        ("svc-a-5003", me, "app-1"), ("svc-c-5005", me, "app-2"), ("by-hand-5006", me, None)]


# ------------------------------------------------------------------ one transaction
def test_the_timeline_places_calls_under_their_request() -> None:
    spans = [{"timestamp": "2024-05-01T10:00:00.000000Z", "itemType": "request", "id": "r", "name": "POST /score",
              "duration": 100.0, "success": True},
             {"timestamp": "2024-05-01T10:00:00.050000Z", "itemType": "dependency", "id": "d",
              "operation_ParentId": "r", "name": "GET /x", "duration": 0.0, "success": False},
             {"timestamp": None, "itemType": "dependency"}]
    laid = timeline(spans)
    assert laid["total_ms"] == 100
    request, call = laid["bars"]
    assert (request["left"], request["width"], request["depth"]) == (0, 100, 0)
    assert (call["left"], call["width"], call["depth"]) == (50, 0.4, 1)
    assert timeline([]) == {"total_ms": 0, "bars": []}


def test_blobs_are_found_in_custom_dimensions_and_messages() -> None:
    marker = {"blob": "sha256:" + "ab" * 32, "size": 10}
    items = [{"customDimensions": {"Input": marker, "Prediction": "[1]"}},
             {"message": orjson.dumps({"blob": "sha256:" + "cd" * 32}).decode()},
             {"customDimensions": {"nested": [{"x": {"blob": "not-a-blob"}}]}},
             {"customDimensions": "{not json"}]
    assert blob_digests(items) == {"ab" * 32, "cd" * 32}
