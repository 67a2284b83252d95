"""A real hub (its own process, its own workspace) for the deployment tests, and the service processes
it starts stopped afterwards: services outlive the hub by design, so each test ends them itself."""

from __future__ import annotations

import contextlib
import os
import signal
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from scorewatch.deploy.client import ControlClient
from scorewatch.workspace import Workspace
from tests.helpers import ServerProcess, free_port, wait_for_http

# Restarts come quickly in tests; telemetry is sent every 100 ms.
HUB_ENV = {"SCOREWATCH_SERVICE_RESTART_BACKOFF_S": "0.2", "SCOREWATCH_EXPORTER_INTERVAL_MS": "100",
           "SCOREWATCH_EXPORTER_RETRY_MAX_S": "0.5", "SCOREWATCH_GRACEFUL_TIMEOUT_S": "10"}

SCORE_PY = '''
import json
import os

from azureml.core.model import Model


def init():
    global model
    model = open(Model.get_model_path("model.txt")).read().strip()
    print("init done with", model, "in", os.getpid())


def run(raw):
    data = json.loads(raw)
    print("scoring", raw)
    if data.get("crash"):
        os._exit(1)
    return {"model": model, "pid": os.getpid(), "echo": data.get("echo")}
'''


class Hub:
    """A running `scorewatch hub` and its control API."""

    def __init__(self, home: Path, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.home, self.log_dir, self.env = home, log_dir, {**HUB_ENV, **(env or {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: ServerProcess | None = None

    def start(self) -> Hub:
        self.server = ServerProcess(["hub", "--home", str(self.home), "--port", str(self.port)],
                                    log_dir=self.log_dir, env=self.env).start()
        wait_for_http(f"{self.url}/health", proc=self.server.proc, timeout=60)
        return self

    @property
    def config(self) -> dict[str, Any]:
        return orjson.loads((self.home / "config.json").read_bytes())

    @property
    def api(self) -> ControlClient:
        return ControlClient(self.url, self.config["admin_key"])

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config['admin_key']}"}

    def output(self) -> str:
        return self.server.output() if self.server else ""

    def kill(self) -> None:
        assert self.server is not None
        self.server.kill()

    def stop(self) -> None:
        if self.server is not None and self.server.proc is not None and self.server.proc.poll() is None:
            self.server.stop()

    def wait(self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0) -> dict[str, Any]:
        """The service's view once ``predicate(view)`` holds (fails the test after ``timeout``)."""
        deadline = time.monotonic() + timeout
        view: dict[str, Any] = {}
        while time.monotonic() < deadline:
            view = self.api.request("GET", f"/v1/services/{name}")
            if predicate(view):
                return view
            time.sleep(0.05)
        raise AssertionError(f"service {name} did not get there within {timeout}s: {view}\n{self.output()[-3000:]}")

    def gone(self, name: str, timeout: float = 60.0) -> str:
        """Once the service is deleted: the error the API answers for it."""
        from scorewatch.errors import NotFound

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api.request("GET", f"/v1/services/{name}")
            except NotFound as exc:
                return exc.message
            time.sleep(0.05)
        raise AssertionError(f"service {name} was not deleted within {timeout}s")

    def healthy(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait(name, lambda v: v["state"] == "Healthy" and v["status"]["generation"] == v["spec"]["generation"],
                         timeout)

    def query(self, kql: str) -> list[list[Any]]:
        app = self.config["default_app"]
        import httpx

        response = httpx.get(f"{self.url}/v1/apps/{app['app_id']}/query", params={"query": kql},
                             headers={"x-api-key": app["api_key"]}, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()["tables"][0]["rows"]


def service_pids(home: Path) -> set[int]:
    """Every process the workspace's deployment records name (serving, starting, draining)."""
    pids = set()
    for record in (home / "deployments").glob("*/deployment.json"):
        status = orjson.loads(record.read_bytes())["status"]
        pids.update(int(p) for p in [status.get("pid"), *(o[0] for o in status.get("others") or [])] if p)
    return pids


def kill_groups(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


@contextlib.contextmanager
def running_hub(home: Path, log_dir: Path, env: dict[str, str] | None = None) -> Iterator[Hub]:
    hub = Hub(home, log_dir, env).start()
    seen: set[int] = set()
    try:
        yield hub
    finally:
        seen |= service_pids(home)
        hub.stop()
        seen |= service_pids(home)
        children = set()
        for pid in seen:
            with contextlib.suppress(psutil.Error):
                children |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
        kill_groups(seen)
        for pid in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def make_app(folder: Path, score_py: str = SCORE_PY, model: str = "v1") -> tuple[Path, Path]:
    """A source folder with score.py, and a model file beside it: (score.py, model.txt)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "score.py").write_text(textwrap.dedent(score_py))
    model_file = folder.parent / f"{folder.name}-model" / "model.txt"
    model_file.parent.mkdir(exist_ok=True)
    model_file.write_text(model)
    return folder / "score.py", model_file


def deploy(hub: Hub, name: str, folder: Path, *, models: list[dict[str, Any]] | None = None,
           **spec: Any) -> dict[str, Any]:
    script = folder / "score.py"
    body = {"spec": {"name": name, "entry_script": str(script), "source_directory": str(folder),
                     "models": models or [], **spec}}
    return hub.api.request("POST", "/v1/services", body)


def register(hub: Hub, path: Path, name: str | None = None) -> dict[str, Any]:
    return hub.api.request("POST", "/v1/models", {"model_path": str(path), "model_name": name or path.name})


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def hub(module_tmp: Path) -> Iterator[Hub]:
    with running_hub(module_tmp / "ws", module_tmp) as h:
        yield h


@pytest.fixture(scope="module")
def model_ref(hub: Hub, module_tmp: Path) -> dict[str, Any]:
    """A registered model named model.txt (what SCORE_PY loads)."""
    _, model_file = make_app(module_tmp / "shared-app")
    record = register(hub, model_file)
    return {"name": record["name"], "version": record["version"]}


def workspace(hub: Hub) -> Workspace:
    return Workspace(hub.home)
