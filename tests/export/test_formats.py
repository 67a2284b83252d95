"""The three export formats, field by field, from a store holding one item of every telemetry type.

Shapes checked against Microsoft's documentation:
- appinsights: "Export telemetry from Application Insights" (the blob path form:
  ``{applicationName}_{instrumentationKey}/{type}/{yyyy-MM-dd}/{HH}/{blobId}_{yyyyMMdd_HHmmss}.blob``,
  resource name lowercase, key without dashes) and "Application Insights Export Data Model" (the
  per-type arrays, ``context``, ``internal.data``, durations in ticks of 100 ns, metric objects);
- diagnostic: Azure Monitor resource logs' storage layout (``insights-logs-{category}/resourceId=
  {resource id}/y=/m=/d=/h=/m=00/PT1H.json``, ``time`` and ``resourceId`` on each record) and the
  column mapping of "Migrate to workspace-based Application Insights resources" (AppRequests, ...),
  with AppMetrics' Sum/Min/Max/ItemCount from the AppMetrics table reference;
- parquet: read back by DuckDB (Hive partitions), equal to the store's rows.
"""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path
from typing import Any

import duckdb
import fsspec
import pytest

from scorewatch.documents import FileDocuments
from scorewatch.export.exporter import Exporter
from scorewatch.export.rules import Rule
from scorewatch.export.targets import Target
from scorewatch.settings import Settings
from scorewatch.store.duckdb import DuckDBStore
from scorewatch.store.schema import TABLES
from tests.export import readback, telemetry
from tests.export.telemetry import APP_ID, APP_NAME, IKEY

EVENT_TIME = "2026-01-02T03:04:05.1234560Z"  # the store keeps microseconds; seven digits as Azure writes


def export(store: DuckDBStore, tmp_path: Path, fmt: str, **rule: Any) -> dict[str, bytes]:
    root = tmp_path / f"out-{fmt}"
    r = Rule(name=fmt, app=APP_NAME, app_id=APP_ID, ikey=IKEY, url=f"file://{root}", format=fmt,
             tables=list(TABLES), start="beginning", **rule)
    exporter = Exporter(store, r, Target.open(r.url, Settings()), FileDocuments(tmp_path / "state" / fmt), max_items=1000)
    while exporter.round():
        pass
    return readback.files(fsspec.filesystem("file"), str(root))


@pytest.fixture
def stored(store: DuckDBStore) -> DuckDBStore:
    telemetry.write(store, telemetry.envelopes())
    return store


def item_id(store: DuckDBStore, table: str) -> str:
    return store.query(f"SELECT itemId FROM {table}").rows[0][0]


def _duration(ticks: float, **extra: Any) -> dict[str, Any]:
    return {**extra, "value": ticks, "count": 1.0, "min": ticks, "max": ticks, "stdDev": 0.0, "sampledValue": ticks}


