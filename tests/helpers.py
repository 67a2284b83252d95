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


class Load:
    """Continuous requests from ``clients`` threads until stopped; every failure is kept.

    Half the clients keep their connection alive between requests (as ``requests.Session`` and
    Azure's ``Webservice.run`` do), half open a new one for each request. A failure is any answer
    but ``expect`` and any error: a refused or reset connection, a timeout.
    """

    def __init__(self, url: str, *, body: bytes = b"{}", clients: int = 6, expect: int = 200,
                 headers: dict[str, str] | None = None) -> None:
        self.url, self.body, self.expect = url, body, expect
        self.headers = {"content-type": "application/json", **(headers or {})}
        self.sent = 0
        self.failures: list[str] = []
        self.answers: list[Any] = []  # the JSON answers (each client's last few hundred)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i % 2 == 0,), daemon=True)
                         for i in range(clients)]

    def _client(self, keep_alive: bool) -> None:
        client = httpx.Client(timeout=60) if keep_alive else None
        try:
            while not self._stop.is_set():
                try:
                    if client is not None:
                        response = client.post(self.url, content=self.body, headers=self.headers)
                    else:
                        response = httpx.post(self.url, content=self.body, headers=self.headers, timeout=60)
                    outcome = None if response.status_code == self.expect else f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    outcome = repr(exc)
                    response = None
                with self._lock:
                    self.sent += 1
                    if outcome is not None:
                        self.failures.append(outcome)
                    elif response is not None and response.headers.get("content-type", "").startswith("application/json"):
                        self.answers.append(response.json())
                        del self.answers[:-2000]
        finally:
            if client is not None:
                client.close()

    def wait_for(self, requests: int, timeout: float = 60.0) -> None:
        """Until at least ``requests`` more requests were sent."""
        target = self.sent + requests
        deadline = time.monotonic() + timeout
        while self.sent < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.sent} of {target} requests sent within {timeout}s")
            time.sleep(0.01)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(90)
