"""``Webservice`` and its kinds (``azureml.core.webservice``): deployed services, on the hub's control API.

``Webservice(ws, name)`` returns a :class:`LocalWebservice`, :class:`AciWebservice` or
:class:`AksWebservice` as the service was deployed; all run on this machine, supervised by the hub.
The ``deploy_configuration`` of each kind takes Azure's parameters: the ones that shape a local
service act (``enable_app_insights``, ``collect_model_data``, ``auth_enabled``, keys,
``scoring_timeout_ms``, ``num_replicas``/``autoscale_min_replicas`` as worker processes,
``replica_max_concurrent_requests``, ``port``); the rest are recorded with the deployment (for
Kubernetes manifests: autoscaling, resources, probes, namespace). See docs/deployments.md.
"""

from __future__ import annotations

import builtins
import json
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scorewatch.sdk.exceptions import WebserviceException
from scorewatch.sdk.model import InferenceConfig, Model, _filter_text

if TYPE_CHECKING:
    from scorewatch.sdk.compute import ComputeTarget
    from scorewatch.sdk.workspace import Workspace

__all__ = ["AciWebservice", "AksWebservice", "LocalWebservice", "Webservice", "WebserviceDeploymentConfiguration"]

POLL_S = 0.2
TIPS = ("Tips: You can try get_logs(): https://aka.ms/debugimage#dockerlog or local deployment: "
        "https://aka.ms/debugimage#debug-locally to debug if deployment takes longer than 10 minutes.")
# Webservice.list's valid compute types, as Azure names them.
COMPUTE_TYPES = ("ACI", "AKS", "LOCAL")


class WebserviceDeploymentConfiguration:
    """Azure's settings of a deployment, as given to ``deploy_configuration``."""

    _webservice_type: type[Webservice]

    def __init__(self, **settings: Any) -> None:
        self._settings = settings
        for key, value in settings.items():
            setattr(self, key, value)

    def _spec(self) -> dict[str, Any]:
        """The service spec fields these settings give (see deploy/records.py: ServiceSpec)."""
        s = {k: v for k, v in self._settings.items() if v is not None}
        spec: dict[str, Any] = {"compute_type": self._webservice_type._webservice_type,
                                "auth_enabled": s.get("auth_enabled", self._webservice_type._default_auth)}
        for name in ("enable_app_insights", "collect_model_data", "scoring_timeout_ms", "cpu_cores", "memory_gb",
                     "cpu_cores_limit", "memory_gb_limit", "replica_max_concurrent_requests", "autoscale_min_replicas",
                     "autoscale_max_replicas", "autoscale_refresh_seconds", "autoscale_target_utilization",
                     "gpu_cores", "max_request_wait_time", "namespace", "port", "tags", "properties", "description"):
            if name in s:
                spec[name] = s[name]
        probe = {k: s[k] for k in ("period_seconds", "initial_delay_seconds", "timeout_seconds", "success_threshold",
                                   "failure_threshold") if k in s}
        if probe:
            spec["liveness_probe"] = probe
        if "num_replicas" in s:
            spec["replicas"] = s["num_replicas"]
        autoscale = s.get("autoscale_enabled", self._webservice_type._webservice_type == "AKS" and "num_replicas" not in s)
        spec["autoscale_enabled"] = autoscale
        if autoscale:
            spec["replicas"] = s.get("autoscale_min_replicas", 1)
        return spec

    def _keys(self) -> dict[str, str]:
        return {k: v for k, v in (("primaryKey", self._settings.get("primary_key")),
                                  ("secondaryKey", self._settings.get("secondary_key"))) if v}

    def validate_configuration(self) -> None:
        """Azure's checks of the values given (a WebserviceException listing every error)."""
        s = {k: v for k, v in self._settings.items() if v is not None}
        errors = [f"Invalid configuration, {name} must be greater than zero."
                  for name in ("cpu_cores", "memory_gb", "gpu_cores", "scoring_timeout_ms", "num_replicas",
                               "replica_max_concurrent_requests", "max_request_wait_time", "period_seconds",
                               "initial_delay_seconds", "timeout_seconds", "success_threshold", "failure_threshold")
                  if name in s and s[name] <= 0]
        if s.get("autoscale_enabled"):
            if s.get("num_replicas"):
                errors.append("Invalid configuration, autoscale enabled and num_replicas provided.")
            if s.get("autoscale_min_replicas", 1) > s.get("autoscale_max_replicas", 10):
                errors.append("Invalid configuration, autoscale_min_replicas cannot be greater than "
                              "autoscale_max_replicas.")
        elif "autoscale_enabled" in s and not s.get("num_replicas"):
            errors.append("Invalid configuration, autoscale disabled but num_replicas not provided.")
        if "port" in s and not (isinstance(s["port"], int) and 0 < s["port"] < 65536):
            errors.append("Invalid configuration, port must be a TCP port (1 to 65535).")
        if errors:
            raise WebserviceException("\n".join(errors) + "\n")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._settings})"


