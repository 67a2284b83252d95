"""Retention: `scorewatch app set NAME --retention-days N` reaches a running hub, which applies it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from scorewatch.ingest.cli import app as app_cli
from tests.ingest.conftest import RunningHub


def test_changed_retention_is_applied_by_the_running_hub(any_hub: RunningHub) -> None:
    hub = any_hub
    now = datetime.now(UTC).replace(tzinfo=None)
    app_id = hub.default["app_id"]
    hub.hub.store.write_batch("requests", [
        {"timestamp": now - timedelta(days=20), "name": "20 days", "appId": app_id},
        {"timestamp": now - timedelta(days=2), "name": "2 days", "appId": app_id},
        {"timestamp": now - timedelta(days=20), "name": "other app", "appId": "another"},
    ])
    result = CliRunner().invoke(app_cli, ["set", "default", "--retention-days", "7",
                                          "--home", str(hub.workspace.home)])
    assert result.exit_code == 0, result.output
    names: list[str] = []
    for _ in range(100):  # the hub re-reads apps.json about once a second
        names = sorted(r[0] for r in hub.rows("SELECT name FROM requests"))
        if names == ["2 days", "other app"]:
            break
        time.sleep(0.1)
    assert names == ["2 days", "other app"]
