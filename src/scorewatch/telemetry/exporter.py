"""Exporters: where finished batches of envelopes go.

A batch is a list of envelopes already serialized to JSON (``bytes``, one per item): the worker builds
them, the exporter only joins, compresses and sends.

The protocol is OpenTelemetry's: ``export(batch) -> ExportResult``, ``force_flush(timeout_s)``,
``shutdown()``. :class:`AppInsightsExporter` POSTs gzip JSON arrays to ``{IngestionEndpoint}/v2.1/track``
and never loses a batch to a receiver that is down, slow or overloaded: a failed or throttled batch
(or the failed items of a 206) goes to the disk spool, and is replayed, oldest first, once the backoff
(exponential, or the receiver's ``Retry-After``) has passed. :class:`InMemoryExporter` is for tests.

The exporter talks HTTP through ``http.client``, which none of the dependency instrumentations patch,
and additionally runs inside OpenTelemetry's ``suppress_instrumentation`` so its own calls are never
recorded as dependencies of the service.
"""

from __future__ import annotations

import enum
import gzip
import http.client
import os
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
from isal import isal_zlib
from opentelemetry.instrumentation.utils import suppress_instrumentation

from scorewatch.telemetry.metrics import ExporterStats
from scorewatch.telemetry.spool import Spool, SpoolEntry

GZIP_WBITS = 16 + 15  # zlib's convention: a gzip header and trailer around a 32 KiB-window deflate stream

# Status codes Application Insights documents as worth retrying (439: daily quota, retry later).
RETRIABLE = frozenset({401, 403, 408, 429, 439, 500, 502, 503, 504})


class ExportResult(enum.Enum):
    SUCCESS = 0   # delivered (or knowingly rejected by the receiver and counted)
    FAILURE = 1   # not delivered now: kept in the spool for a later attempt


class Exporter(Protocol):
    def export(self, batch: Sequence[bytes]) -> ExportResult: ...
    def force_flush(self, timeout_s: float) -> bool: ...
    def shutdown(self) -> None: ...


