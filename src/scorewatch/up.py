"""``scorewatch up [EXAMPLE]`` (the hub and a monitored scoring service in one command) and
``scorewatch examples``.

EXAMPLE is an example shipped with scorewatch, by name (default ``sklearn-ridge``), or a folder of your
own holding ``score.py``. ``up`` checks that both ports are free, ensures the workspace and its
``default`` application, makes the model once (a folder's ``train.py`` provides ``train(out_dir)``;
else its ``model/`` folder is used, if any), starts ``scorewatch hub``, then deploys the folder through
the hub's control API, as ``scorewatch deploy`` and the SDK's ``Model.deploy`` do: the model files are
registered (a version is reused when its content is the same), the service is deployed on the given
port with telemetry on, and the hub runs it. It prints what to try once the service is ``Healthy``.
It reports "up" only once the hub's port is answered by the process it started (``/health`` names its
pid), never by a server someone else runs; the service's port is bound by the hub itself. Keys reach
the children through their environment, never a command line. Ctrl-C or SIGTERM deletes the service
first (its requests are answered and its last telemetry reaches the hub), then stops the hub. The hub's
output goes to ``<workspace>/logs/hub.log``; the service's console is in the store
(``scorewatch service logs NAME``).
"""

from __future__ import annotations

import importlib.util
import os
import re
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
from scorewatch.deploy.api import ensure_admin_key
from scorewatch.deploy.cli import wait_healthy
from scorewatch.deploy.client import ControlClient
from scorewatch.deploy.models import digest
from scorewatch.deploy.records import FAILED
from scorewatch.errors import ConfigError, ScorewatchError
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


def training_dir(workspace: Workspace) -> Path:
    """Where ``up`` keeps the models it trained (one folder per example), before registering them."""
    return workspace.home / "training"


def _model_dir(example: examples.Example, workspace: Workspace) -> Path | None:
    """The model folder to serve with: trained once into the workspace when the folder has ``train.py``."""
    train_py = example.path / "train.py"
    if not train_py.is_file():
        own = example.path / "model"
        return own if own.is_dir() else None
    model_dir = training_dir(workspace) / example.name
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


def service_name(example: examples.Example) -> str:
    """A valid service name for the example (lowercase letters, digits and dashes, 3 to 32)."""
    name = re.sub(r"[^a-z0-9-]+", "-", example.name.lower()).strip("-")
    if not name[:1].isalpha():
        name = "svc-" + name
    return (name + "-svc" if len(name) < 3 else name)[:32].rstrip("-")


def _models(api: ControlClient, model_dir: Path | None) -> list[dict[str, Any]]:
    """Each entry of the model folder as a registered model (the latest version of that name is reused
    when its content is the same)."""
    refs = []
    for entry in sorted(model_dir.iterdir()) if model_dir is not None else []:
        if entry.name.startswith("."):
            continue
        known = api.request("GET", "/v1/models", query={"name": entry.name, "latest": True})["value"]
        if known and known[0]["sha256"] == digest(entry):
            record = known[0]
        else:
            record = api.request("POST", "/v1/models", {"model_path": str(entry), "model_name": entry.name,
                                                        "description": "trained by scorewatch up"})
        refs.append({"name": record["name"], "version": record["version"]})
    return refs


def _deploy(api: ControlClient, example: examples.Example, model_dir: Path | None, port: int) -> dict[str, Any]:
    """Deploy the example through the control API (as `scorewatch deploy` does); its view once Healthy."""
    name = service_name(example)
    spec = {"name": name, "entry_script": str(example.score_py), "source_directory": str(example.path),
            "models": _models(api, model_dir), "enable_app_insights": True, "port": port}
    api.request("POST", "/v1/services", {"spec": spec, "overwrite": True})
    try:
        return wait_healthy(api, name, quiet=True)
    except ScorewatchError as exc:
        raise ConfigError(exc.message) from None


def _undeploy(api: ControlClient, name: str, timeout: float) -> None:
    """Delete the service and wait until it is gone (its requests answered, its telemetry sent)."""
    try:
        api.request("DELETE", f"/v1/services/{name}")
    except ScorewatchError:
        return  # never deployed, or the hub is gone
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            api.request("GET", f"/v1/services/{name}")
        except ScorewatchError:
            return
        time.sleep(0.2)


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
    hub: subprocess.Popen[bytes] | None = None
    api: ControlClient | None = None
    name = service_name(example)
    try:
        hub = _start(["hub", "--home", str(workspace.home), "--port", str(settings.hub_port)], logs / "hub.log")
        _wait(f"{hub_url}/health", hub, logs / "hub.log", "the hub", settings.hub_port)
        ensure_admin_key(workspace)
        api = ControlClient.for_workspace(workspace)
        view = _deploy(api, example, model_dir, settings.port)
        score_root = view["scoring_uri"].removesuffix("/score")

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
  logs               {logs}/hub.log; the service's: {home_env}scorewatch service logs {name}

Ctrl-C stops both.""")
        checked = time.monotonic()
        while hub.poll() is None:
            time.sleep(0.2)
            if time.monotonic() - checked > 2.0:  # a service that keeps crashing ends `up` with its reason
                checked = time.monotonic()
                state = api.request("GET", f"/v1/services/{name}")
                if state["state"] == FAILED:
                    raise ConfigError(f"the scoring service failed: {state['status']['error']['message']} "
                                      f"(`scorewatch service logs {name}`)")
        raise ConfigError(f"the hub exited with {hub.returncode}; see {logs}/hub.log")
    except _Stop:
        click.echo("stopping...")
    finally:
        # A second signal while stopping must not leave a child behind: stop in order, with time limits.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        try:
            if api is not None and hub is not None and hub.poll() is None:  # the service first: its telemetry reaches the hub
                _undeploy(api, name, settings.graceful_timeout_s + 10)
            if hub is not None:
                _stop(hub, settings.graceful_timeout_s + 10)
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
