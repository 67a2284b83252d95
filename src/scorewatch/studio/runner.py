"""Running a page's KQL: the query API's compiler, scoping and limits, off the event loop.

Each query is compiled with the applications the viewer may open as its scope and the page's time
range as its timespan (:func:`scorewatch.kql.compile_query`), run by the store with the hub's time
limit, and answered in the query API's table shape (:func:`scorewatch.kql.api.response_body`). A
page's queries run side by side in worker threads, at most ``concurrency`` at a time across the
studio (more wait; past ``8 * concurrency`` waiting, the answer is 429), so a page costs the time of
its slowest query, not their sum, and no page holds up ingest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

from scorewatch.errors import ScorewatchError, TooManyRequests, error_body
from scorewatch.kql.api import response_body
from scorewatch.kql.compiler import compile_query
from scorewatch.store.base import Store

Result = dict[str, Any]


class Runner:
    def __init__(self, store: Store, *, timeout_s: float, max_rows: int, concurrency: int,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self.concurrency = concurrency
        self.clock = clock or (lambda: datetime.now(UTC))
        self._slots: asyncio.Semaphore | None = None
        self._admitted = 0

    async def run_all(self, app_ids: Collection[str], queries: Mapping[str, str],
                      span: tuple[datetime, datetime] | None, now: datetime, *,
                      max_rows: int | None = None) -> dict[str, Result]:
        """Run ``queries`` (name → KQL) side by side; their results by name, in the same order."""
        results = await asyncio.gather(*(self.run(app_ids, kql, span, now, max_rows=max_rows)
                                         for kql in queries.values()))
        return dict(zip(queries, results, strict=True))

    async def run(self, app_ids: Collection[str], kql: str, span: tuple[datetime, datetime] | None,
                  now: datetime, *, max_rows: int | None = None) -> Result:
        """One query's result: ``kql``, ``columns``, ``rows``, ``elapsed_ms`` (and ``render``,
        ``truncated``), or ``kql``, ``error`` (the query API's error object) and ``elapsed_ms``."""
        if self._admitted >= 8 * self.concurrency:
            raise TooManyRequests(f"{self._admitted} studio queries are running or waiting; retry later")
        if self._slots is None:  # made on the event loop that uses it
            self._slots = asyncio.Semaphore(self.concurrency)
        self._admitted += 1
        try:
            async with self._slots:
                return await run_in_threadpool(self._run, tuple(app_ids), kql, span, now,
                                               max_rows or self.max_rows)
        finally:
            self._admitted -= 1

    def _run(self, app_ids: tuple[str, ...], kql: str, span: tuple[datetime, datetime] | None, now: datetime,
             max_rows: int) -> Result:
        started = time.perf_counter()
        try:
            compiled = compile_query(kql, dialect=self.store.dialect, app_id=app_ids, timespan=span, now=now)
            result = self.store.query(compiled.sql, compiled.params, timeout_s=self.timeout_s, max_rows=max_rows)
            body = response_body(compiled, result, max_rows)
            try:
                orjson.dumps(body)
            except orjson.JSONEncodeError:  # a dynamic value nested deeper than JSON output allows
                body = response_body(compiled, result, max_rows, parse_dynamic=False)
        except ScorewatchError as err:  # a KqlError carries its line and column in innererror
            return {"kql": kql, "error": error_body(err)["error"], "elapsed_ms": _since(started)}
        table = body["tables"][0]
        out: Result = {"kql": kql, "columns": table["columns"], "rows": table["rows"],
                       "elapsed_ms": _since(started)}
        if "render" in body:
            out["render"] = body["render"]
        if "error" in body:
            out["truncated"] = True
        return out


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def records(result: Result) -> list[dict[str, Any]]:
    """A result's rows as dicts keyed by column name (empty for an error)."""
    names = [c["name"] for c in result.get("columns", [])]
    return [dict(zip(names, row, strict=False)) for row in result.get("rows", [])]
