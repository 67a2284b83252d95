"""Fixtures of the export tests: a store in tmp_path, Azurite and moto's S3 started for the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scorewatch.store.duckdb import DuckDBStore
from tests.export.servers import Azurite, MotoS3
from tests.export.telemetry import open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = open_store(tmp_path / "telemetry.duckdb")
    yield s
    s.close()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    server = Azurite(tmp_path_factory.mktemp("azurite-log")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    server = MotoS3().start()
    yield server
    server.stop()
