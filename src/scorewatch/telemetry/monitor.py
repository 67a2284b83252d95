"""The :class:`~scorewatch.scoring.monitor.Monitor` a monitored scoring service calls.

:class:`TelemetryMonitor` is what the scoring app sees of telemetry, for one worker process. It
owns the service's telemetry settings and its runtime switches (:mod:`scorewatch.telemetry.control`),
and, once the worker starts, the rest, each part in its own module:

- :mod:`~scorewatch.telemetry.pipeline` makes the exporter and the processor (its thread);
- :mod:`~scorewatch.telemetry.recorder` records on the request path (rows and records);
- :mod:`~scorewatch.telemetry.builder` builds envelopes on the telemetry thread;
- :mod:`~scorewatch.telemetry.capture` and :mod:`~scorewatch.telemetry.dependencies` install the
  hooks that feed the recorder (stdout/stderr, print, logging, outgoing HTTP calls).

Telemetry never imports the scoring service: the app hands it the facts of each request.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from typing import Any

from starlette.routing import BaseRoute

from scorewatch.errors import ConfigError
from scorewatch.settings import Settings
from scorewatch.telemetry import api, dependencies, native
from scorewatch.telemetry.blobs import BlobStore, Payloads
from scorewatch.telemetry.builder import EnvelopeBuilder
from scorewatch.telemetry.capture import Capture
from scorewatch.telemetry.connection import parse_connection_string
from scorewatch.telemetry.context import Operation, ServiceInfo
from scorewatch.telemetry.control import ROUTE, Control, TelemetryState, live_path, state_path
from scorewatch.telemetry.envelopes import EnvelopeFactory
from scorewatch.telemetry.exporter import Exporter
from scorewatch.telemetry.metrics import ExporterStats, render, render_native
from scorewatch.telemetry.pipeline import Pipeline, stats_path
from scorewatch.telemetry.recorder import Recorder, State
from scorewatch.telemetry.sidecar import parse_cpus
from scorewatch.telemetry.spool import Spool
from scorewatch.telemetry.templates import Templates
from scorewatch.workspace import Workspace

log = logging.getLogger("scorewatch.telemetry")


class TelemetryMonitor:
    """Records requests, model data, output, logs, exceptions and dependencies of one worker process.

    Monitoring may start switched off (``app_insights`` off, or switched off earlier through the
    control file): then nothing is recorded or built, no hook is installed and the endpoint does not
    call :meth:`request_finished` (:attr:`active` is False). A small thread watches the control file
    meanwhile; once monitoring is switched on, it starts the pipeline, installs the hooks and turns
    :attr:`active` on, and the telemetry thread watches the file from then on.
    """

    active = False  # whether the endpoint reports finished requests (see the Monitor protocol)

    def __init__(self, settings: Settings, info: ServiceInfo, *, exporter: Exporter | None = None,
                 key_digests: list[str] | None = None) -> None:
        try:
            self._setup(settings, info, exporter, key_digests)
        except OSError as exc:  # an unwritable workspace: say which, not a traceback
            raise ConfigError(f"telemetry cannot use the workspace {settings.home}: {exc}") from None

    def _setup(self, settings: Settings, info: ServiceInfo, exporter: Exporter | None,
               key_digests: list[str] | None) -> None:
        self.connection = parse_connection_string(settings.connection_string)  # checked at start
        self.exporter_cpus = parse_cpus(settings.exporter_cpus)  # checked here: a bad list stops the start
        workspace = Workspace(settings.home)
        self.settings = settings
        self.info = info
        self.stats = ExporterStats()
        self.blobs = BlobStore(workspace.blobs_dir)
        self.payloads = Payloads(settings.inline_limit, self.blobs)
        self.spool = Spool(workspace.spool_dir, settings.spool_max_bytes, self.stats)
        self.base_properties = {"Container Id": info.container_id, "Workspace Name": info.workspace_name,
                                "Service Name": info.service_name}
        self.stem = f"{info.service_name}-{settings.port}"
        self.services_dir = workspace.services_dir
        digests = list(key_digests or [])
        if settings.control_key:
            digests.append(hashlib.sha256(settings.control_key.encode()).hexdigest())
        self.control = Control(state_path(self.services_dir, self.stem),
                               TelemetryState(settings.app_insights, settings.collect_model_data,
                                              settings.sampling_percentage),
                               key_digests=digests, key_file=self.services_dir / f"{self.stem}.control-key",
                               lease_path=live_path(self.services_dir, self.stem))
        self.state = State()
        self._applied = -1  # the control file's revision this worker has acknowledged
        self._apply(self.control.state)
        self._exporter = exporter  # tests hand in theirs; else the pipeline makes it in the worker
        self.builder: EnvelopeBuilder | None = None
        self.pipeline: Pipeline | None = None
        self.recorder: Recorder | None = None
        self.capture: Capture | None = None
        self._watching: threading.Event | None = None  # set to stop the watcher thread
        self._started = threading.Lock()

    # -- state -------------------------------------------------------------------------------------
    def _apply(self, state: TelemetryState) -> None:
        self.state.capturing = state.monitoring
        self.state.model_data = state.model_data
        self.state.sampling = state.sampling_percentage

    def _tick(self) -> None:
        self._apply(self.control.poll())
        if self.pipeline is not None:
            self.pipeline.set_live(self.control.live)
        if self.control.revision != self._applied and (self.active or not self.state.capturing):
            self._acknowledge()  # (switched on: only once _start has made it so)

    def _acknowledge(self) -> None:
        self._applied = self.control.revision
        try:
            self.control.acknowledge(self.active)
        except OSError:  # the workspace went away: switching still works, only the receipt is missing
            log.warning("could not acknowledge telemetry state revision %d", self._applied, exc_info=True)

    def _watch(self) -> None:
        """While monitoring is off and nothing records: watch the control file on a small thread."""
        stop = self._watching = threading.Event()

        def watch() -> None:
            while not stop.wait(self.control.poll_s):
                self._apply(self.control.poll())
                if self.state.capturing:
                    self._start()  # the telemetry thread watches the file from now on
                    return
                if self.control.revision != self._applied:
                    self._acknowledge()

        threading.Thread(target=watch, name="scorewatch-telemetry-watch", daemon=True).start()

    def _recording(self) -> Recorder:
        """The recorder, with the pipeline behind it started (in the worker process, on first need)."""
        if self.recorder is None:
            connection, info, settings = self.connection, self.info, self.settings
            role, role_instance = info.service_name, socket.gethostname()
            templates = Templates(connection.instrumentation_key, role=role, role_instance=role_instance,
                                  base_properties=self.base_properties, models=",".join(info.models),
                                  inline_limit=settings.inline_limit, blobs=self.blobs, native=settings.native)
            self.builder = EnvelopeBuilder(EnvelopeFactory(connection.instrumentation_key, role=role,
                                                           role_instance=role_instance),
                                           templates, self.payloads, self.base_properties)
            self.pipeline = Pipeline.start(
                settings, track_url=connection.track_url, spool=self.spool, stats=self.stats, builder=self.builder,
                stats_path=stats_path(self.services_dir, self.stem), cpus=self.exporter_cpus, on_tick=self._tick,
                exporter=self._exporter)
            self.recorder = Recorder(self.pipeline.processor, self.state, self.payloads, self.base_properties,
                                     native=settings.native)
            self.capture = Capture(self.recorder)
            self.request_finished = self.recorder.request_finished  # type: ignore[method-assign]
        return self.recorder

    def _start(self) -> None:
        """Record from now on: the pipeline, the hooks, then :attr:`active` (the endpoint reads it)."""
        with self._started:
            if self.active:
                return
            recorder = self._recording()
            assert self.capture is not None
            self.capture.install()
            api.set_recorder(recorder)
            self.active = True
            dependencies.install(recorder)  # (the slowest part: it imports the instrumentations)
        self._acknowledge()

    def native_parts(self) -> dict[str, bool]:
        """Which parts run in C: ``recorder`` (in this worker), ``envelopes`` (in its exporter process)."""
        recorder = self.recorder.native if self.recorder is not None else native.worker_module(self.settings.native) is not None
        envelopes = self.builder.templates.native if self.builder is not None else \
            native.rows_module(self.settings.native) is not None
        return {"recorder": recorder, "envelopes": envelopes}

    # -- the Monitor protocol (scorewatch.scoring.monitor) -----------------------------------------
    def worker_started(self) -> None:
        if self.state.capturing:
            self._start()
        elif not self.active and self._watching is None:  # (once recording, the telemetry thread watches)
            self._acknowledge()
            self._watch()
        log.info("telemetry paths: %s; %s", native.describe("_worker", self.settings.native),
                 native.describe("_rows", self.settings.native))
        if not self.active:
            log.info("telemetry is switched off: nothing is recorded until it is switched on (%s)", ROUTE)

    def request_finished(self, operation: Operation, scope: Any, start_ts: float, duration_ms: float,
                         status_code: int, input: bytes | str, output: bytes | str | None,
                         exception: BaseException | None = None) -> None:
        # Replaced by the recorder's own once it runs (see _recording): the endpoint calls it directly.
        self._recording().request_finished(operation, scope, start_ts, duration_ms, status_code, input, output,
                                           exception)

    def exception(self, exc: BaseException, *, during: str) -> None:
        if self.active:
            self._recording().exception(exc, during=during)

    def routes(self) -> list[BaseRoute]:
        return list(self.control.routes())

    def metrics_text(self) -> str:
        snapshot = self.pipeline.snapshot() if self.pipeline is not None else self.stats.snapshot()
        labels = f'pid="{os.getpid()}"'
        return render(snapshot, labels=labels) + render_native(self.native_parts(), labels=labels)

    def shutdown(self, timeout_s: float) -> None:
        if self._watching is not None:
            self._watching.set()
        self.control.withdraw()
        api.set_recorder(None)
        dependencies.install(None)
        if self.capture is not None:
            self.capture.uninstall()
        if self.pipeline is not None:
            self.pipeline.shutdown(timeout_s)


def create_monitor(settings: Settings, info: ServiceInfo, **kwargs: Any) -> TelemetryMonitor:
    """The monitor ``scorewatch.scoring.monitor.load_monitor`` uses when a connection string is set.

    ``kwargs``: ``key_digests`` (the service's key digests, which also open the control route) and
    ``exporter`` (tests inject an :class:`~scorewatch.telemetry.exporter.InMemoryExporter`).
    """
    return TelemetryMonitor(settings, info, **kwargs)
