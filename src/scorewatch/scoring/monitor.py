"""The seam between the scoring service and telemetry.

The scoring app calls a :class:`Monitor` at a few points and knows nothing else about telemetry;
``scorewatch.telemetry`` provides the real one. With monitoring off the app gets :class:`NullMonitor`,
whose calls cost nothing. The app itself sets ``scorewatch.telemetry.context.current_operation``
around every ``run()`` (monitoring on or off), so ``traceparent`` propagates either way.

The seam is one-way: scoring imports telemetry (:class:`ServiceInfo`, the operation, the monitor),
never the other way round. The app hands the monitor the facts it already has: the operation (with
its name), the ASGI scope, and the input as ``run()`` got it (for GET, :func:`get_input`).

Call order inside one worker process::

    worker_started()                          # in the worker, before init()
    exception(exc, during="init")             # only if init() raised
    request_finished(operation, scope, ...)   # after each /score response is complete (see Monitor)
    exception(exc, during="run")              # before request_finished, if run() raised
    shutdown(timeout_s)                       # on SIGTERM, after in-flight requests finished
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from scorewatch.telemetry.context import Operation
from scorewatch.telemetry.context import ServiceInfo as ServiceInfo  # what the app tells a monitor

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from scorewatch.settings import Settings


def get_input(scope: Mapping[str, Any]) -> str:
    """What a GET request's input is recorded as: the text run() got (its query parameters as JSON)."""
    from scorewatch.scoring.entry import query_text

    query = (scope.get("query_string") or b"").decode("latin-1")
    return query_text(parse_qsl(query, keep_blank_values=True))


class Monitor(Protocol):
    active: bool
    """Whether the endpoint reports finished requests (``request_finished``); read on every request,
    so a monitor switched on at run time starts receiving them at once."""

    def worker_started(self) -> None: ...
    def request_finished(self, operation: Operation, scope: Mapping[str, Any], start_ts: float, duration_ms: float,
                         status_code: int, input: bytes | str, output: bytes | str | None,
                         exception: BaseException | None) -> None:
        """The facts of one finished call to /score, as positional values (no object is built for
        every request): the operation, the ASGI scope, ``time.time()`` when it was received, the wall
        time to the response's last byte, the status, the input as ``run()`` got it (the raw body;
        for GET, :func:`get_input`), the response body sent (for failures: the error message), and
        the exception ``run()`` raised, if any."""
        ...
    def exception(self, exc: BaseException, *, during: str) -> None: ...
    def routes(self) -> list[BaseRoute]: ...
    def metrics_text(self) -> str: ...
    def shutdown(self, timeout_s: float) -> None: ...


class NullMonitor:
    """Monitoring off: every call is a no-op."""

    active = False

    def worker_started(self) -> None:
        pass

    def request_finished(self, operation: Operation, scope: Mapping[str, Any], start_ts: float, duration_ms: float,
                         status_code: int, input: bytes | str, output: bytes | str | None,
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
    """The monitor for these settings: the real one when a connection string is set (also when it
    starts switched off: it can be switched on at run time), else a no-op."""
    if not settings.connection_string:
        return NullMonitor()
    from scorewatch.telemetry.monitor import create_monitor

    return create_monitor(settings, info, **kwargs)