class Webservice:
    """A deployed service (see the module docstring)."""

    _webservice_type: str = ""
    _default_auth = False

    def __new__(cls, workspace: Workspace | None = None, name: str | None = None) -> Any:
        if workspace is None or name is None:
            return super().__new__(cls)
        view = workspace._call("GET", f"/v1/services/{name}")
        service = super().__new__(_kind(view["spec"]["compute_type"]))
        service._load(workspace, view)
        return service

    def __init__(self, workspace: Workspace | None = None, name: str | None = None) -> None:
        pass  # __new__ fetched it

    def _load(self, workspace: Workspace, view: dict[str, Any]) -> None:
        spec, status = view["spec"], view["status"]
        self.workspace = workspace
        self._view = view
        self.name: str = view["name"]
        self.state: str = view["state"]
        self.scoring_uri: str | None = view["scoring_uri"]
        self.swagger_uri: str | None = view["swagger_uri"]
        self.compute_type: str = spec["compute_type"]
        self.auth_enabled: bool = spec["auth_enabled"]
        self.token_auth_enabled = False
        self.enable_app_insights: bool = spec["enable_app_insights"]
        self.collect_model_data: bool = spec["collect_model_data"]
        self.tags: dict[str, str] = spec["tags"]
        self.properties: dict[str, str] = spec["properties"]
        self.description: str = spec["description"]
        self.error: dict[str, Any] | None = status["error"]
        self.created_time = _time(status["created_time"])
        self.updated_time = _time(status["updated_time"])
        self.created_by = None
        self.image_id = None
        self.image_digest = None
        self.image = None
        self.models = [{"name": m["name"], "version": m["version"], "id": f"{m['name']}:{m['version']}"}
                       for m in spec["models"]]
        self.port = status["port"]
        self.environment = spec["environment"]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(workspace={self.workspace!r}, name={self.name}, image_id=None, "
                f"image_digest=None, compute_type={self.compute_type}, state={self.state}, "
                f"scoring_uri={self.scoring_uri}, tags={self.tags}, properties={self.properties}, created_by=None)")

    # -- finding -------------------------------------------------------------------------------------
    @staticmethod
    def list(workspace: Workspace, compute_type: str | None = None, image_name: str | None = None,
             image_id: str | None = None, model_name: str | None = None, model_id: str | None = None,
             tags: builtins.list[Any] | None = None, properties: builtins.list[Any] | None = None,
             image_digest: str | None = None) -> builtins.list[Webservice]:
        if compute_type and compute_type.upper() not in COMPUTE_TYPES:
            raise WebserviceException(f'Invalid compute type "{compute_type}". Valid options are '
                                      f'"{",".join(COMPUTE_TYPES)}"')
        if model_id and not model_name:
            model_name = model_id.rpartition(":")[0]
        views = workspace._call("GET", "/v1/services", query={"compute_type": compute_type, "model_name": model_name,
                                                              "tags": _filter_text(tags)})["value"]
        services = []
        for view in views:
            if properties and not all((p[0] in view["spec"]["properties"] and view["spec"]["properties"][p[0]] == p[1])
                                      if isinstance(p, list | tuple) else p in view["spec"]["properties"]
                                      for p in properties):
                continue
            service = Webservice.__new__(_kind(view["spec"]["compute_type"]))
            service._load(workspace, view)
            services.append(service)
        return services

    def update_deployment_state(self) -> None:
        """Refresh this object from the service's current state."""
        self._load(self.workspace, self.workspace._call("GET", f"/v1/services/{self.name}"))

    # -- waiting ---------------------------------------------------------------------------------------
    def wait_for_deployment(self, show_output: bool = False, timeout_sec: float | None = None) -> None:
        """Wait until the service is Healthy on its latest settings, or Failed (WebserviceException)."""
        if show_output:
            print(TIPS)
        started = time.monotonic()
        shown = "Running"
        if show_output:
            sys.stdout.write(shown)
            sys.stdout.flush()
        seen_start = None
        while True:
            self.update_deployment_state()
            status, spec = self._view["status"], self._view["spec"]
            done = self.state == "Healthy" and status["generation"] == spec["generation"]
            operation = "Succeeded" if done else "Failed" if self.state in ("Failed", "Deleting") else "Running"
            if show_output:
                if status["launch"] != seen_start and status["launch"]:
                    seen_start = status["launch"]
                    sys.stdout.write(f"\n{datetime.now().astimezone()} Starting the service (generation "
                                     f"{spec['generation']}, start {seen_start}).")
                if operation != shown:
                    sys.stdout.write(f"\n{operation}\n")
                    shown = operation
                else:
                    sys.stdout.write(".")
                sys.stdout.flush()
            if operation == "Succeeded":
                print(f'{self.compute_type} service creation operation finished, operation "Succeeded"')
                return
            if operation == "Failed":
                error = json.dumps(self.error, indent=2) if self.error else "No error message received from server."
                raise WebserviceException(
                    f"Service deployment polling reached non-successful terminal state, current service state: "
                    f"{self.state}\nOperation ID: {self._view['uid']}\nMore information can be found using "
                    f"'.get_logs()'\nError:\n{error}")
            if timeout_sec and time.monotonic() - started >= float(timeout_sec):
                raise WebserviceException(
                    f"Deployment polling exceeded timeout override of {float(timeout_sec)}s. Current status: "
                    f"{self.state}\nDeployment may be transitioning or unhealthy, use update_deployment_state() "
                    "to fetch the latest status of the webservice")
            time.sleep(POLL_S)

    # -- calling it --------------------------------------------------------------------------------------
    def run(self, input_data: Any) -> Any:
        """POST ``input_data`` (a JSON string, as Azure expects; a dict or list is encoded) to the service;
        its JSON answer, or a WebserviceException with Azure's text for any other status."""
        if not self.scoring_uri:
            raise WebserviceException("Error attempting to call webservice, scoring_uri unavailable. This could be "
                                      "due to a failed deployment, or the service is not ready yet.\nCurrent State: "
                                      f"{self.state}\nErrors: {self.error}")
        if isinstance(input_data, str):
            body = input_data.encode()
        elif isinstance(input_data, bytes | bytearray):
            body = bytes(input_data)
        else:
            body = json.dumps(input_data).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.auth_enabled:
            headers["Authorization"] = "Bearer " + self.get_keys()[0]
        request = urllib.request.Request(self.scoring_uri, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=90) as response:  # noqa: S310 - the service's URL
                status, answer, content = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            status, answer, content = exc.code, dict(exc.headers), exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise WebserviceException(f"Error connecting to {self.scoring_uri}: {getattr(exc, 'reason', exc)}") from None
        if status == 200:
            return json.loads(content)
        raise WebserviceException("Received bad response from service. More information can be found by calling "
                                  f"`.get_logs()` on the webservice object.\nResponse Code: {status}\nHeaders: "
                                  f"{answer}\nContent: {content!r}", status_code=status)

    def get_keys(self) -> tuple[str, str]:
        answer = self.workspace._call("GET", f"/v1/services/{self.name}/keys")
        return answer["primaryKey"], answer["secondaryKey"]

    def regen_key(self, key: str, set_key: str | None = None) -> None:
        """A new ``'Primary'`` or ``'Secondary'`` key (``set_key``, or a random one); the service rolls
        onto it (requests with the old key are refused once the roll is done)."""
        self.workspace._call("POST", f"/v1/services/{self.name}/keys", {"keyType": key, "keyValue": set_key})
        self.update_deployment_state()

    def get_token(self) -> tuple[str, datetime]:
        raise WebserviceException("Token authentication is not supported by scorewatch: use key authentication "
                                  "(auth_enabled=True) and get_keys()")

    def get_logs(self, num_lines: int = 5000, init: bool = False) -> str:
        """The service's console (stdout and stderr of every start, tracebacks included), from the store:
        the last ``num_lines`` lines; with ``init``, the latest start's lines up to its readiness."""
        answer = self.workspace._call("GET", f"/v1/services/{self.name}/logs", query={"tail": num_lines, "init": init})
        return str(answer["content"])

    # -- changing it -------------------------------------------------------------------------------------
    def _update(self, changes: dict[str, Any], keys: dict[str, str] | None = None) -> None:
        if not changes and not keys:
            raise WebserviceException("No parameters provided to update.")
        self._load(self.workspace, self.workspace._call("PATCH", f"/v1/services/{self.name}", changes))

    def reload(self, wait: bool = False) -> None:
        """Restart the service on its entry script and source directory as they are now (a roll)."""
        self._load(self.workspace, self.workspace._call("POST", f"/v1/services/{self.name}/reload"))
        if wait:
            self.wait_for_deployment()

    def delete(self) -> None:
        """Delete the service: its processes drain and stop; returns once it is gone."""
        try:
            self.workspace._call("DELETE", f"/v1/services/{self.name}")
        except WebserviceException as exc:
            if "WebserviceNotFound" in exc.message:
                print(f"No service with name {self.name} found to delete.")
                return
            raise
        self.state = "Deleting"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                self.update_deployment_state()
            except WebserviceException as exc:
                if "WebserviceNotFound" in exc.message:
                    return
                raise
            time.sleep(POLL_S)
        raise WebserviceException(f"service {self.name} is still being deleted after 120s (state {self.state})")

    def serialize(self) -> dict[str, Any]:
        """The service as Azure serializes it (camelCase keys)."""
        spec, status = self._view["spec"], self._view["status"]
        return {"name": self.name, "description": self.description, "tags": self.tags, "properties": self.properties,
                "state": self.state, "createdTime": status["created_time"], "updatedTime": status["updated_time"],
                "error": self.error, "computeType": self.compute_type, "workspaceName": self.workspace.name,
                "imageId": None, "imageDigest": None, "imageDetails": None, "scoringUri": self.scoring_uri,
                "swaggerUri": self.swagger_uri, "createdBy": None, "authEnabled": self.auth_enabled,
                "appInsightsEnabled": self.enable_app_insights, "models": self.models,
                "containerResourceRequirements": {"cpu": spec["cpu_cores"], "memoryInGB": spec["memory_gb"],
                                                  "cpuLimit": spec["cpu_cores_limit"],
                                                  "memoryInGBLimit": spec["memory_gb_limit"], "gpu": spec["gpu_cores"]},
                "numReplicas": spec["replicas"], "scoringTimeoutMs": spec["scoring_timeout_ms"],
                "dataCollection": {"storageEnabled": self.collect_model_data},
                "environmentDetails": self.environment, "port": self.port}


