"""The ``scorewatch`` command line: a thin click group.

Each part owns its commands in its own package; they are imported only when used, so
``scorewatch --help`` stays fast. This module is the one place that turns a
:class:`~scorewatch.errors.ScorewatchError` into a message and an exit code.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import click

from scorewatch import __version__
from scorewatch.errors import ScorewatchError
from scorewatch.settings import Settings
from scorewatch.workspace import HOME_HELP, Workspace

# command name -> "module:attribute" of its click command
COMMANDS = {
    "serve": "scorewatch.scoring.cli:serve",
    "hub": "scorewatch.ingest.cli:hub",
    "app": "scorewatch.ingest.cli:app",
    "export": "scorewatch.export.cli:export",
    "quarantine": "scorewatch.ingest.cli:quarantine",
    "up": "scorewatch.up:up",
    "examples": "scorewatch.up:list_examples",
    "query": "scorewatch.kql.cli:query",
    "studio": "scorewatch.studio.cli:studio",
    "deploy": "scorewatch.deploy.cli:deploy",
    "services": "scorewatch.deploy.cli:services",
    "service": "scorewatch.deploy.cli:service",
    "model": "scorewatch.deploy.cli:model",
    "k8s": "scorewatch.k8s.cli:k8s",
}


# Shared by the commands that work on a workspace.
home_option = click.option("--home", type=click.Path(path_type=Path), default=None, help=HOME_HELP)


def workspace_settings(home: Path | None, **overrides: Any) -> tuple[Workspace, Settings]:
    """The settings (``home`` and ``overrides`` over the environment) and the workspace they name."""
    settings = Settings.from_env(home=home, **overrides)
    return Workspace(settings.home), settings


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="scorewatch")
def cli() -> None:
    """Serve machine-learning models as web services and watch them.

    Workspace: SCOREWATCH_HOME, else the nearest .scorewatch in the current directory or its parents
    (else ./.scorewatch). Settings: docs/settings.md.
    """


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="scorewatch", standalone_mode=False)
    except ScorewatchError as exc:
        click.echo(f"error: {exc.render()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
