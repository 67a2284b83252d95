"""``Workspace``: Azure ML v1's workspace, here a scorewatch workspace on this machine.

``Workspace.from_config()`` finds it as every scorewatch command does (``SCOREWATCH_HOME``, else the
nearest ``.scorewatch`` in the current directory or its parents), or at ``path`` (the workspace
folder, a folder holding ``.scorewatch``, or a ``config.json`` written by :meth:`Workspace.write_config`).
Deployments and models go through the workspace's hub (``scorewatch hub`` or ``scorewatch up``).
``name`` is the workspace name services report (``workspace_name``, default ``local``);
``subscription_id`` is the workspace's id; ``resource_group`` and ``location`` are ``local``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from scorewatch.deploy.client import ControlClient
from scorewatch.errors import ScorewatchError
from scorewatch.sdk.exceptions import AzureMLException, UserErrorException, WebserviceException
from scorewatch.settings import Settings
from scorewatch.workspace import DIRNAME
from scorewatch.workspace import Workspace as Home

if TYPE_CHECKING:
    from scorewatch.sdk.compute import ComputeTarget
    from scorewatch.sdk.model import Model
    from scorewatch.sdk.webservice import Webservice

LOCAL = "local"
POINTER_KEY = "scorewatch_home"  # what write_config() records, beside Azure's own keys


class Workspace:
    """A scorewatch workspace, with Azure ML v1's names."""

    def __init__(self, subscription_id: str | None = None, resource_group: str | None = None,
                 workspace_name: str | None = None, auth: Any = None, _location: str | None = None,
                 _disable_service_check: bool = False, _workspace_id: str | None = None, sku: str = "basic",
                 tags: dict[str, str] | None = None, _cloud: str = "AzureCloud", *, home: str | os.PathLike[str] | None = None) -> None:
        self._home = Home(home if home is not None else Settings.from_env().home)
        if not self._home.home.is_dir():
            raise UserErrorException(f"no scorewatch workspace at {self._home.home}: start one with `scorewatch up` "
                                     "or `scorewatch hub`, or call Workspace.create()")
        settings = Settings.from_env(home=self._home.home)
        self.name = workspace_name or settings.workspace_name
        self.subscription_id = subscription_id or self._home.identity()
        self.resource_group = resource_group or LOCAL
        self.location = _location or LOCAL
        self.sku = sku
        self.tags = dict(tags or {})
        self._client: ControlClient | None = None

    # -- finding it ---------------------------------------------------------------------------------
    @staticmethod
    def from_config(path: str | os.PathLike[str] | None = None, auth: Any = None, _logger: Any = None,
                    _file_name: str | None = None) -> Workspace:
        """The workspace found from ``path`` (default: the current directory), as the CLI finds it."""
        if path is None:
            home = Settings.from_env().home
            if not (home / "config.json").is_file():
                raise UserErrorException(
                    f"We could not find config.json in: {Path.cwd()} or in its parent directories. Please provide "
                    "the full path to the config file or ensure that config.json exists in the parent directories. "
                    "(scorewatch: start a workspace with `scorewatch up` or `scorewatch hub`.)")
            return Workspace(home=home)
        given = Path(path).expanduser().resolve()
        for candidate in (given, given / DIRNAME, given / ".azureml" / (_file_name or "config.json"),
                          given / (_file_name or "config.json")):
            found = _home_of(candidate)
            if found is not None:
                return Workspace(home=found)
        raise UserErrorException(f"We could not find config.json in: {given}. Please provide the full path to the "
                                 "config file or ensure that config.json exists in the parent directories.")

    @staticmethod
    def get(name: str, auth: Any = None, subscription_id: str | None = None, resource_group: str | None = None,
            location: str | None = None, cloud: str = "AzureCloud", id: str | None = None) -> Workspace:
        """The workspace of this machine (found as :meth:`from_config` finds it), named ``name``."""
        return Workspace(subscription_id, resource_group, name)

    @staticmethod
    def create(name: str, auth: Any = None, subscription_id: str | None = None, resource_group: str | None = None,
               location: str | None = None, create_resource_group: bool = True, sku: str = "basic",
               tags: dict[str, str] | None = None, friendly_name: str | None = None, storage_account: str | None = None,
               key_vault: str | None = None, app_insights: str | None = None, container_registry: str | None = None,
               exist_ok: bool = False, show_output: bool = True, **kwargs: Any) -> Workspace:
        """Make the workspace folder where :meth:`from_config` looks (``SCOREWATCH_HOME`` or
        ``./.scorewatch``). Its hub is started apart: ``scorewatch hub``."""
        home = Path(os.environ["SCOREWATCH_HOME"]) if os.environ.get("SCOREWATCH_HOME") else Path.cwd() / DIRNAME
        if (home / "config.json").exists() and not exist_ok:
            raise UserErrorException(f"Workspace with name '{name}' already exists under resource group with name "
                                     f"'{resource_group or LOCAL}' ({home}). Use exist_ok=True to get it.")
        Home(home).ensure().identity()
        if show_output:
            print(f"Deployed workspace {name} at {home}; start its hub with `scorewatch hub --home {home}`")
        return Workspace(subscription_id, resource_group, name, _location=location, tags=tags, home=home)

    def write_config(self, path: str | os.PathLike[str] | None = None, file_name: str | None = None) -> None:
        """Write ``.azureml/config.json`` (Azure's keys and where this workspace is) under ``path``."""
        folder = Path(path or ".") / ".azureml"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / (file_name or "config.json")).write_bytes(orjson.dumps(
            {"subscription_id": self.subscription_id, "resource_group": self.resource_group,
             "workspace_name": self.name, POINTER_KEY: str(self._home.home)}, option=orjson.OPT_INDENT_2))

    # -- what it holds -----------------------------------------------------------------------------
    @property
    def webservices(self) -> dict[str, Webservice]:
        from scorewatch.sdk.webservice import Webservice

        return {service.name: service for service in Webservice.list(self)}

    @property
    def models(self) -> dict[str, Model]:
        from scorewatch.sdk.model import Model

        return {model.name: model for model in Model.list(self, latest=True)}

    @property
    def compute_targets(self) -> dict[str, ComputeTarget]:
        from scorewatch.sdk.compute import ComputeTarget

        return {target.name: target for target in ComputeTarget.list(self)}

    def get_details(self) -> dict[str, Any]:
        config = self._home.read_config()
        return {"id": self.subscription_id, "name": self.name, "location": self.location,
                "resourceGroup": self.resource_group, "workspaceid": self.subscription_id,
                "home": str(self._home.home), "hubUrl": config.get("hub_url")}

    def __repr__(self) -> str:
        return (f"Workspace.create(name='{self.name}', subscription_id='{self.subscription_id}', "
                f"resource_group='{self.resource_group}')")

    # -- the control API ---------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self._home.home

    def _call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None,
              error: type[AzureMLException] = WebserviceException) -> Any:
        """A control API call; its error as ``error`` (Azure's exception), with the hub's text."""
        try:
            if self._client is None:
                self._client = ControlClient.for_workspace(self._home)
            return self._client.request(method, path, body, query)
        except ScorewatchError as exc:
            raise error(exc.message, status=exc.status) from None


def _home_of(candidate: Path) -> Path | None:
    """The workspace folder ``candidate`` stands for, if it stands for one."""
    if candidate.is_dir() and (candidate / "config.json").is_file():
        return candidate
    if candidate.is_file():
        try:
            data = orjson.loads(candidate.read_bytes())
        except orjson.JSONDecodeError:
            return None
        if isinstance(data, dict) and data.get(POINTER_KEY):
            return Path(data[POINTER_KEY])
        if isinstance(data, dict) and "default_app" in data:  # a workspace's own config.json
            return candidate.parent
    return None
