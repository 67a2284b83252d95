"""The exporter process: builds, compresses and sends telemetry outside the scoring worker.

A scoring worker is one Python process whose event loop needs the GIL for every request. Building
envelopes, gzip and HTTP on a thread of that same process compete with it for the GIL, so each
worker starts one helper process (``python -m scorewatch.telemetry.sidecar``) and its telemetry
thread only ships rows to it over the helper's stdin, as length-prefixed frames: a ``marshal`` frame
of rows as the worker packed it (see ``templates.py``), written as it is with ``os.writev`` (no copy,
no pickling), or a pickled message for anything else (ready envelopes, flush, close).

The helper builds the envelopes (:class:`~scorewatch.telemetry.templates.Templates`) and sends them
with :class:`~scorewatch.telemetry.exporter.AppInsightsExporter` (retries, 206, spool), and writes
its counters to a small JSON file the worker's ``/metrics`` reads. It ignores SIGINT/SIGTERM: it ends
when its stdin closes (the worker shut down, or died), after sending or spooling what it holds, so
nothing it accepted is lost with the worker.

:class:`SidecarExporter` is the worker's side: an :class:`~scorewatch.telemetry.exporter.Exporter`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import marshal
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from scorewatch.errors import ConfigError
from scorewatch.telemetry.exporter import AppInsightsExporter, ExportResult, encode
from scorewatch.telemetry.metrics import ExporterStats
from scorewatch.telemetry.rows import (
    FLUSHED,
    FRAME,
    MESSAGE_CLOSE,
    MESSAGE_DATA,
    MESSAGE_FLUSH,
    MESSAGE_INTERVAL,
    MESSAGE_ROWS,
    PIPE_MESSAGE,
    PIPE_ROWS,
)
from scorewatch.telemetry.spool import Spool
from scorewatch.telemetry.templates import Templates

log = logging.getLogger("scorewatch.telemetry")

ENV_VAR = "SCOREWATCH_SIDECAR"
NICENESS = 10
_HEADER = struct.Struct("!cI")  # kind (PIPE_ROWS or PIPE_MESSAGE), payload length: see rows.py
GULP_S = 0.02
PIPE_BYTES = 1 << 20  # ~0.4 s of rows of a worker at 10k requests/s
IOV_MAX = 512  # buffers per writev (Linux takes up to 1024)
COURTESY_S = 0.0001


def parse_cpus(text: str) -> list[int]:
    """A Linux CPU list (``"3"``, ``"2-3"``, ``"0,2-3"``) as the CPUs it names, each one this process
    may use; ``""`` is none (no affinity asked). Raises :class:`ConfigError` saying what is wrong."""
    text = text.strip()
    if not text:
        return []
    if not hasattr(os, "sched_setaffinity"):
        raise ConfigError("exporter_cpus needs Linux (sched_setaffinity)")
    available = os.sched_getaffinity(0)
    cpus: set[int] = set()
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and (not high.isdigit() or int(high) < int(low))):
            raise ConfigError(f"exporter_cpus={text!r} is not a CPU list such as '3', '2-3' or '0,2-3'")
        first, last = int(low), int(high or low)
        if last > max(available):  # before the range is made: '0-999999999' must not build a huge set
            raise ConfigError(f"exporter_cpus={text!r} names CPUs this process cannot use: up to {last} "
                              f"(available: {sorted(available)})")
        cpus.update(range(first, last + 1))
    unavailable = sorted(cpus - available)
    if unavailable:
        raise ConfigError(f"exporter_cpus={text!r} names CPUs this process cannot use: {unavailable} "
                          f"(available: {sorted(available)})")
    return sorted(cpus)


class Courtesy:
    """Gives the CPU away (``sched_yield``) after every ``every_s`` of work.

    Niceness alone does not keep this process out of the scoring worker's way: a task that wakes
    after sleeping gets a protected time slice from the kernel's scheduler (EEVDF's run-to-parity),
    and a worker (or a client on the same core) woken meanwhile waits for the slice to end. This
    process wakes every ``GULP_S`` and then builds envelopes for a few ms, so that wait showed up as
    +2 ms on the service's p99 and as idle time of its worker (seen with ``perf sched timehist``).
    Yielding every 0.1 ms of work ends the slice early when someone waits; when nobody does, the
    yield returns at once (about a microsecond).
    """

    def __init__(self, every_s: float = COURTESY_S, clock: Callable[[], float] = time.perf_counter) -> None:
        self.every_s = every_s
        self.clock = clock
        self._last = clock()

    def __call__(self) -> None:
        if self.clock() - self._last >= self.every_s:
            os.sched_yield()
            self._last = self.clock()


class SidecarExporter:
    """Ships batches to the exporter process; restarts it if it died."""

    def __init__(self, config: dict[str, Any], stats: ExporterStats, *, spool: Spool | None = None,
                 templates: Templates | None = None) -> None:
        self.config = config
        self.stats = stats
        self.spool = spool            # for spool_now: what is left when the helper cannot take it in time
        self.templates = templates
        self.stats_path = Path(config["stats_path"])
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._flush_token = 0
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_after_fork(ref))
        self._start()

    def _start(self) -> None:
        env = {**os.environ, ENV_VAR: orjson.dumps(self.config).decode()}
        # cwd: the workspace, not the entry script's folder, whose modules could shadow ours under -m.
        self._proc = subprocess.Popen([sys.executable, "-m", "scorewatch.telemetry.sidecar"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env, start_new_session=True, bufsize=0,
                                      cwd=Path(self.config["spool_dir"]).parent)
        with contextlib.suppress(OSError, AttributeError):  # Linux only: a pipe of PIPE_BYTES, not 64 KiB
            fcntl.fcntl(self._proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # type: ignore[union-attr]

    def _send(self, message: tuple[Any, ...], timeout_s: float = -1) -> bool:
        return self._write(_frames(message), timeout_s)

    def _write(self, buffers: list[bytes], timeout_s: float = -1) -> bool:
        if not self._lock.acquire(timeout=timeout_s):  # another thread is stuck writing to a busy helper
            return False
        try:
            for attempt in (1, 2):
                proc = self._proc
                if proc is None or proc.poll() is not None:
                    if attempt == 2:
                        return False
                    if proc is not None:
                        _close_pipes(proc)
                    self._start()
                    continue
                assert proc.stdin is not None
                try:
                    _write_all(proc.stdin.fileno(), buffers)  # blocks when the helper is behind
                    return True
                except (BrokenPipeError, OSError, ValueError):  # ValueError: closed by shutdown()
                    _close_pipes(proc)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(0.5)  # reap it if it died; a live one is left to finish on its own
                    self._proc = None
        finally:
            self._lock.release()
        return False

    def spool_now(self, batch: Sequence[Any]) -> None:
        """Keep rows the helper could not take before the shutdown deadline: as envelopes in the spool."""
        if self.spool is None or self.templates is None or not batch:
            self.stats.drop("shutdown", len(batch))
            return
        envelopes = [envelope for item in batch for envelope in self.templates.build(item)]
        self.spool.put(encode(envelopes), len(envelopes))

    def export(self, batch: Sequence[Any]) -> ExportResult:
        # A frame item (FRAME, frame, count) holds ``count`` rows; other items are ready envelopes.
        buffers: list[bytes] = []
        envelopes: list[Any] = []
        count = 0
        for item in batch:
            if item.__class__ is tuple and item[0] == FRAME:
                buffers += (_HEADER.pack(PIPE_ROWS, len(item[1])), item[1])
                count += item[2]
            else:
                envelopes.append(item)
                count += 1
        if envelopes:
            buffers += _frames((MESSAGE_DATA, envelopes))
        if self._write(buffers):
            self.stats.add("shipped", count)
            return ExportResult.SUCCESS
        self.stats.drop("exporter_down", count)
        return ExportResult.FAILURE

    def force_flush(self, timeout_s: float) -> bool:
        """Make the helper send everything it holds; True when it confirmed within ``timeout_s``."""
        self._flush_token += 1
        token = self._flush_token
        if not self._send((MESSAGE_FLUSH, token, timeout_s)):
            return False
        proc = self._proc
        if proc is None or proc.stdout is None:
            return False
        deadline = time.monotonic() + timeout_s
        fd = proc.stdout.fileno()
        buffer = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                return False
            buffer += chunk
            if FLUSHED.format(token).encode() in buffer:
                return True
        return False

    def set_interval(self, interval_s: float) -> bool:
        """Make the helper send partial batches at least every ``interval_s`` (live mode); True when told."""
        self.config["interval_s"] = interval_s  # a restarted helper starts with it too
        return self._send((MESSAGE_INTERVAL, interval_s))

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Close the helper's stdin and wait (up to ``timeout_s``) for it to send or spool and exit."""
        deadline = time.monotonic() + timeout_s
        sent = self._send((MESSAGE_CLOSE, timeout_s), timeout_s=timeout_s / 2)
        timeout_s = max(0.1, deadline - time.monotonic())
        proc = self._proc
        if proc is None:
            return
        if sent:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
        # else: a write to the helper is blocked (it is far behind): closing would block too. The pipe
        # closes when this process exits, and the helper then sends what it holds and ends.
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("telemetry exporter process still busy after %.1fs; it finishes on its own", timeout_s)
        if proc.stdout is not None:
            proc.stdout.close()

    def remote_stats(self) -> dict[str, Any]:
        try:
            return orjson.loads(self.stats_path.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return {}


def _frames(message: tuple[Any, ...]) -> list[bytes]:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return [_HEADER.pack(PIPE_MESSAGE, len(payload)), payload]


def _write_all(fd: int, buffers: list[bytes]) -> None:
    """Write ``buffers`` in order, whole: one ``writev`` for all of them when the pipe takes it."""
    while buffers:
        written = os.writev(fd, buffers[:IOV_MAX])
        while buffers and written >= len(buffers[0]):
            written -= len(buffers[0])
            buffers = buffers[1:]
        if written:
            buffers = [buffers[0][written:], *buffers[1:]]


def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _forget_after_fork(ref: weakref.ref) -> None:
    exporter = ref()
    if exporter is not None:  # the parent's helper and pipe are the parent's: start our own on demand
        exporter._proc = None
        exporter._lock = threading.Lock()


# -- the helper process ---------------------------------------------------------------------------------
def main() -> None:
    # Background work: under CPU pressure the scheduler should favour the workers answering requests.
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    config = orjson.loads(os.environ[ENV_VAR])
    if config.get("cpus"):  # an operator's choice (exporter_cpus), checked by the worker already
        try:
            os.sched_setaffinity(0, config["cpus"])
        except OSError as exc:
            log.warning("exporter process: could not keep to CPUs %s: %s", config["cpus"], exc)
    stats = ExporterStats()
    spool = Spool(config["spool_dir"], config["spool_max_bytes"], stats)
    exporter = AppInsightsExporter(config["track_url"], spool=spool, stats=stats,
                                   retry_max_s=config["retry_max_s"])
    templates = Templates.from_config(config["templates"])
    batch_size = config["batch_size"]
    interval = config["interval_s"]
    stats_path = Path(config["stats_path"])
    pending: list[bytes] = []
    stdin = sys.stdin.buffer.raw  # type: ignore[union-attr]
    out = sys.stdout.buffer
    stats.queue_depth = lambda: len(pending)

    pause = Courtesy()

    def send_all(full_only: bool = False) -> None:
        """Send what is pending in batches of ``batch_size``; with ``full_only``, only full ones."""
        while len(pending) >= (batch_size if full_only else 1):
            chunk = pending[:batch_size]
            del pending[:batch_size]
            pause()
            exporter.export(chunk)

    last_written = [b""]

    def write_stats() -> None:
        data = orjson.dumps(stats.snapshot())
        if data == last_written[0]:  # idle: no disk writes
            return
        tmp = stats_path.with_name(stats_path.name + ".tmp")
        with contextlib.suppress(OSError):
            tmp.write_bytes(data)
            os.replace(tmp, stats_path)
            last_written[0] = data

    reader = _FrameReader(stdin)
    next_send = time.monotonic() + interval
    next_stats = 0.0
    while True:
        now = time.monotonic()
        ready, _, _ = select.select([stdin], [], [], max(0.0, min(next_send, next_stats + 0.5) - now))
        if ready:
            # Take a steady stream in a few large gulps rather than waking for every frame: each wake-up
            # is CPU the scoring worker (and the machine) does not get. The pipe holds PIPE_BYTES meanwhile.
            time.sleep(GULP_S)
            messages = reader.read()
            if messages is None:  # stdin closed: the worker is gone or shutting down
                break
            for message in messages:
                if message[0] == MESSAGE_ROWS or message[0] == MESSAGE_DATA:
                    before = len(pending)
                    if message[0] == MESSAGE_ROWS:
                        pending.extend(templates.rows(message[1], pause, on_error=lambda: stats.drop("invalid")))
                    else:  # envelopes the worker built (the rarer kinds)
                        pending.extend(message[1])
                    stats.add("queued", len(pending) - before)
                    send_all(full_only=True)
                elif message[0] == MESSAGE_FLUSH:
                    send_all()
                    exporter.force_flush(message[2])
                    write_stats()
                    out.write(FLUSHED.format(message[1]).encode())
                    out.flush()
                elif message[0] == MESSAGE_CLOSE:
                    exporter.timeout_s = max(0.2, min(exporter.timeout_s, message[1] / 3))
                elif message[0] == MESSAGE_INTERVAL:
                    interval = message[1]
                    next_send = min(next_send, time.monotonic() + interval)
        now = time.monotonic()
        if now >= next_send:
            send_all()
            next_send = now + interval
        exporter.retry_due()  # cheap unless the spool holds batches and their backoff has passed
        if now >= next_stats + 0.5:
            write_stats()
            next_stats = now
    send_all()
    exporter.shutdown()
    write_stats()


class _FrameReader:
    """Frames from a pipe (see the module docstring), reading whatever is available into one buffer.

    Row frames are unmarshalled straight from the buffer, pickled messages unpickled; the buffer is
    compacted once per read, not once per frame."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.chunk = bytearray(1 << 20)

    def read(self) -> list[tuple[Any, ...]] | None:
        n = self.stream.readinto(self.chunk)
        if not n:
            return None
        buffer = self.buffer
        buffer += memoryview(self.chunk)[:n]
        messages: list[tuple[Any, ...]] = []
        offset, end = 0, len(buffer)
        with memoryview(buffer) as view:
            while end - offset >= _HEADER.size:
                kind, size = _HEADER.unpack_from(buffer, offset)
                start = offset + _HEADER.size
                if end - start < size:
                    break
                with view[start:start + size] as payload:
                    if kind == PIPE_ROWS:
                        messages.append((MESSAGE_ROWS, marshal.loads(payload)))
                    else:
                        messages.append(pickle.loads(payload))  # noqa: S301 - our own worker is the only writer
                offset = start + size
        del buffer[:offset]
        return messages


if __name__ == "__main__":
    main()
