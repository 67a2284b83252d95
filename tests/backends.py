"""The store backends the suite runs its store-level tests on: DuckDB and ClickHouse (chdb, in-process).

chdb hosts one engine per process, on one directory: every chdb store a test makes in this process
is a database of its own in that one engine (:func:`chdb_store`). Hub processes a test starts get
their own directory.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port, wait_for_http

BACKENDS = ["duckdb", "chdb"]
_ENGINE_DIR: Path | None = None
_NAMES = itertools.count()


def have_chdb() -> bool:
    try:
        import chdb  # noqa: F401
        import clickhouse_connect  # noqa: F401
    except ImportError:
        return False
    return True


def engine_dir() -> Path:
    """This process's chdb directory (made on first use, removed by the OS's temp cleanup)."""
    global _ENGINE_DIR
    if _ENGINE_DIR is None:
        _ENGINE_DIR = Path(tempfile.mkdtemp(prefix="scorewatch-chdb-", dir=os.environ.get("PYTEST_CHDB_TMP")))
    return _ENGINE_DIR


def chdb_url(name: str = "t") -> str:
    """A store URL for a new database in this process's chdb engine."""
    return f"chdb://{engine_dir()}?database={name}_{os.getpid()}_{next(_NAMES)}"


def chdb_store(name: str = "t", **options: Any) -> Any:
    """A new ClickHouse store on chdb: a fresh database in this process's engine."""
    if not have_chdb():
        pytest.skip("chdb is not installed (pip install -e '.[test]')")
    from scorewatch.store.backends import open_clickhouse, parse

    options.setdefault("ttl_days", 0)  # the tests' rows are dated 2024: a TTL would drop them at once
    return open_clickhouse(parse(chdb_url(name)), **options)


def make_store(backend: str, tmp_path: Path, name: str = "t") -> Any:
    if backend == "duckdb":
        from scorewatch.store.duckdb import DuckDBStore

        return DuckDBStore(tmp_path / f"{name}.duckdb")
    return chdb_store(name)


def store_url(backend: str, tmp_path: Path) -> str:
    """The ``--store`` value of a hub process for ``backend`` (its own chdb directory)."""
    return "duckdb" if backend == "duckdb" else f"chdb://{tmp_path / 'chdb'}"


def skip_without(backend: str) -> None:
    if backend == "chdb" and not have_chdb():
        pytest.skip("chdb is not installed")


class ClickHouse:
    """A ClickHouse server for hub replicas to share: a process serving ClickHouse's HTTP interface over
    a chdb directory (tests/clickhouse_http.py)."""

    def __init__(self, path: Path) -> None:
        self.path, self.port = path, free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"clickhouse://127.0.0.1:{self.port}/telemetry?compress=0&connect_timeout=2"

    def start(self) -> ClickHouse:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.clickhouse_http", str(self.path), str(self.port)],
                                     cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for_http(f"http://127.0.0.1:{self.port}/ping", proc=self.proc, expect_status=200)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
