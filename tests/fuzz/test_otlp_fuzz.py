"""OTLP bodies under arbitrary and adversarial content: a ScorewatchError or envelopes the store takes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from scorewatch.errors import ScorewatchError
from scorewatch.ingest import otlp
from scorewatch.store.duckdb import DuckDBStore
from scorewatch.store.envelopes import BASE_TYPES
from tests.fuzz.conftest import budget

_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)  # protobuf strings are UTF-8
_u64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63, 2**64 - 1]))
_scalar = st.one_of(_text.map(lambda s: {"string_value": s}), st.integers(-(2**63), 2**63 - 1).map(
    lambda i: {"int_value": i}), st.floats().map(lambda f: {"double_value": f}),
    st.booleans().map(lambda b: {"bool_value": b}), st.binary(max_size=8).map(lambda b: {"bytes_value": b}),
    st.sampled_from(["abc", "NaN", "404", "1e400", "-1"]).map(lambda s: {"string_value": s}))
_any = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3).map(lambda xs: {"array_value": {"values": xs}}),
    st.dictionaries(_text, inner, max_size=3).map(
        lambda d: {"kvlist_value": {"values": [{"key": k, "value": v} for k, v in d.items()]}})), max_leaves=6)
_keys = st.one_of(_text, st.sampled_from(["http.status_code", "http.response.status_code", "exception.type",
                                          "exception.message", "db.system", "url.full", "service.name",
                                          "server.address", "server.port", "http.method"]))
_attributes = st.dictionaries(_keys, _any, max_size=4).map(
    lambda d: [KeyValue(key=k, value=AnyValue(**v)) for k, v in d.items()])


@st.composite
def traces(draw: st.DrawFn) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    rs = message.resource_spans.add()
    rs.resource.attributes.extend(draw(_attributes))
    for _ in range(draw(st.integers(1, 3))):
        span = rs.scope_spans.add().spans.add()
        span.trace_id, span.span_id = draw(st.binary(max_size=16)), draw(st.binary(max_size=8))
        span.parent_span_id = draw(st.binary(max_size=8))
        span.name, span.kind = draw(_text), draw(st.integers(0, 5))
        span.start_time_unix_nano, span.end_time_unix_nano = draw(_u64), draw(_u64)
        span.status.code = draw(st.integers(0, 2))
        span.attributes.extend(draw(_attributes))
        for _ in range(draw(st.integers(0, 2))):
            event = span.events.add()
            event.name, event.time_unix_nano = draw(st.sampled_from(["exception", "log", ""])), draw(_u64)
            event.attributes.extend(draw(_attributes))
    return message


@st.composite
def logs(draw: st.DrawFn) -> ExportLogsServiceRequest:
    message = ExportLogsServiceRequest()
    scope = message.resource_logs.add().scope_logs.add()
    for _ in range(draw(st.integers(1, 3))):
        record = scope.log_records.add()
        record.time_unix_nano, record.observed_time_unix_nano = draw(_u64), draw(_u64)
        record.severity_number = draw(st.integers(0, 24))
        record.body.CopyFrom(AnyValue(**draw(_any)))
        record.attributes.extend(draw(_attributes))
        record.trace_id, record.span_id = draw(st.binary(max_size=16)), draw(st.binary(max_size=8))
    return message


@st.composite
def metrics(draw: st.DrawFn) -> ExportMetricsServiceRequest:
    message = ExportMetricsServiceRequest()
    scope = message.resource_metrics.add().scope_metrics.add()
    for _ in range(draw(st.integers(1, 3))):
        metric = scope.metrics.add()
        metric.name = draw(_text)
        kind = draw(st.sampled_from(["gauge", "sum", "histogram", "summary"]))
        point = getattr(metric, kind).data_points.add()
        point.time_unix_nano = draw(_u64)
        point.attributes.extend(draw(_attributes))
        if kind in ("gauge", "sum"):
            if draw(st.booleans()):
                point.as_double = draw(st.floats())
            else:
                point.as_int = draw(st.integers(-(2**63), 2**63 - 1))
        else:
            point.count, point.sum = draw(_u64), draw(st.floats())
            if kind == "histogram" and draw(st.booleans()):
                point.min, point.max = draw(st.floats()), draw(st.floats())
    return message


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBStore]:
    s = DuckDBStore(Path(tmp_path_factory.mktemp("fuzz")) / "t.duckdb")
    yield s
    s.close()


def _check(store: DuckDBStore, signal: str, body: bytes, content_type: str) -> None:
    try:
        message, _as_json = otlp.parse(signal, body, content_type)
        envelopes = otlp.convert(signal, message, "key-a")
    except ScorewatchError:
        return
    by_table: dict[str, list[str]] = {}
    for base_type, line in envelopes:
        item = orjson.loads(line)  # each envelope is JSON the track path would accept too
        assert item["data"]["baseType"] == base_type
        by_table.setdefault(BASE_TYPES[base_type], []).append(line.decode())
    tables = {t: pa.table({"env": pa.array(lines, pa.large_string()), "appId": ["a"] * len(lines),
                           "appName": ["a"] * len(lines), "iKey": ["key-a"] * len(lines)})
              for t, lines in by_table.items()}
    store.write_envelopes(tables, dry_run=True)  # raises if the store would refuse any


@given(st.one_of(traces().map(lambda m: ("traces", m)), logs().map(lambda m: ("logs", m)),
                 metrics().map(lambda m: ("metrics", m))), st.booleans())
@settings(max_examples=budget(60))
def test_any_export_request_is_stored_or_refused_cleanly(store: DuckDBStore, pair: tuple[str, Any],
                                                         as_json: bool) -> None:
    signal, message = pair
    if as_json:
        body = orjson.dumps(json_format.MessageToDict(message), option=orjson.OPT_SERIALIZE_NUMPY)
        _check(store, signal, body, "application/json")
    else:
        _check(store, signal, message.SerializeToString(), "application/x-protobuf")


@given(st.sampled_from(list(otlp.SIGNALS)), st.binary(max_size=200),
       st.sampled_from(["application/json", "application/x-protobuf"]))
@settings(max_examples=budget(200))
def test_arbitrary_bytes_are_an_answer_never_a_crash(store: DuckDBStore, signal: str, body: bytes,
                                                     content_type: str) -> None:
    _check(store, signal, body, content_type)


@given(st.sampled_from(list(otlp.SIGNALS)), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
              st.floats(allow_nan=False, allow_infinity=False), _text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(
        st.sampled_from(["resourceSpans", "scopeSpans", "spans", "resourceLogs", "scopeLogs", "logRecords",
                         "resourceMetrics", "scopeMetrics", "metrics", "attributes", "traceId", "spanId",
                         "key", "value", "stringValue", "intValue", "body", "gauge", "dataPoints", "asDouble",
                         "kind", "name", "timeUnixNano", "count"]), inner, max_size=4)), max_leaves=15))
@settings(max_examples=budget(200))
def test_arbitrary_json_is_an_answer_never_a_crash(store: DuckDBStore, signal: str, document: Any) -> None:
    _check(store, signal, orjson.dumps(document), "application/json")
