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
def query(kql: str, timespan: str | None, output_format: str, app_id: str | None, api_key: str | None,
          hub_url: str | None) -> None:
    """Run a KQL query, for example: scorewatch query 'requests | summarize count() by resultCode'."""
    settings = Settings.from_env()
    config = Workspace(settings.home).read_config()
    default_app = config.get("default_app") or {}
    hub = hub_url or config.get("hub_url") or f"http://{settings.hub_host}:{settings.hub_port}"
    app_id = app_id or default_app.get("app_id")
    api_key = api_key or default_app.get("api_key")
    if not app_id:
        raise errors.ConfigError(f"no application to query: {Workspace(settings.home).config_path} has no "
                                 "default_app (start `scorewatch hub` once) and --app-id was not given")
    body = run_remote(hub, app_id, api_key, kql, timespan, timeout_s=settings.query_timeout_s + 10)
    table = body["tables"][0]
    if output_format == "json":
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    elif output_format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([c["name"] for c in table["columns"]])
        writer.writerows([[_cell(v) for v in row] for row in table["rows"]])
    else:
        _print_table(table)
    if body.get("error"):
        click.echo(f"warning: {body['error']['details'][0]['message']}", err=True)


def run_remote(hub: str, app_id: str, api_key: str | None, kql: str, timespan: str | None, *,
               timeout_s: float = 70.0) -> dict[str, Any]:
    """POST the query to the hub; the decoded answer, or the API's error raised as a ScorewatchError."""
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
        raise errors.ScorewatchError(f"cannot reach the hub at {hub}: {reason} (is `scorewatch hub` running?)",
                                     code="HubUnreachable") from None


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


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def _print_table(table: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    view = Table(show_lines=False, header_style="bold")
    for column in table["columns"]:
        view.add_column(column["name"], overflow="fold")
    for row in table["rows"]:
        view.add_row(*(_cell(v) for v in row))
    console = Console(soft_wrap=False)
    console.print(view)
    count = len(table["rows"])
    console.print(f"{count} row{'s' if count != 1 else ''}", style="dim")
