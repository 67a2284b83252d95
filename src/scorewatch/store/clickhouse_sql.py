"""The ClickHouse store's objects, as SQL generated from the schema and the envelope declaration.

- One ``MergeTree`` table per telemetry table (:func:`table_ddl`): ordered by (``appId``,
  ``timestamp``), partitioned by day, with a TTL past which rows go whatever their application's
  retention (the per-application retention itself is a delete the hub runs, see docs/scaling.md).
- Envelopes arrive in a ``Null`` table per telemetry table (``sw_in_<table>_<version>``: it keeps
  nothing) whose materialized view maps them into the telemetry table with the rules of
  :mod:`scorewatch.store.envelopes`, rendered here in ClickHouse SQL. ``<version>`` is a digest of
  the view's SQL: a hub of another version inserts into its own pair, so replicas of two versions
  can run side by side during a rolling upgrade and no insert ever meets a view being replaced.
- A dry run inserts into a twin input table (``sw_dry_...``) whose view feeds a ``Null`` sink: the
  rules run, nothing is kept (made on the first dry run).
- ``scorewatch_streams`` holds each writer's positions (see :mod:`scorewatch.store.clickhouse`) and
  ``scorewatch_documents`` the shared state of the hub replicas (:mod:`scorewatch.documents`).
"""

from __future__ import annotations

import functools
import hashlib

from scorewatch.store import envelopes
from scorewatch.store.envelopes import EXCEPTION_FIELDS, METRIC_FIELDS, STACK_FIELDS, TAGS, Rule
from scorewatch.store.schema import (
    ITEM_TYPES,
    PERFORMANCE_BUCKET_SLOWEST,
    PERFORMANCE_BUCKETS,
    POSITION,
    TABLES,
)

DATETIME = "DateTime64(6, 'UTC')"
CLICKHOUSE_TYPES = {"string": "Nullable(String)", "datetime": DATETIME, "real": "Nullable(Float64)",
                    "int": "Nullable(Int32)", "long": "Nullable(Int64)", "bool": "Nullable(Bool)",
                    "dynamic": "Nullable(String)"}
NOT_NULL = {"timestamp": DATETIME, "appId": "String"}  # the sorting key
INPUT_COLUMNS = f"env String, appId String, appName String, iKey String, {POSITION} Int64"
# Blocks each table remembers for insert deduplication (a write replayed after a crash is dropped).
DEDUPLICATION_WINDOW = 10_000


