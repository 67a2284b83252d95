"""Deployments with real processes: start, crash and restart, Failed, rolls under load, runtime switches,
consoles in the store, deletion (deploy/supervisor.py)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest

from tests.deploy.conftest import Hub, deploy, make_app
from tests.helpers import Load

pytestmark = pytest.mark.slow


def score(view: dict[str, Any], body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(view["scoring_uri"], content=orjson.dumps(body),
                      headers={"content-type": "application/json", **headers}, timeout=30)


def logs(hub: Hub, name: str, **query: Any) -> str:
    return hub.api.request("GET", f"/v1/services/{name}/logs", query=query)["content"]


def wait_logs(hub: Hub, name: str, needle: str, timeout: float = 20, **query: Any) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = logs(hub, name, **query)
        if needle in text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} not in the logs of {name}:\n{text}")


def test_a_deployed_service_scores_and_its_console_reaches_the_store(hub: Hub, module_tmp: Path,
                                                                      model_ref: dict[str, Any]) -> None:
    folder = module_tmp / "first"
    make_app(folder)
    assert deploy(hub, "first", folder, models=[model_ref])["state"] == "Transitioning"
    view = hub.healthy("first")
    answer = score(view, {"echo": "hello"})
    assert answer.status_code == 200 and answer.json() == {"model": "v1", "pid": view["status"]["pid"], "echo": "hello"}
    text = wait_logs(hub, "first", 'scoring {"echo":"hello"}')
    assert f"init done with v1 in {view['status']['pid']}" in text
    init = logs(hub, "first", init="true")
    assert "init done with v1" in init and "scoring {" not in init  # up to readiness only
    rows = hub.query("traces | where tostring(customDimensions['Log Source']) == 'console' and "
                     "tostring(customDimensions['Service Name']) == 'first' and message startswith 'scoring' "
                     "| project cloud_RoleName, toint(customDimensions['Start'])")
    assert rows == [["first", 1]]  # stored once, as a trace of its own kind
    assert len(logs(hub, "first", tail=2).splitlines()) == 2


def test_a_crashed_service_is_restarted_and_healthy_again_within_5_seconds(hub: Hub, module_tmp: Path,
                                                                           model_ref: dict[str, Any]) -> None:
    folder = module_tmp / "crashy"
    make_app(folder)
    deploy(hub, "crashy", folder, models=[model_ref])
    before = hub.healthy("crashy")["status"]["pid"]
    os.kill(before, signal.SIGKILL)
    crashed = time.monotonic()
    view = hub.wait("crashy", lambda v: v["state"] == "Healthy" and v["status"]["pid"] != before, timeout=5)
    took = time.monotonic() - crashed
    assert view["status"]["restarts"] == 1 and view["status"]["error"] is None
    assert score(view, {"echo": 1}).json()["pid"] == view["status"]["pid"]
    print(f"crash to Healthy: {took:.2f}s")


def test_a_service_that_keeps_crashing_is_failed_with_the_reason_until_it_is_fixed(hub: Hub, module_tmp: Path) -> None:
    folder = module_tmp / "broken"
    make_app(folder, "def init():\n    raise RuntimeError('the model file is corrupt')\n\n\ndef run(raw):\n    return raw\n")
    deploy(hub, "broken", folder)
    view = hub.wait("broken", lambda v: v["state"] == "Failed")
    error = view["status"]["error"]
    assert error["code"] == "CrashLoopBackOff"
    assert error["message"].startswith("the service ended 4 times in a row; the last time: exit code 2: error: init() of ")
    assert "RuntimeError: the model file is corrupt" in error["message"]
    assert "Traceback (most recent call last):" in error["details"][0]["message"]
    assert view["status"]["restarts"] == 4 and view["status"]["pid"] is not None
    assert not psutil.pid_exists(view["status"]["pid"]) or psutil.Process(view["status"]["pid"]).status() == "zombie"
    with pytest.raises(httpx.ConnectError):  # nothing will accept: refused, not left hanging
        httpx.post(view["scoring_uri"], content=b"{}", timeout=5)
    text = wait_logs(hub, "broken", "RuntimeError: the model file is corrupt")
    assert text.count("scorewatch: starting broken") == 4  # every start's console, the tracebacks with them

    (folder / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw):\n    return raw\n")
    hub.api.request("POST", "/v1/services/broken/reload")  # fixed: rolled onto the folder as it is now
    view = hub.healthy("broken")
    assert view["status"]["restarts"] == 0 and view["status"]["error"] is None
    assert score(view, {"a": 1}).json() == '{"a":1}'


def test_rolling_updates_under_continuous_load_fail_no_request(hub: Hub, module_tmp: Path,
                                                               model_ref: dict[str, Any]) -> None:
    folder = module_tmp / "rolled"
    make_app(folder)
    deploy(hub, "rolled", folder, models=[model_ref])
    view = hub.healthy("rolled")
    pids = {view["status"]["pid"]}
    with Load(view["scoring_uri"], body=b'{"echo": "load"}', clients=6) as load:
        for changes in ({"replicas": 2}, {"scoring_timeout_ms": 30_000}, {"replicas": 1}):
            load.wait_for(100)
            hub.api.request("PATCH", "/v1/services/rolled", changes)
            view = hub.healthy("rolled")
            pids.add(view["status"]["pid"])
        load.wait_for(100)
    assert load.failures == [], load.failures[:5]
    assert view["spec"]["generation"] == 4 and len(pids) == 4 and load.sent > 400
    assert view["spec"]["replicas"] == 1 and view["spec"]["scoring_timeout_ms"] == 30_000
    for pid in pids - {view["status"]["pid"]}:  # the old ones drained and ended
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def test_app_insights_is_switched_on_and_off_in_every_worker_of_a_running_service(hub: Hub, module_tmp: Path,
                                                                                  model_ref: dict[str, Any]) -> None:
    folder = module_tmp / "switched"
    make_app(folder)
    deploy(hub, "switched", folder, models=[model_ref], replicas=2, enable_app_insights=False)
    view = hub.healthy("switched")
    pid = view["status"]["pid"]
    assert score(view, {"echo": "before"}, **{"x-request-id": "switch-before"}).status_code == 200

    view = hub.api.request("PATCH", "/v1/services/switched", {"enable_app_insights": True})
    telemetry = view["telemetry"]
    assert telemetry["monitoring"] is True and len(telemetry["workers"]) == 2  # both workers, acknowledged
    assert all(applied == telemetry["revision"] for applied in telemetry["workers"].values())
    assert view["status"]["pid"] == pid and view["state"] == "Healthy"  # no restart
    for i in range(6):
        assert score(view, {"echo": i}, **{"x-request-id": f"switch-on-{i}"}).status_code == 200

    def stored() -> list[str]:
        return sorted(r[0] for r in hub.query("requests | where cloud_RoleName == 'switched' "
                                              "| project tostring(customDimensions['Request Id'])"))

    deadline = time.monotonic() + 20
    while len(stored()) < 6 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stored() == [f"switch-on-{i}" for i in range(6)]
    inputs = hub.query("traces | where cloud_RoleName == 'switched' and customDimensions contains 'Input' "
                       "| project tostring(customDimensions['Input'])")
    assert len(inputs) == 6 and all('"echo"' in row[0] for row in inputs)

    view = hub.api.request("PATCH", "/v1/services/switched", {"enable_app_insights": False})
    assert all(applied == view["telemetry"]["revision"] for applied in view["telemetry"]["workers"].values())
    assert score(view, {"echo": "after"}, **{"x-request-id": "switch-after"}).status_code == 200
    view = hub.api.request("PATCH", "/v1/services/switched", {"tags": {"team": "a"}})  # a label: no roll either
    assert view["status"]["pid"] == pid and view["spec"]["generation"] == 1 and view["spec"]["tags"] == {"team": "a"}
    hub.api.request("DELETE", "/v1/services/switched")  # stopping flushes what its workers recorded
    hub.gone("switched")
    assert "switch-after" not in stored()


def test_deleting_a_service_drains_and_stops_it_and_forgets_it(hub: Hub, module_tmp: Path,
                                                                model_ref: dict[str, Any]) -> None:
    folder = module_tmp / "gone"
    make_app(folder)
    deploy(hub, "gone", folder, models=[model_ref], replicas=2)
    view = hub.healthy("gone")
    pid = view["status"]["pid"]
    workers = psutil.Process(pid).children()
    assert hub.api.request("DELETE", "/v1/services/gone")["state"] == "Deleting"
    assert hub.gone("gone") == "WebserviceNotFound: Webservice with name gone not found in provided workspace"
    assert not (hub.home / "deployments" / "gone").exists()
    for process in [psutil.Process(pid) if psutil.pid_exists(pid) else None, *workers]:
        assert process is None or not process.is_running() or process.status() == "zombie"
    with pytest.raises(httpx.ConnectError):
        httpx.post(view["scoring_uri"], content=b"{}", timeout=5)
