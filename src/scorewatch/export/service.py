"""Export in the hub: one thread per active rule, in step with the rules, and its numbers.

The hub calls :meth:`ExportService.sync` about once a second: a rule added or resumed gets a thread
(a :class:`Runner`), a paused one loses it after its current round, a removed one also loses its
state. A runner repeats export rounds, one :class:`~scorewatch.export.exporter.Exporter` per writer's
stream of positions (one stream with one hub); when it has caught up it waits ``export_interval_s``; when a round fails (target down, credentials
rejected, disk full) it logs the error without credentials and tries again after 1, 2, 4, ... up to
``export_retry_max_s`` seconds, so it catches up by itself when the target returns.

With hub replicas on a shared store one replica at a time runs the export, the one holding the lease
``export`` (:func:`scorewatch.documents.lease`, renewed every second, taken over by another replica
``EXPORT_LEASE_S`` after its holder stops renewing it); the others stop their runners.

Retention asks :meth:`ExportService.retention_floor` which rows to keep: in each stream, everything
above the lowest checkpoint of the application's rules, except rules paused for longer than
``export_pause_limit_days``: those are logged as errors and counted
(``scorewatch_export_rows_expired_unexported_total``) when retention deletes rows they never exported.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from scorewatch.documents import Documents, lease, release
from scorewatch.export.exporter import (
    Checkpoint,
    Exporter,
    read_checkpoint,
    read_checkpoints,
    state_key,
    total,
)
from scorewatch.export.rules import Rule, RuleBook
from scorewatch.export.targets import Target
from scorewatch.settings import Settings
from scorewatch.store.base import Store, stream_bounds

log = logging.getLogger("scorewatch.export")
EXPORT_NICE = 10  # added to the export threads' nice value
EXPORT_LEASE_S = 30.0  # a replica that stops renewing the export lease loses it this much later


def status_key(rule_id: str) -> str:
    return f"{state_key(rule_id)}/status"


class Runner:
    """One rule's export thread and its numbers."""

    def __init__(self, service: ExportService, rule: Rule) -> None:
        self.service, self.rule = service, rule
        self.exporters: dict[int, Exporter] = {}  # by stream
        self.target: Target | None = None
        self.failures = 0
        self.last_error = ""
        self.last_error_at = ""
        self.lag_items = 0
        self.total = 0  # a one-shot export's rows in all
        self.finished = False
        self.hurried = False  # over export_max_lag_s behind: reading beside ingest's writes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"scorewatch-export-{rule.name}", daemon=True)

    def start(self) -> Runner:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def position(self) -> int | None:
        """The checkpoint of this hub's own stream (the one :meth:`ExportService.waiting_since` follows)."""
        exporter = self.exporters.get(self.service.stream)
        return None if exporter is None else exporter.checkpoint.position

    def positions(self) -> dict[int, int]:
        return {stream: exporter.checkpoint.position for stream, exporter in list(self.exporters.items())}

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The totals of every stream's checkpoint together."""
        return total({stream: e.checkpoint for stream, e in list(self.exporters.items())})

    @property
    def done(self) -> bool:
        return bool(self.exporters) and all(e.done for e in self.exporters.values())

    def _round(self) -> bool:
        """One round of every stream's exporter (new streams get theirs; a one-shot export follows
        the streams there were when it started); True when any had rows."""
        settings = self.service.settings
        if self.target is None:
            self.target = Target.open(self.rule.url, settings)
        streams = sorted(self.service.store.row_positions())
        for stream in streams:
            if stream not in self.exporters and not (self.rule.kind == "once" and self.exporters):
                self.exporters[stream] = Exporter(self.service.store, self.rule, self.target,
                                                  self.service.documents, max_items=settings.export_max_items,
                                                  stream=stream)
                self.total = sum(e.total() for e in self.exporters.values())
        worked = False
        for exporter in list(self.exporters.values()):
            if not exporter.done:
                worked = exporter.round(self._patience(exporter)) or worked
        self.lag_items = sum(e.lag_items() for e in self.exporters.values())
        return worked

    def _patience(self, exporter: Exporter) -> float:
        """How long a round may wait for a gap between ingest's writes to read its rows.

        Ingest goes first: while the export is less than ``export_max_lag_s`` behind, a round waits
        up to a second for a gap (when none comes the runner looks again, so a stop is seen). Once
        it is further behind, rounds read beside the writes, at some cost to ingest's top rate,
        until the export has caught up. Rows of another replica's stream come from that replica's
        writes: nothing to wait for here."""
        if exporter.stream != self.service.stream:
            return 0.0
        limit = self.service.settings.export_max_lag_s
        behind = self.service.waiting_since(exporter.checkpoint.position)
        if self.hurried and behind == 0:
            self.hurried = False
            log.info("export rule %s: caught up; its reads wait for gaps between ingest's writes again",
                     self.rule.name)
        elif not self.hurried and behind >= limit:
            self.hurried = True
            log.warning("export rule %s: %.0f s behind while ingest keeps the store busy; reading beside "
                        "its writes until caught up", self.rule.name, behind)
        return 0.0 if self.hurried else min(1.0, limit - behind)

    def _loop(self) -> None:
        settings = self.service.settings
        _yield_to_ingest()
        delay = 1.0
        while not self._stop.is_set():
            try:
                worked = self._round()
            except Exception as exc:
                self.failures += 1
                self.last_error = (self.target.describe(exc) if self.target is not None
                                   else f"{type(exc).__name__}: {exc}")
                self.last_error_at = datetime.now(UTC).isoformat(timespec="seconds")
                log.error("export rule %s: %s; trying again in %.0f s", self.rule.name, self.last_error, delay)
                self._count_lag()  # what waits grows while the target is away
                self.write_status()
                self._stop.wait(delay)
                delay = min(delay * 2, settings.export_retry_max_s)
                continue
            delay = 1.0
            if self.done:
                self.finished = True
                self.write_status()
                log.info("export %s: done (%d rows)", self.rule.name, self.checkpoint.items if self.checkpoint else 0)
                return
            self.write_status()
            if not worked:
                self._stop.wait(settings.export_interval_s)

    def _count_lag(self) -> None:
        if self.exporters:
            try:
                self.lag_items = sum(e.lag_items() for e in self.exporters.values())
            except Exception as exc:  # the store is closing: the number waits for the next round
                log.debug("export rule %s: lag not counted: %s", self.rule.name, exc)

    def lag_seconds(self) -> float:
        position = self.position
        return 0.0 if position is None or not self.lag_items else self.service.waiting_since(position)

    def status(self) -> dict[str, Any]:
        return {"updated": datetime.now(UTC).isoformat(timespec="seconds"), "running": not self.finished,
                "done": self.finished, "total": self.total, "lag_items": self.lag_items, "lag_seconds": round(self.lag_seconds(), 1),
                "failures": self.failures, "last_error": self.last_error, "last_error_at": self.last_error_at}

    def write_status(self) -> None:
        try:
            self.service.documents.write(status_key(self.rule.id), self.status(), public=True, durable=False)
        except Exception as exc:  # the workspace's disk is full: the numbers wait, the export goes on
            log.warning("export rule %s: cannot write its status: %s", self.rule.name, exc)


