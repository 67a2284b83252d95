"""Application Insights envelopes: the JSON items POSTed to ``/v2.1/track``.

One :class:`EnvelopeFactory` per service defines every kind (Request, Message, Exception,
RemoteDependency, Event, Metric), each by one method, with the tags queries rely on
(``ai.operation.id`` becomes ``operation_Id``, ``ai.cloud.role`` becomes ``cloud_RoleName`` and so
on). The envelopes every request makes are built from the same methods, compiled once into byte
templates (:mod:`scorewatch.telemetry.templates`): the factory is their one definition.

Values go in as they appear on the wire: times as :func:`format_time` writes them, durations as
:func:`format_duration` writes them (the only two formatters of those formats; ``_rows.c`` writes
the common case of each the same way, and the tests hold it to them). ``sample_rate`` is left out
unless :func:`sample_rate` says the item was kept by sampling.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from scorewatch import __version__

SDK_VERSION = f"scorewatch-py:{__version__}"

# Python logging levels -> Application Insights severityLevel (Verbose..Critical = 0..4).
SEVERITY_VERBOSE, SEVERITY_INFO, SEVERITY_WARNING, SEVERITY_ERROR, SEVERITY_CRITICAL = range(5)


def severity_for_level(levelno: int) -> int:
    if levelno >= 50:
        return SEVERITY_CRITICAL
    if levelno >= 40:
        return SEVERITY_ERROR
    if levelno >= 30:
        return SEVERITY_WARNING
    if levelno >= 20:
        return SEVERITY_INFO
    return SEVERITY_VERBOSE


def format_duration(ms: float) -> str:
    """``d.hh:mm:ss.ffffff`` as Application Insights expects (``0.00:00:00.058000`` for 58 ms)."""
    micros = max(0, round(ms * 1000))
    seconds, micros = divmod(micros, 1_000_000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}.{hours:02d}:{minutes:02d}:{seconds:02d}.{micros:06d}"


def sample_rate(percentage: float) -> float | None:
    """The ``sampleRate`` of an item kept at ``percentage``: None (no member) when nothing was sampled."""
    return float(percentage) if percentage < 100.0 else None


_second_cache: tuple[int, str] = (-1, "")


def split_time(when: float) -> tuple[int, int]:
    """Whole seconds and microseconds of a POSIX timestamp, rounded as ``datetime.fromtimestamp``
    rounds (half to even, on the fraction): a float and the datetime made from it print the same."""
    fraction, whole = math.modf(when)
    micros = round(fraction * 1_000_000)
    if micros >= 1_000_000:
        return int(whole) + 1, micros - 1_000_000
    return int(whole), micros


def format_time(when: float | datetime) -> str:
    """ISO 8601 UTC with microseconds and ``Z``, from a POSIX timestamp or an aware datetime."""
    global _second_cache
    if isinstance(when, datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        when = when.timestamp()
    second, micros = split_time(when)
    cached_second, prefix = _second_cache
    if second != cached_second:
        # strftime is most of the cost of an envelope: do it once per second, not once per item.
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_cache = (second, prefix)
    return "%s.%06dZ" % (prefix, micros)  # noqa: UP031 - fastest here


def exception_details(exc: BaseException) -> list[dict[str, Any]]:
    """The ``exceptions`` list of ExceptionData: the outermost first, then each cause/context inward.

    Each entry has ``id``, ``outerId`` (the entry that wraps it), ``typeName``, ``message`` and a
    ``parsedStack`` of frames (``level`` 0 is the innermost call) with ``method``, ``fileName``, ``line``.
    """
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(chain) < 10:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    details = []
    for index, item in enumerate(chain):
        frames = traceback.StackSummary.extract(traceback.walk_tb(item.__traceback__), limit=100,
                                                lookup_lines=False)
        stack = [{"level": level, "method": frame.name, "assembly": _module_of(frame.filename),
                  "fileName": frame.filename, "line": frame.lineno or 0}
                 for level, frame in enumerate(reversed(frames))]
        details.append({"id": index + 1, "outerId": index, "typeName": _type_name(item),
                        "message": str(item), "hasFullStack": True, "parsedStack": stack})
    return details


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ in ("builtins", "__main__") else f"{cls.__module__}.{cls.__qualname__}"


def _module_of(filename: str) -> str:
    return filename.rsplit("/", 1)[-1].removesuffix(".py")


class EnvelopeFactory:
    """Builds envelopes for one service: instrumentation key, role name and instance."""

    KINDS = {"Request": "RequestData", "Message": "MessageData", "Exception": "ExceptionData",
             "RemoteDependency": "RemoteDependencyData", "Event": "EventData", "Metric": "MetricData"}

    def __init__(self, instrumentation_key: str, *, role: str, role_instance: str) -> None:
        self.ikey = instrumentation_key
        prefix = "Microsoft.ApplicationInsights." + instrumentation_key.replace("-", "") + "."
        self._names = {kind: prefix + kind for kind in self.KINDS}
        self.role = role
        self.role_instance = role_instance

    def envelope(self, kind: str, base: dict[str, Any], *, time: str, operation_id: str | None = None,
                 parent_id: str | None = None, operation_name: str | None = None,
                 sample_rate: float | None = None) -> dict[str, Any]:
        """The envelope around the ``baseData`` of one item of ``kind`` (a key of :attr:`KINDS`)."""
        tags = {"ai.cloud.role": self.role, "ai.cloud.roleInstance": self.role_instance,
                "ai.internal.sdkVersion": SDK_VERSION}
        if operation_id:
            tags["ai.operation.id"] = operation_id
        if parent_id:
            tags["ai.operation.parentId"] = parent_id
        if operation_name:
            tags["ai.operation.name"] = operation_name
        envelope: dict[str, Any] = {"name": self._names[kind], "time": time, "iKey": self.ikey, "tags": tags,
                                    "data": {"baseType": self.KINDS[kind], "baseData": base}}
        if sample_rate is not None:
            envelope["sampleRate"] = sample_rate
        return envelope

    def request(self, *, time: str, id: str, name: str, url: str, duration: str, response_code: str,
                success: bool, properties: Mapping[str, Any], operation_id: str, parent_id: str | None,
                operation_name: str | None = None, sample_rate: float | None = None) -> dict[str, Any]:
        """A request; its operation name is its ``name`` unless given."""
        base = {"ver": 2, "id": id, "name": name, "url": url, "duration": duration, "responseCode": response_code,
                "success": success, "properties": dict(properties)}
        return self.envelope("Request", base, time=time, operation_id=operation_id, parent_id=parent_id,
                             operation_name=operation_name or name, sample_rate=sample_rate)

    def message(self, *, time: str, message: str, severity: int, properties: Mapping[str, Any],
                operation_id: str | None = None, parent_id: str | None = None,
                operation_name: str | None = None, sample_rate: float | None = None) -> dict[str, Any]:
        base = {"ver": 2, "message": message, "severityLevel": severity, "properties": dict(properties)}
        return self.envelope("Message", base, time=time, operation_id=operation_id, parent_id=parent_id,
                             operation_name=operation_name, sample_rate=sample_rate)

    def exception(self, *, time: str, exc: BaseException, properties: Mapping[str, Any],
                  operation_id: str | None = None, parent_id: str | None = None,
                  operation_name: str | None = None, severity: int = SEVERITY_ERROR) -> dict[str, Any]:
        details = exception_details(exc)
        # Where the reported exception was raised: the innermost frame of its own stack.
        stack = details[0]["parsedStack"]
        where = stack[0]["method"] if stack else "<module>"
        base = {"ver": 2, "exceptions": details, "severityLevel": severity,
                "problemId": f"{details[0]['typeName']} at {where}", "properties": dict(properties)}
        return self.envelope("Exception", base, time=time, operation_id=operation_id, parent_id=parent_id,
                             operation_name=operation_name)

    def dependency(self, *, time: str, id: str, name: str, type: str, target: str, data: str, duration: str,
                   result_code: str, success: bool, properties: Mapping[str, Any], operation_id: str | None,
                   parent_id: str | None, operation_name: str | None = None,
                   sample_rate: float | None = None) -> dict[str, Any]:
        base = {"ver": 2, "id": id, "name": name, "type": type, "target": target, "data": data,
                "duration": duration, "resultCode": result_code, "success": success,
                "properties": dict(properties)}
        return self.envelope("RemoteDependency", base, time=time, operation_id=operation_id, parent_id=parent_id,
                             operation_name=operation_name, sample_rate=sample_rate)

    def event(self, *, time: str, name: str, properties: Mapping[str, Any], measurements: Mapping[str, float],
              operation_id: str | None = None, parent_id: str | None = None,
              operation_name: str | None = None) -> dict[str, Any]:
        base = {"ver": 2, "name": name, "properties": dict(properties), "measurements": dict(measurements)}
        return self.envelope("Event", base, time=time, operation_id=operation_id, parent_id=parent_id,
                             operation_name=operation_name)

    def metric(self, *, time: str, name: str, value: float, properties: Mapping[str, Any],
               operation_id: str | None = None, parent_id: str | None = None,
               operation_name: str | None = None) -> dict[str, Any]:
        base = {"ver": 2, "metrics": [{"name": name, "kind": 0, "value": value, "count": 1}],
                "properties": dict(properties)}
        return self.envelope("Metric", base, time=time, operation_id=operation_id, parent_id=parent_id,
                             operation_name=operation_name)