def test_appinsights_paths_and_documents(stored: DuckDBStore, tmp_path: Path) -> None:
    exported = export(stored, tmp_path, "appinsights")
    folders = {}
    for name in exported:
        match = re.fullmatch(r"shop_6b1c2d3eaaaa4bbb8ccc0123456789ab/(\w+)/\d{4}-\d{2}-\d{2}/\d{2}/"
                             r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}_\d{8}_\d{6}\.blob", name)
        assert match, name
        folders[match.group(1)] = readback.lines({name: exported[name]}, "")
    assert sorted(folders) == sorted(["Requests", "RemoteDependency", "Exceptions", "Messages", "Event",
                                      "Metrics", "PageViews", "Availability"])
    assert all(len(docs) == 1 for docs in folders.values())

    request = folders["Requests"][0]
    assert request["request"] == [{
        "id": "req-1", "name": "POST /score", "count": 4, "responseCode": 200, "success": True,
        "url": "/score?x=1", "urlData": {"host": "svc:5001", "base": "/score", "hashTag": "frag"},
        "durationMetric": _duration(580000.0)}]
    assert request["internal"] == {"data": {"id": item_id(stored, "requests"), "documentVersion": "1.61"}}
    assert request["context"] == {
        "data": {"eventTime": EVENT_TIME, "isSynthetic": False, "samplingRate": 25.0},
        "device": {"type": "PC", "deviceModel": "Model X", "osVersion": "Linux", "browserVersion": "Chrome 120",
                   "roleName": "scorer", "roleInstance": "host-1"},
        "application": {"version": "1.2.3"},
        "location": {"clientip": "10.1.2.0", "city": "Oslo", "province": "Oslo", "country": "Norway"},
        "user": {"anonId": "user-1", "authId": "alice", "accountId": "account-1", "isAuthenticated": True},
        "session": {"id": "session-1"},
        "operation": {"id": "op-1", "parentId": "parent-1", "name": "POST /score"},
        "cloud": {},
        "custom": {"dimensions": [{"Service Name": "ridge"}, {"rows": "3"}],
                   "metrics": [{"score_ms": _duration(12.5)}]}}

    assert folders["RemoteDependency"][0]["remoteDependency"] == [{
        "id": "dep-1", "name": "GET /features", "count": 4, "type": "HTTP", "dependencyTypeName": "HTTP",
        "resultCode": "200", "success": True, "commandName": "http://features:8080/features?id=7",
        "url": "http://features:8080/features?id=7",
        "urlData": {"host": "features:8080", "base": "/features", "hashTag": ""},
        "durationMetric": _duration(15_000_000.0)}]
    outer, inner = folders["Exceptions"][0]["basicException"]
    assert outer == {
        "count": 4, "typeName": "ValueError", "exceptionType": "ValueError", "message": "bad input",
        "assembly": "score", "method": "run", "handledAt": "UserCode", "exceptionGroup": "ValueError at run",
        "failedUserCodeAssembly": "score", "failedUserCodeMethod": "run", "outerExceptionType": "ValueError",
        "outerExceptionMessage": "bad input", "outerExceptionThrownAtAssembly": "score",
        "outerExceptionThrownAtMethod": "run", "id": 1, "outerId": 0, "hasFullStack": True, "stack": "Traceback...",
        "parsedStack": [{"level": 0, "method": "run", "assembly": "score", "fileName": "score.py", "line": 12}]}
    assert inner == {"id": 2, "outerId": 1, "typeName": "KeyError", "message": "'x'", "hasFullStack": False}
    assert folders["Messages"][0]["message"] == [{"raw": "scored 3 rows", "severityLevel": "Warning"}]
    event = folders["Event"][0]
    assert event["event"] == [{"name": "retrained", "count": 4}]
    assert event["context"]["custom"] == {"dimensions": [{"by": "cron"}], "metrics": [{"rows": _duration(10)}]}
    metric = folders["Metrics"][0]
    assert metric["metric"] == []  # "The metric value is found in context.custom.metrics[0]"
    assert metric["context"]["custom"]["metrics"] == [{"batch_rows": {
        "value": 6.0, "count": 3.0, "min": 1.0, "max": 3.0, "stdDev": 0.5, "sampledValue": 6.0, "sum": 6.0}}]
    assert folders["PageViews"][0]["view"] == [{
        "name": "Home", "count": 4, "url": "http://shop/home", "urlData": {"host": "shop", "base": "/home", "hashTag": ""},
        "durationMetric": _duration(20_000_000.0)}]
    assert folders["Availability"][0]["availability"] == [{
        "testName": "ping", "testRunId": "run-1", "testTimestamp": EVENT_TIME, "runLocation": "West Europe",
        "message": "timed out", "count": 4, "result": "Fail", "availabilityMetric": {"name": "availability", "value": 0.0},
        "durationMetric": _duration(1_000_000.0, name="duration")}]
    for table, folder in (("traces", "Messages"), ("availabilityResults", "Availability")):
        assert folders[folder][0]["internal"]["data"]["id"] == item_id(stored, table)


RESOURCE = "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/SCOREWATCH/PROVIDERS/" \
           "MICROSOFT.INSIGHTS/COMPONENTS/SHOP"
