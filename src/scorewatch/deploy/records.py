"""A deployment's record: what a service should be (:class:`ServiceSpec`) and what the hub saw of it
(:class:`ServiceStatus`), and a registered model's record (:class:`ModelRecord`).

These are the contract between the control API, the supervisor that runs services, and anything that
renders a service elsewhere (Kubernetes manifests: replicas, autoscaling, resources, probes, app
insights, entry script, models). Each is a dataclass of plain JSON values with ``to_dict`` and
``from_dict``; ``from_dict`` refuses bad input with a :class:`~scorewatch.errors.BadRequest` naming
the field. Names follow Azure ML v1's deployment configuration (``AksWebservice.deploy_configuration``).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Self

from scorewatch.errors import BadRequest

# Azure's compute types (Webservice.compute_type): LocalWebservice, AciWebservice, AksWebservice.
COMPUTE_TYPES = ("Local", "ACI", "AKS")
# Azure's service states, plus Deleting.
TRANSITIONING, HEALTHY, UNHEALTHY, FAILED, DELETING = "Transitioning", "Healthy", "Unhealthy", "Failed", "Deleting"

# Azure: lowercase letters, digits and dashes, starting with a letter, 3 to 32 characters.
SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
# Azure: compute target names are letters, digits and dashes, starting with a letter.
COMPUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,31}$")
# Azure: letters, digits, '-', '_' and '.', at most 255 characters.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")

# Spec fields whose change switches the running workers (no restart) or is only a label; every
# other change rolls the service (a new process, then the old one drains).
SWITCHES = ("enable_app_insights", "collect_model_data")
LABELS = ("tags", "properties", "description")


def check_service_name(name: Any) -> str:
    if not isinstance(name, str) or not SERVICE_NAME.match(name):
        raise BadRequest(f"invalid service name {name!r}: use 3 to 32 lowercase letters, digits and dashes, "
                         "starting with a letter and ending with a letter or digit", details={"field": "name"})
    return name


def check_compute_name(name: Any) -> str:
    if not isinstance(name, str) or not COMPUTE_NAME.match(name):
        raise BadRequest(f"invalid compute target name {name!r}: use 2 to 32 letters, digits and dashes, starting "
                         "with a letter", details={"field": "name"})
    return name


def check_model_name(name: Any) -> str:
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise BadRequest(f"invalid model name {name!r}: use at most 255 letters, digits, '.', '_' and '-'",
                         details={"field": "model_name"})
    return name


class Record:
    """``to_dict``/``from_dict`` for the dataclasses below: fields by name, each value checked
    against its annotation (nested records, lists, dicts, optional values)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "") -> Self:
        if not isinstance(data, dict):
            raise BadRequest(f"{where or cls.__name__} must be a JSON object", details={"field": where})
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise BadRequest(f"unknown field(s) {', '.join(unknown)}{' in ' + where if where else ''}; "
                             f"known: {', '.join(fields)}", details={"field": f"{where}.{unknown[0]}".lstrip(".")})
        values = {}
        for name, value in data.items():
            values[name] = _convert(hints[name], value, f"{where}.{name}".lstrip("."))
        try:
            return cls(**values)
        except TypeError as exc:  # a required field is missing
            missing = re.findall(r"'(\w+)'", str(exc))
            raise BadRequest(f"missing field(s) {', '.join(missing)}{' in ' + where if where else ''}",
                             details={"field": f"{where}.{missing[0]}".lstrip(".") if missing else where}) from None


