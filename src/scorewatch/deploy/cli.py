"""``scorewatch deploy``, ``services``, ``service ...`` and ``model ...``: thin commands over the
hub's control API (the same path the SDK and the studio take)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson

from scorewatch.cli import home_option, workspace_settings
from scorewatch.deploy.client import ControlClient
from scorewatch.deploy.records import FAILED, HEALTHY
from scorewatch.errors import BadRequest, ScorewatchError

POLL_S = 0.2
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_on_off = click.Choice(["on", "off"])


def client(home: Path | None) -> ControlClient:
    workspace, _ = workspace_settings(home)
    return ControlClient.for_workspace(workspace)


def _print_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def wait_healthy(api: ControlClient, name: str, *, quiet: bool = False, timeout: float = 900.0) -> dict[str, Any]:
    """Until the service runs its latest settings (Healthy) or is Failed (a ScorewatchError with its reason)."""
    deadline = time.monotonic() + timeout
    shown = None
    while True:
        view = api.request("GET", f"/v1/services/{name}")
        state, status, spec = view["state"], view["status"], view["spec"]
        if state != shown and not quiet:
            click.echo(f"{name}: {state}" + (f" ({status['error']['message']})" if status["error"] else ""))
            shown = state
        if state == HEALTHY and status["generation"] == spec["generation"]:
            return view
        if state == FAILED:
            error = status["error"] or {}
            tail = "\n".join(d["message"] for d in error.get("details", []) if d.get("message"))
            raise ScorewatchError(f"service {name} failed: {error.get('message', 'no reason given')}"
                                  + (f"\nits console ends with:\n{tail}" if tail else "")
                                  + f"\n(all of it: scorewatch service logs {name})", code="ServiceFailed")
        if time.monotonic() > deadline:
            raise ScorewatchError(f"service {name} is still {state} after {timeout:g}s", code="Timeout", status=504)
        time.sleep(POLL_S)


def _model_refs(api: ControlClient, models: tuple[str, ...]) -> list[dict[str, Any]]:
    """Each ``--model``: a path registers it (named after its file or folder); else a registered NAME[:VERSION]."""
    refs = []
    for given in models:
        path = Path(given)
        if path.exists():
            record = api.request("POST", "/v1/models", {"model_path": str(path.resolve()), "model_name": path.name})
            click.echo(f"registered {record['name']} version {record['version']}")
        else:
            name, _, version = given.partition(":")
            record = api.request("GET", f"/v1/models/{name}", query={"version": version or None})
        refs.append({"name": record["name"], "version": record["version"]})
    return refs


@click.command()
@click.argument("name")
@click.option("--entry-script", required=True, help="The score.py to run (relative to --source-dir when given).")
@click.option("--source-dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder deployed with the entry script (default: the entry script alone, as Azure).")
@click.option("--model", "models", multiple=True,
              help="A model file or folder to register and deploy, or a registered NAME[:VERSION]; repeatable.")
@click.option("--app-insights/--no-app-insights", default=False, help="Telemetry to the hub (default off, as Azure).")
@click.option("--collect-model-data/--no-collect-model-data", default=True,
              help="Each request's input and output as a model_data_collection trace (default on).")
@click.option("--auth/--no-auth", default=False, help="Require a key on /score (see `scorewatch service keys`).")
@click.option("--workers", type=click.IntRange(1), default=1, help="Worker processes (default 1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default: a free one, kept).")
@click.option("--overwrite", is_flag=True, help="Replace a service of that name (it rolls onto the new settings).")
@click.option("--no-wait", is_flag=True, help="Return once the hub took the deployment.")
@home_option
def deploy(name: str, entry_script: str, source_dir: Path | None, models: tuple[str, ...], app_insights: bool,
           collect_model_data: bool, auth: bool, workers: int, port: int | None, overwrite: bool, no_wait: bool,
           home: Path | None) -> None:
    """Deploy ENTRY_SCRIPT as the service NAME, supervised by the hub (like Model.deploy)."""
    api = client(home)
    script = Path(entry_script)
    if source_dir is not None and not script.is_absolute() and (source_dir / script).is_file():
        script = source_dir / script
    spec = {"name": name, "entry_script": str(script.resolve()),
            "source_directory": str(source_dir.resolve()) if source_dir else None,
            "models": _model_refs(api, models), "enable_app_insights": app_insights,
            "collect_model_data": collect_model_data, "auth_enabled": auth, "replicas": workers, "port": port}
    api.request("POST", "/v1/services", {"spec": spec, "overwrite": overwrite})
    if no_wait:
        click.echo(f"{name}: deploying (`scorewatch service show {name}` tells its state)")
        return
    view = wait_healthy(api, name)
    click.echo(f"{name} is Healthy: {view['scoring_uri']}")


@click.command()
@home_option
@_json
def services(home: Path | None, as_json: bool) -> None:
    """List the deployed services."""
    views = client(home).request("GET", "/v1/services")["value"]
    if as_json:
        _print_json(views)
        return
    for view in views:
        spec, status = view["spec"], view["status"]
        click.echo(f"{view['name']}\t{view['state']}\t{view['scoring_uri'] or '-'}\tapp insights "
                   f"{'on' if spec['enable_app_insights'] else 'off'}\t{spec['replicas']} worker(s)\tpid {status['pid']}")


@click.group()
def service() -> None:
    """One deployed service: show, update, logs, keys, regen-key, delete."""


@service.command("show")
@click.argument("name")
@home_option
@_json
def service_show(name: str, home: Path | None, as_json: bool) -> None:
    """The service's state, address, settings and its workers' telemetry switches."""
    view = client(home).request("GET", f"/v1/services/{name}")
    if as_json:
        _print_json(view)
        return
    spec, status, telemetry = view["spec"], view["status"], view["telemetry"]
    click.echo(f"name:          {view['name']}")
    click.echo(f"state:         {view['state']}")
    click.echo(f"scoring URI:   {view['scoring_uri']}")
    click.echo(f"app insights:  {'on' if spec['enable_app_insights'] else 'off'}; model data "
               f"{'on' if spec['collect_model_data'] else 'off'}; auth {'on' if spec['auth_enabled'] else 'off'}")
    click.echo(f"workers:       {spec['replicas']}; pid {status['pid']}; generation {status['generation']} of "
               f"{spec['generation']}; restarts in a row {status['restarts']}")
    click.echo(f"models:        {', '.join(m['name'] + ':' + str(m['version']) for m in spec['models']) or '-'}")
    if telemetry:
        click.echo(f"telemetry:     revision {telemetry['revision']}; workers applied {telemetry['workers']}")
    if status["error"]:
        click.echo(f"error:         {status['error']['message']}")


@service.command("update")
@click.argument("name")
@click.option("--app-insights", type=_on_off, default=None, help="Switch telemetry in every worker (no restart).")
@click.option("--collect-model-data", type=_on_off, default=None, help="Switch model data (no restart).")
@click.option("--auth", type=_on_off, default=None, help="Key authentication (rolls the service).")
@click.option("--workers", type=click.IntRange(1), default=None, help="Worker processes (rolls the service).")
@click.option("--reload", "reload_", is_flag=True, help="Roll onto the entry script and source folder as they are now.")
@click.option("--no-wait", is_flag=True, help="Return without waiting for a roll to finish.")
@home_option
def service_update(name: str, app_insights: str | None, collect_model_data: str | None, auth: str | None,
                   workers: int | None, reload_: bool, no_wait: bool, home: Path | None) -> None:
    """Change a running service: switches take effect in every worker at once, the rest rolls it."""
    api = client(home)
    changes: dict[str, Any] = {k: v == "on" for k, v in (("enable_app_insights", app_insights),
                                         ("collect_model_data", collect_model_data), ("auth_enabled", auth))
               if v is not None}
    if workers is not None:
        changes["replicas"] = workers
    if not changes and not reload_:
        raise BadRequest("No parameters provided to update.")
    if changes:
        view = api.request("PATCH", f"/v1/services/{name}", changes)
        if view["telemetry"]:
            click.echo(f"{name}: telemetry revision {view['telemetry']['revision']} applied by workers "
                       f"{view['telemetry']['workers']}")
    if reload_:
        api.request("POST", f"/v1/services/{name}/reload")
    if no_wait:
        click.echo(f"{name}: updating (`scorewatch service show {name}` tells its state)")
        return
    click.echo(f"{name}: {wait_healthy(api, name, quiet=True)['state']}")


@service.command("logs")
@click.argument("name")
@click.option("--tail", type=click.IntRange(0), default=5000, help="Lines (default 5000, as get_logs).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("--init", is_flag=True, help="The latest start's output up to its readiness.")
@home_option
def service_logs(name: str, tail: int, follow: bool, init: bool, home: Path | None) -> None:
    """The service's console (init() output, prints, tracebacks), read from the store."""
    api = client(home)
    after: str | None = None
    while True:
        lines = api.request("GET", f"/v1/services/{name}/logs",
                            query={"tail": tail if after is None else 100_000, "init": init, "format": "lines",
                                   "after": after})["lines"]
        for line in lines:
            click.echo(line["message"])
        sys.stdout.flush()  # (following into a pipe: each round's lines as they come)
        if lines:
            after = f"{lines[-1]['start']}:{lines[-1]['offset']}"
        if not follow:
            return
        after = after or "0:0"
        time.sleep(0.5)


