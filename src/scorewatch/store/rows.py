"""Arrow batches as every store writes them: column types, row positions, statement-sized parts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from scorewatch.store.schema import POSITION

# KQL type → the Arrow type a store's batches and export rows use.
ARROW_TYPES = {"string": pa.string(), "datetime": pa.timestamp("us"), "real": pa.float64(),
               "int": pa.int32(), "long": pa.int64(), "bool": pa.bool_(), "dynamic": pa.string()}

# Envelope text one INSERT statement reads at most (a larger table is inserted in several).
STATEMENT_BYTES = 64 * 1024 * 1024


def statement_parts(batch: pa.Table) -> list[pa.Table]:
    """``batch`` cut into parts of at most :data:`STATEMENT_BYTES` of envelopes (column ``env``)."""
    size = batch.column("env").nbytes if batch.num_rows else 0
    if size <= STATEMENT_BYTES:
        return [batch]
    rows = max(1, batch.num_rows * STATEMENT_BYTES // size)
    return [batch.slice(start, rows) for start in range(0, batch.num_rows, rows)]


def with_positions(batch: pa.Table, last: int) -> tuple[pa.Table, int]:
    """``batch`` with the positions after ``last`` (one per row) in POSITION; and the new last."""
    end = last + batch.num_rows
    return batch.append_column(POSITION, pa.array(np.arange(last + 1, end + 1, dtype=np.int64))), end


def export_conditions(app_id: str, after: int, upto: int | None, since: datetime | None,
                      until: datetime | None) -> list[tuple[str, str, Any]]:
    """(column, operator, value) of the rows ``Store.export_rows`` reads (times as naive UTC)."""
    conditions: list[tuple[str, str, Any]] = [("appId", "=", app_id), (POSITION, ">", after)]
    for column, operator, value in ((POSITION, "<=", upto), ("timestamp", ">=", since), ("timestamp", "<", until)):
        if value is not None:
            if isinstance(value, datetime) and value.tzinfo:
                value = value.astimezone(UTC).replace(tzinfo=None)
            conditions.append((column, operator, value))
    return conditions
