"""The seam between the scoring service and telemetry.

The scoring app calls a :class:`Monitor` at a few points and knows nothing else about telemetry;
``scorewatch.telemetry`` provides the real one. With monitoring off the app gets :class:`NullMonitor`,
whose calls cost nothing. The app itself sets ``scorewatch.telemetry.context.current_operation``
around every ``run()`` (monitoring on or off), so ``traceparent`` propagates either way.

Call order inside one worker process::

    worker_started()                          # in the worker, before init()
    exception(exc, during="init")             # only if init() raised
    request_finished(operation, scope, ...)   # after each /score response is complete (see Monitor)
    exception(exc, during="run")              # before request_finished, if run() raised
    shutdown(timeout_s)                       # on SIGTERM, after in-flight requests finished
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from scorewatch.telemetry.context import Operation

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from scorewatch.settings import Settings


@dataclass
class ServiceInfo:
    """What a monitor needs to know about the service it watches."""

    service_name: str
    workspace_name: str
    entry_script: str
    model_dir: str | None
    container_id: str
    models: list[str] = field(default_factory=list)  # "name:version" from the model dir layout


class ScoredRequest:
    """One finished call to /score: a view of the facts :meth:`Monitor.request_finished` is given.

    It only keeps what the endpoint already has (the ASGI scope, a start time as a float, the bodies);
    the rest are properties computed when read. The endpoint does not build one (a monitor that ships
    rows reads the facts as they come); a monitor or a test that wants the properties makes its own.
    """

    __slots__ = ("operation", "scope", "start_ts", "duration_ms", "status_code", "body", "output", "exception")

    def __init__(self, operation: Operation, scope: Mapping[str, Any], start_ts: float, duration_ms: float,
                 status_code: int, body: bytes, output: bytes | str | None,
                 exception: BaseException | None = None) -> None:
        self.operation = operation
        self.scope = scope              # the request's ASGI scope (method, path, query_string, headers)
        self.start_ts = start_ts        # time.time() when the request was received
        self.duration_ms = duration_ms  # wall time from request received to response body sent
        self.status_code = status_code
        self.body = body                # the raw body as received
        self.output = output            # the response body sent (for failures: the error message)
        self.exception = exception

    @property
    def method(self) -> str:
        return self.scope["method"]

    @property
    def name(self) -> str:
        return f"{self.scope['method']} /score"

    @property
    def success(self) -> bool:
        return self.status_code < 400

    @property
    def start(self) -> datetime:
        """UTC, timezone-aware."""
        return datetime.fromtimestamp(self.start_ts, UTC)

    @property
    def url(self) -> str:
        return request_url(self.scope)

    @property
    def request_id(self) -> str:
        return self.operation.request_id

    @property
    def client_request_id(self) -> str:
        return self.operation.client_request_id

    @property
    def headers(self) -> Mapping[str, str]:
        from starlette.datastructures import Headers

        return Headers(raw=list(self.scope.get("headers") or []))

    @property
    def input(self) -> bytes | str:
        """The raw body; for GET, the query parameters as JSON text (as run() gets them)."""
        if self.scope["method"] != "GET":
            return self.body
        return get_input(self.scope)


def request_url(scope: Mapping[str, Any]) -> str:
    query = scope.get("query_string") or b""
    server = scope.get("server") or ("127.0.0.1", 80)
    url = f"{scope.get('scheme', 'http')}://{server[0]}:{server[1]}{scope['path']}"
    return f"{url}?{query.decode('latin-1')}" if query else url


def get_input(scope: Mapping[str, Any]) -> str:
    """What a GET request's input is recorded as: the text run() got (its query parameters as JSON)."""
    from scorewatch.scoring.entry import query_text

    query = (scope.get("query_string") or b"").decode("latin-1")
    return query_text(parse_qsl(query, keep_blank_values=True))


class Monitor(Protocol):
    def worker_started(self) -> None: ...
    def request_finished(self, operation: Operation, scope: Mapping[str, Any], start_ts: float, duration_ms: float,
                         status_code: int, body: bytes, output: bytes | str | None,
                         exception: BaseException | None) -> None:
        """The facts of one finished call to /score, as positional values: no object is built for
        every request. ``ScoredRequest(*facts)`` is a view of them with derived properties."""
        ...
    def exception(self, exc: BaseException, *, during: str) -> None: ...
    def routes(self) -> list[BaseRoute]: ...
    def metrics_text(self) -> str: ...
    def shutdown(self, timeout_s: float) -> None: ...


class NullMonitor:
    """Monitoring off: every call is a no-op."""

    def worker_started(self) -> None:
        pass

    def request_finished(self, operation: Operation, scope: Mapping[str, Any], start_ts: float, duration_ms: float,
                         status_code: int, body: bytes, output: bytes | str | None,
                         exception: BaseException | None) -> None:
        pass

    def exception(self, exc: BaseException, *, during: str) -> None:
        pass

    def routes(self) -> list[BaseRoute]:
        return []

    def metrics_text(self) -> str:
        return ""

    def shutdown(self, timeout_s: float) -> None:
        pass


def load_monitor(settings: Settings, info: ServiceInfo, **kwargs: Any) -> Monitor:
    """The monitor for these settings: the real one when a connection string is set, else a no-op."""
    if not settings.connection_string:
        return NullMonitor()
    from scorewatch.telemetry.monitor import create_monitor

    return create_monitor(settings, info, **kwargs)
