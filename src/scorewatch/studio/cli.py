"""``scorewatch studio``: print a one-time link that logs a browser in to the studio."""

from __future__ import annotations

from pathlib import Path

import click

from scorewatch.cli import home_option, workspace_settings
from scorewatch.studio.auth import issue_login_token, login_url


@click.command()
@home_option
@click.option("--hub-url", default=None, help="Address of the hub (default: the workspace's, from config.json).")
def studio(home: Path | None, hub_url: str | None) -> None:
    """Print a one-time link to the studio (the hub's web UI) that logs a browser in to every
    application of the workspace. The link works once and for a day; the hub must be running."""
    workspace, settings = workspace_settings(home)
    workspace.require()
    url = hub_url or workspace.read_config().get("hub_url") or f"http://127.0.0.1:{settings.hub_port}"
    click.echo(login_url(url, issue_login_token(workspace)))
