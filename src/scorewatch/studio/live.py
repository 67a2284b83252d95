"""Live metrics: telemetry as it arrives, pushed to the browser over Server-Sent Events.

In the spirit of Application Insights' Live Metrics (QuickPulse): nothing is stored and nothing is
computed while no one watches.

- While at least one live page is open, :class:`LiveHub` taps ingest in memory (an entry in
  ``Ingestor.taps``, removed when the last viewer leaves): every item a request to the hub accepted
  is counted for the viewers whose applications (and service/instance filter) it belongs to, and
  failed requests and exceptions go to their feed. The store is not read.
- While someone watches, it also holds the services' *live leases* (``<home>/services/<service>-
  <port>.live.json``, see :mod:`scorewatch.telemetry.control`), so that the services send their
  telemetry at least every 100 ms instead of every second; the lease ends with the last viewer.
- Each viewer's stream sends one event every :data:`TICK_S` with what arrived meanwhile, and once a
  second the CPU and memory of each service process (:mod:`scorewatch.studio.processes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from scorewatch.studio.processes import ProcessSampler, ServiceProcess, service_processes
from scorewatch.telemetry.control import live_path, service_stems, write_live_lease
from scorewatch.workspace import Workspace

log = logging.getLogger("scorewatch.studio")

TICK_S = 0.25          # a viewer's stream sends what arrived at least this often
PROCESS_EVERY_S = 1.0  # how often the service processes are measured
LEASE_S = 15.0         # how far ahead a live lease holds ...
RENEW_S = 5.0          # ... renewed this often while someone watches
FEED_PER_TICK = 20     # failed requests and exceptions sent per tick, at most
MAX_VIEWERS = 32


class Accepted(Protocol):
    """What the tap reads of an accepted request (``scorewatch.ingest.track.Accepted``)."""

    lines: list[Any]
    base_types: list[str]
    apps: list[Any]


class Tappable(Protocol):
    """Where the tap goes (``scorewatch.ingest.pipeline.Ingestor``): called with each accepted request."""

    @property
    def taps(self) -> list[Any]: ...


# -- the envelope fields live metrics read (everything else is skipped by the decoder) ----------
class _Base(msgspec.Struct, gc=False):
    name: Any = None
    success: Any = None
    duration: Any = None
    responseCode: Any = None
    resultCode: Any = None
    target: Any = None
    exceptions: Any = None


class _Data(msgspec.Struct, gc=False):
    baseType: Any = None
    baseData: _Base = msgspec.field(default_factory=_Base)


class _Envelope(msgspec.Struct, gc=False):
    time: Any = None
    tags: Any = None
    data: _Data = msgspec.field(default_factory=_Data)


_DECODE = msgspec.json.Decoder(_Envelope).decode
_WATCHED = frozenset(("RequestData", "RemoteDependencyData", "ExceptionData"))


def duration_ms(value: Any) -> float:
    """An envelope's duration (``d.hh:mm:ss.fffffff``, ``hh:mm:ss.fff`` or milliseconds) in ms; 0 when unreadable."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0.0
    if not isinstance(value, str):
        return float(value)
    try:
        head, colon, rest = value.strip().partition(":")
        if not colon:
            return float(head)
        days, _, hours = head.rpartition(".")
        minutes, _, seconds = rest.partition(":")
        return (int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * 1000
    except ValueError:
        return 0.0


def _success(value: Any, code: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    code = str(code or "")
    return not (code.isdigit() and int(code) >= 400)


def _text(value: Any, limit: int = 300) -> str:
    return value[:limit] if isinstance(value, str) else ""


@dataclass
class Viewer:
    """One open live page: what it watches and what arrived since its last event."""

    app_ids: frozenset[str]
    service: str = ""
    instance: str = ""
    requests: int = 0
    failed: int = 0
    duration_sum: float = 0.0
    dependencies: int = 0
    dependency_failed: int = 0
    dependency_duration_sum: float = 0.0
    exceptions: int = 0
    feed: list[dict[str, Any]] = field(default_factory=list)

    def wants(self, role: str, instance: str) -> bool:
        return (not self.service or role == self.service) and (not self.instance or instance == self.instance)

    def add(self, kind: str, env: _Envelope, app_name: str) -> None:
        base = env.data.baseData
        tags = env.tags if isinstance(env.tags, dict) else {}
        common = {"time": _text(env.time, 40), "operation_Id": _text(tags.get("ai.operation.id"), 200),
                  "role": _text(tags.get("ai.cloud.role"), 200), "app": app_name}
        if kind == "RequestData":
            ms = duration_ms(base.duration)
            self.requests += 1
            self.duration_sum += ms
            if not _success(base.success, base.responseCode):
                self.failed += 1
                self._feed({"kind": "request", "name": _text(base.name), "resultCode": _text(str(base.responseCode)),
                            "duration_ms": round(ms, 1), **common})
        elif kind == "RemoteDependencyData":
            self.dependencies += 1
            self.dependency_duration_sum += duration_ms(base.duration)
            if not _success(base.success, base.resultCode):
                self.dependency_failed += 1
        else:
            self.exceptions += 1
            first = base.exceptions[0] if isinstance(base.exceptions, list) and base.exceptions else {}
            first = first if isinstance(first, dict) else {}
            self._feed({"kind": "exception", "type": _text(first.get("typeName")),
                        "message": _text(first.get("message")), **common})

    def _feed(self, entry: dict[str, Any]) -> None:
        if len(self.feed) < FEED_PER_TICK:
            self.feed.append(entry)

    def take(self) -> dict[str, Any]:
        """What arrived since the last call, as one event; the counters start again from zero."""
        event = {"requests": self.requests, "failed": self.failed,
                 "avg_duration_ms": round(self.duration_sum / self.requests, 2) if self.requests else None,
                 "dependencies": self.dependencies, "dependency_failed": self.dependency_failed,
                 "avg_dependency_ms": round(self.dependency_duration_sum / self.dependencies, 2)
                 if self.dependencies else None,
                 "exceptions": self.exceptions, "feed": self.feed}
        self.requests = self.failed = self.dependencies = self.dependency_failed = self.exceptions = 0
        self.duration_sum = self.dependency_duration_sum = 0.0
        self.feed = []
        return event


class EventStream(Response):
    """A ``text/event-stream`` response: the viewer watches from the response's start until the
    client goes away (``http.disconnect``, or a send that fails) or the server stops the request, and
    leaves then, whatever ended it."""

    media_type = "text/event-stream"

    def __init__(self, live: LiveHub, app_ids: frozenset[str], service: str, instance: str) -> None:
        super().__init__(headers={"cache-control": "no-store", "x-accel-buffering": "no"})
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]  # it streams
        self.live, self.app_ids, self.service, self.instance = live, app_ids, service, instance

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        viewer = self.live.watch(self.app_ids, self.service, self.instance)

        async def stream() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async with contextlib.aclosing(self.live.events(viewer)) as events:
                async for chunk in events:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})

        async def until_disconnected() -> None:  # uvicorn's send does not fail once the client is gone
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.ensure_future(stream()), asyncio.ensure_future(until_disconnected())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            self.live.leave(viewer)
        for result in results:  # a send that failed because the client left is no error
            if isinstance(result, BaseException) and not isinstance(result, OSError | asyncio.CancelledError):
                raise result


