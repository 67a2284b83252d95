"""``scorewatch up [EXAMPLE_DIR]``: the hub and a monitored scoring service for an example, in one command.

It ensures the workspace and its ``default`` application, starts ``scorewatch hub``, trains the
example's model into the workspace if it is not there yet (``train.py`` provides ``train(out_dir)``),
starts ``scorewatch serve <dir>/score.py`` reporting to the hub with the default connection string,
and prints what to try. Ctrl-C or SIGTERM stops the scoring service first (so its last telemetry
reaches the hub), then the hub. Each child's output goes to ``<workspace>/logs/``.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

import click
import orjson

from scorewatch.errors import ConfigError
from scorewatch.ingest.cli import ensure_default_app
from scorewatch.settings import Settings
from scorewatch.workspace import Workspace

DEFAULT_EXAMPLE = Path("examples/sklearn-ridge")
# Ten standardised features of scikit-learn's diabetes data, the input of the sklearn-ridge example.
_RIDGE_SAMPLE = {"data": [[0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.020, -0.018]]}


class _Stop(Exception):
    pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def _train_if_missing(example: Path, model_dir: Path) -> bool:
    if model_dir.is_dir() and any(model_dir.iterdir()):
        return False
    train_py = example / "train.py"
    if not train_py.is_file():
        raise ConfigError(f"{example} has no model in {model_dir} and no train.py to make one")
    spec = importlib.util.spec_from_file_location(f"scorewatch_example_{example.name}", train_py)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.train(model_dir)
    return True


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise ConfigError(f"{what} exited with {proc.returncode} before it was ready; its log "
                              f"({log}) ends with:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310 - our own child's URL
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise ConfigError(f"{what} did not answer {url} within {timeout:g}s (log: {log})")


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # Own process group: the terminal's Ctrl-C reaches only `up`, which stops the children in order.
        return subprocess.Popen([sys.executable, "-m", "scorewatch", *args], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _curl(example: Path, score_url: str) -> str:
    sample = example / "sample-request.json"
    body = sample.read_text().strip() if sample.is_file() else orjson.dumps(_RIDGE_SAMPLE).decode()
    return f"curl -X POST {score_url} -H 'Content-Type: application/json' -d {shlex.quote(body)}"


@click.command()
@click.argument("example_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Workspace directory (default: SCOREWATCH_HOME or ./.scorewatch).")
@click.option("--hub-port", type=int, default=None, help="Port of the hub (default 8400).")
@click.option("--port", type=int, default=None, help="Port of the scoring service (default 5001).")
def up(example_dir: Path | None, home: Path | None, hub_port: int | None, port: int | None) -> None:
    """Start the hub and a monitored scoring service for EXAMPLE_DIR (default examples/sklearn-ridge)."""
    example = (example_dir or DEFAULT_EXAMPLE).resolve()
    if not (example / "score.py").is_file():
        raise ConfigError(f"{example} has no score.py (try examples/sklearn-ridge)")
    settings = Settings.from_env(home=home, hub_port=hub_port, port=port)
    workspace = Workspace(settings.home).ensure()
    default = ensure_default_app(workspace, settings)
    hub_url = f"http://127.0.0.1:{settings.hub_port}"
    logs = workspace.home / "logs"

    model_dir = workspace.models_dir / example.name
    if _train_if_missing(example, model_dir):
        click.echo(f"trained the example model into {model_dir}")

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        hub = _start(["hub", "--home", str(workspace.home), "--port", str(settings.hub_port)], logs / "hub.log")
        procs.append(hub)
        _wait(f"{hub_url}/health", hub, logs / "hub.log", "the hub")
        serve = _start(["serve", str(example / "score.py"), "--model-dir", str(model_dir),
                        "--port", str(settings.port), "--home", str(workspace.home),
                        "--connection-string", default["connection_string"]], logs / "serve.log")
        procs.append(serve)
        score_root = f"http://127.0.0.1:{settings.port}"
        _wait(f"{score_root}/", serve, logs / "serve.log", "the scoring service")

        home_env = ("" if settings.home == Path(".scorewatch")
                    else f"SCOREWATCH_HOME={shlex.quote(str(workspace.home))} ")
        click.echo(f"""
scorewatch is up ({example.name}).

  scoring URL        {score_root}/score
  try it             {_curl(example, score_root + '/score')}
  hub                {hub_url}
  connection string  {default['connection_string']}
  query              {home_env}scorewatch query 'requests | take 10'
  logs               {logs}/hub.log, {logs}/serve.log

Ctrl-C stops both.""")
        while all(p.poll() is None for p in procs):
            time.sleep(0.2)
        stopped = next(p for p in procs if p.poll() is not None)
        name = "the hub" if stopped is hub else "the scoring service"
        raise ConfigError(f"{name} exited with {stopped.returncode}; see {logs}")
    except _Stop:
        click.echo("stopping...")
    finally:
        # A second signal while stopping must not leave a child behind: stop in order, with time limits.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        try:
            for proc in reversed(procs):  # the scoring service first, so its telemetry reaches the hub
                _stop(proc)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    click.echo("stopped")
