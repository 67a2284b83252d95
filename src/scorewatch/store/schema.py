"""The store's tables: Application Insights' classic tables with their classic columns.

This is the one description of the schema. The store creates its tables from it, ingest fills rows
keyed by these names, and the KQL compiler resolves columns, types, ``getschema`` and name suggestions
from it. Column types are KQL types; :data:`DUCKDB_TYPES` maps them to DuckDB's.

``appId`` is the application a row belongs to: the query API scopes every query with it.
"""

from __future__ import annotations

from dataclasses import dataclass

# KQL type names used here: string, datetime, real, int, long, bool, dynamic.


@dataclass(frozen=True)
class Column:
    name: str
    type: str


def _cols(spec: str) -> tuple[Column, ...]:
    columns = []
    for item in spec.split():
        name, kind = item.split(":")
        columns.append(Column(name, kind))
    return tuple(columns)


# Columns every table has, after its own (the order Application Insights shows them in).
COMMON = _cols("""
    customDimensions:dynamic
    operation_Name:string operation_Id:string operation_ParentId:string operation_SyntheticSource:string
    session_Id:string user_Id:string user_AuthenticatedId:string user_AccountId:string
    application_Version:string client_Type:string client_Model:string client_OS:string client_IP:string
    client_City:string client_StateOrProvince:string client_CountryOrRegion:string client_Browser:string
    cloud_RoleName:string cloud_RoleInstance:string
    appId:string appName:string iKey:string sdkVersion:string itemId:string itemCount:int
""")

_MEASURED = _cols("customMeasurements:dynamic")

_OWN = {
    "requests": _cols("""
        timestamp:datetime id:string source:string name:string url:string success:bool resultCode:string
        duration:real performanceBucket:string itemType:string""") + _MEASURED,
    "dependencies": _cols("""
        timestamp:datetime id:string target:string type:string name:string data:string success:bool
        resultCode:string duration:real performanceBucket:string itemType:string""") + _MEASURED,
    "exceptions": _cols("""
        timestamp:datetime problemId:string handledAt:string type:string message:string assembly:string
        method:string outerType:string outerMessage:string outerAssembly:string outerMethod:string
        innermostType:string innermostMessage:string innermostAssembly:string innermostMethod:string
        severityLevel:int details:dynamic itemType:string""") + _MEASURED,
    "traces": _cols("timestamp:datetime message:string severityLevel:int itemType:string") + _MEASURED,
    "customEvents": _cols("timestamp:datetime name:string itemType:string") + _MEASURED,
    "customMetrics": _cols("""
        timestamp:datetime name:string value:real valueCount:int valueSum:real valueMin:real valueMax:real
        valueStdDev:real itemType:string"""),
    "pageViews": _cols("""
        timestamp:datetime id:string name:string url:string duration:real performanceBucket:string
        itemType:string""") + _MEASURED,
    "availabilityResults": _cols("""
        timestamp:datetime id:string name:string location:string success:bool message:string size:real
        duration:real performanceBucket:string itemType:string""") + _MEASURED,
}

TABLES: dict[str, tuple[Column, ...]] = {name: own + COMMON for name, own in _OWN.items()}

# Besides these columns every stored row carries POSITION, a number the store gives it in the
# transaction that writes it: larger than the position of every row committed before, so a reader
# that has seen everything up to position P finds anything new above P (continuous export follows
# the store this way). Rows written in one transaction may share a position (the metrics of one
# envelope do). It is no KQL column: queries never see it.
POSITION = "_position"

# The itemType value each table's rows carry.
ITEM_TYPES = {"requests": "request", "dependencies": "dependency", "exceptions": "exception",
              "traces": "trace", "customEvents": "customEvent", "customMetrics": "customMetric",
              "pageViews": "pageView", "availabilityResults": "availabilityResult"}

DUCKDB_TYPES = {"string": "VARCHAR", "datetime": "TIMESTAMP", "real": "DOUBLE", "int": "INTEGER",
                "long": "BIGINT", "bool": "BOOLEAN", "dynamic": "JSON"}


def columns(table: str) -> tuple[Column, ...]:
    return TABLES[table]


def column_types(table: str) -> dict[str, str]:
    return {c.name: c.type for c in TABLES[table]}


# Application Insights' duration buckets: (upper bound in ms, label); slower than the last bound is
# PERFORMANCE_BUCKET_SLOWEST. The store computes performanceBucket from these at ingest.
PERFORMANCE_BUCKETS = (
    (250, "<250ms"), (500, "250ms-500ms"), (1000, "500ms-1sec"), (3000, "1sec-3sec"), (7000, "3sec-7sec"),
    (15000, "7sec-15sec"), (30000, "15sec-30sec"), (60000, "30sec-1min"), (120000, "1min-2min"),
    (300000, "2min-5min"))
PERFORMANCE_BUCKET_SLOWEST = ">=5min"
