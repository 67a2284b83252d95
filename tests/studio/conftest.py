"""A real hub and a real served model for the studio's tests, started once for the session.

``scorewatch hub`` and ``scorewatch serve score.py`` run as processes on free ports of 127.0.0.1; the
script prints, calls out over HTTP, raises on some inputs and returns on others, one input carries
a ``<script>`` payload and one is larger than the inline limit (a blob). A second application,
``other``, gets telemetry of its own (a failed request, and model data whose input is a blob), so
tests can check that a key of one application opens nothing of the other.
"""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from scorewatch.apps import registry_for
from scorewatch.settings import Settings
from scorewatch.studio.auth import issue_login_token
from scorewatch.telemetry.blobs import BlobStore
from scorewatch.workspace import Workspace
from tests.helpers import ServerProcess, free_port, wait_for_http

SCORE_PY = '''
import json
import urllib.request


def init():
    print("init done")


def run(raw):
    data = json.loads(raw)
    if data.get("script"):
        print(data["script"])
    print("scoring", data.get("n"))
    if data.get("call"):
        urllib.request.urlopen(data["call"]).read()
    if data.get("fail"):
        raise ValueError(f"asked to fail on {data.get('n')}")
    return {"n": data.get("n"), "ok": True}
'''

XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
OTHER_SECRET = "other-app-secret-prediction"


@dataclass
class Served:
    hub_url: str
    score_url: str
    home: Path
    default: dict[str, Any]
    other_key: str
    other_app_id: str
    other_blob: str
    operations: dict[str, str] = field(default_factory=dict)  # x-request-id → operation_Id
    hub: ServerProcess | None = None
    service: ServerProcess | None = None

    @property
    def workspace(self) -> Workspace:
        return Workspace(self.home)

    def token(self) -> str:
        return issue_login_token(self.workspace)

    def login_link(self) -> str:
        return f"{self.hub_url}/studio/login?token={self.token()}"

    def query(self, kql: str, app_id: str | None = None, api_key: str | None = None) -> list[list[Any]]:
        response = httpx.get(f"{self.hub_url}/v1/apps/{app_id or self.default['app_id']}/query",
                             params={"query": kql, "timespan": "P1D"},
                             headers={"x-api-key": api_key or self.default["api_key"]}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["tables"][0]["rows"]

    def score(self, body: dict[str, Any], request_id: str | None = None) -> httpx.Response:
        headers = {"x-request-id": request_id} if request_id else {}
        return httpx.post(f"{self.score_url}/score", json=body, headers=headers, timeout=30)

    def score_get(self, **params: str) -> httpx.Response:
        """A GET /score: an operation of its own, so tests that add requests leave POST /score's counts."""
        return httpx.get(f"{self.score_url}/score", params=params, timeout=30)


def _envelope(kind: str, ikey: str, operation_id: str, base: dict[str, Any]) -> dict[str, Any]:
    return {"name": f"Microsoft.ApplicationInsights.{kind}", "iKey": ikey,
            "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "tags": {"ai.operation.id": operation_id, "ai.cloud.role": "other-svc", "ai.cloud.roleInstance": "b1"},
            "data": {"baseType": f"{kind}Data" if kind != "Request" else "RequestData", "baseData": {"ver": 2, **base}}}


def _wait(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"the hub did not get {what} within {timeout}s")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("studio")
    home = tmp / "ws"
    script = tmp / "svc" / "score.py"
    script.parent.mkdir()
    script.write_text(textwrap.dedent(SCORE_PY))
    settings = Settings.from_env({}, home=home)
    workspace = Workspace(home).ensure()
    other, other_key = registry_for(workspace, settings).create("other")
    hub_port, port = free_port(), free_port()
    env = {"SCOREWATCH_HOME": str(home), "SCOREWATCH_INGEST_LINGER_MS": "20"}
    hub = ServerProcess(["hub", "--port", str(hub_port)], log_dir=tmp, env=env).start()
    service: ServerProcess | None = None
    try:
        hub_url = f"http://127.0.0.1:{hub_port}"
        wait_for_http(f"{hub_url}/health", proc=hub.proc)
        default = orjson.loads((home / "config.json").read_bytes())["default_app"]
        # A 2 s export interval (1 s by default): the live page's second only holds in live mode.
        service = ServerProcess(["serve", str(script), "--port", str(port)], log_dir=tmp,
                                env={**env, "SCOREWATCH_CONNECTION_STRING": default["connection_string"],
                                     "SCOREWATCH_EXPORTER_INTERVAL_MS": "2000"}).start()
        wait_for_http(f"http://127.0.0.1:{port}/health/ready", proc=service.proc, expect_status=200, timeout=60)

        blob = BlobStore(workspace.blobs_dir)
        marker = blob.marker(b'{"data": "' + b"b" * 70_000 + b'"}')  # as a service of `other` writes it
        served = Served(hub_url, f"http://127.0.0.1:{port}", home, default, other_key, other.app_id,
                        marker["blob"].removeprefix("sha256:"), hub=hub, service=service)
        for n in range(1, 9):
            body: dict[str, Any] = {"n": n}
            if n % 3 == 0:
                body["call"] = f"{hub_url}/health"  # an outgoing call: a dependency
            if n in (4, 7):
                body["fail"] = True
            if n == 5:
                body["script"] = XSS
            if n == 8:
                body["pad"] = "x" * 70_000  # over the 64 KiB inline limit: the input goes to a blob
            response = served.score(body, request_id=f"req-{n}")
            assert response.status_code == (500 if n in (4, 7) else 200), response.text
        track = [_envelope("Request", other.instrumentation_key, "op-other-1",
                           {"id": "b1", "name": "POST /score", "duration": "00:00:00.010", "responseCode": "500",
                            "success": False, "url": "http://other/score"}),
                 _envelope("Message", other.instrumentation_key, "op-other-1",
                           {"message": "model_data_collection",
                            "properties": {"Input": marker, "Prediction": OTHER_SECRET}})]
        assert httpx.post(f"{hub_url}/v2.1/track", content=orjson.dumps(track)).status_code == 200

        _wait(lambda: len(served.query("requests | project id")) == 8, "the service's 8 requests")
        _wait(lambda: len(served.query("exceptions | project itemId")) == 2, "2 exceptions")
        _wait(lambda: len(served.query("traces | where message == 'model_data_collection' | project 1")) == 8,
              "8 model data rows")
        _wait(lambda: len(served.query("dependencies | project id")) == 2, "2 dependencies")
        _wait(lambda: len(served.query("requests | project id", other.app_id, other_key)) == 1, "other's request")
        for request_id, operation_id in served.query(
                "requests | project tostring(customDimensions['Request Id']), operation_Id"):
            served.operations[request_id] = operation_id
        yield served
    finally:
        if service is not None:
            service.stop()
        hub.stop()


# ------------------------------------------------------------------ the browser
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = os.environ.get("SCOREWATCH_SCREENSHOTS", "")  # a directory: the tests save the README's pictures there


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A browser tab that records console errors and uncaught exceptions."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda message: self.errors.append(f"console {message.type}: {message.text}")
                if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.page, name)

    def screenshot_as(self, name: str) -> None:
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SCREENSHOTS) / f"studio-{name}.png"), full_page=False)


@pytest.fixture
def tab(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield Page(context.new_page())
    finally:
        context.close()
