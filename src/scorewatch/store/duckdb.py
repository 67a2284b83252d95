"""The embedded store: one DuckDB file, written only by the hub.

Writes come in large batches (Arrow tables, never row by row). Each query gets its own cursor, so
queries run while ingest writes; a query past its time limit is interrupted and raises
:class:`~scorewatch.errors.Timeout`. The table ``scorewatch_state`` holds the position of the last
write-ahead-log record applied, written in the same transaction as the rows it covers: that is what
lets the hub replay its log after a crash without losing or duplicating anything. It also holds
``row_position``, the position (:data:`~scorewatch.store.schema.POSITION`) of the last row written,
advanced in the same transaction as the rows that take the positions after it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from scorewatch.errors import BadRequest, ConfigError, Timeout
from scorewatch.store import envelopes
from scorewatch.store.base import QueryResult, StoreRefused, StoreUnavailable
from scorewatch.store.rows import ARROW_TYPES, export_conditions, statement_parts, with_positions
from scorewatch.store.schema import DUCKDB_TYPES, POSITION, TABLES

log = logging.getLogger("scorewatch.store")

# DuckDB result type (as text) → KQL type, for query results.
_KQL_TYPES = {"VARCHAR": "string", "TIMESTAMP": "datetime", "TIMESTAMP WITH TIME ZONE": "datetime",
              "DATE": "datetime", "DOUBLE": "real", "FLOAT": "real", "INTEGER": "int", "SMALLINT": "int",
              "TINYINT": "int", "BIGINT": "long", "HUGEINT": "long", "UBIGINT": "long", "UINTEGER": "long",
              "BOOLEAN": "bool", "JSON": "dynamic", "INTERVAL": "timespan", "UUID": "guid"}


def kql_type(duckdb_type: str) -> str:
    if duckdb_type in _KQL_TYPES:
        return _KQL_TYPES[duckdb_type]
    if duckdb_type.startswith("DECIMAL"):
        return "real"
    if duckdb_type.endswith("]") or duckdb_type.startswith(("STRUCT", "MAP")):
        return "dynamic"
    return "string"


def engine_message(exc: BaseException) -> str:
    """DuckDB's message without what follows its first paragraph: the statement it quotes
    (``LINE 1: INSERT ...``) and its tuning hints. Generated SQL is never shown to users."""
    return str(exc).split("\n\n")[0].split("\nLINE ")[0].strip()


def write_error(exc: Exception) -> Exception:
    """A write's DuckDB error as the store interface names it: out of memory, I/O (a full disk, a
    failed commit) and a fatal error are :class:`StoreUnavailable` (try again later); anything else
    about the data is :class:`StoreRefused`."""
    message = engine_message(exc)
    if isinstance(exc, (duckdb.OutOfMemoryException, duckdb.IOException, duckdb.FatalException)) or \
            any(sign in message for sign in _UNAVAILABLE):
        return StoreUnavailable(message, memory=isinstance(exc, duckdb.OutOfMemoryException))
    return StoreRefused(message)


# A failed commit is the disk's doing (DuckDB reports a full disk at COMMIT as a transaction error).
_UNAVAILABLE = ("Failed to commit", "No space left", "Disk quota exceeded", "Input/output error",
                "Read-only file system", "Too many open files")


def _scalar(cur: duckdb.DuckDBPyConnection) -> Any:
    row = cur.fetchone()
    assert row is not None
    return row[0]


def _arrow(relation: duckdb.DuckDBPyRelation) -> pa.Table:
    """A relation's rows as one Arrow table (newer DuckDB: ``to_arrow_table``; ``arrow()`` became a reader)."""
    to_table = getattr(relation, "to_arrow_table", None)
    return to_table() if to_table is not None else relation.arrow()


# Reads that hold the writes back (DuckDBStore.between_writes) wait while the writes take more than
# this share of the time: in a flood of ingest the writer is busy 80% of it and more.
BUSY_SHARE = 0.5


class Duty:
    """The share of the time a writer spends writing, over about the last second."""

    def __init__(self) -> None:
        self.start = time.monotonic()  # of the current window
        self.busy = 0.0                # seconds written in it
        self.last = 0.0                # the share in the window before

    def add(self, began: float, ended: float) -> None:
        if ended - self.start >= 1.0:
            self.last, self.start, self.busy = self.busy / (ended - self.start), ended, 0.0
        self.busy += ended - began

    def share(self) -> float:
        span = time.monotonic() - self.start
        return self.busy / span if span >= 1.0 else self.last  # a window a second long: the writes have stopped


