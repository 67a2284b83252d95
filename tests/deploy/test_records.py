"""The deployment records others read (Kubernetes manifests, hub replicas): typed, checked, round-tripped,
kept behind load/save/edit/list/delete in the workspace's documents, its files or a shared ClickHouse
(deploy/records.py, deploy/store.py)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from scorewatch.deploy import store
from scorewatch.deploy.launch import environment_warnings, same_process
from scorewatch.deploy.records import (
    ComputeRecord,
    Deployment,
    EnvironmentSpec,
    ModelRecord,
    ModelRef,
    ServiceSpec,
)
from scorewatch.documents import ClickHouseDocuments, FileDocuments
from scorewatch.errors import BadRequest
from scorewatch.workspace import Workspace
from tests.backends import chdb_store, have_chdb


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
    # the serving settings the Kubernetes manifests take too (records.Serving), checked once for both
    ({"autoscale_target_utilization": 150}, "autoscale_target_utilization",
     "autoscale_target_utilization is a percentage (1 to 100)"),
    ({"liveness_probe": {"period": 5}}, "liveness_probe", "liveness_probe has an unknown setting 'period'"),
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


@pytest.mark.parametrize("kind", ["files", "clickhouse"])
def test_records_and_keys_are_documents_in_files_or_a_shared_store(tmp_path: Path, kind: str) -> None:
    workspace = Workspace(tmp_path / "ws").ensure()
    if kind == "clickhouse":
        if not have_chdb():
            pytest.skip("chdb is not installed")
        shared = chdb_store("records")
        documents: Any = ClickHouseDocuments(shared.client, poll_s=0)
    else:
        documents = FileDocuments(workspace.home)
    records = store.deployments(workspace, documents)
    records.save("svc-one", Deployment(spec(), uid="1"))
    records.save("svc-two", Deployment(spec(name="svc-two"), uid="2"))
    keys = store.service_keys(workspace, documents)
    keys.write("svc-one", {"primaryKey": "p" * 32, "secondaryKey": "s" * 32})  # under deployments/svc-one/ too
    assert [d.uid for d in records.list()] == ["1", "2"]
    edited = records.edit("svc-two", lambda d: None if d is None else Deployment(d.spec, d.status, uid="2b"))
    assert edited is not None and edited.uid == "2b" == records.load("svc-two").uid
    assert records.edit("svc-two", lambda d: None).uid == "2b"  # None: nothing written
    assert records.edit("nobody", lambda d: None) is None

    models = store.models(workspace, documents)
    first = ModelRecord(name="m", version=1, path="/x/m/1/model.pkl")
    assert models.create(first.id, first) and not models.create(first.id, ModelRecord(name="m", version=1, path="/y"))
    assert models.load("m:1").path == "/x/m/1/model.pkl"  # the first claim of a version holds
    computes = store.computes(workspace, documents)
    computes.save("aks", ComputeRecord(name="aks"))
    assert [m.id for m in models.list()] == ["m:1"] and [c.name for c in computes.list()] == ["aks"]

    keys.materialize("svc-one")  # the file a service process reads: written from the shared document
    path = store.keys_path(workspace, "svc-one")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and keys.read("svc-one")["primaryKey"] == "p" * 32
    keys.delete("svc-one")
    keys.materialize("svc-one")
    assert keys.read("svc-one") is None and not path.exists()
    on_disk = {p.relative_to(workspace.home).as_posix() for p in workspace.home.rglob("*.json")}
    if documents.shared:  # nothing of the records in the workspace's files
        assert on_disk == set()
    else:  # the layout of the workspace's files is the one they always had
        assert on_disk == {"deployments/svc-one/deployment.json", "deployments/svc-two/deployment.json",
                           "models/m/1.json", "computes/aks.json"}
    if kind == "clickhouse":
        shared.close()
