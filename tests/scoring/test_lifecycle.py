"""Worker lifecycle: init failure, readiness, timeouts, concurrency, body limits, SIGTERM, N workers."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers import ServerProcess, free_port, wait_for_http
from tests.scoring.conftest import SCRIPTS, Served, serving


def _serve_and_wait(script: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scorewatch", "serve", str(script), "--port", str(free_port()),
                           *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_init_failure_exits_non_zero_with_traceback_and_reason(workers: str) -> None:
    proc = _serve_and_wait(SCRIPTS / "init_fail" / "score.py", "--workers", workers)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "Traceback" in output
    assert "RuntimeError: model file is corrupt" in output
    assert "init() of" in proc.stderr.strip().splitlines()[-1]  # the one-line reason comes last


def test_missing_entry_script_is_a_clear_error(tmp_path: Path) -> None:
    proc = _serve_and_wait(tmp_path / "nope.py")
    assert proc.returncode == 2
    assert "entry script" in proc.stderr and "Traceback" not in proc.stderr


def test_syntax_error_shows_the_users_file_line_and_caret_only(tmp_path: Path) -> None:
    script = tmp_path / "score.py"
    script.write_text("import json\n\ndef init(:\n    pass\n")
    proc = _serve_and_wait(script)
    assert proc.returncode != 0
    assert f'File "{script}", line 3' in proc.stderr
    assert "    def init(:\n" in proc.stderr and "^" in proc.stderr
    assert "SyntaxError" in proc.stderr
    for internal in ("scorewatch/", "concurrent/futures", "importlib", "Traceback", "CancelledError"):
        assert internal not in proc.stderr, proc.stderr


def test_init_traceback_starts_at_the_users_frames(tmp_path: Path) -> None:
    proc = _serve_and_wait(SCRIPTS / "init_fail" / "score.py")
    assert 'score.py", line 7, in init' in proc.stderr
    assert "scorewatch/" not in proc.stderr.split("Traceback")[1], proc.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_request_waiting_for_a_failing_init_gets_503_and_the_service_exits(tmp_path: Path, workers: str) -> None:
    port = free_port()
    server = ServerProcess(["serve", str(SCRIPTS / "init_fail" / "score.py"), "--port", str(port),
                            "--workers", workers], log_dir=tmp_path, env={"TEST_INIT_SECONDS": "2"}).start()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health/live", proc=server.proc, expect_status=200)
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 503  # not Healthy yet
        started = time.monotonic()
        waiting = httpx.post(f"http://127.0.0.1:{port}/score", json={"a": 1}, timeout=30)
        assert waiting.status_code == 503, server.output()
        assert "init() of" in waiting.json()["message"] and "model file is corrupt" in waiting.json()["message"]
        assert server.proc is not None
        assert server.proc.wait(timeout=10) != 0  # the process ends, within seconds
        assert time.monotonic() - started < 12
    finally:
        server.stop()


def test_port_in_use_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "scorewatch", "serve", str(SCRIPTS / "slow" / "score.py"),
                               "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: cannot listen on 127.0.0.1:{port}: address already in use"
    for noise in ("Traceback", "CancelledError", "init()"):
        assert noise not in proc.stderr + proc.stdout


@pytest.fixture(scope="module")
def slow(module_dir: Path) -> Iterator[Served]:
    with serving(SCRIPTS / "slow" / "score.py", module_dir, "--max-body-size", "1000",
                 env={"SCORING_TIMEOUT_MS": "1500"}) as served:
        yield served


def test_timeout_is_504_and_the_worker_recovers(slow: Served) -> None:
    r = slow.post({"sleep": 4})
    assert r.status_code == 504
    assert "1500 ms" in r.json()["message"]
    assert r.headers["x-ms-run-function-failed"] == "True"
    # The abandoned run() is still sleeping; the next call is served by a fresh thread.
    assert slow.post({"sleep": 0}).status_code == 200


def test_long_run_does_not_block_health_or_metrics(slow: Served) -> None:
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(slow.post, {"sleep": 1})
        time.sleep(0.2)
        assert slow.client.get("/health/live").status_code == 200
        assert slow.client.get("/health/ready").status_code == 200
        assert "scorewatch_requests_in_flight" in slow.client.get("/metrics").text
        assert not pending.done()
        assert pending.result().json()["slept"] == 1


def test_body_over_the_limit_is_413(slow: Served) -> None:
    r = slow.post(content=b'{"sleep": 0, "pad": "' + b"x" * 2000 + b'"}')
    assert r.status_code == 413
    assert "1000 bytes" in r.json()["message"]

    def chunks() -> Iterator[bytes]:  # no content-length: the limit is enforced while reading
        yield b'{"sleep": 0, "pad": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}'

    assert slow.post(content=chunks()).status_code == 413
    assert slow.post({"sleep": 0}).status_code == 200


def test_run_calls_one_at_a_time_per_worker(module_dir: Path) -> None:
    with serving(SCRIPTS / "raw" / "score.py", module_dir) as svc, ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: svc.post({"action": "sleep", "seconds": 0.3}).json(), range(3)))
    assert max(r["most_concurrent"] for r in results) == 1


def test_ready_only_after_init_returned_and_early_requests_wait(module_dir: Path) -> None:
    with serving(SCRIPTS / "slow" / "score.py", module_dir, env={"TEST_INIT_SECONDS": "1.5"},
                 wait_ready=False) as svc:
        wait_for_http(f"{svc.url}/health/live", proc=svc.server.proc, expect_status=200)
        assert svc.client.get("/health/ready").status_code == 503
        assert svc.client.get("/").status_code == 503  # Azure's probe: Healthy only once init() returned
        early = svc.post({"sleep": 0})  # waits for init() instead of failing
        assert early.status_code == 200
        assert svc.client.get("/health/ready").status_code == 200
        root = svc.client.get("/")
        assert (root.status_code, root.text) == (200, "Healthy")


def test_swagger_during_start_up_waits_for_the_typed_schema(module_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "typed" / "score.py"
    script.parent.mkdir()
    script.write_text((SCRIPTS / "schema_standard" / "score.py").read_text().replace(
        "def init():\n    pass", "def init():\n    import time\n    time.sleep(1.5)"))
    with serving(script, module_dir, wait_ready=False) as svc:
        wait_for_http(f"{svc.url}/health/live", proc=svc.server.proc, expect_status=200)
        assert svc.client.get("/health/ready").status_code == 503
        document = svc.client.get("/swagger.json").json()
        assert svc.client.get("/health/ready").status_code == 200
    properties = document["definitions"]["ServiceInput"]["properties"]
    assert properties["text"]["type"] == "string" and properties["count"]["type"] == "integer"


def test_failed_run_reports_its_real_run_time_and_the_users_frames(module_dir: Path) -> None:
    with serving(SCRIPTS / "raw" / "score.py", module_dir) as svc:
        r = svc.post({"action": "fail", "sleep_first": 0.2})
        assert r.status_code == 500 and r.headers["x-ms-run-function-failed"] == "True"
        assert float(r.headers["x-ms-run-fn-exec-ms"]) >= 200
        output = svc.server.output()
    traceback_text = output[output.index("run() failed"):]
    assert 'raw/score.py", line' in traceback_text
    assert "scorewatch/scoring" not in traceback_text.split("ValueError")[0], traceback_text


def test_sigterm_finishes_in_flight_requests_then_exits(module_dir: Path) -> None:
    with serving(SCRIPTS / "slow" / "score.py", module_dir) as svc, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(svc.post, {"sleep": 1})
        _wait_in_flight(svc)
        assert svc.server.proc is not None
        svc.server.proc.send_signal(signal.SIGTERM)
        response = pending.result(timeout=20)
        assert response.status_code == 200 and response.json()["slept"] == 1
        assert svc.server.proc.wait(timeout=20) == 0


def _wait_in_flight(svc: Served) -> None:
    """Until a call has reached run() (the pending gauge counts calls handed to the run threads)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in svc.client.get("/metrics").text.splitlines():
            if line.startswith("scorewatch_run_pending{") and not line.endswith(" 0"):
                return
        time.sleep(0.02)
    raise AssertionError("the request never got in flight")


