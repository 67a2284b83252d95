"""The hub's deployments: desired state in the workspace's records, reconciled into running services.

The control API calls a :class:`Supervisor`'s operations (:meth:`~Supervisor.deploy`,
:meth:`~Supervisor.update`, :meth:`~Supervisor.delete`, ...), which change the records (each an
atomic edit, :mod:`scorewatch.deploy.store`), and its thread reconciles each record about five times
a second:

- a service with no process gets one (:mod:`scorewatch.deploy.launch`): state ``Transitioning``,
  ``Healthy`` once every worker said it is ready;
- a process that ended is restarted after 0.5, 1, 2, ... s (``service_restart_backoff_s``): state
  ``Unhealthy`` meanwhile; after ``service_max_restarts`` crashes in a row it is ``Failed``, with the
  reason and the last lines of its console in ``error``, and stays down until it is updated;
- a spec whose ``generation`` moved on rolls the service: a new process on the same listening
  socket, and once it is ready the old one drains (``Transitioning`` meanwhile; if the new one
  cannot start, the old one keeps serving and the state is ``Failed``);
- a deleted service is stopped (SIGTERM, drain, SIGKILL after ``graceful_timeout_s``) and forgotten.

Services are processes of their own (their own session): they outlive the hub. A hub that starts
finds them by their recorded pid and start time, adopts them without a restart, and gets their
listening socket from them, so it can roll them later. The hub holds each service's listening socket
itself, so connections made while a crashed service restarts wait in its queue.

Each process's console goes to a file of its own and from there into the store
(:mod:`scorewatch.deploy.console`).

With hub replicas on a shared store every replica's operations edit the same records, and one replica
at a time reconciles them, the one holding the lease ``supervisor`` (renewed every second, given up
when its hub stops, taken over ``LEASE_S`` after a holder that stopped renewing it): only it starts,
adopts and stops processes, on its own machine. It keeps the status and the process facts it writes
apart from what an operation wrote meanwhile (an operation's state stands; its next round acts on it).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scorewatch.deploy import launch, store
from scorewatch.deploy.console import Consoles
from scorewatch.deploy.launch import Instance
from scorewatch.deploy.models import ModelRegistry
from scorewatch.deploy.records import (
    DELETING,
    FAILED,
    HEALTHY,
    LABELS,
    SWITCHES,
    TRANSITIONING,
    UNHEALTHY,
    Deployment,
    ModelRecord,
    ServiceSpec,
    check_service_name,
)
from scorewatch.deploy.store import Records
from scorewatch.documents import Documents, FileDocuments, lease, release
from scorewatch.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from scorewatch.ports import listen
from scorewatch.scoring import lifecycle
from scorewatch.settings import Settings
from scorewatch.telemetry import control
from scorewatch.workspace import Workspace

log = logging.getLogger("scorewatch.deploy")

TICK_S = 0.2
STABLE_S = 60.0        # a process Healthy this long before it crashed starts the crash count afresh
SWITCH_WAIT_S = 5.0    # longest update() waits for every worker to apply a telemetry switch
TAIL_LINES = 20        # console lines kept in a crash's error
LEASE_S = 30.0         # a replica that stops renewing the supervisor lease loses it this much later
RENEW_S = 1.0          # how often the holder renews it
# Status fields an operation sets (a reset); the supervisor's own save keeps them when one came between.
OPERATED = ("state", "error", "restarts", "updated_time")


def not_found(name: str) -> NotFound:
    """Azure's ``WebserviceNotFound`` error, word for word."""
    return NotFound(f"WebserviceNotFound: Webservice with name {name} not found in provided workspace",
                    code="WebserviceNotFound")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Unit:
    """What the hub holds for one service while it runs."""

    sock: socket.socket | None = None
    current: Instance | None = None         # serving (or starting, when nothing serves yet)
    successor: Instance | None = None       # starting, to replace current (a roll)
    draining: list[Instance] = field(default_factory=list)
    ended: list[Instance] = field(default_factory=list)   # their consoles are still being stored
    next_start: float = 0.0
    healthy_since: float | None = None
    failed_generation: int | None = None    # a roll to it failed: not tried again until the next update
    successor_crashes: int = 0
    timed_out: set[int] = field(default_factory=set)  # launches killed for not becoming ready in time
    seen: str | None = None                 # the status' updated_time as this supervisor last wrote or read it
    switches: dict[str, bool] | None = None  # the spec's telemetry switches the processes were given

    def reset(self) -> None:
        """An operation reset the service (update, redeploy, reload): try again at once."""
        self.failed_generation = None
        self.successor_crashes = 0
        self.next_start = 0.0


