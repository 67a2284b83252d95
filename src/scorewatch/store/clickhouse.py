"""The shared store: ClickHouse, through ``clickhouse-connect``'s client API only.

One code path serves a ClickHouse server (``clickhouse://host:8123/db``, HTTP) and the in-process
engine chdb (``chdb:///dir``): both are a ``clickhouse_connect`` client. The objects it makes are in
:mod:`scorewatch.store.clickhouse_sql`.

Several hub replicas write one ClickHouse. ClickHouse has no transaction over several inserts, so
the promises of :class:`~scorewatch.store.base.Store` are kept this way:

- **Streams.** Each writer (a hub replica) claims a *stream*, a number it keeps in its workspace
  beside its write-ahead log. Its rows take positions ``stream << 40 | n`` with ``n`` counting up, so
  each stream's positions grow in its own commit order and never meet another's; continuous export
  follows each stream with its own checkpoint (:meth:`ClickHouseStore.row_positions`).
- **Exactly once without a transaction.** A write first records its log range as pending in
  ``scorewatch_streams``, then inserts each table's part with a deduplication token naming the
  stream, that range, the table and the part, then records the range as applied. A writer killed
  half-way replays the same records as the same batch (:meth:`interrupted_position` tells it where
  that batch ended) with the same tokens: ClickHouse drops the parts it already has. A writer that
  sees an error (the server gone) retries the same write, with the same tokens and row positions:
  the positions in memory advance only once the range is recorded as applied.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from scorewatch.errors import BadRequest, ConfigError, ServiceUnavailable, Timeout
from scorewatch.store import clickhouse_sql as ddl
from scorewatch.store import envelopes
from scorewatch.store.base import STREAM_BITS, QueryResult, StoreRefused, StoreUnavailable
from scorewatch.store.rows import ARROW_TYPES, export_conditions, statement_parts, with_positions
from scorewatch.store.schema import POSITION, TABLES

try:
    from clickhouse_connect import get_client
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
    from clickhouse_connect.driver.exceptions import Error as ClickHouseError
except ImportError:  # the [clickhouse] extra is missing: opening such a store says so (require_client_library)
    get_client = None  # type: ignore[assignment]
    DatabaseError = OperationalError = ClickHouseError = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

# A server that cannot be reached is one error from the store (a 503, the writer's log line), not
# every retry of the HTTP client (clickhouse-connect sets urllib3 to WARNING when it is imported).
for _noisy in ("urllib3", "clickhouse_connect"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)

log = logging.getLogger("scorewatch.store")


# ClickHouse error codes that say "not now" rather than "never this data": memory, disk, parts,
# timeouts, a server shutting down or read-only, rights (a misconfiguration an operator fixes).
_MEMORY = {241, 173}
_UNAVAILABLE = {60, 81, 159, 160, 164, 202, 209, 210, 242, 243, 252, 279, 286, 319, 341, 394, 425, 497, 516,
                999, 1000, 1002} | _MEMORY

# What makes ClickHouse read the KQL compiler's SQL as it is meant (kql/dialects.py:ClickHouseDialect):
# a CAST keeps null; outer joins fill with nulls; a name in a SELECT is the column before an alias of
# the same name; 64-bit numbers in JSON are numbers.
QUERY_SETTINGS = {"cast_keep_nullable": 1, "join_use_nulls": 1, "prefer_column_name_to_alias": 1,
                  "output_format_json_quote_64bit_integers": 0, "output_format_json_quote_denormals": 0}

READER = -1  # the stream of a store opened to read only (a command exporting from a shared store)

_KQL_TYPES = {"String": "string", "Float64": "real", "Float32": "real", "Int32": "int", "Int16": "int",
              "Int8": "int", "UInt8": "int", "UInt16": "int", "Int64": "long", "UInt32": "long", "UInt64": "long",
              "Int128": "long", "Bool": "bool", "Date": "datetime", "Date32": "datetime", "DateTime": "datetime",
              "UUID": "string"}


def kql_type(clickhouse_type: str) -> str:
    name = clickhouse_type
    for wrapper in ("Nullable(", "LowCardinality("):
        while name.startswith(wrapper):
            name = name[len(wrapper):-1]
    if name.startswith("DateTime64"):
        return "datetime"
    if name.startswith(("Array", "Map", "Tuple")):
        return "dynamic"
    if name.startswith("Decimal"):
        return "real"
    return _KQL_TYPES.get(name, "string")


_ERRNO = re.compile(r"\[Errno -?\d+\] [^\"')]+")
_SERVER_SAID = re.compile(r"^Received ClickHouse exception, code: \d+, server response: ")


def engine_message(exc: BaseException) -> str:
    """ClickHouse's message without the statement it quotes and its version trailer; a connection
    that failed as its cause (``[Errno 111] Connection refused``)."""
    text = _SERVER_SAID.sub("", str(exc).strip())
    refused = _ERRNO.search(text)
    if isinstance(exc, (OperationalError, OSError)) and refused:
        return refused.group(0).strip()
    for marker in (". (", " In scope ", ": While executing", "\nStack trace"):
        cut = text.find(marker)
        if cut > 0:
            text = text[:cut + 1] if marker == ". (" else text[:cut]
    return text.strip()


def write_error(exc: Exception) -> Exception:
    """A write's error as the store interface names it (see :class:`StoreUnavailable`)."""
    code = getattr(exc, "code", None)
    if isinstance(exc, OperationalError) or code in _UNAVAILABLE or code is None:
        return StoreUnavailable(engine_message(exc), memory=code in _MEMORY)
    return StoreRefused(engine_message(exc))


