"""Deployments with hub replicas on one ClickHouse: every replica's control API reads and writes the
same records (deployments, models, keys, compute targets), one replica at a time runs the services
(the ``supervisor`` lease) and acts on what was asked through any of them, another takes over (and
adopts the processes) when it stops, and ``scorewatch k8s render`` renders what is in the shared
store. The hubs are real processes; the ClickHouse they share is chdb behind ClickHouse's HTTP
interface (tests/clickhouse_http.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.backends import ClickHouse, have_chdb
from tests.deploy.conftest import Hub, make_app
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have_chdb(), reason="chdb is not installed")]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Hub, Hub]]:
    """Two hub replicas on one ClickHouse; the service processes they start are ended afterwards."""
    clickhouse = ClickHouse(tmp_path / "clickhouse").start()
    env = {"SCOREWATCH_STORE": clickhouse.url, "SCOREWATCH_INGEST_LINGER_MS": "20"}
    hubs = [Hub(tmp_path / name, tmp_path, env) for name in ("a", "b")]
    pids: set[int] = set()
    try:
        for hub in hubs:
            hub.start()
        yield hubs[0], hubs[1]
    finally:
        for hub in hubs:  # every process a record names, while a hub still answers
            with contextlib.suppress(Exception):
                for view in hub.api.request("GET", "/v1/services")["value"]:
                    pids.update(p for p in [view["status"]["pid"], *(o[0] for o in view["status"]["others"])] if p)
        for hub in hubs:
            hub.stop()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid), signal.SIGKILL)
        clickhouse.stop()


def leader(a: Hub, b: Hub) -> tuple[Hub, Hub]:
    """(the replica running the services, the other one), once exactly one does."""

    def runs() -> list[bool]:
        return [httpx.get(f"{h.url}/health").json()["runs_deployments"] for h in (a, b)]

    wait_until(lambda: runs().count(True) == 1, 30, "one replica running the deployments")
    return (a, b) if runs()[0] else (b, a)


def cli(hub: Hub, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scorewatch", *args, "--home", str(hub.home)],
                          env={**os.environ, **hub.env}, capture_output=True, text=True, timeout=120)


def test_replicas_share_the_deployments_and_one_runs_them(tmp_path: Path, pair: tuple[Hub, Hub]) -> None:
    running, other = leader(*pair)
    folder = tmp_path / "app"
    _, model_file = make_app(folder)

    # registered and deployed through the replica that does not run the services, with its own admin key
    model = other.api.request("POST", "/v1/models", {"model_path": str(model_file), "model_name": "model.txt"})
    spec = {"name": "shared", "entry_script": str(folder / "score.py"), "source_directory": str(folder),
            "models": [{"name": model["name"], "version": model["version"]}], "compute_type": "AKS",
            "auth_enabled": True, "autoscale_enabled": True, "autoscale_min_replicas": 2, "autoscale_max_replicas": 7,
            "autoscale_target_utilization": 55, "cpu_cores": 0.25, "memory_gb": 0.75, "scoring_timeout_ms": 9000}
    other.api.request("POST", "/v1/services", {"spec": spec})
    assert other.api.request("GET", "/v1/models")["value"][0]["version"] == 1 == \
        running.api.request("GET", "/v1/models")["value"][0]["version"]
    assert other.api.request("PUT", "/v1/computes/aks-one", {"provisioning": {"agent_count": 3}})
    assert running.api.request("GET", "/v1/computes/aks-one")["provisioning"] == {"agent_count": 3}

    view = running.healthy("shared")  # the replica that runs the services started it
    listed = {v["name"]: v for v in other.api.request("GET", "/v1/services")["value"]}
    assert listed["shared"]["status"]["pid"] == view["status"]["pid"]  # both answer from one record
    pid, uri = view["status"]["pid"], view["scoring_uri"]
    # one replica's admin key opens every replica's control API
    assert httpx.get(f"{running.url}/v1/services", headers=other.auth).status_code == 200
    assert httpx.get(f"{running.url}/v1/services", headers={"Authorization": "Bearer nope"}).status_code == 403

    # keys live in the shared store; the running replica wrote the service's key file from them
    primary = other.api.request("GET", "/v1/services/shared/keys")["primaryKey"]
    assert httpx.post(uri, json={"echo": 1}, timeout=30).status_code == 401
    answer = httpx.post(uri, json={"echo": 1}, headers={"Authorization": f"Bearer {primary}"}, timeout=30)
    assert answer.status_code == 200 and answer.json()["model"] == "v1"
    keys_file = running.home / "deployments" / "shared" / "keys.json"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert not (running.home / "deployments" / "shared" / "deployment.json").exists()  # the record is in ClickHouse
    assert not (other.home / "deployments").exists() and not (other.home / "computes").exists()
    assert primary not in running.output() + other.output()  # keys are never logged

    # asked through the other replica, acted on by the running one: a switch, then a roll
    other.api.request("PATCH", "/v1/services/shared", {"enable_app_insights": True})
    running.wait("shared", lambda v: (v["telemetry"] or {}).get("monitoring") is True
                 and set((v["telemetry"] or {}).get("workers", {}).values()) == {v["telemetry"]["revision"]}, 30)
    other.api.request("POST", "/v1/services/shared/keys", {"keyType": "Primary", "keyValue": "k" * 32})
    view = running.healthy("shared")
    answer = httpx.post(uri, json={"echo": 2}, headers={"Authorization": f"Bearer {'k' * 32}"}, timeout=30)
    assert answer.status_code == 200 and view["status"]["generation"] == 2 and view["status"]["pid"] != pid
    pid = view["status"]["pid"]

    # `scorewatch k8s render` from the other replica's workspace renders the record in the shared store
    done = cli(other, "k8s", "render", "--out", str(tmp_path / "k8s"))
    assert done.returncode == 0, done.stderr
    objects = list(yaml.safe_load_all((tmp_path / "k8s" / "service-shared.yaml").read_text()))
    by_kind = {o["kind"]: o for o in objects}
    container = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert by_kind["Deployment"]["spec"]["replicas"] == 2
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "768Mi"}
    assert {"name": "SCORING_TIMEOUT_MS", "value": "9000"} in container["env"]
    hpa = by_kind["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 7)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 55
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for manifest in objects:
        kubernetes_validate.validate(manifest, "1.30.0", strict=True)

    # the running replica stops: the other takes over and adopts the process (no restart)
    running.stop()
    wait_until(lambda: httpx.get(f"{other.url}/health").json()["runs_deployments"], 30, "the other replica taking over")
    view = other.healthy("shared")
    assert view["status"]["pid"] == pid and f"adopted service shared (pid {pid}, ready)" in other.output()
    assert httpx.post(uri, json={"echo": 3}, headers={"Authorization": f"Bearer {'k' * 32}"}, timeout=30).status_code == 200
    other.api.request("PATCH", "/v1/services/shared", {"enable_app_insights": False})  # reaches the adopted workers
    view = other.api.request("GET", "/v1/services/shared")
    assert view["telemetry"]["monitoring"] is False and set(view["telemetry"]["workers"].values()) == {
        view["telemetry"]["revision"]}

    other.api.request("DELETE", "/v1/services/shared")
    assert "WebserviceNotFound" in other.gone("shared")
    wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 30,
               "the service stopped")