COMMON = {"time": EVENT_TIME, "resourceId": RESOURCE, "TimeGenerated": EVENT_TIME, "OperationName": "POST /score",
          "OperationId": "op-1", "ParentId": "parent-1", "SyntheticSource": "", "SessionId": "session-1",
          "UserId": "user-1", "UserAuthenticatedId": "alice", "UserAccountId": "account-1", "AppVersion": "1.2.3",
          "ClientType": "PC", "ClientModel": "Model X", "ClientOS": "Linux", "ClientIP": "10.1.2.0",
          "ClientCity": "Oslo", "ClientStateOrProvince": "Oslo", "ClientCountryOrRegion": "Norway",
          "ClientBrowser": "Chrome 120", "AppRoleName": "scorer", "AppRoleInstance": "host-1", "ResourceGUID": APP_ID,
          "IKey": IKEY, "SDKVersion": "py3:1.0", "_ResourceId": RESOURCE.lower()}


def test_diagnostic_paths_and_records(stored: DuckDBStore, tmp_path: Path) -> None:
    exported = export(stored, tmp_path, "diagnostic")
    categories = ["AppRequests", "AppDependencies", "AppExceptions", "AppTraces", "AppEvents", "AppMetrics",
                  "AppPageViews", "AppAvailabilityResults"]
    assert sorted(exported) == sorted(f"insights-logs-{c.lower()}/resourceId={RESOURCE}/y=2026/m=01/d=02/h=03/m=00/PT1H.json"
                                      for c in categories)
    records = {c: readback.lines(exported, f"insights-logs-{c.lower()}/") for c in categories}
    assert all(len(r) == 1 for r in records.values())

    assert records["AppRequests"][0] == {
        **COMMON, "Type": "AppRequests", "Id": "req-1", "Source": "client", "Name": "POST /score",
        "Url": "http://svc:5001/score?x=1#frag", "Success": True, "ResultCode": "200", "DurationMs": 58.0,
        "PerformanceBucket": "<250ms", "Properties": {"Service Name": "ridge", "rows": 3},
        "Measurements": {"score_ms": 12.5}, "_ItemId": item_id(stored, "requests"), "ItemCount": 4}
    own = {
        "AppDependencies": {"Id": "dep-1", "Target": "features:8080", "DependencyType": "HTTP", "Name": "GET /features",
                            "Data": "http://features:8080/features?id=7", "Success": True, "ResultCode": "200",
                            "DurationMs": 1500.0, "PerformanceBucket": "1sec-3sec", "Properties": {"k": "v"}},
        "AppExceptions": {"ProblemId": "ValueError at run", "HandledAt": "UserCode", "ExceptionType": "ValueError",
                          "Message": "bad input", "Assembly": "score", "Method": "run", "OuterType": "ValueError",
                          "OuterMessage": "bad input", "OuterAssembly": "score", "OuterMethod": "run",
                          "InnermostType": "KeyError", "InnermostMessage": "'x'", "SeverityLevel": 3,
                          "Properties": {"where": "run"}},
        "AppTraces": {"Message": "scored 3 rows", "SeverityLevel": 2, "Properties": {"logger": "score"}},
        "AppEvents": {"Name": "retrained", "Properties": {"by": "cron"}, "Measurements": {"rows": 10}},
        "AppMetrics": {"Name": "batch_rows", "Sum": 6.0, "Min": 1.0, "Max": 3.0, "ItemCount": 3,
                       "Properties": {"model": "ridge"}},
        "AppPageViews": {"Id": "page-1", "Name": "Home", "Url": "http://shop/home", "DurationMs": 2000.0,
                         "PerformanceBucket": "1sec-3sec", "Properties": {"theme": "dark"}},
        "AppAvailabilityResults": {"Id": "run-1", "Name": "ping", "Location": "West Europe", "Success": False,
                                   "Message": "timed out", "DurationMs": 100.0, "PerformanceBucket": "<250ms",
                                   "Properties": {"probe": "1"}},
    }
    for category, fields in own.items():
        record = records[category][0]
        assert record["Type"] == category
        assert {k: record[k] for k in fields} == fields, category
        assert {k: record[k] for k in COMMON} == COMMON, category
    assert records["AppExceptions"][0]["Details"][1]["typeName"] == "KeyError"
    assert "Value" not in records["AppMetrics"][0] and "ValueStdDev" not in records["AppMetrics"][0]  # removed


