"""Fixtures for the scoring tests: real `scorewatch serve` processes on free ports."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ServerProcess, free_port, wait_for_http

SCRIPTS = Path(__file__).resolve().parent / "scripts"


class Served:
    """A running scoring service: its base URL, an httpx client, and the process."""

    def __init__(self, url: str, server: ServerProcess) -> None:
        self.url = url
        self.server = server
        self.client = httpx.Client(base_url=url, timeout=30.0)

    def post(self, payload: object = None, **kwargs: object) -> httpx.Response:
        if payload is not None:
            kwargs["json"] = payload
        return self.client.post("/score", **kwargs)  # type: ignore[arg-type]


@contextlib.contextmanager
def serving(script: Path, log_dir: Path, *args: str, env: dict[str, str] | None = None,
            wait_ready: bool = True) -> Iterator[Served]:
    """Start `scorewatch serve script ...`, wait for /health/ready, stop it afterwards."""
    port = free_port()
    server = ServerProcess(["serve", str(script), "--port", str(port), *args], log_dir=log_dir,
                           env={"SCOREWATCH_HOME": str(log_dir / "home"), **(env or {})})
    server.start()
    served = Served(f"http://127.0.0.1:{port}", server)
    try:
        if wait_ready:
            try:
                wait_for_http(f"{served.url}/health/ready", proc=server.proc, expect_status=200, timeout=60)
            except Exception:
                print(server.output())
                raise
        yield served
    finally:
        served.client.close()
        server.stop()


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
