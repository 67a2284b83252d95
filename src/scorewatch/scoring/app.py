"""The scoring service of one worker: its lifecycle and the routes around ``/score``.

One app per worker process (``/score`` itself is :mod:`scorewatch.scoring.endpoint`). At startup (lifespan) it loads the entry script and runs ``init()`` in a
thread, so ``/health/live`` answers at once and ``/health/ready`` turns 200 when ``init()`` returned;
``/score`` calls that arrive earlier wait for it. ``run()`` executes on :mod:`scorewatch.scoring.runner`
threads, ``scoring_concurrency`` at a time (1 by default, as Azure's sync gunicorn workers), under
``scoring_timeout_ms`` (504 past it, and the worker goes on serving).

Errors on ``/score`` are answered as Azure does, ``{"message": ...}``; so are 404 and 405.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from scorewatch.errors import AZURE_ML, ScorewatchError
from scorewatch.http import error_response
from scorewatch.scoring import compat, lifecycle, schema
from scorewatch.scoring.auth import KeyChecker
from scorewatch.scoring.compat.model import deployed_models
from scorewatch.scoring.config import ServeConfig
from scorewatch.scoring.endpoint import ScoreEndpoint
from scorewatch.scoring.entry import EntryScript
from scorewatch.scoring.metrics import ScoringMetrics
from scorewatch.scoring.monitor import Monitor, ServiceInfo, load_monitor
from scorewatch.scoring.runner import Runner
from scorewatch.scoring.tracebacks import user_error

log = logging.getLogger("scorewatch.scoring")

SHUTDOWN_FLUSH_S = 5.0
FAILURE_FILE_VAR = "SCOREWATCH_SERVE_FAILURE_FILE"


async def _error_handler(request: Request, exc: Exception) -> Response:
    return error_response(exc, AZURE_ML)


def _exit_worker(reason: str) -> None:
    """Default reaction to a failed init(): end this worker with uvicorn's startup-failure code, so a
    multi-worker supervisor stops instead of respawning it forever. The supervisor's process reads the
    reason from ``SCOREWATCH_SERVE_FAILURE_FILE`` to end with it."""
    failure_file = os.environ.get(FAILURE_FILE_VAR)
    if failure_file:
        with open(failure_file, "a") as fh:
            fh.write(reason + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(3)


class ScoringService:
    """State of one worker: the entry script, the run() pool, metrics, the monitor."""

    def __init__(self, config: ServeConfig, *, monitor: Monitor | None = None,
                 on_init_failure: Callable[[str], None] = _exit_worker) -> None:
        self.config = config
        settings = config.settings
        self.info = ServiceInfo(service_name=config.service_name, workspace_name=settings.workspace_name,
                                entry_script=str(config.entry_script),
                                model_dir=str(config.model_dir) if config.model_dir else None,
                                container_id=config.container_id,
                                models=deployed_models(config.model_dir, config.app_root or config.script_dir))
        # key_digests (telemetry): the service's keys also open the monitor's /control/telemetry route.
        self.monitor: Monitor = monitor if monitor is not None else load_monitor(
            settings, self.info, key_digests=config.key_digests)
        self.on_init_failure = on_init_failure
        self.entry: EntryScript | None = None
        self.ready = False
        self.failure: str | None = None   # why init() failed; then every call that needs it answers 503
        self._waiting = 0                 # /score calls waiting for init()
        self._ready_event: asyncio.Event | None = None
        self.metrics = ScoringMetrics()
        self.keys = KeyChecker(config.key_digests) if config.key_digests else None
        self.timeout_s = settings.scoring_timeout_ms / 1000.0
        self.max_body = settings.max_body_size
        self.queue_limit = settings.scoring_queue_limit
        # Extra threads beyond the concurrency limit host run() calls abandoned after a timeout.
        self.runner: Runner | None = None
        self._shut_down = False

    # --- lifecycle --------------------------------------------------------------------------------

    def _load_and_init(self) -> EntryScript:
        compat.install()
        entry = EntryScript.load(self.config.entry_script)
        start = time.perf_counter()
        entry.init()
        self.metrics.init_seconds = time.perf_counter() - start
        return entry

    async def _initialize(self) -> None:
        assert self._ready_event is not None
        loop = asyncio.get_running_loop()
        try:
            self.entry = await loop.run_in_executor(None, self._load_and_init)
        except asyncio.CancelledError:
            raise  # the server stops before init() returned (a signal): that is no failure of init()
        except BaseException as exc:
            script = self.config.entry_script
            log.error("init() of %s failed:\n%s", script, user_error(exc).rstrip())
            self.monitor.exception(exc, during="init")
            self.shutdown()
            reason = f"init() of {script} failed: {type(exc).__name__}: {exc}".splitlines()[0]
            self.failure = reason
            self._ready_event.set()  # the /score calls waiting for init() answer 503 now
            await self._drain_waiting()
            print(f"scorewatch: {reason}", file=sys.stderr, flush=True)
            self.on_init_failure(reason)
            return
        self.ready = True
        self._ready_event.set()
        lifecycle.mark_ready()
        log.info("%s is ready (%s run, init took %.3fs)", self.info.service_name, self.entry.kind,
                 self.metrics.init_seconds or 0.0)

    async def _drain_waiting(self, timeout_s: float = 1.0) -> None:
        """Let the calls that waited for a failed init() send their 503 before the worker ends."""
        deadline = time.monotonic() + timeout_s
        while (self._waiting or self.metrics.in_flight) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # their responses reach the socket

    def shutdown(self) -> None:
        if not self._shut_down:
            self._shut_down = True
            self.monitor.shutdown(SHUTDOWN_FLUSH_S)
            if self.runner is not None:
                self.runner.close()

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._ready_event = asyncio.Event()
        self.runner = Runner(asyncio.get_running_loop(), self.config.settings.scoring_concurrency, self.timeout_s)
        self.monitor.worker_started()
        init_task = asyncio.create_task(self._initialize())
        try:
            yield
        finally:
            if not init_task.done():
                init_task.cancel()
            self.shutdown()

    async def wait_ready(self) -> EntryScript:
        """The entry script, once init() has returned (requests that arrive earlier wait here).
        Raises a 503 error when init() failed."""
        assert self._ready_event is not None
        self._waiting += 1
        try:
            await self._ready_event.wait()
        finally:
            self._waiting -= 1
        if self.entry is None or not self.ready:
            raise ScorewatchError(self.failure or "the entry script is not loaded", status=503,
                                  code="ServiceUnavailable")
        return self.entry

    # --- other routes -----------------------------------------------------------------------------

    async def root(self, request: Request) -> Response:
        """Azure's only probe: 200 ``Healthy`` once init() has returned, never before or after a failure."""
        if self.ready:
            return PlainTextResponse("Healthy")
        return error_response(ScorewatchError(self.failure or "init() of the entry script has not returned yet",
                                              status=503, code="ServiceUnavailable"), AZURE_ML)

    async def live(self, request: Request) -> Response:
        return Response(orjson.dumps({"status": "live", "pid": os.getpid()}), media_type="application/json")

    async def health_ready(self, request: Request) -> Response:
        if self.ready:
            return Response(orjson.dumps({"status": "ready", "pid": os.getpid()}), media_type="application/json")
        status = "failed" if self.failure else "initializing"
        return Response(orjson.dumps({"status": status, "pid": os.getpid()}), 503, media_type="application/json")

    async def swagger(self, request: Request) -> Response:
        version = request.query_params.get("version", "2")
        entry = await self.wait_ready()  # a decorated run() is typed only once the script is loaded
        document = schema.swagger(entry.run, version, service_name=self.info.service_name,
                                  script_dir=self.config.script_dir, auth=self.keys is not None)
        return Response(document, media_type="application/json")

    async def metrics_route(self, request: Request) -> Response:
        if self.runner is not None:
            self.metrics.run_pending = self.runner.pending
        text = self.metrics.render() + self.monitor.metrics_text()
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    def build(self) -> Starlette:
        routes = [
            Route("/", self.root, methods=["GET"]),
            Route("/swagger.json", self.swagger, methods=["GET"]),
            Route("/health/live", self.live, methods=["GET"]),
            Route("/health/ready", self.health_ready, methods=["GET"]),
            Route("/metrics", self.metrics_route, methods=["GET"]),
            *self.monitor.routes(),
        ]
        app = Starlette(routes=routes, lifespan=self.lifespan,
                        exception_handlers={HTTPException: _error_handler, ScorewatchError: _error_handler,
                                            Exception: _error_handler})
        app.state.scoring = self
        return app


