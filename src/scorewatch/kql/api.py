"""The query API, in Application Insights' REST shape.

``GET /v1/apps/{appId}/query?query=<KQL>&timespan=PT1H`` and ``POST /v1/apps/{appId}/query`` with
``{"query": ..., "timespan": ...}``, authenticated by the ``x-api-key`` header. The answer is
``{"tables": [{"name": "PrimaryResult", "columns": [{"name", "type"}], "rows": [[...]]}]}``, plus
``"render"`` when the query ends in ``render`` and a ``PartialError`` when rows were cut at the row
limit. The application scope and the timespan are added by the compiler to every table the query
reads; the query text cannot widen them. See docs/query-api.md.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from scorewatch.errors import BadRequest, PayloadTooLarge, ScorewatchError, TooManyRequests
from scorewatch.http import error_response
from scorewatch.kql.compiler import CompiledQuery, compile_query
from scorewatch.store.base import QueryResult, Store

MAX_BODY = 1024 * 1024
Authenticate = Callable[[str, "str | None"], None]

_DURATION = re.compile(r"P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
                       r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?",
                       re.IGNORECASE)


def query_routes(store: Store, authenticate: Authenticate, *, timeout_s: float = 60.0, max_rows: int = 500_000,
                 clock: Callable[[], datetime] | None = None, concurrency: int = 4) -> list[BaseRoute]:
    """The query API's routes, answering from ``store``.

    ``authenticate(app_id, api_key)`` raises ``errors.Unauthorized``/``Forbidden`` to refuse a caller.
    ``timeout_s`` and ``max_rows`` protect the hub; ``clock`` is what ``now()``/``ago()`` read.
    Compiling, running and encoding a query happen in a worker thread, ``concurrency`` queries at a
    time (more wait; past ``8 * concurrency`` waiting the answer is 429), so no query holds up the
    event loop that ingest and ``/health`` share.
    """
    now = clock or (lambda: datetime.now(UTC))
    slots = asyncio.Semaphore(concurrency)
    admitted = 0

    def answer(app_id: str, text: str, timespan: str | None) -> bytes:
        current = now()
        compiled = compile_query(text, dialect=store.dialect, app_id=app_id,
                                 timespan=parse_timespan(timespan, current), now=current)
        result = store.query(compiled.sql, compiled.params, timeout_s=timeout_s, max_rows=max_rows)
        return encode_body(compiled, result, max_rows)

    async def query(request: Request) -> Response:
        nonlocal admitted
        try:
            app_id = request.path_params["app_id"]
            authenticate(app_id, request.headers.get("x-api-key"))
            text, timespan = await _arguments(request)
            if admitted >= 8 * concurrency:
                raise TooManyRequests(f"{admitted} queries are running or waiting; retry later", retry_after=1)
            admitted += 1
            try:
                async with slots:
                    content = await run_in_threadpool(answer, app_id, text, timespan)
            finally:
                admitted -= 1
            return Response(content, media_type="application/json")
        except ScorewatchError as err:  # a KqlError too: its position in the body's innererror
            return error_response(err)

    return [Route("/v1/apps/{app_id}/query", query, methods=["GET", "POST"])]


async def _arguments(request: Request) -> tuple[str, str | None]:
    if request.method == "GET":
        text, timespan = request.query_params.get("query"), request.query_params.get("timespan")
    else:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY:
            raise PayloadTooLarge(f"the query body is larger than {MAX_BODY} bytes")
        raw = bytearray()
        async for chunk in request.stream():  # checked as it arrives: a chunked body has no length
            raw += chunk
            if len(raw) > MAX_BODY:
                raise PayloadTooLarge(f"the query body is larger than {MAX_BODY} bytes")
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            raise BadRequest('the body must be JSON: {"query": "...", "timespan": "PT1H"}') from None
        if not isinstance(body, dict):
            raise BadRequest('the body must be a JSON object: {"query": "...", "timespan": "PT1H"}')
        text, timespan = body.get("query"), body.get("timespan")
        if timespan is None:
            timespan = request.query_params.get("timespan")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("the 'query' parameter is required")
    if timespan is not None and not isinstance(timespan, str):
        raise BadRequest("'timespan' must be an ISO 8601 duration or interval string")
    return text, timespan


def parse_timespan(text: str | None, now: datetime) -> tuple[datetime, datetime] | None:
    """``PT1H`` (the hour before ``now``), ``start/end``, ``start/PT1H`` or ``PT1H/end``; None when absent."""
    if text is None or not text.strip():
        return None
    try:
        return _timespan_range(text, now)
    except OverflowError:
        raise BadRequest(f"invalid timespan {text!r}: it goes past the dates a query can use") from None


def _timespan_range(text: str, now: datetime) -> tuple[datetime, datetime]:
    parts = text.strip().split("/")
    if len(parts) == 1:
        return now - _duration(parts[0]), now
    if len(parts) != 2:
        raise BadRequest(f"invalid timespan {text!r}: expected a duration (PT1H) or start/end")
    first, second = parts
    if first.upper().startswith("P"):
        end = _instant(second)
        return end - _duration(first), end
    start = _instant(first)
    if second.upper().startswith("P"):
        return start, start + _duration(second)
    end = _instant(second)
    if end < start:
        raise BadRequest(f"invalid timespan {text!r}: the end is before the start")
    return start, end


def _duration(text: str) -> timedelta:
    match = _DURATION.fullmatch(text.strip())
    if not match or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
        raise BadRequest(f"invalid ISO 8601 duration {text!r} (examples: PT1H, P1D, P7DT12H, PT30M)")
    values = {k: float(v) for k, v in match.groupdict().items() if v}
    return timedelta(weeks=values.get("w", 0), days=values.get("d", 0), hours=values.get("h", 0),
                     minutes=values.get("m", 0), seconds=values.get("s", 0))


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"invalid ISO 8601 date-time {text!r}") from None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


# ---------------------------------------------------------------- results
def encode_body(compiled: CompiledQuery, result: QueryResult, max_rows: int) -> bytes:
    """The answer as JSON bytes. A dynamic value nested deeper than JSON output allows (stored before
    ingest limited nesting) is given back as its JSON text rather than failing the query."""
    try:
        return orjson.dumps(response_body(compiled, result, max_rows))
    except orjson.JSONEncodeError:
        return orjson.dumps(response_body(compiled, result, max_rows, parse_dynamic=False))


def response_body(compiled: CompiledQuery, result: QueryResult, max_rows: int, *,
                  parse_dynamic: bool = True) -> dict[str, Any]:
    """The Application Insights answer for ``result``; types come from the compiler (KQL types)."""
    columns = compiled.columns if len(compiled.columns) == len(result.columns) else result.columns
    converters = [_CONVERTERS.get(kind, _plain) if parse_dynamic or kind != "dynamic" else _plain
                  for _, kind in columns]
    rows = [[convert(value) for convert, value in zip(converters, row, strict=False)] for row in result.rows]
    body: dict[str, Any] = {"tables": [{"name": "PrimaryResult",
                                        "columns": [{"name": n, "type": t} for n, t in columns], "rows": rows}]}
    if compiled.render:
        body["render"] = compiled.render
    if result.truncated:
        message = f"Query result set has exceeded the record count limit ({max_rows}); the result is truncated."
        body["error"] = {"code": "PartialError", "message": "There were some errors when processing your query.",
                         "details": [{"code": "ResultTruncated", "message": message,
                                      "innererror": {"code": "ResultTruncated", "limit": max_rows}}]}
    return body


def format_timespan(value: timedelta) -> str:
    """KQL's timespan text: ``[-][d.]hh:mm:ss[.fffffff]``."""
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    if value.days:
        text = f"{value.days}.{text}"
    if value.microseconds:
        text += f".{value.microseconds:06d}0"
    return sign + text


def _datetime(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds") + "Z"
    return _plain(value)


def _dynamic(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return _plain(value)


def _real(value: Any) -> Any:
    if isinstance(value, (float, Decimal)):
        number = float(value)
        return number if math.isfinite(number) else None
    return _plain(value)


def native(kind: str, value: Any) -> Any:
    """An engine's value as the Python value of its KQL type. Engines differ (see kql/dialects.py):
    a ClickHouse bool may come back as 0/1 and a timespan as microseconds."""
    if kind == "bool" and isinstance(value, int) and not isinstance(value, bool):
        return bool(value)
    if kind == "timespan" and isinstance(value, int) and not isinstance(value, bool):
        return timedelta(microseconds=value)
    return value


def _timespan(value: Any) -> Any:
    value = native("timespan", value)
    return format_timespan(value) if isinstance(value, timedelta) else _plain(value)


def _bool(value: Any) -> Any:
    return _plain(native("bool", value))


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return _datetime(value)
    if isinstance(value, timedelta):
        return format_timespan(value)
    return str(value)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {"datetime": _datetime, "dynamic": _dynamic, "real": _real,
                                                 "timespan": _timespan, "bool": _bool}
