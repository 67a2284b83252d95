"""The hub: one process that owns the workspace's store and takes telemetry from anyone with a key.

Routes: ``POST /v2/track`` and ``/v2.1/track`` (Application Insights), ``POST /v1/traces``,
``/v1/logs``, ``/v1/metrics`` (OTLP/HTTP), ``GET /health``, ``GET /metrics`` (Prometheus), the
query API from :mod:`scorewatch.kql.api` (``/v1/apps/{appId}/query``), and the control API from
:mod:`scorewatch.deploy.api` (``/v1/services``, ``/v1/models``, ``/v1/computes``), whose supervisor
runs the workspace's deployments while the hub runs, and the studio from :mod:`scorewatch.studio`
(``/studio``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from scorewatch.apps import Application, Registry
from scorewatch.deploy import store as deploy_store
from scorewatch.deploy.api import AdminKeys, ControlAPI
from scorewatch.deploy.console import Consoles
from scorewatch.deploy.supervisor import Supervisor
from scorewatch.documents import Documents, documents_for
from scorewatch.errors import BadRequest, Forbidden, PayloadTooLarge, TooManyRequests, Unauthorized
from scorewatch.export.service import ExportService
from scorewatch.http import EXCEPTION_HANDLERS
from scorewatch.ingest import otlp
from scorewatch.ingest.metrics import IngestMetrics
from scorewatch.ingest.pipeline import Ingestor
from scorewatch.ingest.quarantine import Quarantine, quarantine_dir
from scorewatch.ingest.track import Accepted, decode_body, parse_track
from scorewatch.ingest.wal import WriteAheadLog
from scorewatch.kql.api import query_routes
from scorewatch.kql.compiler import compile_query
from scorewatch.settings import Settings
from scorewatch.store.backends import open_store, store_spec
from scorewatch.store.base import Store
from scorewatch.studio.app import studio_routes
from scorewatch.studio.services import Deployments
from scorewatch.workspace import Workspace

log = logging.getLogger("scorewatch.hub")

IKEY_HEADER = "x-instrumentation-key"
MAX_BODY = 32 * 1024 * 1024              # bytes read from one request (as sent, usually gzip)
MAX_DECODED = 128 * 1024 * 1024          # bytes after gzip
INFLIGHT_BODY_BYTES = 256 * 1024 * 1024  # bodies being read at once, all connections together
REGISTRY_POLL_S = 1.0


@dataclass
class Hub:
    """Everything the hub process holds; built by :func:`open_hub`, served by :func:`create_app`."""

    workspace: Workspace
    settings: Settings
    store: Store
    registry: Registry
    ingestor: Ingestor
    metrics: IngestMetrics
    exports: ExportService
    documents: Documents  # the shared state: the workspace's files, or the shared store's (documents.py)
    loop: asyncio.AbstractEventLoop | None = None  # the event loop serving the hub, once it runs
    deployments: Deployments | None = None  # the studio's Services page, once the control plane is built

    def apply_retention(self) -> int:
        """Delete rows past their application's retention, except those an export rule still needs
        (with replicas, only the one that runs the export does it)."""
        if not self.exports.leading:
            return 0
        deleted = 0
        for app in self.registry.list():
            keep_after = self.exports.retention_floor(app.app_id, app.retention_days)
            n = self.store.apply_retention(app.app_id, app.retention_days, keep_after=keep_after)
            self.metrics.retention_deleted[app.name] = self.metrics.retention_deleted.get(app.name, 0) + n
            deleted += n
        return deleted

    def close(self) -> None:
        self.exports.stop()
        self.ingestor.stop()
        self.store.close()


def open_hub(workspace: Workspace, settings: Settings) -> Hub:
    """Open the store and the write-ahead log, replay what the store misses, start the threads."""
    workspace.ensure()
    workspace.store_dir.chmod(0o700)
    store = open_store(workspace, settings)
    workspace.update_config(store=store_spec(workspace, settings, recorded=False).describe())
    documents = documents_for(workspace, settings, store)
    registry = Registry(documents, default_retention_days=settings.retention_days)
    registry.refresh()
    metrics = IngestMetrics()
    ingestor = Ingestor(store, WriteAheadLog(workspace.store_dir / "wal"), metrics,
                        Quarantine(quarantine_dir(workspace)),
                        queue_items=settings.ingest_queue_items, queue_bytes=settings.ingest_queue_bytes,
                        batch_items=settings.ingest_batch_items,
                        linger_s=settings.ingest_linger_ms / 1000)
    replayed = ingestor.recover()
    if replayed:
        log.warning("replayed %d items from the write-ahead log", replayed)
    ingestor.start()
    return Hub(workspace, settings, store, registry, ingestor, metrics, ExportService(store, documents, settings),
               documents)


class BodyBudget:
    """Bytes of request bodies being read at once, across connections: past ``limit`` new bytes are
    refused with 429, so many slow or large uploads cannot exhaust memory."""

    def __init__(self, limit: int = INFLIGHT_BODY_BYTES) -> None:
        self.limit = limit
        self.used = 0

    @contextlib.asynccontextmanager
    async def read(self, request: Request) -> AsyncIterator[bytes]:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY:
            raise PayloadTooLarge(f"request body larger than {MAX_BODY} bytes")
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                self.used += len(chunk)
                if size > MAX_BODY:
                    raise PayloadTooLarge(f"request body larger than {MAX_BODY} bytes")
                if self.used > self.limit:
                    raise TooManyRequests("the hub is reading too many request bodies at once", retry_after=1)
                chunks.append(chunk)
            yield b"".join(chunks)
        finally:
            self.used -= size


def create_app(hub: Hub) -> Starlette:
    ingestor, registry, metrics = hub.ingestor, hub.registry, hub.metrics
    bodies = BodyBudget()

    async def track(request: Request) -> Response:
        ingestor.check_capacity()  # cheap refusal under a flood, before reading the body
        async with bodies.read(request) as body:
            return await _track(request, body)

    async def _track(request: Request, body: bytes) -> Response:
        data = decode_body(body, request.headers.get("content-encoding"), max_bytes=MAX_DECODED)
        accepted = parse_track(data, registry.by_instrumentation_key)
        accepted.body, accepted.encoding = body, request.headers.get("content-encoding")
        if not accepted.accepted:
            metrics.count("track", accepted.received, 0, accepted.refused_by_reason)
            if accepted.received == 0:
                raise BadRequest("the body holds no telemetry items")
            return JSONResponse({"itemsReceived": accepted.received, "itemsAccepted": 0,
                                 "errors": accepted.errors}, status_code=400)
        await ingestor.submit(accepted)
        metrics.count("track", accepted.received, accepted.accepted, accepted.refused_by_reason,
                      accepted.filtered)
        return Response(orjson.dumps({"itemsReceived": accepted.received, "itemsAccepted": accepted.accepted,
                                      "errors": accepted.errors}),
                        status_code=206 if accepted.errors else 200, media_type="application/json")

    def otlp_route(signal: str) -> Route:
        async def receive(request: Request) -> Response:
            ingestor.check_capacity()
            ikey = request.headers.get(IKEY_HEADER)
            if not ikey:
                raise Unauthorized(f"OTLP requests must carry the instrumentation key in {IKEY_HEADER}")
            app = registry.by_instrumentation_key(ikey)
            if app is None:
                metrics.count(f"otlp_{signal}", 0, 0, {"unknown_key": 1})
                raise Forbidden("Invalid instrumentation key")
            async with bodies.read(request) as body:
                data = decode_body(body, request.headers.get("content-encoding"), max_bytes=MAX_DECODED)
            message, as_json = otlp.parse(signal, data, request.headers.get("content-type", ""))
            envelopes = otlp.convert(signal, message, app.instrumentation_key)
            accepted = Accepted(received=len(envelopes))
            accepted.base_types = [bt for bt, _ in envelopes]
            accepted.lines = [line for _, line in envelopes]
            accepted.apps = [app] * len(envelopes)
            await ingestor.submit(accepted)
            metrics.count(f"otlp_{signal}", accepted.received, accepted.accepted, {})
            content, media_type = otlp.response(signal, as_json)
            return Response(content, media_type=media_type)

        return Route(f"/v1/{signal}", receive, methods=["POST"])

    # Which workspace this hub serves, and its process: a client tells its own hub from another's.
    identity = {"workspace": {"id": hub.workspace.read_config().get("workspace_id"),
                              "home": str(hub.workspace.home)}, "pid": os.getpid(),
                "store": hub.workspace.read_config().get("store"), "stream": getattr(hub.store, "stream", 0)}

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", **identity, "queue_items": ingestor.pending,
                             "applied_position": ingestor.applied, "store_unavailable": ingestor.unavailable,
                             "runs_export": hub.exports.leading, "runs_deployments": supervisor.leading})

    async def prometheus(request: Request) -> Response:
        text = metrics.render(queue_depth=ingestor.pending, queue_limit=ingestor.queue_items,
                              store_bytes=hub.store.size_bytes, paused=ingestor.unavailable is not None,
                              wal_corruptions=ingestor.wal.corruptions) + hub.exports.render_metrics()
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    supervisor, control = _control_plane(hub)
    hub.deployments = Deployments(control, lambda _: hub.registry.get("default").app_id)  # where services report
    routes: list[BaseRoute] = [
        Route("/v2/track", track, methods=["POST"]),
        Route("/v2.1/track", track, methods=["POST"]),
        *(otlp_route(signal) for signal in otlp.SIGNALS),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        *_query_routes(hub),
        *control.routes(),
        *studio_routes(hub),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        def poll_registry() -> None:
            if registry.refresh():  # a new application or a changed retention: apply it now
                hub.apply_retention()

        tasks = [asyncio.create_task(_every(REGISTRY_POLL_S, poll_registry)),
                 asyncio.create_task(_every(hub.settings.retention_interval_s, hub.apply_retention, now=True)),
                 asyncio.create_task(_every(REGISTRY_POLL_S, hub.exports.sync, now=True))]
        hub.loop = asyncio.get_running_loop()
        await asyncio.to_thread(supervisor.start)
        try:
            yield
        finally:
            await asyncio.to_thread(supervisor.stop)  # the services keep running: the next hub adopts them
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(hub.close)

    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)  # type: ignore[arg-type]


def _control_plane(hub: Hub) -> tuple[Supervisor, ControlAPI]:
    """The deployments' supervisor and the control API, wired to this hub's store and ingest: a
    service's console lines go through the write-ahead log like any telemetry, into the ``default``
    application the services report to."""

    def default_app() -> Application:
        return hub.registry.get("default")

    def sink(envelopes: list[bytes]) -> None:
        app = default_app()
        accepted = Accepted(received=len(envelopes), lines=envelopes, base_types=["MessageData"] * len(envelopes),
                            apps=[app] * len(envelopes))
        assert hub.loop is not None
        asyncio.run_coroutine_threadsafe(hub.ingestor.submit(accepted), hub.loop).result(60)

    def query(kql: str) -> list[list[Any]]:
        compiled = compile_query(kql, dialect=hub.store.dialect, app_id=default_app().app_id)
        return hub.store.query(compiled.sql, compiled.params, timeout_s=hub.settings.query_timeout_s).rows

    def connection_string() -> str:
        return str((hub.workspace.read_config().get("default_app") or {}).get("connection_string") or "")

    def settle() -> None:
        hub.ingestor.flush(timeout=5.0)

    consoles = Consoles(sink, query, lambda: default_app().instrumentation_key, settle)
    supervisor = Supervisor(hub.workspace, hub.settings, consoles, connection_string, documents=hub.documents)
    return supervisor, ControlAPI(supervisor, deploy_store.computes(hub.workspace, hub.documents),
                                  AdminKeys(hub.workspace, hub.documents))


def _query_routes(hub: Hub) -> list[BaseRoute]:
    return query_routes(hub.store, hub.registry.authenticate, timeout_s=hub.settings.query_timeout_s,
                        max_rows=hub.settings.query_max_rows, concurrency=hub.settings.query_concurrency)


async def _every(interval: float, func: Any, *, now: bool = False) -> None:
    if not now:
        await asyncio.sleep(interval)
    while True:
        try:
            await asyncio.to_thread(func)
        except Exception as exc:  # keep the hub up; the next round tries again
            log.error("%s failed: %s", getattr(func, "__name__", func), exc)
        await asyncio.sleep(interval)