# Dynamic columns exported as maps as well as JSON text (see Store.export_rows).
_MAPS = {"customDimensions": ("customDimensionsMap", "MAP(VARCHAR, VARCHAR)"),
         "customMeasurements": ("customMeasurementsMap", "MAP(VARCHAR, DOUBLE)")}


class DuckDBStore:
    """:class:`scorewatch.store.base.Store` on a DuckDB file at ``path`` (created with its tables)."""

    dialect = "duckdb"
    shared = False

    def __init__(self, path: str | Path, *, threads: int | None = None, memory_limit: str = "512MB",
                 checkpoint_threshold: str = "256MB") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A checkpoint rewrites the partly filled row groups of every table: at DuckDB's default
        # (16MB of log) that happens every few batches and costs ~30% of ingest CPU.
        config: dict[str, Any] = {"memory_limit": memory_limit, "checkpoint_threshold": checkpoint_threshold}
        if threads:
            config["threads"] = threads
        try:
            self._con = duckdb.connect(str(self.path), config=config)
        except duckdb.IOException as exc:  # most often: another process (a running hub) holds the file
            raise ConfigError(f"cannot open the store {self.path}: {exc}. Only one process may open it; "
                              "is a hub already running on this workspace?") from None
        with contextlib.suppress(OSError):  # telemetry is private to the workspace's owner
            os.chmod(self.path, 0o600)
        self._con.execute("SET TimeZone = 'UTC'")
        self._write_lock = threading.Lock()
        self._duty = Duty()
        self._writer = self._cursor()
        for macro in envelopes.MACROS:
            self._writer.execute(macro)
        self._create_tables()
        row = self._writer.execute("SELECT value FROM scorewatch_state WHERE key = 'row_position'").fetchone()
        self._row_position = int(row[0]) if row else 0

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur = self._con.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        return cur

    def _create_tables(self) -> None:
        for table, cols in TABLES.items():
            spec = ", ".join(f'"{c.name}" {DUCKDB_TYPES[c.type]}' for c in cols)
            self._writer.execute(f'CREATE TABLE IF NOT EXISTS {table} ({spec}, "{POSITION}" BIGINT DEFAULT 0)')
            # A store made before positions existed: its rows get position 0, before every new one.
            self._writer.execute(f'ALTER TABLE {table} ADD COLUMN IF NOT EXISTS "{POSITION}" BIGINT DEFAULT 0')
        self._writer.execute("CREATE TABLE IF NOT EXISTS scorewatch_state (key VARCHAR PRIMARY KEY, value BIGINT)")

    # -- writing -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """The write lock, held for one of ingest's writes; a write that ends counts in the duty."""
        with self._write_lock:
            began = time.monotonic()
            yield
            self._duty.add(began, time.monotonic())

    def write_batch(self, table: str, rows: Sequence[dict[str, Any]]) -> int:
        """Append dict rows to ``table`` in one transaction (dynamic values may be dicts or JSON text)."""
        if table not in TABLES:
            raise BadRequest(f"unknown table {table!r}")
        if not rows:
            return 0
        cols = TABLES[table]
        arrays = {}
        for c in cols:
            values = [row.get(c.name) for row in rows]
            if c.type == "dynamic":
                values = [v if v is None or isinstance(v, str) else orjson.dumps(v).decode() for v in values]
            arrays[c.name] = pa.array(values, type=ARROW_TYPES[c.type])
        with self._writing():
            batch, last = with_positions(pa.table(arrays), self._row_position)
            cur = self._writer
            cur.execute("BEGIN TRANSACTION")
            cur.register("sw_rows", batch)
            try:
                cur.execute(f"INSERT INTO {table} BY NAME SELECT * FROM sw_rows")
                cur.execute("INSERT OR REPLACE INTO scorewatch_state VALUES ('row_position', ?)", [last])
                cur.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(duckdb.Error):
                    cur.execute("ROLLBACK")
                if isinstance(exc, duckdb.Error):
                    raise write_error(exc) from None
                raise
            finally:
                with contextlib.suppress(duckdb.Error):  # after the rollback: never in an aborted transaction
                    cur.unregister("sw_rows")
            self._row_position = last
        return len(rows)

    def write_envelopes(self, batches: Mapping[str, pa.Table], *, position: int | None = None,
                        dry_run: bool = False) -> dict[str, int]:
        """Map Application Insights envelopes into the tables, all in one transaction.

        ``batches`` maps a table name to an Arrow table with the columns ``env`` (envelope JSON text),
        ``appId``, ``appName`` and ``iKey`` (see :mod:`scorewatch.store.envelopes`). ``position``, when
        given, is recorded as the applied write-ahead-log position in the same transaction. The rows
        take the next row positions (one per envelope). A large table is inserted in several
        statements of at most ``STATEMENT_BYTES`` of envelopes each (one statement's working memory
        stays bounded; the transaction is still one). ``dry_run`` rolls back instead of committing. Returns the rows written per table; raises
        :class:`~scorewatch.store.base.StoreRefused` or :class:`~scorewatch.store.base.StoreUnavailable`.
        """
        written: dict[str, int] = {}
        with self._writing():
            cur = self._writer
            last = self._row_position
            cur.execute("BEGIN TRANSACTION")
            try:
                for table, batch in batches.items():
                    if table not in envelopes.BASE_TYPES.values():
                        raise BadRequest(f"unknown table {table!r}")
                    batch, last = with_positions(batch, last)
                    written[table] = 0
                    for part in statement_parts(batch):
                        cur.register("sw_batch", part)
                        cur.execute(envelopes.insert_sql(table, "sw_batch"))
                        written[table] += _scalar(cur)
                        cur.unregister("sw_batch")
                if position is not None:
                    cur.execute("INSERT OR REPLACE INTO scorewatch_state VALUES ('wal_position', ?)", [position])
                cur.execute("INSERT OR REPLACE INTO scorewatch_state VALUES ('row_position', ?)", [last])
                cur.execute("ROLLBACK" if dry_run else "COMMIT")
            except BaseException as exc:
                # Roll back first: in the aborted transaction even unregister fails, and its error
                # ("Current transaction is aborted") would replace the real one.
                with contextlib.suppress(duckdb.Error):
                    cur.execute("ROLLBACK")
                with contextlib.suppress(duckdb.Error):
                    cur.unregister("sw_batch")
                if isinstance(exc, (duckdb.Error, UnicodeError)):  # DuckDB's Python layer decodes text too
                    raise write_error(exc) from None
                raise
            if not dry_run:
                self._row_position = last
        return written

    def interrupted_position(self) -> int | None:
        return None  # a write commits whole or not at all

    def applied_position(self) -> int:
        """The last write-ahead-log position recorded by :meth:`write_envelopes` (0 when none)."""
        row = self._cursor().execute(
            "SELECT value FROM scorewatch_state WHERE key = 'wal_position'").fetchone()
        return int(row[0]) if row else 0

    def apply_retention(self, app_id: str, days: int, *, keep_after: int | Mapping[int, int] | None = None) -> int:
        """Delete the rows of ``app_id`` older than ``days`` days from every table, but none whose
        position is above ``keep_after`` (per stream: this store has one, 0)."""
        if isinstance(keep_after, Mapping):
            keep_after = keep_after.get(0)
        cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=days)
        kept, params = ("", []) if keep_after is None else (f' AND "{POSITION}" <= ?', [keep_after])
        deleted = 0
        with self._write_lock:
            for table in TABLES:
                self._writer.execute(f'DELETE FROM {table} WHERE "appId" = ? AND "timestamp" < ?{kept}',
                                     [app_id, cutoff, *params])
                deleted += _scalar(self._writer)
        return deleted

    # -- continuous export -------------------------------------------------------------------------

    def row_position(self) -> int:
        return self._row_position

    def row_positions(self) -> dict[int, int]:
        return {0: self._row_position}

    @staticmethod
    def _export_filter(app_id: str, after: int, upto: int | None, since: datetime | None,
                       until: datetime | None) -> tuple[str, list[Any]]:
        conditions = export_conditions(app_id, after, upto, since, until)
        return " AND ".join(f'"{column}" {op} ?' for column, op, _ in conditions), [v for _, _, v in conditions]

    def export_rows(self, table: str, app_id: str, *, after: int, upto: int, since: datetime | None = None,
                    until: datetime | None = None, maps: bool = False) -> pa.Table:
        if table not in TABLES:
            raise BadRequest(f"unknown table {table!r}")
        names = [c.name for c in TABLES[table]]
        columns = [f'"{name}"' for name in names] + [f'"{POSITION}"']
        if maps:
            columns += [f'json_transform("{name}", \'"{kind}"\') AS "{alias}"'
                        for name, (alias, kind) in _MAPS.items() if name in names]
        where, params = self._export_filter(app_id, after, upto, since, until)
        cur = self._cursor()
        try:
            # One writer appends rows in position order, and a scan without ORDER BY keeps the
            # table's order (preserve_insertion_order): sorting here cost ~30% of an export's read.
            rows = _arrow(cur.sql(f'SELECT {", ".join(columns)} FROM {table} WHERE {where}', params=params))
        finally:
            cur.close()
        positions = rows.column(POSITION)
        if len(positions) > 1 and not pc.all(pc.less_equal(positions[:-1], positions[1:])).as_py():
            rows = rows.sort_by(POSITION)  # never seen; the contract holds all the same
        return rows

    @contextlib.contextmanager
    def between_writes(self, timeout: float) -> Iterator[bool]:
        # A read transaction open while the writer commits makes the write dearer: ~15% more writer
        # CPU per row in a flood, and DuckDB puts off its automatic checkpoints (its WAL grew to 380
        # MiB instead of 190; docs/export.md, "Ingest goes first"). So the block runs under the write
        # lock, and only while the writes leave time over (BUSY_SHARE): in a flood, writes held back
        # are ingest lost.
        deadline = time.monotonic() + max(timeout, 0)
        while held := self._write_lock.acquire(timeout=max(deadline - time.monotonic(), 0)):
            if self._duty.share() < BUSY_SHARE:
                break
            self._write_lock.release()
            held = False
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(0.1, left))
        try:
            yield held
        finally:
            if held:
                self._write_lock.release()

    def export_count(self, app_id: str, tables: Sequence[str], *, after: int, upto: int | None = None,
                     since: datetime | None = None, until: datetime | None = None) -> int:
        unknown = [t for t in tables if t not in TABLES]
        if unknown:
            raise BadRequest(f"unknown table {unknown[0]!r}")
        if not tables:
            return 0
        where, params = self._export_filter(app_id, after, upto, since, until)
        sql = " UNION ALL ".join(f"SELECT count(*) AS n FROM {table} WHERE {where}" for table in tables)
        cur = self._cursor()
        try:
            return int(_scalar(cur.execute(f"SELECT sum(n) FROM ({sql})", params * len(tables))))
        finally:
            cur.close()

    # -- reading -----------------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = (), *, timeout_s: float | None = None,
              max_rows: int | None = None) -> QueryResult:
        statements = duckdb.extract_statements(sql)
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise BadRequest("the store runs exactly one read-only (SELECT) statement per query")
        cur = self._cursor()
        timer = None
        if timeout_s is not None:
            timer = threading.Timer(timeout_s, cur.interrupt)
            timer.daemon = True
            timer.start()
        try:
            cur.execute(sql, list(params))
            columns = [(d[0], kql_type(str(d[1]))) for d in cur.description]
            rows = cur.fetchall() if max_rows is None else cur.fetchmany(max_rows + 1)
        except duckdb.InterruptException:
            raise Timeout(f"query cancelled after {timeout_s:g}s") from None
        except duckdb.Error as exc:
            log.debug("query failed: %s; SQL: %s", exc, sql)
            raise BadRequest(f"the query failed in the store: {engine_message(exc)}") from None
        finally:
            if timer is not None:
                timer.cancel()
            cur.close()
        truncated = max_rows is not None and len(rows) > max_rows
        if truncated:
            rows = rows[:max_rows]
        return QueryResult(columns=columns, rows=[list(r) for r in rows], truncated=truncated)

    def count(self, table: str, app_id: str | None = None) -> int:
        """Rows in ``table`` (of one application when ``app_id`` is given)."""
        if table not in TABLES:
            raise BadRequest(f"unknown table {table!r}")
        where, params = ('WHERE "appId" = ?', [app_id]) if app_id else ("", [])
        return int(_scalar(self._cursor().execute(f"SELECT count(*) FROM {table} {where}", params)))

    def size_bytes(self) -> int:
        """Bytes on disk: the database file and DuckDB's own WAL."""
        total = 0
        for path in (self.path, self.path.with_name(self.path.name + ".wal")):
            if path.exists():
                total += path.stat().st_size
        return total

    def checkpoint(self) -> None:
        with self._write_lock:
            self._writer.execute("CHECKPOINT")

    def close(self) -> None:
        with self._write_lock:
            self._writer.close()
            self._con.close()
