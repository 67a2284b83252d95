"""Fixtures for the KQL tests: a real DuckDB database with the store's tables and a few rows."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from scorewatch.kql import compile_query
from scorewatch.store import schema

NOW = datetime(2024, 5, 1, 12, 0, 0)


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    for table, columns in schema.TABLES.items():
        spec = ", ".join(f'"{c.name}" {schema.DUCKDB_TYPES[c.type]}' for c in columns)
        con.execute(f'CREATE TABLE "{table}" ({spec})')


def insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]) -> None:
    names = [c.name for c in schema.TABLES[table]]
    for row in rows:
        values = [json.dumps(row[n]) if n in row and schema.column_types(table)[n] == "dynamic"
                  else row.get(n) for n in names]
        con.execute(f'INSERT INTO "{table}" VALUES ({", ".join("?" for _ in names)})', values)


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


def fill(con: duckdb.DuckDBPyConnection) -> None:
    create_tables(con)
    insert(con, "requests", REQUESTS)
    insert(con, "traces", TRACES)
    insert(con, "exceptions", EXCEPTIONS)
    insert(con, "dependencies", DEPENDENCIES)


@pytest.fixture(scope="session")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kql") / "telemetry.duckdb"
    con = duckdb.connect(str(path))
    fill(con)
    con.close()
    return path


@pytest.fixture(scope="session")
def con(db_path: Path):
    connection = duckdb.connect(str(db_path), read_only=True)
    yield connection
    connection.close()


def run(con: duckdb.DuckDBPyConnection, kql: str, **options: Any) -> list[tuple]:
    """Rows of ``kql`` run on ``con``, dynamic values parsed from their JSON text."""
    compiled = compile_query(kql, now=NOW, **options)
    rows = con.execute(compiled.sql, compiled.params).fetchall()
    dynamic = [i for i, (_, kind) in enumerate(compiled.columns) if kind == "dynamic"]
    return [tuple(json.loads(v) if i in dynamic and isinstance(v, str) else v for i, v in enumerate(row))
            for row in rows]


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