class Supervisor:
    """The deployments of a workspace: their records in ``documents`` (default: the workspace's files)
    and, while this hub holds the lease, their processes."""

    def __init__(self, workspace: Workspace, settings: Settings, consoles: Consoles,
                 connection_string: Callable[[], str], *, documents: Documents | None = None,
                 records: Records[Deployment] | None = None, models: ModelRegistry | None = None) -> None:
        self.workspace, self.settings, self.consoles = workspace, settings, consoles
        self.connection_string = connection_string
        self.documents: Documents = documents if documents is not None else FileDocuments(workspace.home)
        self.records: Records[Deployment] = records or store.deployments(workspace, self.documents)
        self.models = models or ModelRegistry(workspace, self.documents)
        self.service_keys = store.service_keys(workspace, self.documents)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leading = not self.documents.shared  # with one hub it always leads
        self.lock = threading.RLock()
        self.units: dict[str, Unit] = {}
        self._adopted = False
        self._renewed: float | None = None
        self._unreachable = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Adopt the services earlier hubs started (when this hub leads), then reconcile on a thread of its own."""
        try:
            self._lead()
        except ServiceUnavailable as exc:
            log.warning("cannot supervise the deployments yet: %s", exc)
        self._thread = threading.Thread(target=self._run, name="scorewatch-deployments", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reconciling and give up the lease. The services keep running (a next hub adopts them)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        with self.lock:
            self._let_go()
            if self.leading and self.documents.shared:
                release(self.documents, "supervisor", self.holder)
                self.leading = False

    def _lead(self) -> bool:
        """Take or keep the lease (at most every RENEW_S); adopt the services on taking it, let them go on losing it."""
        now = time.monotonic()
        if self._renewed is not None and now - self._renewed < RENEW_S:
            return self.leading
        leading = lease(self.documents, "supervisor", self.holder, LEASE_S)
        self._renewed = now
        with self.lock:
            if leading and not self._adopted:
                if self.documents.shared:
                    log.info("this hub runs the deployments")
                for deployment in self.records.list():
                    self._adopt(deployment)
                self._adopted = True
            elif not leading and self._adopted:
                log.info("this hub no longer runs the deployments (another replica does)")
                self._let_go()
            self.leading = leading
        return leading

    def _let_go(self) -> None:
        """Forget the processes (they keep running; the holder of the lease adopts them)."""
        for unit in self.units.values():
            if unit.sock is not None:
                unit.sock.close()
                unit.sock = None
        self.units.clear()
        self._adopted = False

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._lead():
                    self.tick()
                self._unreachable = False
            except ServiceUnavailable as exc:  # the shared store: said once, tried again each round
                if not self._unreachable:
                    log.warning("cannot reconcile the deployments now: %s", exc)
                self._unreachable = True
            except Exception:  # keep supervising; the next round tries again
                log.exception("reconciling the deployments failed")
            self._wake.wait(TICK_S)
            self._wake.clear()

    def tick(self) -> None:
        with self.lock:
            for deployment in self.records.list():
                unit = self.units.setdefault(deployment.name, Unit())
                if unit.seen is not None and deployment.status.updated_time != unit.seen:
                    unit.reset()  # an operation (through any replica) changed it since
                self._reconcile(deployment)

    # -- operations (the control API calls these) --------------------------------------------------
    def deployments(self) -> list[Deployment]:
        with self.lock:
            return self.records.list()

    def get(self, name: str) -> Deployment:
        check_service_name(name)
        with self.lock:
            deployment = self.records.load(name)
        if deployment is None:
            raise not_found(name)
        return deployment

    def deploy(self, spec: ServiceSpec, *, overwrite: bool = False, primary_key: str | None = None,
               secondary_key: str | None = None) -> Deployment:
        """Create the service ``spec.name`` (``overwrite``: replace one of that name, by rolling it)."""
        spec.check()
        models = [self.models.get(m.name, m.version) for m in spec.models]

        def change(existing: Deployment | None) -> Deployment:
            if existing is not None:
                if not overwrite:
                    raise Conflict(f"Error, there is already a service with name {spec.name} found in workspace "
                                   f"{self.settings.workspace_name}", code="WebserviceAlreadyExists")
                if existing.deleting:
                    raise Conflict(f"service {spec.name} is being deleted; deploy it again once it is gone")
                spec.generation = existing.spec.generation + 1
                spec.port = spec.port or existing.status.port
                deployment = existing
                deployment.spec = spec
            else:
                spec.generation = 1
                deployment = Deployment(spec, uid=uuid.uuid4().hex)
                deployment.status.created_time = now_iso()
            self._prepare(spec, models)
            self._keys(deployment, primary_key, secondary_key)
            self._reset(deployment, TRANSITIONING)
            return deployment

        with self.lock:
            deployment = self._edit(spec.name, change)
        self._wake.set()
        return deployment

    def update(self, name: str, changes: dict[str, Any], *, primary_key: str | None = None,
               secondary_key: str | None = None) -> Deployment:
        """Change the service: ``enable_app_insights``/``collect_model_data`` switch its workers (on the
        hub that runs the services this waits until each applied it, at most SWITCH_WAIT_S),
        ``tags``/``properties``/``description`` are labels, anything else rolls it. Raises Azure's error
        when ``changes`` is empty."""
        if not changes and primary_key is None and secondary_key is None:
            raise BadRequest("No parameters provided to update.")
        check_service_name(name)
        for fixed in ("name", "generation"):
            if fixed in changes:
                raise BadRequest(f"{fixed} cannot be updated", details={"field": fixed})
        replace_keys = primary_key is not None or secondary_key is not None

        def change(deployment: Deployment) -> Deployment:
            spec = deployment.spec
            current = spec.to_dict()
            merged = {**current, **{k: v for k, v in changes.items() if k not in ("tags", "properties")}}
            if "tags" in changes:
                merged["tags"] = changes["tags"]  # replaced, as Azure replaces them
            if "properties" in changes:
                merged["properties"] = {**current["properties"], **(changes["properties"] or {})}  # added to
            new = ServiceSpec.from_dict(merged).check()
            rolls = {k for k in merged if merged[k] != current[k] and k not in SWITCHES + LABELS}
            if replace_keys:
                rolls.add("keys")
            if rolls:
                new.generation = spec.generation + 1
                self._prepare(new, [self.models.get(m.name, m.version) for m in new.models])
            deployment.spec = new
            self._keys(deployment, primary_key, secondary_key, replace=replace_keys)
            if rolls or deployment.status.state == FAILED:
                self._reset(deployment, TRANSITIONING if rolls else deployment.status.state)
            return deployment

        with self.lock:
            deployment = self._edit_existing(name, change)
            unit = self.units.get(name)
            switched = self._apply_switches(deployment, unit) if unit is not None and self.leading else None
        self._wake.set()
        if switched is not None:
            self._wait_switched(*switched)
        return self.get(name)

    def delete(self, name: str) -> Deployment:
        check_service_name(name)

        def change(deployment: Deployment) -> Deployment:
            deployment.deleting = True
            deployment.status.state = DELETING
            deployment.status.updated_time = now_iso()
            return deployment

        with self.lock:
            deployment = self._edit_existing(name, change, while_deleting=True)
        self._wake.set()
        return deployment

    def keys(self, name: str) -> tuple[str, str]:
        deployment = self.get(name)
        if not deployment.spec.auth_enabled:
            raise BadRequest(f"key authentication is not enabled for service {name} (update it with auth_enabled)")
        keys = self.service_keys.read(name)
        if keys is None:
            raise Conflict(f"service {name} has no keys yet; regenerate one (regen-key)")
        return keys["primaryKey"], keys["secondaryKey"]

    def regen_key(self, name: str, key: str, value: str | None = None) -> Deployment:
        """A new ``Primary`` or ``Secondary`` key (``value``, or a random one); rolls the service."""
        if not key:
            raise BadRequest("Error, must specify which key with be regenerated: Primary, Secondary")
        key = key.capitalize()
        if key not in ("Primary", "Secondary"):
            raise BadRequest(f"Error, invalid value provided for key: {key}.\nValid options are: Primary, Secondary",
                             details={"field": "keyType"})
        new = value or secrets.token_urlsafe(32)
        self.keys(name)  # refuses when the service has no keys
        if key == "Primary":
            return self.update(name, {}, primary_key=new)
        return self.update(name, {}, secondary_key=new)

    def reload(self, name: str) -> Deployment:
        """Roll the service onto a fresh copy of its entry script and source directory (as
        ``LocalWebservice.reload`` restarts a local service with the files as they are now)."""
        check_service_name(name)

        def change(deployment: Deployment) -> Deployment:
            deployment.spec.generation += 1
            self._prepare(deployment.spec, [self.models.get(m.name, m.version) for m in deployment.spec.models])
            self._reset(deployment, TRANSITIONING)
            return deployment

        with self.lock:
            deployment = self._edit_existing(name, change)
        self._wake.set()
        return deployment

    def logs(self, name: str, num_lines: int = 5000, init: bool = False,
             after: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """The service's console lines from the store: its last ``num_lines``, or with ``init``, the
        latest start's lines up to its readiness (see :meth:`Consoles.lines`)."""
        with self.lock:
            deployment = self.get(name)
            self._ship(deployment)  # what is written now is in the answer
        self.consoles.settle()
        status = deployment.status
        if init:
            return self.consoles.lines(deployment, num_lines, init_start=status.launch,
                                       init_offset=status.ready_offset, after=after)
        return self.consoles.lines(deployment, num_lines, after=after)

    def telemetry(self, deployment: Deployment) -> dict[str, Any] | None:
        """The telemetry state its workers share, with each worker's acknowledgement (None: not running)."""
        path = self._control_file(deployment)
        if path is None or not path.exists():
            return None
        return control.describe(*control.read(path), path)

    # -- helpers of the operations ------------------------------------------------------------------
    def _edit(self, name: str, change: Callable[[Deployment | None], Deployment]) -> Deployment:
        deployment = self.records.edit(name, change)
        assert deployment is not None  # change returns one or raises
        return deployment

    def _edit_existing(self, name: str, change: Callable[[Deployment], Deployment], *,
                       while_deleting: bool = False) -> Deployment:
        """:meth:`_edit` of a service there is: NotFound when there is none, Conflict while it is
        being deleted (unless ``while_deleting``)."""
        def apply(deployment: Deployment | None) -> Deployment:
            if deployment is None:
                raise not_found(name)
            if deployment.deleting and not while_deleting:
                raise Conflict(f"service {name} is being deleted")
            return change(deployment)

        return self._edit(name, apply)

    def _prepare(self, spec: ServiceSpec, models: list[ModelRecord]) -> None:
        """Snapshot the generation now, on the hub that runs the services; any other replica checks
        the files only (the one that runs the services snapshots them when it starts that generation)."""
        if self.leading:
            launch.prepare(self.workspace, spec, models)
        else:
            launch.check_sources(spec)
            launch.check_models(models)

    @staticmethod
    def _reset(deployment: Deployment, state: str) -> None:
        """Its status after an operation (the supervisor resets its backoff when it sees it: :meth:`tick`)."""
        status = deployment.status
        status.restarts = 0
        status.state = state
        status.error = None
        status.updated_time = now_iso()

    def _keys(self, deployment: Deployment, primary: str | None, secondary: str | None, *,
              replace: bool = False) -> None:
        """The keys of a service with key authentication: made once, or given keys written."""
        if not deployment.spec.auth_enabled and not replace:
            return
        known = self.service_keys.read(deployment.name) or {}
        keys = {"primaryKey": primary or known.get("primaryKey") or secrets.token_urlsafe(32),
                "secondaryKey": secondary or known.get("secondaryKey") or secrets.token_urlsafe(32)}
        if keys != known:
            self.service_keys.write(deployment.name, keys)

    def _control_file(self, deployment: Deployment) -> Path | None:
        """The serving process's telemetry state file, in the workspace it runs from (SCOREWATCH_HOME)."""
        status = deployment.status
        if status.port is None:
            return None
        return launch.started_in(self.workspace, status).services_dir / f"{deployment.name}-{status.port}.telemetry.json"

    def _apply_switches(self, deployment: Deployment, unit: Unit) -> tuple[Path, int] | None:
        """Switch the running workers to the spec's ``enable_app_insights``/``collect_model_data`` when
        those changed since they were given (through any replica); the state file and its revision."""
        wanted = {k: bool(getattr(deployment.spec, k)) for k in SWITCHES}
        known, unit.switches = unit.switches, wanted
        path = self._control_file(deployment)
        if known is None or known == wanted or path is None or unit.current is None:
            return None  # as they were given, or nothing runs: the next start takes the spec's flags
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _state, revision = control.switch(path, {k: v for k, v in wanted.items() if known.get(k) != v})
        return path, revision

    def _wait_switched(self, path: Path, revision: int) -> None:
        deadline = time.monotonic() + SWITCH_WAIT_S
        while time.monotonic() < deadline:
            acks = control.acknowledgements(path)
            if acks and all(applied >= revision for applied in acks.values()):
                return
            time.sleep(0.02)

    # -- adoption -----------------------------------------------------------------------------------
    def _adopt(self, deployment: Deployment) -> None:
        unit = self.units.setdefault(deployment.name, Unit())
        unit.switches = {k: bool(getattr(deployment.spec, k)) for k in SWITCHES}  # as its processes have them
        for pid, started in deployment.status.others:  # a roll or a drain the last hub did not finish
            if launch.same_process(int(pid), started):
                other = Instance(int(pid), started, 0, 0, 0, store.service_dir(self.workspace, deployment.name) / "run" / "0", "")
                other.stop()
                unit.draining.append(other)
        instance = launch.adopt(self.workspace, deployment)
        if instance is None:
            return
        unit.current = instance
        try:
            unit.sock = lifecycle.fetch(instance.handoff)
        except OSError as exc:
            log.warning("could not take over the listening socket of %s (pid %d): %s; it is bound again when "
                        "the service next starts", deployment.name, instance.pid, exc)
        if instance.ready:
            unit.healthy_since = time.monotonic()
        log.info("adopted service %s (pid %d, %s)", deployment.name, instance.pid,
                 "ready" if instance.ready else "starting")

    # -- reconciling --------------------------------------------------------------------------------
    def _reconcile(self, deployment: Deployment) -> None:
        unit = self.units.setdefault(deployment.name, Unit())
        before = deployment.status.to_dict()
        seen = deployment.status.updated_time
        now = time.monotonic()
        self._ship(deployment)
        if deployment.deleting:
            self._remove(deployment, unit, now)
            return
        self._drain(unit, now)
        self._watch_current(deployment, unit, now)
        self._watch_successor(deployment, unit, now)
        status = deployment.status
        if unit.current is None and unit.successor is None and status.state != FAILED and now >= unit.next_start:
            unit.current = self._launch(deployment, unit)
            if unit.current is not None:
                self._serving(deployment, unit.current)
                status.state = TRANSITIONING if status.restarts == 0 else UNHEALTHY
        current = unit.current
        if current is not None and current.ready and status.state == TRANSITIONING and unit.successor is None \
                and current.generation == status.generation and self._handed_over(deployment, unit):
            self._became_ready(deployment, unit, current, now)
        if current is not None and not current.ready:
            if current.is_ready():
                self._became_ready(deployment, unit, current, now)
            elif now - current.launched_at > self.settings.service_start_timeout_s:
                unit.timed_out.add(current.launch)
                current.kill()
        if (current is not None and current.ready and unit.successor is None
                and current.generation != deployment.spec.generation
                and deployment.spec.generation != unit.failed_generation and now >= unit.next_start):
            unit.successor = self._launch(deployment, unit)
            if unit.successor is not None:
                status.state = TRANSITIONING
        self._apply_switches(deployment, unit)
        self._clean(deployment, unit)
        status.others = [[i.pid, i.started] for i in (unit.successor, *unit.draining) if i is not None]
        if status.to_dict() != before:
            status.updated_time = now_iso()
            self._save_status(deployment, unit, seen)
        else:
            unit.seen = seen

    def _save_status(self, deployment: Deployment, unit: Unit, seen: str) -> None:
        """Write what this round saw of the service into its record as it is now: the spec and the
        deletion as operations left them, and when an operation reset the status since ``seen``, its
        state, error and restarts (the next round, seeing the change, acts on it)."""
        status, operated = deployment.status, False

        def change(current: Deployment | None) -> Deployment | None:
            nonlocal operated
            if current is None or current.uid != deployment.uid:
                return None
            operated = current.status.updated_time != seen
            if operated:
                for name in OPERATED:
                    setattr(status, name, getattr(current.status, name))
            current.status = status
            return current

        self.records.edit(deployment.name, change)
        if not operated:
            unit.seen = status.updated_time

    def _launch(self, deployment: Deployment, unit: Unit) -> Instance | None:
        spec, status = deployment.spec, deployment.status
        try:
            snapshot = launch.prepare(self.workspace, spec, [self.models.get(m.name, m.version) for m in spec.models])
            self.service_keys.materialize(spec.name)
            sock = self._socket(deployment, unit)
            status.launch += 1
            return launch.launch(self.workspace, self.settings, deployment, snapshot, sock.fileno(),
                                 sock.getsockname()[1], status.launch, self.connection_string())
        except Exception as exc:  # the port is taken, a model is gone, the snapshot cannot be made
            log.error("cannot start service %s: %s", spec.name, exc)
            self._failed(deployment, unit, "ServiceStartFailed", f"the service could not be started: {exc}", [])
            return None

    def _socket(self, deployment: Deployment, unit: Unit) -> socket.socket:
        if unit.sock is None:
            port = deployment.spec.port or deployment.status.port or 0
            unit.sock = listen("127.0.0.1", port)
            unit.sock.listen(2048)
            deployment.status.port = unit.sock.getsockname()[1]
        return unit.sock

    def _serving(self, deployment: Deployment, instance: Instance) -> None:
        status = deployment.status
        status.pid, status.started, status.generation = instance.pid, instance.started, instance.generation
        status.workers = instance.workers
        status.handoff = instance.handoff
        status.home = str(self.workspace.home)  # started here: its console and readiness files are in this workspace
        status.ready_offset = None

    def _became_ready(self, deployment: Deployment, unit: Unit, instance: Instance, now: float) -> None:
        status = deployment.status
        status.state = HEALTHY
        status.error = None
        status.ready_offset = _size(instance.console)
        unit.healthy_since = now
        log.info("service %s is Healthy (pid %d, generation %d)", deployment.name, instance.pid, instance.generation)

    def _watch_current(self, deployment: Deployment, unit: Unit, now: float) -> None:
        current = unit.current
        if current is None or current.alive():
            return
        unit.current = None
        self._ended(deployment, unit, current)
        status = deployment.status
        stable = unit.healthy_since is not None and current.ready and now - unit.healthy_since >= STABLE_S
        status.restarts = 1 if stable else status.restarts + 1
        unit.healthy_since = None
        reason, tail = self._why(deployment, current, unit)
        if status.restarts > self.settings.service_max_restarts:
            self._failed(deployment, unit, "CrashLoopBackOff",
                         f"the service ended {status.restarts} times in a row; the last time: {reason}", tail)
            return
        status.state = UNHEALTHY
        status.error = {"code": "ServiceCrashed", "message": f"the service ended: {reason}; restarting",
                        "details": [{"code": "ConsoleTail", "message": "\n".join(tail)}]}
        unit.next_start = now + self.settings.service_restart_backoff_s * 2 ** (status.restarts - 1)
        log.warning("service %s ended (%s); restart %d in %.1fs", deployment.name, reason, status.restarts,
                    unit.next_start - now)

    def _watch_successor(self, deployment: Deployment, unit: Unit, now: float) -> None:
        successor = unit.successor
        if successor is None:
            return
        status = deployment.status
        if not successor.alive():
            unit.successor = None
            self._ended(deployment, unit, successor)
            unit.successor_crashes += 1
            reason, tail = self._why(deployment, successor, unit)
            if unit.successor_crashes > self.settings.service_max_restarts:
                unit.failed_generation = successor.generation
                serving = unit.current is not None and unit.current.generation
                self._failed(deployment, unit, "UpdateFailed",
                             f"generation {successor.generation} did not start ({reason}); generation {serving} "
                             "keeps serving", tail)
            else:
                unit.next_start = now + self.settings.service_restart_backoff_s * 2 ** (unit.successor_crashes - 1)
            return
        if successor.is_ready():
            old, unit.current, unit.successor = unit.current, successor, None
            unit.successor_crashes = 0
            self._serving(deployment, successor)
            status.restarts = 0
            if old is not None:  # Healthy once the old one no longer accepts (see _handed_over)
                old.stop()
                unit.draining.append(old)
            else:
                self._became_ready(deployment, unit, successor, now)
        elif now - successor.launched_at > self.settings.service_start_timeout_s:
            unit.timed_out.add(successor.launch)
            successor.kill()

    def _handed_over(self, deployment: Deployment, unit: Unit) -> bool:
        """Whether the port is the serving process's alone: no draining process still accepts on it
        (so a request sent once the service is Healthy reaches the new settings, a new key included)."""
        port = deployment.status.port
        return port is None or not any(i.alive() and i.accepting(port) for i in unit.draining)

    def _failed(self, deployment: Deployment, unit: Unit, code: str, message: str, tail: list[str]) -> None:
        status = deployment.status
        status.state = FAILED
        status.error = {"code": code, "message": message,
                        "details": [{"code": "ConsoleTail", "message": "\n".join(tail)}] if tail else []}
        log.error("service %s failed: %s", deployment.name, message)
        if unit.current is None and unit.successor is None and unit.sock is not None:
            unit.sock.close()  # nothing will accept: refuse connections rather than hold them
            unit.sock = None

    def _why(self, deployment: Deployment, instance: Instance, unit: Unit) -> tuple[str, list[str]]:
        """Why ``instance`` ended, in one line, and the last lines of its console."""
        tail = _tail(instance.console, TAIL_LINES)
        if instance.launch in unit.timed_out:
            return f"it did not become ready within {self.settings.service_start_timeout_s:g}s", tail
        code = instance.exit_code
        said = next((line for line in reversed(tail) if line.startswith(("error: ", "scorewatch: "))
                     and not line.startswith("scorewatch: starting ")), "")
        how = "it ended" if code is None else (f"killed by signal {-code}" if code < 0 else f"exit code {code}")
        return f"{how}{': ' + said if said else ''}", tail

    def _ended(self, deployment: Deployment, unit: Unit, instance: Instance) -> None:
        instance.reap_group()  # workers a crashed supervisor process left behind
        unit.ended.append(instance)

    def _drain(self, unit: Unit, now: float) -> None:
        for instance in list(unit.draining):
            if not instance.alive():
                unit.draining.remove(instance)
                instance.reap_group()
                unit.ended.append(instance)
            elif instance.stopping_since is not None and now - instance.stopping_since > self._grace():
                instance.kill()

    def _grace(self) -> float:
        return self.settings.graceful_timeout_s + 5.0

    def _remove(self, deployment: Deployment, unit: Unit, now: float) -> None:
        """Stop every process of a deleted service; once they are gone and their consoles stored, forget it."""
        running = []
        for instance in _live(unit):
            if instance.alive():
                instance.stop()
                if instance.stopping_since is not None and now - instance.stopping_since > self._grace():
                    instance.kill()
                running.append(instance)
            else:
                self._ended(deployment, unit, instance)
        unit.current = unit.successor = None
        unit.draining = running
        if running:
            return
        self._ship(deployment)
        if not all(self.consoles.shipped(deployment, i.launch, i.console) for i in unit.ended):
            return
        if unit.sock is not None:
            unit.sock.close()
        if deployment.status.port is not None:
            for leftover in self.workspace.services_dir.glob(f"{deployment.name}-{deployment.status.port}.*"):
                leftover.unlink(missing_ok=True)
        shutil.rmtree(store.service_dir(self.workspace, deployment.name), ignore_errors=True)
        self.service_keys.delete(deployment.name)
        self.records.delete(deployment.name)
        self.consoles.forget(deployment)
        del self.units[deployment.name]
        log.info("service %s deleted", deployment.name)

    def _ship(self, deployment: Deployment) -> None:
        """Store the consoles of the service's processes, and of those that ended (then drop those files)."""
        unit = self.units.get(deployment.name)
        if unit is None:
            return
        try:
            for instance in _live(unit):
                self.consoles.ship(deployment, instance.launch, instance.console, instance.pid)
            for instance in list(unit.ended):
                path = instance.console
                self.consoles.ship(deployment, instance.launch, path, instance.pid, final=True)
                if self.consoles.shipped(deployment, instance.launch, path) and not deployment.deleting:
                    path.unlink(missing_ok=True)
                    shutil.rmtree(instance.ready_dir, ignore_errors=True)
                    unit.ended.remove(instance)
        except Exception as exc:  # the hub cannot take them now (overloaded, stopping): the next round tries
            log.warning("could not store the console of service %s yet: %s", deployment.name, exc)

    def _clean(self, deployment: Deployment, unit: Unit) -> None:
        """Drop the snapshots of generations nothing runs any more."""
        running = {i.generation for i in _live(unit)} | {deployment.spec.generation}
        root = store.service_dir(self.workspace, deployment.name) / "app"
        for snapshot in root.iterdir() if root.is_dir() else ():
            if snapshot.name.isdigit() and int(snapshot.name) not in running:
                shutil.rmtree(snapshot, ignore_errors=True)


def _live(unit: Unit) -> Iterable[Instance]:
    return [i for i in (unit.current, unit.successor, *unit.draining) if i is not None]


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]
