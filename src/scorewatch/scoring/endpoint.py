"""``/score``: one request, from raw ASGI to the entry script and back, with Azure's headers.

Written against ASGI directly rather than as a Starlette route: this is the one hot path, and skipping
routing, middleware, ``Request`` and ``Response`` objects is a large share of a trivial request's cost
(``bench/serve.py``). Every other route goes through Starlette (:mod:`scorewatch.scoring.app`).

Errors are answered as Azure does: ``{"message": ...}`` with the status; the traceback of a failing
``run()`` goes to the log, never to the caller.
"""

from __future__ import annotations

import contextvars
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from scorewatch import __version__
from scorewatch.errors import (
    AZURE_ML,
    MethodNotAllowed,
    PayloadTooLarge,
    ScorewatchError,
    Timeout,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
    error_body,
)
from scorewatch.scoring.entry import EntryScript, RunFailed, ScoreInput, ScoreOutput
from scorewatch.scoring.monitor import get_input
from scorewatch.telemetry.context import Operation, current_operation, parse_traceparent

if TYPE_CHECKING:
    from scorewatch.scoring.app import ScoringService

log = logging.getLogger("scorewatch.scoring")

SERVER_VERSION = f"scorewatch/{__version__}".encode()
RUN_FAILED_MESSAGE = "An unexpected error occurred in scoring script. Check the logs for more info."
MAX_REQUEST_ID = 100
METHODS = ("GET", "POST", "OPTIONS")

# Ids on the request path come from `random`, as OpenTelemetry's id generator's do: they must be
# unique, not secret, and os.urandom costs more than the rest of a trivial request's bookkeeping.
_bits = random.getrandbits


def _request_id() -> str:
    h = f"{_bits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _run_with_operation(operation: Operation, fn: Callable[[ScoreInput], ScoreOutput],
                        arg: ScoreInput) -> ScoreOutput:
    current_operation.set(operation)  # inside a copied context: nothing leaks to the next call
    return fn(arg)


def _error(exc: ScorewatchError) -> ScoreOutput:
    return ScoreOutput(orjson.dumps(error_body(exc, AZURE_ML)), exc.status)


