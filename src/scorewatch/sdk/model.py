"""``Model`` and ``InferenceConfig`` (``azureml.core.model``), on the hub's control API.

``Model.register`` copies the file or folder into the workspace as the next version of its name;
``Model.deploy`` deploys registered models as a service the hub runs and returns its
:class:`~scorewatch.sdk.webservice.Webservice`. ``Model.get_model_path`` is the one a scoring script
uses (:mod:`scorewatch.scoring.compat.model`): without a workspace it searches the same places, so a
``score.py`` tried in a notebook finds its model as it will when deployed.
"""

from __future__ import annotations

import builtins
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scorewatch.scoring.compat.model import Model as _ScoringModel
from scorewatch.scoring.compat.model import ModelNotFoundException
from scorewatch.sdk.exceptions import WebserviceException

if TYPE_CHECKING:
    from scorewatch.sdk.compute import ComputeTarget
    from scorewatch.sdk.environment import Environment
    from scorewatch.sdk.webservice import Webservice, WebserviceDeploymentConfiguration
    from scorewatch.sdk.workspace import Workspace

__all__ = ["InferenceConfig", "Model", "ModelNotFoundException"]


class Model:
    """A registered model version."""

    def __init__(self, workspace: Workspace, name: str | None = None, id: str | None = None,
                 tags: list[Any] | None = None, properties: list[Any] | None = None, version: int | None = None,
                 run_id: str | None = None, model_framework: str | None = None, expand: bool = True,
                 sub_folder: str | None = None) -> None:
        if id:
            name, _, version_text = id.rpartition(":")
            version = int(version_text) if version_text.isdigit() else version
        if not name:
            raise WebserviceException("Error, one of id or name must be provided.")
        found = Model.list(workspace, name=name, tags=tags, properties=properties)
        found = [m for m in found if version is None or m.version == int(version)]
        if not found:
            detail = f"name {name}" + "".join(f", {k} {v}" for k, v in (("tags", tags), ("properties", properties),
                                                                         ("version", version)) if v)
            raise WebserviceException(f"ModelNotFound: Model with {detail} not found in provided workspace")
        self._load(workspace, found[0]._record)

    def _load(self, workspace: Workspace, record: dict[str, Any]) -> None:
        self._record = record
        self.workspace = workspace
        self.name: str = record["name"]
        self.version: int = record["version"]
        self.id = f"{self.name}:{self.version}"
        self.tags: dict[str, str] = record["tags"]
        self.properties: dict[str, str] = record["properties"]
        self.description: str = record["description"]
        self.created_time = datetime.fromisoformat(record["created_time"]) if record.get("created_time") else None
        self.url = record["path"]  # where its files are, in the workspace
        self.model_framework = None
        self.model_framework_version = None
        self.run_id = None
        self.experiment_name = None

    @classmethod
    def _of(cls, workspace: Workspace, record: dict[str, Any]) -> Model:
        model = cls.__new__(cls)
        model._load(workspace, record)
        return model

    def __repr__(self) -> str:
        return (f"Model(workspace={self.workspace!r}, name={self.name}, id={self.id}, version={self.version}, "
                f"tags={self.tags}, properties={self.properties})")

    # -- registering and finding ---------------------------------------------------------------------
    @staticmethod
    def register(workspace: Workspace, model_path: str, model_name: str, tags: dict[str, str] | None = None,
                 properties: dict[str, str] | None = None, description: str | None = None, datasets: Any = None,
                 model_framework: str | None = None, model_framework_version: str | None = None,
                 child_paths: list[str] | None = None, sample_input_dataset: Any = None,
                 sample_output_dataset: Any = None, resource_configuration: Any = None) -> Model:
        """Copy ``model_path`` (a file or a folder) into the workspace as the next version of ``model_name``."""
        if model_framework is None and model_framework_version is not None:
            raise WebserviceException("Model framework version cannot be provided without a valid framework")
        if not os.path.exists(model_path):
            raise WebserviceException(f'Error, provided model path "{model_path}" cannot be found')
        if child_paths:
            raise WebserviceException("child_paths is not supported by scorewatch: register a folder holding only "
                                      "the files to bundle")
        print(f"Registering model {model_name}")
        record = workspace._call("POST", "/v1/models", {
            "model_path": os.path.abspath(model_path), "model_name": model_name, "tags": tags or {},
            "properties": properties or {}, "description": description or ""})
        return Model._of(workspace, record)

    @staticmethod
    def list(workspace: Workspace, name: str | None = None, tags: list[Any] | None = None,
             properties: list[Any] | None = None, run_id: str | None = None, latest: bool = False,
             expand: bool = True, page_count: int = 255, model_framework: str | None = None) -> list[Model]:
        """Registered models, newest first; ``tags``/``properties`` filter by key or by ``[key, value]``."""
        answer = workspace._call("GET", "/v1/models", query={
            "name": name, "latest": latest, "tags": _filter_text(tags), "properties": _filter_text(properties)})
        return [Model._of(workspace, record) for record in answer["value"]]

    @staticmethod
    def get_model_path(model_name: str, version: int | None = None, _workspace: Workspace | None = None) -> str:
        """Where a model's files are: a registered version's in ``_workspace``; else where a scoring
        script finds a deployed model (``AZUREML_MODEL_DIR``, ``azureml-models/<name>/<version>``)."""
        if _workspace is not None:
            model = Model(_workspace, name=model_name, version=version)
            return model.url
        return _ScoringModel.get_model_path(model_name, version)

    # -- using it ------------------------------------------------------------------------------------
    @staticmethod
    def deploy(workspace: Workspace, name: str, models: builtins.list[Model], inference_config: InferenceConfig | None = None,
               deployment_config: WebserviceDeploymentConfiguration | None = None,
               deployment_target: ComputeTarget | None = None, overwrite: bool = False,
               show_output: bool = False) -> Webservice:
        """Deploy ``models`` as the service ``name`` (see :mod:`scorewatch.sdk.webservice`)."""
        from scorewatch.sdk.webservice import deploy

        return deploy(workspace, name, models, inference_config, deployment_config, deployment_target, overwrite,
                      show_output)

    def delete(self) -> None:
        """Delete this version (refused while a service uses it)."""
        self.workspace._call("DELETE", f"/v1/models/{self.name}/{self.version}")

    def download(self, target_dir: str = ".", exist_ok: bool = False, exists_ok: bool | None = None) -> str:
        """Copy the model's file or folder into ``target_dir``; returns the copy's path."""
        exist_ok = exist_ok if exists_ok is None else exists_ok
        source = Path(self.url)
        target = Path(target_dir) / source.name
        if target.exists() and not exist_ok:
            raise WebserviceException(f"File {target} already exists. To overwrite, set exist_ok to True.")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
        return str(target)

    def serialize(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "version": self.version, "tags": self.tags,
                "properties": self.properties, "description": self.description,
                "createdTime": self.created_time.isoformat() if self.created_time else None,
                "url": self.url, "workspaceName": self.workspace.name, "mimeType": "application/octet-stream",
                "framework": None, "frameworkVersion": None, "runId": None, "experimentName": None}


