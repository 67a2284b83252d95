"""``scorewatch k8s render``: the hub, ClickHouse and each service as Kubernetes objects, every one
valid for a pinned Kubernetes version (kubernetes-validate's schemas, strict: no unknown field), with
Azure's AKS settings mapped to replicas, autoscaling, resources and probes."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from scorewatch.apps import Registry
from scorewatch.cli import main
from scorewatch.deploy import store as deploy_store
from scorewatch.deploy.records import Deployment, EnvironmentSpec, ServiceSpec, ServiceStatus
from scorewatch.errors import BadRequest
from scorewatch.k8s.services import ServiceInput
from scorewatch.workspace import Workspace

kubernetes_validate = pytest.importorskip("kubernetes_validate")

KUBERNETES = ["1.30.0", "1.34.0"]  # an AKS long-term-support version, and a recent one


def render(tmp_path: Path, *args: str, home: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    out = tmp_path / "out"
    home = home or tmp_path / "ws"
    main(["k8s", "render", "--out", str(out), "--home", str(home), *args])
    return {path.stem: list(yaml.safe_load_all(path.read_text())) for path in sorted(out.glob("*.yaml"))}


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, [o["kind"] for o in objects]
    return found[0]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    home = tmp_path / "ws"
    main(["app", "create", "default", "--home", str(home)])
    (home / "services").mkdir(exist_ok=True)
    (home / "services" / "sklearn-ridge.telemetry.json").write_text("{}")  # `scorewatch serve` ran it
    churn = ServiceSpec(  # a deployment record, as the control API keeps it (deploy/store.py)
        name="churn", entry_script="/home/me/churn/src/score.py", source_directory="/home/me/churn",
        compute_type="AKS", enable_app_insights=True, scoring_timeout_ms=5000, autoscale_enabled=True,
        autoscale_min_replicas=2, autoscale_max_replicas=9, autoscale_target_utilization=60, cpu_cores=0.5,
        memory_gb=1.5, cpu_cores_limit=2.0, liveness_probe={"period_seconds": 20},
        environment=EnvironmentSpec(environment_variables={"MODE": "strict"}), tags={"team": "a"}, generation=3)
    records = deploy_store.deployments(Workspace(home))
    records.save("churn", Deployment(churn, ServiceStatus(state="Healthy"), uid="1"))
    records.save("gone", Deployment(ServiceSpec(name="gone", entry_script="/x/score.py"), uid="2", deleting=True))
    return home


@pytest.mark.parametrize("version", KUBERNETES)
def test_every_object_is_valid_kubernetes(tmp_path: Path, workspace: Path, version: str) -> None:
    service = tmp_path / "svc.json"
    service.write_bytes(orjson.dumps({"name": "Fraud_Model", "image": "registry.example/fraud:7", "replicas": 3,
                                      "auth_enabled": True, "gpu_cores": 1, "enable_app_insights": False}))
    parts = render(tmp_path, "--service", str(service), home=workspace)
    assert set(parts) == {"namespace", "clickhouse", "hub", "service-churn", "service-sklearn-ridge",
                          "service-fraud-model"}
    for objects in parts.values():
        for manifest in objects:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_the_hub_and_its_clickhouse(tmp_path: Path, workspace: Path) -> None:
    parts = render(tmp_path, "--hub-replicas", "3", "--namespace", "telemetry", home=workspace)
    hub = by_kind(parts["hub"], "Deployment")
    assert hub["metadata"]["namespace"] == "telemetry" and hub["spec"]["replicas"] == 3
    container = hub["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:1] == ["hub"] and container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["envFrom"] == [{"secretRef": {"name": "scorewatch-hub"}}]
    secret = by_kind(parts["hub"], "Secret")["stringData"]
    assert secret["SCOREWATCH_STORE"] == "clickhouse://scorewatch@scorewatch-clickhouse:8123/scorewatch"
    assert len(secret["SCOREWATCH_CLICKHOUSE_PASSWORD"]) >= 24  # made for this cluster
    assert by_kind(parts["hub"], "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    clickhouse = by_kind(parts["clickhouse"], "StatefulSet")
    ch = clickhouse["spec"]["template"]["spec"]["containers"][0]
    assert ch["image"].startswith("clickhouse/clickhouse-server:")  # the official image
    assert {"name": "CLICKHOUSE_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "scorewatch-hub", "key": "SCOREWATCH_CLICKHOUSE_PASSWORD"}}} in ch["env"]
    assert clickhouse["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    for path in (tmp_path / "out").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # they hold Secrets


def test_an_external_clickhouse(tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOREWATCH_CLICKHOUSE_PASSWORD", "from-the-environment")
    parts = render(tmp_path, "--clickhouse", "clickhouse://writer@ch.internal:8123/telemetry", home=workspace)
    assert "clickhouse" not in parts
    secret = by_kind(parts["hub"], "Secret")["stringData"]
    assert secret == {"SCOREWATCH_STORE": "clickhouse://writer@ch.internal:8123/telemetry",
                      "SCOREWATCH_CLICKHOUSE_PASSWORD": "from-the-environment"}


def test_aks_settings_become_replicas_autoscaling_resources_and_probes(tmp_path: Path, workspace: Path) -> None:
    parts = render(tmp_path, "--service-image", "registry.example/services:1", home=workspace)
    churn = parts["service-churn"]
    deployment = by_kind(churn, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 2  # autoscale_min_replicas
    assert container["image"] == "registry.example/services:1"
    assert container["args"][:2] == ["serve", "/app/src/score.py"]  # the script in the service's folder
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1536Mi"},
                                      "limits": {"cpu": "2000m", "memory": "1536Mi"}}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SCORING_TIMEOUT_MS"] == "5000" and env["MODE"] == "strict" and env["SERVICE_NAME"] == "churn"
    live, ready = container["livenessProbe"], container["readinessProbe"]
    assert live["httpGet"]["path"] == "/health/live" and ready["httpGet"]["path"] == "/health/ready"
    assert (live["periodSeconds"], live["initialDelaySeconds"], live["failureThreshold"]) == (20, 310, 3)
    hpa = by_kind(churn, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 9)
    assert hpa["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
    secret = by_kind(churn, "Secret")
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    ikey = Registry(workspace / "apps.json").get("default").instrumentation_key
    assert secret["stringData"]["APPLICATIONINSIGHTS_CONNECTION_STRING"] == (
        f"InstrumentationKey={ikey};IngestionEndpoint=http://scorewatch-hub.scorewatch.svc:8400")
    assert by_kind(churn, "Service")["spec"]["ports"][0]["port"] == 80
    ridge = parts["service-sklearn-ridge"]  # only a name is known: Azure's defaults, fixed at one replica
    assert by_kind(ridge, "Deployment")["spec"]["replicas"] == 1 and not [
        o for o in ridge if o["kind"] == "HorizontalPodAutoscaler"]


def test_service_input_from_a_record_and_its_checks() -> None:
    spec = ServiceInput.from_mapping({"name": "a", "entry_script": "/x/score.py", "unknown_field": 1,
                                      "memory_gb_limit": None})
    assert (spec.entry_script, spec.memory_gb_limit) == ("/app/score.py", None)
    for bad in ({"name": "a", "autoscale_min_replicas": 5, "autoscale_max_replicas": 2},
                {"name": "a", "cpu_cores": 0}, {"name": "a", "autoscale_target_utilization": 150},
                {"name": "a", "liveness_probe": {"period": 3}}, {"replicas": 2}):
        with pytest.raises(BadRequest):
            ServiceInput.from_mapping(bad)


def test_clear_errors(tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["k8s", "render", "--home", str(workspace), "--clickhouse", "clickhouse://u:secret@h/db"])
    assert exited.value.code == 2 and "SCOREWATCH_CLICKHOUSE_PASSWORD" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["k8s", "render", "--home", str(workspace), "--app", "nope"])
    assert exited.value.code == 2 and "scorewatch app create nope" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "cpu_cores": -1}')
    with pytest.raises(SystemExit) as exited:
        main(["k8s", "render", "--home", str(workspace), "--service", str(bad)])
    assert exited.value.code != 0 and "cpu_cores" in capsys.readouterr().err
