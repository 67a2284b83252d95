"""`scorewatch up`: hub + monitored scoring service for an example, from any directory, wired together,
stopped cleanly; `scorewatch examples`; and `scorewatch serve` reporting to its workspace by default."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import psutil
import pytest
from click.testing import CliRunner

from scorewatch import examples
from scorewatch.errors import ConfigError
from scorewatch.up import _model_dir, _wait, list_examples, training_dir
from scorewatch.workspace import Workspace
from tests.helpers import ServerProcess, free_port, serve_in_thread, wait_for_http
from tests.ingest.conftest import running_hub

NO_HOME = {"SCOREWATCH_HOME": ""}  # as a user has it: the workspace is found from the current directory


def _printed_curl_body(output: str) -> str:
    line = next(line for line in output.splitlines() if "curl -X POST" in line)
    words = shlex.split(line.split("try it", 1)[1])
    return words[words.index("-d") + 1]


@pytest.mark.slow
def test_up_runs_the_default_example_from_any_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    hub_port, port = free_port(), free_port()
    up = ServerProcess(["up", "--hub-port", str(hub_port), "--port", str(port)], log_dir=tmp_path, env=NO_HOME,
                       cwd=project).start()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", proc=up.proc, expect_status=200, timeout=180)
        deadline = time.monotonic() + 30
        while "Ctrl-C stops both" not in up.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        output = up.output()
        body = _printed_curl_body(output)
        response = httpx.post(f"http://127.0.0.1:{port}/score", content=body,
                              headers={"content-type": "application/json"}, timeout=30)
        assert response.status_code == 200 and isinstance(response.json()[0], float)

        home = project / ".scorewatch"  # the workspace, found (and made) where the user is
        default = orjson.loads((home / "config.json").read_bytes())["default_app"]
        for line in ("scoring URL", default["connection_string"], "  query              scorewatch query "):
            assert line in output
        # The studio's one-time login link, as Jupyter prints its own.
        studio = next(line for line in output.splitlines() if line.startswith("  studio  "))
        link = studio.split()[-1]
        assert link.startswith(f"http://127.0.0.1:{hub_port}/studio/login?token=")
        assert httpx.get(link).status_code == 303 and httpx.get(link).status_code == 403  # once
        # keys reach the children through their environment, never their command lines
        assert up.proc is not None
        for child in psutil.Process(up.proc.pid).children(recursive=True):
            command_line = " ".join(child.cmdline())
            assert default["instrumentation_key"] not in command_line and default["api_key"] not in command_line

        rows = ""
        for _ in range(100):  # the service's exporter sends about once a second
            query = subprocess.run([sys.executable, "-m", "scorewatch", "query",
                                    "requests | where url endswith '/score' | count", "--format", "csv"],
                                   cwd=project, env={**os.environ, **NO_HOME}, capture_output=True, text=True)
            assert query.returncode == 0, query.stderr
            rows = query.stdout
            if rows.splitlines()[1:] != ["0"]:
                break
            time.sleep(0.2)
        assert rows.splitlines() == ["Count", "1"], up.output()
        up.proc.send_signal(signal.SIGINT)  # as Ctrl-C
        assert up.proc.wait(timeout=60) == 0, up.output()
    finally:
        code = up.stop(timeout=60)
    assert code == 0, up.output()
    assert "stopped" in up.output()
    for p in (hub_port, port):  # both children are gone
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{p}/", timeout=2)


def _up(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scorewatch", "up", *args, "--home", str(tmp_path / "ws")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("which", ["--hub-port", "--port"])
def test_a_taken_port_is_named_and_up_exits_non_zero(tmp_path: Path, which: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = "--port" if which == "--hub-port" else "--hub-port"
        proc = _up(tmp_path, which, str(port), other, str(free_port()))
    assert proc.returncode == 2
    what = "the hub" if which == "--hub-port" else "the scoring service"
    assert proc.stderr.strip() == (f"error: cannot start {what}: port {port} is taken (127.0.0.1:{port}: address "
                                   f"already in use; something else listens there); stop it or choose another "
                                   f"port with {which}")
    assert "is up" not in proc.stdout


def test_up_never_takes_someone_elses_server_for_its_own(tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def health(request: object) -> JSONResponse:
        return JSONResponse({"status": "ok", "pid": os.getpid()})

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with serve_in_thread(Starlette(routes=[Route("/health", health)])) as url:
            port = int(url.rsplit(":", 1)[1])
            with pytest.raises(ConfigError, match=f"another server answers on port {port}, not the hub"):
                _wait(f"{url}/health", child, tmp_path / "hub.log", "the hub", port, timeout=10)
    finally:
        child.kill()
        child.wait()


def test_a_folder_without_score_py_or_train_is_a_one_line_error(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    proc = _up(tmp_path, str(mine), "--hub-port", str(free_port()), "--port", str(free_port()))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {mine} has no score.py: `scorewatch up DIR` serves DIR/score.py, an Azure ML entry script with "
        "init() and run() (`scorewatch examples` lists examples to copy)"]

    (mine / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw):\n    return raw\n")
    (mine / "train.py").write_text("def fit(out_dir):\n    pass\n")
    proc = _up(tmp_path, str(mine), "--hub-port", str(free_port()), "--port", str(free_port()))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {mine / 'train.py'} defines no train(out_dir) function: `scorewatch up` calls it once to make the "
        f"model in {tmp_path / 'ws' / 'training' / 'mine'}"]


def test_unknown_example_and_old_paths_say_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"`scorewatch up sklearn-ridge`"):
        examples.find("examples/sklearn-ridge")
    with pytest.raises(ConfigError, match="no folder and no example named 'nosuch'.*sklearn-ridge, numpy-schema"):
        examples.find("nosuch")
    assert examples.find(None).score_py == examples.ROOT / "sklearn-ridge" / "score.py"


def test_examples_lists_the_shipped_examples() -> None:
    result = CliRunner().invoke(list_examples, [])
    assert result.exit_code == 0
    for example in examples.shipped():
        assert example.score_py.is_file() and (example.path / "train.py").is_file()
        assert example.sample_request() is not None
        assert f"  {example.name}" in result.output and example.about in result.output
    assert str(examples.ROOT) in result.output


def test_serve_reports_to_the_workspace_default_application_with_no_flags(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "scoring" / "scripts" / "slow" / "score.py"
    with running_hub(tmp_path / "ws") as hub:
        port = free_port()
        with ServerProcess(["serve", str(script), "--port", str(port)], log_dir=tmp_path,
                           env={"SCOREWATCH_HOME": str(hub.workspace.home),
                                "SCOREWATCH_EXPORTER_INTERVAL_MS": "100"}) as server:
            wait_for_http(f"http://127.0.0.1:{port}/health/ready", proc=server.proc, expect_status=200)
            assert httpx.post(f"http://127.0.0.1:{port}/score", json={"sleep": 0},
                              headers={"x-request-id": "by-default"}).status_code == 200
            count = 0
            for _ in range(100):
                count = hub.rows("SELECT count(*) FROM requests WHERE id IS NOT NULL AND "
                                 "customDimensions->>'Request Id' = 'by-default'")[0][0]
                if count:
                    break
                time.sleep(0.1)
            assert count == 1, server.output()
            assert f"monitoring on: the default application of workspace {hub.workspace.home}" in server.output()
        with ServerProcess(["serve", str(script), "--port", str(free_port()), "--no-monitor"], log_dir=tmp_path,
                           env={"SCOREWATCH_HOME": str(hub.workspace.home)}) as server:
            deadline = time.monotonic() + 60
            while "monitoring" not in server.output() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "monitoring off" in server.output()


def _folder(tmp_path: Path, name: str, train_py: str) -> tuple[Workspace, Path]:
    """A workspace and a user's folder ``name`` with a trivial score.py and this train.py."""
    mine = tmp_path / name
    mine.mkdir()
    (mine / "score.py").write_text("def run(raw):\n    return raw\n")
    (mine / "train.py").write_text(train_py)
    return Workspace(tmp_path / "ws").ensure(), mine


