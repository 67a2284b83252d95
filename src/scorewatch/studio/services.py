"""What the Services page shows of the hub's deployments, and the actions it takes on them.

The hub gives the studio its deployments as :class:`Deployments` (the hub's ``deployments``): the
control API's own supervisor and its view of a service, and which application each service reports
to. Everything the page does goes through the control API's operations, the ones
``Webservice.update``, ``get_keys``, ``regen_key`` and ``reload`` reach over HTTP: switching App
Insights or model data collection is ``Supervisor.update``, exactly as a ``PATCH /v1/services/{name}``.

A service is shown only to viewers who open the application it reports to; its keys only to a
session that may administer (see :mod:`scorewatch.studio.auth`), and only when asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from scorewatch.deploy.records import Deployment
from scorewatch.errors import BadRequest, NotFound
from scorewatch.studio.processes import ServiceProcess, service_processes
from scorewatch.workspace import Workspace

CONSOLE_TAIL = 100         # console lines the page shows per service
MASK = "••••••••"          # what a key looks like until an administrator reveals it
SWITCHES = {"app-insights": "enable_app_insights", "model-data": "collect_model_data"}  # URL → spec field


class Supervised(Protocol):
    """What the studio uses of the deployments' supervisor (``scorewatch.deploy.supervisor.Supervisor``)."""

    @property
    def workspace(self) -> Workspace: ...
    def deployments(self) -> list[Deployment]: ...
    def get(self, name: str) -> Deployment: ...
    def update(self, name: str, changes: dict[str, Any]) -> Deployment: ...
    def keys(self, name: str) -> tuple[str, str]: ...
    def regen_key(self, name: str, key: str, value: str | None = None) -> Deployment: ...
    def reload(self, name: str) -> Deployment: ...
    def logs(self, name: str, num_lines: int = 5000) -> list[dict[str, Any]]: ...


class Control(Protocol):
    """What the studio uses of the control API (``scorewatch.deploy.api.ControlAPI``)."""

    @property
    def supervisor(self) -> Supervised: ...
    def view(self, deployment: Deployment) -> dict[str, Any]: ...
    def admits(self, key: str) -> bool: ...


@dataclass
class ServiceView:
    """One deployment as the Services page shows it (its JSON twin's ``services`` items)."""

    name: str
    state: str                      # Transitioning, Healthy, Unhealthy, Failed, Deleting
    error: str = ""                 # why it is Unhealthy or Failed
    scoring_uri: str | None = None
    swagger_uri: str | None = None
    models: list[str] = field(default_factory=list)   # name:version
    replicas: int = 1               # worker processes asked for
    pids: list[int] = field(default_factory=list)     # the serving process, then any starting or draining one
    generation: int = 0
    updated_time: str = ""
    app_insights: bool = False      # enable_app_insights
    model_data: bool = True         # collect_model_data
    workers_switched: int = 0       # workers that applied the latest switch ...
    workers: int = 0                # ... of the workers running
    auth_enabled: bool = False
    keys: dict[str, str] | None = None  # masked unless revealed to an administrator; None: no key authentication
    console_tail: list[str] = field(default_factory=list)
    console_kql: str = ""

    def public(self) -> dict[str, Any]:
        return asdict(self)


def console_kql(name: str) -> str:
    """The KQL of a service's console rows (what "Open in Logs" opens)."""
    return ("traces\n| where customDimensions['Log Source'] == 'console' and cloud_RoleName == "
            f"'{name}'\n| order by timestamp desc")


