"""Export in the hub: one thread per active rule, in step with ``exports.json``, and its numbers.

The hub calls :meth:`ExportService.sync` about once a second: a rule added or resumed gets a thread
(a :class:`Runner`), a paused one loses it after its current round, a removed one also loses its
state folder. A runner repeats export rounds (:class:`~scorewatch.export.exporter.Exporter`); when
it has caught up it waits ``export_interval_s``; when a round fails (target down, credentials
rejected, disk full) it logs the error without credentials and tries again after 1, 2, 4, ... up to
``export_retry_max_s`` seconds, so it catches up by itself when the target returns.

Retention asks :meth:`ExportService.retention_floor` which rows to keep: everything above the lowest
checkpoint of the application's rules, except rules paused for longer than
``export_pause_limit_days``: those are logged as errors and counted
(``scorewatch_export_rows_expired_unexported_total``) when retention deletes rows they never exported.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from scorewatch.export.exporter import Checkpoint, Exporter, read_checkpoint
from scorewatch.export.rules import Rule, RuleBook
from scorewatch.export.targets import Target
from scorewatch.files import write_atomic
from scorewatch.settings import Settings
from scorewatch.store.base import Store

log = logging.getLogger("scorewatch.export")
EXPORT_NICE = 10  # added to the export threads' nice value


def state_root(home: Path) -> Path:
    """Where export rules keep their checkpoints and status (one folder per rule id)."""
    return home / "exports"


class Runner:
    """One rule's export thread and its numbers."""

    def __init__(self, service: ExportService, rule: Rule) -> None:
        self.service, self.rule = service, rule
        self.state_dir = state_root(service.home) / rule.id
        self.exporter: Exporter | None = None
        self.failures = 0
        self.last_error = ""
        self.last_error_at = ""
        self.lag_items = 0
        self.total = 0  # a one-shot export's rows in all
        self.finished = False
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
        return None if self.exporter is None else self.exporter.checkpoint.position

    def _loop(self) -> None:
        settings = self.service.settings
        _yield_to_ingest()
        delay = 1.0
        while not self._stop.is_set():
            try:
                if self.exporter is None:
                    target = Target.open(self.rule.url, settings)
                    self.exporter = Exporter(self.service.store, self.rule, target, self.state_dir,
                                             max_items=settings.export_max_items)
                    self.total = self.exporter.total()
                worked = self.exporter.round()
                self.lag_items = self.exporter.lag_items()
            except Exception as exc:
                self.failures += 1
                self.last_error = (self.exporter.target.describe(exc) if self.exporter is not None
                                   else f"{type(exc).__name__}: {exc}")
                self.last_error_at = datetime.now(UTC).isoformat(timespec="seconds")
                log.error("export rule %s: %s; trying again in %.0f s", self.rule.name, self.last_error, delay)
                self._count_lag()  # what waits grows while the target is away
                self.write_status()
                self._stop.wait(delay)
                delay = min(delay * 2, settings.export_retry_max_s)
                continue
            delay = 1.0
            if self.exporter.done:
                self.finished = True
                self.write_status()
                log.info("export %s: done (%d rows)", self.rule.name, self.exporter.checkpoint.items)
                return
            self.write_status()
            if not worked:
                self._stop.wait(settings.export_interval_s)

    def _count_lag(self) -> None:
        if self.exporter is not None:
            try:
                self.lag_items = self.exporter.lag_items()
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
            write_atomic(self.state_dir / "status.json", orjson.dumps(self.status()), mode=0o644, durable=False)
        except OSError as exc:  # the workspace's disk is full: the numbers wait, the export goes on
            log.warning("export rule %s: cannot write its status: %s", self.rule.name, exc)