def test_a_folder_of_yours_gets_its_model_made_once_or_uses_its_model_folder(tmp_path: Path) -> None:
    workspace, mine = _folder(tmp_path, "mine", "from pathlib import Path\nCALLS = Path(__file__).with_name('calls')\n"
                              "\n\ndef train(out_dir):\n    Path(out_dir).mkdir(parents=True, exist_ok=True)\n"
                              "    (Path(out_dir) / 'model.txt').write_text('m')\n"
                              "    CALLS.write_text(CALLS.read_text() + 'x' if CALLS.exists() else 'x')\n")
    example = examples.find(str(mine))
    assert _model_dir(example, workspace) == training_dir(workspace) / "mine"
    assert (training_dir(workspace) / "mine" / "model.txt").read_text() == "m"
    assert _model_dir(example, workspace) == training_dir(workspace) / "mine"
    assert (mine / "calls").read_text() == "x"  # made once

    (mine / "train.py").unlink()
    assert _model_dir(examples.find(str(mine)), workspace) is None
    (mine / "model").mkdir()
    assert _model_dir(examples.find(str(mine)), workspace) == mine / "model"


def test_a_failing_train_py_shows_its_own_frames_and_leaves_no_half_model(tmp_path: Path) -> None:
    workspace, mine = _folder(tmp_path, "broken", "from pathlib import Path\n\n\ndef train(out_dir):\n"
                              "    Path(out_dir).mkdir(parents=True)\n    raise ValueError('no data')\n")
    with pytest.raises(ConfigError) as info:
        _model_dir(examples.find(str(mine)), workspace)
    message = info.value.message
    assert message.startswith(f"making the model with {mine / 'train.py'} failed:\nTraceback")
    assert f'File "{mine / "train.py"}", line 6, in train' in message and message.endswith("ValueError: no data")
    assert "scorewatch/up.py" not in message
    assert not (training_dir(workspace) / "broken").exists()


def test_a_hub_of_this_workspace_on_the_port_is_named(tmp_path: Path) -> None:
    with running_hub(tmp_path / "ws") as hub:
        port = hub.url.rsplit(":", 1)[1]
        proc = _up(tmp_path, "--hub-port", port, "--port", str(free_port()))
    assert proc.returncode == 2
    assert f"a hub of this workspace already runs there (pid {os.getpid()})" in proc.stderr


def test_without_the_examples_extra_up_says_which_extra_to_install(tmp_path: Path) -> None:
    """The default example needs scikit-learn, which only the ``examples`` extra installs: a user who
    installed scorewatch without it gets a clear error and the command that fixes it, not a crash."""
    blocked = tmp_path / "no-sklearn"
    (blocked / "sklearn").mkdir(parents=True)
    (blocked / "sklearn" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'sklearn'\", name='sklearn')\n")
    proc = subprocess.run([sys.executable, "-m", "scorewatch", "up", "--home", str(tmp_path / "ws"),
                           "--hub-port", str(free_port()), "--port", str(free_port())],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(blocked)})
    assert proc.returncode == 2 and "is up" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: making the model with ") and lines[0].endswith("train.py failed:")
    assert lines[-2:] == ["ModuleNotFoundError: No module named 'sklearn'",
                          "the examples need their extra: pip install 'scorewatch[examples]'"]
