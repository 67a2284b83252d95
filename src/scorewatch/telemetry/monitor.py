"""The real :class:`~scorewatch.scoring.monitor.Monitor`: what a monitored scoring service records.

Producers (the scoring app through the seam, print/log capture, dependency spans, the public
``track_*`` helpers and the azureml collectors) build a light tuple and put it on the
:class:`BatchProcessor`'s queue; that is all the request path pays. On the worker thread,
:meth:`TelemetryMonitor.build` turns each tuple into envelopes (request, model data trace, message,
exception, dependency, event, metric), moving payloads over the inline limit into blobs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from starlette.routing import BaseRoute

from scorewatch.scoring.monitor import ScoredRequest, ServiceInfo
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
    SEVERITY_WARNING,
    EnvelopeFactory,
    format_duration,
    format_time,
    severity_for_level,
)
from scorewatch.telemetry.exporter import AppInsightsExporter, Exporter
from scorewatch.telemetry.metrics import ExporterStats, render
from scorewatch.telemetry.processor import BatchProcessor, Record
from scorewatch.telemetry.spool import Spool
from scorewatch.workspace import Workspace

_RECORDED = "__scorewatch_recorded__"


class TelemetryMonitor:
    """Records requests, model data, output, logs, exceptions and dependencies of one worker process."""

    def __init__(self, settings: Settings, info: ServiceInfo, *, exporter: Exporter | None = None,
                 key_digests: list[str] | None = None, **_: Any) -> None:
        connection = parse_connection_string(settings.connection_string)
        workspace = Workspace(settings.home)
        self.settings = settings
        self.info = info
        self.inline_limit = settings.inline_limit
        self.stats = ExporterStats()
        self.blobs = BlobStore(workspace.blobs_dir)
        self.spool = Spool(workspace.spool_dir, settings.spool_max_bytes, self.stats)
        self.exporter: Exporter = exporter or AppInsightsExporter(
            connection.track_url, spool=self.spool, stats=self.stats, retry_max_s=settings.exporter_retry_max_s)
        self.factory = EnvelopeFactory(connection.instrumentation_key, role=info.service_name,
                                       role_instance=socket.gethostname())
        # JSON fragments every hot-path envelope shares (see _build_request).
        self._ikey = _json(self.factory.ikey)
        self._request_name = _json(self.factory.request_name)
        self._message_name = _json(self.factory.message_name)
        self._tags = _json(self.factory.base_tags)[1:-1]
        self.base_properties = {"Container Id": info.container_id, "Workspace Name": info.workspace_name,
                                "Service Name": info.service_name}
        self.models = ",".join(info.models)
        self._models = _json(self.models)
        self._base_props = _json(self.base_properties)[1:-1]
        self._names: dict[str, str] = {}
        stem = f"{info.service_name}-{settings.port}"
        digests = list(key_digests or [])
        if settings.control_key:
            digests.append(hashlib.sha256(settings.control_key.encode()).hexdigest())
        self.control = Control(workspace.services_dir / f"{stem}.telemetry.json",
                               TelemetryState(True, settings.collect_model_data, settings.sampling_percentage),
                               key_digests=digests, key_file=workspace.services_dir / f"{stem}.control-key")
        self._apply(self.control.state)
        self.capture = Capture(self)
        self.processor: BatchProcessor | None = None
        self._pid = os.getpid()

    # -- state -------------------------------------------------------------------------------------
    def _apply(self, state: TelemetryState) -> None:
        self.capturing = state.monitoring
        self.model_data = state.model_data
        self.sampling = state.sampling_percentage

    def _tick(self) -> None:
        self._apply(self.control.poll())

    def _start(self) -> BatchProcessor:
        if self.processor is None:
            s = self.settings
            self.processor = BatchProcessor(
                self.exporter, self.build, stats=self.stats, max_queue=s.exporter_queue_size,
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
        self._start()
        self.capture.install()
        dependencies.install(self)
        api.set_recorder(self)

    def request_finished(self, request: ScoredRequest) -> None:
        if not self.capturing:
            return
        processor = self.processor or self._start()
        exc = request.exception
        if exc is not None and not getattr(exc, _RECORDED, False):
            processor.emit(("exception", 0, time.time(), exc, request.operation, "run",
                            self._request_properties(request)))
        if not request.success or self._keep(request.operation):
            size = _size(request.input) + _size(request.output)
            processor.emit(("request", size if size > self.inline_limit else 0, request, self.sampling,
                            self.model_data))

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
        return render(self.stats, labels=f'pid="{os.getpid()}"')

    def shutdown(self, timeout_s: float) -> None:
        api.set_recorder(None)
        dependencies.install(None)
        self.capture.uninstall()
        if self.processor is not None:
            self.processor.shutdown(timeout_s)

    # -- sinks for capture, dependencies, the public API and the azureml collectors ----------------
    def output(self, stream: str, text: str) -> None:
        operation = current_operation.get()
        if self._keep(operation) and self.processor is not None:
            self.processor.emit(("output", 0, time.time(), stream, text, operation, self.sampling))

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

    def _request_properties(self, request: ScoredRequest) -> dict[str, Any]:
        return {**self.base_properties, "Request Id": request.request_id,
                "Client Request Id": request.client_request_id}

    def _value(self, value: Any) -> Any:
        return inline_or_blob(value, self.inline_limit, self.blobs)

    # Request, model data and output records come with every request, so they are serialized straight
    # from f-string templates (user-controlled text always goes through orjson, so it is escaped; ids
    # are hex). tests/telemetry/test_envelopes.py checks them against the factory's dict envelopes.
    def _build_request(self, request: ScoredRequest, rate: float, model_data: bool) -> list[Any]:
        op = request.operation
        success = request.success
        when = format_time(request.start)
        ids = f'"Request Id":{_json(request.request_id)},"Client Request Id":{_json(request.client_request_id)}'
        props = f"{{{self._base_props},{ids}}}"
        parent = op.extra.get("parent_span_id")
        parent_tag = f',"ai.operation.parentId":"{parent}"' if parent else ""
        name = self._names.get(request.name) or self._name_json(request.name)
        sample = f',"sampleRate":{float(rate)!r}' if success and rate < 100.0 else ""
        head = f'"time":"{when}","iKey":{self._ikey},"tags":{{{self._tags},"ai.operation.id":"{op.operation_id}"'
        out = [(f'{{"name":{self._request_name},{head}{parent_tag},"ai.operation.name":{name}}},'
                f'"data":{{"baseType":"RequestData","baseData":{{"ver":2,"id":"{op.parent_id}","name":{name},'
                f'"url":{_json(request.url)},"duration":"{format_duration(request.duration_ms)}",'
                f'"responseCode":"{int(request.status_code)}","success":{"true" if success else "false"},'
                f'"properties":{props}}}}}{sample}}}').encode()]
        if model_data:
            prediction = _json(self._value(request.output))
            data = (f'{{{self._base_props},{ids},"Models":{self._models},"Input":{_json(self._value(request.input))},'
                    f'"Prediction":{prediction}')
            if not success:
                data = f'{data},"Error":{prediction},"Status Code":"{int(request.status_code)}"'
            out.append((f'{{"name":{self._message_name},{head},"ai.operation.parentId":"{op.parent_id}",'
                        f'"ai.operation.name":{name}}},"data":{{"baseType":"MessageData","baseData":{{"ver":2,'
                        f'"message":"model_data_collection","severityLevel":{SEVERITY_INFO},'
                        f'"properties":{data}}}}}}}{sample}}}').encode())
        return out

    def _name_json(self, name: str) -> str:
        if len(self._names) < 64:  # a handful of operation names ("POST /score", "GET /score"...)
            self._names[name] = _json(name)
        return _json(name)

    def _operation_fields(self, op: Operation | None) -> dict[str, Any]:
        if op is None:
            return {}
        return {"operation_id": op.operation_id, "parent_id": op.parent_id, "operation_name": op.name or None}

    def _build_output(self, when: float, stream: str, text: str, op: Operation | None, rate: float) -> list[Any]:
        contents: Any = text
        if text[:1] in ("{", "[") or text.lstrip()[:1] in ("{", "["):
            try:
                contents = orjson.loads(text) if len(text) <= self.inline_limit else self._value(text)
            except orjson.JSONDecodeError:
                contents = self._value(text)
        elif len(text) > self.inline_limit // 4:
            contents = self._value(text)
        tags = self._tags
        if op is not None:
            tags = f'{tags},"ai.operation.id":"{op.operation_id}","ai.operation.parentId":"{op.parent_id}"'
            if op.name:
                tags = f'{tags},"ai.operation.name":{_json(op.name)}'
        severity = SEVERITY_INFO if stream == "STDOUT" else SEVERITY_WARNING
        sample = f',"sampleRate":{float(rate)!r}' if rate < 100.0 else ""
        return [(f'{{"name":{self._message_name},"time":"{format_time(when)}","iKey":{self._ikey},"tags":{{{tags}}},'
                 f'"data":{{"baseType":"MessageData","baseData":{{"ver":2,"message":{_json(stream)},'
                 f'"severityLevel":{severity},"properties":{{{self._base_props},"Contents":{_json(contents)}}}'
                 f'}}}}{sample}}}').encode()]

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


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _dependency_operation(op: Operation | None) -> dict[str, Any]:
    if op is None:
        return {"operation_id": None, "parent_id": None}
    return {"operation_id": op.operation_id, "parent_id": op.parent_id, "operation_name": op.name or None}


def _size(value: bytes | str | None) -> int:
    return len(value) if value is not None else 0


def create_monitor(settings: Settings, info: ServiceInfo, **kwargs: Any) -> TelemetryMonitor:
    """The monitor ``scorewatch.scoring.monitor.load_monitor`` uses when a connection string is set.

    ``kwargs``: ``key_digests`` (the service's key digests, which also open the control route) and
    ``exporter`` (tests inject an :class:`~scorewatch.telemetry.exporter.InMemoryExporter`).
    """
    return TelemetryMonitor(settings, info, **kwargs)
