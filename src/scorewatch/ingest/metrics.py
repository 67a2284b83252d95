"""The hub's own metrics, served at ``GET /metrics`` in the Prometheus text format.

Counters are plain integers bumped by one thread at a time (request handlers on the event loop; the
writer thread for its own fields), so no locks are needed on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# Upper bounds (seconds) of the batch write latency histogram.
_WRITE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class IngestMetrics:
    received: dict[str, int] = field(default_factory=dict)   # by protocol
    accepted: dict[str, int] = field(default_factory=dict)   # by protocol
    refused: dict[str, int] = field(default_factory=dict)    # by reason
    filtered: int = 0       # accepted SDK bookkeeping items, not stored
    throttled: int = 0      # requests answered 429
    stored: int = 0         # rows written to the store
    quarantined: int = 0    # accepted items the store refused, kept in the quarantine (logged)
    store_unavailable: int = 0  # store writes that failed for now (full disk, no memory) and were retried
    wal_failed: int = 0     # log appends that failed (the requests were answered 503)
    write_count: int = 0
    write_seconds: float = 0.0
    write_buckets: list[int] = field(default_factory=lambda: [0] * len(_WRITE_BUCKETS))
    retention_deleted: dict[str, int] = field(default_factory=dict)  # by application name

    def count(self, protocol: str, received: int, accepted: int, refused: dict[str, int],
              filtered: int = 0) -> None:
        self.received[protocol] = self.received.get(protocol, 0) + received
        self.accepted[protocol] = self.accepted.get(protocol, 0) + accepted
        for reason, n in refused.items():
            self.refused[reason] = self.refused.get(reason, 0) + n
        self.filtered += filtered

    def observe_write(self, seconds: float) -> None:
        self.write_count += 1
        self.write_seconds += seconds
        for i, bound in enumerate(_WRITE_BUCKETS):
            if seconds <= bound:
                self.write_buckets[i] += 1

    def render(self, *, queue_depth: int, queue_limit: int, store_bytes: Callable[[], int], paused: bool = False,
               wal_corruptions: int = 0) -> str:
        """The Prometheus text exposition of every metric."""
        out: list[str] = []

        def metric(name: str, kind: str, help: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                out.append(f"{name}{labels} {value:g}" if isinstance(value, float) else f"{name}{labels} {value}")

        metric("scorewatch_ingest_items_received_total", "counter", "Telemetry items received, by protocol.",
               [(f'{{protocol="{p}"}}', n) for p, n in sorted(self.received.items())])
        metric("scorewatch_ingest_items_accepted_total", "counter", "Telemetry items accepted, by protocol.",
               [(f'{{protocol="{p}"}}', n) for p, n in sorted(self.accepted.items())])
        metric("scorewatch_ingest_items_refused_total", "counter", "Telemetry items refused, by reason.",
               [(f'{{reason="{r}"}}', n) for r, n in sorted(self.refused.items())])
        metric("scorewatch_ingest_items_filtered_total", "counter",
               "SDK bookkeeping items accepted and not stored.", [("", self.filtered)])
        metric("scorewatch_ingest_throttled_requests_total", "counter", "Requests answered 429.",
               [("", self.throttled)])
        metric("scorewatch_store_rows_written_total", "counter", "Rows written to the store.",
               [("", self.stored)])
        metric("scorewatch_store_quarantined_items_total", "counter",
               "Accepted items the store refused, moved to the workspace's quarantine.", [("", self.quarantined)])
        metric("scorewatch_store_unavailable_total", "counter",
               "Store writes that failed for now (full disk, no memory) and were tried again.",
               [("", self.store_unavailable)])
        metric("scorewatch_ingest_paused", "gauge", "1 while the store cannot write and ingest answers 503.",
               [("", int(paused))])
        metric("scorewatch_wal_append_failed_total", "counter", "Write-ahead log appends that failed (answered 503).",
               [("", self.wal_failed)])
        metric("scorewatch_wal_corruptions_total", "counter",
               "Regions of the write-ahead log that did not read as records (skipped, logged).",
               [("", wal_corruptions)])
        metric("scorewatch_ingest_queue_items", "gauge", "Items accepted and not yet in the store.",
               [("", queue_depth)])
        metric("scorewatch_ingest_queue_limit_items", "gauge", "Queue size past which ingest answers 429.",
               [("", queue_limit)])
        name = "scorewatch_store_batch_write_seconds"
        out.append(f"# HELP {name} Time to write one batch to the store.")
        out.append(f"# TYPE {name} histogram")
        for bound, n in zip(_WRITE_BUCKETS, self.write_buckets, strict=True):
            out.append(f'{name}_bucket{{le="{bound:g}"}} {n}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.write_count}')
        out.append(f"{name}_sum {self.write_seconds:.6f}")
        out.append(f"{name}_count {self.write_count}")
        metric("scorewatch_store_size_bytes", "gauge", "Bytes the store uses on disk.", [("", store_bytes())])
        metric("scorewatch_retention_rows_deleted_total", "counter", "Rows retention deleted, by application.",
               [(f'{{app="{a}"}}', n) for a, n in sorted(self.retention_deleted.items())])
        return "\n".join(out) + "\n"
