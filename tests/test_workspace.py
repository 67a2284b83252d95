import os
import stat

import pytest

from scorewatch.errors import ConfigError
from scorewatch.workspace import Workspace


def test_config_is_private_and_round_trips(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    ws.update_config(hub_url="http://127.0.0.1:8400", default_app={"api_key": "k"})
    assert stat.S_IMODE(os.stat(ws.config_path).st_mode) == 0o600
    assert ws.read_config()["default_app"] == {"api_key": "k"}


def test_corrupt_config_is_a_clear_error(tmp_path):
    ws = Workspace(tmp_path).ensure()
    ws.config_path.write_text("{not json")
    with pytest.raises(ConfigError, match="config.json"):
        ws.read_config()


def test_the_workspace_is_found_like_git_finds_its_repository(tmp_path, monkeypatch):
    from scorewatch.settings import Settings

    project = tmp_path / "project"
    deep = project / "src" / "pkg"
    deep.mkdir(parents=True)
    monkeypatch.delenv("SCOREWATCH_HOME", raising=False)
    monkeypatch.chdir(deep)
    # nothing yet: ./.scorewatch, and finding it creates nothing
    assert Settings.from_env().home == deep / ".scorewatch"
    assert not (deep / ".scorewatch").exists()
    # the nearest .scorewatch in the current directory or a parent
    (project / ".scorewatch").mkdir()
    assert Settings.from_env().home == project / ".scorewatch"
    (deep / ".scorewatch").mkdir()
    assert Settings.from_env().home == deep / ".scorewatch"
    # SCOREWATCH_HOME wins, then --home
    monkeypatch.setenv("SCOREWATCH_HOME", str(tmp_path / "elsewhere"))
    assert Settings.from_env().home == tmp_path / "elsewhere"
    assert Settings.from_env(home=tmp_path / "opt").home == tmp_path / "opt"


def test_commands_that_read_say_which_workspace_is_missing(tmp_path, monkeypatch, capsys):
    from scorewatch.cli import main

    monkeypatch.delenv("SCOREWATCH_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    for args in (["query", "requests | count"], ["app", "list"], ["app", "keys", "default"]):
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: no scorewatch workspace at {tmp_path / '.scorewatch'}"), err
        assert "SCOREWATCH_HOME" in err and "Traceback" not in err
    assert not (tmp_path / ".scorewatch").exists()  # reading never creates one


def test_app_errors_name_the_workspace(tmp_path, monkeypatch, capsys):
    from scorewatch.cli import main

    home = Workspace(tmp_path / "ws").ensure().home
    monkeypatch.setenv("SCOREWATCH_HOME", str(home))
    with pytest.raises(SystemExit) as info:
        main(["app", "keys", "nosuch"])
    assert info.value.code == 4
    assert capsys.readouterr().err.strip() == (f"error: no application named 'nosuch' (see `scorewatch app list`) "
                                               f"(workspace {home})")


def test_workspace_identity_is_kept(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    first = ws.identity()
    assert len(first) == 32 and Workspace(tmp_path / "ws").identity() == first
    assert stat.S_IMODE(os.stat(ws.config_path).st_mode) == 0o600
