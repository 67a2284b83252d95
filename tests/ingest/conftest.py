"""A real hub on 127.0.0.1, run in this process (so tests can read its store while it runs)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scorewatch.ingest.cli import ensure_default_app
from scorewatch.ingest.connections import protocol_class
from scorewatch.ingest.hub import Hub, create_app, open_hub
from scorewatch.settings import Settings
from scorewatch.workspace import Workspace
from tests.backends import BACKENDS, chdb_url, skip_without
from tests.helpers import free_port, serve_in_thread, wait_for_http


@dataclass
class RunningHub:
    url: str
    hub: Hub
    workspace: Workspace
    default: dict[str, Any]

    @property
    def ikey(self) -> str:
        return self.default["instrumentation_key"]

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[list[Any]]:
        """Query the store once everything admitted so far is written."""
        assert self.hub.ingestor.flush(30), "the hub did not write its queue within 30 s"
        return self.hub.store.query(sql, params).rows

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any]:
        assert self.hub.ingestor.flush(30)
        result = self.hub.store.query(sql, params)
        assert len(result.rows) == 1, result.rows
        return dict(zip([c[0] for c in result.columns], result.rows[0], strict=True))


@contextmanager
def running_hub(home: Path, backend: str = "duckdb", **overrides: Any) -> Iterator[RunningHub]:
    """A hub on ``backend``'s store: DuckDB in the workspace, or a database of its own in this
    process's chdb engine."""
    port = free_port()
    if backend == "chdb":
        overrides.setdefault("store", chdb_url("hub"))
        overrides.setdefault("clickhouse_ttl_days", 0)  # tests' rows may be dated long ago
    settings = Settings.from_env({}, home=home, hub_port=port, **{"ingest_linger_ms": 20, **overrides})
    workspace = Workspace(home)
    default = ensure_default_app(workspace, settings)
    hub = open_hub(workspace, settings)
    with serve_in_thread(create_app(hub), port=port, http=protocol_class(settings)) as url:
        wait_for_http(url + "/health", expect_status=200)
        yield RunningHub(url, hub, workspace, default)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[RunningHub]:
    with running_hub(tmp_path / "ws") as running:
        yield running


@pytest.fixture(scope="module")
def shared_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    with running_hub(tmp_path_factory.mktemp("hub") / "ws") as running:
        yield running


@pytest.fixture(params=BACKENDS)
def any_hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningHub]:
    """A hub on each backend's store (the tests of what lands in the store run on both)."""
    skip_without(request.param)
    with running_hub(tmp_path / "ws", request.param) as running:
        yield running


@pytest.fixture(scope="module", params=BACKENDS)
def any_shared_hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    skip_without(request.param)
    with running_hub(tmp_path_factory.mktemp("hub") / "ws", request.param) as running:
        yield running
