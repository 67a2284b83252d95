"""``scorewatch query``: run KQL against the hub's query API and print the result.

The hub address, application and API key come from the workspace's ``config.json`` (written by the
hub on first start); ``--hub-url``, ``--app-id`` and ``--api-key`` override them. A KQL error comes back
from the API with its position and is raised as the same :class:`KqlError`, so ``scorewatch.cli.main``
prints it with the caret under the offending text.
"""

from __future__ import annotations

import csv
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import click
import orjson

from scorewatch import errors
from scorewatch.kql.errors import KqlError
from scorewatch.settings import Settings
from scorewatch.workspace import Workspace


@click.command()
@click.argument("kql")
@click.option("--timespan", help="ISO 8601 duration (PT1H, P1D) or start/end interval to limit the query to.")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="table for people; json (the API's answer) or csv for programs.")
@click.option("--app-id", help="Application to query (default: the workspace's default application).")
@click.option("--api-key", help="API key of the application (default: from config.json).")
@click.option("--hub-url", help="Hub address (default: from config.json).")
@click.option("--columns", help="Table: the columns to show, 'all' or a comma-separated list (default: a "
                                "table's usual columns, or as many as fit).")
@click.option("--wide", is_flag=True, help="Table: every column and whole values, whatever the terminal's width.")
def query(kql: str, timespan: str | None, output_format: str, app_id: str | None, api_key: str | None,
          hub_url: str | None, columns: str | None, wide: bool) -> None:
    """Run a KQL query, for example: scorewatch query 'requests | summarize count() by resultCode'."""
    settings = Settings.from_env()
    workspace = Workspace(settings.home)
    own_key = not (app_id and api_key)  # the workspace's default application and its key
    config = workspace.require().read_config() if own_key or not hub_url else {}
    default_app = config.get("default_app") or {}
    hub = hub_url or config.get("hub_url") or f"http://{settings.hub_host}:{settings.hub_port}"
    app_id = app_id or default_app.get("app_id")
    api_key = api_key or default_app.get("api_key")
    if not app_id:
        raise errors.ConfigError(f"no application to query in workspace {workspace.home}: its config.json has no "
                                 "default_app (start `scorewatch hub` or `scorewatch up` once) and --app-id "
                                 "was not given")
    try:
        body = run_remote(hub, app_id, api_key, kql, timespan, timeout_s=settings.query_timeout_s + 10,
                          workspace=workspace.home if config else None)
    except (errors.Unauthorized, errors.Forbidden):
        if own_key:
            _check_hub_serves(hub, workspace, config)
        raise
    table = body["tables"][0]
    if output_format == "json":
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    elif output_format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([c["name"] for c in table["columns"]])
        writer.writerows([[csv_cell(v) for v in row] for row in table["rows"]])
    else:
        _show(body, columns=columns, wide=wide)
    if body.get("error"):
        click.echo(f"warning: {body['error']['details'][0]['message']}", err=True)


def run_remote(hub: str, app_id: str, api_key: str | None, kql: str, timespan: str | None, *,
               timeout_s: float = 70.0, workspace: Path | None = None) -> dict[str, Any]:
    """POST the query to the hub; the decoded answer, or the API's error raised as a ScorewatchError.
    ``workspace`` (where the hub's address came from) is named when the hub cannot be reached."""
    url = f"{hub.rstrip('/')}/v1/apps/{urllib.parse.quote(app_id, safe='')}/query"
    payload: dict[str, Any] = {"query": kql}
    if timespan:
        payload["timespan"] = timespan
    headers = {"content-type": "application/json"}
    if api_key:
        headers["x-api-key"] = api_key
    request = urllib.request.Request(url, data=orjson.dumps(payload), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - the hub's URL
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise _api_error(exc.code, exc.read()) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        of = f" of workspace {workspace}" if workspace else ""
        raise errors.ScorewatchError(f"cannot reach the hub{of} at {hub}: {reason} (is `scorewatch hub` running?)",
                                     code="HubUnreachable") from None


def _check_hub_serves(hub: str, workspace: Workspace, config: dict[str, Any]) -> None:
    """Raise a clear error when the hub that refused our key serves another workspace than ours."""
    try:
        with urllib.request.urlopen(f"{hub.rstrip('/')}/health", timeout=3) as response:  # noqa: S310
            served = orjson.loads(response.read()).get("workspace") or {}
    except (urllib.error.URLError, OSError, orjson.JSONDecodeError, AttributeError):
        return
    if served.get("id") and served["id"] != config.get("workspace_id"):
        raise errors.Forbidden(
            f"the hub at {hub} serves workspace {served.get('home') or served['id']}, not {workspace.home}: "
            "start this workspace's hub (`scorewatch hub`, or `scorewatch up`), or set SCOREWATCH_HOME to the "
            "other workspace")


def _api_error(status: int, raw: bytes) -> errors.ScorewatchError:
    try:
        error = orjson.loads(raw).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {}
    inner = error.get("innererror") or {}
    if inner.get("code") in ("SyntaxError", "SemanticError") and "line" in inner:
        return KqlError.from_dict(inner)
    message = error.get("message") or f"the hub answered HTTP {status}"
    return errors.for_status(status)(message, status=status)


def csv_cell(value: Any) -> str:
    """A value of the query API's answer as a CSV cell (dynamic values as JSON text)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def _show(body: dict[str, Any], *, columns: str | None, wide: bool) -> None:
    """Table mode: a chart for ``render`` (when it is one drawn in the terminal), else the table."""
    from rich.console import Console

    from scorewatch.kql import charts, display

    table = body["tables"][0]
    console = Console(soft_wrap=False, highlight=False, width=1_000_000 if wide else None)
    render = body.get("render")
    if render and columns is None and not wide and charts.draw(console, table, render):
        count = len(table["rows"])
        console.print(f"{count} row{'s' if count != 1 else ''} (--columns all for the table, --format csv "
                      "for the data)", style="dim")
        return
    display.print_table(console, table, columns=columns, wide=wide)
