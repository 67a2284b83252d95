"""The Application Insights track protocol at a real hub: body forms, per-item answers, every baseType."""

from __future__ import annotations

import gzip
import secrets
from typing import Any

import httpx
import orjson

from tests.ingest.conftest import RunningHub


def envelope(ikey: str, base_type: str, base_data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": f"Microsoft.ApplicationInsights.{base_type}", "time": "2026-01-02T03:04:05.1234567Z",
            "iKey": ikey, "tags": {"ai.operation.id": extra.pop("op", "op-1"), "ai.cloud.role": "svc"},
            "data": {"baseType": base_type, "baseData": base_data}, **extra}


def post(hub: RunningHub, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{hub.url}/v2.1/track", content=body, headers=headers)


def test_every_base_type_lands_in_its_table(any_shared_hub: RunningHub) -> None:
    hub, op = any_shared_hub, secrets.token_hex(16)
    items = [
        envelope(hub.ikey, "RequestData", {"id": "r1", "name": "POST /score", "duration": "0.00:00:00.058",
                                           "responseCode": 500, "success": "False", "url": "http://h/score"}, op=op),
        envelope(hub.ikey, "RemoteDependencyData", {"id": "d1", "name": "GET /x", "duration": "00:00:01.5000000",
                                                    "resultCode": "200", "success": True, "type": "HTTP",
                                                    "target": "x", "data": "http://x/"}, op=op),
        envelope(hub.ikey, "ExceptionData", {"severityLevel": "Error", "exceptions": [
            {"typeName": "ValueError", "message": "outer", "parsedStack": [{"method": "run", "assembly": "score"}]},
            {"typeName": "KeyError", "message": "inner"}]}, op=op),
        envelope(hub.ikey, "MessageData", {"message": "hello", "severityLevel": "Warning"}, op=op),
        envelope(hub.ikey, "EventData", {"name": "retrained", "measurements": {"rows": 10}}, op=op),
        envelope(hub.ikey, "MetricData", {"metrics": [{"name": "m1", "value": 6, "count": 3, "min": 1, "max": 3},
                                                      {"name": "m2", "value": 1.5}]}, op=op),
        envelope(hub.ikey, "PageViewData", {"id": "p1", "name": "home", "url": "http://h/", "duration": "00:00:02"},
                 op=op),
        envelope(hub.ikey, "AvailabilityData", {"id": "a1", "name": "ping", "duration": "00:00:00.100",
                                                "success": True, "runLocation": "here", "message": "ok"}, op=op),
    ]
    response = post(hub, orjson.dumps(items))
    assert response.status_code == 200
    assert response.json() == {"itemsReceived": 8, "itemsAccepted": 8, "errors": []}

    req = hub.one("SELECT * FROM requests WHERE operation_Id = ?", (op,))
    assert (req["duration"], req["performanceBucket"], req["resultCode"], req["success"]) == (58.0, "<250ms", "500", False)
    assert str(req["timestamp"]) == "2026-01-02 03:04:05.123456"
    assert req["itemType"] == "request" and req["itemCount"] == 1 and len(req["itemId"]) == 36
    dep = hub.one("SELECT * FROM dependencies WHERE operation_Id = ?", (op,))
    assert (dep["duration"], dep["performanceBucket"], dep["success"], dep["type"]) == (1500.0, "1sec-3sec", True, "HTTP")
    exc = hub.one("SELECT * FROM exceptions WHERE operation_Id = ?", (op,))
    assert (exc["type"], exc["outerMessage"], exc["innermostType"], exc["method"], exc["severityLevel"]) == (
        "ValueError", "outer", "KeyError", "run", 3)
    trace = hub.one("SELECT * FROM traces WHERE operation_Id = ?", (op,))
    assert (trace["message"], trace["severityLevel"]) == ("hello", 2)
    event = hub.one("SELECT * FROM customEvents WHERE operation_Id = ?", (op,))
    assert event["name"] == "retrained" and orjson.loads(event["customMeasurements"]) == {"rows": 10}
    metrics = hub.rows("SELECT name, value, valueCount, valueMin, valueMax FROM customMetrics "
                       "WHERE operation_Id = ? ORDER BY name", (op,))
    assert metrics == [["m1", 6.0, 3, 1.0, 3.0], ["m2", 1.5, 1, 1.5, 1.5]]
    page = hub.one("SELECT * FROM pageViews WHERE operation_Id = ?", (op,))
    assert (page["duration"], page["performanceBucket"]) == (2000.0, "1sec-3sec")
    avail = hub.one("SELECT * FROM availabilityResults WHERE operation_Id = ?", (op,))
    assert (avail["location"], avail["success"], avail["duration"]) == ("here", True, 100.0)


def test_ndjson_with_crlf_and_blank_lines_gzip_by_magic(any_shared_hub: RunningHub) -> None:
    hub, op = any_shared_hub, secrets.token_hex(16)
    lines = [orjson.dumps(envelope(hub.ikey, "MessageData", {"message": f"line {i}"}, op=op)) for i in range(3)]
    body = b"\r\n" + b"\r\n\r\n".join(lines) + b"\r\n\r\n"
    assert post(hub, gzip.compress(body)).json()["itemsAccepted"] == 3  # no Content-Encoding header
    assert hub.rows("SELECT message FROM traces WHERE operation_Id = ? ORDER BY message", (op,)) == [
        ["line 0"], ["line 1"], ["line 2"]]


def test_gzip_by_header_and_single_object(any_shared_hub: RunningHub) -> None:
    hub, op = any_shared_hub, secrets.token_hex(16)
    body = orjson.dumps(envelope(hub.ikey, "EventData", {"name": "one"}, op=op), option=orjson.OPT_INDENT_2)
    response = post(hub, gzip.compress(body), **{"Content-Encoding": "gzip"})
    assert response.status_code == 200 and response.json()["itemsAccepted"] == 1
    assert hub.rows("SELECT name FROM customEvents WHERE operation_Id = ?", (op,)) == [["one"]]


def test_tolerance_real_sdks_need(any_shared_hub: RunningHub) -> None:
    hub, op = any_shared_hub, secrets.token_hex(16)
    item = envelope(hub.ikey, "RequestData", {
        "id": None, "name": "POST /score", "duration": None, "responseCode": None, "success": None,
        "properties": {"rows": 3, "ok": True, "nested": {"a": [1, 2]}, "text": "x"},
        "measurements": {"latency": 1.5}}, op=op, sampleRate=25.0)
    item["time"] = "2026-01-02T03:04:05.5"  # no zone: UTC
    assert post(hub, orjson.dumps([item])).json()["itemsAccepted"] == 1
    req = hub.one("SELECT * FROM requests WHERE operation_Id = ?", (op,))
    assert str(req["timestamp"]) == "2026-01-02 03:04:05.500000"
    assert req["itemCount"] == 4
    assert req["duration"] is None and req["success"] is None and req["performanceBucket"] is None
    assert orjson.loads(req["customDimensions"]) == {"rows": 3, "ok": True, "nested": {"a": [1, 2]}, "text": "x"}
    assert orjson.loads(req["customMeasurements"]) == {"latency": 1.5}


def test_bookkeeping_metrics_are_accepted_not_stored(any_shared_hub: RunningHub) -> None:
    hub, op = any_shared_hub, secrets.token_hex(16)
    items = [envelope(hub.ikey, "MetricData", {"metrics": [{"name": "_OTELRESOURCE_", "value": 0}]}, op=op),
             envelope(hub.ikey, "MetricData", {"metrics": [{"name": "Item_Success_Count", "value": 9}]}, op=op),
             envelope(hub.ikey, "MetricData", {"metrics": [{"name": "real", "value": 1}]}, op=op)]
    assert post(hub, orjson.dumps(items)).json() == {"itemsReceived": 3, "itemsAccepted": 3, "errors": []}
    assert hub.rows("SELECT name FROM customMetrics WHERE operation_Id = ?", (op,)) == [["real"]]


def test_partial_success_206_names_each_refused_item(any_shared_hub: RunningHub) -> None:
    hub, op = any_shared_hub, secrets.token_hex(16)
    good = envelope(hub.ikey, "MessageData", {"message": "kept"}, op=op)
    items = [good, envelope("00000000-0000-0000-0000-000000000000", "MessageData", {"message": "x"}), 42,
             envelope(hub.ikey, "NoSuchData", {}), {**good, "data": {"baseType": "MessageData", "baseData": "x"}},
             {**good, "iKey": {"not": "a string"}}, {**good, "data": {"baseType": ["list"], "baseData": {}}},
             envelope(hub.ikey, "MetricData", {"metrics": [{"name": ["odd"], "value": 1}]}, op=op)]
    response = post(hub, orjson.dumps(items))
    assert response.status_code == 206
    body = response.json()
    assert (body["itemsReceived"], body["itemsAccepted"]) == (8, 2)
    assert [(e["index"], e["statusCode"]) for e in body["errors"]] == [(i, 400) for i in range(1, 7)]
    assert "instrumentation key" in body["errors"][0]["message"]
    assert hub.rows("SELECT message FROM traces WHERE operation_Id = ?", (op,)) == [["kept"]]


def test_nothing_usable_is_400(any_shared_hub: RunningHub) -> None:
    hub = any_shared_hub
    unknown = [envelope("11111111-1111-1111-1111-111111111111", "MessageData", {"message": "x"})]
    response = post(hub, orjson.dumps(unknown))
    assert response.status_code == 400 and response.json()["itemsAccepted"] == 0
    for body in (b"", b"not json", b"[1, 2", b"\x1f\x8bnot gzip", b"[]"):
        response = post(hub, body)
        assert response.status_code == 400, body
        assert "error" in response.json() or response.json()["itemsAccepted"] == 0
    assert httpx.post(f"{hub.url}/v2/track", content=orjson.dumps(unknown)).status_code == 400


def test_v2_track_and_health_and_metrics(any_shared_hub: RunningHub) -> None:
    hub, op = any_shared_hub, secrets.token_hex(16)
    item = envelope(hub.ikey, "MessageData", {"message": "v2"}, op=op)
    assert httpx.post(f"{hub.url}/v2/track", content=orjson.dumps([item])).status_code == 200
    assert hub.rows("SELECT message FROM traces WHERE operation_Id = ?", (op,)) == [["v2"]]
    assert httpx.get(f"{hub.url}/health").json()["status"] == "ok"
    text = httpx.get(f"{hub.url}/metrics").text
    for name in ("scorewatch_ingest_items_received_total{protocol=\"track\"}",
                 "scorewatch_ingest_items_accepted_total{protocol=\"track\"}",
                 "scorewatch_ingest_queue_items", "scorewatch_store_batch_write_seconds_count",
                 "scorewatch_store_size_bytes"):
        assert name in text
    assert 'scorewatch_ingest_items_refused_total{reason="unknown_key"}' in text
