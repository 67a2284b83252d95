"""What a deployed scoring service needs to become Kubernetes objects: :class:`ServiceInput`.

Its fields carry the names of Azure ML v1's ``AksWebservice.deploy_configuration`` (the names a
deployment record uses), so a record's dict becomes an input with :meth:`ServiceInput.from_mapping`,
which takes the fields it knows and leaves the rest. :func:`read_services` finds the services of a
workspace from the records it has.
"""

from __future__ import annotations

import dataclasses
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from scorewatch.deploy import store as deploy_store
from scorewatch.deploy.records import Serving
from scorewatch.documents import Documents
from scorewatch.errors import BadRequest
from scorewatch.workspace import Workspace


@dataclass
class ServiceInput(Serving):
    """One scoring service as the cluster should run it: how it runs and scales (:class:`Serving`, the
    fields a deployment's spec has too), and what the cluster needs besides.

    ``image`` holds the service's folder at ``/app`` (see docs/scaling.md); ``entry_script`` is the
    script's path in it. Replicas: ``autoscale_min_replicas`` to ``autoscale_max_replicas`` under a
    HorizontalPodAutoscaler aiming at ``autoscale_target_utilization`` percent of the requested CPU,
    or ``replicas`` fixed.
    """

    name: str
    image: str = ""
    entry_script: str = "/app/score.py"
    model_dir: str = ""                       # AZUREML_MODEL_DIR in the container (empty: none)
    port: int = 5001
    enable_app_insights: bool = True          # report to the hub (the connection string from a Secret)
    collect_model_data: bool = True
    auth_enabled: bool = False
    environment_variables: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> ServiceInput:
        """An input from a record's dict: the fields named here are taken (others are left), an
        ``entry_script`` on the machine that deployed it becomes its path under ``/app`` (relative
        to ``source_directory`` when the record has one), ``environment.environment_variables`` the
        container's environment."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise BadRequest("a service needs at least a name")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        script = values.get("entry_script")
        if isinstance(script, str) and not script.startswith("/app/"):
            source = data.get("source_directory")
            relative = posixpath.relpath(script, source) if source else posixpath.basename(script)
            values["entry_script"] = posixpath.join("/app", relative)
        environment = data.get("environment")
        if isinstance(environment, dict) and isinstance(environment.get("environment_variables"), dict):
            values.setdefault("environment_variables", environment["environment_variables"])
        try:
            return cls(**values).check()
        except TypeError as exc:
            raise BadRequest(f"service {data['name']!r}: {exc}") from None

    def check(self) -> ServiceInput:
        """Self, when the numbers make sense; else a BadRequest naming the service and the field."""
        try:
            self.check_serving()
            if not isinstance(self.port, int) or not 1 <= self.port <= 65535:
                raise BadRequest(f"port must be a TCP port (1 to 65535), not {self.port!r}")
        except BadRequest as exc:
            raise BadRequest(f"service {self.name!r}: {exc}") from None
        return self


def read_services(workspace: Workspace, documents: Documents | None = None) -> list[ServiceInput]:
    """The services a workspace knows, from the records it has:

    - its deployments (their ``spec``), from the deployment records in ``documents`` (the
      workspace's files by default, or the shared store of hub replicas; see :mod:`scorewatch.deploy.store`);
    - services ``scorewatch serve`` ran in it (``<home>/services/<name>.telemetry.json``): a name
      with the defaults.
    """
    found = {d.name: ServiceInput.from_mapping(d.spec.to_dict())
             for d in deploy_store.deployments(workspace, documents).list() if not d.deleting}
    for path in sorted(workspace.services_dir.glob("*.telemetry.json")):
        name = path.name.removesuffix(".telemetry.json")
        if name not in found:
            found[name] = ServiceInput(name=name)
    return list(found.values())


def read_service_file(path: Path) -> ServiceInput:
    """A service from a JSON file holding :class:`ServiceInput`'s fields (or a record's)."""
    data = _json(path)
    if not isinstance(data, dict):
        raise BadRequest(f"{path} must hold a JSON object with the service's fields")
    return ServiceInput.from_mapping(data.get("spec", data))


def _json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise BadRequest(f"cannot read {path}: {exc}") from None
