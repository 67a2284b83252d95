"""Application Insights envelopes → store rows: the one declaration of where each column comes from.

Ingest hands a store accepted envelopes grouped by table, as Arrow tables with the columns ``env``
(one envelope's JSON text), ``appId``, ``appName`` and ``iKey``. The mapping to the classic columns
happens inside the engine, in SQL generated from :data:`OWN`, :data:`TAGS` and :data:`COMMON`: each
column names a *rule* and the envelope field it reads. Every backend renders the rules in its own
SQL (:func:`insert_sql` here for DuckDB; :mod:`scorewatch.store.clickhouse_sql` for ClickHouse), so
a column is declared once and the engines cannot drift apart. That keeps per-item Python work out of
the hot path (the hub's target is 100k items/s on two cores) and gives every tolerance rule one place:

- ``time`` without a zone is UTC; unparsable times become the ingestion time.
- ``duration`` as ``d.hh:mm:ss.fffffff``, ``hh:mm:ss.fffffff`` or a number of milliseconds.
- ``success`` as a JSON boolean or a string (``"true"``, ``"False"``, ``"1"``).
- ``severityLevel`` as a number or a name (``Information``, ``WARNING``, ...).
- a field of the wrong JSON type becomes null instead of failing the batch.
- ``sampleRate`` (percent kept) becomes ``itemCount = round(100 / sampleRate)``.
- a number past what its INTEGER column holds (``itemCount``, a metric's ``valueCount``) is clamped
  to the column's range (an OTLP cumulative histogram's count passes 2^31 on a long-lived service).
- ``properties`` → ``customDimensions`` and ``measurements`` → ``customMeasurements``, as JSON, with
  values kept as sent (numbers stay numbers).
"""

from __future__ import annotations

from typing import Any

import orjson

from scorewatch.store.schema import (
    ITEM_TYPES,
    PERFORMANCE_BUCKET_SLOWEST,
    PERFORMANCE_BUCKETS,
    POSITION,
    TABLES,
)

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

# A rule and its arguments. The rules, and what every backend makes of them:
#   ("text", f)       baseData field f as text (a number or a boolean as its JSON text)
#   ("json", f)       baseData field f as JSON text, as sent
#   ("bool", f)       f as a boolean: JSON true/false, "true"/"False"/"1"/"0"; anything else null
#   ("severity", f)   f as a number, or a level name (Information, WARNING, ...)
#   ("ms", f)         f as milliseconds: a .NET TimeSpan text or a number (the table then also gets
#                     performanceBucket from it)
#   ("exception", which, attribute)   of the outermost (``first``) or innermost (``last``) entry of
#                     baseData.exceptions: typeName, message, assembly (its own, else its first stack
#                     frame's), method (its first stack frame's)
#   ("problem_id",)   baseData.problemId, else the outermost exception's typeName
#   ("metric", attribute)   one row per entry of baseData.metrics: name, value, count (an integer,
#                     1 when absent), sum (the value), min/max (the value when absent), stdDev (0)
#   ("const", text)   that text
#   ("absent",)       null: the envelope has no such field (availabilityResults.size)
Rule = tuple[str, ...]

