"""``scorewatch up [EXAMPLE]`` (the hub and a monitored scoring service in one command) and
``scorewatch examples``.

EXAMPLE is an example shipped with scorewatch, by name (default ``sklearn-ridge``), or a folder of your
own holding ``score.py``. ``up`` checks that both ports are free, ensures the workspace and its
``default`` application, makes the model once (a folder's ``train.py`` provides ``train(out_dir)``;
else its ``model/`` folder is used, if any), starts ``scorewatch hub``, then ``scorewatch serve
<folder>/score.py`` reporting to it, and prints what to try. It reports "up" only once each port is
answered by the process it started (``/health`` names its pid), never by a server someone else runs.
Keys reach the children through their environment, never a command line. Ctrl-C or SIGTERM stops the
scoring service first (so its last telemetry reaches the hub), then the hub. Each child's output goes
to ``<workspace>/logs/``.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

import click
import orjson
import psutil

from scorewatch import examples
from scorewatch.errors import ConfigError
from scorewatch.ingest.cli import ensure_default_app
from scorewatch.ports import is_free
from scorewatch.scoring.tracebacks import user_error
from scorewatch.settings import Settings
from scorewatch.studio.auth import issue_login_token, login_url
from scorewatch.workspace import HOME_HELP, Workspace


class _Stop(Exception):
    pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


# ------------------------------------------------------------ before anything starts
def _check_ports(settings: Settings, workspace: Workspace) -> None:
    if settings.hub_port == settings.port:
        raise ConfigError(f"the hub and the scoring service need two ports, not both {settings.port}")
    for what, host, port, option in (("the hub", settings.hub_host, settings.hub_port, "--hub-port"),
                                     ("the scoring service", settings.host, settings.port, "--port")):
        if is_free(host, port):
            continue
        who = "something else listens there"
        health = _get_json(f"http://127.0.0.1:{port}/health") or {}
        if (health.get("workspace") or {}).get("home") == str(workspace.home):
            who = f"a hub of this workspace already runs there (pid {health.get('pid')})"
        raise ConfigError(f"cannot start {what}: port {port} is taken ({host}:{port}: address already in use; "
                          f"{who}); stop it or choose another port with {option}")


def _model_dir(example: examples.Example, workspace: Workspace) -> Path | None:
    """The model folder to serve with: trained once into the workspace when the folder has ``train.py``."""
    train_py = example.path / "train.py"
    if not train_py.is_file():
        own = example.path / "model"
        return own if own.is_dir() else None
    model_dir = workspace.models_dir / example.name
    if model_dir.is_dir() and any(model_dir.iterdir()):
        return model_dir
    _train(example, train_py, model_dir)
    click.echo(f"trained the {example.name} model into {model_dir}")
    return model_dir


def _train(example: examples.Example, train_py: Path, model_dir: Path) -> None:
    partial = model_dir.with_name(model_dir.name + ".training")  # never a half-made model to serve later
    shutil.rmtree(partial, ignore_errors=True)
    spec = importlib.util.spec_from_file_location(f"scorewatch_train_{example.name.replace('-', '_')}", train_py)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        train = getattr(module, "train", None)
        if not callable(train):
            raise ConfigError(f"{train_py} defines no train(out_dir) function: `scorewatch up` calls it once "
                              f"to make the model in {model_dir}")
        train(partial)
    except ConfigError:
        raise
    except Exception as exc:
        hint = ""
        if isinstance(exc, ModuleNotFoundError) and example.about:
            hint = "\nthe examples need their extra: pip install 'scorewatch[examples]'"
        raise ConfigError(f"making the model with {train_py} failed:\n{user_error(exc).rstrip()}{hint}") from None
    partial.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(model_dir, ignore_errors=True)
    partial.rename(model_dir)


# ------------------------------------------------------------ the children
def _get_json(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The JSON object ``url`` answers with 200, or None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a local child's URL
            body = orjson.loads(response.read())
            return body if isinstance(body, dict) else None
    except (urllib.error.URLError, OSError, orjson.JSONDecodeError):
        return None


def _ours(pid: object, proc: subprocess.Popen[bytes]) -> bool:
    """Whether ``pid`` is the child ``proc`` or one of its processes (a scoring worker)."""
    if pid == proc.pid:
        return True
    try:
        return pid in {child.pid for child in psutil.Process(proc.pid).children(recursive=True)}
    except psutil.Error:
        return False


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, what: str, port: int,
          timeout: float = 180.0) -> None:
    """Until ``url`` answers 200 from ``proc`` itself; a clear error if it exits or someone else answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise ConfigError(f"{what} exited with {proc.returncode} before it was ready; its log "
                              f"({log}) ends with:\n{tail}")
        answer = _get_json(url)
        if answer is not None:
            if _ours(answer.get("pid"), proc):
                return
            raise ConfigError(f"another server answers on port {port}, not {what} that `up` started; stop it "
                              "or choose another port")
        time.sleep(0.1)
    raise ConfigError(f"{what} did not answer {url} within {timeout:g}s (log: {log})")