class LiveHub:
    """The live viewers of one hub, the ingest tap that feeds them, and the services' leases."""

    def __init__(self, workspace: Workspace, ingestor: Tappable, *, max_viewers: int = MAX_VIEWERS,
                 processes: Callable[[], list[ServiceProcess]] | None = None) -> None:
        self.workspace = workspace
        self.ingestor = ingestor
        self.find_processes = processes or (lambda: service_processes(workspace))
        self.max_viewers = max_viewers
        self.viewers: list[Viewer] = []
        self.sampler = ProcessSampler()
        self._sampling = threading.Lock()  # streams and live.json sample from worker threads at once
        self._samples: tuple[float, list[dict[str, Any]]] = (0.0, [])
        self._changed: asyncio.Event | None = None
        self._leases: asyncio.Task[None] | None = None

    # -- viewers ---------------------------------------------------------------------------------
    def watch(self, app_ids: frozenset[str], service: str = "", instance: str = "") -> Viewer:
        viewer = Viewer(app_ids, service, instance)
        if not self.viewers:
            self.ingestor.taps.append(self.tap)
        self.viewers.append(viewer)
        self._wake_leases()
        return viewer

    def leave(self, viewer: Viewer) -> None:
        with contextlib.suppress(ValueError):
            self.viewers.remove(viewer)
        if not self.viewers:
            with contextlib.suppress(ValueError):
                self.ingestor.taps.remove(self.tap)
        self._wake_leases()

    def tap(self, accepted: Accepted) -> None:
        """Count ``accepted``'s items for the viewers they belong to (on the event loop)."""
        viewers = self.viewers
        wanted = frozenset().union(*(v.app_ids for v in viewers))
        for line, base_type, app in zip(accepted.lines, accepted.base_types, accepted.apps, strict=False):
            if base_type not in _WATCHED or app.app_id not in wanted:
                continue
            try:
                env = _DECODE(line)
            except (msgspec.DecodeError, TypeError):
                continue
            tags = env.tags if isinstance(env.tags, dict) else {}
            role, instance = str(tags.get("ai.cloud.role", "")), str(tags.get("ai.cloud.roleInstance", ""))
            for viewer in viewers:
                if app.app_id in viewer.app_ids and viewer.wants(role, instance):
                    viewer.add(base_type, env, app.name)

    def stream(self, app_ids: frozenset[str], service: str = "", instance: str = "") -> EventStream:
        """The response that streams live metrics of ``app_ids`` to one viewer (Server-Sent Events)."""
        return EventStream(self, app_ids, service, instance)

    async def events(self, viewer: Viewer) -> AsyncGenerator[bytes, None]:
        """The viewer's events: one every ``TICK_S``, forever (the caller stops when the client goes)."""
        yield b"retry: 1000\n\n"
        next_processes = 0.0
        while True:
            event = viewer.take()
            event["t"] = round(time.time() * 1000)
            if time.monotonic() >= next_processes:
                next_processes = time.monotonic() + PROCESS_EVERY_S
                event["processes"] = await asyncio.to_thread(self.processes, viewer.app_ids, viewer.service)
            yield b"data: " + orjson.dumps(event) + b"\n\n"
            await asyncio.sleep(TICK_S)

    def processes(self, app_ids: frozenset[str], service: str = "") -> list[dict[str, Any]]:
        """CPU and memory of each service process (measured at most once a second for all viewers):
        those reporting to ``app_ids``, and those whose application is not known."""
        with self._sampling:
            taken, samples = self._samples
            if time.monotonic() - taken >= PROCESS_EVERY_S * 0.9:
                samples = self.sampler.sample(self.find_processes())
                self._samples = (time.monotonic(), samples)
        return [s for s in samples if (s["app_id"] is None or s["app_id"] in app_ids)
                and (not service or s["service"].rpartition("-")[0] == service)]

    # -- leases ----------------------------------------------------------------------------------
    def _wake_leases(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
            self._leases = asyncio.get_running_loop().create_task(self._hold_leases(self._changed))
        self._changed.set()

    async def _hold_leases(self, changed: asyncio.Event) -> None:
        """One writer of the leases: held (renewed) while someone watches, ended once when no one does."""
        holding = False
        while True:
            changed.clear()
            watched = bool(self.viewers)
            if watched or holding:
                try:
                    await asyncio.to_thread(self.write_leases, time.time() + LEASE_S if watched else 0.0)
                except OSError as exc:
                    log.warning("could not write the services' live leases: %s", exc)
                holding = watched
            if watched:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), RENEW_S)
            else:
                await changed.wait()

    def write_leases(self, until: float) -> None:
        services = self.workspace.services_dir
        for stem in service_stems(services):
            write_live_lease(live_path(services, stem), until)
