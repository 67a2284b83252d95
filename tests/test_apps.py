"""Applications and keys: the registry, `scorewatch app ...`, and the default app in config.json."""

from __future__ import annotations

import stat
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from scorewatch.apps import Registry
from scorewatch.errors import BadRequest, Forbidden, NotFound, Unauthorized
from scorewatch.ingest.cli import app as app_cli
from scorewatch.ingest.cli import ensure_default_app
from scorewatch.settings import Settings
from scorewatch.workspace import Workspace


def test_create_authenticate_and_isolation(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "apps.json")
    alpha, alpha_key = registry.create("alpha")
    beta, beta_key = registry.create("beta", retention_days=7)
    assert alpha.app_id != beta.app_id and alpha.instrumentation_key != beta.instrumentation_key
    assert beta.retention_days == 7 and alpha.retention_days == 90
    registry.authenticate(alpha.app_id, alpha_key)
    with pytest.raises(Forbidden):
        registry.authenticate(alpha.app_id, beta_key)
    with pytest.raises(Forbidden):
        registry.authenticate("no-such-app", alpha_key)
    with pytest.raises(Unauthorized):
        registry.authenticate(alpha.app_id, None)
    assert registry.by_instrumentation_key(beta.instrumentation_key).name == "beta"
    assert registry.by_instrumentation_key("nope") is None


def test_keys_are_stored_hashed_and_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "apps.json"
    registry = Registry(path)
    _app, api_key = registry.create("alpha")
    text = path.read_text()
    assert api_key not in text and "api_key_hashes" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_other_processes_changes_are_seen(tmp_path: Path) -> None:
    hub_view, cli_view = Registry(tmp_path / "apps.json"), Registry(tmp_path / "apps.json")
    hub_view.refresh()
    app, key = cli_view.create("late")
    assert hub_view.by_instrumentation_key(app.instrumentation_key) is not None  # re-reads on a miss
    second = cli_view.add_api_key("late")
    hub_view.refresh()
    hub_view.authenticate(app.app_id, key)
    hub_view.authenticate(app.app_id, second)


def test_bad_names_and_duplicates(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "apps.json")
    registry.create("ok-name_1.x")
    for bad in ("", "has space", "../up", "x" * 65):
        with pytest.raises(BadRequest):
            registry.create(bad)
    with pytest.raises(BadRequest):
        registry.create("ok-name_1.x")
    with pytest.raises(NotFound):
        registry.get("missing")
    with pytest.raises(BadRequest):
        registry.set_retention("ok-name_1.x", 0)


def test_cli_create_list_keys_set(tmp_path: Path) -> None:
    home = str(tmp_path / "ws")
    runner = CliRunner()
    created = runner.invoke(app_cli, ["create", "shop", "--home", home])
    assert created.exit_code == 0, created.output
    assert "InstrumentationKey=" in created.output and "IngestionEndpoint=http://127.0.0.1:8400" in created.output
    assert "API key:" in created.output

    listed = orjson.loads(runner.invoke(app_cli, ["list", "--home", home, "--json"]).output)
    assert [a["name"] for a in listed] == ["shop"] and listed[0]["retention_days"] == 90

    keys = orjson.loads(runner.invoke(app_cli, ["keys", "shop", "--home", home, "--json"]).output)
    assert keys["connection_string"] == listed[0]["connection_string"] and keys["api_key"].startswith("swk_")
    Registry(Path(home) / "apps.json").authenticate(keys["app_id"], keys["api_key"])

    changed = runner.invoke(app_cli, ["set", "shop", "--retention-days", "14", "--home", home])
    assert changed.exit_code == 0 and "14 days" in changed.output
    assert orjson.loads(runner.invoke(app_cli, ["list", "--home", home, "--json"]).output)[0]["retention_days"] == 14

    missing = runner.invoke(app_cli, ["keys", "nope", "--home", home])
    assert missing.exit_code != 0 and isinstance(missing.exception, NotFound)


def test_default_app_goes_to_config_json(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws")
    settings = Settings.from_env({}, home=workspace.home, hub_port=8411)
    first = ensure_default_app(workspace, settings)
    config = workspace.read_config()
    assert config["hub_url"] == "http://127.0.0.1:8411"
    assert config["default_app"] == first
    assert set(first) == {"name", "app_id", "instrumentation_key", "connection_string", "api_key"}
    assert first["connection_string"] == (f"InstrumentationKey={first['instrumentation_key']};"
                                          "IngestionEndpoint=http://127.0.0.1:8411")
    assert stat.S_IMODE(workspace.config_path.stat().st_mode) == 0o600
    assert ensure_default_app(workspace, settings) == first  # stable across restarts
    Registry(workspace.home / "apps.json").authenticate(first["app_id"], first["api_key"])

    workspace.config_path.unlink()  # lost config: a new API key is issued for it
    again = ensure_default_app(workspace, settings)
    assert again["app_id"] == first["app_id"] and again["api_key"] != first["api_key"]
    Registry(workspace.home / "apps.json").authenticate(again["app_id"], again["api_key"])
