"""The three shapes an export writes, from the store's rows (Arrow tables, see ``Store.export_rows``).

- ``appinsights``: classic continuous export. One blob of JSON lines per telemetry type and round, at
  ``{app}_{ikey without dashes}/{Type}/{yyyy-MM-dd}/{HH}/{blobId}_{yyyyMMdd_HHmmss}.blob`` (date and
  hour of delivery, UTC), each line shaped as Microsoft's "Application Insights Export Data Model"
  (``request``/``message``/``basicException``/... arrays, ``context``, ``internal.data.id``;
  durations in ticks of 100 ns). Paths: "Export telemetry from Application Insights" (the path form
  under "Inspect the data").
- ``diagnostic``: diagnostic settings of workspace-based Application Insights. JSON lines appended to
  ``insights-logs-{category}/resourceId={resource id}/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`` (the
  hour of each row's time; Azure Monitor's resource-log blob naming), one object per row with
  ``time`` and ``resourceId`` and the workspace table's columns (``AppRequests``: ``TimeGenerated``,
  ``Id``, ``Name``, ``DurationMs``, ``Properties``, ...; the classic → workspace column mapping of
  "Migrate to workspace-based Application Insights resources").
- ``parquet``: Hive-partitioned ``table=…/date=YYYY-MM-DD/hour=HH/…parquet`` files with the store's
  typed columns, timestamps in UTC, ``customDimensions`` (and ``customMeasurements``) as JSON text
  and as a map.

docs/export.md shows a sample of each and where each field comes from.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scorewatch.export.rules import Rule, default_resource_id
from scorewatch.store.schema import POSITION

_HOUR_US = 3_600_000_000
# Rows the JSON formats hold as Python objects at a time. Their lines are joined per such part: a
# bytes object from orjson.dumps keeps ~16 KiB allocated whatever its length, so 100,000 of them
# held until the end of a round took ~1.5 GiB.
_ROWS_AT_ONCE = 1_000
_BLOB_IDS = uuid.UUID("5c0e3a7e-17e4-4c55-9a3e-000000000017")  # namespace of the classic blob ids


@dataclass(frozen=True)
class Batch:
    """One export round: the rows stored at positions (``start``, ``end``], delivered at ``time``."""

    rule: Rule
    start: int
    end: int
    time: datetime  # UTC


@dataclass
class Output:
    """One file of a round: a whole new file, or (``append``) bytes added to the end of one."""

    name: str
    data: bytes
    append: bool = False


class Format(Protocol):
    maps: bool  # wants the rows' maps (Store.export_rows(maps=True))

    def render(self, table: str, rows: pa.Table, batch: Batch) -> list[Output]: ...


def iso_times(column: pa.ChunkedArray | pa.Array) -> list[str]:
    """UTC times as Application Insights writes them (seven digits of fraction, ``Z``), for a column
    of timestamps at once (Arrow's strftime gives microseconds with ``%S``)."""
    text = pc.strftime(pc.fill_null(column, 0), format="%Y-%m-%dT%H:%M:%S").to_pylist()
    return [t + "0Z" if "." in t else t + ".0000000Z" for t in text]


# ---------------------------------------------------------------------------------------------------
# appinsights: classic continuous export

CLASSIC_FOLDERS = {"requests": "Requests", "dependencies": "RemoteDependency", "exceptions": "Exceptions",
                   "traces": "Messages", "customEvents": "Event", "customMetrics": "Metrics",
                   "pageViews": "PageViews", "availabilityResults": "Availability"}
SEVERITY_NAMES = {0: "Verbose", 1: "Information", 2: "Warning", 3: "Error", 4: "Critical"}


def _some(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _ticks(ms: float | None) -> float | None:
    return None if ms is None else ms * 10_000


def _metric(value: float | None, **extra: Any) -> dict[str, Any]:
    """The export data model's metric object (count, min, max, stdDev, sampledValue)."""
    return {**extra, "value": value, "count": 1.0, "min": value, "max": value, "stdDev": 0.0, "sampledValue": value}


def _url_data(url: str | None) -> dict[str, Any]:
    if not url:
        return {}
    parts = urlsplit(url)
    return {"host": parts.netloc, "base": parts.path, "hashTag": parts.fragment}


def _dimensions(text: str | None) -> list[dict[str, str]]:
    """``customDimensions`` as the export data model's list of one-pair objects (values as strings)."""
    if not text:
        return []
    data = orjson.loads(text)
    if not isinstance(data, dict):
        return []
    return [{k: v if isinstance(v, str) else orjson.dumps(v).decode()} for k, v in data.items()]


def _measurements(text: str | None) -> list[dict[str, Any]]:
    if not text:
        return []
    data = orjson.loads(text)
    if not isinstance(data, dict):
        return []
    return [{k: _metric(v)} for k, v in data.items() if isinstance(v, int | float)]


# context section → (its field, the store column), in the export data model's names and order
_CONTEXT = (
    ("device", (("type", "client_Type"), ("deviceModel", "client_Model"), ("osVersion", "client_OS"),
                ("browserVersion", "client_Browser"), ("roleName", "cloud_RoleName"),
                ("roleInstance", "cloud_RoleInstance"))),
    ("application", (("version", "application_Version"),)),
    ("location", (("clientip", "client_IP"), ("city", "client_City"), ("province", "client_StateOrProvince"),
                  ("country", "client_CountryOrRegion"))),
    ("user", (("anonId", "user_Id"), ("authId", "user_AuthenticatedId"), ("accountId", "user_AccountId"))),
    ("session", (("id", "session_Id"),)),
    ("operation", (("id", "operation_Id"), ("parentId", "operation_ParentId"), ("name", "operation_Name"))),
)


def _context(r: dict[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = {"data": {"eventTime": r["eventTime"], "isSynthetic": bool(r["operation_SyntheticSource"]),
                                        "samplingRate": 100.0 / (r["itemCount"] or 1)}}
    for section, fields in _CONTEXT:  # fields the item does not have are left out
        context[section] = {key: r[column] for key, column in fields if r[column] is not None}
    context["user"]["isAuthenticated"] = bool(r["user_AuthenticatedId"])
    context["cloud"] = {}
    context["custom"] = {"dimensions": _dimensions(r["customDimensions"]),
                         "metrics": _measurements(r.get("customMeasurements"))}
    return context


def _response_code(code: str | None) -> int | str | None:
    return int(code) if code and code.isdigit() else code


def _request(r: dict[str, Any]) -> dict[str, Any]:
    parts = urlsplit(r["url"] or "")
    return {"id": r["id"], "name": r["name"], "count": r["itemCount"], "responseCode": _response_code(r["resultCode"]),
            "success": r["success"], "url": parts.path + (f"?{parts.query}" if parts.query else ""),  # no host
            "urlData": _url_data(r["url"]), "durationMetric": _metric(_ticks(r["duration"]))}


def _dependency(r: dict[str, Any]) -> dict[str, Any]:
    is_url = bool(r["data"]) and "://" in r["data"]
    return _some(id=r["id"], name=r["name"], count=r["itemCount"], type=r["type"], dependencyTypeName=r["type"],
                 resultCode=r["resultCode"], success=r["success"], commandName=r["data"],
                 url=r["data"] if is_url else None,
                 urlData=_url_data(r["data"]) if is_url else _some(host=r["target"]),
                 durationMetric=_metric(_ticks(r["duration"])))


def _exceptions(r: dict[str, Any]) -> list[dict[str, Any]]:
    chain = orjson.loads(r["details"]) if r["details"] else []
    chain = [e for e in chain if isinstance(e, dict)] if isinstance(chain, list) else []
    first = _some(
        count=r["itemCount"], typeName=r["type"], exceptionType=r["type"], message=r["message"],
        assembly=r["assembly"], method=r["method"], handledAt=r["handledAt"], exceptionGroup=r["problemId"],
        failedUserCodeAssembly=r["assembly"], failedUserCodeMethod=r["method"],
        outerExceptionType=r["outerType"], outerExceptionMessage=r["outerMessage"],
        outerExceptionThrownAtAssembly=r["outerAssembly"], outerExceptionThrownAtMethod=r["outerMethod"])
    entries = []
    for i, exc in enumerate(chain or [{}]):
        own = _some(id=exc.get("id"), outerId=exc.get("outerId"), typeName=exc.get("typeName"),
                    message=exc.get("message"), hasFullStack=exc.get("hasFullStack"), stack=exc.get("stack"),
                    parsedStack=exc.get("parsedStack"))
        entries.append({**first, **own} if i == 0 else own)
    return entries


def _trace(r: dict[str, Any]) -> dict[str, Any]:
    return _some(raw=r["message"], severityLevel=SEVERITY_NAMES.get(r["severityLevel"]))


def _availability(r: dict[str, Any]) -> dict[str, Any]:
    return _some(testName=r["name"], testRunId=r["id"], testTimestamp=r["eventTime"], runLocation=r["location"],
                 message=r["message"], count=r["itemCount"],
                 result=None if r["success"] is None else ("Pass" if r["success"] else "Fail"),
                 availabilityMetric=None if r["success"] is None else {"name": "availability",
                                                                      "value": 1.0 if r["success"] else 0.0},
                 durationMetric=_metric(_ticks(r["duration"]), name="duration"),
                 dataSizeMetric=None if r["size"] is None else {"name": "dataSize", "value": r["size"]})


# table → (the document's key, its entries)
_CLASSIC: dict[str, tuple[str, Callable[[dict[str, Any]], list[dict[str, Any]]]]] = {
    "requests": ("request", lambda r: [_request(r)]),
    "dependencies": ("remoteDependency", lambda r: [_dependency(r)]),
    "exceptions": ("basicException", _exceptions),
    "traces": ("message", lambda r: [_trace(r)]),
    "customEvents": ("event", lambda r: [_some(name=r["name"], count=r["itemCount"])]),
    "customMetrics": ("metric", lambda r: []),
    "pageViews": ("view", lambda r: [_some(name=r["name"], count=r["itemCount"], url=r["url"],
                                           urlData=_url_data(r["url"]),
                                           durationMetric=_metric(_ticks(r["duration"])))]),
    "availabilityResults": ("availability", lambda r: [_availability(r)]),
}


def classic_document(table: str, r: dict[str, Any]) -> dict[str, Any]:
    """One stored row (with its time as text in ``eventTime``) as classic continuous export writes it."""
    key, entries = _CLASSIC[table]
    context = _context(r)
    if table == "customMetrics":  # a metric's value is in context.custom.metrics
        context["custom"]["metrics"] = [{r["name"]: {
            "value": r["value"], "count": float(r["valueCount"] or 1), "min": r["valueMin"], "max": r["valueMax"],
            "stdDev": r["valueStdDev"], "sampledValue": r["value"], "sum": r["valueSum"]}}]
    return {key: entries(r), "internal": {"data": {"id": r["itemId"], "documentVersion": "1.61"}},
            "context": context}


class Classic:
    """``appinsights``: one ``.blob`` of JSON lines per telemetry type and round."""

    maps = False

    def render(self, table: str, rows: pa.Table, batch: Batch) -> list[Output]:
        rule, when = batch.rule, batch.time
        blob_id = uuid.uuid5(_BLOB_IDS, f"{rule.id}/{table}/{batch.start}/{batch.end}")
        name = (f"{rule.app.lower()}_{rule.ikey.replace('-', '')}/{CLASSIC_FOLDERS[table]}/"
                f"{when:%Y-%m-%d}/{when:%H}/{blob_id}_{when:%Y%m%d_%H%M%S}.blob")
        pieces = []
        for part in rows.to_batches(_ROWS_AT_ONCE):  # as Python objects a thousand rows at a time
            lines = []
            for r, event_time in zip(part.to_pylist(), iso_times(part.column("timestamp")), strict=True):
                r["eventTime"] = event_time
                lines.append(orjson.dumps(classic_document(table, r)))
            pieces.append(b"\n".join(lines) + b"\n")  # one compact copy (see _ROWS_AT_ONCE)
        return [Output(name, b"".join(pieces))]


# ---------------------------------------------------------------------------------------------------
# diagnostic: workspace-based Application Insights through diagnostic settings

CATEGORIES = {"requests": "AppRequests", "dependencies": "AppDependencies", "exceptions": "AppExceptions",
              "traces": "AppTraces", "customEvents": "AppEvents", "customMetrics": "AppMetrics",
              "pageViews": "AppPageViews", "availabilityResults": "AppAvailabilityResults"}

# Store column → workspace column where it is not just the name capitalised; None: not carried.
_WORKSPACE_NAMES: dict[str, str | None] = {
    "timestamp": "TimeGenerated", "customDimensions": "Properties", "customMeasurements": "Measurements",
    "duration": "DurationMs", "operation_Name": "OperationName", "operation_Id": "OperationId",
    "operation_ParentId": "ParentId", "operation_SyntheticSource": "SyntheticSource", "session_Id": "SessionId",
    "user_Id": "UserId", "user_AuthenticatedId": "UserAuthenticatedId", "user_AccountId": "UserAccountId",
    "application_Version": "AppVersion", "client_Type": "ClientType", "client_Model": "ClientModel",
    "client_OS": "ClientOS", "client_IP": "ClientIP", "client_City": "ClientCity",
    "client_StateOrProvince": "ClientStateOrProvince", "client_CountryOrRegion": "ClientCountryOrRegion",
    "client_Browser": "ClientBrowser", "cloud_RoleName": "AppRoleName", "cloud_RoleInstance": "AppRoleInstance",
    "appId": "ResourceGUID", "appName": None, "iKey": "IKey", "sdkVersion": "SDKVersion", "itemId": "_ItemId",
    "itemType": None, "id": "Id", POSITION: None,  # Type: the workspace table's name, always written
}
# Per table, where the workspace schema differs more (AppMetrics: Sum/Min/Max, ItemCount = valueCount).
_WORKSPACE_TABLE_NAMES: dict[str, dict[str, str | None]] = {
    "dependencies": {"type": "DependencyType"},
    "exceptions": {"type": "ExceptionType"},
    "customMetrics": {"value": None, "valueStdDev": None, "itemCount": None, "valueCount": "ItemCount",
                      "valueSum": "Sum", "valueMin": "Min", "valueMax": "Max"},
}
_DYNAMIC = ("customDimensions", "customMeasurements", "details")


def workspace_columns(table: str, names: list[str]) -> list[tuple[str, str]]:
    """(store column, workspace column) for the columns a diagnostic record carries."""
    own = _WORKSPACE_TABLE_NAMES.get(table, {})
    out = []
    for name in names:
        target = own[name] if name in own else _WORKSPACE_NAMES.get(name, name[:1].upper() + name[1:])
        if target is not None:
            out.append((name, target))
    return out


class Diagnostic:
    """``diagnostic``: rows appended to the ``PT1H.json`` of their hour, one JSON object a line."""

    maps = False

    def render(self, table: str, rows: pa.Table, batch: Batch) -> list[Output]:
        rule = batch.rule
        category = CATEGORIES[table]
        resource_id = (rule.resource_id or default_resource_id(rule.app)).upper()
        columns = [(name, target) for name, target in workspace_columns(table, rows.column_names)
                   if name != "timestamp"]  # TimeGenerated: the record's time, below
        names = [target for _, target in columns] + ["_ResourceId"]
        by_hour: dict[str, list[bytes]] = {}
        for part in rows.to_batches(_ROWS_AT_ONCE):
            values = []  # column by column: a Python list each, then one pass over the rows
            for name, _ in columns:
                column = part.column(name).to_pylist()
                if name in _DYNAMIC:  # stored JSON text embedded as is
                    column = [None if v is None else orjson.Fragment(v) for v in column]
                values.append(column)
            values.append([resource_id.lower()] * part.num_rows)
            lines: dict[str, list[bytes]] = {}
            for time, row in zip(iso_times(part.column("timestamp")), zip(*values, strict=True), strict=True):
                record = {"time": time, "resourceId": resource_id, "Type": category, "TimeGenerated": time}
                record.update([(k, v) for k, v in zip(names, row, strict=True) if v is not None])  # empty: left out
                lines.setdefault(time[:13], []).append(orjson.dumps(record))
            for hour, hour_lines in lines.items():  # one compact copy (see _ROWS_AT_ONCE)
                by_hour.setdefault(hour, []).append(b"\n".join(hour_lines) + b"\n")
        return [Output(f"insights-logs-{category.lower()}/resourceId={resource_id}/y={hour[:4]}/m={hour[5:7]}/"
                       f"d={hour[8:10]}/h={hour[11:13]}/m=00/PT1H.json", b"".join(pieces), append=True)
                for hour, pieces in by_hour.items()]


# ---------------------------------------------------------------------------------------------------
# parquet

class Parquet:
    """``parquet``: a file per table, date and hour of the rows' time, and round."""

    maps = True

    def render(self, table: str, rows: pa.Table, batch: Batch) -> list[Output]:
        rows = rows.drop_columns([POSITION])
        i = rows.schema.get_field_index("timestamp")
        utc = rows.column(i).cast(pa.timestamp("us", tz="UTC"))
        rows = rows.set_column(i, pa.field("timestamp", utc.type), utc)
        hours = pc.divide(utc.cast(pa.int64()), _HOUR_US)  # hours since 1970 (integers: cheap to group)
        prefix = batch.rule.id[:12]
        outputs = []
        unique = pc.unique(hours).to_pylist()
        for hour in unique:
            part = rows if len(unique) == 1 else rows.filter(pc.equal(hours, hour))
            sink = pa.BufferOutputStream()
            pq.write_table(part, sink, compression="zstd")
            start = datetime.fromtimestamp(hour * 3600, UTC)
            outputs.append(Output(f"table={table}/date={start:%Y-%m-%d}/hour={start.hour}/"  # hour=7: a number to readers
                                  f"{prefix}-{batch.start + 1}-{batch.end}.parquet", sink.getvalue().to_pybytes()))
        return outputs


FORMAT_WRITERS: dict[str, Format] = {"appinsights": Classic(), "diagnostic": Diagnostic(), "parquet": Parquet()}
