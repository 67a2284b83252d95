"""Real telemetry SDKs, written by others, pointed at a real hub: every item lands in the right table."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from tests.ingest.conftest import RunningHub


@pytest.fixture(autouse=True)
def no_statsbeat(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Both Azure SDKs report their own health to Microsoft unless told not to; nothing may leave here.
    monkeypatch.setenv("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
    # The Azure exporter's own stats (Item_Success_Count, ...) go to our hub, which filters them by the
    # bookkeeping rule; they are flushed at interpreter exit, after the hub is gone, so keep them off.
    monkeypatch.setenv("APPLICATIONINSIGHTS_SDKSTATS_DISABLED", "true")
    yield


def _spans(provider: TracerProvider, marker: str) -> tuple[str, str]:
    tracer = provider.get_tracer("scorewatch-tests")
    request_attrs = {"http.method": "POST", "http.url": f"http://127.0.0.1/score-{marker}",
                     "http.status_code": 200, "http.route": "/score", "model": "ridge", "rows": 3}
    dependency_attrs = {"http.method": "GET", "http.url": "http://features:8080/x",
                        "net.peer.name": "features", "net.peer.port": 8080, "http.status_code": 503}
    with (tracer.start_as_current_span(f"POST /score-{marker}", kind=SpanKind.SERVER,
                                       attributes=request_attrs) as req,
          tracer.start_as_current_span(f"GET /features-{marker}", kind=SpanKind.CLIENT,
                                       attributes=dependency_attrs) as dep):
        dep.set_status(StatusCode.ERROR)
    provider.shutdown()
    return format(req.get_span_context().trace_id, "032x"), format(dep.get_span_context().span_id, "016x")


def _log_hello_and_exception(logger_provider: Any, marker: str, level: int,
                             extra: dict[str, object] | None = None) -> None:
    """Send "hello <marker>" at ``level`` and one logged exception through the SDK, then flush."""
    from opentelemetry.sdk._logs import LoggingHandler

    logger = logging.getLogger(f"scorewatch.tests.{marker}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(LoggingHandler(logger_provider=logger_provider))
    logger.log(level, "hello %s", marker, extra=extra)
    try:
        raise ValueError(f"boom {marker}")
    except ValueError:
        logger.exception("scoring failed")
    logger_provider.shutdown()


def _check_spans(hub: RunningHub, marker: str, trace_id: str, dep_span_id: str) -> None:
    req = hub.one("SELECT * FROM requests WHERE operation_Id = ?", (trace_id,))
    assert req["url"] == f"http://127.0.0.1/score-{marker}"
    assert req["name"].startswith("POST /score")
    assert req["resultCode"] == "200" and req["success"] is True
    assert req["duration"] is not None and req["duration"] >= 0
    assert req["performanceBucket"] == "<250ms"
    assert req["appId"] == hub.default["app_id"] and req["iKey"] == hub.ikey
    assert req["cloud_RoleName"] == f"svc-{marker}"
    assert req["itemType"] == "request" and req["itemId"]
    dep = hub.one("SELECT * FROM dependencies WHERE operation_Id = ?", (trace_id,))
    assert dep["id"] == dep_span_id
    assert dep["success"] is False and dep["resultCode"] == "503"
    assert dep["target"].startswith("features")
    assert dep["operation_ParentId"] == req["id"]


# The SDK's LoggingHandler is deprecated in favour of a package not installed here; it still works.
_LOGGING_HANDLER = pytest.mark.filterwarnings("ignore:`LoggingHandler` in `opentelemetry-sdk`:DeprecationWarning")


@_LOGGING_HANDLER
def test_azure_monitor_opentelemetry_exporter(any_shared_hub: RunningHub) -> None:
    from azure.monitor.opentelemetry.exporter import (
        AzureMonitorLogExporter,
        AzureMonitorMetricExporter,
        AzureMonitorTraceExporter,
    )
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    hub, marker = any_shared_hub, "az-" + secrets.token_hex(3)
    cs = hub.default["connection_string"]
    resource = Resource.create({"service.name": f"svc-{marker}"})

    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(
        AzureMonitorTraceExporter(connection_string=cs, disable_offline_storage=True)))
    trace_id, dep_id = _spans(tracer_provider, marker)

    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(
        AzureMonitorLogExporter(connection_string=cs, disable_offline_storage=True)))
    _log_hello_and_exception(logger_provider, marker, logging.WARNING, extra={"rows": 3})

    reader = PeriodicExportingMetricReader(
        AzureMonitorMetricExporter(connection_string=cs, disable_offline_storage=True),
        export_interval_millis=3_600_000)
    meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
    meter_provider.get_meter("scorewatch-tests").create_counter(f"scored_{marker}").add(5, {"model": "ridge"})
    meter_provider.shutdown()

    _check_spans(hub, marker, trace_id, dep_id)
    trace = hub.one("SELECT * FROM traces WHERE message = ?", (f"hello {marker}",))
    assert trace["severityLevel"] == 2
    assert '"rows"' in trace["customDimensions"]
    exc = hub.one("SELECT * FROM exceptions WHERE CAST(details AS VARCHAR) LIKE ?", (f"%boom {marker}%",))
    assert exc["type"] == "ValueError" and exc["severityLevel"] == 3 and exc["problemId"]
    metric = hub.one("SELECT * FROM customMetrics WHERE name = ?", (f"scored_{marker}",))
    assert metric["value"] == 5.0
    # The exporter's _OTELRESOURCE_ carrier is accepted and filtered, by the documented rule.
    assert hub.rows("SELECT count(*) FROM customMetrics WHERE name = '_OTELRESOURCE_'") == [[0]]


def test_opencensus_ext_azure(any_shared_hub: RunningHub) -> None:
    from opencensus.ext.azure.log_exporter import AzureLogHandler
    from opencensus.ext.azure.trace_exporter import AzureExporter
    from opencensus.trace import execution_context
    from opencensus.trace.samplers import AlwaysOnSampler
    from opencensus.trace.span import SpanKind as OCSpanKind
    from opencensus.trace.tracer import Tracer

    hub, marker = any_shared_hub, "oc-" + secrets.token_hex(3)
    cs = hub.default["connection_string"]

    exporter = AzureExporter(connection_string=cs, enable_local_storage=False)
    tracer = Tracer(exporter=exporter, sampler=AlwaysOnSampler())
    with tracer.span(name=f"POST /score-{marker}") as span:
        span.span_kind = OCSpanKind.SERVER
        span.add_attribute("http.method", "POST")
        span.add_attribute("http.route", f"/score-{marker}")
        span.add_attribute("http.status_code", 200)
        span.add_attribute("http.url", f"http://127.0.0.1/score-{marker}")
        with tracer.span(name=f"GET /features-{marker}") as child:
            child.span_kind = OCSpanKind.CLIENT
            child.add_attribute("component", "HTTP")
            child.add_attribute("http.method", "GET")
            child.add_attribute("http.status_code", 200)
            child.add_attribute("http.url", "http://features:8080/x")
    trace_id = tracer.span_context.trace_id
    tracer.finish()
    exporter._worker.stop(10)
    execution_context.clean()

    handler = AzureLogHandler(connection_string=cs, enable_local_storage=False)
    logger = logging.getLogger(f"scorewatch.tests.{marker}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.warning("hello %s", marker, extra={"custom_dimensions": {"rows": 3, "model": "ridge"}})
    try:
        raise KeyError(f"boom {marker}")
    except KeyError:
        logger.exception("scoring failed")
    handler.flush()
    handler.close()
    logger.removeHandler(handler)

    req = hub.one("SELECT * FROM requests WHERE operation_Id = ?", (trace_id,))
    assert req["name"] == f"POST /score-{marker}" and req["url"] == f"http://127.0.0.1/score-{marker}"
    assert req["resultCode"] == "200" and req["success"] is True
    dep = hub.one("SELECT * FROM dependencies WHERE operation_Id = ?", (trace_id,))
    assert dep["type"] == "HTTP" and dep["data"] == "http://features:8080/x"
    assert dep["operation_ParentId"] == req["id"]
    trace = hub.one("SELECT * FROM traces WHERE message = ?", (f"hello {marker}",))
    assert trace["severityLevel"] == 2 and '"model":"ridge"' in trace["customDimensions"]
    exc = hub.one("SELECT * FROM exceptions WHERE type = 'KeyError' AND message LIKE ?", (f"%boom {marker}%",))
    assert exc["itemType"] == "exception"


@_LOGGING_HANDLER
def test_opentelemetry_exporter_otlp_proto_http(any_shared_hub: RunningHub) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    hub, marker = any_shared_hub, "otlp-" + secrets.token_hex(3)
    headers = {"x-instrumentation-key": hub.ikey}
    resource = Resource.create({"service.name": f"svc-{marker}"})

    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=f"{hub.url}/v1/traces", headers=headers, compression=Compression.Gzip)))
    trace_id, dep_id = _spans(tracer_provider, marker)

    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(
        OTLPLogExporter(endpoint=f"{hub.url}/v1/logs", headers=headers)))
    _log_hello_and_exception(logger_provider, marker, logging.ERROR)

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{hub.url}/v1/metrics", headers=headers), export_interval_millis=3_600_000)
    meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
    meter = meter_provider.get_meter("scorewatch-tests")
    meter.create_counter(f"scored_{marker}").add(7)
    meter.create_histogram(f"latency_{marker}").record(12.5)
    meter.create_histogram(f"latency_{marker}").record(7.5)
    meter_provider.shutdown()

    _check_spans(hub, marker, trace_id, dep_id)
    trace = hub.one("SELECT * FROM traces WHERE message = ?", (f"hello {marker}",))
    assert trace["severityLevel"] == 3 and trace["cloud_RoleName"] == f"svc-{marker}"
    exc = hub.one("SELECT * FROM exceptions WHERE type = 'ValueError' AND outerMessage = ?", (f"boom {marker}",))
    assert exc["severityLevel"] == 3
    counter = hub.one("SELECT * FROM customMetrics WHERE name = ?", (f"scored_{marker}",))
    assert counter["value"] == 7.0
    hist = hub.one("SELECT * FROM customMetrics WHERE name = ?", (f"latency_{marker}",))
    assert (hist["valueSum"], hist["valueCount"], hist["valueMin"], hist["valueMax"]) == (20.0, 2, 7.5, 12.5)
