"""Application Insights envelopes → store rows, as DuckDB SQL.

Ingest hands the store accepted envelopes grouped by table, as Arrow tables with the columns ``env``
(one envelope's JSON text), ``appId``, ``appName`` and ``iKey``. The mapping to the classic
columns happens here, inside DuckDB: ``json_transform`` parses each envelope once into a typed struct
and one ``INSERT ... BY NAME SELECT`` per table picks the columns. That keeps per-item Python work out
of the hot path (the hub's target is 100k items/s on two cores) and gives every tolerance rule one
place:

- ``time`` without a zone is UTC (the session time zone is UTC); unparsable times become the
  ingestion time.
- ``duration`` as ``d.hh:mm:ss.fffffff``, ``hh:mm:ss.fffffff`` or a number of milliseconds.
- ``success`` as a JSON boolean or a string (``"true"``, ``"False"``, ``"1"``).
- ``severityLevel`` as a number or a name (``Information``, ``WARNING``, ...).
- a field of the wrong JSON type becomes null instead of failing the batch.
- ``sampleRate`` (percent kept) becomes ``itemCount = round(100 / sampleRate)``.
- a number past what its INTEGER column holds (``itemCount``, a metric's ``valueCount``) is clamped
  to the column's range (an OTLP cumulative histogram's count passes 2^31 on a long-lived service).
- ``properties`` → ``customDimensions`` and ``measurements`` → ``customMeasurements``, as JSON, with
  values kept as sent (numbers stay numbers).

A ClickHouse backend would carry its own version of this module.
"""

from __future__ import annotations

from typing import Any

import orjson

from scorewatch.store.schema import PERFORMANCE_BUCKET_SLOWEST, PERFORMANCE_BUCKETS, POSITION

# Envelope tags → common columns.
TAGS = {
    "operation_Name": "ai.operation.name", "operation_Id": "ai.operation.id",
    "operation_ParentId": "ai.operation.parentId",
    "operation_SyntheticSource": "ai.operation.syntheticSource", "session_Id": "ai.session.id",
    "user_Id": "ai.user.id", "user_AuthenticatedId": "ai.user.authUserId",
    "user_AccountId": "ai.user.accountId", "application_Version": "ai.application.ver",
    "client_Type": "ai.device.type", "client_Model": "ai.device.model", "client_OS": "ai.device.osVersion",
    "client_IP": "ai.location.ip", "client_City": "ai.location.city",
    "client_StateOrProvince": "ai.location.province", "client_CountryOrRegion": "ai.location.country",
    "client_Browser": "ai.device.browserVersion", "cloud_RoleName": "ai.cloud.role",
    "cloud_RoleInstance": "ai.cloud.roleInstance", "sdkVersion": "ai.internal.sdkVersion",
}

# baseType → table.
BASE_TYPES = {
    "RequestData": "requests", "RemoteDependencyData": "dependencies", "ExceptionData": "exceptions",
    "MessageData": "traces", "EventData": "customEvents", "MetricData": "customMetrics",
    "PageViewData": "pageViews", "AvailabilityData": "availabilityResults",
}

_V, _J = "VARCHAR", "JSON"

# The baseData fields each table reads (everything arrives as text or JSON; SQL converts it).
_BASE_DATA: dict[str, dict[str, Any]] = {
    "requests": {"id": _V, "source": _V, "name": _V, "url": _V, "success": _V, "responseCode": _V,
                 "duration": _V},
    "dependencies": {"id": _V, "target": _V, "type": _V, "name": _V, "data": _V, "success": _V,
                     "resultCode": _V, "duration": _V},
    "exceptions": {"problemId": _V, "severityLevel": _V, "exceptions": _J},
    "traces": {"message": _V, "severityLevel": _V},
    "customEvents": {"name": _V},
    "customMetrics": {"metrics": [{"name": _V, "value": "DOUBLE", "count": "DOUBLE", "min": "DOUBLE",
                                   "max": "DOUBLE", "stdDev": "DOUBLE"}]},
    "pageViews": {"id": _V, "name": _V, "url": _V, "duration": _V},
    "availabilityResults": {"id": _V, "name": _V, "runLocation": _V, "success": _V, "message": _V,
                            "duration": _V},
}

