"""`scorewatch serve` as a command: options, Azure variables, clear errors."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from scorewatch.cli import main
from scorewatch.scoring.cli import serve
from scorewatch.scoring.server import resolve
from scorewatch.settings import Settings
from tests.scoring.conftest import SCRIPTS, serving


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(serve, ["--help"])
    assert result.exit_code == 0
    for option in ("--model-dir", "--host", "--port", "--workers", "--name", "--connection-string",
                   "--max-body-size", "--auth", "--home"):
        assert option in result.output


def test_no_entry_script_is_a_clear_error(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("AZUREML_ENTRY_SCRIPT", raising=False)
    try:
        main(["serve"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "AZUREML_ENTRY_SCRIPT" in capsys.readouterr().err


def test_azure_variables_choose_script_and_model_dir(tmp_path: Path) -> None:
    environ = {"AML_APP_ROOT": str(SCRIPTS / "raw"), "AZUREML_ENTRY_SCRIPT": "score.py",
               "AZUREML_MODEL_DIR": str(tmp_path)}
    config, keys = resolve(None, None, Settings.from_env(environ), environ)
    assert config.entry_script == SCRIPTS / "raw" / "score.py"
    assert config.model_dir == tmp_path
    assert config.service_name == "raw" and keys is None


def test_bad_values_are_errors(tmp_path: Path) -> None:
    import pytest

    from scorewatch.errors import ConfigError

    script = SCRIPTS / "raw" / "score.py"
    with pytest.raises(ConfigError, match="workers"):
        resolve(str(script), None, Settings(workers=0), {})
    with pytest.raises(ConfigError, match="model directory"):
        resolve(str(script), str(tmp_path / "none"), Settings(), {})


def test_served_from_azure_environment_variables_alone(tmp_path: Path) -> None:
    env = {"AZUREML_ENTRY_SCRIPT": str(SCRIPTS / "slow" / "score.py"), "WORKER_COUNT": "1",
           "SERVICE_NAME": "from-env"}
    from tests.helpers import ServerProcess, free_port, wait_for_http

    port = free_port()
    with ServerProcess(["serve", "--port", str(port)], log_dir=tmp_path, env=env) as server:
        wait_for_http(f"http://127.0.0.1:{port}/health/ready", proc=server.proc, expect_status=200)
        assert "as from-env" in server.output()


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with serving(SCRIPTS / "slow" / "score.py", tmp_path) as first:
        port = first.url.rsplit(":", 1)[1]
        import subprocess
        import sys

        proc = subprocess.run([sys.executable, "-m", "scorewatch", "serve", str(SCRIPTS / "slow" / "score.py"),
                               "--port", port], capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0
        assert f"cannot listen on 127.0.0.1:{port}: address already in use" in proc.stderr