@service.command("keys")
@click.argument("name")
@home_option
@_json
def service_keys(name: str, home: Path | None, as_json: bool) -> None:
    """The service's primary and secondary keys (with key authentication on)."""
    keys = client(home).request("GET", f"/v1/services/{name}/keys")
    if as_json:
        _print_json(keys)
        return
    click.echo(f"primary:   {keys['primaryKey']}\nsecondary: {keys['secondaryKey']}")


@service.command("regen-key")
@click.argument("name")
@click.option("--key", type=click.Choice(["Primary", "Secondary"], case_sensitive=False), required=True)
@home_option
def service_regen_key(name: str, key: str, home: Path | None) -> None:
    """A new primary or secondary key (the service rolls onto it)."""
    api = client(home)
    api.request("POST", f"/v1/services/{name}/keys", {"keyType": key})
    wait_healthy(api, name, quiet=True)
    click.echo(f"{name}: new {key.capitalize()} key (`scorewatch service keys {name}` shows it)")


@service.command("delete")
@click.argument("name")
@click.option("--no-wait", is_flag=True, help="Return once the hub took the deletion.")
@home_option
def service_delete(name: str, no_wait: bool, home: Path | None) -> None:
    """Stop the service (its requests in flight are answered first) and forget it."""
    api = client(home)
    api.request("DELETE", f"/v1/services/{name}")
    while not no_wait:
        try:
            api.request("GET", f"/v1/services/{name}")
        except ScorewatchError as exc:
            if exc.status == 404:
                break
            raise
        time.sleep(POLL_S)
    click.echo(f"{name}: {'deleting' if no_wait else 'deleted'}")


