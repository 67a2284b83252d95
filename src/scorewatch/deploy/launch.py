"""Starting one `scorewatch serve` process for a deployment, and knowing it again later.

Each generation of a service (see ``ServiceSpec.generation``) runs from a snapshot, as Azure runs an
image: :func:`prepare` copies the source directory (or the entry script alone) to
``deployments/<service>/app/<generation>/`` and links the deployed models in as
``azureml-models/<name>/<version>``, the layout ``Model.get_model_path`` reads. ``AZUREML_MODEL_DIR``
is that model's folder when one model is deployed, ``azureml-models`` when several are (as Azure).

:func:`launch` starts the process in its own session on the service's listening socket (passed as a
descriptor, :mod:`scorewatch.scoring.lifecycle`), with its console (stdout and stderr) appended to a
file of its own, ``deployments/<service>/console/<launch>.log``. Settings and the connection string
reach it through its environment, never its command line. :class:`Instance` is what the hub knows of
a started process; it can be rebuilt from the record (pid and start time) by a hub that did not start it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from scorewatch.deploy import store
from scorewatch.deploy.records import Deployment, EnvironmentSpec, ModelRecord, ServiceSpec, ServiceStatus
from scorewatch.errors import BadRequest
from scorewatch.scoring import lifecycle
from scorewatch.settings import Settings
from scorewatch.workspace import Workspace

# Never copied into a snapshot: caches, version control, environments, workspaces.
IGNORED = shutil.ignore_patterns("__pycache__", ".git", ".venv", "venv", ".scorewatch", ".ipynb_checkpoints")
# Variables of the hub's environment a service must not inherit (keys of other parts).
PRIVATE = ("SCOREWATCH_AUTH_PRIMARY_KEY", "SCOREWATCH_AUTH_SECONDARY_KEY", "SCOREWATCH_CONTROL_KEY",
           "SCOREWATCH_EXPORT_AZURE_ACCOUNT_KEY", "SCOREWATCH_EXPORT_AZURE_CONNECTION_STRING",
           "SCOREWATCH_EXPORT_S3_SECRET_ACCESS_KEY", "SCOREWATCH_CONNECTION_STRING",
           "APPLICATIONINSIGHTS_CONNECTION_STRING")


def app_dir(workspace: Workspace, name: str, generation: int) -> Path:
    return store.service_dir(workspace, name) / "app" / str(generation)


def console_path(workspace: Workspace, name: str, launch: int) -> Path:
    return store.service_dir(workspace, name) / "console" / f"{launch}.log"


def entry_in_snapshot(spec: ServiceSpec, snapshot: Path) -> Path:
    script = Path(spec.entry_script)
    if spec.source_directory is None:
        return snapshot / script.name
    return snapshot / script.relative_to(spec.source_directory)


def check_sources(spec: ServiceSpec) -> None:
    """BadRequest naming the field when the entry script or the source directory is not there."""
    script = Path(spec.entry_script)
    if spec.source_directory is not None:
        source = Path(spec.source_directory)
        if not source.is_dir():
            raise BadRequest(f"source_directory {source} is not a directory", details={"field": "source_directory"})
        if not script.is_relative_to(source):
            raise BadRequest(f"entry_script {script} is not inside source_directory {source}",
                             details={"field": "entry_script"})
    if not script.is_file():
        raise BadRequest(f"entry_script {script} is not a file", details={"field": "entry_script"})


def check_models(models: list[ModelRecord]) -> None:
    """BadRequest naming the model whose files this machine does not have (registered through a hub
    replica on another machine: a model's files stay where it was registered)."""
    for model in models:
        if not Path(model.path).exists():
            raise BadRequest(f"the files of model {model.id} are not on this machine ({model.path}): with hub "
                             "replicas a model's files stay on the replica that registered it; register it "
                             "through the replica that runs the services, or run the services in Kubernetes "
                             "with the model in their image (docs/scaling.md)", details={"field": "models"})


def prepare(workspace: Workspace, spec: ServiceSpec, models: list[ModelRecord]) -> Path:
    """The snapshot of ``spec``'s generation (made once; see the module docstring)."""
    check_sources(spec)
    check_models(models)
    target = app_dir(workspace, spec.name, spec.generation)
    if target.is_dir():
        return target
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if spec.source_directory is None:
        partial.mkdir(mode=0o700)
        shutil.copy2(spec.entry_script, partial / Path(spec.entry_script).name)
    else:
        home = workspace.home

        def ignore(directory: str, names: list[str]) -> set[str]:
            skipped = set(IGNORED(directory, names))
            return skipped | {n for n in names if Path(directory, n) == home}  # the workspace may sit inside

        shutil.copytree(spec.source_directory, partial, ignore=ignore, symlinks=True)
    for model in models:
        link = partial / "azureml-models" / model.name / str(model.version)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(model.path).parent, target_is_directory=True)
    partial.rename(target)
    return target


