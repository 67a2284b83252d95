"""Azure ML's documentation flow, written as the documentation writes it, with the azureml shim on:
register a model, deploy with App Insights off, score, switch it on, score, find the inputs with
`traces | where customDimensions contains "input"`, read the service's prints with get_logs(), switch
it off, score, no new rows, delete."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.deploy.conftest import Hub

pytestmark = pytest.mark.slow

SAMPLE = [0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.02, -0.018]


def query(hub: Hub, kql: str) -> list[list]:
    """The query API, as a user of the hub's appId and API key calls it."""
    app = hub.config["default_app"]
    response = httpx.post(f"{hub.url}/v1/apps/{app['app_id']}/query", json={"query": kql},
                          headers={"x-api-key": app["api_key"]}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["tables"][0]["rows"]


def test_the_documentation_flow_runs_as_written(workspace_env: Hub, azureml: None, seed_app: Path,
                                                module_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub = workspace_env
    from azureml.core import Workspace
    from azureml.core.model import InferenceConfig, Model
    from azureml.core.webservice import AciWebservice, Webservice

    ws = Workspace.from_config()
    model = Model.register(workspace=ws, model_path=str(module_tmp / "seed-model" / "sklearn_regression_model.pkl"),
                           model_name="sklearn_regression_model.pkl", tags={"area": "diabetes", "type": "regression"},
                           description="Ridge regression model to predict diabetes")
    inference_config = InferenceConfig(entry_script="score.py", source_directory=str(seed_app))
    aci_config = AciWebservice.deploy_configuration(cpu_cores=1, memory_gb=1, enable_app_insights=False)
    service = Model.deploy(workspace=ws, name="sklearn-service", models=[model], inference_config=inference_config,
                           deployment_config=aci_config)
    service.wait_for_deployment(show_output=True)
    printed = capsys.readouterr().out
    assert printed.startswith("Registering model sklearn_regression_model.pkl\nTips: You can try get_logs(): "
                              "https://aka.ms/debugimage#dockerlog")
    assert "\nSucceeded\n" in printed and printed.endswith('ACI service creation operation finished, operation "Succeeded"\n')
    assert service.state == "Healthy" and service.scoring_uri.endswith("/score")

    test_sample = json.dumps({"data": [SAMPLE]})
    before = service.run(input_data=test_sample)
    assert isinstance(before, list) and len(before) == 1 and isinstance(before[0], float)

    aks_service = Webservice(ws, "sklearn-service")
    aks_service.update(enable_app_insights=True)
    assert service.run(input_data=json.dumps({"data": [SAMPLE, SAMPLE]})) == before * 2

    deadline = time.monotonic() + 30
    rows: list[list] = []
    while not rows and time.monotonic() < deadline:
        rows = query(hub, 'traces | where customDimensions contains "input" | project message, '
                          'tostring(customDimensions.Input), tostring(customDimensions["Service Name"])')
        time.sleep(0.2)
    assert [(m, json.loads(i), s) for m, i, s in rows] == [
        ("model_data_collection", {"data": [SAMPLE, SAMPLE]}, "sklearn-service")]  # only while on

    logs = service.get_logs()
    assert "model loaded from" in logs and "scored 1 rows" in logs and "scored 2 rows" in logs
    assert "model loaded from" in service.get_logs(init=True) and "scored" not in service.get_logs(init=True)

    aks_service.update(enable_app_insights=False)
    service.run(input_data=json.dumps({"data": [SAMPLE, SAMPLE, SAMPLE]}))
    service.delete()  # its workers stop, and send what they recorded: nothing after the switch
    assert service.state == "Deleting"
    assert len(query(hub, 'traces | where customDimensions contains "input"')) == 1
    assert len(query(hub, "requests | where cloud_RoleName == 'sklearn-service'")) == 1
    assert "sklearn-service" not in ws.webservices
