"""The public telemetry helpers for entry scripts: ``scorewatch.track_dependency``, ``track_event``,
``track_metric``.

They record into the running scoring service's telemetry, correlated with the request being served,
and do nothing when monitoring is off (or outside a scoring service)::

    import scorewatch

    def run(raw):
        with scorewatch.track_dependency("SELECT features", type="SQL", target="warehouse") as call:
            rows = db.execute(...)
            call.result_code = "0"
        scorewatch.track_event("scored", {"model": "ridge"})
        scorewatch.track_metric("rows", len(rows))
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from scorewatch.telemetry.context import new_span_id


class Recorder(Protocol):
    def dependency(self, fields: dict[str, Any]) -> None: ...
    def event(self, name: str, properties: Mapping[str, Any], measurements: Mapping[str, float]) -> None: ...
    def metric(self, name: str, value: float, properties: Mapping[str, Any]) -> None: ...


# The monitor of this process while it runs (set by the monitor itself); None: helpers are no-ops.
_active: Recorder | None = None


def set_recorder(recorder: Recorder | None) -> None:
    global _active
    _active = recorder


def active_recorder() -> Recorder | None:
    return _active


@dataclass
class DependencyCall:
    """What the ``with`` body may fill in: ``result_code``, ``success``, extra ``properties``."""

    name: str
    type: str
    target: str
    data: str
    id: str = field(default_factory=new_span_id)
    result_code: str = "0"
    success: bool = True
    properties: dict[str, Any] = field(default_factory=dict)


@contextmanager
def track_dependency(name: str, *, type: str = "Other", target: str = "", data: str = "",
                     properties: Mapping[str, Any] | None = None) -> Iterator[DependencyCall]:
    """Record the ``with`` block as a dependency call (a database query, a queue, another service).

    An exception leaving the block marks the call failed (``result_code`` is the exception type unless
    set) and propagates unchanged.
    """
    call = DependencyCall(name=name, type=type, target=target, data=data, properties=dict(properties or {}))
    start = time.time()
    began = time.perf_counter()
    try:
        yield call
    except BaseException as exc:
        call.success = False
        if call.result_code == "0":
            call.result_code = type_name(exc)
        raise
    finally:
        recorder = _active
        if recorder is not None:
            recorder.dependency({"name": call.name, "type": call.type, "target": call.target,
                                 "data": call.data or call.name, "result_code": str(call.result_code),
                                 "success": call.success, "start": start,
                                 "duration_ms": (time.perf_counter() - began) * 1000.0, "id": call.id,
                                 "properties": call.properties})


def track_event(name: str, properties: Mapping[str, Any] | None = None,
                measurements: Mapping[str, float] | None = None) -> None:
    """Record a custom event (``customEvents``)."""
    recorder = _active
    if recorder is not None:
        recorder.event(name, dict(properties or {}), dict(measurements or {}))


def track_metric(name: str, value: float, properties: Mapping[str, Any] | None = None) -> None:
    """Record one value of a custom metric (``customMetrics``)."""
    recorder = _active
    if recorder is not None:
        recorder.metric(name, float(value), dict(properties or {}))


def type_name(exc: BaseException) -> str:
    return type(exc).__name__
