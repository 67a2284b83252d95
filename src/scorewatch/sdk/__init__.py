"""scorewatch's Python SDK, with Azure ML v1's names, signatures and error texts.

    from scorewatch.sdk import Workspace, Model, InferenceConfig, AciWebservice, Webservice

    ws = Workspace.from_config()
    model = Model.register(ws, model_path="model.pkl", model_name="model.pkl")
    service = Model.deploy(ws, "my-service", [model], InferenceConfig(entry_script="score.py"),
                           AciWebservice.deploy_configuration(enable_app_insights=True))
    service.wait_for_deployment(show_output=True)
    service.update(enable_app_insights=False)

Everything goes through the workspace's hub (its control API). :func:`install_azureml` makes
``import azureml.core`` (and the rest of the names below) resolve to this SDK when the real
azureml-core is not installed, so Azure ML's notebooks run unchanged. See docs/sdk.md.
"""

from __future__ import annotations

from scorewatch import __version__
from scorewatch.scoring import compat
from scorewatch.sdk.compute import AksCompute, ComputeTarget
from scorewatch.sdk.environment import CondaDependencies, Environment
from scorewatch.sdk.exceptions import (
    AzureMLException,
    ComputeTargetException,
    ModelNotFoundException,
    UserErrorException,
    WebserviceException,
)
from scorewatch.sdk.model import InferenceConfig, Model
from scorewatch.sdk.webservice import AciWebservice, AksWebservice, LocalWebservice, Webservice
from scorewatch.sdk.workspace import Workspace

# What `azureml.core.VERSION` says: an Azure ML v1 version (code compares with it), marked as ours.
VERSION = f"1.60.0+scorewatch.{__version__}"

__all__ = ["VERSION", "AciWebservice", "AksCompute", "AksWebservice", "AzureMLException", "ComputeTarget",
           "ComputeTargetException", "CondaDependencies", "Environment", "InferenceConfig", "LocalWebservice",
           "Model", "ModelNotFoundException", "UserErrorException", "Webservice", "WebserviceException",
           "Workspace", "install_azureml"]

# Azure ML v1's module -> ours. `azureml.core.model` here is a superset of the scoring process's
# (scorewatch.scoring.compat.model): the same Model.get_model_path, the same ModelNotFoundException.
AZUREML_SHIMS = {
    "azureml.core": "scorewatch.sdk",
    "azureml.core.workspace": "scorewatch.sdk.workspace",
    "azureml.core.model": "scorewatch.sdk.model",
    "azureml.core.webservice": "scorewatch.sdk.webservice",
    "azureml.core.webservice.webservice": "scorewatch.sdk.webservice",
    "azureml.core.webservice.aci": "scorewatch.sdk.webservice",
    "azureml.core.webservice.aks": "scorewatch.sdk.webservice",
    "azureml.core.webservice.local": "scorewatch.sdk.webservice",
    "azureml.core.environment": "scorewatch.sdk.environment",
    "azureml.core.conda_dependencies": "scorewatch.sdk.environment",
    "azureml.core.compute": "scorewatch.sdk.compute",
    "azureml.core.compute.aks": "scorewatch.sdk.compute",
    "azureml.core.compute.compute": "scorewatch.sdk.compute",
    "azureml.core.compute_target": "scorewatch.sdk.compute",
    "azureml.exceptions": "scorewatch.sdk.exceptions",
}


def install_azureml() -> None:
    """Make ``azureml.core``, ``azureml.core.webservice``, ``azureml.core.model``,
    ``azureml.core.environment``, ``azureml.core.conda_dependencies``, ``azureml.core.compute``,
    ``azureml.core.compute_target`` and ``azureml.exceptions`` resolve to this SDK, wherever no
    installed package provides them (idempotent). Nothing is installed on disk."""
    compat.install(AZUREML_SHIMS)
