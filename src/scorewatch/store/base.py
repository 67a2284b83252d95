"""The store interface: what the hub and the query API need from a telemetry backend.

A backend is one module implementing :class:`Store` (DuckDB, embedded; ClickHouse, shared by hub
replicas; :mod:`scorewatch.store.backends` opens one from its URL). Timestamps are
UTC. Rows are written in large batches only; queries are SQL produced by the KQL compiler for the
backend's ``dialect`` (a sqlglot dialect name), with parameters bound, never interpolated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pyarrow as pa


# A writer's stream of positions (see Store.row_positions): stream s's rows take the positions
# s << STREAM_BITS | 1, 2, ... (a single-writer store has stream 0 only, and rows made before
# positions existed have position 0).
STREAM_BITS = 40


def stream_bounds(stream: int) -> tuple[int, int]:
    """(below, top) of ``stream``: every position of its rows is in (below, top]."""
    return (-1 if stream == 0 else stream << STREAM_BITS), ((stream + 1) << STREAM_BITS) - 1


class StoreUnavailable(Exception):
    """The store cannot write right now (disk full, out of memory, an I/O error): the data is fine,
    the same write should be tried again later. ``memory``: it ran out of memory (a write too large
    for it may never pass)."""

    def __init__(self, message: str, *, memory: bool = False) -> None:
        super().__init__(message)
        self.memory = memory


class StoreRefused(Exception):
    """The store refuses this data: the same write would fail again. The message is the engine's
    own reason, without the statement."""


@dataclass
class QueryResult:
    """A query's answer: column names with their KQL types, rows, and whether rows were cut off."""

    columns: list[tuple[str, str]]
    rows: list[list[Any]]
    truncated: bool = False
    stats: dict[str, Any] = field(default_factory=dict)


class Store(Protocol):
    dialect: str
    shared: bool  # other processes write the same store (hub replicas): shared state belongs in it

    def write_batch(self, table: str, rows: Sequence[dict[str, Any]]) -> int:
        """Append ``rows`` (dicts keyed by :mod:`scorewatch.store.schema` column names; missing keys
        are null) to ``table`` in one transaction; returns the number written."""
        ...

    def write_envelopes(self, batches: Mapping[str, Any], *, position: int | None = None,
                        dry_run: bool = False) -> dict[str, int]:
        """Map Application Insights envelopes into the tables, all in one transaction that also
        records ``position`` (the write-ahead-log position applied). ``dry_run`` rolls back instead of
        committing: it tells whether the store would take the batch. Raises :class:`StoreRefused`
        or :class:`StoreUnavailable`; nothing of a failed call is kept."""
        ...

    def applied_position(self) -> int:
        """The last ``position`` recorded by :meth:`write_envelopes` (0 when none)."""
        ...

    def interrupted_position(self) -> int | None:
        """The ``position`` of a write that began and may not have finished (a store without
        transactions). Replaying the log must first write exactly the records up to it as one batch,
        so the store can tell what it already has. None when there is none (always, with
        transactions)."""
        ...

    def query(self, sql: str, params: Sequence[Any] = (), *, timeout_s: float | None = None,
              max_rows: int | None = None) -> QueryResult:
        """Run one read-only statement; cancelled past ``timeout_s`` (raises ``errors.Timeout``)."""
        ...

    def apply_retention(self, app_id: str, days: int, *, keep_after: int | Mapping[int, int] | None = None) -> int:
        """Delete the rows of ``app_id`` older than ``days``, except those whose position is above
        ``keep_after`` (rows an export rule has not exported yet: one position, or one per stream;
        rows of a stream not named are not held back); returns how many went."""
        ...

    # -- continuous export: rows in the order they were stored (see schema.POSITION) ---------------

    def row_position(self) -> int:
        """The position of the last row this writer committed (0 when none): every row it stores
        later is above it."""
        ...

    def row_positions(self) -> dict[int, int]:
        """Every writer's stream and its last committed position: each stream's positions grow in
        its own commit order (one stream, 0, in a store with a single writer). A reader following
        the store keeps one position per stream."""
        ...

    def export_rows(self, table: str, app_id: str, *, after: int, upto: int, since: datetime | None = None,
                    until: datetime | None = None, maps: bool = False) -> pa.Table:
        """The rows of ``app_id`` in ``table`` whose position is in (``after``, ``upto``] (and whose
        timestamp is in [``since``, ``until``) when given), in position order, as an Arrow table with
        the schema's columns (timestamps naive UTC, dynamic values as JSON text) and ``POSITION``.
        ``maps`` adds ``customDimensionsMap`` (string → string) and, where the table has
        measurements, ``customMeasurementsMap`` (string → double)."""
        ...

    def export_count(self, app_id: str, tables: Sequence[str], *, after: int, upto: int | None = None,
                     since: datetime | None = None, until: datetime | None = None) -> int:
        """How many rows :meth:`export_rows` would return over ``tables`` (``upto`` None: no bound)."""
        ...

    def between_writes(self, timeout: float) -> AbstractContextManager[bool]:
        """Hold this process's writes back while the block runs, once the store has time for it:
        no write in progress, and the writes not keeping it busy (waiting for that at most
        ``timeout`` seconds). The block gets True when it runs between writes, False when the writes
        went on past ``timeout`` (it then runs beside them). The export reads its rows so where
        reading beside a write slows the write (DuckDB); a store whose reads never slow its writes
        gives True at once."""
        ...

    def size_bytes(self) -> int:
        """Bytes the store takes on disk."""
        ...

    def close(self) -> None: ...
