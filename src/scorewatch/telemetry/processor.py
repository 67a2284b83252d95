"""The batch processor: a bounded queue between the request path and the exporter.

Producers call :meth:`BatchProcessor.emit` with a light record (a tuple whose second element is the
payload size in bytes), or, for the rows every request makes, add a plain tuple of small values to
:attr:`BatchProcessor.rows` with :meth:`BatchProcessor.add` (the C fast paths append to ``rows``
themselves, after the same test, ``len(rows) < row_limit``): one list append, no lock, no wake-up. The worker thread picks rows up every ``pickup_s`` and hands them on as
``(RECORD_ROWS, 0, [row, ...])`` records of ``ROWS_PER_RECORD`` rows, so whatever it does with them
(``marshal.dumps`` for the exporter process) is one C call per record, not Python per row: a thread
holding the GIL delays the event loop, so it also sleeps briefly after every ``WORK_S`` of work. The
worker thread, woken by an event when enough records were emitted, on a flush, and at least every
``pickup_s``, turns records into envelopes (``build``) and hands batches to the exporter (as soon as a
batch is full, the rest at least every ``interval_s``). The queue is bounded by items and by payload
bytes: past either bound a record is dropped and counted (``queue_full`` / ``queue_bytes``), a
request is never blocked. After ``fork`` the child gets a fresh queue, locks and worker thread
(``os.register_at_fork``), as OpenTelemetry's ``BatchSpanProcessor`` does.
"""

from __future__ import annotations

import collections
import inspect
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from scorewatch.telemetry.exporter import Exporter
from scorewatch.telemetry.metrics import ExporterStats
from scorewatch.telemetry.rows import RECORD_ROWS

log = logging.getLogger("scorewatch.telemetry")

Record = tuple[Any, ...]
Builder = Callable[[Record], Iterable[bytes]]  # serialized envelopes

ROWS_PER_RECORD = 128  # rows handed on as one record: one marshal call of ~50 us for the exporter process
WORK_S = 0.0003        # the worker thread builds at most this long before it lets the GIL go ...
BREATH_S = 0.0001      # ... for this long


