"""Shared test helpers: free ports, waiting for servers, running real server processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, *, timeout: float = 30.0, proc: subprocess.Popen | None = None,
                  expect_status: int | None = None) -> httpx.Response:
    """Poll ``url`` until it answers (with ``expect_status`` if given); fail fast if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            response = httpx.get(url, timeout=2.0)
            if expect_status is None or response.status_code == expect_status:
                return response
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s (last error: {last})")


@contextmanager
def serve_in_thread(app: Any, *, port: int | None = None, timeout: float = 10.0, **config: Any) -> Iterator[str]:
    """Serve an ASGI ``app`` with uvicorn on 127.0.0.1 (``port``, or a free one) in a thread; yields its URL.

    ``config`` goes to ``uvicorn.Config`` (``lifespan="off"``, ``log_level``). On exit the server is
    asked to stop and the thread joined, so each test stops the server it started.
    """
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **{"log_level": "warning", **config}))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"server on port {port} did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def wait_until(check: Callable[[], Any], timeout: float = 60.0, what: str | Callable[[], str] = "condition") -> Any:
    """``check()``'s first truthy value, asked every 0.1 s; an AssertionError naming ``what`` (text,
    or a function making it, to say what was found) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what() if callable(what) else what} not reached within {timeout:g}s")
        time.sleep(0.1)


class ServerProcess:
    """A real server started as ``python -m scorewatch ...`` on 127.0.0.1, stopped with SIGTERM.

    Output goes to a log file in ``log_dir`` so a failing test can show it (``.output()``).
    """

    def __init__(self, args: Sequence[str], *, log_dir: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.args = [sys.executable, "-m", "scorewatch", *args]
        self.log_path = Path(log_dir) / f"server-{os.getpid()}-{time.monotonic_ns()}.log"
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.cwd, start_new_session=True)
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
