"""The Services page against a real hub running a real deployment (deployed through the control API):
what it shows, who sees it, its actions through the control API's own path, CSRF, escaping, and the
live metrics' processes taken from the deployment's record."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from scorewatch.apps import registry_for
from scorewatch.settings import Settings
from scorewatch.studio.auth import issue_login_token
from scorewatch.studio.services import MASK
from scorewatch.workspace import Workspace
from tests.deploy.conftest import Hub, deploy, make_app, register, running_hub
from tests.studio.conftest import XSS, Page

pytestmark = pytest.mark.slow

NAME = "scored"
SCORE_PY = f'''
import json

from azureml.core.model import Model


def init():
    global model
    model = open(Model.get_model_path("model.txt")).read().strip()
    print({XSS!r})
    print("init done")


def run(raw):
    return {{"model": model, "echo": json.loads(raw).get("echo")}}
'''


@dataclass
class Deployed:
    hub: Hub
    other_key: str
    other_app_id: str

    @property
    def url(self) -> str:
        return self.hub.url

    def view(self) -> dict[str, Any]:
        """The service as the control API shows it."""
        return dict(self.hub.api.request("GET", f"/v1/services/{NAME}"))

    def keys(self) -> dict[str, str]:
        return dict(self.hub.api.request("GET", f"/v1/services/{NAME}/keys"))

    def score(self, request_id: str) -> httpx.Response:
        view, keys = self.view(), self.keys()
        return httpx.post(view["scoring_uri"], json={"echo": request_id}, timeout=30,
                          headers={"x-request-id": request_id, "authorization": f"Bearer {keys['primaryKey']}"})

    def recorded(self, request_id: str) -> bool:
        return bool(self.hub.query(f"requests | where cloud_RoleName == '{NAME}' and "
                                   f"tostring(customDimensions['Request Id']) == '{request_id}' | project 1"))

    def token_link(self) -> str:
        return f"{self.url}/studio/login?token={issue_login_token(Workspace(self.hub.home))}"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    tmp = tmp_path_factory.mktemp("services")
    home = tmp / "ws"
    workspace = Workspace(home).ensure()
    other, other_key = registry_for(workspace, Settings.from_env({}, home=home)).create("other")
    with running_hub(home, tmp) as hub:
        _, model_file = make_app(tmp / "app", SCORE_PY)
        model = register(hub, model_file)
        deploy(hub, NAME, tmp / "app", models=[{"name": model["name"], "version": model["version"]}],
               enable_app_insights=True, auth_enabled=True)
        hub.healthy(NAME)
        yield Deployed(hub, other_key, other.app_id)


@contextmanager
def session(deployed: Deployed, api_key: str | None = None) -> Iterator[tuple[httpx.Client, str]]:
    """A logged-in client and its CSRF token: by a one-time link, or through the form with ``api_key``."""
    with httpx.Client(base_url=deployed.url, timeout=60) as client:
        if api_key is None:
            assert client.get(deployed.token_link()).status_code == 303
        else:
            form = client.get("/studio/login")
            login_csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert login_csrf is not None
            done = client.post("/studio/login", data={"api_key": api_key, "csrf": login_csrf[1]},
                               headers={"origin": deployed.url})
            assert done.status_code == 303, done.text
        page = client.get("/studio/_all/overview")
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
        assert csrf is not None
        yield client, csrf[1]


def _wait(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.1)


def test_the_page_lists_the_service_with_its_state_uris_models_processes_and_console(deployed: Deployed) -> None:
    view = deployed.view()
    with session(deployed) as (client, _):
        _wait(lambda: any(XSS in line for s in client.get("/studio/default/services.json").json()["services"]
                          for line in s["console_tail"]), "the console line in the store")
        data = client.get("/studio/default/services.json").json()
        page = client.get("/studio/default/services").text
    [service] = data["services"]
    assert data["administers"] is True and data["deployments"] is True
    assert (service["name"], service["state"]) == (NAME, "Healthy")
    assert service["scoring_uri"] == view["scoring_uri"] and service["swagger_uri"] == view["swagger_uri"]
    assert service["scoring_uri"].startswith("http://127.0.0.1:") and service["swagger_uri"].endswith("/swagger.json")
    assert service["models"] == ["model.txt:1"] and service["replicas"] == 1
    assert service["pids"] == [view["status"]["pid"]]
    assert (service["app_insights"], service["model_data"], service["auth_enabled"]) == (True, True, True)
    assert service["workers"] == 1 and service["workers_switched"] == 1
    assert "init done" in service["console_tail"]
    # In the page, the printed <script> is text: escaped, never markup.
    assert f"http://127.0.0.1:{view['status']['port']}/score" in page
    assert XSS not in page and "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
    assert 'class="open-logs"' in page and "Log+Source" in page


def test_keys_are_masked_for_everyone_and_shown_to_an_administrator_who_asks(deployed: Deployed) -> None:
    keys = deployed.keys()
    masked = {"primaryKey": MASK, "secondaryKey": MASK}
    api_key = deployed.hub.config["default_app"]["api_key"]
    header = httpx.get(f"{deployed.url}/studio/default/services.json", headers={"x-api-key": api_key}, timeout=60)
    assert header.status_code == 200 and header.json()["services"][0]["keys"] == masked
    assert header.json()["administers"] is False
    with session(deployed, api_key) as (client, csrf):  # a session from the application's API key
        data = client.get("/studio/default/services.json").json()
        page = client.get("/studio/default/services").text
        assert data["services"][0]["keys"] == masked and data["administers"] is False
        assert keys["primaryKey"] not in page and keys["secondaryKey"] not in page and 'id="read-only"' in page
        assert "/services/scored/keys" not in page  # no buttons it could not use
        refused = client.post(f"/studio/default/services/{NAME}/keys.json", data={"csrf": csrf})
        assert refused.status_code == 403 and "admin key" in refused.json()["error"]["message"]
        refused_page = client.post(f"/studio/default/services/{NAME}/app-insights", data={"csrf": csrf, "value": "off"})
        assert refused_page.status_code == 403 and 'id="error-message"' in refused_page.text
    assert deployed.view()["spec"]["enable_app_insights"] is True
    with session(deployed) as (client, csrf):  # a one-time link: an administrator
        page = client.get("/studio/default/services").text
        assert keys["primaryKey"] not in page and MASK in page
        shown = client.post(f"/studio/default/services/{NAME}/keys.json", data={"csrf": csrf})
        assert shown.status_code == 200 and shown.json() == keys
        shown_page = client.post(f"/studio/default/services/{NAME}/keys", data={"csrf": csrf})
        assert shown_page.status_code == 200 and keys["primaryKey"] in shown_page.text
        assert shown_page.headers["cache-control"] == "no-store"
        assert keys["primaryKey"] not in client.get("/studio/default/services").text  # masked again


def test_the_admin_key_logs_in_as_an_administrator(deployed: Deployed) -> None:
    with session(deployed, deployed.hub.config["admin_key"]) as (client, _):
        data = client.get("/studio/_all/services.json").json()
    assert data["administers"] is True and [s["name"] for s in data["services"]] == [NAME]


def test_actions_need_the_session_s_csrf_token_and_the_hub_s_origin(deployed: Deployed) -> None:
    action = f"/studio/default/services/{NAME}/app-insights"
    with session(deployed) as (client, csrf):
        for refused in (client.post(action, data={"value": "off"}),
                        client.post(action, data={"value": "off", "csrf": "not-it"}),
                        client.post(action + ".json", data={"value": "off"}),
                        client.post(action, data={"value": "off", "csrf": csrf}, headers={"origin": "http://evil.example"})):
            assert refused.status_code == 403, refused.text
        assert "CSRF" in client.post(action + ".json", data={"value": "off"}).json()["error"]["message"]
        assert client.get(action).status_code == 405
        bad = client.post(action + ".json", json={"value": "maybe"}, headers={"x-csrf-token": csrf})
        assert bad.status_code == 400 and bad.json()["error"]["message"] == "'value' must be on or off, not 'maybe'"
        unknown = client.post(f"/studio/default/services/{NAME}/explode.json", data={"csrf": csrf})
        assert unknown.status_code == 404
        missing = client.post("/studio/default/services/nope/restart.json", data={"csrf": csrf})
        assert missing.status_code == 404 and "no service named 'nope'" in missing.json()["error"]["message"]
    assert deployed.view()["spec"]["enable_app_insights"] is True  # nothing was switched
    headers = {"x-api-key": deployed.hub.config["default_app"]["api_key"]}
    scripted = httpx.post(f"{deployed.url}{action}.json", data={"value": "off"}, headers=headers, timeout=30)
    assert scripted.status_code == 403 and "control API" in scripted.json()["error"]["message"]


def test_a_key_of_another_application_neither_sees_nor_acts_on_the_service(deployed: Deployed) -> None:
    headers = {"x-api-key": deployed.other_key}
    assert httpx.get(f"{deployed.url}/studio/default/services.json", headers=headers, timeout=30).status_code == 403
    for segment in ("other", "_all"):
        data = httpx.get(f"{deployed.url}/studio/{segment}/services.json", headers=headers, timeout=30).json()
        assert data["services"] == [], segment
    with session(deployed, deployed.other_key) as (client, csrf):
        assert client.get("/studio/default/services").status_code == 403
        assert 'id="no-deployments"' in client.get("/studio/other/services").text
        for segment in ("default", "other", "_all"):
            acted = client.post(f"/studio/{segment}/services/{NAME}/app-insights.json", data={"value": "off", "csrf": csrf})
            assert acted.status_code == 403, segment
        live = client.get("/studio/_all/live.json").json()
        assert not [p for p in live["processes"] if p["service"].startswith(f"{NAME}-")]
    with session(deployed) as (client, csrf):  # an administrator: it is in the default application only
        missing = client.post(f"/studio/other/services/{NAME}/keys.json", data={"csrf": csrf})
        assert missing.status_code == 404
    assert deployed.view()["spec"]["enable_app_insights"] is True


def test_live_metrics_measure_the_deployment_s_processes_from_its_record(deployed: Deployed) -> None:
    status = deployed.view()["status"]
    with session(deployed) as (client, _):
        processes = client.get("/studio/default/live.json").json()["processes"]
    mine = [p for p in processes if p["service"] == f"{NAME}-{status['port']}"]
    assert [(p["pid"], p["app_id"]) for p in mine] == [(status["pid"], deployed.hub.config["default_app"]["app_id"])]
    assert mine[0]["memory_mb"] > 10


def test_regenerating_a_key_and_restarting_roll_the_service(deployed: Deployed) -> None:
    before = deployed.keys()
    with session(deployed) as (client, csrf):
        done = client.post(f"/studio/default/services/{NAME}/regen-key.json", data={"csrf": csrf, "key": "Secondary"})
        assert done.status_code == 200, done.text
        assert done.json()["keys"] == {"primaryKey": MASK, "secondaryKey": MASK}
        bad = client.post(f"/studio/default/services/{NAME}/regen-key.json", data={"csrf": csrf, "key": "Tertiary"})
        assert bad.status_code == 400 and "Valid options are: Primary, Secondary" in bad.json()["error"]["message"]
    after = deployed.keys()
    assert after["primaryKey"] == before["primaryKey"] and after["secondaryKey"] != before["secondaryKey"]
    view = deployed.hub.healthy(NAME)
    answer = httpx.post(view["scoring_uri"], json={"echo": 1}, timeout=30,
                        headers={"authorization": f"Bearer {after['secondaryKey']}"})
    assert answer.status_code == 200
    with session(deployed) as (client, csrf):  # a restart is Webservice.reload: the next generation, a new process
        assert client.post(f"/studio/default/services/{NAME}/restart", data={"csrf": csrf}).status_code == 303
    restarted = deployed.hub.healthy(NAME)
    assert restarted["spec"]["generation"] == view["spec"]["generation"] + 1
    assert restarted["status"]["pid"] != view["status"]["pid"]


def _toggle(tab: Page, switch: str, expect: str) -> None:
    with tab.expect_navigation():  # the form's POST, then its redirect back to the page
        tab.click(f"#{NAME}-{switch}-toggle")
    assert tab.locator(f"#{NAME}-{switch}").inner_text() == expect


def test_switching_app_insights_from_the_page_switches_the_running_service(tab: Page, deployed: Deployed) -> None:
    tab.goto(deployed.token_link())
    tab.goto(f"{deployed.url}/studio/default/services")
    section = tab.locator(f"#service-{NAME}")
    assert section.locator(".state").inner_text() == "Healthy"
    assert section.locator(".scoring-uri").inner_text() == deployed.view()["scoring_uri"]
    assert XSS in tab.locator(f"#{NAME}-console").inner_text()  # printed by init(): shown as text
    assert tab.evaluate("window.__pwned") is None
    assert tab.locator(f"#{NAME}-primary-key").inner_text() == MASK
    with tab.expect_navigation():
        tab.click(f"#{NAME}-show-keys")
    assert tab.locator(f"#{NAME}-primary-key").inner_text() == deployed.keys()["primaryKey"]

    pid = deployed.view()["status"]["pid"]
    tab.goto(f"{deployed.url}/studio/default/services")
    _toggle(tab, "app-insights", "off")
    view = deployed.view()  # the same switch Webservice.update flips, applied by the running worker
    assert view["spec"]["enable_app_insights"] is False and view["telemetry"]["monitoring"] is False
    assert view["status"]["pid"] == pid and view["state"] == "Healthy"  # no restart
    assert deployed.score("while-off").status_code == 200
    _toggle(tab, "app-insights", "on")
    assert deployed.view()["telemetry"]["monitoring"] is True
    assert deployed.score("while-on").status_code == 200
    _wait(lambda: deployed.recorded("while-on"), "the request scored while on reaching the store")
    assert not deployed.recorded("while-off")  # scored before it, while off: never recorded
    tab.screenshot_as("services")
    assert tab.errors == []