def _yield_to_ingest() -> None:
    """Run this thread at a lower CPU priority (Linux: nice is per thread): when the hub is short of
    CPU, ingest (whose answers wait for it) goes first and the export catches up afterwards."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), EXPORT_NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: the same priority as ingest
        log.debug("export thread keeps its priority: %s", exc)


class ExportService:
    """The export rules of a workspace, run in the hub's process."""

    def __init__(self, store: Store, home: Path, settings: Settings) -> None:
        self.store, self.home, self.settings = store, home, settings
        self.book = RuleBook(home / "exports.json")
        self.runners: dict[str, Runner] = {}     # by rule id
        self.expired: dict[str, int] = {}        # rule name → rows retention deleted before export
        self.overridden: set[str] = set()        # rules paused past the limit
        self._seen: deque[tuple[int, float]] = deque(maxlen=100_000)  # (store position, when first seen)
        self._paused_lag: dict[str, tuple[float, int]] = {}  # rule id → (when counted, rows)
        self._lock = threading.Lock()

    # -- following exports.json ----------------------------------------------------------------------

    def sync(self) -> None:
        """Start, stop and forget runners so they match the rules (called about once a second)."""
        position = self.store.row_position()
        if not self._seen or self._seen[-1][0] != position:
            self._seen.append((position, time.time()))
        rules = {rule.id: rule for rule in self.book.list()}
        with self._lock:
            for rule_id, runner in list(self.runners.items()):
                rule = rules.get(rule_id)
                if rule is None or not rule.active:
                    runner.stop()
                    del self.runners[rule_id]
                    if rule is None:
                        shutil.rmtree(runner.state_dir, ignore_errors=True)
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
                checkpoint = read_checkpoint(state_root(self.home) / rule.id)
                after = -1 if checkpoint is None else checkpoint.position
                self._paused_lag[rule.id] = (now, self.store.export_count(rule.app_id, rule.tables, after=after))

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
        with self._lock:
            runners = list(self.runners.values())
            self.runners.clear()
        for runner in runners:
            runner._stop.set()
        for runner in runners:
            runner.stop()

    # -- retention -----------------------------------------------------------------------------------

    def _position(self, rule: Rule) -> int | None:
        runner = self.runners.get(rule.id)
        if runner is not None and runner.position is not None:
            return runner.position
        checkpoint = read_checkpoint(state_root(self.home) / rule.id)
        if checkpoint is not None:
            return checkpoint.position
        return -1 if rule.kind == "once" or rule.start == "beginning" else None

    def retention_floor(self, app_id: str, days: int) -> int | None:
        """The position above which retention must keep the rows of ``app_id`` (None: no limit)."""
        floor: int | None = None
        now = datetime.now(UTC)
        limit = timedelta(days=self.settings.export_pause_limit_days)
        for rule in self.book.list():
            position = self._position(rule) if rule.app_id == app_id else None
            if position is None:
                continue
            if not rule.active and rule.paused_at and now - datetime.fromisoformat(rule.paused_at) > limit:
                self.overridden.add(rule.name)
                cutoff = now - timedelta(days=days)
                lost = self.store.export_count(app_id, rule.tables, after=position, until=cutoff)
                if lost:
                    self.expired[rule.name] = self.expired.get(rule.name, 0) + lost
                    log.error("export rule %s has been paused since %s, past the %g-day limit: retention "
                              "deletes %d rows of %s it has not exported", rule.name, rule.paused_at,
                              self.settings.export_pause_limit_days, lost, rule.app)
                continue
            self.overridden.discard(rule.name)
            floor = position if floor is None else min(floor, position)
        return floor

    # -- metrics ---------------------------------------------------------------------------------------

    def render_metrics(self) -> str:
        """The export metrics in the Prometheus text format, one series per rule."""
        rules = self.book.list()
        samples: dict[str, list[tuple[str, float]]] = {name: [] for name in _METRICS}
        for rule in rules:
            labels = f'{{rule="{rule.name}",app="{rule.app}"}}'
            runner = self.runners.get(rule.id)
            checkpoint = (runner.exporter.checkpoint if runner is not None and runner.exporter is not None
                          else read_checkpoint(state_root(self.home) / rule.id))
            totals = checkpoint or _NO_CHECKPOINT
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
