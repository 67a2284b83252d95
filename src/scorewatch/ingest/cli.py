"""``scorewatch hub``, ``scorewatch app ...`` and ``scorewatch quarantine ...``: thin click commands over
the hub, the registry and the quarantine."""

from __future__ import annotations

import logging
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import orjson

from scorewatch.apps import Application, registry_for
from scorewatch.cli import home_option, workspace_settings
from scorewatch.errors import ConfigError, ScorewatchError
from scorewatch.ingest.quarantine import Quarantine, quarantine_dir
from scorewatch.settings import Settings
from scorewatch.store.backends import has_password
from scorewatch.studio.auth import issue_login_token, login_url
from scorewatch.workspace import Workspace

DEFAULT_APP = "default"

def hub_url(settings: Settings) -> str:
    host = settings.hub_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{settings.hub_port}"


def ensure_default_app(workspace: Workspace, settings: Settings) -> dict[str, Any]:
    """Create the ``default`` application if needed and record it in ``config.json`` (mode 0600)."""
    workspace.ensure()
    registry = registry_for(workspace, settings)
    app, api_key = registry.ensure(DEFAULT_APP)
    url = hub_url(settings)
    known = workspace.read_config().get("default_app") or {}
    if api_key is None:
        if known.get("app_id") == app.app_id and known.get("api_key"):
            api_key = known["api_key"]
        else:  # config.json lost or from another workspace: issue a key the config can hold
            api_key = registry.add_api_key(DEFAULT_APP)
    default = {"name": app.name, "app_id": app.app_id, "instrumentation_key": app.instrumentation_key,
               "connection_string": app.connection_string(url), "api_key": api_key}
    workspace.update_config(hub_url=url, default_app=default)
    workspace.identity()
    return default


def run_hub(workspace: Workspace, settings: Settings) -> None:
    """Serve the hub until SIGINT/SIGTERM (then finish admitted items and close the store)."""
    import os

    import uvicorn

    from scorewatch.ingest.connections import raise_file_limit, uvicorn_config
    from scorewatch.ingest.hub import create_app, open_hub

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Requests wait on hand-offs between the event loop, the log thread and the writer thread; with
    # Python's default 5 ms GIL switch interval each hand-off can cost up to 5 ms of latency.
    sys.setswitchinterval(0.001)
    os.umask(0o077)  # the store, its log and the quarantine are the workspace owner's alone
    raise_file_limit(settings.hub_max_connections + 256)  # sockets, plus the store's and the log's files
    ensure_default_app(workspace, settings)
    hub = open_hub(workspace, settings)
    # No access log: at 100k items/s it costs CPU, and nothing the hub logs may carry a key.
    config = uvicorn_config(create_app(hub), settings, log_level="info")
    click.echo(f"scorewatch hub on {hub_url(settings)} (workspace {workspace.home}); "
               f"keys: `scorewatch app keys {DEFAULT_APP}` or {workspace.config_path}")
    click.echo(f"studio: {login_url(hub_url(settings), issue_login_token(workspace))} "
               "(a one-time login link; `scorewatch studio` prints another)")
    uvicorn.Server(config).run()


@contextmanager
def _naming(workspace: Workspace) -> Iterator[None]:
    """Errors of an ``app`` command name the workspace they used."""
    try:
        yield
    except ScorewatchError as exc:
        exc.message = f"{exc.message} (workspace {workspace.home})"
        raise


@click.command()
@home_option
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8400).")
@click.option("--store", default=None,
              help="duckdb (default: embedded), chdb:///DIR (ClickHouse in this process) or "
                   "clickhouse://[USER@]HOST[:PORT]/DATABASE (shared by hub replicas; password in "
                   "SCOREWATCH_CLICKHOUSE_PASSWORD). See docs/scaling.md.")
def hub(home: Path | None, host: str | None, port: int | None, store: str | None) -> None:
    """Run the hub: ingest (App Insights track, OTLP/HTTP), the store and the query API."""
    if store is not None and has_password(store):
        raise ConfigError("a password in --store would show in `ps`: put it in SCOREWATCH_CLICKHOUSE_PASSWORD "
                          "(or the whole URL in SCOREWATCH_STORE)")
    workspace, settings = workspace_settings(home, hub_host=host, hub_port=port, store=store)
    run_hub(workspace, settings)


@click.group()
def app() -> None:
    """Applications (telemetry tenants) and their keys. Works whether or not the hub runs."""