class BatchProcessor:
    """Bounded queue + worker thread + exporter; see the module docstring."""

    def __init__(self, exporter: Exporter, build: Builder, *, stats: ExporterStats | None = None,
                 max_queue: int = 20_000, max_queue_bytes: int = 256 * 1024 * 1024, batch_size: int = 512,
                 interval_s: float = 1.0, poll_s: float = 0.25, pickup_s: float = 0.1,
                 on_tick: Callable[[], None] | None = None) -> None:
        self.exporter = exporter
        self.build = build
        self.stats = stats or ExporterStats()
        self.stats.queue_depth = self.depth
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.batch_size = max(1, batch_size)
        self.interval_s = interval_s
        self.poll_s = min(poll_s, interval_s)  # how often on_tick runs
        self.pickup_s = min(pickup_s, self.poll_s)
        self.on_tick = on_tick
        self.rows: list[Any] = []  # one list for the object's life: producers may hold its append
        self.row_limit = max_queue  # 0 once shutting down
        self._init_state()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    def _init_state(self) -> None:
        self._queue: collections.deque[Record] = collections.deque()
        self._bytes = 0
        self._bytes_lock = threading.Lock()
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._flush_requested = 0
        self._flushed = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="scorewatch-telemetry", daemon=True)
        self._thread.start()

    def _after_fork(self) -> None:
        # Records queued in the parent are the parent's to send.
        self.rows.clear()
        self.row_limit = self.max_queue
        self._init_state()

    # -- producer side (request path) --------------------------------------------------------------
    def emit(self, record: Record) -> bool:
        """Queue one record; False when it was dropped (queue full, too many bytes, shutting down)."""
        queue = self._queue
        if self._stopping:
            self.stats.drop("shutdown")
            return False
        if len(queue) >= self.max_queue:
            self.stats.drop("queue_full")
            return False
        size = record[1]
        if size:  # producers give a size only for large payloads, so this lock is rare
            with self._bytes_lock:
                if self._bytes + size > self.max_queue_bytes:
                    self.stats.drop("queue_bytes")
                    return False
                self._bytes += size
        queue.append(record)
        if len(queue) >= self.batch_size and not self._wake.is_set():
            self._wake.set()
        return True

    def add(self, row: Any) -> bool:
        """Queue one small row (see the module docstring); False when it was dropped."""
        rows = self.rows
        if len(rows) >= self.row_limit:
            self.refused()
            return False
        rows.append(row)
        return True

    def refused(self) -> None:
        """Count a row that could not be added (the rows are full, or the processor is shutting down)."""
        self.stats.drop("shutdown" if self._stopping else "queue_full")

    def depth(self) -> int:
        return len(self._queue) + len(self.rows)

    def _move_rows(self) -> None:
        # Slice, then delete what was sliced: rows added in between (by other threads) stay for next time.
        rows = self.rows
        n = len(rows)
        if n:
            batch = rows[:n]
            del rows[:n]
            for start in range(0, n, ROWS_PER_RECORD):
                self._queue.append((RECORD_ROWS, 0, batch[start:start + ROWS_PER_RECORD]))

    # -- control -----------------------------------------------------------------------------------
    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Export everything queued now; True when done (and the exporter flushed) within the timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._flush_requested += 1
            target = self._flush_requested
        self._wake.set()
        with self._cond:
            done = self._cond.wait_for(lambda: self._flushed >= target or not self._thread.is_alive(),
                                       timeout_s)
        return bool(done) and self.exporter.force_flush(max(0.0, deadline - time.monotonic()))

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Export what is queued within ``timeout_s``; what cannot be sent in time is spooled if the
        exporter can (``spool_now``), else counted as dropped (``shutdown``)."""
        deadline = time.monotonic() + timeout_s
        send_timeout = getattr(self.exporter, "timeout_s", None)
        if send_timeout is not None:  # a slow receiver must not eat the whole deadline on one batch
            self.exporter.timeout_s = max(0.2, min(send_timeout, timeout_s / 3))  # type: ignore[attr-defined]
        self._stopping = True
        self.row_limit = 0
        self._wake.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._move_rows()
        leftovers = self._take(len(self._queue))
        if leftovers:
            envelopes = self._envelopes(leftovers)
            spool_now = getattr(self.exporter, "spool_now", None)
            if spool_now is not None:
                spool_now(envelopes)
            else:
                self.stats.drop("shutdown", len(envelopes))
        if "timeout_s" in inspect.signature(self.exporter.shutdown).parameters:
            self.exporter.shutdown(timeout_s=max(0.5, deadline - time.monotonic()))  # type: ignore[call-arg]
        else:
            self.exporter.shutdown()

    # -- worker side -------------------------------------------------------------------------------
    def set_interval(self, interval_s: float) -> None:
        """Hand batches on at least every ``interval_s`` from now on (live mode shortens it)."""
        self.interval_s = interval_s
        self._wake.set()

    def _run(self) -> None:
        started = time.monotonic()
        last_drain, next_tick = started, started + self.poll_s
        while not self._stopping:
            self._wake.wait(self.pickup_s)
            self._wake.clear()
            now = time.monotonic()
            flush_target = self._flush_requested
            if (len(self._queue) + len(self.rows) >= self.batch_size or now - last_drain >= self.interval_s
                    or flush_target > self._flushed or self._stopping):
                self._drain()
                last_drain = now
                if flush_target > self._flushed:
                    with self._cond:
                        self._flushed = flush_target
                        self._cond.notify_all()
            if now >= next_tick:
                self._tick()
                next_tick = now + self.poll_s
        self._drain()
        with self._cond:
            self._flushed = self._flush_requested
            self._cond.notify_all()

    def _tick(self) -> None:
        try:
            retry_due = getattr(self.exporter, "retry_due", None)
            if retry_due is not None:
                retry_due()
            if self.on_tick is not None:
                self.on_tick()
        except Exception:  # the worker must outlive any bug in a hook
            log.exception("telemetry worker tick failed")

    def _drain(self) -> None:
        self._move_rows()
        while self._queue:
            records = self._take(self.batch_size)
            envelopes = self._envelopes(records)
            for start in range(0, len(envelopes), self.batch_size):
                try:
                    self.exporter.export(envelopes[start:start + self.batch_size])
                except Exception:
                    log.exception("telemetry export failed")
                    self.stats.drop("rejected", len(envelopes[start:start + self.batch_size]))

    def _take(self, n: int) -> list[Record]:
        records = []
        queue = self._queue
        for _ in range(n):
            try:
                record = queue.popleft()
            except IndexError:
                break
            if record[1]:
                with self._bytes_lock:
                    self._bytes -= record[1]
            records.append(record)
        return records

    def _envelopes(self, records: list[Record]) -> list[bytes]:
        envelopes: list[bytes] = []
        worked_since = time.perf_counter()
        for record in records:
            if time.perf_counter() - worked_since >= WORK_S:
                # This thread holds the GIL while it builds: the event loop, woken meanwhile, would wait
                # for all of it (up to the interpreter's 5 ms switch interval). A real sleep hands the
                # GIL over; sleep(0) releases it and usually takes it straight back.
                time.sleep(BREATH_S)
                worked_since = time.perf_counter()
            try:
                built = list(self.build(record))
            except Exception:
                log.exception("could not build telemetry from a %s record", record[0])
                self.stats.drop("invalid")
                continue
            envelopes.extend(built)
        self.stats.add("queued", len(envelopes))
        return envelopes


def _after_fork(ref: weakref.ref) -> None:
    obj = ref()
    if obj is not None:
        obj._after_fork()