def quote(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def column_type(table: str, name: str) -> str:
    kinds = {c.name: c.type for c in TABLES[table]}
    return NOT_NULL.get(name) or CLICKHOUSE_TYPES[kinds[name]]


def table_ddl(table: str, ttl_days: int) -> str:
    """``table``'s DDL; ``ttl_days`` 0: no TTL."""
    spec = ", ".join(f"{quote(c.name)} {column_type(table, c.name)}" for c in TABLES[table])
    ttl = f"TTL toDateTime(timestamp) + toIntervalDay({int(ttl_days)}) " if ttl_days > 0 else ""
    return (f"CREATE TABLE IF NOT EXISTS {quote(table)} ({spec}, {quote(POSITION)} Int64) ENGINE = MergeTree "
            f"PARTITION BY toDate(timestamp) ORDER BY (appId, timestamp) {ttl}"
            f"SETTINGS non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}")


STATE_DDL = [
    # One row per write of a stream; the newest (version) holds its positions. ``holder`` and
    # ``version`` 0 mark the claim that made the stream (see ClickHouseStore._claim_stream).
    ("scorewatch_streams", "CREATE TABLE IF NOT EXISTS scorewatch_streams (stream UInt32, wal_position Int64, row_position Int64, "
    "pending Int64, holder String, version UInt64, written DateTime64(3, 'UTC') DEFAULT now64(3)) "
    f"ENGINE = ReplacingMergeTree(version) ORDER BY stream SETTINGS non_replicated_deduplication_window = "
    f"{DEDUPLICATION_WINDOW}"),
    # Shared documents, each version a row; a write of version v is deduplicated on (key, v), which
    # makes it a compare-and-set (see documents.ClickHouseDocuments).
    ("scorewatch_documents", "CREATE TABLE IF NOT EXISTS scorewatch_documents (key String, version UInt64, value String, "
    "deleted Bool, writer String, written DateTime64(3, 'UTC') DEFAULT now64(3)) "
    f"ENGINE = ReplacingMergeTree(version) ORDER BY key SETTINGS non_replicated_deduplication_window = "
    f"{DEDUPLICATION_WINDOW}"),
]


# ---------------------------------------------------------------------------------------------------
# the envelope rules in ClickHouse SQL

def _nullable(kind: str) -> str:
    return f"Nullable({kind})"


def _tuple(fields: dict[str, str]) -> str:
    return "Tuple(" + ", ".join(f"{quote(name)} {kind}" for name, kind in fields.items()) + ")"


def _structure(table: str) -> str:
    """The type JSONExtract parses one envelope into (a JSON value read as String is its JSON text)."""
    base = {name: _nullable("String") for name in envelopes.base_fields(table)}
    if envelopes.uses(table, "exception"):
        base["exceptions"] = _nullable("String")
    if envelopes.uses(table, "metric"):
        base["metrics"] = "Array(" + _tuple({name: _nullable("String" if kind == "text" else "Float64")
                                             for name, kind in METRIC_FIELDS.items()}) + ")"
    return _tuple({"time": _nullable("String"), "sampleRate": _nullable("Float64"),
                   "tags": _tuple({tag: _nullable("String") for tag in TAGS.values()}),
                   "data": _tuple({"baseData": _tuple(base)})})


_EXCEPTION_LIST = "Array(" + _tuple({**{name: _nullable("String") for name in EXCEPTION_FIELDS},
                                     "parsedStack": "Array(" + _tuple({name: _nullable("String")
                                                                       for name in STACK_FIELDS}) + ")"}) + ")"


def _get(value: str, name: str) -> str:
    return f"tupleElement({value}, {string(name)})"


def _int(value: str) -> str:
    """An Int32 clamped to its range (a count past it would fail the whole insert)."""
    return f"toInt32(least(greatest(round({value}), -2147483648), 2147483647))"


def _ms(d: str) -> str:
    """Milliseconds from a .NET TimeSpan text (``1.02:03:04.5``, ``00:00:00.0580000``) or a number."""
    parts = f"splitByChar(':', assumeNotNull({d}))"
    head = f"{parts}[1]"
    days = f"if(position({head}, '.') > 0, toFloat64OrNull(splitByChar('.', {head})[1]), 0)"
    hours = f"toFloat64OrNull(if(position({head}, '.') > 0, splitByChar('.', {head})[2], {head}))"
    return (f"multiIf({d} IS NULL, NULL, position({d}, ':') = 0, toFloat64OrNull({d}), "
            f"coalesce({days}, 0) * 86400000 + {hours} * 3600000 + toFloat64OrNull({parts}[2]) * 60000 "
            f"+ toFloat64OrNull({parts}[3]) * 1000)")


_LEVELS = {"verbose": 0, "debug": 0, "information": 1, "info": 1, "warning": 2, "warn": 2, "error": 3,
           "critical": 4, "fatal": 4}


def _severity(s: str) -> str:
    names = ", ".join(f"lower({s}) = {string(name)}, {level}" for name, level in _LEVELS.items())
    return f"coalesce(toInt32OrNull({s}), multiIf({names}, NULL))"


def _bucket(d: str) -> str:
    cases = ", ".join(f"{d} < {limit}, {string(label)}" for limit, label in PERFORMANCE_BUCKETS)
    return f"multiIf({d} IS NULL, NULL, {cases}, {string(PERFORMANCE_BUCKET_SLOWEST)})"


def _exception(which: str, attribute: str) -> str:
    entry = "x[1]" if which == "first" else "x[-1]"
    frame = f"{_get(entry, 'parsedStack')}[1]"
    if attribute == "assembly":
        return f"coalesce({_get(entry, 'assembly')}, {_get(frame, 'assembly')})"
    if attribute == "method":
        return _get(frame, "method")
    return _get(entry, attribute)


def _metric(attribute: str) -> str:
    value = _get("m", "value")
    return {"name": _get("m", "name"), "value": value, "count": _int(f"coalesce({_get('m', 'count')}, 1)"),
            "sum": value, "min": f"coalesce({_get('m', 'min')}, {value})",
            "max": f"coalesce({_get('m', 'max')}, {value})", "stdDev": f"coalesce({_get('m', 'stdDev')}, 0)"}[attribute]


def _rule(table: str, rule: Rule) -> str:
    kind, args = rule[0], rule[1:]
    if kind in ("text", "json"):
        return _get("b", args[0])
    if kind == "bool":
        s = f"lower({_get('b', args[0])})"
        return f"multiIf({s} IN ('true', '1'), true, {s} IN ('false', '0'), false, NULL)"
    if kind == "severity":
        return _severity(_get("b", args[0]))
    if kind == "ms":
        return "dur"
    if kind == "bucket":
        return _bucket("dur")
    if kind == "exception":
        return _exception(*args)
    if kind == "problem_id":
        return f"coalesce({_get('b', 'problemId')}, {_exception('first', 'typeName')})"
    if kind == "metric":
        return _metric(args[0])
    if kind == "const":
        return string(args[0])
    if kind == "absent":
        return "NULL"
    if kind == "tag":
        return _get(_get("e", "tags"), args[0])
    if kind == "time":
        return f"coalesce(parseDateTime64BestEffortOrNull({_get('e', 'time')}, 6, 'UTC'), now64(6, 'UTC'))"
    if kind == "batch":
        raise AssertionError("batch columns are selected by name")
    if kind == "sample_rate":
        r = _get("e", "sampleRate")
        return f"if({r} > 0 AND {r} < 100, {_int(f'100 / {r}')}, 1)"
    if kind == "new_id":
        return "toString(generateUUIDv4())"
    if kind == "item_type":
        return string(ITEM_TYPES[table])
    raise ValueError(f"unknown rule {kind!r}")


def view_select(table: str, source: str) -> str:
    """The SELECT mapping the envelopes of ``source`` (an input table) into ``table``'s columns."""
    rules = envelopes.columns(table)
    parsed = f"SELECT JSONExtract(env, {string(_structure(table))}) AS e, appId, appName, iKey, {POSITION} " \
             f"FROM {quote(source)}"
    base = _get(_get("e", "data"), "baseData")
    if envelopes.uses(table, "metric"):
        inner = f"SELECT *, {base} AS b, arrayJoin({_get('b', 'metrics')}) AS m FROM ({parsed})"
    elif envelopes.uses(table, "exception"):
        inner = (f"SELECT *, {base} AS b, JSONExtract(coalesce({_get('b', 'exceptions')}, '[]'), "
                 f"{string(_EXCEPTION_LIST)}) AS x FROM ({parsed})")
    else:
        inner = f"SELECT *, {base} AS b FROM ({parsed})"
    if "duration" in rules:
        inner = f"SELECT *, {_ms(_get('b', rules['duration'][1]))} AS dur FROM ({inner})"
    picks = [quote(name) if rule[0] == "batch" else f"{_rule(table, rule)} AS {quote(name)}"
             for name, rule in rules.items() if rule[0] != "absent"]
    return f"SELECT {', '.join(picks)}, {quote(POSITION)} FROM ({inner})"


@functools.cache
def version(table: str) -> str:
    """A digest of the view of ``table`` (it names the input tables of this version)."""
    return hashlib.sha256(view_select(table, "sw_in").encode()).hexdigest()[:10]


def input_table(table: str, *, dry: bool = False) -> str:
    return f"sw_{'dry' if dry else 'in'}_{table}_{version(table)}"


def _pipe(table: str, *, dry: bool) -> list[tuple[str, str]]:
    """An input table and its view into ``table`` (or, ``dry``, into its void sink)."""
    source = input_table(table, dry=dry)
    target = f"sw_void_{table}" if dry else table
    return [(source, f"CREATE TABLE IF NOT EXISTS {quote(source)} ({INPUT_COLUMNS}) ENGINE = Null"),
            (source + "_view", f"CREATE MATERIALIZED VIEW IF NOT EXISTS {quote(source + '_view')} TO {quote(target)} "
                               f"AS {view_select(table, source)}")]


def objects(ttl_days: int) -> list[tuple[str, str]]:
    """(name, CREATE statement) of every table and view ingest and the state need, in order."""
    out = list(STATE_DDL)
    out += [(table, table_ddl(table, ttl_days)) for table in TABLES]
    for table in envelopes.BASE_TYPES.values():
        out += _pipe(table, dry=False)
    return out


def dry_ddl() -> list[str]:
    """The void sinks and the views dry runs insert through."""
    out = []
    for table in envelopes.BASE_TYPES.values():
        spec = ", ".join(f"{quote(c.name)} {column_type(table, c.name)}" for c in TABLES[table])
        out.append(f"CREATE TABLE IF NOT EXISTS {quote('sw_void_' + table)} ({spec}, {quote(POSITION)} Int64) "
                   "ENGINE = Null")
        out += [statement for _, statement in _pipe(table, dry=True)]
    return out


def describe() -> str:
    """Every statement, for a reader who wants to see them: ``python -m scorewatch.store.clickhouse_sql``."""
    return ";\n\n".join([statement for _, statement in objects(730)] + dry_ddl()) + ";\n"


if __name__ == "__main__":  # pragma: no cover - a helper for readers
    print(describe())
