"""OTLP/HTTP (``/v1/traces``, ``/v1/logs``, ``/v1/metrics``) → Application Insights envelopes.

Bodies are protobuf (``application/x-protobuf``) or JSON (``application/json``, with trace and span
ids as hex, as the OTLP spec says), optionally gzip. The application is chosen by the instrumentation
key in the ``x-instrumentation-key`` header. Each signal is mapped to the envelopes the Azure Monitor
exporter would send, so one path (:mod:`scorewatch.store.envelopes`) fills the tables:

- spans: SERVER and CONSUMER → ``RequestData`` (requests); CLIENT, PRODUCER and INTERNAL →
  ``RemoteDependencyData`` (dependencies); span events named ``exception`` → ``ExceptionData``, other
  span events → ``MessageData``.
- log records: → ``ExceptionData`` when they carry ``exception.type`` or ``exception.message``,
  otherwise ``MessageData`` (traces) with the severity mapped to Application Insights' 0-4.
- metric points: → ``MetricData`` (customMetrics); histograms and summaries keep sum, count, min, max.
"""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from scorewatch.errors import BadRequest, UnsupportedMediaType

SIGNALS: dict[str, tuple[type[Message], type[Message]]] = {
    "traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
    "logs": (ExportLogsServiceRequest, ExportLogsServiceResponse),
    "metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
}

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def parse(signal: str, data: bytes, content_type: str) -> tuple[Message, bool]:
    """The export request message, and whether the body was JSON (answer in kind)."""
    request_cls = SIGNALS[signal][0]
    kind = content_type.split(";")[0].strip().lower()
    message = request_cls()
    if kind in ("application/json", "text/json"):
        try:
            body = orjson.loads(data)
            _hex_ids_to_base64(body)
            json_format.ParseDict(body, message, ignore_unknown_fields=True)
        except (orjson.JSONDecodeError, json_format.ParseError, ValueError, TypeError) as exc:
            raise BadRequest(f"invalid OTLP JSON: {exc}") from None
        return message, True
    if kind in ("application/x-protobuf", "application/protobuf", ""):
        try:
            message.ParseFromString(data)
        except DecodeError as exc:
            raise BadRequest(f"invalid OTLP protobuf: {exc}") from None
        return message, False
    raise UnsupportedMediaType(f"OTLP bodies are application/x-protobuf or application/json, not {kind!r}")


def _hex_ids_to_base64(node: Any) -> None:
    """OTLP JSON carries ids as hex; protobuf's JSON mapping wants base64 for bytes fields."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise BadRequest(f"invalid hex id {key}={value!r}") from None
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for value in node:
            _hex_ids_to_base64(value)


def any_value(value: Any) -> Any:
    """An OTLP ``AnyValue`` as a plain JSON-able value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def _time(nanos: int) -> str:
    if not nanos:
        return datetime.now(UTC).isoformat()
    return datetime.fromtimestamp(nanos / 1e9, UTC).isoformat()