def test_several_workers_share_the_port(module_dir: Path) -> None:
    with serving(SCRIPTS / "slow" / "score.py", module_dir, "--workers", "2") as svc:
        pids: set[int] = set()
        barrier = threading.Barrier(2)

        def call(_: int) -> int:
            with httpx.Client(base_url=svc.url, timeout=30) as client:
                barrier.wait()
                return client.post("/score", json={"sleep": 0.5}).json()["pid"]

        with ThreadPoolExecutor(2) as pool:
            for _ in range(5):
                pids.update(pool.map(call, range(2)))
                barrier.reset()
                if len(pids) == 2:
                    break
        assert len(pids) == 2
        assert svc.server.stop() == 0


def test_overload_is_429_with_retry_after(module_dir: Path) -> None:
    with serving(SCRIPTS / "slow" / "score.py", module_dir, env={"SCOREWATCH_SCORING_QUEUE_LIMIT": "1"}) as svc, \
            ThreadPoolExecutor(1) as pool:
        pending = pool.submit(svc.post, {"sleep": 1})
        _wait_in_flight(svc)
        busy = svc.post({"sleep": 0})
        assert busy.status_code == 429
        assert busy.headers["retry-after"] == "1"
        assert "busy" in busy.json()["message"]
        assert pending.result().status_code == 200
        assert svc.post({"sleep": 0}).status_code == 200