def _show(application: Application, url: str, api_key: str | None, as_json: bool) -> None:
    info = application.public(url)
    if api_key:
        info["api_key"] = api_key
    if as_json:
        click.echo(orjson.dumps(info, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"name:              {info['name']}")
    click.echo(f"appId:             {info['app_id']}")
    click.echo(f"connection string: {info['connection_string']}")
    click.echo(f"retention days:    {info['retention_days']}")
    if api_key:
        click.echo(f"API key:           {api_key}   (shown once; stored hashed)")


def _url(workspace: Workspace, settings: Settings) -> str:
    return workspace.read_config().get("hub_url") or hub_url(settings)


_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@app.command("create")
@click.argument("name")
@click.option("--retention-days", type=int, default=None, help="Days telemetry is kept (default 90).")
@home_option
@_json
def app_create(name: str, retention_days: int | None, home: Path | None, as_json: bool) -> None:
    """Create application NAME; prints its connection string, appId and an API key."""
    workspace, settings = workspace_settings(home)
    with _naming(workspace):
        workspace.ensure()
        application, api_key = registry_for(workspace, settings).create(name, retention_days=retention_days)
    _show(application, _url(workspace, settings), api_key, as_json)


@app.command("list")
@home_option
@_json
def app_list(home: Path | None, as_json: bool) -> None:
    """List applications."""
    workspace, settings = workspace_settings(home)
    workspace.require()
    url = _url(workspace, settings)
    with _naming(workspace):
        apps = registry_for(workspace, settings).list()
    if as_json:
        click.echo(orjson.dumps([a.public(url) for a in apps], option=orjson.OPT_INDENT_2).decode())
        return
    for a in apps:
        click.echo(f"{a.name}\t{a.app_id}\tretention {a.retention_days}d\t{a.connection_string(url)}")


@app.command("keys")
@click.argument("name")
@home_option
@_json
def app_keys(name: str, home: Path | None, as_json: bool) -> None:
    """Print NAME's connection string and appId, and issue a new API key (earlier keys stay valid)."""
    workspace, settings = workspace_settings(home)
    registry = registry_for(workspace.require(), settings)
    with _naming(workspace):
        application = registry.get(name)
        api_key = registry.add_api_key(name)
    _show(application, _url(workspace, settings), api_key, as_json)


@app.command("set")
@click.argument("name")
@click.option("--retention-days", type=int, required=True, help="Days telemetry is kept.")
@home_option
def app_set(name: str, retention_days: int, home: Path | None) -> None:
    """Change settings of application NAME (the hub applies retention within the hour, and on start)."""
    workspace, settings = workspace_settings(home)
    with _naming(workspace.require()):
        application = registry_for(workspace, settings).set_retention(name, retention_days)
    click.echo(f"{application.name}: retention {application.retention_days} days")


@click.group()
def quarantine() -> None:
    """Accepted items the store refused, kept in <home>/quarantine: list, replay or drop them."""


def _quarantine(home: Path | None) -> tuple[Quarantine, Workspace, Settings]:
    workspace, settings = workspace_settings(home)
    return Quarantine(quarantine_dir(workspace)), workspace, settings


def _chosen(store: Quarantine, ids: tuple[str, ...], every: bool) -> list[str]:
    if every == bool(ids):
        raise click.UsageError("name the ids to act on (see `scorewatch quarantine list`), or pass --all")
    return [e.name for e in store.entries()] if every else list(ids)


@quarantine.command("list")
@home_option
@_json
def quarantine_list(home: Path | None, as_json: bool) -> None:
    """List the quarantined items: id, how many, their applications, when, and the store's reason."""
    store, _workspace, _ = _quarantine(home)
    entries = [e.public() for e in store.entries()]
    if as_json:
        click.echo(orjson.dumps(entries, option=orjson.OPT_INDENT_2).decode())
        return
    for e in entries:
        click.echo(f"{e['id']}\t{e['items']} items\t{','.join(e['apps'])}\t{e['time']}\t{e['error']}")
    click.echo(f"{sum(e['items'] for e in entries)} items in {len(entries)} entries", err=True)


@quarantine.command("replay")
@click.argument("ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Replay every entry.")
@click.option("--hub-url", help="Hub address (default: from config.json).")
@home_option
def quarantine_replay(ids: tuple[str, ...], every: bool, hub_url: str | None, home: Path | None) -> None:
    """Send quarantined items to the running hub again (each envelope carries its instrumentation
    key); an entry the hub accepts whole is removed, items it refuses stay."""
    store, workspace, settings = _quarantine(home)
    url = (hub_url or _url(workspace, settings)).rstrip("/") + "/v2/track"
    for name in _chosen(store, ids, every):
        items = store.items(name)
        status, answer = _post(url, b"[" + b",".join(items) + b"]")
        if status not in (200, 206):
            reason = answer
            if isinstance(answer, dict):
                reason = (answer.get("error") or {}).get("message") or \
                    "; ".join(sorted({e["message"] for e in answer.get("errors", [])})) or answer
            raise ScorewatchError(f"{name}: the hub answered {status} ({reason}); the entry is kept", status=status)
        refused = sorted({e["index"] for e in answer.get("errors", [])})
        if refused:
            store.keep_only(name, refused)
        else:
            store.drop(name)
        click.echo(f"{name}: {len(items) - len(refused)} items stored, {len(refused)} refused and kept")


@quarantine.command("drop")
@click.argument("ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Drop every entry.")
@home_option
def quarantine_drop(ids: tuple[str, ...], every: bool, home: Path | None) -> None:
    """Delete quarantined items for good."""
    store, _workspace, _ = _quarantine(home)
    for name in _chosen(store, ids, every):
        store.drop(name)
        click.echo(f"{name}: dropped")


def _post(url: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - the hub's URL
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return exc.code, raw.decode(errors="replace")[:200]
    except (urllib.error.URLError, OSError) as exc:
        raise ScorewatchError(f"cannot reach the hub at {url}: {getattr(exc, 'reason', exc)} "
                              "(is `scorewatch hub` running?)", code="HubUnreachable") from None
