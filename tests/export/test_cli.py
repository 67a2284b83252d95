"""``scorewatch export ...``: rules added only when their target takes a file, their life cycle, and
the one-shot export (here, or handed to the hub), resumable after Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec
import orjson
import pytest
from click.testing import CliRunner, Result

from scorewatch.apps import Application, Registry
from scorewatch.cli import main
from scorewatch.errors import BadRequest
from scorewatch.export.cli import export
from scorewatch.export.rules import RuleBook
from scorewatch.store.duckdb import DuckDBStore
from scorewatch.workspace import Workspace
from tests.export import readback, telemetry
from tests.export.servers import AZURITE_KEY, Azurite
from tests.ingest.conftest import running_hub


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(export, [*args, "--home", str(home)], env=env, catch_exceptions=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    Registry(tmp_path / "ws" / "apps.json").create("default")
    return tmp_path / "ws"


def app_of(home: Path) -> Application:
    return Registry(home / "apps.json").get("default")


def fill_store(home: Path, items: list[dict[str, Any]]) -> None:
    app = app_of(home)
    Workspace(home).ensure()
    store = DuckDBStore(Workspace(home).store_dir / "telemetry.duckdb")
    telemetry.write(store, items, app_id=app.app_id, app_name=app.name, ikey=app.instrumentation_key)
    store.close()


def test_rule_life_cycle(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    added = cli(home, "add", "archive", "--to", str(out), "--tables", "requests,traces", "--format", "parquet")
    assert added.exit_code == 0, added.output
    assert f"as parquet to file://{out}" in added.output
    assert not list(out.iterdir())  # the check's probe file is gone
    listed = orjson.loads(cli(home, "list", "--json").output)
    assert [(r["name"], r["format"], r["tables"], r["state"], r["start"]) for r in listed] == [
        ("archive", "parquet", ["requests", "traces"], "active", "now")]
    shown = cli(home, "show", "archive")
    assert "exported:     0 rows in 0 files, 0 bytes" in shown.output
    assert "unknown (no hub has run it yet)" in shown.output
    assert cli(home, "pause", "archive").output.strip() == "export rule archive: paused"
    info = orjson.loads(cli(home, "show", "archive", "--json").output)
    assert info["state"] == "paused" and info["paused_at"]
    assert cli(home, "resume", "archive").exit_code == 0
    assert orjson.loads(cli(home, "show", "archive", "--json").output)["paused_at"] == ""
    rule_id = info["id"]
    (home / "exports" / rule_id).mkdir(parents=True)
    assert cli(home, "remove", "archive").exit_code == 0
    assert cli(home, "list", "--json").output.strip() == "[]"
    assert not (home / "exports" / rule_id).exists()


@pytest.mark.parametrize("args, message", [
    (["add", "r", "--to", "gs://b/x"], "unsupported export target"),
    (["add", "r", "--to", "/tmp/x", "--tables", "requests,nope"], "unknown table 'nope'"),
    (["add", "r", "--to", "/tmp/x", "--app", "shop"], "no application named 'shop'"),
    (["add", "bad name", "--to", "/tmp/x"], "invalid export rule name"),
    (["add", "r", "--to", "az://c/x?sv=1&sig=abc"], "takes no query string"),
    (["show", "nope"], "no export rule named 'nope'"),
    (["run", "--since", "yesterday-ish", "--to", "/tmp/x"], "cannot read the time 'yesterday-ish'"),
    (["run", "--since", "1h", "--until", "2h", "--to", "/tmp/x"], "must be after --since"),
])
def test_bad_arguments_are_clear_errors_and_save_nothing(home: Path, args: list[str], message: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["export", *args, "--home", str(home)])  # the CLI's front door, as `scorewatch` runs it
    stderr = capsys.readouterr().err
    assert exit_info.value.code != 0 and message in stderr and "Traceback" not in stderr, stderr
    assert RuleBook(home / "exports.json").list() == []


def test_a_target_that_cannot_be_written_saves_no_rule(home: Path, tmp_path: Path, azurite: Azurite) -> None:
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(export, ["add", "r", "--to", str(tmp_path / "file" / "out"), "--home", str(home)])
    assert isinstance(result.exception, BadRequest) and "cannot write to file://" in str(result.exception)
    wrong = AZURITE_KEY[:-4] + "AAA="
    azurite.filesystem().mkdir("clicheck")
    proc = subprocess.run([sys.executable, "-m", "scorewatch", "export", "add", "r", "--to", "az://clicheck/x",
                           "--home", str(home)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SCOREWATCH_EXPORT_AZURE_CONNECTION_STRING": azurite.connection_string(wrong)})
    assert proc.returncode == 2 and "the credentials were rejected" in proc.stderr, proc.stderr
    assert wrong not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    assert RuleBook(home / "exports.json").list() == []


def test_one_shot_export_in_this_process(home: Path, tmp_path: Path) -> None:
    fill_store(home, telemetry.envelopes(time="2026-01-02T03:00:00Z")
               + telemetry.messages(20, time="2026-01-03T03:00:00Z"))
    out = tmp_path / "backfill"
    result = cli(home, "run", "--since", "2026-01-01", "--until", "2026-01-03", "--to", str(out), "--format", "parquet")
    assert result.exit_code == 0, result.output
    assert "exported 8 rows of default (2026-01-01T00:00:00+00:00 to 2026-01-03T00:00:00+00:00) as parquet" in result.output
    exported = readback.files(fsspec.filesystem("file"), str(out))
    assert len(readback.item_ids(exported, "parquet")) == 8
    assert list((home / "exports").iterdir()) == []  # a finished job leaves no state


def test_one_shot_export_resumes_after_ctrl_c(home: Path, tmp_path: Path) -> None:
    fill_store(home, telemetry.messages(6000, time="2026-01-02T03:00:00Z"))
    out = tmp_path / "backfill"
    args = [sys.executable, "-m", "scorewatch", "export", "run", "--since", "2026-01-02", "--until", "2026-01-03",
            "--to", str(out), "--home", str(home)]
    env = {**os.environ, "SCOREWATCH_EXPORT_MAX_ITEMS": "50"}  # 120 rounds, each fsynced
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(out.rglob("*.blob")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "run the same command again to resume it" in stderr and "Traceback" not in stderr
    partial = len(readback.item_ids(readback.files(fsspec.filesystem("file"), str(out)), "appinsights"))
    assert 0 < partial < 6000
    resumed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed and exported 6,000 rows" in resumed.stdout
    ids = readback.item_ids(readback.files(fsspec.filesystem("file"), str(out)), "appinsights")
    assert len(ids) == len(set(ids)) == 6000


def test_one_shot_export_handed_to_the_running_hub(tmp_path: Path) -> None:
    with running_hub(tmp_path / "ws", export_interval_s=0.2) as hub:
        hub.hub.store.write_batch("traces", [{"timestamp": datetime(2026, 1, 2, 3), "message": f"m{i}",
                                              "appId": hub.default["app_id"], "itemId": f"id-{i}"}
                                             for i in range(30)])
        out = tmp_path / "backfill"
        result = cli(hub.workspace.home, "run", "--since", "2026-01-02", "--until", "2026-01-03", "--to", str(out),
                     "--format", "diagnostic")
        assert result.exit_code == 0, result.output
        assert "exported 30 rows of default" in result.output
        assert RuleBook(hub.workspace.home / "exports.json").list() == []  # the job is gone once done
    ids = readback.item_ids(readback.files(fsspec.filesystem("file"), str(out)), "diagnostic")
    assert Counter(ids) == Counter(f"id-{i}" for i in range(30))


def test_without_the_extra_an_azure_target_says_what_to_install(home: Path, tmp_path: Path) -> None:
    """A Python where adlfs cannot be imported (as after `pip install scorewatch` without [azure])."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\n"
                       "class _NoAzure:\n"
                       "    def find_spec(self, name, path=None, target=None):\n"
                       "        if name == 'adlfs' or name.startswith('adlfs.'):\n"
                       "            raise ModuleNotFoundError(name)\n"
                       "sys.meta_path.insert(0, _NoAzure())\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    proc = subprocess.run([sys.executable, "-m", "scorewatch", "export", "add", "a", "--to", "az://c/x",
                           "--home", str(home)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'scorewatch[azure]'" in proc.stderr and "Traceback" not in proc.stderr