_DURATION: dict[str, Rule] = {"duration": ("ms", "duration")}
OWN: dict[str, dict[str, Rule]] = {
    "requests": {"id": ("text", "id"), "source": ("text", "source"), "name": ("text", "name"),
                 "url": ("text", "url"), "success": ("bool", "success"), "resultCode": ("text", "responseCode"),
                 **_DURATION},
    "dependencies": {"id": ("text", "id"), "target": ("text", "target"), "type": ("text", "type"),
                     "name": ("text", "name"), "data": ("text", "data"), "success": ("bool", "success"),
                     "resultCode": ("text", "resultCode"), **_DURATION},
    "exceptions": {
        "problemId": ("problem_id",), "handledAt": ("const", "UserCode"),
        "type": ("exception", "first", "typeName"), "message": ("exception", "first", "message"),
        "assembly": ("exception", "first", "assembly"), "method": ("exception", "first", "method"),
        "outerType": ("exception", "first", "typeName"), "outerMessage": ("exception", "first", "message"),
        "outerAssembly": ("exception", "first", "assembly"), "outerMethod": ("exception", "first", "method"),
        "innermostType": ("exception", "last", "typeName"), "innermostMessage": ("exception", "last", "message"),
        "innermostAssembly": ("exception", "last", "assembly"),
        "innermostMethod": ("exception", "last", "method"),
        "severityLevel": ("severity", "severityLevel"), "details": ("json", "exceptions")},
    "traces": {"message": ("text", "message"), "severityLevel": ("severity", "severityLevel")},
    "customEvents": {"name": ("text", "name")},
    "customMetrics": {"name": ("metric", "name"), "value": ("metric", "value"), "valueCount": ("metric", "count"),
                      "valueSum": ("metric", "sum"), "valueMin": ("metric", "min"), "valueMax": ("metric", "max"),
                      "valueStdDev": ("metric", "stdDev")},
    "pageViews": {"id": ("text", "id"), "name": ("text", "name"), "url": ("text", "url"), **_DURATION},
    "availabilityResults": {"id": ("text", "id"), "name": ("text", "name"), "location": ("text", "runLocation"),
                            "success": ("bool", "success"), "message": ("text", "message"),
                            "size": ("absent",), **_DURATION},
}

# Columns every table fills the same way (besides the tags): the envelope's time, the application
# (from ingest), sampling, a new item id, the table's itemType, properties and measurements.
COMMON: dict[str, Rule] = {
    "timestamp": ("time",), "appId": ("batch",), "appName": ("batch",), "iKey": ("batch",),
    "itemCount": ("sample_rate",), "itemId": ("new_id",), "itemType": ("item_type",),
    "customDimensions": ("json", "properties"), "customMeasurements": ("json", "measurements"),
}

# The metric entry fields (name and the numbers) and the exception entry fields the rules read.
METRIC_FIELDS = {"name": "text", "value": "number", "count": "number", "min": "number", "max": "number",
                 "stdDev": "number"}
EXCEPTION_FIELDS = ("typeName", "message", "assembly")
STACK_FIELDS = ("method", "assembly")


def columns(table: str) -> dict[str, Rule]:
    """Every column ``table`` fills, in the schema's order, with its rule (``performanceBucket``:
    ``("bucket",)``, made from the duration)."""
    out: dict[str, Rule] = {}
    for column in TABLES[table]:
        name = column.name
        if name in OWN[table]:
            out[name] = OWN[table][name]
        elif name == "performanceBucket":
            out[name] = ("bucket",)
        elif name in TAGS:
            out[name] = ("tag", TAGS[name])
        elif name in COMMON:
            out[name] = COMMON[name]
        else:  # a schema column nobody fills: a mistake the tests catch (test_envelopes)
            raise KeyError(f"{table}.{name} has no rule in store/envelopes.py")
    return out


def base_fields(table: str) -> dict[str, str]:
    """The baseData fields ``table`` reads: name → ``text`` or ``json`` (``exceptions`` and
    ``metrics`` are read by their own rules)."""
    fields: dict[str, str] = {}
    for rule in columns(table).values():
        if rule[0] in ("text", "bool", "severity", "ms"):
            fields.setdefault(rule[1], "text")
        elif rule[0] == "json":
            fields[rule[1]] = "json"
        elif rule[0] == "problem_id":
            fields["problemId"] = "text"
    return fields


def uses(table: str, kind: str) -> bool:
    return any(rule[0] == kind for rule in columns(table).values())


# ---------------------------------------------------------------------------------------------------
# DuckDB: json_transform parses each envelope once into a typed struct ``e`` (``b`` its baseData);
# one ``INSERT ... BY NAME SELECT`` per table picks the columns, with the macros below.

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

_V, _J = "VARCHAR", "JSON"


