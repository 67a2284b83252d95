"""Telemetry of every type, with every field Application Insights SDKs fill, and a store holding it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from scorewatch.store.duckdb import DuckDBStore
from scorewatch.store.envelopes import BASE_TYPES

APP_ID, APP_NAME, IKEY = "0c9ae5a8-1111-4222-8333-944455556666", "Shop", "6b1c2d3e-aaaa-4bbb-8ccc-0123456789ab"

TAGS = {"ai.operation.id": "op-1", "ai.operation.parentId": "parent-1", "ai.operation.name": "POST /score",
        "ai.operation.syntheticSource": "", "ai.session.id": "session-1", "ai.user.id": "user-1",
        "ai.user.authUserId": "alice", "ai.user.accountId": "account-1", "ai.application.ver": "1.2.3",
        "ai.device.type": "PC", "ai.device.model": "Model X", "ai.device.osVersion": "Linux",
        "ai.location.ip": "10.1.2.0", "ai.location.city": "Oslo", "ai.location.province": "Oslo",
        "ai.location.country": "Norway", "ai.device.browserVersion": "Chrome 120", "ai.cloud.role": "scorer",
        "ai.cloud.roleInstance": "host-1", "ai.internal.sdkVersion": "py3:1.0"}

BASE_DATA: dict[str, dict[str, Any]] = {
    "RequestData": {"id": "req-1", "name": "POST /score", "duration": "00:00:00.0580000", "responseCode": "200",
                    "success": True, "url": "http://svc:5001/score?x=1#frag", "source": "client",
                    "properties": {"Service Name": "ridge", "rows": 3}, "measurements": {"score_ms": 12.5}},
    "RemoteDependencyData": {"id": "dep-1", "name": "GET /features", "duration": "0.00:00:01.5", "resultCode": "200",
                             "success": True, "type": "HTTP", "target": "features:8080",
                             "data": "http://features:8080/features?id=7", "properties": {"k": "v"}},
    "ExceptionData": {"severityLevel": "Error", "problemId": "ValueError at run", "exceptions": [
        {"id": 1, "outerId": 0, "typeName": "ValueError", "message": "bad input", "hasFullStack": True,
         "stack": "Traceback...", "parsedStack": [{"level": 0, "method": "run", "assembly": "score",
                                                    "fileName": "score.py", "line": 12}]},
        {"id": 2, "outerId": 1, "typeName": "KeyError", "message": "'x'", "hasFullStack": False}],
        "properties": {"where": "run"}},
    "MessageData": {"message": "scored 3 rows", "severityLevel": "Warning", "properties": {"logger": "score"}},
    "EventData": {"name": "retrained", "properties": {"by": "cron"}, "measurements": {"rows": 10}},
    "MetricData": {"metrics": [{"name": "batch_rows", "value": 6, "count": 3, "min": 1, "max": 3, "stdDev": 0.5}],
                   "properties": {"model": "ridge"}},
    "PageViewData": {"id": "page-1", "name": "Home", "url": "http://shop/home", "duration": "00:00:02",
                     "properties": {"theme": "dark"}},
    "AvailabilityData": {"id": "run-1", "name": "ping", "duration": "00:00:00.100", "success": False,
                         "runLocation": "West Europe", "message": "timed out", "properties": {"probe": "1"}},
}
TIME = "2026-01-02T03:04:05.1234567Z"


def envelopes(ikey: str = IKEY, *, time: str = TIME, sample_rate: float = 25.0) -> list[dict[str, Any]]:
    """One envelope of each type (sampled at ``sample_rate`` percent: itemCount 100 / rate)."""
    return [{"name": f"Microsoft.ApplicationInsights.{base_type}", "time": time, "iKey": ikey,
             "sampleRate": sample_rate, "tags": TAGS, "data": {"baseType": base_type, "baseData": data}}
            for base_type, data in BASE_DATA.items()]


def write(store: DuckDBStore, items: list[dict[str, Any]], *, app_id: str = APP_ID, app_name: str = APP_NAME,
          ikey: str = IKEY) -> None:
    """Store ``items`` (envelopes) as the hub does: grouped by table, in one transaction."""
    by_table: dict[str, list[str]] = {}
    for item in items:
        by_table.setdefault(BASE_TYPES[item["data"]["baseType"]], []).append(orjson.dumps(item).decode())
    store.write_envelopes({table: pa.table({"env": lines, "appId": [app_id] * len(lines),
                                            "appName": [app_name] * len(lines), "iKey": [ikey] * len(lines)})
                           for table, lines in by_table.items()})


def messages(count: int, *, prefix: str = "m", time: str = TIME) -> list[dict[str, Any]]:
    return [{"time": time, "iKey": IKEY, "data": {"baseType": "MessageData", "baseData": {"message": f"{prefix}{i}"}}}
            for i in range(count)]


def open_store(path: Path) -> DuckDBStore:
    return DuckDBStore(path, threads=1)