class InMemoryExporter:
    """Keeps every exported envelope in ``items`` (tests)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []  # parsed back, for assertions
        self.batches = 0
        self._lock = threading.Lock()

    def export(self, batch: Sequence[bytes]) -> ExportResult:
        with self._lock:
            self.items.extend(orjson.loads(item) for item in batch)
            self.batches += 1
        return ExportResult.SUCCESS

    def force_flush(self, timeout_s: float) -> bool:
        return True

    def shutdown(self) -> None:
        pass


ENCODE_SLICE = 128  # envelopes joined per compressor call


def encode(batch: Sequence[bytes]) -> bytes:
    """A gzip JSON array of already serialized envelopes, the body ``/v2.1/track`` takes.

    ISA-L's gzip is ~15x cheaper than zlib's level 1 for the same format, and this runs for every
    item. The array is fed to it in slices: joining a whole batch first (~350 KB for 512 items, then
    copied again for the brackets) cost more than compressing it, in fresh pages of memory.
    """
    compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, GZIP_WBITS)
    parts = [compressor.compress(b"[")]
    for start in range(0, len(batch), ENCODE_SLICE):
        if start:
            parts.append(compressor.compress(b","))
        parts.append(compressor.compress(b",".join(batch[start:start + ENCODE_SLICE])))
    parts.append(compressor.compress(b"]"))
    parts.append(compressor.flush())
    return b"".join(parts)


def decode(body: bytes) -> list[bytes]:
    """The serialized envelopes of a body made by :func:`encode` (to resend some of them)."""
    return [orjson.dumps(item) for item in orjson.loads(gzip.decompress(body))]


class AppInsightsExporter:
    """Sends envelopes to an Application Insights ingestion endpoint (or the scorewatch hub)."""

    def __init__(self, track_url: str, *, spool: Spool, stats: ExporterStats | None = None,
                 timeout_s: float = 10.0, retry_initial_s: float = 0.5, retry_max_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        split = urlsplit(track_url)
        self.track_url = track_url
        self._https = split.scheme == "https"
        self._host = split.hostname or "localhost"
        self._port = split.port or (443 if self._https else 80)
        self._path = (split.path or "/") + (f"?{split.query}" if split.query else "")
        self.spool = spool
        self.stats = stats or spool.stats
        self.timeout_s = timeout_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.clock = clock
        self._conn: http.client.HTTPConnection | None = None
        self._failures = 0
        self._next_attempt = 0.0
        self._spool_dirty = True     # a previous run may have left batches behind
        self._last_scan = 0.0
        self._lock = threading.Lock()  # one send at a time: the worker, or a flush at shutdown
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    # -- Exporter protocol -------------------------------------------------------------------------
    def export(self, batch: Sequence[bytes]) -> ExportResult:
        if not batch:
            return ExportResult.SUCCESS
        body = encode(batch)
        with self._lock:
            if self.backing_off():
                self.spool.put(body, len(batch))
                self._spool_dirty = True
                return ExportResult.FAILURE
            return self._deliver(body, batch)

    def force_flush(self, timeout_s: float) -> bool:
        """Replay spooled batches until the spool is empty, the receiver fails, or time is up."""
        deadline = self.clock() + timeout_s
        self.retry_due(deadline=deadline, ignore_backoff=True)
        return self.spool.is_empty()

    def shutdown(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def spool_now(self, batch: Sequence[bytes]) -> None:
        """Keep ``batch`` on disk without trying to send it (shutdown past its deadline)."""
        if batch:
            self.spool.put(encode(batch), len(batch))
            self._spool_dirty = True

    # -- retries -----------------------------------------------------------------------------------
    def backing_off(self) -> bool:
        return self.clock() < self._next_attempt

    def retry_due(self, *, deadline: float | None = None, ignore_backoff: bool = False) -> None:
        """Replay spooled batches, oldest first, if the backoff has passed (called by the worker)."""
        now = self.clock()
        if not self._spool_dirty and now - self._last_scan < 5.0:
            return
        if not ignore_backoff and self.backing_off():
            return
        self._last_scan = now
        deadline = deadline if deadline is not None else now + 2 * self.timeout_s
        while self.clock() < deadline:
            entry = self.spool.claim_oldest()
            if entry is None:
                self._spool_dirty = False
                return
            with self._lock:
                self.stats.add("retried", entry.items)
                if self._deliver(entry.read(), None, entry) is ExportResult.FAILURE:
                    return

    def _backoff(self, retry_after: float | None) -> None:
        self._failures += 1
        delay = retry_after if retry_after is not None else min(
            self.retry_max_s, self.retry_initial_s * 2 ** (self._failures - 1))
        self._next_attempt = self.clock() + delay

    # -- delivery ----------------------------------------------------------------------------------
    def _deliver(self, body: bytes, batch: Sequence[bytes] | None,
                 entry: SpoolEntry | None = None) -> ExportResult:
        """Send one body; whatever is not delivered is kept (a replayed ``entry`` stays in place)."""
        try:
            status, retry_after, payload = self._post(body)
        except (OSError, http.client.HTTPException):
            self._drop_connection()
            self._backoff(None)
            self._keep(body, batch, entry)
            return ExportResult.FAILURE
        if status == 200:
            self._failures = 0
            self.stats.add("sent", len(batch) if batch is not None else _count(body, entry))
            self._done(entry)
            return ExportResult.SUCCESS
        if status == 206:
            batch = list(batch) if batch is not None else decode(body)
            retry, rejected = _partial(payload, len(batch))
            self.stats.add("sent", len(batch) - len(retry) - rejected)
            if rejected:
                self.stats.drop("rejected", rejected)
            self._done(entry)
            if not retry:
                self._failures = 0
                return ExportResult.SUCCESS
            self._backoff(retry_after)
            self._keep(encode([batch[i] for i in retry]), [batch[i] for i in retry], None)
            return ExportResult.FAILURE
        if status in RETRIABLE:
            self._backoff(retry_after)
            self._keep(body, batch, entry)
            return ExportResult.FAILURE
        # 400, 404, 413...: the receiver will never take these items; count them and move on.
        self.stats.drop("rejected", len(batch) if batch is not None else _count(body, entry))
        self._done(entry)
        return ExportResult.SUCCESS

    def _keep(self, body: bytes, batch: Sequence[bytes] | None, entry: SpoolEntry | None) -> None:
        if entry is not None:
            self.spool.release(entry)
        else:
            self.spool.put(body, len(batch) if batch is not None else len(decode(body)))
        self._spool_dirty = True

    def _done(self, entry: SpoolEntry | None) -> None:
        if entry is not None:
            self.spool.done(entry)

    def _post(self, body: bytes) -> tuple[int, float | None, bytes]:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip",
                   "Accept": "application/json", "Content-Length": str(len(body))}
        with suppress_instrumentation():
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    conn.request("POST", self._path, body=body, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                    break
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    # A kept-alive connection the receiver closed meanwhile: reconnect once.
                    self._drop_connection()
                    if attempt == 2:
                        raise
        if response.getheader("Connection", "").lower() == "close":
            self._drop_connection()
        return response.status, _retry_after(response.getheader("Retry-After")), payload

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout_s,
                                                         context=ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _after_fork(self) -> None:
        # The parent's socket and lock are not ours to use.
        self._conn = None
        self._lock = threading.Lock()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, min(float(value), 3600.0))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _count(body: bytes, entry: SpoolEntry | None) -> int:
    return entry.items if entry is not None and entry.items else len(decode(body))


def _partial(payload: bytes, count: int) -> tuple[list[int], int]:
    """(indexes worth resending, number rejected for good) from a 206 body."""
    try:
        errors = orjson.loads(payload).get("errors") or []
    except (orjson.JSONDecodeError, AttributeError):
        return list(range(count)), 0
    retry, rejected = [], 0
    for error in errors:
        index = error.get("index") if isinstance(error, dict) else None
        if not isinstance(index, int) or not 0 <= index < count:
            continue
        if error.get("statusCode") in RETRIABLE:
            retry.append(index)
        else:
            rejected += 1
    return retry, rejected


def _after_fork(ref: weakref.ref) -> None:
    obj = ref()
    if obj is not None:
        obj._after_fork()
