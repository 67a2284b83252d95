"""OTLP/HTTP by hand: JSON with hex ids, protobuf, gzip, chunked bodies, and the key header."""

from __future__ import annotations

import gzip
import secrets
import time
from collections.abc import Iterator

import httpx
import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tests.ingest.conftest import RunningHub


def _span_json(trace_id: str, span_id: str, kind: int, name: str, **attrs: object) -> dict:
    now = time.time_ns()
    return {"traceId": trace_id, "spanId": span_id, "name": name, "kind": kind,
            "startTimeUnixNano": str(now - 42_000_000), "endTimeUnixNano": str(now),
            "attributes": [{"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
                           for k, v in attrs.items()],
            "status": {}}


def test_json_traces_with_hex_ids(any_shared_hub: RunningHub) -> None:
    hub = any_shared_hub
    trace_id, server_id, client_id = secrets.token_hex(16), secrets.token_hex(8), secrets.token_hex(8)
    server = _span_json(trace_id, server_id, 2, "POST /json", **{"http.response.status_code": 201})
    client = _span_json(trace_id, client_id, 3, "SELECT", **{"db.system": "postgresql", "db.name": "shop"})
    client["parentSpanId"] = server_id
    body = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name",
                                                            "value": {"stringValue": "json-svc"}}]},
                               "scopeSpans": [{"scope": {"name": "t"}, "spans": [server, client]}]}]}
    response = httpx.post(f"{hub.url}/v1/traces", content=orjson.dumps(body),
                          headers={"content-type": "application/json", "x-instrumentation-key": hub.ikey})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    req = hub.one("SELECT * FROM requests WHERE operation_Id = ?", (trace_id,))
    assert (req["id"], req["name"], req["resultCode"], req["success"]) == (server_id, "POST /json", "201", True)
    assert 41.0 <= req["duration"] <= 43.0 and req["cloud_RoleName"] == "json-svc"
    dep = hub.one("SELECT * FROM dependencies WHERE operation_Id = ?", (trace_id,))
    assert (dep["id"], dep["operation_ParentId"], dep["type"], dep["target"]) == (
        client_id, server_id, "postgresql", "shop")


def test_protobuf_logs_gzip_chunked(any_shared_hub: RunningHub) -> None:
    hub = any_shared_hub
    marker = secrets.token_hex(4)
    message = ExportLogsServiceRequest()
    records = message.resource_logs.add().scope_logs.add().log_records
    info = records.add(time_unix_nano=time.time_ns(), severity_number=9)
    info.body.string_value = f"info {marker}"
    attr = info.attributes.add(key="rows")
    attr.value.int_value = 3
    fatal = records.add(time_unix_nano=time.time_ns(), severity_number=21)
    fatal.body.string_value = f"fatal {marker}"
    body = gzip.compress(message.SerializeToString())

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding chunked
        for i in range(0, len(body), 7):
            yield body[i:i + 7]

    response = httpx.post(f"{hub.url}/v1/logs", content=chunks(),
                          headers={"content-type": "application/x-protobuf", "content-encoding": "gzip",
                                   "x-instrumentation-key": hub.ikey})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    rows = hub.rows("SELECT message, severityLevel, customDimensions FROM traces WHERE message LIKE ? "
                    "ORDER BY severityLevel", (f"% {marker}",))
    assert [(r[0], r[1]) for r in rows] == [(f"info {marker}", 1), (f"fatal {marker}", 4)]
    assert orjson.loads(rows[0][2]) == {"rows": 3}


def test_key_header_is_required_and_checked(any_shared_hub: RunningHub) -> None:
    hub = any_shared_hub
    body = orjson.dumps({"resourceLogs": []})
    headers = {"content-type": "application/json"}
    assert httpx.post(f"{hub.url}/v1/logs", content=body, headers=headers).status_code == 401
    wrong = {**headers, "x-instrumentation-key": "not-a-key"}
    assert httpx.post(f"{hub.url}/v1/logs", content=body, headers=wrong).status_code == 403
    ok = {**headers, "x-instrumentation-key": hub.ikey}
    assert httpx.post(f"{hub.url}/v1/logs", content=body, headers=ok).status_code == 200


def test_bad_bodies_are_clear_errors(any_shared_hub: RunningHub) -> None:
    hub = any_shared_hub
    key = {"x-instrumentation-key": hub.ikey}
    cases = [(b"\x0a\xff\xff", "application/x-protobuf", 400), (b"{nope", "application/json", 400),
             (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}', "application/json", 400),
             (b"x", "text/csv", 415)]
    for body, content_type, status in cases:
        response = httpx.post(f"{hub.url}/v1/traces", content=body, headers={**key, "content-type": content_type})
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["message"]


def test_status_codes_that_are_not_numbers_and_huge_histogram_counts_are_stored(any_shared_hub: RunningHub) -> None:
    """"abc" or NaN as http.status_code was a 500 (which SDKs retry for ever); a cumulative histogram
    whose count passed 2^31 took its whole export with it."""
    hub = any_shared_hub
    trace_id = secrets.token_hex(16)
    spans = []
    for code in ({"stringValue": "abc"}, {"doubleValue": "NaN"}, {"doubleValue": "Infinity"}, {"intValue": "503"}):
        span = _span_json(trace_id, secrets.token_hex(8), 2, "GET /odd")
        span["attributes"] = [{"key": "http.status_code", "value": code}]
        spans.append(span)
    body = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
    response = httpx.post(f"{hub.url}/v1/traces", content=orjson.dumps(body),
                          headers={"content-type": "application/json", "x-instrumentation-key": hub.ikey})
    assert response.status_code == 200, response.text
    rows = hub.rows("SELECT resultCode, success FROM requests WHERE operation_Id = ? ORDER BY resultCode",
                    (trace_id,))
    assert rows == [["503", False], ["abc", True], ["inf", True], ["nan", True]]
    name = f"latency-{secrets.token_hex(4)}"
    metrics = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": name, "histogram": {
        "aggregationTemporality": 2, "dataPoints": [{"count": str(2**31 + 7), "sum": 1e12,
                                                     "timeUnixNano": str(time.time_ns())}]}}]}]}]}
    response = httpx.post(f"{hub.url}/v1/metrics", content=orjson.dumps(metrics),
                          headers={"content-type": "application/json", "x-instrumentation-key": hub.ikey})
    assert response.status_code == 200, response.text
    assert hub.rows("SELECT valueCount, value FROM customMetrics WHERE name = ?", (name,)) == [[2**31 - 1, 1e12]]
