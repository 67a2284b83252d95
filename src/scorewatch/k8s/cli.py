"""``scorewatch k8s render``: write the manifests of the hub, ClickHouse and the workspace's services."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import click
import yaml

from scorewatch.apps import registry_for
from scorewatch.cli import home_option, workspace_settings
from scorewatch.documents import documents_for
from scorewatch.errors import ConfigError, NotFound
from scorewatch.k8s import manifests
from scorewatch.k8s.manifests import Cluster, Manifest
from scorewatch.k8s.services import ServiceInput, read_service_file, read_services
from scorewatch.settings import Settings
from scorewatch.store.backends import has_password, parse
from scorewatch.workspace import Workspace


@click.group()
def k8s() -> None:
    """Kubernetes: manifests for hub replicas on ClickHouse and for the scoring services."""


@k8s.command("render")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write the manifests to, one file per part (default: print them).")
@click.option("--namespace", default="scorewatch", show_default=True, help="Namespace of every object.")
@click.option("--hub-image", default=None, help="Image of the hub (default scorewatch:<version>; docs/scaling.md).")
@click.option("--hub-replicas", type=click.IntRange(1), default=2, show_default=True, help="Hub replicas.")
@click.option("--clickhouse", "clickhouse_url", default="",
              help="An external ClickHouse (clickhouse://USER@HOST:8123/DATABASE; its password in "
                   "SCOREWATCH_CLICKHOUSE_PASSWORD). Default: a ClickHouse StatefulSet.")
@click.option("--service", "service_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A JSON file describing a service (repeatable), besides the workspace's own.")
@click.option("--service-image", default="", help="Image of the services that name none (their folder at /app).")
@click.option("--app", "app_name", default="default", show_default=True,
              help="Application whose connection string the services report with.")
@home_option
def render(out: Path | None, namespace: str, hub_image: str | None, hub_replicas: int, clickhouse_url: str,
           service_files: tuple[Path, ...], service_image: str, app_name: str, home: Path | None) -> None:
    """Render the manifests; validate them with your cluster's tools, then `kubectl apply -f OUT`."""
    workspace, settings = workspace_settings(home)
    if has_password(clickhouse_url):
        raise ConfigError("a password in --clickhouse would show in `ps`: put it in SCOREWATCH_CLICKHOUSE_PASSWORD")
    if clickhouse_url:
        spec = parse(clickhouse_url)
        if not spec.shared:
            raise ConfigError("--clickhouse takes a server's URL: clickhouse://USER@HOST:8123/DATABASE")
        clickhouse_url = spec.describe()
    cluster = Cluster(namespace=manifests.dns_name(namespace), hub_replicas=hub_replicas,
                      hub_image=hub_image or Cluster.hub_image, clickhouse_url=clickhouse_url,
                      clickhouse_password=settings.clickhouse_password or secrets.token_urlsafe(24))
    services = read_services(workspace, documents_for(workspace, settings)) if workspace.home.is_dir() else []
    services += [read_service_file(path) for path in service_files]
    parts = render_all(cluster, services, connection_string=_connection_string(workspace, settings, cluster,
                                                                              app_name, services),
                       service_image=service_image or cluster.hub_image)
    if out is None:
        click.echo(yaml.safe_dump_all([m for objects in parts.values() for m in objects], sort_keys=False), nl=False)
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, objects in parts.items():
        path = out / f"{name}.yaml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # Secrets are in them
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump_all(objects, fh, sort_keys=False)
    click.echo(f"wrote {', '.join(f'{n}.yaml' for n in parts)} to {out} "
               f"({sum(len(o) for o in parts.values())} objects; the files hold Secrets: mode 0600)")


def render_all(cluster: Cluster, services: list[ServiceInput], *, connection_string: str,
               service_image: str) -> dict[str, list[Manifest]]:
    """Every object, by the file it goes to."""
    parts: dict[str, list[Manifest]] = {"namespace": manifests.namespace(cluster)}
    if not cluster.clickhouse_url:
        parts["clickhouse"] = manifests.clickhouse(cluster)
    parts["hub"] = manifests.hub(cluster)
    for spec in services:
        parts[f"service-{manifests.dns_name(spec.name)}"] = manifests.service(
            spec, cluster, connection_string=connection_string, default_image=service_image)
    return parts


def _connection_string(workspace: Workspace, settings: Settings, cluster: Cluster, app_name: str,
                       services: list[ServiceInput]) -> str:
    if not any(s.enable_app_insights for s in services):
        return ""
    try:
        app: Any = registry_for(workspace, settings).get(app_name)
    except NotFound:
        raise ConfigError(f"the services report to application {app_name!r}, which this workspace does not have: "
                          f"create it (`scorewatch app create {app_name}`) or name another with --app") from None
    return app.connection_string(cluster.hub_url)