class ClickHouseStore:
    """:class:`scorewatch.store.base.Store` on one ClickHouse database.

    ``connect`` makes a client (one per thread is made as needed, each then bound to ``database``,
    which is created when missing);
    ``stream`` is this writer's stream (None: claim a new one; :data:`READER`: this process only
    reads); ``shared``: other processes use the same database (a server), so shared state belongs in
    it too.
    """

    dialect = "clickhouse"

    def __init__(self, connect: Callable[[], Client], *, database: str, stream: int | None = None,
                 ttl_days: int = 730, shared: bool = False, async_insert: bool = False, name: str = "") -> None:
        self._connect = connect
        self.database = database
        self.shared = shared
        self.name = name or database
        self.async_insert = async_insert
        self._local = threading.local()
        self._clients: list[Client] = []
        self._clients_made = 0
        self._clients_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._dry_ready = False
        self._create(ttl_days)
        self.stream = stream if stream is not None else self._claim_stream()
        self._version = 0
        state = self._stream_state(self.stream) if self.stream != READER else \
            {"wal_position": 0, "row_position": 0, "pending": 0}
        self._applied = state["wal_position"]
        self._row_position = max(state["row_position"], self.stream << STREAM_BITS if self.stream > 0 else 0)
        self._pending = state["pending"] if state["pending"] > self._applied else None

    # -- clients --------------------------------------------------------------------------------------

    def client(self) -> Client:
        """This thread's client (made on first use)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._connect()
            if self._clients_made:
                client.database = self.database
            else:  # the first one makes the database
                client.command(f"CREATE DATABASE IF NOT EXISTS {ddl.quote(self.database)}")
                client.database = self.database
            with self._clients_lock:
                self._clients.append(client)
                self._clients_made += 1
            self._local.client = client
        return client

    def _create(self, ttl_days: int) -> None:
        """The tables and views this version needs that the database lacks (many hubs may do this
        at once: every statement is IF NOT EXISTS)."""
        client = self.client()
        present = {row[0] for row in client.query("SELECT name FROM system.tables WHERE database = "
                                                  "currentDatabase()").result_rows}
        for name, statement in ddl.objects(ttl_days):
            if name not in present:
                client.command(statement)

    def _create_dry(self) -> None:
        """The void sinks dry runs insert into, made on the first one (they are rare)."""
        if not self._dry_ready:
            for statement in ddl.dry_ddl():
                self.client().command(statement)
            self._dry_ready = True

    def _run(self, action: Callable[[Client], Any]) -> Any:
        try:
            return action(self.client())
        except (DatabaseError, OSError) as exc:
            raise write_error(exc) from None

    # -- streams -----------------------------------------------------------------------------------------

    def _claim_stream(self) -> int:
        """A stream no writer has: the next number, claimed with a deduplicated insert (of two
        writers claiming the same number at once, one insert is dropped; the other wins)."""
        holder = uuid.uuid4().hex
        client = self.client()
        while True:
            count, top = client.query("SELECT count(), max(stream) FROM scorewatch_streams").result_rows[0]
            candidate = int(top) + 1 if count else 0
            client.insert("scorewatch_streams", [[candidate, 0, candidate << STREAM_BITS, 0, holder, 0]],
                          column_names=["stream", "wal_position", "row_position", "pending", "holder", "version"],
                          settings={"insert_deduplication_token": f"claim-{candidate}", "insert_deduplicate": 1})
            owner = client.query("SELECT holder FROM scorewatch_streams WHERE stream = %(s)s AND version = 0",
                                 parameters={"s": candidate}).result_rows
            if owner and owner[0][0] == holder:
                log.info("claimed stream %d in ClickHouse database %s", candidate, self.database)
                return candidate

    def _stream_state(self, stream: int) -> dict[str, int]:
        rows = self.client().query(
            "SELECT argMax(wal_position, version), argMax(row_position, version), argMax(pending, version), "
            "max(version) FROM scorewatch_streams WHERE stream = %(s)s", parameters={"s": stream}).result_rows
        wal, row, pending, version = rows[0] if rows else (0, 0, 0, 0)
        self._version = max(self._version, int(version or 0))
        return {"wal_position": int(wal or 0), "row_position": int(row or 0), "pending": int(pending or 0)}

    def _save_state(self, *, pending: int, applied: int | None = None, row_position: int | None = None) -> None:
        """Record this stream's positions (``applied`` and ``row_position``: those of a write that
        went in; the ones in memory are advanced only once this record is stored, so a write retried
        after an error here takes the same deduplication tokens and positions)."""
        applied = self._applied if applied is None else applied
        row_position = self._row_position if row_position is None else row_position
        self._version = max(self._version + 1, time.time_ns())
        self.client().insert("scorewatch_streams", [[self.stream, applied, row_position, pending, "", self._version]],
                             column_names=["stream", "wal_position", "row_position", "pending", "holder", "version"])

    # -- writing -----------------------------------------------------------------------------------------

    def write_batch(self, table: str, rows: Sequence[dict[str, Any]]) -> int:
        """Append dict rows to ``table`` (dynamic values may be dicts or JSON text)."""
        self._writing()
        if table not in TABLES:
            raise BadRequest(f"unknown table {table!r}")
        if not rows:
            return 0
        arrays = {}
        for c in TABLES[table]:
            values = [row.get(c.name) for row in rows]
            if c.type == "dynamic":
                values = [v if v is None or isinstance(v, str) else orjson.dumps(v).decode() for v in values]
            if c.name == "appId":
                values = [v or "" for v in values]
            arrays[c.name] = pa.array(values, type=ARROW_TYPES[c.type])
        with self._write_lock:
            batch, last = with_positions(pa.table(arrays), self._row_position)
            self._run(lambda client: client.insert_arrow(table, batch))
            self._run(lambda client: self._save_state(pending=0, row_position=last))
            self._row_position = last
        return len(rows)

    def _writing(self) -> None:
        if self.stream == READER:
            raise RuntimeError("this ClickHouse store was opened to read only")

    def write_envelopes(self, batches: Mapping[str, pa.Table], *, position: int | None = None,
                        dry_run: bool = False) -> dict[str, int]:
        """Map envelopes into the tables (see :mod:`scorewatch.store.duckdb` for ``batches``).

        Not one transaction: each table's parts are separate inserts, deduplicated when written again
        for the same log range (see the module's docstring). ``dry_run`` inserts into the views' void
        sinks: the rules run and nothing is kept."""
        self._writing()
        for table in batches:
            if table not in envelopes.BASE_TYPES.values():
                raise BadRequest(f"unknown table {table!r}")
        written: dict[str, int] = {}
        if dry_run:
            self._run(lambda client: self._create_dry())
        with self._write_lock:
            last = self._row_position
            tokens = position is not None and not dry_run
            if position is not None and tokens:
                self._run(lambda client: self._save_state(pending=position))
            for table, batch in batches.items():
                batch, last = with_positions(batch, last)
                written[table] = 0
                for index, part in enumerate(statement_parts(batch)):
                    settings: dict[str, Any] = {}
                    if tokens:  # a replay of this range is dropped (every write's rows differ: positions)
                        settings["insert_deduplicate"] = 1
                        settings["insert_deduplication_token"] = \
                            f"{self.stream}:{self._applied}:{position}:{table}:{index}"
                        settings["deduplicate_blocks_in_dependent_materialized_views"] = 1
                    if self.async_insert and not dry_run:
                        settings.update(async_insert=1, wait_for_async_insert=1, async_insert_deduplicate=1)
                    self._insert(ddl.input_table(table, dry=dry_run), part, settings)
                    written[table] += part.num_rows
            if not dry_run:
                applied = self._applied if position is None else position
                self._run(lambda client: self._save_state(pending=0, applied=applied, row_position=last))
                self._row_position, self._applied, self._pending = last, applied, None
        return written

    def _insert(self, table: str, rows: pa.Table, settings: dict[str, Any]) -> None:
        try:
            self.client().insert_arrow(table, rows, settings=settings)
        except (DatabaseError, OSError) as exc:
            raise write_error(exc) from None

    def applied_position(self) -> int:
        return self._applied

    def interrupted_position(self) -> int | None:
        """The log position a write had begun and not finished when the writer stopped (None: none).
        Replaying must write exactly the records up to it as one batch first."""
        return self._pending

    def apply_retention(self, app_id: str, days: int, *, keep_after: int | Mapping[int, int] | None = None) -> int:
        """Delete the rows of ``app_id`` older than ``days`` (a lightweight DELETE), except those
        above ``keep_after`` (one position, or one per stream; a stream not named keeps nothing)."""
        cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=days)
        where, params = "appId = %(app)s AND timestamp < %(cutoff)s", {"app": app_id, "cutoff": cutoff}
        where += _keep_condition(keep_after, params)
        deleted = 0
        client = self.client()
        for table in TABLES:
            n = client.query(f"SELECT count() FROM {ddl.quote(table)} WHERE {where}", parameters=params).result_rows[0][0]
            if n:
                client.command(f"DELETE FROM {ddl.quote(table)} WHERE {where}", parameters=params)
                deleted += int(n)
        return deleted

    # -- continuous export ---------------------------------------------------------------------------------

    def row_position(self) -> int:
        """The position of the last row this writer committed (its stream's)."""
        return self._row_position

    def row_positions(self) -> dict[int, int]:
        """Every stream's last committed position (streams that never wrote a row included)."""
        rows = self.client().query("SELECT stream, argMax(row_position, version) FROM scorewatch_streams "
                                   "GROUP BY stream").result_rows
        positions = {int(s): int(p) for s, p in rows}
        if self.stream != READER:
            positions[self.stream] = self._row_position
        return positions

    @staticmethod
    def _export_filter(app_id: str, after: int, upto: int | None, since: datetime | None,
                       until: datetime | None) -> tuple[str, dict[str, Any]]:
        conditions = export_conditions(app_id, after, upto, since, until)
        where = " AND ".join(f"{column} {op} %(v{i})s" for i, (column, op, _) in enumerate(conditions))
        return where, {f"v{i}": value for i, (_, _, value) in enumerate(conditions)}

    def export_rows(self, table: str, app_id: str, *, after: int, upto: int, since: datetime | None = None,
                    until: datetime | None = None, maps: bool = False) -> pa.Table:
        if table not in TABLES:
            raise BadRequest(f"unknown table {table!r}")
        names = [c.name for c in TABLES[table]]
        columns = [ddl.quote(n) for n in names] + [POSITION]
        if maps:
            columns += [f"JSONExtract(coalesce({name}, '{{}}'), {ddl.string(kind)}) AS {alias}"
                        for name, (alias, kind) in _MAPS.items() if name in names]
        where, params = self._export_filter(app_id, after, upto, since, until)
        rows = self.client().query_arrow(f"SELECT {', '.join(columns)} FROM {ddl.quote(table)} WHERE {where} "
                                         f"ORDER BY {POSITION}", parameters=params, use_strings=True)
        schema = pa.schema([(c.name, ARROW_TYPES[c.type]) for c in TABLES[table]] + [(POSITION, pa.int64())])
        out = [rows.column(f.name).cast(f.type) for f in schema]
        fields = list(schema)
        if maps:
            for name, (alias, _) in _MAPS.items():
                if name in names:
                    value_type = pa.string() if alias == "customDimensionsMap" else pa.float64()
                    out.append(rows.column(alias).cast(pa.map_(pa.string(), value_type)))
                    fields.append(pa.field(alias, pa.map_(pa.string(), value_type)))
        return pa.Table.from_arrays(out, schema=pa.schema(fields))

    def between_writes(self, timeout: float) -> contextlib.AbstractContextManager[bool]:
        # An insert adds a new part and a read scans the parts there were when it began: a read
        # does not hold an insert back or make it dearer (MergeTree's design; not measured with an
        # export on chdb), so there is nothing to wait for.
        return contextlib.nullcontext(True)

    def export_count(self, app_id: str, tables: Sequence[str], *, after: int, upto: int | None = None,
                     since: datetime | None = None, until: datetime | None = None) -> int:
        unknown = [t for t in tables if t not in TABLES]
        if unknown:
            raise BadRequest(f"unknown table {unknown[0]!r}")
        where, params = self._export_filter(app_id, after, upto, since, until)
        total = 0
        for table in tables:
            total += int(self.client().query(f"SELECT count() FROM {ddl.quote(table)} WHERE {where}",
                                             parameters=params).result_rows[0][0])
        return total

    # -- reading -------------------------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = (), *, timeout_s: float | None = None,
              max_rows: int | None = None) -> QueryResult:
        """Run one read-only statement; ``?`` placeholders take ``params`` (quoted by the client)."""
        if params:
            sql = _placeholders(sql)
        settings: dict[str, Any] = {"readonly": 2, **QUERY_SETTINGS}
        if timeout_s is not None:
            settings["max_execution_time"] = max(timeout_s, 0.001)
        if max_rows is not None:
            settings.update(max_result_rows=max_rows + 1, result_overflow_mode="break")
        started = time.monotonic()
        try:
            result = self.client().query(sql, parameters=list(params) or None, settings=settings)
        except OperationalError as exc:
            raise ServiceUnavailable(f"the store cannot answer right now: {engine_message(exc)}",
                                     retry_after=5) from None
        except DatabaseError as exc:
            code = getattr(exc, "code", None)
            if code in (159, 394) or (timeout_s is not None and time.monotonic() - started >= timeout_s and code is None):
                raise Timeout(f"query cancelled after {timeout_s:g}s") from None
            log.debug("query failed: %s; SQL: %s", exc, sql)
            raise BadRequest(f"the query failed in the store: {engine_message(exc)}") from None
        columns = [(name, kql_type(kind.name)) for name, kind in zip(result.column_names, result.column_types,
                                                                      strict=True)]
        rows = [list(r) for r in result.result_rows]
        truncated = max_rows is not None and len(rows) > max_rows
        if truncated:
            rows = rows[:max_rows]
        return QueryResult(columns=columns, rows=rows, truncated=truncated)

    def count(self, table: str, app_id: str | None = None) -> int:
        if table not in TABLES:
            raise BadRequest(f"unknown table {table!r}")
        where, params = ("WHERE appId = %(app)s", {"app": app_id}) if app_id else ("", {})
        return int(self.client().query(f"SELECT count() FROM {ddl.quote(table)} {where}",
                                       parameters=params).result_rows[0][0])

    def size_bytes(self) -> int:
        """Bytes on disk of the telemetry tables (compressed, as ClickHouse keeps them)."""
        names = ", ".join(ddl.string(t) for t in TABLES)
        rows = self.client().query(f"SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = "
                                   f"currentDatabase() AND table IN ({names})").result_rows
        return int(rows[0][0] or 0)

    def checkpoint(self) -> None:
        """Nothing to do: ClickHouse writes parts as it goes."""

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()


_MAPS = {"customDimensions": ("customDimensionsMap", "Map(String, String)"),
         "customMeasurements": ("customMeasurementsMap", "Map(String, Float64)")}


def _keep_condition(keep_after: int | Mapping[int, int] | None, params: dict[str, Any]) -> str:
    if keep_after is None:
        return ""
    if isinstance(keep_after, int):
        params["keep"] = keep_after
        return f" AND {POSITION} <= %(keep)s"
    params["streams"], params["floors"] = list(keep_after), list(keep_after.values())
    return (f" AND {POSITION} <= transform(toUInt32(bitShiftRight({POSITION}, {STREAM_BITS})), "
            f"CAST(%(streams)s AS Array(UInt32)), CAST(%(floors)s AS Array(Int64)), toInt64(9223372036854775807))")


def _placeholders(sql: str) -> str:
    """``?`` outside string literals as clickhouse-connect's ``%s`` (and ``%`` as ``%%``)."""
    out, quoted = [], False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        out.append("%s" if ch == "?" and not quoted else "%%" if ch == "%" else ch)
    return "".join(out)


def require_client_library() -> None:
    if DatabaseError is None:
        raise ConfigError("the ClickHouse store needs clickhouse-connect: pip install 'scorewatch[clickhouse]' "
                          "(and 'scorewatch[chdb]' for chdb:///DIR)")