_EXCEPTION_LIST = orjson.dumps([{"typeName": _V, "message": _V, "assembly": _V,
                                 "parsedStack": [{"method": _V, "assembly": _V}]}]).decode()

MACROS = [
    # Milliseconds from a .NET TimeSpan text ("1.02:03:04.5", "00:00:00.0580000") or a number;
    # without days it is an INTERVAL cast (10x cheaper than splitting the text).
    """CREATE OR REPLACE TEMP MACRO sw_ms(d) AS CASE
        WHEN d IS NULL THEN NULL
        WHEN strpos(d, ':') = 0 THEN try_cast(d AS DOUBLE)
        WHEN strpos(split_part(d, ':', 1), '.') = 0 THEN epoch(try_cast(d AS INTERVAL)) * 1000
        ELSE coalesce(try_cast(CASE WHEN strpos(split_part(d, ':', 1), '.') > 0
                                    THEN split_part(split_part(d, ':', 1), '.', 1) END AS DOUBLE), 0) * 86400000
           + try_cast(CASE WHEN strpos(split_part(d, ':', 1), '.') > 0
                           THEN split_part(split_part(d, ':', 1), '.', 2)
                           ELSE split_part(d, ':', 1) END AS DOUBLE) * 3600000
           + try_cast(split_part(d, ':', 2) AS DOUBLE) * 60000
           + try_cast(split_part(d, ':', 3) AS DOUBLE) * 1000
        END""",
    """CREATE OR REPLACE TEMP MACRO sw_bool(s) AS CASE lower(s)
        WHEN 'true' THEN true WHEN '1' THEN true WHEN 'false' THEN false WHEN '0' THEN false END""",
    """CREATE OR REPLACE TEMP MACRO sw_sev(s) AS coalesce(try_cast(s AS INTEGER), CASE lower(s)
        WHEN 'verbose' THEN 0 WHEN 'debug' THEN 0 WHEN 'information' THEN 1 WHEN 'info' THEN 1
        WHEN 'warning' THEN 2 WHEN 'warn' THEN 2 WHEN 'error' THEN 3 WHEN 'critical' THEN 4
        WHEN 'fatal' THEN 4 END)""",
    "CREATE OR REPLACE TEMP MACRO sw_ts(t) AS "
    "coalesce(CAST(try_cast(t AS TIMESTAMPTZ) AS TIMESTAMP), CAST(now() AS TIMESTAMP))",
    # An INTEGER column takes a clamped value: a count the cast would refuse fails the whole batch.
    "CREATE OR REPLACE TEMP MACRO sw_int(x) AS CAST(least(greatest(round(x), -2147483648), 2147483647) AS INTEGER)",
    "CREATE OR REPLACE TEMP MACRO sw_count(r) AS CASE WHEN r > 0 AND r < 100 THEN sw_int(100 / r) ELSE 1 END",
    "CREATE OR REPLACE TEMP MACRO sw_bucket(d) AS CASE WHEN d IS NULL THEN NULL "
    + " ".join(f"WHEN d < {limit} THEN '{label}'" for limit, label in PERFORMANCE_BUCKETS)
    + f" ELSE '{PERFORMANCE_BUCKET_SLOWEST}' END",
]


def _structure(table: str) -> str:
    base = dict(_BASE_DATA[table])
    base["properties"] = _J
    if table != "customMetrics":
        base["measurements"] = _J
    return orjson.dumps({"time": _V, "sampleRate": "DOUBLE", "tags": {tag: _V for tag in TAGS.values()},
                         "data": {"baseData": base}}).decode()


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_COMMON = ", ".join(
    [f"e.tags[{_sql_string(tag)}] AS {col}" for col, tag in TAGS.items()]
    + ["sw_ts(e.time) AS timestamp", "appId", "appName", "iKey", "sw_count(e.sampleRate) AS itemCount",
       "CAST(gen_random_uuid() AS VARCHAR) AS itemId", POSITION])

