"""The seam with telemetry: what a monitor passed to create_app is told, and when."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from scorewatch.scoring.app import create_app
from scorewatch.scoring.config import ServeConfig
from scorewatch.settings import Settings
from tests.helpers import serve_in_thread, wait_for_http
from tests.scoring.conftest import SCRIPTS


@pytest.fixture(autouse=True)
def _restore_import_system() -> Iterator[None]:
    # The app installs the azureml shim finder in this (test) process; leave nothing behind.
    import sys

    finders = list(sys.meta_path)
    yield
    sys.meta_path[:] = finders


class Finished:
    """The facts one request_finished call was given, by name."""

    def __init__(self, operation: Any, scope: dict[str, Any], start_ts: float, duration_ms: float, status_code: int,
                 input: bytes | str, output: bytes | str | None, exception: BaseException | None) -> None:
        self.operation, self.scope, self.start_ts, self.duration_ms = operation, scope, start_ts, duration_ms
        self.status_code, self.input, self.output, self.exception = status_code, input, output, exception
        self.headers = {name.decode(): value.decode() for name, value in scope["headers"]}


class RecordingMonitor:
    active = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.finished = threading.Event()

    def worker_started(self) -> None:
        self.calls.append(("worker_started", None))

    def request_finished(self, *facts: Any) -> None:
        self.calls.append(("request_finished", Finished(*facts)))
        self.finished.set()

    def exception(self, exc: BaseException, *, during: str) -> None:
        self.calls.append(("exception", (type(exc).__name__, during)))

    def routes(self) -> list[Route]:
        return [Route("/monitor/ping", lambda request: PlainTextResponse("pong"))]

    def metrics_text(self) -> str:
        return "recording_monitor_up 1\n"

    def shutdown(self, timeout_s: float) -> None:
        self.calls.append(("shutdown", timeout_s))


@pytest.fixture()
def monitored(tmp_path: Path) -> Iterator[tuple[str, RecordingMonitor]]:
    monitor = RecordingMonitor()
    config = ServeConfig(entry_script=SCRIPTS / "slow" / "score.py", model_dir=None,
                         settings=Settings(home=tmp_path, scoring_timeout_ms=500))
    with serve_in_thread(create_app(config, monitor=monitor)) as url:
        wait_for_http(f"{url}/health/ready", expect_status=200)
        yield url, monitor


def _next_finished(monitor: RecordingMonitor) -> Finished:
    assert monitor.finished.wait(10)
    monitor.finished.clear()
    return [c for c in monitor.calls if c[0] == "request_finished"][-1][1]


def test_monitor_sees_every_request_with_its_input_output_and_operation(
        monitored: tuple[str, RecordingMonitor]) -> None:
    url, monitor = monitored
    assert monitor.calls[0] == ("worker_started", None)
    trace = "0af7651916cd43dd8448eb211c80319c"
    r = httpx.post(f"{url}/score", json={"sleep": 0}, headers={
        "traceparent": f"00-{trace}-b7ad6b7169203331-01", "x-ms-client-request-id": "c-1"})
    done = _next_finished(monitor)
    assert (done.status_code, done.scope["method"], done.scope["path"]) == (200, "POST", "/score")
    assert done.operation.name == "POST /score"  # the operation's name is the app's to give
    assert done.input == b'{"sleep":0}' and done.output == r.content
    assert done.operation.operation_id == trace
    assert done.operation.extra["parent_span_id"] == "b7ad6b7169203331"
    assert done.operation.request_id == r.headers["x-request-id"] and done.operation.client_request_id == "c-1"
    assert done.duration_ms > 0 and abs(done.start_ts - time.time()) < 60
    assert done.headers["x-ms-client-request-id"] == "c-1" and done.headers["traceparent"].startswith("00-")

    bad = httpx.post(f"{url}/score", content=b'{"sleep": "x"}')
    failed = _next_finished(monitor)
    assert failed.status_code == 500
    assert failed.output == bad.content and failed.exception is not None
    assert ("exception", ("TypeError", "run")) in monitor.calls

    assert httpx.post(f"{url}/score", json={"sleep": 2}).status_code == 504
    assert _next_finished(monitor).status_code == 504

    assert httpx.get(f"{url}/score", params={"sleep": "0"}).status_code == 200
    got = _next_finished(monitor)
    assert got.input == '{"sleep": 0}' and got.operation.name == "GET /score"  # the text run() got, as Azure passes it

    assert httpx.post(f"{url}/score", json={"sleep": 0}, headers={"x-request-id": "r" * 101}).status_code == 431
    assert _next_finished(monitor).status_code == 431


def test_monitor_routes_and_metrics_are_served(monitored: tuple[str, RecordingMonitor]) -> None:
    url, _ = monitored
    assert httpx.get(f"{url}/monitor/ping").text == "pong"
    metrics = httpx.get(f"{url}/metrics").text
    assert "scorewatch_requests_total" in metrics and metrics.endswith("recording_monitor_up 1\n")


def test_monitor_is_shut_down_with_the_worker(tmp_path: Path) -> None:
    monitor = RecordingMonitor()
    config = ServeConfig(entry_script=SCRIPTS / "slow" / "score.py", model_dir=None, settings=Settings(home=tmp_path))
    with serve_in_thread(create_app(config, monitor=monitor)) as url:
        wait_for_http(f"{url}/health/ready", expect_status=200)
    assert monitor.calls[-1][0] == "shutdown"


def test_init_failure_is_reported_to_the_monitor_and_the_hook(tmp_path: Path) -> None:
    monitor = RecordingMonitor()
    reasons: list[str] = []
    config = ServeConfig(entry_script=SCRIPTS / "init_fail" / "score.py", model_dir=None,
                         settings=Settings(home=tmp_path))
    with serve_in_thread(create_app(config, monitor=monitor, on_init_failure=reasons.append)) as url:
        wait_for_http(f"{url}/health/live", expect_status=200)
        for _ in range(200):
            if reasons:
                break
            threading.Event().wait(0.05)
        assert reasons and "RuntimeError: model file is corrupt" in reasons[0]
        assert ("exception", ("RuntimeError", "init")) in monitor.calls
        assert ("shutdown", 5.0) in monitor.calls
        assert httpx.get(f"{url}/health/ready").status_code == 503