def _update_changes(models: list[Model] | None, inference_config: InferenceConfig | None,
                    settings: dict[str, Any]) -> dict[str, Any]:
    """The spec changes an ``update(...)`` call asks for (arguments left as None change nothing)."""
    changes: dict[str, Any] = {}
    given = {k: v for k, v in settings.items() if v is not None}
    if "num_replicas" in given:
        changes["replicas"] = given.pop("num_replicas")
        changes["autoscale_enabled"] = False
    if given.get("autoscale_enabled"):
        changes["replicas"] = given.get("autoscale_min_replicas", 1)
    probe = {k: given.pop(k) for k in ("period_seconds", "initial_delay_seconds", "timeout_seconds",
                                       "success_threshold", "failure_threshold") if k in given}
    if probe:
        changes["liveness_probe"] = probe
    for ignored in ("image", "token_auth_enabled", "ssl_enabled", "ssl_cert_pem_file", "ssl_key_pem_file",
                    "ssl_cname", "image_config", "deployment_config", "wait"):
        given.pop(ignored, None)
    changes.update(given)
    if models is not None:
        changes["models"] = [{"name": m.name, "version": m.version} for m in models]
    if inference_config is not None:
        changes.update(inference_config._paths())
        changes["environment"] = inference_config._environment()
    return changes