def _start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # Own process group: the terminal's Ctrl-C reaches only `up`, which stops the children in order.
        return subprocess.Popen([sys.executable, "-m", "scorewatch", *args], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def curl(example: examples.Example, score_url: str) -> str:
    """The ``curl`` line to try the service with the example's sample request."""
    media_type, body = example.sample_request() or ("application/json", '{"data": [[1, 2, 3]]}')
    data = "-d" if media_type == "application/json" else "--data-binary"
    return (f"curl -X POST {score_url} -H {shlex.quote('Content-Type: ' + media_type)} "
            f"{data} {shlex.quote(body.strip() if data == '-d' else body)}")


# ------------------------------------------------------------ the commands
@click.command()
@click.argument("example_name", metavar="[EXAMPLE]", required=False)
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None, help=HOME_HELP)
@click.option("--hub-port", type=int, default=None, help="Port of the hub (default 8400).")
@click.option("--port", type=int, default=None, help="Port of the scoring service (default 5001).")
def up(example_name: str | None, home: Path | None, hub_port: int | None, port: int | None) -> None:
    """Start the hub and a monitored scoring service for EXAMPLE: a shipped example's name (default
    sklearn-ridge; `scorewatch examples` lists them) or a folder of yours holding score.py."""
    example = examples.find(example_name)
    settings = Settings.from_env(home=home, hub_port=hub_port, port=port)
    workspace = Workspace(settings.home)
    _check_ports(settings, workspace)
    workspace.ensure()
    default = ensure_default_app(workspace, settings)
    hub_url = f"http://127.0.0.1:{settings.hub_port}"
    logs = workspace.home / "logs"
    model_dir = _model_dir(example, workspace)

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        hub = _start(["hub", "--home", str(workspace.home), "--port", str(settings.hub_port)], logs / "hub.log")
        procs.append(hub)
        _wait(f"{hub_url}/health", hub, logs / "hub.log", "the hub", settings.hub_port)
        model = ["--model-dir", str(model_dir)] if model_dir is not None else []
        serve = _start(["serve", str(example.score_py), *model, "--port", str(settings.port),
                        "--home", str(workspace.home)], logs / "serve.log",
                       env={"SCOREWATCH_CONNECTION_STRING": default["connection_string"]})
        procs.append(serve)
        score_root = f"http://127.0.0.1:{settings.port}"
        _wait(f"{score_root}/health/ready", serve, logs / "serve.log", "the scoring service", settings.port)

        found = Settings.from_env().home == workspace.home  # what `scorewatch query` here would use
        home_env = "" if found else f"SCOREWATCH_HOME={shlex.quote(str(workspace.home))} "
        click.echo(f"""
scorewatch is up ({example.name}).

  scoring URL        {score_root}/score
  try it             {curl(example, score_root + '/score')}
  hub                {hub_url}
  studio             {login_url(hub_url, issue_login_token(workspace))}
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
                _stop(proc, settings.graceful_timeout_s + 10)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    click.echo("stopped")


@click.command("examples")
def list_examples() -> None:
    """List the examples shipped with scorewatch (run one with `scorewatch up NAME`)."""
    shipped = examples.shipped()
    width = max(len(example.name) for example in shipped)
    for example in shipped:
        default = " (default)" if example.name == examples.DEFAULT else ""
        click.echo(f"  {example.name:<{width}}  {example.about}{default}")
    click.echo(f"\nRun one: scorewatch up NAME. Copy one to start your own (score.py, train.py): "
               f"{examples.ROOT}/NAME")
