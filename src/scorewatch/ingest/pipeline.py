"""The ingest pipeline: admission, group-committed write-ahead log, batched writes to the store.

    request handler ──submit()──▶ WAL thread ──fsync──▶ answer 200
                                      │ (in log order)
                                      ▼
                                  writer thread ── Arrow batch (~20k+ items) ──▶ store, with WAL position

- Admission: ``pending`` counts items accepted but not yet in the store (``pending_bytes`` their
  size). Past ``queue_items`` (or ``queue_bytes``) a request gets :class:`~scorewatch.errors.TooManyRequests` (429 with ``Retry-After``), so memory stays
  bounded under any flood. A request larger than the whole queue is 413 (it would never fit); while
  the store cannot write (a full disk), every request is 503 with ``Retry-After``.
- The WAL thread takes every record waiting, writes them and fsyncs once (group commit), then hands
  them to the writer in log order and releases the waiting requests.
- The writer thread gathers whole records into big batches and writes each batch in one store
  transaction that also records the batch's last WAL position; on start, :meth:`Ingestor.recover`
  replays the log after that position. A batch is at most ``batch_items`` items and ``batch_bytes``.
- What the store refuses is narrowed down to the items it refuses, which go to the quarantine
  (:mod:`scorewatch.ingest.quarantine`) before the record counts as applied; what it cannot write
  for now (a full disk) is retried until it can. Nothing counts as applied that is not written or
  quarantined.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from scorewatch.errors import PayloadTooLarge, ServiceUnavailable, TooManyRequests
from scorewatch.ingest.metrics import IngestMetrics
from scorewatch.ingest.quarantine import Quarantine
from scorewatch.ingest.records import Record, decode, encode
from scorewatch.ingest.track import Accepted
from scorewatch.ingest.wal import WriteAheadLog
from scorewatch.store.base import Store, StoreRefused, StoreUnavailable
from scorewatch.store.envelopes import BASE_TYPES

log = logging.getLogger("scorewatch.hub")


class Ingestor:
    def __init__(self, store: Store, wal: WriteAheadLog, metrics: IngestMetrics, quarantine: Quarantine, *,
                 queue_items: int, queue_bytes: int = 512 * 1024 * 1024, batch_items: int = 50_000,
                 batch_bytes: int = 128 * 1024 * 1024, linger_s: float = 0.2, release_interval_s: float = 1.0,
                 retry_min_s: float = 0.5, retry_max_s: float = 5.0, memory_patience_s: float = 60.0,
                 isolate_budget: int = 64) -> None:
        self.store, self.wal, self.metrics, self.quarantine = store, wal, metrics, quarantine
        self.queue_items = queue_items
        self.batch_items = batch_items
        self.batch_bytes = batch_bytes  # uncompressed envelopes in one store transaction, at most
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.memory_patience_s = memory_patience_s
        self.isolate_budget = isolate_budget  # dry runs spent finding the items the store refuses in a record
        self.unavailable: str | None = None  # why the store cannot write now (admission answers 503)
        self.linger_s = linger_s
        self.release_interval_s = release_interval_s
        self.queue_bytes = queue_bytes
        self.pending = 0  # items admitted and not yet in the store
        self.pending_bytes = 0  # their size (uncompressed JSON)
        self.applied = store.applied_position()
        wal.follow(self.applied)  # new sequences come after everything the store has
        self._lock = threading.Lock()
        self._wal_queue: deque[tuple[Accepted, concurrent.futures.Future[int]]] = deque()
        self._wal_wake = threading.Condition(self._lock)
        self._records: deque[Record] = deque()
        self._queued = 0  # items in self._records
        self._write_wake = threading.Condition(threading.Lock())
        self._stopping = False
        self._force = False
        self._threads: list[threading.Thread] = []
        # Called on the event loop with each accepted request's items once they are durable: the
        # studio's live metrics add one while someone watches them, and remove it after.
        self.taps: list[Callable[[Accepted], None]] = []

    # -- lifecycle ------------------------------------------------------------------------------------

    def recover(self) -> int:
        """Replay WAL records the store has not applied; returns the number of items replayed.

        A store without transactions (ClickHouse) may hold part of a write that was cut off: the
        records up to its :meth:`~scorewatch.store.base.Store.interrupted_position` are replayed as one
        batch first, the same batch as then, so the store recognises what it already has."""
        replayed = 0
        batch: list[Record] = []
        size = nbytes = 0
        interrupted = self.store.interrupted_position()
        for seq, payload in self.wal.replay(self.applied):
            record = decode(seq, payload)
            batch.append(record)
            size += record.count
            nbytes += len(record.blob)
            if seq == interrupted or size >= self.batch_items or nbytes >= self.batch_bytes:
                replayed += self._write(batch)
                batch, size, nbytes = [], 0, 0
        if batch:
            replayed += self._write(batch)
        self.applied = max(self.applied, self.wal.last_seq)
        self.wal.release(self.applied)
        return replayed

    def start(self) -> None:
        for target, name in ((self._wal_loop, "scorewatch-wal"), (self._write_loop, "scorewatch-writer")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what was admitted (log and store), then stop the threads."""
        self._stopping = True
        with self._wal_wake:
            self._wal_wake.notify_all()
        with self._write_wake:
            self._write_wake.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self.wal.close()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every admitted item is in the store; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while self.pending:
            if time.monotonic() > deadline:
                return False
            with self._write_wake:
                self._force = True  # write what is queued now, without waiting for a full batch
                self._write_wake.notify()
            time.sleep(0.01)
        return True

    # -- admission --------------------------------------------------------------------------------------

    def check_capacity(self, items: int = 0, nbytes: int = 0) -> None:
        if items > self.queue_items or nbytes > self.queue_bytes:  # would never fit: retrying is no use
            raise PayloadTooLarge(f"the request holds {items} items ({nbytes} bytes); the hub takes at most "
                                  f"{self.queue_items} items and {self.queue_bytes} bytes in one request")
        if self.unavailable is not None:
            self.metrics.throttled += 1
            raise ServiceUnavailable(f"the hub's store cannot write right now ({self.unavailable}); retry later",
                                     retry_after=self.retry_max_s)
        if (self.pending + items > self.queue_items or self.pending_bytes + nbytes > self.queue_bytes
                or self._stopping):
            self.metrics.throttled += 1
            raise TooManyRequests(f"the hub's ingest queue is full ({self.pending} items waiting)",
                                  retry_after=max(1.0, self.pending / 100_000))

    async def submit(self, accepted: Accepted) -> None:
        """Make ``accepted`` durable; returns once its WAL record is fsynced."""
        n = len(accepted.lines)
        if n == 0:
            return
        accepted.nbytes = accepted.nbytes or sum(map(len, accepted.lines))
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        with self._wal_wake:
            self.check_capacity(n, accepted.nbytes)
            self.pending += n
            self.pending_bytes += accepted.nbytes
            self._wal_queue.append((accepted, future))
            self._wal_wake.notify()
        await asyncio.wrap_future(future)
        for tap in self.taps:
            try:
                tap(accepted)
            except Exception:  # a watcher's bug must not fail ingest, which already succeeded
                log.exception("an ingest tap failed")

    # -- WAL thread -------------------------------------------------------------------------------------

    def _wal_loop(self) -> None:
        last_release = time.monotonic()
        wal_failing = False
        while True:
            with self._wal_wake:
                if not self._wal_queue and not self._stopping:
                    self._wal_wake.wait(1.0)
                waiting = list(self._wal_queue)
                self._wal_queue.clear()
            if time.monotonic() - last_release >= self.release_interval_s:  # drop applied log segments
                last_release = time.monotonic()
                if not waiting:
                    self.wal.rotate_if_applied(self.applied)
                self.wal.release(self.applied)
            if not waiting:
                if self._stopping:
                    with self._write_wake:
                        self._write_wake.notify_all()
                    return
                continue
            try:
                seqs = self.wal.append([encode(acc) for acc, _ in waiting])
            except Exception as exc:  # disk full, I/O error: refuse, never answer 200
                self.metrics.wal_failed += 1
                if not wal_failing:  # once per streak, not once per request
                    log.error("write-ahead log append failed (requests are answered 503 until it works): %s", exc)
                wal_failing = True
                with self._wal_wake:
                    self.pending -= sum(len(acc.lines) for acc, _ in waiting)
                    self.pending_bytes -= sum(acc.nbytes for acc, _ in waiting)
                error = ServiceUnavailable("the hub cannot write its log right now; retry later",
                                           retry_after=self.retry_max_s)
                for _, fut in waiting:
                    fut.set_exception(error)
                continue
            if wal_failing:
                log.warning("the write-ahead log is written again")
                wal_failing = False
            with self._write_wake:
                for seq, (acc, _) in zip(seqs, waiting, strict=True):
                    self._records.append(Record.of(seq, acc.lines, acc.base_types, acc.apps, acc.nbytes))
                    self._queued += len(acc.lines)
                self._write_wake.notify()
            for _, fut in waiting:
                fut.set_result(0)

    # -- writer thread ----------------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            with self._write_wake:
                deadline = None
                while self._queued < self.batch_items and not self._stopping and not self._force:
                    if self._queued:
                        deadline = deadline or time.monotonic() + self.linger_s
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._write_wake.wait(remaining)
                    else:
                        self._write_wake.wait(1.0)
                batch: list[Record] = []
                size = nbytes = 0
                while self._records and size < self.batch_items and nbytes < self.batch_bytes:
                    record = self._records.popleft()
                    batch.append(record)
                    size += record.count
                    nbytes += len(record.blob)
                self._queued -= size
                if not self._records:
                    self._force = False
            if not batch:
                if self._stopping and not any(t.is_alive() for t in self._threads
                                              if t.name == "scorewatch-wal"):
                    return
                continue
            try:
                self._retrying(lambda: self._write(batch), unexpected=True)  # noqa: B023 - called here
            except _Stopped:
                return
            with self._wal_wake:
                self.pending -= size
                self.pending_bytes -= sum(r.reserved for r in batch)

    def _write(self, batch: list[Record]) -> int:
        """Write ``batch`` in one transaction that records its last sequence as applied.

        A transient store failure (a full disk, no memory) pauses the writer until the write goes
        through (admission answers 503 meanwhile). When the store refuses the batch, each record is
        written on its own, and the items the store still refuses go to the quarantine: an item the
        hub acknowledged is stored or quarantined, never dropped.
        """
        batch = [r for r in batch if r.seq > self.applied]  # a retry after an error half-way: not twice
        if not batch:
            return 0
        started = time.perf_counter()
        try:
            self._until_written(batch, batch[-1].seq)
        except StoreRefused as exc:
            log.error("the store refused a batch of %d records (%s); writing them one by one", len(batch), exc)
            for record in batch:
                self._write_isolating(record)
        self.metrics.observe_write(time.perf_counter() - started)
        self.applied = max(self.applied, batch[-1].seq)
        return sum(r.count for r in batch)

    def _until_written(self, parts: list[Record], position: int, *, dry_run: bool = False) -> None:
        """Write ``parts`` (with ``position``), retrying while the store is unavailable; raises
        :class:`StoreRefused`. A single record the store has no memory for during
        ``memory_patience_s`` (a dry run: at once) is refused, then quarantined, so one huge
        request cannot stall ingest for ever."""
        since = time.monotonic()

        def write() -> None:
            try:
                self._write_records(parts, position, dry_run=dry_run)
            except StoreUnavailable as exc:
                if exc.memory and len(parts) <= 1 and (
                        dry_run or time.monotonic() - since > self.memory_patience_s):
                    raise StoreRefused(str(exc)) from None
                raise

        self._retrying(write, resume=not dry_run)

    def _retrying(self, action: Callable[[], object], *, resume: bool = True, unexpected: bool = False) -> None:
        """Run ``action`` until it stops failing for now (the store unavailable, a full disk); in the
        meantime admission answers 503. ``unexpected``: any other error is retried too (logged with
        its traceback once), so the writer never dies with acknowledged items in its hands."""
        delay = self.retry_min_s
        transient: tuple[type[BaseException], ...] = (StoreUnavailable, OSError)
        while True:
            try:
                action()
            except (_Stopped, StoreRefused):
                raise
            except Exception as exc:
                if not (unexpected or isinstance(exc, transient)):
                    raise
                self.metrics.store_unavailable += 1
                if self.unavailable is None:
                    log.error("the store cannot write (%s): ingest answers 503 until it can", exc,
                              exc_info=not isinstance(exc, transient))
                self.unavailable = str(exc) or type(exc).__name__
                if self._stopping:
                    raise _Stopped from None  # the log keeps the records: replayed on the next start
                time.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            if self.unavailable is not None and resume:
                log.warning("the store writes again; ingest resumes")
                self.unavailable = None
            return

    def _write_isolating(self, record: Record) -> None:
        """Write ``record``; the items the store refuses (found by halving, with dry runs) go to
        the quarantine first, then the rest is written with the record's position."""
        try:
            self._until_written([record], record.seq)
            self.applied = max(self.applied, record.seq)
            return
        except StoreRefused as exc:
            refused = self._refused_parts(record, 0, record.count, exc, [self.isolate_budget])
        kept = []
        start = 0
        for first, stop, _error in refused:
            if start < first:
                kept.append(record.slice(start, first))
            start = stop
        if start < record.count:
            kept.append(record.slice(start, record.count))
        try:
            self._until_written(kept, record.seq, dry_run=True)
        except StoreRefused as exc:  # together they are refused after all: keep everything aside
            refused, kept = [(0, record.count, exc)], []
        for first, stop, error in refused:
            self._retrying(lambda: self.quarantine.put(record.slice(first, stop), first, str(error)),  # noqa: B023
                           resume=False)
        self._until_written(kept, record.seq)
        self.applied = max(self.applied, record.seq)
        count = sum(stop - first for first, stop, _ in refused)
        self.metrics.quarantined += count
        log.error("quarantined %d of the %d items of log record %d (%s): the store refused them: %s",
                  count, record.count, record.seq, self.quarantine.dir, refused[0][2])

    def _refused_parts(self, record: Record, start: int, stop: int, error: Exception,
                       budget: list[int]) -> list[tuple[int, int, Exception]]:
        """The item ranges of ``record[start:stop]`` (refused with ``error``) that the store refuses,
        narrowed by halving while ``budget`` (dry runs left) lasts."""
        if stop - start == 1 or budget[0] <= 0:
            return [(start, stop, error)]
        middle = (start + stop) // 2
        out = []
        for first, last in ((start, middle), (middle, stop)):
            budget[0] -= 1
            try:
                self._until_written([record.slice(first, last)], record.seq, dry_run=True)
            except StoreRefused as exc:
                out += self._refused_parts(record, first, last, exc, budget)
        return out or [(start, stop, error)]  # each half alone passes: keep the range together

    def _write_records(self, batch: list[Record], position: int, *, dry_run: bool = False) -> None:
        """Write ``batch`` with ``position``; any failure but :class:`StoreUnavailable` is a
        :class:`StoreRefused` (the records are kept aside rather than lost to a surprise)."""
        try:
            written = self.store.write_envelopes(self._tables(batch) if batch else {}, position=position,
                                                 dry_run=dry_run)
        except (StoreUnavailable, StoreRefused):
            raise
        except Exception as exc:
            raise StoreRefused(f"{type(exc).__name__}: {exc}") from None
        if not dry_run:
            self.metrics.stored += sum(written.values())

    def _tables(self, batch: list[Record]) -> dict[str, pa.Table]:
        """One Arrow table per store table, built with numpy and Arrow kernels (no per-item Python
        work): the records' buffers are viewed, not joined, and copied once, in table order."""
        env = pa.chunked_array([pa.LargeStringArray.from_buffers(r.count, pa.py_buffer(r.offsets),
                                                                 pa.py_buffer(r.blob)) for r in batch],
                               type=pa.large_string())
        codes = np.concatenate([r.codes for r in batch])
        # Applications as dictionary columns: one index per item, one string per application.
        apps: dict[tuple[str, str, str], int] = {}
        parts = []
        for r in batch:
            if r.single_app:
                key = (r.app_ids[0], r.app_names[0], r.ikeys[0]) if r.count else ("", "", "")
                parts.append(np.full(r.count, apps.setdefault(key, len(apps)), dtype=np.int32))
            else:
                parts.append(np.fromiter((apps.setdefault(key, len(apps)) for key in
                                          zip(r.app_ids, r.app_names, r.ikeys, strict=True)),
                                         dtype=np.int32, count=r.count))
        order = np.argsort(codes, kind="stable")  # group items by table, keeping their order
        counts = np.bincount(codes, minlength=len(_TABLES)).tolist()
        app_index = pa.array(np.concatenate(parts)[order])
        columns: dict[str, Any] = {"env": env.take(pa.array(order))}
        for i, name in enumerate(("appId", "appName", "iKey")):
            columns[name] = pa.DictionaryArray.from_arrays(app_index, pa.array([k[i] for k in apps], pa.string()))
        table = pa.table(columns)
        tables, start = {}, 0
        for code, n in enumerate(counts):
            if n:
                tables[_TABLES[code]] = table.slice(start, n)
            start += n
        return tables


class _Stopped(Exception):
    """The hub stops while the store cannot write: what is not written stays in the log."""


_TABLES = list(BASE_TYPES.values())  # Record.codes → table name