class AciWebservice(Webservice):
    """A service deployed with ``AciWebservice.deploy_configuration`` (Azure Container Instances)."""

    _webservice_type = "ACI"

    @staticmethod
    def deploy_configuration(cpu_cores: float | None = None, memory_gb: float | None = None,
                             tags: dict[str, str] | None = None, properties: dict[str, str] | None = None,
                             description: str | None = None, location: str | None = None,
                             auth_enabled: bool | None = None, ssl_enabled: bool | None = None,
                             enable_app_insights: bool | None = None, ssl_cert_pem_file: str | None = None,
                             ssl_key_pem_file: str | None = None, ssl_cname: str | None = None,
                             dns_name_label: str | None = None, primary_key: str | None = None,
                             secondary_key: str | None = None, collect_model_data: bool | None = None,
                             cmk_vault_base_url: str | None = None, cmk_key_name: str | None = None,
                             cmk_key_version: str | None = None, vnet_name: str | None = None,
                             subnet_name: str | None = None) -> WebserviceDeploymentConfiguration:
        config = _Config(AciWebservice, **{k: v for k, v in locals().items()})
        config.validate_configuration()
        return config

    def update(self, image: Any = None, tags: dict[str, str] | None = None, properties: dict[str, str] | None = None,
               description: str | None = None, auth_enabled: bool | None = None, ssl_enabled: bool | None = None,
               ssl_cert_pem_file: str | None = None, ssl_key_pem_file: str | None = None, ssl_cname: str | None = None,
               enable_app_insights: bool | None = None, models: list[Model] | None = None,
               inference_config: InferenceConfig | None = None, collect_model_data: bool | None = None) -> None:
        """Change the service (Azure's ACI parameters, and ``collect_model_data``)."""
        self._update(_update_changes(models, inference_config, {
            "tags": tags, "properties": properties, "description": description, "auth_enabled": auth_enabled,
            "enable_app_insights": enable_app_insights, "collect_model_data": collect_model_data}))