def test_diagnostic_resource_id_of_the_rule(stored: DuckDBStore, tmp_path: Path) -> None:
    resource = "/subscriptions/1234/resourceGroups/ml/providers/microsoft.insights/components/shop-ai"
    exported = export(stored, tmp_path, "diagnostic", resource_id=resource)
    upper = resource.upper()
    assert all(name.split("/")[1:7] == ["resourceId=", *upper.strip("/").split("/")[:5]] for name in exported)
    assert {r["resourceId"] for r in readback.lines(exported, "")} == {upper}


def test_parquet_read_back_by_duckdb_equals_the_store(stored: DuckDBStore, tmp_path: Path) -> None:
    exported = export(stored, tmp_path, "parquet")
    assert all(re.fullmatch(r"table=\w+/date=2026-01-02/hour=3/[0-9a-f]{12}-0-8\.parquet", n) for n in exported)
    root = tmp_path / "out-parquet"
    for table, columns in TABLES.items():
        names = ", ".join(f'"{c.name}"' for c in columns)
        store_rows = stored.query(f"SELECT {names} FROM {table} ORDER BY itemId").rows
        read = duckdb.sql(f"SELECT {names}, \"date\", \"hour\", \"table\" FROM read_parquet("
                          f"'{root}/table={table}/**/*.parquet', hive_partitioning = true) ORDER BY itemId").fetchall()
        assert len(read) == len(store_rows) >= 1, table
        for got, want in zip(read, store_rows, strict=True):
            got = list(got)
            assert got[-3:] == [store_rows[0][0].date(), 3, table]  # partitions: typed by DuckDB
            got = got[:-3]
            got[0] = got[0].astimezone(UTC).replace(tzinfo=None)  # written as UTC-adjusted timestamps
            assert got == want, table
    maps = duckdb.sql(f"SELECT customDimensionsMap, customMeasurementsMap FROM read_parquet('{root}/table=requests/**/*.parquet')").fetchall()
    assert maps == [({"Service Name": "ridge", "rows": "3"}, {"score_ms": 12.5})]


def test_parquet_splits_a_round_by_hour(store: DuckDBStore, tmp_path: Path) -> None:
    telemetry.write(store, telemetry.messages(3, prefix="a", time="2026-01-02T03:59:59Z")
                    + telemetry.messages(2, prefix="b", time="2026-01-02T04:00:00Z"))
    exported = export(store, tmp_path, "parquet")
    assert sorted(n.rsplit("/", 1)[0] for n in exported) == ["table=traces/date=2026-01-02/hour=3",
                                                            "table=traces/date=2026-01-02/hour=4"]
    read = duckdb.sql(f"SELECT hour, count(*) FROM read_parquet('{tmp_path}/out-parquet/**/*.parquet', "
                      "hive_partitioning = true) GROUP BY hour ORDER BY hour").fetchall()
    assert read == [(3, 3), (4, 2)]


def test_the_duckdb_recipes_of_the_docs_read_each_format_back(stored: DuckDBStore, tmp_path: Path) -> None:
    """docs/export.md's SQL, run as written against an export of each format."""
    roots = {"/data/shop": "parquet", "/data/legacy": "appinsights", "/data/diag": "diagnostic"}
    for fmt in roots.values():
        export(stored, tmp_path, fmt)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "export.md").read_text()
    recipe = docs.split("### Reading an export back with DuckDB")[1].split("```sql\n")[1].split("```")[0]
    for path, fmt in roots.items():
        recipe = recipe.replace(path, str(tmp_path / f"out-{fmt}"))
    results = [duckdb.sql(statement.query).fetchall() for statement in duckdb.extract_statements(recipe)]
    assert len(results) == 4
    assert sorted(r[0] for r in results[0]) == sorted(TABLES) and all(r[3] == 1 for r in results[0])
    assert results[1] == [("ridge", 58.0)]
    assert [(r[0], r[1], r[2], str(r[3])) for r in results[2]] == [("POST /score", 200, 58.0, item_id(stored, "requests"))]
    assert results[3] == [("POST /score", "200", 58.0, "ridge")]
