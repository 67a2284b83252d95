"""Switching telemetry at run time, without a restart: monitoring, model data, sampling.

The state lives in a small JSON file in the workspace (``services/<service>-<port>.telemetry.json``)
shared by all worker processes of a service. Each worker re-reads it when its modification time
changes, checked every 250 ms by the telemetry worker thread, so a change reaches every worker well
within a second; the request path only reads the cached state.

The file remembers the settings it was made from: a service restarted with the same flags keeps the
state it was switched to at run time; restarted with different flags, it starts from the flags.

Each change bumps the file's ``revision``. A worker that has applied a revision (and, for monitoring
switched on, started recording) says so in ``services/<service>-<port>.telemetry.<pid>.ack.json``;
:func:`acknowledgements` reads them, so whoever switched can wait until every worker has.

``/control/telemetry`` (GET to read, POST to change) is the route; it needs ``Authorization: Bearer
<key>`` with one of the service's keys, or ``control_key`` when set, or else the key in
``services/<service>-<port>.control-key`` (created, mode 0600, on first start).

Live mode: while someone watches the studio's live metrics, the hub keeps a *lease* in
``services/<service>-<port>.live.json`` (``{"until": <unix time>}``, renewed every few seconds, ended
when the last viewer leaves). The same poll reads it; while it holds, the service sends its telemetry
at least every :data:`LIVE_INTERVAL_S` instead of every ``exporter_interval_ms``, so a request reaches
the live view well within a second. A lease that is not renewed (the hub stopped) simply runs out.
It is a separate file because the hub writes it and the service writes the state file: neither
rewrites what the other wrote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scorewatch.errors import BadRequest, Unauthorized
from scorewatch.files import locked
from scorewatch.http import error_response

ROUTE = "/control/telemetry"
STATE_SUFFIX = ".telemetry.json"
LIVE_SUFFIX = ".live.json"
LIVE_INTERVAL_S = 0.1  # the longest telemetry waits in a service while a live lease holds


def state_path(services_dir: Path, stem: str) -> Path:
    """The state file of the service ``stem`` (``<service>-<port>``)."""
    return services_dir / f"{stem}{STATE_SUFFIX}"


def live_path(services_dir: Path, stem: str) -> Path:
    """The live lease file of the service ``stem``."""
    return services_dir / f"{stem}{LIVE_SUFFIX}"


def service_stems(services_dir: Path) -> list[str]:
    """The services (``<service>-<port>``) that have a state file in ``services_dir``: every
    monitored service that ran in the workspace."""
    return sorted(p.name.removesuffix(STATE_SUFFIX) for p in services_dir.glob(f"*{STATE_SUFFIX}"))


def write_live_lease(path: Path, until: float) -> None:
    """Hold (``until`` in the future, as ``time.time()``) or end (``until`` 0) a service's live lease."""
    _write(path, {"until": until})


@dataclass(frozen=True)
class TelemetryState:
    monitoring: bool = True
    model_data: bool = True
    sampling_percentage: float = 100.0

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: TelemetryState | None = None) -> TelemetryState:
        """Apply ``data`` (our names or the Azure SDK's) on top of ``base``; BadRequest when invalid."""
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        names = {"monitoring": "monitoring", "enable_app_insights": "monitoring", "model_data": "model_data",
                 "collect_model_data": "model_data", "sampling_percentage": "sampling_percentage"}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(unknown)}; known: {', '.join(names)}")
        changes: dict[str, Any] = {}
        for key, value in data.items():
            field = names[key]
            if field == "sampling_percentage":
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
                    raise BadRequest("sampling_percentage must be a number from 0 to 100")
                changes[field] = float(value)
            else:
                if not isinstance(value, bool):
                    raise BadRequest(f"{key} must be true or false")
                changes[field] = value
        return dataclasses.replace(base or cls(), **changes)


