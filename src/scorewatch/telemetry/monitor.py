"""The real :class:`~scorewatch.scoring.monitor.Monitor`: what a monitored scoring service records.

What every request makes (the request with its model data, and each write to stdout/stderr) is one
plain tuple of values at hand, added to the :class:`BatchProcessor`'s row list (see
``telemetry/templates.py`` for the row shapes): that is all the request path pays. The processor's
thread ships each batch of rows as one marshal frame (:meth:`TelemetryMonitor.pack`) to the exporter
process, which builds their envelopes with :class:`Templates`; payloads over the inline limit move to
blobs on the thread first. The rarer kinds (exceptions, logs, dependencies, events, metrics,
collector traces) are queued as records and become serialized envelopes on the thread
(:meth:`TelemetryMonitor.build`); when exporting in-process, the thread builds everything.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from threading import get_ident
from typing import Any

import orjson
from starlette.routing import BaseRoute

from scorewatch.errors import ConfigError
from scorewatch.scoring.monitor import ServiceInfo, get_input, request_url
from scorewatch.settings import Settings
from scorewatch.telemetry import api, dependencies
from scorewatch.telemetry.blobs import BlobStore, inline_or_blob
from scorewatch.telemetry.capture import Capture
from scorewatch.telemetry.connection import parse_connection_string
from scorewatch.telemetry.context import Operation, current_operation
from scorewatch.telemetry.control import Control, TelemetryState
from scorewatch.telemetry.envelopes import (
    SEVERITY_ERROR,
    SEVERITY_INFO,
    EnvelopeFactory,
    severity_for_level,
)
from scorewatch.telemetry.exporter import AppInsightsExporter, Exporter
from scorewatch.telemetry.metrics import ExporterStats, merge, render
from scorewatch.telemetry.processor import BatchProcessor, Record
from scorewatch.telemetry.sidecar import SidecarExporter, parse_cpus
from scorewatch.telemetry.spool import Spool
from scorewatch.telemetry.templates import Templates
from scorewatch.workspace import Workspace

try:  # built from _worker.c when a C compiler was at hand at install time; optional
    from scorewatch.telemetry import _worker
except ImportError:
    _worker = None  # type: ignore[assignment]

_RECORDED = "__scorewatch_recorded__"
log = logging.getLogger("scorewatch.telemetry")


class TelemetryMonitor:
    """Records requests, model data, output, logs, exceptions and dependencies of one worker process."""

    def __init__(self, settings: Settings, info: ServiceInfo, *, exporter: Exporter | None = None,
                 key_digests: list[str] | None = None, **_: Any) -> None:
        try:
            self._setup(settings, info, exporter, key_digests)
        except OSError as exc:  # an unwritable workspace: say which, not a traceback
            raise ConfigError(f"telemetry cannot use the workspace {settings.home}: {exc}") from None

    def _setup(self, settings: Settings, info: ServiceInfo, exporter: Exporter | None,
               key_digests: list[str] | None) -> None:
        connection = parse_connection_string(settings.connection_string)
        self.exporter_cpus = parse_cpus(settings.exporter_cpus)  # checked here: a bad list stops the start
        workspace = Workspace(settings.home)
        self.settings = settings
        self.info = info
        self.inline_limit = settings.inline_limit
        self.stats = ExporterStats()
        self.blobs = BlobStore(workspace.blobs_dir)
        self.spool = Spool(workspace.spool_dir, settings.spool_max_bytes, self.stats)
        self.track_url = connection.track_url
        # With no exporter given, the real one is made in the worker process (see _start).
        self.exporter: Exporter | None = exporter
        self.factory = EnvelopeFactory(connection.instrumentation_key, role=info.service_name,
                                       role_instance=socket.gethostname())
        self.base_properties = {"Container Id": info.container_id, "Workspace Name": info.workspace_name,
                                "Service Name": info.service_name}
        self.models = ",".join(info.models)
        self.templates = Templates(connection.instrumentation_key, role=info.service_name,
                                   role_instance=self.factory.role_instance, base_properties=self.base_properties,
                                   models=self.models, inline_limit=self.inline_limit, blobs=self.blobs)
        stem = self.stem = f"{info.service_name}-{settings.port}"
        self.services_dir = workspace.services_dir
        digests = list(key_digests or [])
        if settings.control_key:
            digests.append(hashlib.sha256(settings.control_key.encode()).hexdigest())
        self.control = Control(workspace.services_dir / f"{stem}.telemetry.json",
                               TelemetryState(True, settings.collect_model_data, settings.sampling_percentage),
                               key_digests=digests, key_file=workspace.services_dir / f"{stem}.control-key")
        self._apply(self.control.state)
        self.echoing: set[int] = set()  # threads echoing a log record to the console (see capture.py)
        self.capture = Capture(self)
        self.processor: BatchProcessor | None = None
        self._names_and_urls: dict[tuple[Any, ...], tuple[str, str]] = {}
        # The Monitor protocol's request_finished: this Python method until the worker starts (see worker_started).
        self.request_finished: Callable[..., None] = self._record_request
        # Per stream: thread id -> the row of a text written there, held while its newline may follow.
        self._held: dict[str, dict[int, tuple[Any, ...]]] = {"STDOUT": {}, "STDERR": {}}

    # -- state -------------------------------------------------------------------------------------
    def _apply(self, state: TelemetryState) -> None:
        self.capturing = state.monitoring
        self.model_data = state.model_data
        self.sampling = state.sampling_percentage

    def _tick(self) -> None:
        self._apply(self.control.poll())

    def _make_exporter(self) -> tuple[Exporter, Any]:
        """The exporter and the builder the processor uses: an exporter process fed with rows, or (if
        that is off or cannot start) an in-process exporter fed with envelopes."""
        if self.exporter is not None:
            return self.exporter, self.build
        s = self.settings
        if s.exporter_process:
            config = {"track_url": self.track_url, "spool_dir": str(self.spool.directory),
                      "spool_max_bytes": s.spool_max_bytes, "retry_max_s": s.exporter_retry_max_s,
                      "batch_size": s.exporter_batch_size, "interval_s": s.exporter_interval_ms / 1000.0,
                      "stats_path": str(self.services_dir / f"{self.stem}.{os.getpid()}.exporter.json"),
                      "cpus": self.exporter_cpus,
                      "templates": self.templates.config()}
            try:
                self.exporter = SidecarExporter(config, self.stats, spool=self.spool, templates=self.templates)
                return self.exporter, self.pack
            except OSError:
                log.warning("could not start the telemetry exporter process; exporting in-process",
                            exc_info=True)
        self.exporter = AppInsightsExporter(self.track_url, spool=self.spool, stats=self.stats,
                                            retry_max_s=s.exporter_retry_max_s)
        return self.exporter, self.build

    def _start(self) -> BatchProcessor:
        if self.processor is None:
            s = self.settings
            exporter, build = self._make_exporter()
            self.processor = BatchProcessor(
                exporter, build, stats=self.stats, max_queue=s.exporter_queue_size,
                max_queue_bytes=s.exporter_queue_max_bytes, batch_size=s.exporter_batch_size,
                interval_s=s.exporter_interval_ms / 1000.0, on_tick=self._tick)
        return self.processor

    def _keep(self, operation: Operation | None) -> bool:
        """Sampling by operation id, so a request and everything inside it are kept or dropped together."""
        pct = self.sampling
        if pct >= 100.0 or operation is None:
            return True
        try:
            return int(operation.operation_id[:8], 16) < pct * 42949672.96  # 2**32 / 100
        except ValueError:
            return True

    # -- Monitor protocol (the scoring app) --------------------------------------------------------
    def worker_started(self) -> None:
        processor = self._start()
        if _worker is not None:  # the same, in C for the common request (see _worker.c)
            self.request_finished = _worker.Recorder(self._record_request, processor.rows, self, processor,
                                                     self._names_and_urls, self.inline_limit)
        self.capture.install()
        dependencies.install(self)
        api.set_recorder(self)

    def _record_request(self, operation: Operation, scope: Mapping[str, Any], start_ts: float, duration_ms: float,
                        status_code: int, body: bytes, output: bytes | str | None,
                        exception: BaseException | None = None) -> None:
        """``request_finished`` in Python: the reference, and every request the C recorder leaves to it."""
        if not self.capturing:
            return
        processor = self.processor or self._start()
        success = status_code < 400
        if exception is not None and not getattr(exception, _RECORDED, False):
            processor.emit(("exception", 0, time.time(), exception, operation, "run",
                            {**self.base_properties, "Request Id": operation.request_id,
                             "Client Request Id": operation.client_request_id}))
        if not success or self.sampling >= 100.0 or self._keep(operation):
            size, row = self._request_row(operation, scope, start_ts, duration_ms, status_code, body, output)
            if size > self.inline_limit:  # large payloads go to blobs on the worker thread, counted in bytes
                processor.emit(("large", size, row))
            elif len(processor.rows) < processor.row_limit:  # processor.add, inlined: once per request
                processor.rows.append(row)
            else:
                processor.refused()

    def _request_row(self, op: Operation, scope: Mapping[str, Any], start_ts: float, duration_ms: float,
                     status: int, body: bytes, output: Any) -> tuple[int, tuple[Any, ...]]:
        """The payload size and the row of a finished request: one plain tuple (see templates.py);
        payloads stay raw here and become text or blobs later, off the request path."""
        success = status < 400
        model_data = self.model_data
        value: bytes | str | None
        if model_data:
            value = body if scope["method"] != "GET" else get_input(scope)
            if output is not None and output.__class__ is not bytes and output.__class__ is not str:
                output = bytes(output)  # a bytearray or memoryview from run()
            size = len(value) + (len(output) if output is not None else 0)
        else:
            value = output = None
            size = 0
        query = scope["query_string"]
        key = (scope["method"], scope["path"], scope.get("server"), scope.get("scheme"))
        known = self._names_and_urls.get(key)
        if known is None:  # a handful per worker: made once, not for every request
            known = (f"{key[0]} /score", request_url({**scope, "query_string": b""}))
            if len(self._names_and_urls) < 64:
                self._names_and_urls[key] = known
        name, url = known
        return size, ("r", start_ts, op.operation_id, op.parent_id, op.extra.get("parent_span_id"),
                      name, f"{url}?{query.decode('latin-1')}" if query else url,
                      duration_ms, status, success, op.request_id, op.client_request_id, value, output,
                      self.sampling if success else 100.0, model_data)

    def exception(self, exc: BaseException, *, during: str) -> None:
        if not self.capturing:
            return
        operation = current_operation.get()
        if operation is None and during == "run":
            return  # request_finished records it with its request's operation
        with contextlib.suppress(AttributeError, TypeError):
            setattr(exc, _RECORDED, True)
        (self.processor or self._start()).emit(("exception", 0, time.time(), exc, operation, during, {}))

    def routes(self) -> list[BaseRoute]:
        return list(self.control.routes())

    def metrics_text(self) -> str:
        snapshot = self.stats.snapshot()
        if isinstance(self.exporter, SidecarExporter):
            snapshot["queued"] = 0  # here: rows packed for the exporter process (counted as shipped)
            snapshot = merge(snapshot, self.exporter.remote_stats())
        return render(snapshot, labels=f'pid="{os.getpid()}"')

    def shutdown(self, timeout_s: float) -> None:
        api.set_recorder(None)
        dependencies.install(None)
        self.capture.uninstall()
        if self.processor is not None:
            self.processor.shutdown(timeout_s)
        if isinstance(self.exporter, SidecarExporter):
            self.exporter.stats_path.unlink(missing_ok=True)

    # -- sinks for capture, dependencies, the public API and the azureml collectors ----------------
    def writer(self, stream: str, write_through: Callable[[str], int]) -> Callable[[str], int]:
        """The ``write`` of the ``sys.stdout``/``sys.stderr`` proxy (see capture.py): every print() of an
        entry script that does not take :meth:`printer`'s way runs it twice (the text, then the newline),
        so it is one flat function with what it needs bound in advance. A text is held back (one per
        thread) until the next write of its thread: the newline makes it one ``"l"`` row, the whole line;
        anything else ships it as an ``"o"`` chunk, and templates.py puts such chunks together."""
        processor = self.processor or self._start()
        rows = processor.rows
        append = rows.append
        large = self.inline_limit // 4
        now, thread, operation_of = time.time, get_ident, current_operation.get
        newline = "\n"
        held = self._held[stream]
        echoing = self.echoing

        def write(text: str) -> int:
            if text and self.capturing:
                tid = thread()
                if tid in echoing:  # logging's console echo of a record the log row already holds
                    return write_through(text)
                row = held.pop(tid, None)
                if text == newline:  # print() writes it on its own, just after the text
                    if row is None:
                        row = ("n", stream, tid)
                else:
                    if row is not None:  # text after text: the earlier one is a chunk of a longer line
                        processor.add(("o", *row[1:]))
                    operation = operation_of()
                    sampling = self.sampling
                    # Held for its newline: a short text not ending its own line; anything else is a chunk
                    # (templates.py takes a text ending in a newline, and any chunks before it, as a line).
                    kind = "l" if len(text) <= large and text[-1] != newline else "o"
                    if operation is None:
                        row = (kind, now(), stream, text, tid, None, "", "", sampling)
                    elif sampling >= 100.0 or self._keep(operation):
                        row = (kind, now(), stream, text, tid, operation.operation_id, operation.parent_id,
                               operation.name, sampling)
                    else:
                        return write_through(text)
                    if kind == "l":
                        held[tid] = row
                        return write_through(text)
                    if len(text) > large:
                        processor.emit(("large", len(text), row))
                        return write_through(text)
                if len(rows) < processor.row_limit:  # processor.add, inlined: this runs for every print()
                    append(row)
                else:
                    processor.refused()
            return write_through(text)

        return write

    def printer(self, stdout: Any, write_through: Callable[[str], int],
                builtin: Callable[..., None]) -> Callable[..., None]:
        """The ``print`` installed while capturing (see capture.py). The common call, values and nothing
        else, to the proxy ``stdout``, makes the ``"l"`` row of its line at once and writes the line
        through in one write, where the builtin calls the proxy's ``write`` twice (the text, then the
        newline): half the Python calls on the path every print() of an entry script takes. Any other
        call (``sep``, ``end``, ``file``, ``flush``, ``sys.stdout`` replaced, a line that is long or
        ends its own line) is the builtin's, through the proxy, as before."""
        processor = self.processor or self._start()
        rows = processor.rows
        append = rows.append
        large = self.inline_limit // 4
        now, thread, operation_of = time.time, get_ident, current_operation.get
        held = self._held["STDOUT"]
        system = sys

        def print(*values: Any, sep: str | None = None, end: str | None = None, file: Any = None,
                  flush: bool = False) -> None:
            if (not values or sep is not None or end is not None or file is not None or flush
                    or system.stdout is not stdout):
                return builtin(*values, sep=sep, end=end, file=file, flush=flush)
            text = str(values[0]) if len(values) == 1 else " ".join(map(str, values))
            if not self.capturing or not text or len(text) > large or text[-1] == "\n":
                stdout.write(text)  # what the builtin writes, str() already taken
                stdout.write("\n")
                return None
            tid = thread()
            row = held.pop(tid, None) if held else None
            if row is not None:  # a text written before on this thread: this line continues it
                processor.add(("o", *row[1:]))
            operation = operation_of()
            sampling = self.sampling
            # As write() makes a held text's row, followed by its newline (see writer).
            if operation is None:
                row = ("l", now(), "STDOUT", text, tid, None, "", "", sampling)
            elif sampling >= 100.0 or self._keep(operation):
                row = ("l", now(), "STDOUT", text, tid, operation.operation_id, operation.parent_id,
                       operation.name, sampling)
            else:
                row = None
            if row is not None:
                if len(rows) < processor.row_limit:
                    append(row)
                else:
                    processor.refused()
            write_through(text + "\n")
            return None

        if _worker is None:
            return print
        # The same print, in C for its common call (one str, capturing, no sampling), this one for the rest.
        return _worker.Printer(print, stdout, write_through, rows, held, self, processor, current_operation,
                               large)

    def log(self, record: Any) -> None:
        operation = current_operation.get()
        if self._keep(operation) and self.processor is not None:
            props = {"loggerName": record.name, "fileName": record.pathname, "lineNumber": str(record.lineno),
                     "module": record.module, "functionName": record.funcName, "level": record.levelname}
            self.processor.emit(("log", 0, record.created, record.getMessage(), record.levelno, props,
                                 operation, self.sampling))
            if record.exc_info and record.exc_info[1] is not None:
                self.processor.emit(("exception", 0, record.created, record.exc_info[1], operation, "log",
                                     {"loggerName": record.name}))

    def span(self, span: Any, operation: Operation | None) -> None:
        if self.capturing and self._keep(operation) and self.processor is not None:
            self.processor.emit(("span", 0, span, operation, self.sampling))

    def dependency(self, fields: dict[str, Any]) -> None:
        operation = current_operation.get()
        if self.capturing and self._keep(operation) and self.processor is not None:
            self.processor.emit(("dependency", 0, fields, operation, self.sampling))

    def event(self, name: str, properties: Mapping[str, Any], measurements: Mapping[str, float]) -> None:
        if self.capturing and self.processor is not None:
            self.processor.emit(("event", 0, time.time(), name, properties, measurements,
                                 current_operation.get()))

    def metric(self, name: str, value: float, properties: Mapping[str, Any]) -> None:
        if self.capturing and self.processor is not None:
            self.processor.emit(("metric", 0, time.time(), name, value, properties, current_operation.get()))

    def trace(self, message: str, properties: Mapping[str, Any], size: int = 0) -> None:
        """A custom trace (the azureml collectors): ``properties`` are added to the service's own."""
        if self.capturing and self.processor is not None:
            self.processor.emit(("trace", size if size > self.inline_limit else 0, time.time(), message,
                                 properties, current_operation.get()))

    # -- building envelopes (worker thread) --------------------------------------------------------
    def build(self, record: Record) -> Iterable[bytes]:
        """Serialized envelopes for one record (runs on the worker thread)."""
        built = getattr(self, "_build_" + record[0])(*record[2:])
        return [item if isinstance(item, bytes) else orjson.dumps(item) for item in built]

    def _value(self, value: Any) -> Any:
        return inline_or_blob(value, self.inline_limit, self.blobs)

    # Request, model data and output rows come with every request: plain tuples (see templates.py),
    # shipped as they are in one marshal frame per batch to the exporter process, which builds their
    # envelopes; or built here by the same Templates when exporting in-process.
    def _large_row(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        # A large input or output becomes its blob marker here (not 10 MiB through the pipe); a long
        # printed chunk is left to Templates, which puts its line together first.
        if row[0] == "r" and row[15]:
            return (*row[:12], self._value(row[12]), self._value(row[13]), *row[14:])
        return row

    def _build_large(self, row: tuple[Any, ...]) -> list[bytes]:
        return self.templates.raw(self._large_row(row))

    def _build_rows(self, rows: list[tuple[Any, ...]]) -> list[bytes]:
        out: list[bytes] = []
        for row in rows:
            out.extend(self.templates.raw(row))
        return out

    def pack(self, record: Record) -> list[Any]:
        """What the exporter process gets for one record: rows, in one marshal frame (it builds their
        envelopes), or serialized envelopes for the rest (exceptions and spans do not cross a pipe)."""
        kind = record[0]
        if kind == "rows":
            return [("F", Templates.frame(record[2]), len(record[2]))]
        if kind == "large":
            return [("F", Templates.frame([self._large_row(record[2])]), 1)]
        return list(self.build(record))

    def _operation_fields(self, op: Operation | None) -> dict[str, Any]:
        if op is None:
            return {}
        return {"operation_id": op.operation_id, "parent_id": op.parent_id, "operation_name": op.name or None}

    def _build_log(self, when: float, message: str, levelno: int, props: dict[str, Any], op: Operation | None,
                   rate: float) -> list[dict[str, Any]]:
        value = self._value(message)
        if not isinstance(value, str):  # a log line over the inline limit: its marker, and a preview
            props = {**props, "Message": value}
            value = value["preview"]
        return [self.factory.message(when=when, message=value, severity=severity_for_level(levelno),
                                     properties={**self.base_properties, **props}, sample_rate=rate,
                                     **self._operation_fields(op))]

    def _build_exception(self, when: float, exc: BaseException, op: Operation | None, during: str,
                         props: dict[str, Any]) -> list[dict[str, Any]]:
        properties = {**self.base_properties, **props, "During": during}
        return [self.factory.exception(when=when, exc=exc, properties=properties, severity=SEVERITY_ERROR,
                                       **self._operation_fields(op))]

    def _build_span(self, span: Any, op: Operation | None, rate: float) -> list[dict[str, Any]]:
        fields = dependencies.describe(span)
        parent = op.parent_id if op is not None and op.operation_id == fields["trace_id"] else None
        parent = fields["parent_span_id"] or parent
        return [self.factory.dependency(
            when=fields["start"], id=fields["id"], name=fields["name"], type=fields["type"],
            target=fields["target"], data=fields["data"], duration_ms=fields["duration_ms"],
            result_code=fields["result_code"], success=fields["success"], properties=self.base_properties,
            operation_id=fields["trace_id"], parent_id=parent, operation_name=op.name if op else None,
            sample_rate=rate)]

    def _build_dependency(self, f: dict[str, Any], op: Operation | None, rate: float) -> list[dict[str, Any]]:
        return [self.factory.dependency(
            when=f["start"], id=f["id"], name=f["name"], type=f["type"], target=f["target"], data=f["data"],
            duration_ms=f["duration_ms"], result_code=f["result_code"], success=f["success"],
            properties={**self.base_properties, **f["properties"]}, sample_rate=rate,
            **_dependency_operation(op))]

    def _build_event(self, when: float, name: str, props: Mapping[str, Any], measurements: Mapping[str, float],
                     op: Operation | None) -> list[dict[str, Any]]:
        return [self.factory.event(when=when, name=name, properties={**self.base_properties, **props},
                                   measurements=measurements, **self._operation_fields(op))]

    def _build_metric(self, when: float, name: str, value: float, props: Mapping[str, Any],
                      op: Operation | None) -> list[dict[str, Any]]:
        return [self.factory.metric(when=when, name=name, value=value,
                                    properties={**self.base_properties, **props}, **self._operation_fields(op))]

    def _build_trace(self, when: float, message: str, props: Mapping[str, Any],
                     op: Operation | None) -> list[dict[str, Any]]:
        properties = {**self.base_properties, **{k: self._value(v) if isinstance(v, str | bytes) else v
                                                 for k, v in props.items()}}
        return [self.factory.message(when=when, message=message, severity=SEVERITY_INFO, properties=properties,
                                     **self._operation_fields(op))]


def _dependency_operation(op: Operation | None) -> dict[str, Any]:
    if op is None:
        return {"operation_id": None, "parent_id": None}
    return {"operation_id": op.operation_id, "parent_id": op.parent_id, "operation_name": op.name or None}


def create_monitor(settings: Settings, info: ServiceInfo, **kwargs: Any) -> TelemetryMonitor:
    """The monitor ``scorewatch.scoring.monitor.load_monitor`` uses when a connection string is set.

    ``kwargs``: ``key_digests`` (the service's key digests, which also open the control route) and
    ``exporter`` (tests inject an :class:`~scorewatch.telemetry.exporter.InMemoryExporter`).
    """
    return TelemetryMonitor(settings, info, **kwargs)
