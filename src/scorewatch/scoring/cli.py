"""``scorewatch serve``: the click command (parse, resolve, print, run)."""

from __future__ import annotations

from pathlib import Path

import click

from scorewatch.settings import Settings
from scorewatch.telemetry.connection import parse_connection_string
from scorewatch.workspace import HOME_HELP, Workspace


@click.command()
@click.argument("entry_script", required=False, type=click.Path(dir_okay=False))
@click.option("--model-dir", type=click.Path(file_okay=False), help="Model folder (AZUREML_MODEL_DIR).")
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 5001).")
@click.option("--workers", type=int, default=None, help="Worker processes (WORKER_COUNT, default 1).")
@click.option("--name", "service_name", default=None, help="Service name (SERVICE_NAME; default: script folder).")
@click.option("--connection-string", default=None,
              help="Application Insights connection string to report to (default: the workspace's default "
                   "application, when the workspace has a hub; prefer APPLICATIONINSIGHTS_CONNECTION_STRING: "
                   "a command line is visible to every user).")
@click.option("--no-monitor", is_flag=True, default=False, help="Do not report telemetry, even to the workspace.")
@click.option("--app-insights/--no-app-insights", default=None,
              help="Start with telemetry recording on (default) or switched off; switched off, it can be switched "
                   "on at run time through /control/telemetry.")
@click.option("--max-body-size", type=int, default=None, help="Largest request body in bytes (default 100 MiB).")
# Telemetry switches (docs/telemetry.md); both can also be changed at run time via /control/telemetry.
@click.option("--collect-model-data/--no-collect-model-data", default=None,
              help="Record each request's input and output as a model_data_collection trace (default on).")
@click.option("--sampling-percentage", type=click.FloatRange(0, 100), default=None,
              help="Percentage of successful requests whose telemetry is kept (default 100).")
@click.option("--auth/--no-auth", default=None, help="Require 'Authorization: Bearer <key>' on /score.")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None, help=HOME_HELP)
@click.option("--fd", type=int, default=None,
              help="Serve on this inherited listening socket instead of binding --host/--port (for supervisors: "
                   "the hub hands one socket from a service's process to the next).")
def serve(entry_script: str | None, model_dir: str | None, host: str | None, port: int | None,
          workers: int | None, service_name: str | None, connection_string: str | None, no_monitor: bool,
          app_insights: bool | None, max_body_size: int | None, collect_model_data: bool | None,
          sampling_percentage: float | None, auth: bool | None, home: Path | None, fd: int | None) -> None:
    """Serve an Azure ML entry script (score.py) over HTTP: POST /score runs run().

    ENTRY_SCRIPT defaults to AZUREML_ENTRY_SCRIPT. Azure's environment variables work as in an Azure
    container (AZUREML_MODEL_DIR, AML_APP_ROOT, WORKER_COUNT, SCORING_TIMEOUT_MS, SERVICE_NAME,
    WORKSPACE_NAME). Stop with Ctrl-C or SIGTERM: requests in flight are answered first.
    """
    from scorewatch.scoring import server

    settings = Settings.from_env(host=host, port=port, workers=workers, service_name=service_name,
                                 connection_string=connection_string, app_insights=app_insights,
                                 max_body_size=max_body_size,
                                 collect_model_data=collect_model_data, sampling_percentage=sampling_percentage,
                                 auth=auth, home=home)
    settings, reporting_to = _monitoring(settings, no_monitor)
    config, keys = server.resolve(entry_script, model_dir, settings)
    if keys is not None:
        if keys.generated:
            click.echo("Key authentication is on. New keys (shown once; kept in "
                       f"{keys.source.removeprefix('generated:')}):")
            click.echo(f"  primary:   {keys.primary}")
            click.echo(f"  secondary: {keys.secondary}")
        else:
            click.echo(f"Key authentication is on (keys from {keys.source}).")
    click.echo(f"Serving {config.entry_script} as {config.service_name} on "
               f"http://{settings.host}:{settings.port}/score ({settings.workers} worker(s), monitoring "
               f"{reporting_to})")
    server.run(config, fd)


def _monitoring(settings: Settings, no_monitor: bool) -> tuple[Settings, str]:
    """Where telemetry goes: nowhere with --no-monitor; a connection string from the option or the
    environment; else the workspace's default application, when the workspace has a hub (config.json)."""
    if no_monitor:
        return settings.replace(connection_string=""), "off"
    on = "on" if settings.app_insights else "switched off (switch it on at /control/telemetry)"
    if settings.connection_string:
        return settings, on
    workspace = Workspace(settings.home)
    default = workspace.read_config().get("default_app") or {} if workspace.home.is_dir() else {}
    if not default.get("connection_string"):
        return settings, "off"
    endpoint = parse_connection_string(default["connection_string"]).ingestion_endpoint
    return (settings.replace(connection_string=default["connection_string"]),
            f"{on}: the default application of workspace {workspace.home}, hub {endpoint}")