class Control:
    """The shared state file of one service, and its route."""

    def __init__(self, path: Path, initial: TelemetryState, *, key_digests: list[str] | None = None,
                 key_file: Path | None = None, poll_s: float = 0.25, lease_path: Path | None = None) -> None:
        self.path = path
        self.poll_s = poll_s
        self.state = initial
        self.lease_path = lease_path
        self.live = False  # whether a live lease holds (see the module docstring)
        self._live_until = 0.0
        self._lease_mtime_ns = 0
        self.revision = 0
        self._mtime_ns = -1
        self._next_poll = 0.0
        self._digests = [bytes.fromhex(d) for d in key_digests or []]
        if not self._digests and key_file is not None:
            self._digests = [hashlib.sha256(_key_from_file(key_file).encode()).digest()]
        path.parent.mkdir(parents=True, exist_ok=True)
        base = dataclasses.asdict(initial)
        with locked(path):
            stored = _read(path)
            if stored is None or stored.get("base") != base:
                _write(path, {"base": base, "state": base, "revision": _revision(stored) + 1})
        self.poll(force=True)

    # -- state -------------------------------------------------------------------------------------
    def poll(self, force: bool = False) -> TelemetryState:
        """Re-read the file if it changed (at most every ``poll_s`` unless forced)."""
        now = time.monotonic()
        if not force and now < self._next_poll:
            return self.state
        self._next_poll = now + self.poll_s
        if self.lease_path is not None:
            self._poll_lease()
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return self.state
        if mtime != self._mtime_ns:
            stored = _read(self.path)
            if stored is not None:
                with contextlib.suppress(BadRequest, TypeError):
                    self.state = TelemetryState.from_dict(stored.get("state") or {}, TelemetryState())
                    self.revision = _revision(stored)
                self._mtime_ns = mtime
        return self.state

    def _poll_lease(self) -> None:
        assert self.lease_path is not None
        try:
            mtime = self.lease_path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        if mtime != self._lease_mtime_ns:
            self._lease_mtime_ns = mtime
            self._live_until = 0.0
            if mtime:
                with contextlib.suppress(FileNotFoundError, KeyError, TypeError, ValueError):  # JSONDecodeError too
                    self._live_until = float(orjson.loads(self.lease_path.read_bytes())["until"])
        self.live = time.time() < self._live_until

    def update(self, changes: dict[str, Any]) -> TelemetryState:
        """Change the state for every worker of the service; returns the new state."""
        self.state, self.revision = switch(self.path, changes)
        return self.state

    def acknowledge(self, active: bool) -> None:
        """Say that this worker applied :attr:`revision` (``active``: it records telemetry now)."""
        _write(ack_path(self.path, os.getpid()), {"pid": os.getpid(), "revision": self.revision, "active": active})

    def withdraw(self) -> None:
        """This worker stops: its acknowledgement goes."""
        ack_path(self.path, os.getpid()).unlink(missing_ok=True)

    # -- route -------------------------------------------------------------------------------------
    def authorized(self, authorization: str | None) -> bool:
        scheme, _, key = (authorization or "").partition(" ")
        given = hashlib.sha256(key.strip().encode()).digest()
        ok = False
        for expected in self._digests:  # every key compared every time: constant time
            ok |= hmac.compare_digest(given, expected)
        return ok and scheme.lower() == "bearer"

    async def endpoint(self, request: Request) -> Response:
        try:
            if not self.authorized(request.headers.get("authorization")):
                raise Unauthorized("a valid 'Authorization: Bearer <key>' header is required")
            if request.method == "POST":
                try:
                    body = orjson.loads(await request.body())
                except orjson.JSONDecodeError as exc:
                    raise BadRequest(f"the body is not valid JSON: {exc}") from None
                state = self.update(body)
            else:
                state = self.poll(force=True)
        except Exception as exc:
            return error_response(exc)
        return JSONResponse(describe(state, self.revision, self.path))

    def routes(self) -> list[Route]:
        return [Route(ROUTE, self.endpoint, methods=["GET", "POST"])]


def switch(path: Path, changes: dict[str, Any]) -> tuple[TelemetryState, int]:
    """Change the state in the file at ``path`` for every worker of its service (the route and the
    hub's deployments both call this); returns the new state and its revision. BadRequest when invalid."""
    with locked(path):
        stored = _read(path) or {}
        current, revision = read(path)
        state = TelemetryState.from_dict(changes, current)
        _write(path, {"base": stored.get("base"), "state": dataclasses.asdict(state), "revision": revision + 1})
    return state, revision + 1


def read(path: Path) -> tuple[TelemetryState, int]:
    """The state in the file at ``path`` and its revision (the defaults and 0 when there is none)."""
    stored = _read(path) or {}
    state = TelemetryState()
    with contextlib.suppress(BadRequest, TypeError):
        state = TelemetryState.from_dict(stored.get("state") or {}, state)
    return state, _revision(stored)


def acknowledgements(path: Path) -> dict[int, int]:
    """The revision each live worker of the service whose state file is ``path`` has applied, by pid
    (acknowledgements of workers that are gone are removed)."""
    found: dict[int, int] = {}
    prefix = path.name.removesuffix(".json") + "."
    for ack in path.parent.glob(f"{glob.escape(prefix)}*.ack.json"):
        pid = ack.name[len(prefix):-len(".ack.json")]
        if not pid.isdigit():
            continue
        if not psutil.pid_exists(int(pid)):
            ack.unlink(missing_ok=True)
            continue
        found[int(pid)] = _revision(_read(ack))
    return found


def describe(state: TelemetryState, revision: int, path: Path) -> dict[str, Any]:
    """What the route answers: the state, its revision, and the revision each worker has applied."""
    return {**dataclasses.asdict(state), "revision": revision,
            "workers": {str(pid): applied for pid, applied in sorted(acknowledgements(path).items())}}


def ack_path(path: Path, pid: int) -> Path:
    """Where worker ``pid`` acknowledges the revisions of the state file ``path``."""
    return path.with_name(f"{path.name.removesuffix('.json')}.{pid}.ack.json")


def _revision(stored: dict[str, Any] | None) -> int:
    value = (stored or {}).get("revision")
    return value if isinstance(value, int) else 0


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(orjson.dumps(data))
    os.replace(tmp, path)


def _key_from_file(path: Path) -> str:
    """The control key in ``path``, created (mode 0600, exclusively: workers race) when absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker is writing it right now
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.01)
        return path.read_text().strip()
    key = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
