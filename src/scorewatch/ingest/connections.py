"""The hub's connections, guarded as a mature server guards them (uvicorn's httptools protocol, plus
what it lacks):

- a cap on request-header bytes (:data:`MAX_HEADER_BYTES`): past it, 431 and the connection closes
  (httptools keeps an unfinished header in memory however large it grows);
- a deadline for a request's headers (``hub_request_timeout_s`` from the connection's start or the
  previous response) and for its body (no byte for that long, or slower than
  :data:`MIN_BODY_RATE` after it): 408 and close. An idle connection costs a socket, not a slot;
- overload answered before the cap: past 80% of ``hub_max_connections`` connections, or half as
  many requests in progress, a request is answered 429 with ``Retry-After`` (and the connection
  closes); at the cap a new connection gets 503 and is closed at once.

uvicorn's own ``limit_concurrency`` is off: it counts idle connections, so 512 of them made every
request a 503 for as long as they stayed open.
"""

from __future__ import annotations

import asyncio
import http
import resource
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from scorewatch.errors import HeadersTooLarge, ScorewatchError, ServiceUnavailable
from scorewatch.settings import Settings

MAX_HEADER_BYTES = 64 * 1024  # request line and headers of one request
MIN_BODY_RATE = 1024          # bytes/s a body must average once it has run for a request timeout
_SOFT_SHARE = 0.8             # of the connection cap, past which requests are answered 429
_TOO_LARGE = HeadersTooLarge(f"the request line and headers are larger than {MAX_HEADER_BYTES} bytes")


def _raw_response(error: ScorewatchError, extra: bytes = b"") -> bytes:
    """A whole response written straight to the socket (before or instead of the application)."""
    body = orjson.dumps({"error": error.to_dict()})
    reason = http.HTTPStatus(error.status).phrase.encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n"
            % (error.status, reason, len(body)) + extra + b"\r\n" + body)


def _timeout(message: str) -> ScorewatchError:
    return ScorewatchError(message, status=408, code="RequestTimeout")


async def _too_many(scope: Any, receive: Any, send: Any) -> None:
    body = b'{"error": {"code": "TooManyRequests", "message": "the hub has too many connections; retry later"}}'
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", b"1"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class HubProtocol(HttpToolsProtocol):
    """One connection. Limits are class attributes, set by :func:`protocol_class`."""

    max_connections = 2048
    request_timeout = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit_concurrency = None  # replaced by the checks below
        self._phase = "headers"  # headers → body → app, and back to headers for the next request
        self._header_bytes = 0  # bytes received while the headers are not complete
        self._header_size = 0   # request line and headers as parsed
        self._started = 0.0      # when the current phase started
        self._body_bytes = 0
        self._last_body = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    # -- phases -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(_raw_response(ServiceUnavailable("the hub has too many connections"),
                                          b"retry-after: 5\r\n"))
            transport.close()
            return
        self._await_headers()

    def _await_headers(self) -> None:
        self._phase, self._header_bytes, self._started = "headers", 0, self.loop.time()
        self._arm(self.request_timeout)

    def data_received(self, data: bytes) -> None:
        if self._phase == "headers":
            self._header_bytes += len(data)
        super().data_received(data)
        if self._phase == "headers" and self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._refuse(_TOO_LARGE)

    def on_message_begin(self) -> None:
        self._header_size = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._header_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_size += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._header_size > MAX_HEADER_BYTES:  # they came whole in one read (with the body's start)
            self._refuse(_TOO_LARGE)
            return
        self._phase, self._started, self._body_bytes = "body", self.loop.time(), 0
        self._last_body = self._started
        app = self.app
        if (len(self.connections) >= _SOFT_SHARE * self.max_connections
                or len(self.tasks) >= self.max_connections // 2):
            self.app = _too_many  # this request only; answered without reading its body
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_body(self, body: bytes) -> None:
        if self.cycle is None or self.transport.is_closing():  # refused before the application saw it
            return
        self._body_bytes += len(body)
        self._last_body = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self.cycle is None or self.transport.is_closing():  # refused before the application saw it
            return
        super().on_message_complete()
        if self.cycle is not None and self.cycle.response_complete:  # answered before its body ended
            self._await_headers()
        else:
            self._phase = "app"
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._phase == "app":
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- the watchdog -------------------------------------------------------------------------------

    def _arm(self, delay: float) -> None:
        self._disarm()
        self._watchdog = self.loop.call_later(max(delay, 0.01), self._check)

    def _disarm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _check(self) -> None:
        self._watchdog = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self._phase == "headers":
            if self._header_bytes == 0:
                self.transport.close()  # idle: nothing to answer
            else:
                self._refuse(_timeout(f"the request headers did not arrive within {self.request_timeout:g}s"))
            return
        if self._phase != "body":
            return
        if self.flow.read_paused:  # the application is not reading: not the client's fault
            self._arm(self.request_timeout)
            return
        idle = now - self._last_body
        elapsed = now - self._started
        if idle >= self.request_timeout:
            self._refuse(_timeout(f"no body data for {self.request_timeout:g}s"))
        elif elapsed >= self.request_timeout and self._body_bytes < MIN_BODY_RATE * elapsed:
            self._refuse(_timeout(f"the body arrives slower than {MIN_BODY_RATE} bytes/s"))
        else:
            self._arm(min(self.request_timeout - idle, max(1.0, self.request_timeout / 4)))

    def _refuse(self, error: ScorewatchError) -> None:
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the application (if it started) sees a disconnect
            self.cycle.message_event.set()
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_raw_response(error))
        self.transport.close()


def protocol_class(settings: Settings) -> type[HubProtocol]:
    return type("HubProtocol", (HubProtocol,), {"max_connections": settings.hub_max_connections,
                                                "request_timeout": settings.hub_request_timeout_s})


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """How the hub is served (``scorewatch hub``, and tests and benchmarks that serve it the same way)."""
    return uvicorn.Config(app, host=settings.hub_host, port=settings.hub_port, http=protocol_class(settings),
                          loop="asyncio", access_log=False, timeout_graceful_shutdown=10, **options)


def raise_file_limit(wanted: int) -> int:
    """Let the process hold ``wanted`` sockets (the soft limit up to the hard one); returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
