"""Stores of each backend for the store tests, and envelope batches as ingest hands them over."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from tests.backends import BACKENDS, chdb_store


def batch(envelopes: list[dict], app_id: str = "app-1") -> pa.Table:
    n = len(envelopes)
    return pa.table({"env": [orjson.dumps(e).decode() for e in envelopes], "appId": [app_id] * n,
                     "appName": ["shop"] * n, "iKey": ["ikey-1"] * n})


def message(text: str, time: str = "2026-01-01T10:00:00Z") -> dict:
    return {"time": time, "data": {"baseType": "MessageData", "baseData": {"message": text}}}


class Opened:
    """A store of one backend, and a way to open it again (as a restarted hub would)."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        self.backend, self.tmp_path = backend, tmp_path
        self.store: Any = None
        self._spec: Any = None
        self.open()

    def open(self) -> Any:
        if self.backend == "duckdb":
            from scorewatch.store.duckdb import DuckDBStore

            self.store = DuckDBStore(self.tmp_path / "t.duckdb")
        elif self._spec is None:
            from scorewatch.store.backends import parse

            self.store = chdb_store("stores")
            self._spec = parse(self.store.name)
        else:
            from scorewatch.store.backends import open_clickhouse

            self.store = open_clickhouse(self._spec, stream=self._stream, ttl_days=0)
        self._stream = getattr(self.store, "stream", 0)
        return self.store

    def reopen(self) -> Any:
        self.store.close()
        return self.open()


@pytest.fixture(params=BACKENDS)
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opened]:
    handle = Opened(request.param, tmp_path)
    yield handle
    handle.store.close()


@pytest.fixture
def any_store(opened: Opened) -> Any:
    return opened.store