class Deployments:
    """The hub's deployments for the studio. ``app_id(deployment)`` is the id of the application the
    service reports to (its telemetry and its console rows), or None when there is none."""

    def __init__(self, control: Control, app_id: Callable[[Deployment], str | None]) -> None:
        self.control = control
        self.supervisor = control.supervisor
        self.app_id = app_id

    def admits(self, key: str) -> bool:
        """Whether ``key`` is the workspace's admin key."""
        return self.control.admits(key)

    # -- reading (called off the event loop: these read files and the store) -----------------------
    def visible(self, app_ids: list[str]) -> list[Deployment]:
        """The deployments reporting to one of the applications ``app_ids``, by name."""
        opened = set(app_ids)
        return sorted((d for d in self.supervisor.deployments() if self.app_id(d) in opened), key=lambda d: d.name)

    def get(self, name: str, app_ids: list[str]) -> Deployment:
        """The deployment ``name`` if it reports to one of ``app_ids``; else the same 404 as for none."""
        try:
            deployment = self.supervisor.get(name)
        except (BadRequest, NotFound):  # not even a valid name, or no such service
            deployment = None
        if deployment is None or self.app_id(deployment) not in set(app_ids):
            raise NotFound(f"no service named {name!r} reports to the applications shown here")
        return deployment

    def services(self, app_ids: list[str], *, name: str = "", revealed: dict[str, tuple[str, str]] | None = None,
                 tail: int = CONSOLE_TAIL) -> list[ServiceView]:
        """The page's services (only ``name`` when given), keys masked except those in ``revealed``."""
        views = []
        for deployment in self.visible(app_ids):
            if name and deployment.name != name:
                continue
            try:
                console = [line["message"] for line in self.supervisor.logs(deployment.name, tail)] if tail else []
            except NotFound:  # deleted meanwhile
                continue
            views.append(self.service_view(deployment, console, (revealed or {}).get(deployment.name)))
        return views

    def service_view(self, deployment: Deployment, console: list[str],
                     keys: tuple[str, str] | None = None) -> ServiceView:
        view = self.control.view(deployment)  # where to call it and its workers' switches, as the API says
        spec, status = deployment.spec, deployment.status
        telemetry = view.get("telemetry") or {}
        acks = telemetry.get("workers") or {}
        shown = keys or (MASK, MASK)
        return ServiceView(
            name=deployment.name, state=status.state, error=str((status.error or {}).get("message") or ""),
            scoring_uri=view.get("scoring_uri"), swagger_uri=view.get("swagger_uri"),
            models=[m.id for m in spec.models], replicas=spec.replicas,
            pids=[int(p) for p in [status.pid, *(o[0] for o in status.others)] if p],
            generation=status.generation, updated_time=status.updated_time,
            app_insights=spec.enable_app_insights, model_data=spec.collect_model_data,
            workers_switched=sum(1 for applied in acks.values() if applied >= telemetry.get("revision", 0)),
            workers=len(acks), auth_enabled=spec.auth_enabled,
            keys={"primaryKey": shown[0], "secondaryKey": shown[1]} if spec.auth_enabled else None,
            console_tail=console, console_kql=console_kql(deployment.name))

    def processes(self) -> list[ServiceProcess]:
        """The processes of every service: the deployments' from their records, with the application
        each reports to (see :func:`~scorewatch.studio.processes.service_processes`)."""
        deployments = self.supervisor.deployments()
        return service_processes(self.supervisor.workspace, [(d, self.app_id(d)) for d in deployments])

    # -- actions: the control API's own operations ------------------------------------------------
    def switch(self, deployment: Deployment, switch: str, on: bool) -> Deployment:
        """App Insights or model data collection on or off: every worker within a second, no restart."""
        return self.supervisor.update(deployment.name, {SWITCHES[switch]: on})

    def keys(self, deployment: Deployment) -> tuple[str, str]:
        return self.supervisor.keys(deployment.name)

    def regen_key(self, deployment: Deployment, key: str) -> Deployment:
        """A new Primary or Secondary key; the service rolls onto it (no failed request)."""
        return self.supervisor.regen_key(deployment.name, key)

    def restart(self, deployment: Deployment) -> Deployment:
        """Roll the service onto a fresh process (``Webservice.reload``: its files as they are now)."""
        return self.supervisor.reload(deployment.name)


def deployments_of(host: object) -> Deployments | None:
    """The hub's deployments (None for a host without any, such as a studio on its own)."""
    return getattr(host, "deployments", None)
