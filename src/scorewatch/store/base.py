"""The store interface: what the hub and the query API need from a telemetry backend.

A backend is one module implementing :class:`Store` (DuckDB now, ClickHouse later). Timestamps are
UTC. Rows are written in large batches only; queries are SQL produced by the KQL compiler for the
backend's ``dialect`` (a sqlglot dialect name), with parameters bound, never interpolated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class QueryResult:
    """A query's answer: column names with their KQL types, rows, and whether rows were cut off."""

    columns: list[tuple[str, str]]
    rows: list[list[Any]]
    truncated: bool = False
    stats: dict[str, Any] = field(default_factory=dict)


class Store(Protocol):
    dialect: str

    def write_batch(self, table: str, rows: Sequence[dict[str, Any]]) -> int:
        """Append ``rows`` (dicts keyed by :mod:`scorewatch.store.schema` column names; missing keys
        are null) to ``table`` in one transaction; returns the number written."""
        ...

    def query(self, sql: str, params: Sequence[Any] = (), *, timeout_s: float | None = None,
              max_rows: int | None = None) -> QueryResult:
        """Run one read-only statement; cancelled past ``timeout_s`` (raises ``errors.Timeout``)."""
        ...

    def apply_retention(self, app_id: str, days: int) -> int:
        """Delete the rows of ``app_id`` older than ``days``; returns how many went."""
        ...

    def close(self) -> None: ...