class _ScoringApp:
    """The worker's ASGI app: ``/score`` straight to its endpoint, everything else to Starlette."""

    def __init__(self, service: ScoringService) -> None:
        self.service = service
        self.starlette = service.build()
        self.score = ScoreEndpoint(service)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/score":
            await self.score(scope, receive, send)
        else:
            await self.starlette(scope, receive, send)


def create_app(config: ServeConfig, *, monitor: Monitor | None = None,
               on_init_failure: Callable[[str], None] = _exit_worker) -> Any:
    """The scoring app (ASGI) for ``config``; ``monitor`` defaults to ``load_monitor(settings, ...)``.

    ``on_init_failure(reason)`` is called when loading the script or init() fails (after the traceback
    and the reason are printed); by default it ends the worker process with exit code 3.
    """
    return _ScoringApp(ScoringService(config, monitor=monitor, on_init_failure=on_init_failure))


def configure_logging() -> None:
    """Our own log lines (run() tracebacks, readiness) to stderr, apart from the user's logging, which
    telemetry may capture: ``propagate`` is off so they never become the service's own traces."""
    logger = logging.getLogger("scorewatch")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def create_app_from_env() -> Any:
    """uvicorn factory for worker processes: configuration from ``SCOREWATCH_SERVE_CONFIG``."""
    configure_logging()
    config = ServeConfig.from_environ()
    config.prepare_process()
    return create_app(config)
