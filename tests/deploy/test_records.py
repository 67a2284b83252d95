"""The deployment records others read (Kubernetes manifests, hub replicas): typed, checked, round-tripped,
kept behind load/save/list/delete (deploy/records.py, deploy/store.py)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import psutil
import pytest

from scorewatch.deploy import store
from scorewatch.deploy.launch import environment_warnings, same_process
from scorewatch.deploy.records import Deployment, EnvironmentSpec, ModelRef, ServiceSpec
from scorewatch.errors import BadRequest
from scorewatch.workspace import Workspace


def spec(**fields: object) -> ServiceSpec:
    return ServiceSpec.from_dict({"name": "svc-one", "entry_script": "/app/score.py", **fields})


def test_a_record_round_trips_through_plain_json_values() -> None:
    deployment = Deployment(spec(models=[{"name": "m", "version": 2}], replicas=3, autoscale_enabled=True,
                                 autoscale_max_replicas=5, cpu_cores=1, liveness_probe={"period_seconds": 5},
                                 environment={"name": "e", "pip_packages": ["numpy"]}), uid="abc")
    data = deployment.to_dict()
    assert data["spec"]["models"] == [{"name": "m", "version": 2}] and data["spec"]["cpu_cores"] == 1.0
    assert Deployment.from_dict(data) == deployment
    assert deployment.spec.models == [ModelRef("m", 2)] and deployment.spec.models[0].id == "m:2"
    assert isinstance(deployment.spec.environment, EnvironmentSpec)


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"replicas": 0}, "replicas", "replicas must be greater than zero, not 0"),
    ({"port": 70000}, "port", "port must be a TCP port (1 to 65535), not 70000"),
    ({"compute_type": "GPU"}, "compute_type", "compute_type must be one of Local, ACI, AKS, not 'GPU'"),
    ({"autoscale_min_replicas": 5, "autoscale_max_replicas": 2}, "autoscale_min_replicas",
     "autoscale_min_replicas cannot be greater than autoscale_max_replicas"),
    ({"models": [{"name": "m", "version": 1}, {"name": "m", "version": 2}]}, "models", "models holds the same model twice"),
    ({"name": "-x"}, "name", "invalid service name '-x'"),
])
def test_check_names_the_field(fields: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        spec(**fields).check()
    assert info.value.details["field"] == field and info.value.message.startswith(message)


def test_from_dict_names_the_field_and_refuses_what_it_does_not_know() -> None:
    for data, field in (({"tags": {"a": 1}}, "tags"), ({"models": [{"name": "m"}]}, "models[0].version"),
                        ({"environment": {"pip_packages": "numpy"}}, "environment.pip_packages")):
        with pytest.raises(BadRequest) as info:
            spec(**data)
        assert info.value.details["field"] == field


def test_records_are_kept_one_private_file_each(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws").ensure()
    records = store.deployments(workspace)
    assert records.load("svc-one") is None and records.list() == []
    records.save("svc-one", Deployment(spec(), uid="1"))
    records.save("svc-two", Deployment(spec(name="svc-two"), uid="2"))
    assert [d.uid for d in records.list()] == ["1", "2"] and records.load("svc-two").name == "svc-two"
    path = tmp_path / "ws" / "deployments" / "svc-one" / "deployment.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    records.delete("svc-one")
    assert [d.uid for d in records.list()] == ["2"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"spec": {"name": 5}}')
    with pytest.raises(Exception, match="is not a valid Deployment record"):
        records.load("svc-one")
    assert [d.uid for d in records.list()] == ["2"]  # the others go on working


def test_a_pid_counts_as_the_service_only_with_its_start_time() -> None:
    me = psutil.Process()
    assert same_process(me.pid, me.create_time())
    assert not same_process(me.pid, me.create_time() - 100)  # a reused pid: not ours
    assert not same_process(None, time.time())


def test_environment_warnings_name_what_this_interpreter_lacks() -> None:
    warnings = environment_warnings(EnvironmentSpec(name="e", python_version="2.7",
                                                    conda_packages=["numpy>=1", "pip"],
                                                    pip_packages=["azureml-defaults", "nosuch-pkg[x]==1.0", "duckdb"]))
    assert len(warnings) == 2
    assert warnings[0].startswith("environment e asks for Python 2.7; the service runs on Python ")
    assert warnings[1].startswith("environment e lists pip package 'nosuch-pkg[x]==1.0', which is not installed in ")
    assert environment_warnings(None) == []