class AksWebservice(Webservice):
    """A service deployed with ``AksWebservice.deploy_configuration`` (Azure Kubernetes Service)."""

    _webservice_type = "AKS"
    _default_auth = True  # as Azure: AKS services ask for a key unless told otherwise

    @staticmethod
    def deploy_configuration(autoscale_enabled: bool | None = None, autoscale_min_replicas: int | None = None,
                             autoscale_max_replicas: int | None = None, autoscale_refresh_seconds: int | None = None,
                             autoscale_target_utilization: int | None = None, collect_model_data: bool | None = None,
                             auth_enabled: bool | None = None, cpu_cores: float | None = None,
                             memory_gb: float | None = None, enable_app_insights: bool | None = None,
                             scoring_timeout_ms: int | None = None, replica_max_concurrent_requests: int | None = None,
                             max_request_wait_time: int | None = None, num_replicas: int | None = None,
                             primary_key: str | None = None, secondary_key: str | None = None,
                             tags: dict[str, str] | None = None, properties: dict[str, str] | None = None,
                             description: str | None = None, gpu_cores: int | None = None,
                             period_seconds: int | None = None, initial_delay_seconds: int | None = None,
                             timeout_seconds: int | None = None, success_threshold: int | None = None,
                             failure_threshold: int | None = None, namespace: str | None = None,
                             token_auth_enabled: bool | None = None, compute_target_name: str | None = None,
                             cpu_cores_limit: float | None = None, memory_gb_limit: float | None = None,
                             blobfuse_enabled: bool | None = None) -> WebserviceDeploymentConfiguration:
        if token_auth_enabled:
            raise WebserviceException("Token authentication is not supported by scorewatch: use auth_enabled=True")
        config = _Config(AksWebservice, **{k: v for k, v in locals().items()})
        config.validate_configuration()
        return config

    def update(self, image: Any = None, autoscale_enabled: bool | None = None, autoscale_min_replicas: int | None = None,
               autoscale_max_replicas: int | None = None, autoscale_refresh_seconds: int | None = None,
               autoscale_target_utilization: int | None = None, collect_model_data: bool | None = None,
               auth_enabled: bool | None = None, cpu_cores: float | None = None, memory_gb: float | None = None,
               enable_app_insights: bool | None = None, scoring_timeout_ms: int | None = None,
               replica_max_concurrent_requests: int | None = None, max_request_wait_time: int | None = None,
               num_replicas: int | None = None, tags: dict[str, str] | None = None,
               properties: dict[str, str] | None = None, description: str | None = None,
               models: list[Model] | None = None, inference_config: InferenceConfig | None = None,
               gpu_cores: int | None = None, period_seconds: int | None = None,
               initial_delay_seconds: int | None = None, timeout_seconds: int | None = None,
               success_threshold: int | None = None, failure_threshold: int | None = None,
               namespace: str | None = None, token_auth_enabled: bool | None = None,
               cpu_cores_limit: float | None = None, memory_gb_limit: float | None = None, **kwargs: Any) -> None:
        """Change the service. ``enable_app_insights`` and ``collect_model_data`` switch its running
        workers (this returns once each applied it); anything else rolls it: a new process starts,
        and once it is ready the old one drains (``wait_for_deployment()`` waits for that)."""
        settings = {k: v for k, v in locals().items() if k not in ("self", "models", "inference_config", "kwargs")}
        self._update(_update_changes(models, inference_config, settings))


