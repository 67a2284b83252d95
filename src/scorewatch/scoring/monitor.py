"""The seam between the scoring service and telemetry.

The scoring app calls a :class:`Monitor` at a few points and knows nothing else about telemetry;
``scorewatch.telemetry`` provides the real one. With monitoring off the app gets :class:`NullMonitor`,
whose calls cost nothing. The app itself sets ``scorewatch.telemetry.context.current_operation``
around every ``run()`` (monitoring on or off), so ``traceparent`` propagates either way.

Call order inside one worker process::

    worker_started()                          # in the worker, before init()
    exception(exc, during="init")             # only if init() raised
    request_finished(ScoredRequest)           # after each /score response is complete
    exception(exc, during="run")              # before request_finished, if run() raised
    shutdown(timeout_s)                       # on SIGTERM, after in-flight requests finished
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

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


@dataclass
class ScoredRequest:
    """One finished call to /score, as the monitor sees it."""

    operation: Operation
    method: str
    url: str
    name: str                      # "POST /score"
    start: datetime                # UTC, timezone-aware
    duration_ms: float             # wall time from request received to response body sent
    status_code: int
    success: bool                  # status_code < 400
    request_id: str
    client_request_id: str
    headers: Mapping[str, str]
    input: bytes | str | None      # the raw body (for GET: the query parameters as JSON text)
    output: bytes | str | None     # the response body sent (for failures: the error message)
    exception: BaseException | None = None


class Monitor(Protocol):
    def worker_started(self) -> None: ...
    def request_finished(self, request: ScoredRequest) -> None: ...
    def exception(self, exc: BaseException, *, during: str) -> None: ...
    def routes(self) -> list[BaseRoute]: ...
    def metrics_text(self) -> str: ...
    def shutdown(self, timeout_s: float) -> None: ...


class NullMonitor:
    """Monitoring off: every call is a no-op."""

    def worker_started(self) -> None:
        pass

    def request_finished(self, request: ScoredRequest) -> None:
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