def _convert(kind: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (kind,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    if isinstance(kind, type) and issubclass(kind, Record):
        return kind.from_dict(value, where=where)
    if origin is list:
        if not isinstance(value, list):
            raise BadRequest(f"{where} must be a list", details={"field": where})
        return [_convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        strings = args[1] is str
        if not isinstance(value, dict) or (strings and not all(isinstance(v, str) for v in value.values())):
            raise BadRequest(f"{where} must be an object{' of strings' if strings else ''}", details={"field": where})
        return dict(value)
    if kind is Any:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRequest(f"{where} must be {_kind_name(kind)}, not {value!r}", details={"field": where})
    return value


def _kind_name(kind: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(kind, str(kind))


@dataclass
class ModelRef(Record):
    """A registered model a service is deployed with."""

    name: str
    version: int

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass
class EnvironmentSpec(Record):
    """What ``Environment``/``CondaDependencies`` asked for. Recorded with the deployment; the service
    runs in the hub's own interpreter, and what that lacks is a warning in the service's log."""

    name: str = ""
    version: str = ""
    python_version: str = ""
    conda_packages: list[str] = field(default_factory=list)
    pip_packages: list[str] = field(default_factory=list)
    environment_variables: dict[str, str] = field(default_factory=dict)


# Azure's liveness probe defaults (AksWebservice.deploy_configuration).
LIVENESS_DEFAULTS = {"period_seconds": 10, "initial_delay_seconds": 310, "timeout_seconds": 2,
                     "success_threshold": 1, "failure_threshold": 3}
POSITIVE = ("scoring_timeout_ms", "replicas", "replica_max_concurrent_requests", "autoscale_min_replicas",
            "autoscale_max_replicas", "autoscale_refresh_seconds", "autoscale_target_utilization", "cpu_cores",
            "memory_gb")


@dataclass(kw_only=True)
class Serving:
    """How a service runs and scales, by the names of Azure ML v1's ``AksWebservice.deploy_configuration``:
    declared once for a deployment's spec (here) and its Kubernetes manifests (``k8s/services.py``)."""

    scoring_timeout_ms: int = 60_000
    replicas: int = 1                      # worker processes (num_replicas, or autoscale_min_replicas)
    replica_max_concurrent_requests: int = 1
    autoscale_enabled: bool = False
    autoscale_min_replicas: int = 1
    autoscale_max_replicas: int = 10
    autoscale_refresh_seconds: int = 1
    autoscale_target_utilization: int = 70  # percent of the requested CPU
    cpu_cores: float = 0.1                 # requests; the limits are the _limit ones (the requests when None)
    memory_gb: float = 0.5
    cpu_cores_limit: float | None = None
    memory_gb_limit: float | None = None
    gpu_cores: int = 0
    # Kubernetes liveness probe (period_seconds, initial_delay_seconds, timeout_seconds, success_threshold,
    # failure_threshold), recorded for manifests; empty: Azure's defaults.
    liveness_probe: dict[str, Any] = field(default_factory=dict)

    def check_serving(self) -> None:
        """A BadRequest naming the first field out of range, if one is."""
        for name in POSITIVE:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                _bad(name, f"must be greater than zero, not {value!r}")
        if self.autoscale_min_replicas > self.autoscale_max_replicas:
            _bad("autoscale_min_replicas", "cannot be greater than autoscale_max_replicas")
        if self.autoscale_target_utilization > 100:
            _bad("autoscale_target_utilization", "is a percentage (1 to 100)")
        unknown = sorted(set(self.liveness_probe) - set(LIVENESS_DEFAULTS))
        if unknown:
            _bad("liveness_probe", f"has an unknown setting {unknown[0]!r}; known: {', '.join(LIVENESS_DEFAULTS)}")

    def probe(self) -> dict[str, int]:
        """The liveness probe, Azure's defaults filled in."""
        return {**LIVENESS_DEFAULTS, **self.liveness_probe}


@dataclass
class ServiceSpec(Record, Serving):
    """What a service should be. ``generation`` grows with every change that rolls the service."""

    name: str
    entry_script: str                      # absolute path, inside source_directory when that is given
    source_directory: str | None = None    # absolute; None: the entry script alone is deployed (as Azure)
    models: list[ModelRef] = field(default_factory=list)
    compute_type: str = "Local"            # Local | ACI | AKS
    compute_target: str | None = None      # a ComputeTarget's name (AKS)
    port: int | None = None                # None: a free port, kept for the service's life
    enable_app_insights: bool = False
    collect_model_data: bool = True        # the model_data_collection trace (see docs/deployments.md)
    auth_enabled: bool = False
    max_request_wait_time: int = 500       # ms a request may wait for a replica (recorded for manifests)
    namespace: str | None = None
    environment: EnvironmentSpec | None = None
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    description: str = ""
    generation: int = 1

    def check(self) -> ServiceSpec:
        """Self, when every value is in range; else a BadRequest naming the field."""
        check_service_name(self.name)
        if self.compute_type not in COMPUTE_TYPES:
            _bad("compute_type", f"must be one of {', '.join(COMPUTE_TYPES)}, not {self.compute_type!r}")
        if not self.entry_script.startswith("/"):
            _bad("entry_script", f"must be an absolute path, not {self.entry_script!r}")
        if self.source_directory is not None and not self.source_directory.startswith("/"):
            _bad("source_directory", f"must be an absolute path, not {self.source_directory!r}")
        if self.port is not None and not 1 <= self.port <= 65535:
            _bad("port", f"must be a TCP port (1 to 65535), not {self.port}")
        self.check_serving()
        if len({m.name for m in self.models}) != len(self.models):
            _bad("models", "holds the same model twice")
        return self


@dataclass
class ServiceStatus(Record):
    """What the hub saw of a service. ``error`` has Azure's shape: ``{"code", "message", "details"}``."""

    state: str = TRANSITIONING
    pid: int | None = None             # the `scorewatch serve` process serving now
    started: float | None = None       # its start time (the operating system's), to tell it from a reused pid
    port: int | None = None
    launch: int = 0                    # starts so far: each start has its own console file
    generation: int = 0                # the spec generation the serving process runs
    workers: int = 0                   # and its worker processes
    handoff: str = ""                  # the name it offers its listening socket on (scoring/lifecycle.py)
    home: str = ""                     # the workspace of the hub that started it (its console and readiness files)
    restarts: int = 0                  # crashes in a row
    ready_offset: int | None = None    # bytes of the serving start's console up to its readiness
    others: list[list[float]] = field(default_factory=list)  # [pid, start time] of processes starting or draining
    error: dict[str, Any] | None = None
    created_time: str = ""
    updated_time: str = ""


@dataclass
class Deployment(Record):
    """One service: its spec, its status, and its id (a new one each time the name is deployed anew)."""

    spec: ServiceSpec
    status: ServiceStatus = field(default_factory=ServiceStatus)
    uid: str = ""
    deleting: bool = False

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class ModelRecord(Record):
    """A registered model version: its files are under ``path`` in the workspace."""

    name: str
    version: int
    path: str                          # the stored file or folder, inside the workspace
    source: str = ""                   # where it was registered from
    sha256: str = ""                   # of its content (files in name order)
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    description: str = ""
    created_time: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass
class ComputeRecord(Record):
    """A named compute target: here, a label and the settings it was provisioned with (recorded for
    Kubernetes manifests); services deployed to it run on this machine."""

    name: str
    type: str = "AKS"
    provisioning: dict[str, Any] = field(default_factory=dict)
    created_time: str = ""


def _bad(name: str, message: str) -> None:
    raise BadRequest(f"{name} {message}", details={"field": name})