def _structure(table: str) -> str:
    base: dict[str, Any] = {name: _J if kind == "json" else _V for name, kind in base_fields(table).items()}
    if uses(table, "exception"):
        base["exceptions"] = _J
    if uses(table, "metric"):
        base["metrics"] = [{name: _V if kind == "text" else "DOUBLE" for name, kind in METRIC_FIELDS.items()}]
    return orjson.dumps({"time": _V, "sampleRate": "DOUBLE", "tags": {tag: _V for tag in TAGS.values()},
                         "data": {"baseData": base}}).decode()


_EXCEPTION_LIST = orjson.dumps([{**{name: _V for name in EXCEPTION_FIELDS},
                                 "parsedStack": [{name: _V for name in STACK_FIELDS}]}]).decode()


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _exception(which: str, attribute: str) -> str:
    x = "x[1]" if which == "first" else "x[-1]"
    if attribute == "assembly":
        return f"coalesce({x}.assembly, {x}.parsedStack[1].assembly)"
    if attribute == "method":
        return f"{x}.parsedStack[1].method"
    return f"{x}.{attribute}"


_METRIC = {"name": "m.name", "value": "m.value", "count": "sw_int(coalesce(m.count, 1))", "sum": "m.value",
           "min": "coalesce(m.min, m.value)", "max": "coalesce(m.max, m.value)", "stdDev": "coalesce(m.stdDev, 0)"}


def _duckdb(table: str, rule: Rule) -> str:
    kind, args = rule[0], rule[1:]
    if kind in ("text", "json"):
        return f"b.{args[0]}"
    if kind == "bool":
        return f"sw_bool(b.{args[0]})"
    if kind == "severity":
        return f"sw_sev(b.{args[0]})"
    if kind == "ms":
        # ``dur`` is computed once in an inner SELECT (see insert_sql): spelling
        # ``sw_bucket(sw_ms(...))`` expands one macro inside the other (~130 copies of the CASE),
        # which cost ~50 ms of planning per statement and evaluated the duration once per bucket.
        return "dur"
    if kind == "bucket":
        return "sw_bucket(dur)"
    if kind == "exception":
        return _exception(*args)
    if kind == "problem_id":
        return "coalesce(b.problemId, x[1].typeName)"
    if kind == "metric":
        return _METRIC[args[0]]
    if kind == "const":
        return _sql_string(args[0])
    if kind == "tag":
        return f"e.tags[{_sql_string(args[0])}]"
    if kind == "time":
        return "sw_ts(e.time)"
    if kind == "batch":
        raise AssertionError("batch columns are selected by name")
    if kind == "sample_rate":
        return "sw_count(e.sampleRate)"
    if kind == "new_id":
        return "CAST(gen_random_uuid() AS VARCHAR)"
    if kind == "item_type":
        return _sql_string(ITEM_TYPES[table])
    raise ValueError(f"unknown rule {kind!r}")


def insert_sql(table: str, source: str) -> str:
    """``INSERT INTO table BY NAME SELECT ...`` reading the envelopes of ``source`` (a registered
    Arrow table of envelopes that all belong to ``table``, with the rows' positions in the column
    :data:`~scorewatch.store.schema.POSITION`)."""
    parsed = (f"SELECT json_transform(env, {_sql_string(_structure(table))}) AS e, appId, appName, iKey, "
              f"{POSITION} FROM {source}")
    if uses(table, "metric"):
        inner = f"SELECT *, e.data.baseData AS b, unnest(e.data.baseData.metrics) AS m FROM ({parsed})"
    elif uses(table, "exception"):
        inner = (f"SELECT *, e.data.baseData AS b, json_transform(e.data.baseData.exceptions, "
                 f"{_sql_string(_EXCEPTION_LIST)}) AS x FROM ({parsed})")
    else:
        inner = f"SELECT *, e.data.baseData AS b FROM ({parsed})"
    rules = columns(table)
    if "duration" in rules:
        inner = f"SELECT *, sw_ms(b.{rules['duration'][1]}) AS dur FROM ({inner})"
    picks = [name if rule[0] == "batch" else f"{_duckdb(table, rule)} AS {name}" for name, rule in rules.items()
             if rule[0] != "absent"]  # BY NAME: a column not picked is null
    return f"INSERT INTO {table} BY NAME SELECT {', '.join(picks)}, {POSITION} FROM ({inner})"
