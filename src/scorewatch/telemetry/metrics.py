"""Counters of the telemetry pipeline and of the scored requests, rendered as Prometheus text.

``ExporterStats`` counts what happened to telemetry items (queued, sent, retried, spooled, dropped by
reason); ``RequestMetrics`` counts /score requests and their durations. Both are per process and cheap
to update from any thread: plain integer adds under the GIL, with a lock only where a dict may grow.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable

DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Every drop reason is listed so /metrics shows zeros before anything is dropped.
DROP_REASONS = ("queue_full", "queue_bytes", "spool_full", "rejected", "invalid", "shutdown")


class ExporterStats:
    """What the exporter did with telemetry items; ``queue_depth`` is read from the processor."""

    COUNTERS = ("queued", "sent", "retried", "spooled", "replayed")

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


class RequestMetrics:
    """Request count, failures and a duration histogram for /score."""

    def __init__(self) -> None:
        self.count = 0
        self.failures = 0
        self.duration_sum = 0.0
        self.buckets = [0] * (len(DURATION_BUCKETS_S) + 1)

    def observe(self, duration_ms: float, success: bool) -> None:
        # Unlocked on purpose: this is on the request path; a lost increment under a rare thread race
        # is an acceptable error for a gauge-like view, a lock per request is not.
        seconds = duration_ms / 1000.0
        self.count += 1
        if not success:
            self.failures += 1
        self.duration_sum += seconds
        self.buckets[bisect.bisect_left(DURATION_BUCKETS_S, seconds)] += 1


def render(requests: RequestMetrics, stats: ExporterStats, labels: str = "") -> str:
    """Prometheus text exposition format (version 0.0.4)."""
    lab = "{" + labels + "}" if labels else ""
    sep = labels + "," if labels else ""
    out = [
        "# HELP scorewatch_requests_total Scored requests (/score).",
        "# TYPE scorewatch_requests_total counter",
        f"scorewatch_requests_total{lab} {requests.count}",
        "# HELP scorewatch_request_failures_total Scored requests that answered a status >= 400.",
        "# TYPE scorewatch_request_failures_total counter",
        f"scorewatch_request_failures_total{lab} {requests.failures}",
        "# HELP scorewatch_request_duration_seconds Time from request received to response sent.",
        "# TYPE scorewatch_request_duration_seconds histogram",
    ]
    cumulative = 0
    for bound, n in zip((*DURATION_BUCKETS_S, float("inf")), requests.buckets, strict=True):
        cumulative += n
        le = "+Inf" if bound == float("inf") else repr(bound)
        out.append(f'scorewatch_request_duration_seconds_bucket{{{sep}le="{le}"}} {cumulative}')
    out.append(f"scorewatch_request_duration_seconds_sum{lab} {requests.duration_sum:.6f}")
    out.append(f"scorewatch_request_duration_seconds_count{lab} {requests.count}")
    snap = stats.snapshot()
    for name in ExporterStats.COUNTERS:
        out.append(f"# HELP scorewatch_telemetry_{name}_total Telemetry items {name} by the exporter.")
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