def model_dir(spec: ServiceSpec, snapshot: Path) -> Path | None:
    if not spec.models:
        return None
    if len(spec.models) == 1:
        return snapshot / "azureml-models" / spec.models[0].name / str(spec.models[0].version)
    return snapshot / "azureml-models"


@dataclass
class Instance:
    """One started `scorewatch serve` process of a service."""

    pid: int
    started: float                 # the operating system's start time of pid
    launch: int
    generation: int
    workers: int
    ready_dir: Path
    handoff: str
    popen: subprocess.Popen[bytes] | None = None   # None: adopted from an earlier hub
    ready: bool = False
    launched_at: float = field(default_factory=time.monotonic)
    stopping_since: float | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None  # (reaps it when it ended)
        return same_process(self.pid, self.started)

    @property
    def exit_code(self) -> int | None:
        return self.popen.returncode if self.popen is not None else None

    @property
    def console(self) -> Path:
        """Its console file (beside its readiness folder, in the workspace of the hub that started it)."""
        return self.ready_dir.parent.parent / "console" / f"{self.launch}.log"

    def is_ready(self) -> bool:
        if not self.ready and len(lifecycle.ready_workers(self.ready_dir)) >= self.workers:
            self.ready = True
        return self.ready

    def accepting(self, port: int) -> bool:
        """Whether one of its workers still listens on ``port``: the process itself with one worker;
        with several, its children (uvicorn's supervisor holds the socket without accepting on it)."""
        try:
            process = psutil.Process(self.pid)
            workers = process.children() if self.workers > 1 else [process]
            return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                       for worker in workers for c in worker.net_connections("tcp"))
        except psutil.Error:
            return False

    def stop(self) -> None:
        """Ask it to stop: it stops accepting and drains (scoring/lifecycle.py)."""
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        """End it and everything in its process group (its workers) at once."""
        if self.popen is not None or same_process(self.pid, self.started):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait()

    def reap_group(self) -> None:
        """After the process ended: end what is left of its group (workers orphaned by a crash)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def same_process(pid: int | None, started: float | None) -> bool:
    """Whether ``pid`` runs and is the process that started at ``started`` (not a reused pid)."""
    if pid is None or started is None:
        return False
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < 0.01 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def launch(workspace: Workspace, settings: Settings, deployment: Deployment, snapshot: Path, sock_fd: int,
           port: int, launch_number: int, connection_string: str) -> Instance:
    """Start the service's process for ``deployment.spec`` (see the module docstring)."""
    spec = deployment.spec
    home = store.service_dir(workspace, spec.name)
    ready_dir = home / "run" / str(launch_number)
    shutil.rmtree(ready_dir, ignore_errors=True)
    ready_dir.mkdir(mode=0o700, parents=True)
    handoff = f"scorewatch-{deployment.uid}-{launch_number}"
    script = entry_in_snapshot(spec, snapshot)
    args = [sys.executable, "-m", "scorewatch", "serve", str(script), "--fd", str(sock_fd), "--port", str(port)]
    models = model_dir(spec, snapshot)
    if models is not None:
        args += ["--model-dir", str(models)]
    env = {k: v for k, v in os.environ.items() if k not in PRIVATE}
    env.update(spec.environment.environment_variables if spec.environment else {})
    env.update({
        "SCOREWATCH_HOME": str(workspace.home),
        "SCOREWATCH_SERVICE_NAME": spec.name,
        "SCOREWATCH_HOST": "127.0.0.1",
        "SCOREWATCH_WORKERS": str(spec.replicas),
        "SCOREWATCH_SCORING_TIMEOUT_MS": str(spec.scoring_timeout_ms),
        "SCOREWATCH_SCORING_CONCURRENCY": str(spec.replica_max_concurrent_requests),
        "SCOREWATCH_WORKSPACE_NAME": settings.workspace_name,
        "SCOREWATCH_APP_INSIGHTS": "1" if spec.enable_app_insights else "0",
        "SCOREWATCH_COLLECT_MODEL_DATA": "1" if spec.collect_model_data else "0",
        "SCOREWATCH_AUTH": "1" if spec.auth_enabled else "0",
        "SCOREWATCH_AUTH_KEYS_FILE": str(store.keys_path(workspace, spec.name)),
        "SCOREWATCH_CONNECTION_STRING": connection_string,
        "AML_APP_ROOT": str(snapshot),
        "PYTHONUNBUFFERED": "1",  # print() reaches the console file as it happens
        lifecycle.READY_DIR_VAR: str(ready_dir),
        lifecycle.HANDOFF_VAR: handoff,
    })
    console = console_path(workspace, spec.name, launch_number)
    console.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(console, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        header = (f"scorewatch: starting {spec.name} (generation {spec.generation}, start {launch_number}) "
                  f"on port {port}: {script}\n")
        for warning in environment_warnings(spec.environment):
            header += f"scorewatch: warning: {warning}\n"
        os.write(fd, header.encode())
        popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, pass_fds=[sock_fd],
                                 start_new_session=True, cwd=snapshot, env=env)
    finally:
        os.close(fd)
    try:
        started = psutil.Process(popen.pid).create_time()
    except psutil.Error:
        started = time.time()
    return Instance(popen.pid, started, launch_number, spec.generation, spec.replicas, ready_dir, handoff, popen)