# ``dur`` is computed once in an inner SELECT (see insert_sql): spelling ``sw_bucket(sw_ms(...))`` here
# expands one macro inside the other (~130 copies of the CASE), which cost ~50 ms of planning per
# statement and evaluated the duration once per bucket at run time.
_DURATION = "dur AS duration, sw_bucket(dur) AS performanceBucket"

_OWN = {
    "requests": "b.id, b.source, b.name, b.url, sw_bool(b.success) AS success, "
                "b.responseCode AS resultCode, " + _DURATION,
    "dependencies": "b.id, b.target, b.type, b.name, b.data, sw_bool(b.success) AS success, "
                    "b.resultCode, " + _DURATION,
    "exceptions": "coalesce(b.problemId, x[1].typeName) AS problemId, 'UserCode' AS handledAt, "
                  "x[1].typeName AS type, x[1].message AS message, "
                  "coalesce(x[1].assembly, x[1].parsedStack[1].assembly) AS assembly, "
                  "x[1].parsedStack[1].method AS method, x[1].typeName AS outerType, "
                  "x[1].message AS outerMessage, "
                  "coalesce(x[1].assembly, x[1].parsedStack[1].assembly) AS outerAssembly, "
                  "x[1].parsedStack[1].method AS outerMethod, x[-1].typeName AS innermostType, "
                  "x[-1].message AS innermostMessage, "
                  "coalesce(x[-1].assembly, x[-1].parsedStack[1].assembly) AS innermostAssembly, "
                  "x[-1].parsedStack[1].method AS innermostMethod, sw_sev(b.severityLevel) AS severityLevel, "
                  "b.exceptions AS details",
    "traces": "b.message, sw_sev(b.severityLevel) AS severityLevel",
    "customEvents": "b.name",
    "customMetrics": "m.name, m.value, sw_int(coalesce(m.count, 1)) AS valueCount, "
                     "m.value AS valueSum, coalesce(m.min, m.value) AS valueMin, "
                     "coalesce(m.max, m.value) AS valueMax, coalesce(m.stdDev, 0) AS valueStdDev",
    "pageViews": "b.id, b.name, b.url, " + _DURATION,
    "availabilityResults": "b.id, b.name, b.runLocation AS location, sw_bool(b.success) AS success, "
                           "b.message, " + _DURATION,
}


def insert_sql(table: str, source: str) -> str:
    """``INSERT INTO table BY NAME SELECT ...`` reading the envelopes of ``source`` (a registered
    Arrow table of envelopes that all belong to ``table``, with the rows' positions in the column
    :data:`~scorewatch.store.schema.POSITION`)."""
    item_type = {"requests": "request", "dependencies": "dependency", "exceptions": "exception",
                 "traces": "trace", "customEvents": "customEvent", "customMetrics": "customMetric",
                 "pageViews": "pageView", "availabilityResults": "availabilityResult"}[table]
    parsed = (f"SELECT json_transform(env, {_sql_string(_structure(table))}) AS e, appId, appName, iKey, "
              f"{POSITION} FROM {source}")
    measured = "" if table == "customMetrics" else ", b.measurements AS customMeasurements"
    if table == "customMetrics":
        inner = f"SELECT *, e.data.baseData AS b, unnest(e.data.baseData.metrics) AS m FROM ({parsed})"
    elif table == "exceptions":
        inner = (f"SELECT *, e.data.baseData AS b, json_transform(e.data.baseData.exceptions, "
                 f"{_sql_string(_EXCEPTION_LIST)}) AS x FROM ({parsed})")
    else:
        inner = f"SELECT *, e.data.baseData AS b FROM ({parsed})"
    if "dur AS duration" in _OWN[table]:
        inner = f"SELECT *, sw_ms(b.duration) AS dur FROM ({inner})"
    return (f"INSERT INTO {table} BY NAME SELECT {_OWN[table]}, {_COMMON}, "
            f"'{item_type}' AS itemType, b.properties AS customDimensions{measured} FROM ({inner})")