class ScoreEndpoint:
    """The ASGI app behind ``/score`` for one :class:`ScoringService`."""

    def __init__(self, service: ScoringService) -> None:
        self.service = service

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        service = self.service
        started = time.perf_counter()
        request_id = client_request_id = legacy_id = traceparent = authorization = content_type = None
        content_length = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"x-ms-client-request-id":
                client_request_id = value.decode("latin-1")
            elif name == b"x-ms-request-id":
                legacy_id = value.decode("latin-1")
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                content_length = value
        method = scope["method"]
        rejected: str | None = None
        if request_id is None:
            request_id = _request_id()
        elif len(request_id) > MAX_REQUEST_ID:
            rejected = f"x-request-id must not exceed {MAX_REQUEST_ID} characters"
            request_id = _request_id()
        # As Azure: x-ms-client-request-id is the caller's id (the deprecated x-ms-request-id also counts);
        # x-ms-request-id in the response is that id, or the request id when the caller sent none.
        client_request_id = client_request_id or legacy_id or ""
        legacy_id = legacy_id or client_request_id or request_id
        if len(client_request_id) > MAX_REQUEST_ID or len(legacy_id) > MAX_REQUEST_ID:
            rejected = rejected or f"x-ms-request-id and x-ms-client-request-id must not exceed {MAX_REQUEST_ID} characters"
            client_request_id, legacy_id = "", request_id
        parent = parse_traceparent(traceparent) if traceparent else None
        operation = Operation(operation_id=parent[0] if parent else f"{_bits(128):032x}",
                              parent_id=f"{_bits(64):016x}", name=f"{method} /score", request_id=request_id,
                              client_request_id=client_request_id, sampled=parent[2] if parent else True,
                              extra={"parent_span_id": parent[1]} if parent else {})
        body = b""
        failed = False
        exec_ms = 0.0
        error: BaseException | None = None
        metrics = service.metrics
        metrics.in_flight += 1
        try:
            if rejected is not None:
                raise ScorewatchError(rejected, status=431, code="RequestHeaderFieldsTooLarge")
            if method not in METHODS:
                output = _error(MethodNotAllowed("Method Not Allowed"))
                output.headers = [("Allow", "GET, POST, OPTIONS")]
            elif service.keys is not None and method != "OPTIONS" and not service.keys.check(authorization):
                # (CORS preflights never carry credentials, so OPTIONS is not asked for a key.)
                raise Unauthorized("missing or invalid key: send 'Authorization: Bearer <key>'")
            else:
                entry = service.entry if service.ready and service.entry else await service.wait_ready()
                if method == "OPTIONS" and entry.kind != "rawhttp":
                    output = ScoreOutput(b"", 200, None, [("Allow", "GET, POST, OPTIONS")])
                else:
                    if method == "POST" and entry.kind == "schema":
                        _check_json(content_type)
                    if service.runner is not None and service.runner.pending >= service.queue_limit:
                        raise TooManyRequests(f"the service is busy: {service.runner.pending} calls are waiting "
                                              "for run(); retry shortly", retry_after=1.0)
                    body = await self._read_body(receive, content_length)
                    output, seconds = await self._run(entry, operation, ScoreInput(
                        method, body, parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
                        if method == "GET" else [], scope["headers"], scope))
                    exec_ms = seconds * 1000.0
                    failed = output.status >= 500  # a response object run() returned, as Azure counts it
        except RunFailed as exc:
            failed, error, exec_ms = True, exc.original, exc.seconds * 1000.0
            metrics.run_failures += 1
            log.error("run() failed (request %s)", request_id, exc_info=exc.original)
            try:
                service.monitor.exception(exc.original, during="run")
            except Exception:  # telemetry must never hurt serving
                log.exception("monitor.exception failed")
            output = _error(ScorewatchError(RUN_FAILED_MESSAGE))
        except ScorewatchError as exc:
            error = exc
            if isinstance(exc, Timeout):
                failed, exec_ms = True, service.timeout_s * 1000.0
                metrics.timeouts += 1
                log.error("run() passed the scoring timeout (request %s); it is abandoned", request_id)
            output = _error(exc)
            if isinstance(exc, TooManyRequests):
                output.headers = [("Retry-After", str(max(1, round(exc.retry_after))))]
        except Exception as exc:  # a defect on our side: still a JSON answer, and the worker stays up
            error = exc
            log.exception("internal error while scoring (request %s)", request_id)
            output = _error(ScorewatchError("internal server error"))
        finally:
            metrics.in_flight -= 1
        headers = [
            (b"x-request-id", request_id.encode("latin-1")),
            (b"x-ms-request-id", legacy_id.encode("latin-1")),
            (b"x-ms-run-fn-exec-ms", f"{exec_ms:.3f}".encode()),
            (b"x-ms-run-function-failed", b"True" if failed else b"False"),
            (b"x-ms-server-version", SERVER_VERSION),
        ]
        if client_request_id:
            headers.append((b"x-ms-client-request-id", client_request_id.encode("latin-1")))
        if output.status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await self._send(send, output, headers)
        metrics.observe(output.status, time.perf_counter() - started)
        if service.monitor.active:  # after the response is sent: the bare facts, the monitor derives the rest
            elapsed = time.perf_counter() - started
            try:
                service.monitor.request_finished(operation, scope, time.time() - elapsed, elapsed * 1000.0,
                                                 output.status, body if method != "GET" else get_input(scope),
                                                 output.body, error)
            except Exception:  # telemetry must never hurt serving
                log.exception("monitor.request_finished failed")

    @staticmethod
    async def _send(send: Callable[..., Any], output: ScoreOutput, headers: list[tuple[bytes, bytes]]) -> None:
        has_type = False
        for name, value in output.headers or ():
            lowered = name.lower()
            has_type = has_type or lowered == "content-type"
            headers.append((lowered.encode("latin-1"), value.encode("latin-1")))
        if not has_type and output.media_type:
            headers.append((b"content-type", output.media_type.encode()))
        headers.append((b"content-length", str(len(output.body)).encode()))
        await send({"type": "http.response.start", "status": output.status, "headers": headers})
        await send({"type": "http.response.body", "body": output.body})

    async def _read_body(self, receive: Callable[..., Any], content_length: bytes | None) -> bytes:
        limit = self.service.max_body
        too_large = f"request body is larger than the limit of {limit} bytes (--max-body-size)"
        if content_length is not None and content_length.isdigit() and int(content_length) > limit:
            raise PayloadTooLarge(too_large)
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                break
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(too_large)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _run(self, entry: EntryScript, operation: Operation,
                   score_input: ScoreInput) -> tuple[ScoreOutput, float]:
        runner = self.service.runner
        assert runner is not None
        context = contextvars.copy_context()
        return await runner.call(context.run, _run_with_operation, operation, entry.invoke, score_input)


def _check_json(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType("run() takes JSON (its parameters are declared with @input_schema); "
                                   f"got Content-Type {media or '(empty)'}")
