"""`scorewatch query` against a real query API, configured from the workspace's config.json."""

from __future__ import annotations

import csv
import io
import json

import pytest

from scorewatch.cli import main
from scorewatch.workspace import Workspace
from tests.helpers import free_port


@pytest.fixture()
def workspace(tmp_path, monkeypatch, api):
    home = tmp_path / "ws"
    Workspace(home).write_config({"hub_url": api.url,
                                  "default_app": {"name": "default", "app_id": "app1", "api_key": "key-one"}})
    monkeypatch.setenv("SCOREWATCH_HOME", str(home))
    return home


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(["query", *args])
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_table_output(workspace, capsys):
    code, out, _ = cli(capsys, "requests | summarize n = count() by resultCode | order by resultCode asc")
    assert code == 0
    lines = [line for line in out.splitlines() if "200" in line or "500" in line]
    assert len(lines) == 2 and "7" in lines[0] and "2" in lines[1]
    assert "resultCode" in out and "2 rows" in out


def test_json_output_is_the_api_answer(workspace, capsys):
    code, out, _ = cli(capsys, 'requests | where id == "r2" | project id, customDimensions.n', "--format", "json")
    assert code == 0
    assert json.loads(out)["tables"][0]["rows"] == [["r2", 2]]


def test_csv_output(workspace, capsys):
    code, out, _ = cli(capsys, "requests | where duration < 30 | project id, success | order by id asc",
                       "--format", "csv")
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [["id", "success"], ["r1", "true"], ["r2", "true"]]


def test_timespan_option(workspace, capsys):
    code, out, _ = cli(capsys, "requests | count", "--timespan", "PT1H30M", "--format", "csv")
    assert code == 0 and out.splitlines() == ["Count", "4"]


def test_overrides_select_another_app(workspace, capsys):
    code, out, _ = cli(capsys, "requests | count", "--app-id", "app2", "--api-key", "key-two", "--format", "csv")
    assert code == 0 and out.splitlines() == ["Count", "1"]


def test_kql_error_prints_the_caret_and_exits_non_zero(workspace, capsys):
    code, out, err = cli(capsys, "requests | where durration > 1")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "error: unknown column 'durration' (did you mean 'duration'?) (line 1, column 18)",
        "  requests | where durration > 1",
        "                   ^^^^^^^^^"]


def test_wrong_key_is_refused(workspace, capsys):
    code, _, err = cli(capsys, "requests | count", "--api-key", "nope")
    assert code == 3 and "error:" in err


def test_unreachable_hub(workspace, capsys):
    code, _, err = cli(capsys, "requests | count", "--hub-url", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and "cannot reach the hub" in err


def test_no_config_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCOREWATCH_HOME", str(tmp_path / "empty"))
    code, _, err = cli(capsys, "requests | count")
    assert code == 2 and f"no scorewatch workspace at {tmp_path / 'empty'} (SCOREWATCH_HOME)" in err
    (tmp_path / "empty").mkdir()
    code, _, err = cli(capsys, "requests | count")
    assert code == 2 and f"no application to query in workspace {tmp_path / 'empty'}" in err
    assert "default_app" in err


def test_truncated_result_warns(tmp_path, monkeypatch, capsys, store):
    from tests.kql.conftest import ApiServer

    monkeypatch.setenv("SCOREWATCH_HOME", str(tmp_path / "ws"))
    with ApiServer(store, max_rows=2) as server:
        code, out, err = cli(capsys, "requests | project id", "--hub-url", server.url, "--app-id", "app1",
                             "--api-key", "key-one", "--format", "csv")
    assert code == 0 and len(out.splitlines()) == 3
    assert "warning: Query result set has exceeded the record count limit (2)" in err


def test_query_from_a_subdirectory_finds_the_workspace(workspace, tmp_path, monkeypatch, capsys):
    project = workspace.parent
    (project / "deep" / "er").mkdir(parents=True)
    monkeypatch.delenv("SCOREWATCH_HOME")
    monkeypatch.chdir(project / "deep" / "er")
    (project / ".scorewatch").symlink_to(workspace)
    code, out, _ = cli(capsys, "requests | count", "--format", "csv")
    assert code == 0 and out.splitlines() == ["Count", "9"]


def test_errors_name_the_workspace(workspace, capsys):
    code, _, err = cli(capsys, "requests | count", "--hub-url", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and f"cannot reach the hub of workspace {workspace.resolve()} at " in err


def test_a_hub_of_another_workspace_says_so(tmp_path, monkeypatch, capsys):
    from scorewatch.ingest.cli import ensure_default_app
    from scorewatch.settings import Settings
    from tests.ingest.conftest import running_hub

    with running_hub(tmp_path / "a" / ".scorewatch") as hub:
        port = int(hub.url.rsplit(":", 1)[1])
        mine = Workspace(tmp_path / "b" / ".scorewatch")
        ensure_default_app(mine, Settings.from_env({}, home=mine.home, hub_port=port))
        monkeypatch.setenv("SCOREWATCH_HOME", str(mine.home))
        code, _, err = cli(capsys, "requests | count")
    assert code == 3
    assert err.strip().startswith(f"error: the hub at {hub.url} serves workspace {hub.workspace.home}, "
                                  f"not {mine.home}")
    assert "API key" not in err
