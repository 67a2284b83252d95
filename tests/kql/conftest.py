"""Fixtures for the KQL tests: a real store of each backend (DuckDB, ClickHouse on chdb) with the
store's tables and a few rows; every data-driven test runs on both with the same rows."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import duckdb
import pytest

from scorewatch.kql import compile_query
from scorewatch.kql.api import native
from scorewatch.store import schema
from tests.backends import BACKENDS, make_store

NOW = datetime(2024, 5, 1, 12, 0, 0)


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    for table, columns in schema.TABLES.items():
        spec = ", ".join(f'"{c.name}" {schema.DUCKDB_TYPES[c.type]}' for c in columns)
        con.execute(f'CREATE TABLE "{table}" ({spec})')


def _request(i: int, **overrides: Any) -> dict[str, Any]:
    row = {"timestamp": datetime(2024, 5, 1, 10, i * 7 % 60, i % 60), "id": f"r{i}", "name": "POST /score",
           "url": f"http://svc{i % 2}.local/score?x={i}", "success": i % 4 != 0,
           "resultCode": "200" if i % 4 else "500", "duration": float(10 * i + 5),
           "cloud_RoleName": f"svc{i % 2}", "operation_Id": f"op{i}", "appId": "app1", "itemType": "request",
           "customDimensions": {"Input": f"in{i}", "Request Id": f"rid-{i}", "n": i, "list": [i, i + 1]}}
    row.update(overrides)
    return row


REQUESTS = [_request(i) for i in range(1, 9)] + [
    _request(9, appId="app2", name="GET /other", cloud_RoleName="svc9"),
    _request(10, name=None, cloud_RoleName=None, customDimensions={}),
]
TRACES = [
    {"timestamp": datetime(2024, 5, 1, 10, 1), "message": "model_data_collection", "severityLevel": 1,
     "operation_Id": "op1", "appId": "app1", "itemType": "trace",
     "customDimensions": {"Input": "{\"data\": [[1, 2]]}", "Prediction": "[3]", "Request Id": "rid-1",
                          "Service Name": "svc0"}},
    {"timestamp": datetime(2024, 5, 1, 10, 2), "message": "Hello World from score.py", "severityLevel": 1,
     "operation_Id": "op2", "appId": "app1", "itemType": "trace", "customDimensions": {"level": "INFO"}},
    {"timestamp": datetime(2024, 5, 1, 10, 3), "message": "user-error: bad input_value", "severityLevel": 3,
     "operation_Id": "op4", "appId": "app1", "itemType": "trace", "customDimensions": {"level": "ERROR"}},
]
EXCEPTIONS = [
    {"timestamp": datetime(2024, 5, 1, 11, 30), "type": "ValueError", "outerMessage": "bad value",
     "operation_Id": "op4", "appId": "app1", "itemType": "exception", "severityLevel": 3},
    {"timestamp": datetime(2024, 4, 20, 11, 30), "type": "KeyError", "outerMessage": "old",
     "operation_Id": "op8", "appId": "app1", "itemType": "exception", "severityLevel": 3},
]
DEPENDENCIES = [
    {"timestamp": datetime(2024, 5, 1, 10, 5), "target": "db.local", "type": "SQL", "name": "SELECT",
     "success": False, "resultCode": "500", "duration": 12.5, "operation_Id": "op1", "appId": "app1"},
    {"timestamp": datetime(2024, 5, 1, 10, 6), "target": "api.local", "type": "HTTP", "name": "GET /x",
     "success": True, "resultCode": "200", "duration": 3.0, "operation_Id": "op2", "appId": "app1"},
]


def seed(store: Any) -> Any:
    store.write_batch("requests", REQUESTS)
    store.write_batch("traces", TRACES)
    store.write_batch("exceptions", EXCEPTIONS)
    store.write_batch("dependencies", DEPENDENCIES)
    return store


@pytest.fixture(scope="session", params=BACKENDS)
def con(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A store of each backend holding the rows above (the name is the tests' habit)."""
    store = seed(make_store(request.param, tmp_path_factory.mktemp("kql")))
    yield store
    store.close()


def run(store: Any, kql: str, **options: Any) -> list[tuple]:
    """Rows of ``kql`` run on ``store``, dynamic values parsed from their JSON text."""
    compiled = compile_query(kql, dialect=store.dialect, now=NOW, **options)
    rows = store.query(compiled.sql, compiled.params).rows
    return typed_rows(compiled, rows)


def typed_rows(compiled: Any, rows: list[list[Any]]) -> list[tuple]:
    """Rows as Python values of their KQL types: dynamic parsed, timespans as timedelta."""
    kinds = [kind for _, kind in compiled.columns]
    return [tuple(_value(kind, v) for kind, v in zip(kinds, row, strict=True)) for row in rows]


def _value(kind: str, value: Any) -> Any:
    if kind == "dynamic" and isinstance(value, str):
        return json.loads(value)
    return native(kind, value)


# ---------------------------------------------------------------- a real query API on a real socket
KEYS = {"app1": "key-one", "app2": "key-two"}


def authenticate(app_id: str, api_key: str | None) -> None:
    from scorewatch.errors import Forbidden, Unauthorized

    if api_key is None:
        raise Unauthorized("missing x-api-key header")
    if KEYS.get(app_id) != api_key:
        raise Forbidden("the API key does not grant access to this application")


class ApiServer:
    """query_routes around a DuckDBStore, served by uvicorn in a thread on 127.0.0.1."""

    def __init__(self, store: Any, **options: Any) -> None:
        from starlette.applications import Starlette

        from scorewatch.http import EXCEPTION_HANDLERS
        from scorewatch.kql.api import query_routes

        self.app = Starlette(routes=query_routes(store, authenticate, clock=lambda: NOW, **options),
                             exception_handlers=EXCEPTION_HANDLERS)

    def __enter__(self) -> ApiServer:
        from tests.helpers import serve_in_thread

        self._serving = serve_in_thread(self.app, log_level="error", lifespan="off")
        self.url = self._serving.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._serving.__exit__(None, None, None)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    from scorewatch.store.duckdb import DuckDBStore

    store = DuckDBStore(tmp_path_factory.mktemp("store") / "telemetry.duckdb")
    store.write_batch("requests", REQUESTS)
    store.write_batch("traces", TRACES)
    store.write_batch("exceptions", EXCEPTIONS)
    store.write_batch("dependencies", DEPENDENCIES)
    yield store
    store.close()


@pytest.fixture(scope="module")
def api(store):
    with ApiServer(store) as server:
        yield server
