"""What makes a worker's exporter: the processor, and where its batches go.

By default each scoring worker ships its rows to an exporter process of its own
(:class:`~scorewatch.telemetry.sidecar.SidecarExporter`), which builds, compresses and sends the
envelopes off the worker's GIL. With ``exporter_process`` off, or when that process cannot start,
the worker's telemetry thread builds and sends everything itself
(:class:`~scorewatch.telemetry.exporter.AppInsightsExporter`). Tests hand in their own exporter.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scorewatch.settings import Settings
from scorewatch.telemetry.builder import EnvelopeBuilder
from scorewatch.telemetry.control import LIVE_INTERVAL_S
from scorewatch.telemetry.exporter import AppInsightsExporter, Exporter
from scorewatch.telemetry.metrics import ExporterStats, merge
from scorewatch.telemetry.processor import BatchProcessor
from scorewatch.telemetry.sidecar import SidecarExporter
from scorewatch.telemetry.spool import Spool

log = logging.getLogger("scorewatch.telemetry")


class Pipeline:
    """The processor of one worker and the exporter it hands batches to."""

    def __init__(self, processor: BatchProcessor, exporter: Exporter, stats: ExporterStats) -> None:
        self.processor = processor
        self.exporter = exporter
        self.stats = stats
        self.interval_s = processor.interval_s
        self.live = False

    @classmethod
    def start(cls, settings: Settings, *, track_url: str, spool: Spool, stats: ExporterStats,
              builder: EnvelopeBuilder, stats_path: Path, cpus: list[int], on_tick: Callable[[], None],
              exporter: Exporter | None = None) -> Pipeline:
        """Start the exporter (``exporter`` if given) and the processor's thread."""
        build: Callable[..., Any] = builder.build
        if exporter is None and settings.exporter_process:
            config = {"track_url": track_url, "spool_dir": str(spool.directory), "spool_max_bytes": settings.spool_max_bytes,
                      "retry_max_s": settings.exporter_retry_max_s, "batch_size": settings.exporter_batch_size,
                      "interval_s": settings.exporter_interval_ms / 1000.0, "stats_path": str(stats_path),
                      "cpus": cpus, "templates": builder.templates.config()}
            try:
                exporter = SidecarExporter(config, stats, spool=spool, templates=builder.templates)
                build = builder.pack
            except OSError:
                log.warning("could not start the telemetry exporter process; exporting in-process", exc_info=True)
        if exporter is None:
            exporter = AppInsightsExporter(track_url, spool=spool, stats=stats, retry_max_s=settings.exporter_retry_max_s)
        processor = BatchProcessor(
            exporter, build, stats=stats, max_queue=settings.exporter_queue_size,
            max_queue_bytes=settings.exporter_queue_max_bytes, batch_size=settings.exporter_batch_size,
            interval_s=settings.exporter_interval_ms / 1000.0, on_tick=on_tick)
        return cls(processor, exporter, stats)

    def set_live(self, live: bool) -> None:
        """In live mode (someone watches the studio's live metrics) batches leave the worker and its
        exporter process at least every ``LIVE_INTERVAL_S``; out of it, every ``exporter_interval_ms``."""
        if live == self.live:
            return
        self.live = live
        interval_s = min(LIVE_INTERVAL_S, self.interval_s) if live else self.interval_s
        self.processor.set_interval(interval_s)
        if isinstance(self.exporter, SidecarExporter):
            self.exporter.set_interval(interval_s)
        log.info("live metrics %s: telemetry sent at least every %g s", "watched" if live else "unwatched", interval_s)

    def snapshot(self) -> dict[str, Any]:
        """The counters of this worker's telemetry, its exporter process's included."""
        snapshot = self.stats.snapshot()
        if isinstance(self.exporter, SidecarExporter):
            snapshot["queued"] = 0  # here: rows packed for the exporter process (counted as shipped)
            snapshot = merge(snapshot, self.exporter.remote_stats())
        return snapshot

    def shutdown(self, timeout_s: float) -> None:
        self.processor.shutdown(timeout_s)
        if isinstance(self.exporter, SidecarExporter):
            self.exporter.stats_path.unlink(missing_ok=True)


def stats_path(services_dir: Path, stem: str) -> Path:
    """Where a worker's exporter process writes its counters."""
    return services_dir / f"{stem}.{os.getpid()}.exporter.json"
