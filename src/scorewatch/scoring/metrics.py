"""The scoring worker's own Prometheus metrics, rendered as text for ``/metrics``.

Hand-written rather than prometheus_client: a handful of counters updated on the event loop thread
only, so no locks and nothing on the request path but an increment and a bisect. Counts are per worker
process (a scrape reaches one worker); the ``pid`` label keeps workers apart when they are summed.
"""

from __future__ import annotations

import bisect
import os

# Seconds; chosen around the range scoring calls live in (sub-millisecond to the default 60 s timeout).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ScoringMetrics:
    """Requests by status code, a duration histogram, run() failures and timeouts, init time."""

    def __init__(self) -> None:
        self.by_status: dict[int, int] = {}
        self.bucket_counts = [0] * (len(BUCKETS) + 1)
        self.duration_sum = 0.0
        self.run_failures = 0
        self.timeouts = 0
        self.in_flight = 0
        self.run_pending = 0  # set from the runner when rendering
        self.init_seconds: float | None = None
        self._pid = str(os.getpid())

    def observe(self, status: int, seconds: float) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.bucket_counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.duration_sum += seconds

    def render(self) -> str:
        pid = f'pid="{self._pid}"'
        lines = ["# HELP scorewatch_requests_total Calls to /score by HTTP status code.",
                 "# TYPE scorewatch_requests_total counter"]
        for code in sorted(self.by_status):
            lines.append(f'scorewatch_requests_total{{{pid},code="{code}"}} {self.by_status[code]}')
        lines += ["# HELP scorewatch_request_duration_seconds Time to answer /score.",
                  "# TYPE scorewatch_request_duration_seconds histogram"]
        cumulative = 0
        for bound, count in zip(BUCKETS, self.bucket_counts, strict=False):
            cumulative += count
            lines.append(f'scorewatch_request_duration_seconds_bucket{{{pid},le="{bound}"}} {cumulative}')
        cumulative += self.bucket_counts[-1]
        lines += [f'scorewatch_request_duration_seconds_bucket{{{pid},le="+Inf"}} {cumulative}',
                  f"scorewatch_request_duration_seconds_sum{{{pid}}} {self.duration_sum:.6f}",
                  f"scorewatch_request_duration_seconds_count{{{pid}}} {cumulative}",
                  "# HELP scorewatch_run_failures_total run() calls that raised.",
                  "# TYPE scorewatch_run_failures_total counter",
                  f"scorewatch_run_failures_total{{{pid}}} {self.run_failures}",
                  "# HELP scorewatch_run_timeouts_total run() calls that passed SCORING_TIMEOUT_MS (504).",
                  "# TYPE scorewatch_run_timeouts_total counter",
                  f"scorewatch_run_timeouts_total{{{pid}}} {self.timeouts}",
                  "# HELP scorewatch_requests_in_flight Calls to /score being answered now.",
                  "# TYPE scorewatch_requests_in_flight gauge",
                  f"scorewatch_requests_in_flight{{{pid}}} {self.in_flight}",
                  "# HELP scorewatch_run_pending Calls handed to run() threads and not yet answered.",
                  "# TYPE scorewatch_run_pending gauge",
                  f"scorewatch_run_pending{{{pid}}} {self.run_pending}"]
        if self.init_seconds is not None:
            lines += ["# HELP scorewatch_init_seconds How long init() took in this worker.",
                      "# TYPE scorewatch_init_seconds gauge",
                      f"scorewatch_init_seconds{{{pid}}} {self.init_seconds:.6f}"]
        return "\n".join(lines) + "\n"