def started_in(workspace: Workspace, status: ServiceStatus) -> Workspace:
    """The workspace of the hub that started a service (its console, readiness and state files): a
    replica of this machine, or ``workspace`` for a status recorded before that was kept."""
    return Workspace(status.home) if status.home else workspace


def adopt(workspace: Workspace, deployment: Deployment) -> Instance | None:
    """The recorded process of ``deployment``, when it still runs (started by an earlier hub)."""
    status = deployment.status
    if not same_process(status.pid, status.started):
        return None
    assert status.pid is not None and status.started is not None
    ready_dir = store.service_dir(started_in(workspace, status), deployment.name) / "run" / str(status.launch)
    instance = Instance(status.pid, status.started, status.launch, status.generation,
                        status.workers or deployment.spec.replicas, ready_dir, status.handoff)
    instance.is_ready()
    return instance


_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:(==|=|>=|<=|~=|>|<)\s*([^\s;,]+))?")


def environment_warnings(environment: EnvironmentSpec | None) -> list[str]:
    """What ``environment`` asks for that this interpreter does not have (a service runs in it anyway)."""
    if environment is None:
        return []
    warnings = []
    where = f"environment {environment.name or '(unnamed)'}"
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if environment.python_version and not (environment.python_version + ".").startswith(running + "."):
        warnings.append(f"{where} asks for Python {environment.python_version}; the service runs on Python "
                        f"{sys.version.split()[0]} ({sys.executable})")
    for kind, packages in (("conda", environment.conda_packages), ("pip", environment.pip_packages)):
        for requirement in packages:
            match = _REQUIREMENT.match(requirement)
            if match is None:
                continue
            name = match.group(1)
            if name.lower() in ("python", "pip") or name.lower().startswith("azureml"):
                continue  # the interpreter itself, and Azure's own packages (scorewatch stands in for them)
            try:
                importlib.metadata.distribution(name)
            except importlib.metadata.PackageNotFoundError:
                warnings.append(f"{where} lists {kind} package {requirement!r}, which is not installed in "
                                f"{sys.executable}; the service runs in that interpreter (see docs/deployments.md)")
    return warnings