class InferenceConfig:
    """What to run: the entry script, the folder it lives in, and its environment."""

    def __init__(self, entry_script: str | None = None, runtime: str | None = None, conda_file: str | None = None,
                 extra_docker_file_steps: str | None = None, source_directory: str | None = None,
                 enable_gpu: bool | None = None, description: str | None = None, base_image: str | None = None,
                 base_image_registry: Any = None, cuda_version: str | None = None,
                 environment: Environment | None = None) -> None:
        if not entry_script:
            raise WebserviceException("Error, entry_script must be provided.")
        self.entry_script = entry_script
        self.runtime = runtime
        self.conda_file = conda_file
        self.extra_docker_file_steps = extra_docker_file_steps
        self.source_directory = source_directory
        self.enable_gpu = enable_gpu
        self.description = description
        self.base_image = base_image
        self.base_image_registry = base_image_registry
        self.cuda_version = cuda_version
        self.environment = environment

    def _paths(self) -> dict[str, str | None]:
        """The entry script and source directory as absolute paths (the hub runs elsewhere)."""
        if self.source_directory is not None:
            source = os.path.abspath(self.source_directory)
            script = self.entry_script if os.path.isabs(self.entry_script) else os.path.join(source, self.entry_script)
            return {"entry_script": os.path.abspath(script), "source_directory": source}
        return {"entry_script": os.path.abspath(self.entry_script), "source_directory": None}

    def _environment(self) -> dict[str, Any] | None:
        from scorewatch.sdk.environment import Environment

        if self.environment is not None:
            return self.environment._spec()
        if self.conda_file:
            folder = self.source_directory or "."
            path = self.conda_file if os.path.isabs(self.conda_file) else os.path.join(folder, self.conda_file)
            return Environment.from_conda_specification("inference-environment", path)._spec()
        return None

    def __repr__(self) -> str:
        return (f"InferenceConfig(entry_script={self.entry_script}, source_directory={self.source_directory}, "
                f"environment={getattr(self.environment, 'name', None)})")


def _filter_text(items: list[Any] | None) -> str | None:
    """``Model.list``/``Webservice.list`` filters (``"key"`` or ``["key", "value"]``) as the API takes them."""
    if not items:
        return None
    return ",".join(f"{item[0]}={item[1]}" if isinstance(item, list | tuple) else str(item) for item in items)
