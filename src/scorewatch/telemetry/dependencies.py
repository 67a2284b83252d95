"""Outgoing HTTP calls of the entry script, recorded as dependencies.

The OpenTelemetry contrib instrumentations for ``requests``, ``httpx``, ``urllib3`` and
``urllib.request`` do the patching and inject ``traceparent``; they report to a private
``TracerProvider`` (the global one is left to the user) whose id generator takes the trace id from the
request being served, so the callee sees our ``operation_Id`` and the dependency row carries it. A span
processor hands each finished CLIENT span to the active sink. Instrumentation happens once per
process; the sink can change (or go away: then spans are ignored).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from typing import Any, Protocol
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import SpanKind

from scorewatch.telemetry.context import Operation, current_operation

log = logging.getLogger("scorewatch.telemetry")


class SpanSink(Protocol):
    def span(self, span: ReadableSpan, operation: Operation | None) -> None: ...


_sink: SpanSink | None = None
_lock = threading.Lock()
_instrumentors: list[Any] = []


class _OperationIdGenerator(RandomIdGenerator):
    """A root span started while serving a request belongs to that request's trace."""

    def generate_trace_id(self) -> int:
        operation = current_operation.get()
        if operation is not None:
            try:
                return int(operation.operation_id, 16)
            except ValueError:
                pass
        return super().generate_trace_id()


class _ToSink(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        sink = _sink
        if sink is not None and span.kind is SpanKind.CLIENT:
            sink.span(span, current_operation.get())


def install(sink: SpanSink | None) -> None:
    """Make ``sink`` receive dependency spans, instrumenting the HTTP clients; ``None`` removes the
    instrumentation again (a stopped monitor leaves the process's HTTP clients as it found them)."""
    global _sink, _instrumentors
    with _lock:
        _sink = sink
        if sink is None:
            for instrumentor in _instrumentors:
                with contextlib.suppress(Exception):
                    instrumentor.uninstrument()
            _instrumentors = []
            return
        if _instrumentors:
            return
        provider = TracerProvider(id_generator=_OperationIdGenerator())
        provider.add_span_processor(_ToSink())
        for module, cls in (("opentelemetry.instrumentation.requests", "RequestsInstrumentor"),
                            ("opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"),
                            ("opentelemetry.instrumentation.urllib3", "URLLib3Instrumentor"),
                            ("opentelemetry.instrumentation.urllib", "URLLibInstrumentor")):
            try:
                instrumentor = getattr(importlib.import_module(module), cls)()
                if not instrumentor.is_instrumented_by_opentelemetry:
                    instrumentor.instrument(tracer_provider=provider)
                    _instrumentors.append(instrumentor)
            except Exception:  # a missing client library must not stop the service
                log.warning("could not instrument %s", module, exc_info=True)


def describe(span: ReadableSpan) -> dict[str, Any]:
    """The dependency fields of a CLIENT span, from old or stable HTTP semantic conventions."""
    attrs = span.attributes or {}
    method = str(attrs.get("http.request.method") or attrs.get("http.method") or "GET")
    url = str(attrs.get("url.full") or attrs.get("http.url") or "")
    status = attrs.get("http.response.status_code") or attrs.get("http.status_code")
    split = urlsplit(url)
    target = split.netloc or str(attrs.get("server.address") or attrs.get("net.peer.name") or "")
    error = not span.status.is_ok or (isinstance(status, int) and status >= 400)
    if status is None:
        error_type = attrs.get("error.type")
        result_code = str(error_type) if error_type else ("Error" if error else "0")
    else:
        result_code = str(status)
    start = (span.start_time or 0) / 1e9
    end = (span.end_time or span.start_time or 0) / 1e9
    return {"name": f"{method} {split.path or '/'}", "type": "HTTP", "target": target, "data": url,
            "result_code": result_code, "success": not error, "start": start,
            "duration_ms": max(0.0, (end - start) * 1000.0),
            "id": format(span.context.span_id, "016x"), "trace_id": format(span.context.trace_id, "032x"),
            "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None}
