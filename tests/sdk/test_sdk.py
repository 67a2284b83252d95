"""scorewatch.sdk: Azure ML v1's names, signatures and error texts, on a real hub (sdk/)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from scorewatch.errors import ScorewatchError
from scorewatch.sdk import (
    AciWebservice,
    AksCompute,
    AksWebservice,
    ComputeTarget,
    ComputeTargetException,
    CondaDependencies,
    Environment,
    InferenceConfig,
    LocalWebservice,
    Model,
    UserErrorException,
    Webservice,
    WebserviceException,
    Workspace,
)
from tests.deploy.conftest import SCORE_PY, Hub, make_app


def test_the_shim_names_azure_modules_only_while_installed(azureml: None) -> None:
    import azureml.core
    from azureml.core import Environment as AzEnvironment
    from azureml.core import Model as AzModel
    from azureml.core import Workspace as AzWorkspace
    from azureml.core.compute import AksCompute as AzAksCompute
    from azureml.core.compute import ComputeTarget as AzComputeTarget
    from azureml.core.compute_target import ComputeTargetException as AzComputeTargetException
    from azureml.core.conda_dependencies import CondaDependencies as AzCondaDependencies
    from azureml.core.model import InferenceConfig as AzInferenceConfig
    from azureml.core.webservice import AciWebservice as AzAci
    from azureml.core.webservice import AksWebservice as AzAks
    from azureml.core.webservice import LocalWebservice as AzLocal
    from azureml.core.webservice import Webservice as AzWebservice
    from azureml.exceptions import WebserviceException as AzWebserviceException

    assert (AzWorkspace, AzModel, AzInferenceConfig, AzEnvironment, AzCondaDependencies) == (
        Workspace, Model, InferenceConfig, Environment, CondaDependencies)
    assert (AzWebservice, AzAci, AzAks, AzLocal) == (Webservice, AciWebservice, AksWebservice, LocalWebservice)
    assert (AzComputeTarget, AzAksCompute, AzComputeTargetException, AzWebserviceException) == (
        ComputeTarget, AksCompute, ComputeTargetException, WebserviceException)
    assert azureml.core.VERSION.startswith("1.") and "+scorewatch." in azureml.core.VERSION
    # The scoring process's azureml.core.model and the SDK's find a deployed model the same way.
    from scorewatch.scoring.compat.model import Model as ScoringModel
    from scorewatch.scoring.compat.model import ModelNotFoundException

    assert sys.modules["azureml.core.model"].ModelNotFoundException is ModelNotFoundException
    with pytest.raises(ModelNotFoundException) as sdk_error:
        AzModel.get_model_path("not-deployed-here")
    with pytest.raises(ModelNotFoundException) as scoring_error:
        ScoringModel.get_model_path("not-deployed-here")
    assert str(sdk_error.value) == str(scoring_error.value)


def test_errors_are_azures_and_scorewatchs() -> None:
    error = WebserviceException("WebserviceNotFound: Webservice with name x not found in provided workspace")
    assert error.message.startswith("WebserviceNotFound") and isinstance(error, ScorewatchError)
    assert str(error) == error.message


def test_deploy_configurations_take_azures_parameters_and_checks() -> None:
    aks = AksWebservice.deploy_configuration(num_replicas=3, cpu_cores=2, memory_gb=4, scoring_timeout_ms=5000,
                                             collect_model_data=True, enable_app_insights=True, period_seconds=5)
    spec = aks._spec()
    assert (spec["compute_type"], spec["replicas"], spec["autoscale_enabled"], spec["auth_enabled"]) == ("AKS", 3, False, True)
    assert (spec["cpu_cores"], spec["memory_gb"], spec["liveness_probe"]) == (2, 4, {"period_seconds": 5})
    autoscaled = AksWebservice.deploy_configuration(autoscale_min_replicas=2, autoscale_max_replicas=4)._spec()
    assert (autoscaled["autoscale_enabled"], autoscaled["replicas"], autoscaled["autoscale_max_replicas"]) == (True, 2, 4)
    aci = AciWebservice.deploy_configuration(cpu_cores=1, memory_gb=1)._spec()
    assert (aci["compute_type"], aci["auth_enabled"], aci.get("replicas", 1)) == ("ACI", False, 1)
    assert LocalWebservice.deploy_configuration(port=6789)._spec()["port"] == 6789
    with pytest.raises(WebserviceException) as info:
        AksWebservice.deploy_configuration(autoscale_enabled=True, num_replicas=2, cpu_cores=0)
    assert info.value.message == ("Invalid configuration, cpu_cores must be greater than zero.\n"
                                  "Invalid configuration, autoscale enabled and num_replicas provided.\n")
    with pytest.raises(WebserviceException, match="autoscale disabled but num_replicas not provided"):
        AksWebservice.deploy_configuration(autoscale_enabled=False)


def test_conda_dependencies_and_environments_read_and_write_azures_files(tmp_path: Path) -> None:
    deps = CondaDependencies.create(conda_packages=["numpy", "scikit-learn"], pip_packages=["azureml-defaults",
                                                                                          "inference-schema"])
    text = deps.serialize_to_string()
    assert "name: project_environment\ndependencies:\n- python=3.8\n- numpy\n- scikit-learn\n- pip:\n" in text
    assert "  - azureml-defaults\n  - inference-schema\n" in text
    path = tmp_path / "myenv.yml"
    path.write_text(text)
    env = Environment.from_conda_specification(name="myenv", file_path=str(path))
    assert env.name == "myenv" and env.python.conda_dependencies.pip_packages == ["azureml-defaults", "inference-schema"]
    assert env.python.conda_dependencies.conda_packages == ["numpy", "scikit-learn"]
    (tmp_path / "requirements.txt").write_text("numpy>=1.20  # arrays\n\n-e ./local\nduckdb\n")
    pip_env = Environment.from_pip_requirements("pipenv", str(tmp_path / "requirements.txt"))
    assert pip_env.python.conda_dependencies.pip_packages == ["numpy>=1.20", "duckdb"]
    (tmp_path / "bad.yml").write_text("name: x\ndependencies\n")
    with pytest.raises(UserErrorException, match=r"bad.yml:2: expected 'key: value'"):
        Environment.from_conda_specification("bad", str(tmp_path / "bad.yml"))


def test_workspace_from_config_finds_the_workspace_or_says_where_it_looked(workspace_env: Hub, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.from_config()
    assert ws.home == workspace_env.home and ws.name == "local" and ws.resource_group == "local"
    assert ws.location == "local" and ws.subscription_id == workspace_env.config["workspace_id"]
    ws.write_config(path=str(tmp_path))
    assert Workspace.from_config(path=str(tmp_path / ".azureml" / "config.json")).home == ws.home
    assert Workspace.from_config(path=str(workspace_env.home)).home == ws.home
    with pytest.raises(UserErrorException, match="We could not find config.json in: "):
        Workspace.from_config(path=str(tmp_path / "nowhere"))
    monkeypatch.setenv("SCOREWATCH_HOME", str(tmp_path / "none-here"))
    with pytest.raises(UserErrorException, match="We could not find config.json in: "):
        Workspace.from_config()


def test_models_register_list_find_download_and_delete(workspace_env: Hub, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    ws = Workspace.from_config()
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "a.bin").write_bytes(b"a")
    first = Model.register(ws, model_path=str(tmp_path / "weights"), model_name="weights", tags={"stage": "dev"})
    second = Model.register(ws, model_path=str(tmp_path / "weights"), model_name="weights", tags={"stage": "prod"})
    assert capsys.readouterr().out == "Registering model weights\nRegistering model weights\n"
    assert (first.id, second.id, second.version) == ("weights:1", "weights:2", 2)
    assert Model(ws, "weights").version == 2 and Model(ws, id="weights:1").tags == {"stage": "dev"}
    assert [m.version for m in Model.list(ws, name="weights", tags=[["stage", "dev"]])] == [1]
    assert ws.models["weights"].version == 2
    assert Model.get_model_path("weights", version=1, _workspace=ws) == first.url
    assert (Path(second.download(str(tmp_path / "out"))) / "a.bin").read_bytes() == b"a"
    with pytest.raises(WebserviceException) as info:
        Model(ws, "weights", version=7)
    assert info.value.message == "ModelNotFound: Model with name weights, version 7 not found in provided workspace"
    with pytest.raises(WebserviceException, match='Error, provided model path "/no/where" cannot be found'):
        Model.register(ws, model_path="/no/where", model_name="x")
    second.delete()
    assert [m.version for m in Model.list(ws, name="weights")] == [1]


def test_services_through_the_sdk(workspace_env: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = Workspace.from_config()
    folder = tmp_path / "sdk-app"
    _, model_file = make_app(folder, SCORE_PY)
    model = Model.register(ws, model_path=str(model_file), model_name="model.txt")
    env = Environment.from_conda_specification("needs-more", str(_conda(tmp_path)))
    target = ComputeTarget.create(ws, "aks-local", AksCompute.provisioning_configuration(agent_count=2))
    target.wait_for_completion(show_output=True)
    assert capsys.readouterr().out.endswith('Provisioning operation finished, operation "Succeeded"\n')
    assert target.provisioning_state == "Succeeded" and target.provisioning_errors is None
    assert ComputeTarget(ws, "aks-local").name == "aks-local" and isinstance(ComputeTarget(ws, "aks-local"), AksCompute)

    service = Model.deploy(ws, "sdk-service", [model], InferenceConfig(entry_script="score.py", source_directory=str(folder),
                                                                       environment=env),
                           AksWebservice.deploy_configuration(num_replicas=1), deployment_target=target)
    service.wait_for_deployment()
    assert isinstance(service, AksWebservice) and service.auth_enabled and service.compute_type == "AKS"
    primary, secondary = service.get_keys()
    assert service.run(json.dumps({"echo": "keyed"}))["echo"] == "keyed"  # with the primary key, as Azure
    assert service.serialize()["computeType"] == "AKS" and service.serialize()["authEnabled"] is True
    assert service._view["spec"]["compute_target"] == "aks-local"
    logs = service.get_logs()
    assert "scorewatch: warning: environment needs-more lists pip package 'no-such-package-anywhere==1.0'" in logs

    with pytest.raises(WebserviceException) as bad:
        service.run(json.dumps({"crash": True}))  # the worker dies mid-request
    assert bad.value.message.startswith("Received bad response from service") or "Error connecting" in bad.value.message
    service.wait_for_deployment()  # restarted
    service.regen_key("Secondary", set_key="my-secondary")
    service.wait_for_deployment()
    assert service.get_keys() == (primary, "my-secondary")
    with pytest.raises(WebserviceException, match="No parameters provided to update."):
        service.update()
    assert [s.name for s in Webservice.list(ws, compute_type="AKS")] == ["sdk-service"]
    assert Webservice.list(ws, compute_type="ACI") == [] and Webservice.list(ws, model_name="other") == []
    with pytest.raises(WebserviceException, match='Invalid compute type "GPU". Valid options are "ACI,AKS,LOCAL"'):
        Webservice.list(ws, compute_type="GPU")
    service.delete()
    with pytest.raises(WebserviceException) as gone:
        Webservice(ws, "sdk-service")
    assert gone.value.message == "WebserviceNotFound: Webservice with name sdk-service not found in provided workspace"
    target.delete()
    with pytest.raises(ComputeTargetException) as missing:
        ComputeTarget(ws, "aks-local")
    assert missing.value.message == ("ComputeTargetNotFound: Compute Target with name aks-local not found in "
                                     "provided workspace")


def test_a_failing_deployment_raises_azures_error_from_wait_for_deployment(workspace_env: Hub, tmp_path: Path) -> None:
    ws = Workspace.from_config()
    folder = tmp_path / "failing"
    folder.mkdir()
    (folder / "score.py").write_text("def init():\n    raise ValueError('no model')\n\n\ndef run(raw):\n    return 1\n")
    service = Model.deploy(ws, "failing-service", [], InferenceConfig(entry_script=str(folder / "score.py")),
                           LocalWebservice.deploy_configuration())
    with pytest.raises(WebserviceException) as info:
        service.wait_for_deployment(timeout_sec=120)
    message = info.value.message
    assert message.startswith("Service deployment polling reached non-successful terminal state, current service "
                              f"state: Failed\nOperation ID: {service._view['uid']}\nMore information can be found "
                              "using '.get_logs()'\nError:\n")
    assert json.loads(message.split("Error:\n", 1)[1])["code"] == "CrashLoopBackOff"
    assert service.error is not None and "ValueError: no model" in service.error["message"]
    assert "ValueError: no model" in service.get_logs()
    with pytest.raises(WebserviceException, match="scoring_uri unavailable") if not service.scoring_uri else \
            pytest.raises(WebserviceException, match="Error connecting to"):
        service.run("{}")
    service.delete()


def _conda(tmp_path: Path) -> Path:
    path = tmp_path / "env.yml"
    path.write_text(f"name: needs-more\ndependencies:\n- python={sys.version_info.major}.{sys.version_info.minor}\n"
                    "- pip:\n  - no-such-package-anywhere==1.0\n  - azureml-defaults\n")
    return path


def test_the_sdk_needs_a_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / ".scorewatch"
    monkeypatch.setenv("SCOREWATCH_HOME", str(home))
    ws = Workspace.create("mine", exist_ok=False, show_output=False)
    assert ws.name == "mine" and (home / "config.json").is_file()
    with pytest.raises(UserErrorException, match="already exists"):
        Workspace.create("mine", show_output=False)
    with pytest.raises(WebserviceException, match="has no hub yet: start one with `scorewatch hub`"):
        Webservice.list(ws)
    assert os.environ["SCOREWATCH_HOME"] == str(home)
