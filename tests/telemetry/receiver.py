"""A real Application Insights ingestion receiver for tests: Starlette on uvicorn in a thread.

It records every envelope it accepts, and can be stopped and restarted on the same port, slowed,
or scripted to answer 206 with per-item errors, 429 or 503 (with ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections import deque
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.helpers import free_port


class Receiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.items: list[dict[str, Any]] = []
        self.posts: list[list[dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []
        # Scripted answers, consumed one per POST: (status, {"errors": [...]} or None, headers).
        self.script: deque[tuple[int, dict[str, Any] | None, dict[str, str]]] = deque()
        self.delay_s = 0.0
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=[Route("/v2.1/track", self._track, methods=["POST"]),
                                     Route("/v2/track", self._track, methods=["POST"]),
                                     Route("/echo", self._echo, methods=["GET", "POST"])])

    @property
    def connection_string(self) -> str:
        return f"InstrumentationKey=00000000-0000-0000-0000-000000000001;IngestionEndpoint={self.url}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _echo(self, request: Request) -> JSONResponse:
        """A downstream service for dependency tests: answers with the headers it got."""
        status = int(request.query_params.get("status", "200"))
        return JSONResponse(dict(request.headers), status_code=status)

    async def _track(self, request: Request) -> JSONResponse:
        body = await request.body()
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        batch = orjson.loads(body)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        with self._lock:
            status, payload, headers = self.script.popleft() if self.script else (200, None, {})
            self.posts.append(batch)
            self.headers.append(dict(request.headers))
            if status in (200, 206):
                failed = {e["index"] for e in (payload or {}).get("errors", [])}
                self.items.extend(item for i, item in enumerate(batch) if i not in failed)
        if status == 200:
            payload = {"itemsReceived": len(batch), "itemsAccepted": len(batch), "errors": []}
        elif status == 206:
            errors = (payload or {}).get("errors", [])
            payload = {"itemsReceived": len(batch), "itemsAccepted": len(batch) - len(errors), "errors": errors}
        return JSONResponse(payload or {}, status_code=status, headers=headers)

    def start(self) -> Receiver:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("receiver did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            assert self._thread is not None
            self._thread.join(10)
            self._server = None

    def of_type(self, base_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [i for i in self.items if i["data"]["baseType"] == base_type]

    def wait_for(self, predicate, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Wait until ``predicate(items)`` is truthy; returns the items (fails the test on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                items = list(self.items)
            if predicate(items):
                return items
            time.sleep(0.05)
        raise AssertionError(f"receiver did not get the expected items in {timeout}s; got {len(items)}")

    def __enter__(self) -> Receiver:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