@click.group()
def model() -> None:
    """Registered models: register, list."""


@model.command("register")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", default=None, help="Model name (default: the file or folder's name).")
@click.option("--tag", "tags", multiple=True, help="KEY=VALUE; repeatable.")
@click.option("--description", default="", help="A description.")
@home_option
@_json
def model_register(path: Path, name: str | None, tags: tuple[str, ...], description: str, home: Path | None,
                   as_json: bool) -> None:
    """Copy PATH (a file or folder) into the workspace as the next version of a model."""
    labels = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep:
            raise click.BadParameter(f"{tag!r} is not KEY=VALUE", param_hint="--tag")
        labels[key] = value
    record = client(home).request("POST", "/v1/models", {"model_path": str(path.resolve()),
                                                         "model_name": name or path.name, "tags": labels,
                                                         "description": description})
    if as_json:
        _print_json(record)
        return
    click.echo(f"registered {record['name']} version {record['version']} ({record['path']})")


@model.command("list")
@click.option("--name", default=None, help="Only this model's versions.")
@home_option
@_json
def model_list(name: str | None, home: Path | None, as_json: bool) -> None:
    """Registered models, newest first."""
    records = client(home).request("GET", "/v1/models", query={"name": name})["value"]
    if as_json:
        _print_json(records)
        return
    for record in records:
        tags = ",".join(f"{k}={v}" for k, v in record["tags"].items())
        click.echo(f"{record['name']}\t{record['version']}\t{record['created_time']}\t{tags}\t{record['path']}")
