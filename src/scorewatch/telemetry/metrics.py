"""Counters of the telemetry pipeline, rendered as Prometheus text for the service's ``/metrics``.

``ExporterStats`` counts what happened to telemetry items (queued, sent, retried, spooled, dropped by
reason) per worker process; the queue depth is read from the processor when rendered. Counters are
updated by the worker thread (and, for drops, by producers) under a lock: none of it is per request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

# Every drop reason is listed so /metrics shows zeros before anything is dropped.
DROP_REASONS = ("queue_full", "queue_bytes", "spool_full", "rejected", "invalid", "shutdown", "exporter_down")


_HELP = {
    "queued": "Telemetry envelopes built from recorded items.",
    "shipped": "Telemetry items handed to the exporter process.",
    "sent": "Telemetry envelopes the receiver accepted.",
    "retried": "Telemetry envelopes sent again from the spool.",
    "spooled": "Telemetry envelopes written to the disk spool.",
}


class ExporterStats:
    """What the exporter did with telemetry items; ``queue_depth`` is read from the processor."""

    COUNTERS = ("queued", "shipped", "sent", "retried", "spooled")

    def __init__(self) -> None:
        self.counts = dict.fromkeys(self.COUNTERS, 0)
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self._lock = threading.Lock()
        self.queue_depth: Callable[[], int] = lambda: 0

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {**self.counts, "dropped": dict(self.dropped), "queue_depth": self.queue_depth()}


def merge(*snapshots: dict[str, Any]) -> dict[str, Any]:
    """One snapshot from several (the worker's and its exporter process's)."""
    out: dict[str, Any] = {name: 0 for name in ExporterStats.COUNTERS}
    out["dropped"] = dict.fromkeys(DROP_REASONS, 0)
    out["queue_depth"] = 0
    for snap in snapshots:
        for name in ExporterStats.COUNTERS:
            out[name] += int(snap.get(name, 0))
        for reason, n in (snap.get("dropped") or {}).items():
            out["dropped"][reason] = out["dropped"].get(reason, 0) + int(n)
        out["queue_depth"] += int(snap.get("queue_depth", 0))
    return out


def render(snap: dict[str, Any], labels: str = "") -> str:
    """The exporter's counters in Prometheus text exposition format (version 0.0.4).

    Request counts and durations are the scoring app's own (``scorewatch.scoring.metrics``); this is
    appended to them on ``/metrics``.
    """
    lab = "{" + labels + "}" if labels else ""
    sep = labels + "," if labels else ""
    out = []
    for name in ExporterStats.COUNTERS:
        out.append(f"# HELP scorewatch_telemetry_{name}_total {_HELP[name]}")
        out.append(f"# TYPE scorewatch_telemetry_{name}_total counter")
        out.append(f"scorewatch_telemetry_{name}_total{lab} {snap[name]}")
    out.append("# HELP scorewatch_telemetry_dropped_total Telemetry items dropped, by reason.")
    out.append("# TYPE scorewatch_telemetry_dropped_total counter")
    dropped = snap["dropped"]
    assert isinstance(dropped, dict)
    for reason, n in sorted(dropped.items()):
        out.append(f'scorewatch_telemetry_dropped_total{{{sep}reason="{reason}"}} {n}')
    out.append("# HELP scorewatch_telemetry_queue_depth Telemetry items waiting in the exporter queue.")
    out.append("# TYPE scorewatch_telemetry_queue_depth gauge")
    out.append(f"scorewatch_telemetry_queue_depth{lab} {snap['queue_depth']}")
    return "\n".join(out) + "\n"


def render_native(parts: dict[str, bool], labels: str = "") -> str:
    """Which parts of telemetry run in C (1) or Python (0), in Prometheus text (see telemetry/native.py)."""
    sep = labels + "," if labels else ""
    out = ["# HELP scorewatch_telemetry_native Telemetry parts running in C (1) or in Python (0).",
           "# TYPE scorewatch_telemetry_native gauge"]
    out += [f'scorewatch_telemetry_native{{{sep}part="{part}"}} {int(on)}' for part, on in sorted(parts.items())]
    return "\n".join(out) + "\n"