def _yield_to_ingest() -> None:
    """Run this thread at a lower CPU priority (Linux: nice is per thread): when the hub is short of
    CPU, ingest (whose answers wait for it) goes first and the export catches up afterwards."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), EXPORT_NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: the same priority as ingest
        log.debug("export thread keeps its priority: %s", exc)


class ExportService:
    """The export rules of a workspace (in ``documents``), run in the hub's process."""

    def __init__(self, store: Store, documents: Documents, settings: Settings) -> None:
        self.store, self.documents, self.settings = store, documents, settings
        self.stream: int = getattr(store, "stream", 0)  # this hub's own stream
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leading = not documents.shared
        self.book = RuleBook(documents)
        self.runners: dict[str, Runner] = {}     # by rule id
        self.expired: dict[str, int] = {}        # rule name → rows retention deleted before export
        self.overridden: set[str] = set()        # rules paused past the limit
        self._seen: deque[tuple[int, float]] = deque(maxlen=100_000)  # (store position, when first seen)
        self._paused_lag: dict[str, tuple[float, int]] = {}  # rule id → (when counted, rows)
        self._lock = threading.Lock()

    # -- following exports.json ----------------------------------------------------------------------

    def lead(self) -> bool:
        """Take or keep the export lease (always held with one hub); a replica that loses it stops its runners."""
        was = self.leading
        self.leading = lease(self.documents, "export", self.holder, EXPORT_LEASE_S)
        if was != self.leading:
            log.info("this hub %s the export and retention", "runs" if self.leading else "no longer runs")
        return self.leading

    def sync(self) -> None:
        """Start, stop and forget runners so they match the rules (called about once a second)."""
        position = self.store.row_position()
        if not self._seen or self._seen[-1][0] != position:
            self._seen.append((position, time.time()))
        if not self.lead():
            self.stop()
            return
        rules = {rule.id: rule for rule in self.book.list()}
        with self._lock:
            for rule_id, runner in list(self.runners.items()):
                rule = rules.get(rule_id)
                if rule is None or not rule.active:
                    runner.stop()
                    del self.runners[rule_id]
                    if rule is None:
                        self.documents.delete(state_key(rule_id))
                    else:
                        runner.write_status()
            for rule_id, rule in rules.items():
                if rule.active and rule_id not in self.runners:
                    self.runners[rule_id] = Runner(self, rule).start()
        self._count_paused_lag(rules.values())
        self._forget_seen()

    def _count_paused_lag(self, rules: Iterable[Rule]) -> None:
        """What paused rules have not exported (no runner counts it for them), every export_interval_s."""
        now = time.monotonic()
        for rule in rules:
            counted = self._paused_lag.get(rule.id)
            if rule.active or rule.kind != "continuous":
                self._paused_lag.pop(rule.id, None)
            elif counted is None or now - counted[0] >= self.settings.export_interval_s:
                lag = 0
                for stream in self.store.row_positions():
                    checkpoint = read_checkpoint(self.documents, rule.id, stream)
                    below, top = stream_bounds(stream)
                    lag += self.store.export_count(rule.app_id, rule.tables, upto=top,
                                                   after=below if checkpoint is None else checkpoint.position)
                self._paused_lag[rule.id] = (now, lag)

    def _forget_seen(self) -> None:
        positions = [r.position for r in self.runners.values() if r.position is not None]
        floor = min(positions) if positions else self.store.row_position()
        while len(self._seen) > 1 and self._seen[1][0] <= floor:
            self._seen.popleft()

    def waiting_since(self, position: int) -> float:
        """Seconds since the first row above ``position`` was stored (to about a second)."""
        for seen, when in list(self._seen):  # a copy: sync() changes the deque in another thread
            if seen > position:
                return max(0.0, time.time() - when)
        return 0.0

    def stop(self) -> None:
        """Stop the runners and give up the export lease (another replica takes it at its next try,
        not once the lease runs out)."""
        with self._lock:
            runners = list(self.runners.values())
            self.runners.clear()
        for runner in runners:
            runner._stop.set()
        for runner in runners:
            runner.stop()
        if self.leading and self.documents.shared:
            release(self.documents, "export", self.holder)
            self.leading = False

    # -- retention -----------------------------------------------------------------------------------

    def _position(self, rule: Rule, stream: int) -> int | None:
        runner = self.runners.get(rule.id)
        if runner is not None and stream in runner.exporters:
            return runner.exporters[stream].checkpoint.position
        checkpoint = read_checkpoint(self.documents, rule.id, stream)
        if checkpoint is not None:
            return checkpoint.position
        return stream_bounds(stream)[0] if rule.kind == "once" or rule.start == "beginning" else None

    def retention_floor(self, app_id: str, days: int) -> dict[int, int] | None:
        """Per stream, the position above which retention must keep the rows of ``app_id`` (None,
        or a stream missing: no limit)."""
        floor: dict[int, int] = {}
        now = datetime.now(UTC)
        limit = timedelta(days=self.settings.export_pause_limit_days)
        for rule in self.book.list():
            if rule.app_id != app_id:
                continue
            positions = {s: p for s in self.store.row_positions() if (p := self._position(rule, s)) is not None}
            if not positions:
                continue
            if not rule.active and rule.paused_at and now - datetime.fromisoformat(rule.paused_at) > limit:
                self.overridden.add(rule.name)
                cutoff = now - timedelta(days=days)
                lost = sum(self.store.export_count(app_id, rule.tables, after=position, upto=stream_bounds(s)[1],
                                                   until=cutoff) for s, position in positions.items())
                if lost:
                    self.expired[rule.name] = self.expired.get(rule.name, 0) + lost
                    log.error("export rule %s has been paused since %s, past the %g-day limit: retention "
                              "deletes %d rows of %s it has not exported", rule.name, rule.paused_at,
                              self.settings.export_pause_limit_days, lost, rule.app)
                continue
            self.overridden.discard(rule.name)
            for stream, position in positions.items():
                floor[stream] = min(floor.get(stream, position), position)
        return floor or None

    # -- metrics ---------------------------------------------------------------------------------------

    def render_metrics(self) -> str:
        """The export metrics in the Prometheus text format, one series per rule."""
        rules = self.book.list()
        samples: dict[str, list[tuple[str, float]]] = {name: [] for name in _METRICS}
        for rule in rules:
            labels = f'{{rule="{rule.name}",app="{rule.app}"}}'
            runner = self.runners.get(rule.id)
            totals = (runner.checkpoint if runner is not None else None) or total(read_checkpoints(self.documents, rule.id)) \
                or _NO_CHECKPOINT
            values = {
                "scorewatch_export_lag_items": runner.lag_items if runner else self._paused_lag.get(rule.id, (0, 0))[1],
                "scorewatch_export_lag_seconds": round(runner.lag_seconds(), 1) if runner else 0.0,
                "scorewatch_export_items_total": totals.items,
                "scorewatch_export_files_written_total": totals.files,
                "scorewatch_export_bytes_written_total": totals.bytes,
                "scorewatch_export_failures_total": runner.failures if runner else 0,
                "scorewatch_export_paused": 0 if rule.active else 1,
                "scorewatch_export_retention_overridden": 1 if rule.name in self.overridden else 0,
                "scorewatch_export_rows_expired_unexported_total": self.expired.get(rule.name, 0),
            }
            for name, value in values.items():
                samples[name].append((labels, value))
        out = []
        for name, (kind, help_text) in _METRICS.items():
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{labels} {value:g}" if isinstance(value, float) else f"{name}{labels} {value}"
                       for labels, value in samples[name])
        return "\n".join(out) + "\n"


_NO_CHECKPOINT = Checkpoint(position=0)
_METRICS = {
    "scorewatch_export_lag_items": ("gauge", "Rows of the rule's application not exported yet."),
    "scorewatch_export_lag_seconds": ("gauge", "Seconds since the oldest row not exported yet was stored."),
    "scorewatch_export_items_total": ("counter", "Rows exported (committed with the checkpoint)."),
    "scorewatch_export_files_written_total": ("counter", "Files written or appended to."),
    "scorewatch_export_bytes_written_total": ("counter", "Bytes written."),
    "scorewatch_export_failures_total": ("counter", "Export rounds that failed (and were tried again)."),
    "scorewatch_export_paused": ("gauge", "1 while the rule is paused."),
    "scorewatch_export_retention_overridden": (
        "gauge", "1 when the rule is paused past export_pause_limit_days and retention no longer waits for it."),
    "scorewatch_export_rows_expired_unexported_total": (
        "counter", "Rows retention deleted before the (paused) rule exported them."),
}