class LocalWebservice(Webservice):
    """A service deployed with ``LocalWebservice.deploy_configuration`` (here, like the others)."""

    _webservice_type = "Local"

    @staticmethod
    def deploy_configuration(port: int | None = None) -> WebserviceDeploymentConfiguration:
        config = _Config(LocalWebservice, port=port)
        config.validate_configuration()
        return config

    def update(self, models: list[Model] | None = None, image_config: Any = None,
               deployment_config: WebserviceDeploymentConfiguration | None = None, wait: bool = False,
               inference_config: InferenceConfig | None = None) -> None:
        changes = _update_changes(models, inference_config, {})
        if deployment_config is not None:
            changes.update({k: v for k, v in deployment_config._spec().items() if k not in ("compute_type",)})
        self._update(changes)
        if wait:
            self.wait_for_deployment()


class _Config(WebserviceDeploymentConfiguration):
    def __init__(self, kind: type[Webservice], **settings: Any) -> None:
        super().__init__(**settings)
        self._webservice_type = kind


def _kind(compute_type: str) -> type[Webservice]:
    return {"ACI": AciWebservice, "AKS": AksWebservice}.get(compute_type, LocalWebservice)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def deploy(workspace: Workspace, name: str, models: list[Model], inference_config: InferenceConfig | None,
           deployment_config: WebserviceDeploymentConfiguration | None, deployment_target: ComputeTarget | None,
           overwrite: bool, show_output: bool) -> Webservice:
    """``Model.deploy``: the service ``name`` for ``models`` (see the module docstring)."""
    if inference_config is None:
        raise WebserviceException("Error, inference_config must be provided: InferenceConfig(entry_script=...) "
                                  "names the score.py to run")
    if deployment_config is None:
        deployment_config = AksWebservice.deploy_configuration() if deployment_target is not None else \
            AciWebservice.deploy_configuration()
    spec = {"name": name, **inference_config._paths(), "environment": inference_config._environment(),
            "models": [{"name": m.name, "version": m.version} for m in models], **deployment_config._spec()}
    if deployment_target is not None:
        spec["compute_target"] = deployment_target.name
    if inference_config.description and "description" not in spec:
        spec["description"] = inference_config.description
    keys = deployment_config._keys()
    workspace._call("POST", "/v1/services", {"spec": spec, "overwrite": overwrite, **({"keys": keys} if keys else {})})
    if show_output:
        print("Request submitted, please run wait_for_deployment(show_output=True) to get deployment status.")
    return Webservice(workspace, name)

