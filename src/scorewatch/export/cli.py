"""``scorewatch export ...``: thin click commands over the export rules and the one-shot export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from scorewatch.apps import registry_for
from scorewatch.cli import home_option, workspace_settings
from scorewatch.documents import Documents, documents_for
from scorewatch.errors import BadRequest
from scorewatch.export import oneshot
from scorewatch.export.exporter import read_checkpoints, state_key, total
from scorewatch.export.rules import FORMATS, Rule, RuleBook, check_format, check_name, now_iso, parse_tables
from scorewatch.export.service import status_key
from scorewatch.export.targets import Target, normalize_url
from scorewatch.settings import Settings
from scorewatch.workspace import Workspace

_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_format = click.option("--format", "fmt", type=click.Choice(FORMATS), default="appinsights", show_default=True,
                       help="appinsights: classic continuous export; diagnostic: diagnostic settings "
                            "(PT1H.json); parquet: Hive-partitioned Parquet.")
_tables = click.option("--tables", default=None, help="Comma-separated tables (default: all).")
_resource_id = click.option("--resource-id", default="",
                            help="Azure resource id the diagnostic format writes (default: a component named after the app).")


def _book(workspace: Workspace, settings: Settings) -> RuleBook:
    return RuleBook(documents_for(workspace, settings))


def _target_url(url: str) -> str:
    if "?" in url:  # a SAS token in a URL would be stored and shown: credentials go in the settings
        raise BadRequest("an export target URL takes no query string: give credentials through the "
                         "settings (export_azure_*, export_s3_*) or the environment")
    return normalize_url(url)


@click.group()
def export() -> None:
    """Export telemetry to files, Azure Blob or S3, continuously (rules the hub runs) or once (run)."""


@export.command("add")
@click.argument("name")
@click.option("--app", "app_name", default="default", show_default=True, help="Application whose telemetry goes out.")
@click.option("--to", "url", required=True, help="Target: file:///path, az://container/path or s3://bucket/path.")
@_tables
@_format
@click.option("--from-beginning", is_flag=True,
              help="Also export the rows stored before the rule exists (default: from now on, as Azure does).")
@_resource_id
@home_option
@_json
def export_add(name: str, app_name: str, url: str, tables: str | None, fmt: str, from_beginning: bool,
               resource_id: str, home: Path | None, as_json: bool) -> None:
    """Add export rule NAME; the target is checked (a file written and deleted) before it is saved."""
    workspace, settings = workspace_settings(home)
    workspace.ensure()
    book = _book(workspace, settings)
    check_name(name)
    if book.find(name) is not None:
        raise BadRequest(f"export rule {name!r} already exists")
    app = registry_for(workspace, settings).get(app_name)
    url = _target_url(url)
    Target.open(url, settings).check()
    rule = book.add(Rule(name=name, app=app.name, app_id=app.app_id, ikey=app.instrumentation_key, url=url,
                         format=check_format(fmt), tables=parse_tables(tables),
                         start="beginning" if from_beginning else "now", resource_id=resource_id))
    if as_json:
        click.echo(orjson.dumps(rule.public(), option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"export rule {rule.name}: {rule.app} ({', '.join(rule.tables)}) as {rule.format} to {rule.url}; "
               "a running hub starts it within a second")


@export.command("list")
@home_option
@_json
def export_list(home: Path | None, as_json: bool) -> None:
    """List export rules."""
    workspace, settings = workspace_settings(home)
    rules = [r for r in _book(workspace, settings).list() if r.kind == "continuous"]
    if as_json:
        click.echo(orjson.dumps([r.public() for r in rules], option=orjson.OPT_INDENT_2).decode())
        return
    for r in rules:
        click.echo(f"{r.name}\t{r.app}\t{r.format}\t{r.state}\t{r.url}\t{','.join(r.tables)}")


def describe(documents: Documents, rule: Rule) -> dict[str, Any]:
    """A rule with its progress: checkpoint totals (every stream's) and the hub's last status."""
    checkpoint = total(read_checkpoints(documents, rule.id))
    status = documents.read(status_key(rule.id), {})
    info = rule.public()
    info["position"] = None if checkpoint is None else checkpoint.position
    info["pending"] = None if checkpoint is None else checkpoint.pending
    for key in ("items", "files", "bytes"):
        info[key] = 0 if checkpoint is None else getattr(checkpoint, key)
    for key in ("lag_items", "lag_seconds", "failures", "last_error", "last_error_at", "updated"):
        info[key] = status.get(key)
    return info


@export.command("show")
@click.argument("name")
@home_option
@_json
def export_show(name: str, home: Path | None, as_json: bool) -> None:
    """Show rule NAME: target, progress (rows, files, bytes), lag and failures."""
    workspace, settings = workspace_settings(home)
    book = _book(workspace, settings)
    info = describe(book.documents, book.get(name))
    if as_json:
        click.echo(orjson.dumps(info, option=orjson.OPT_INDENT_2).decode())
        return
    state = info["state"] + (f" since {info['paused_at']}" if info["paused_at"] else "")
    lines = [("rule", info["name"]), ("application", info["app"]), ("target", info["url"]),
             ("format", info["format"]), ("tables", ", ".join(info["tables"])), ("state", state),
             ("exported", f"{info['items']:,} rows in {info['files']:,} files, {info['bytes']:,} bytes"),
             ("lag", "unknown (no hub has run it yet)" if info["updated"] is None else
              f"{info['lag_items']:,} rows, {info['lag_seconds']} s (as of {info['updated']})"),
             ("failures", f"{info['failures'] or 0}" + (f", last at {info['last_error_at']}: {info['last_error']}"
                                                       if info["last_error"] else ""))]
    for label, value in lines:
        click.echo(f"{label + ':':13} {value}")


@export.command("pause")
@click.argument("name")
@home_option
def export_pause(name: str, home: Path | None) -> None:
    """Pause rule NAME (the hub finishes the files it is writing). Retention keeps waiting for it for
    export_pause_limit_days (7), then deletes rows it has not exported."""
    workspace, settings = workspace_settings(home)
    rule = _book(workspace, settings).update(name, state="paused", paused_at=now_iso())
    click.echo(f"export rule {rule.name}: paused")


@export.command("resume")
@click.argument("name")
@home_option
def export_resume(name: str, home: Path | None) -> None:
    """Resume rule NAME where it stopped."""
    workspace, settings = workspace_settings(home)
    rule = _book(workspace, settings).update(name, state="active", paused_at="")
    click.echo(f"export rule {rule.name}: active")


@export.command("remove")
@click.argument("name")
@home_option
def export_remove(name: str, home: Path | None) -> None:
    """Remove rule NAME (what it exported stays in the target)."""
    workspace, settings = workspace_settings(home)
    book = _book(workspace, settings)
    rule = book.remove(name)
    book.documents.delete(state_key(rule.id))
    click.echo(f"export rule {rule.name}: removed")


@export.command("run")
@click.option("--app", "app_name", default="default", show_default=True, help="Application to export.")
@click.option("--since", required=True, help="Start: ISO 8601 (UTC unless it says otherwise), or a time ago: 12h, 7d.")
@click.option("--until", default="now", show_default=True, help="End (excluded), in the same forms.")
@click.option("--to", "url", required=True, help="Target: file:///path, az://container/path or s3://bucket/path.")
@_format
@_tables
@_resource_id
@home_option
def export_run(app_name: str, since: str, until: str, url: str, fmt: str, tables: str | None, resource_id: str,
               home: Path | None) -> None:
    """Export an application's rows of a time range once (a backfill). Ctrl-C stops it; the same
    command resumes it, and nothing is written twice."""
    workspace, settings = workspace_settings(home)
    workspace.ensure()
    app = registry_for(workspace, settings).get(app_name)
    rule = oneshot.job_rule(documents_for(workspace, settings), app.name, app.app_id, app.instrumentation_key, since, until,
                            _target_url(url), check_format(fmt), parse_tables(tables), resource_id)
    summary = oneshot.run(workspace, settings, rule)
    rate = summary.rows / summary.seconds if summary.seconds > 0 else 0.0
    click.echo(f"{'resumed and ' if summary.resumed else ''}exported {summary.rows:,} rows of {rule.app} "
               f"({rule.since} to {rule.until}) as {rule.format} to {rule.url}: {summary.files:,} files, "
               f"{summary.bytes:,} bytes in {summary.seconds:.1f} s ({rate:,.0f} rows/s)")

