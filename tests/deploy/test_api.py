"""The control API on a real hub: the admin key, errors that name the field, models, compute targets,
Azure's not-found texts, keys (deploy/api.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.deploy.conftest import Hub, deploy, make_app, register

ROUTES = [("GET", "/v1/services"), ("POST", "/v1/services"), ("GET", "/v1/services/x-y-z"),
          ("PATCH", "/v1/services/x-y-z"), ("DELETE", "/v1/services/x-y-z"), ("GET", "/v1/services/x-y-z/logs"),
          ("GET", "/v1/services/x-y-z/keys"), ("POST", "/v1/services/x-y-z/reload"), ("GET", "/v1/models"),
          ("POST", "/v1/models"), ("GET", "/v1/models/m"), ("DELETE", "/v1/models/m/1"), ("GET", "/v1/computes"),
          ("PUT", "/v1/computes/aks1")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_the_admin_key(hub: Hub, method: str, path: str) -> None:
    missing = httpx.request(method, hub.url + path, json={})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "Unauthorized"
    wrong = httpx.request(method, hub.url + path, json={}, headers={"Authorization": "Bearer swa_not-the-key"})
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "Forbidden"
    basic = httpx.request(method, hub.url + path, json={}, headers={"Authorization": f"Basic {hub.config['admin_key']}"})
    assert basic.status_code == 401


def test_the_admin_key_is_private_and_never_logged(hub: Hub) -> None:
    assert stat.S_IMODE(os.stat(hub.home / "config.json").st_mode) == 0o600
    key = hub.config["admin_key"]
    assert httpx.get(f"{hub.url}/v1/services", headers=hub.auth).status_code == 200
    httpx.get(f"{hub.url}/v1/services", headers={"Authorization": f"Bearer {key}x"})
    assert key not in hub.output()


def error(response: httpx.Response) -> dict[str, Any]:
    return response.json()["error"]


@pytest.mark.parametrize(("body", "status", "field", "text"), [
    ({"spec": {"name": "ok-name"}}, 400, "spec.entry_script", "missing field(s) entry_script"),
    ({"spec": {"name": "Bad_Name", "entry_script": "/x/score.py"}}, 400, "name", "invalid service name 'Bad_Name'"),
    ({"spec": {"name": "ok-name", "entry_script": "score.py"}}, 400, "entry_script", "must be an absolute path"),
    ({"spec": {"name": "ok-name", "entry_script": "/x/score.py", "replicas": "2"}}, 400, "spec.replicas",
     "spec.replicas must be a whole number"),
    ({"spec": {"name": "ok-name", "entry_script": "/x/score.py", "replicas": 0}}, 400, "replicas",
     "replicas must be greater than zero"),
    ({"spec": {"name": "ok-name", "entry_script": "/x/score.py", "colour": "red"}}, 400, "spec.colour",
     "unknown field(s) colour in spec"),
    ({"spec": {"name": "ok-name", "entry_script": "/nowhere/score.py"}}, 400, "entry_script",
     "entry_script /nowhere/score.py is not a file"),
    ({"spec": {"name": "ok-name", "entry_script": "/x/score.py", "models": [{"name": "nosuch", "version": 3}]}}, 404,
     None, "ModelNotFound: Model with name nosuch, version 3 not found in provided workspace"),
    ({"spec": {"name": "ok-name", "entry_script": "/x/score.py"}, "overwrite": "yes"}, 400, "overwrite",
     "overwrite must be true or false"),
    ({"spec": {"name": "ok-name", "entry_script": "/x/score.py"}, "extra": 1}, 400, "extra", "unknown field(s) extra"),
])
def test_bad_deployments_are_a_4xx_naming_the_field(hub: Hub, body: dict[str, Any], status: int, field: str | None,
                                                     text: str) -> None:
    response = httpx.post(f"{hub.url}/v1/services", json=body, headers=hub.auth)
    assert response.status_code == status, response.text
    assert text in error(response)["message"]
    assert error(response).get("field") == field
    not_json = httpx.post(f"{hub.url}/v1/services", content=b"{nope", headers=hub.auth)
    assert not_json.status_code == 400 and "not valid JSON" in error(not_json)["message"]


def test_azure_texts_for_what_is_not_there(hub: Hub) -> None:
    missing = httpx.get(f"{hub.url}/v1/services/no-such-service", headers=hub.auth)
    assert missing.status_code == 404 and error(missing) == {
        "code": "WebserviceNotFound",
        "message": "WebserviceNotFound: Webservice with name no-such-service not found in provided workspace"}
    empty = httpx.patch(f"{hub.url}/v1/services/no-such-service", json={}, headers=hub.auth)
    assert empty.status_code == 400 and error(empty)["message"] == "No parameters provided to update."
    model = httpx.get(f"{hub.url}/v1/models/nosuch", headers=hub.auth)
    assert error(model)["message"] == "ModelNotFound: Model with name nosuch not found in provided workspace"
    compute = httpx.get(f"{hub.url}/v1/computes/aks9", headers=hub.auth)
    assert error(compute)["message"] == "ComputeTargetNotFound: Compute Target with name aks9 not found in provided workspace"
    tail = httpx.get(f"{hub.url}/v1/services/no-such-service/logs", params={"tail": "-1"}, headers=hub.auth)
    assert tail.status_code == 400 and error(tail)["field"] == "tail"


def test_models_are_versioned_copies_listed_and_deleted_unless_in_use(hub: Hub, module_tmp: Path) -> None:
    folder = module_tmp / "versioned"
    _, model_file = make_app(folder)
    first = register(hub, model_file, "versioned.txt")
    model_file.write_text("v2")
    second = register(hub, model_file, "versioned.txt")
    assert (first["version"], second["version"]) == (1, 2)
    assert Path(first["path"]).read_text() == "v1" and Path(second["path"]).read_text() == "v2"  # copies
    assert Path(first["path"]).is_relative_to(hub.home / "models" / "versioned.txt" / "1")
    latest = hub.api.request("GET", "/v1/models/versioned.txt")
    assert latest["version"] == 2 and hub.api.request("GET", "/v1/models/versioned.txt", query={"version": 1})["path"] == first["path"]
    listed = hub.api.request("GET", "/v1/models", query={"name": "versioned.txt"})["value"]
    assert [m["version"] for m in listed] == [2, 1]
    missing = httpx.post(f"{hub.url}/v1/models", json={"model_path": "/no/such/file", "model_name": "x"}, headers=hub.auth)
    assert missing.status_code == 400 and error(missing)["message"] == 'Error, provided model path "/no/such/file" cannot be found'

    deploy(hub, "uses-model", folder, models=[{"name": "versioned.txt", "version": 1}])
    in_use = httpx.delete(f"{hub.url}/v1/models/versioned.txt/1", headers=hub.auth)
    assert in_use.status_code == 409 and "used by service(s) uses-model" in error(in_use)["message"]
    assert httpx.delete(f"{hub.url}/v1/models/versioned.txt/2", headers=hub.auth).status_code == 200
    assert [m["version"] for m in hub.api.request("GET", "/v1/models", query={"name": "versioned.txt"})["value"]] == [1]
    hub.api.request("DELETE", "/v1/services/uses-model")
    hub.gone("uses-model")


def test_a_name_taken_is_azures_conflict_unless_overwritten(hub: Hub, module_tmp: Path, model_ref: dict[str, Any]) -> None:
    folder = module_tmp / "taken"
    make_app(folder)
    deploy(hub, "taken", folder, models=[model_ref])
    again = httpx.post(f"{hub.url}/v1/services", headers=hub.auth, json={"spec": {
        "name": "taken", "entry_script": str(folder / "score.py"), "source_directory": str(folder), "models": [model_ref]}})
    assert again.status_code == 409
    assert error(again)["message"] == "Error, there is already a service with name taken found in workspace local"
    hub.healthy("taken")
    hub.api.request("POST", "/v1/services", {"spec": {"name": "taken", "entry_script": str(folder / "score.py"),
                                                      "source_directory": str(folder), "models": [model_ref],
                                                      "auth_enabled": True}, "overwrite": True})
    view = hub.healthy("taken")
    assert view["spec"]["generation"] == 2 and view["spec"]["auth_enabled"] is True
    keys = hub.api.request("GET", "/v1/services/taken/keys")
    assert httpx.post(view["scoring_uri"], content=b"{}").status_code == 401
    assert httpx.post(view["scoring_uri"], content=b"{}",
                      headers={"Authorization": f"Bearer {keys['secondaryKey']}"}).status_code == 200
    keys_file = hub.home / "deployments" / "taken" / "keys.json"
    assert stat.S_IMODE(os.stat(keys_file).st_mode) == 0o600
    for process in [psutil.Process(view["status"]["pid"]), *psutil.Process(view["status"]["pid"]).children()]:
        command_line = " ".join(process.cmdline())  # no key, no connection string on a command line
        assert keys["primaryKey"] not in command_line and "InstrumentationKey" not in command_line

    hub.api.request("POST", "/v1/services/taken/keys", {"keyType": "primary", "keyValue": "my-own-primary-key"})
    view = hub.healthy("taken")
    assert hub.api.request("GET", "/v1/services/taken/keys")["primaryKey"] == "my-own-primary-key"
    assert httpx.post(view["scoring_uri"], content=b"{}",
                      headers={"Authorization": "Bearer my-own-primary-key"}).status_code == 200
    bad = httpx.post(f"{hub.url}/v1/services/taken/keys", json={"keyType": "Tertiary"}, headers=hub.auth)
    assert bad.status_code == 400
    assert error(bad)["message"] == "Error, invalid value provided for key: Tertiary.\nValid options are: Primary, Secondary"
    hub.api.request("DELETE", "/v1/services/taken")
    hub.gone("taken")


def test_compute_targets_are_recorded_settings(hub: Hub) -> None:
    created = hub.api.request("PUT", "/v1/computes/aks-prod", {"provisioning": {"agent_count": 3, "vm_size": "D3"}})
    assert created["name"] == "aks-prod" and created["type"] == "AKS"
    assert hub.api.request("GET", "/v1/computes/aks-prod")["provisioning"] == {"agent_count": 3, "vm_size": "D3"}
    assert [c["name"] for c in hub.api.request("GET", "/v1/computes")["value"]] == ["aks-prod"]
    hub.api.request("DELETE", "/v1/computes/aks-prod")
    assert hub.api.request("GET", "/v1/computes")["value"] == []
    bad = httpx.put(f"{hub.url}/v1/computes/a", json={}, headers=hub.auth)
    assert bad.status_code == 400 and error(bad)["field"] == "name"