def _tags(resource: dict[str, Any], trace_id: bytes, parent: bytes, name: str | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    service = resource.get("service.name")
    if service:
        namespace = resource.get("service.namespace")
        tags["ai.cloud.role"] = f"{namespace}.{service}" if namespace else str(service)
    instance = resource.get("service.instance.id") or resource.get("host.name")
    if instance:
        tags["ai.cloud.roleInstance"] = str(instance)
    sdk = resource.get("telemetry.sdk.language")
    if sdk:
        tags["ai.internal.sdkVersion"] = f"otlp:{sdk}:{resource.get('telemetry.sdk.version', '')}"
    if trace_id:
        tags["ai.operation.id"] = trace_id.hex()
    if parent:
        tags["ai.operation.parentId"] = parent.hex()
    if name:
        tags["ai.operation.name"] = name
    return tags


def _envelope(ikey: str, time: str, tags: dict[str, str], base_type: str, base_data: dict[str, Any]) -> bytes:
    return orjson.dumps({"time": time, "iKey": ikey, "tags": tags,
                         "data": {"baseType": base_type, "baseData": base_data}})


def traces(message: Any, ikey: str) -> list[tuple[str, bytes]]:
    """(baseType, envelope JSON) for every span and span event."""
    out = []
    for rs in message.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                attrs = attributes(span.attributes)
                duration = max(0, span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
                failed = span.status.code == 2
                status = attrs.get("http.response.status_code", attrs.get("http.status_code"))
                span_id = span.span_id.hex()
                time = _time(span.start_time_unix_nano)
                if span.kind in (2, 5):  # SERVER, CONSUMER
                    code = _status_code(status)
                    success = not failed and (code is None or code < 400)
                    base = {"id": span_id, "name": span.name, "duration": duration, "success": success,
                            "responseCode": str(status if status is not None else 0),
                            "url": attrs.get("url.full", attrs.get("http.url")), "properties": attrs}
                    tags = _tags(resource, span.trace_id, span.parent_span_id, span.name)
                    out.append(("RequestData", _envelope(ikey, time, tags, "RequestData", base)))
                else:
                    base = {"id": span_id, "name": span.name, "duration": duration, "success": not failed,
                            "resultCode": None if status is None else str(status),
                            "type": _dependency_type(span.kind, attrs), "target": _target(attrs),
                            "data": attrs.get("url.full", attrs.get("http.url", attrs.get("db.statement"))),
                            "properties": attrs}
                    tags = _tags(resource, span.trace_id, span.parent_span_id, None)
                    out.append(("RemoteDependencyData", _envelope(ikey, time, tags, "RemoteDependencyData", base)))
                for event in span.events:
                    out.append(_event(ikey, resource, span, event))
    return out


def _status_code(value: Any) -> int | None:
    """An HTTP status attribute as a number, or None when it is not one ("abc", NaN, a list)."""
    try:
        number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
    except ValueError:
        return None
    return int(number) if number is not None and math.isfinite(number) else None


def _dependency_type(kind: int, attrs: dict[str, Any]) -> str:
    if "db.system" in attrs:
        return str(attrs["db.system"])
    if "http.request.method" in attrs or "http.method" in attrs:
        return "HTTP"
    if "messaging.system" in attrs:
        return str(attrs["messaging.system"])
    return "InProc" if kind == 1 else "Other"


def _target(attrs: dict[str, Any]) -> str | None:
    host = attrs.get("server.address", attrs.get("net.peer.name"))
    port = attrs.get("server.port", attrs.get("net.peer.port"))
    if host and port:
        return f"{host}:{port}"
    return host or attrs.get("db.name")


def _event(ikey: str, resource: dict[str, Any], span: Any, event: Any) -> tuple[str, bytes]:
    attrs = attributes(event.attributes)
    tags = _tags(resource, span.trace_id, span.span_id, None)
    time = _time(event.time_unix_nano)
    if event.name == "exception":
        return "ExceptionData", _envelope(ikey, time, tags, "ExceptionData", _exception(attrs))
    return "MessageData", _envelope(ikey, time, tags, "MessageData",
                                    {"message": event.name, "severityLevel": 1, "properties": attrs})


def _exception(attrs: dict[str, Any], severity: int | None = None) -> dict[str, Any]:
    props = {k: v for k, v in attrs.items() if not k.startswith("exception.")}
    return {"exceptions": [{"typeName": attrs.get("exception.type") or "Exception",
                            "message": attrs.get("exception.message") or "",
                            "hasFullStack": bool(attrs.get("exception.stacktrace")),
                            "stack": attrs.get("exception.stacktrace")}],
            "severityLevel": severity, "properties": props}


def _severity(number: int) -> int:
    # OTLP 1-4 TRACE, 5-8 DEBUG → Verbose; 9-12 INFO; 13-16 WARN; 17-20 ERROR; 21-24 FATAL → Critical.
    if number <= 8:
        return 0
    return min(4, (number - 1) // 4 - 1)


def logs(message: Any, ikey: str) -> list[tuple[str, bytes]]:
    out = []
    for rl in message.resource_logs:
        resource = attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            for rec in sl.log_records:
                attrs = attributes(rec.attributes)
                tags = _tags(resource, rec.trace_id, rec.span_id, None)
                time = _time(rec.time_unix_nano or rec.observed_time_unix_nano)
                severity = _severity(rec.severity_number) if rec.severity_number else None
                if "exception.type" in attrs or "exception.message" in attrs:
                    base = _exception(attrs, severity)
                    out.append(("ExceptionData", _envelope(ikey, time, tags, "ExceptionData", base)))
                    continue
                body = any_value(rec.body)
                text = body if isinstance(body, str) else orjson.dumps(body).decode()
                base = {"message": text, "severityLevel": severity, "properties": attrs}
                out.append(("MessageData", _envelope(ikey, time, tags, "MessageData", base)))
    return out


def metrics(message: Any, ikey: str) -> list[tuple[str, bytes]]:
    out = []
    for rm in message.resource_metrics:
        resource = attributes(rm.resource.attributes)
        tags = _tags(resource, b"", b"", None)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                for point in getattr(metric, kind).data_points:
                    entry: dict[str, Any] = {"name": metric.name}
                    if kind in ("gauge", "sum"):
                        entry["value"] = getattr(point, point.WhichOneof("value") or "as_double")
                    else:  # histogram, exponential_histogram, summary
                        entry.update(value=point.sum, count=point.count)
                        if kind != "summary" and point.HasField("min"):
                            entry.update(min=point.min, max=point.max)
                    base = {"metrics": [entry], "properties": attributes(point.attributes)}
                    out.append(("MetricData", _envelope(ikey, _time(point.time_unix_nano), tags,
                                                        "MetricData", base)))
    return out


CONVERTERS = {"traces": traces, "logs": logs, "metrics": metrics}


def convert(signal: str, message: Message, ikey: str) -> list[tuple[str, bytes]]:
    """(baseType, envelope JSON) for every item of ``message``; a value no envelope can carry is a
    400 naming it, never a 500 (an SDK retries a 500 for ever)."""
    try:
        return CONVERTERS[signal](message, ikey)
    except (ValueError, OverflowError, TypeError, orjson.JSONEncodeError) as exc:
        raise BadRequest(f"the OTLP {signal} request holds a value that cannot be converted: {exc}") from None


def response(signal: str, as_json: bool) -> tuple[bytes, str]:
    """An empty (fully successful) export response, in the request's encoding."""
    message = SIGNALS[signal][1]()
    if as_json:
        return b"{}", "application/json"
    return message.SerializeToString(), "application/x-protobuf"
