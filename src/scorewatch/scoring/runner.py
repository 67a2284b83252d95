"""Where ``run()`` executes: a few dedicated threads fed by a queue, with a deadline per call.

Why not ``run_in_executor`` behind a semaphore: handing each call from the event loop to a pool thread
and back costs two GIL handoffs per request, and the next call cannot start until the loop has come
round to release the semaphore and submit it. Here ``concurrency`` threads pull calls straight off a
queue, so a busy worker runs calls back to back while the loop parses the next requests, and a call
is only ever run by one of ``concurrency`` threads (1 by default: one ``run()`` at a time, as Azure).

A call that passes its deadline is answered with :class:`~scorewatch.errors.Timeout` at once. If it
had not started it is skipped; if it is running, its thread is retired (Python cannot stop a thread: it
finishes the call on its own and then exits) and a fresh thread takes its place, so the worker keeps
serving.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from scorewatch.errors import Timeout

_QUEUED, _RUNNING, _DONE, _ABANDONED = range(4)


class _Call:
    __slots__ = ("fn", "args", "future", "state", "thread", "seconds")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.args = args
        self.future = future
        self.state = _QUEUED
        self.thread: _RunThread | None = None
        self.seconds = 0.0


def _resolve(call: _Call, result: Any, error: BaseException | None) -> None:
    future = call.future
    if future.done():  # already answered 504
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _RunThread(threading.Thread):
    def __init__(self, runner: Runner, number: int) -> None:
        super().__init__(name=f"scorewatch-run-{number}", daemon=True)
        self.runner = runner
        self.retired = False

    def run(self) -> None:
        calls = self.runner.calls
        call_soon = self.runner.loop.call_soon_threadsafe
        while not self.retired:
            call = calls.get()
            if call is None:
                return
            if call.state != _QUEUED:  # abandoned while waiting
                continue
            call.thread = self
            call.state = _RUNNING
            result: Any = None
            error: BaseException | None = None
            started = time.perf_counter()
            try:
                result = call.fn(*call.args)
            except BaseException as exc:  # handed to the awaiting request, never lost
                error = exc
            call.seconds = time.perf_counter() - started
            call.state = _DONE
            try:
                call_soon(_resolve, call, result, error)
            except RuntimeError:  # the event loop is closed: the worker has shut down, nobody waits
                return


class Runner:
    """``concurrency`` threads executing submitted calls in order, each under a deadline."""

    def __init__(self, loop: asyncio.AbstractEventLoop, concurrency: int, timeout_s: float) -> None:
        self.loop = loop
        self.timeout_s = timeout_s
        self.calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self.pending = 0  # calls submitted and not yet answered (event-loop thread only)
        self._started = 0
        self.threads: list[_RunThread] = []
        for _ in range(concurrency):
            self._spawn()

    def _spawn(self) -> None:
        self._started += 1
        thread = _RunThread(self, self._started)
        self.threads.append(thread)
        thread.start()

    async def call(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
        """``fn(*args)`` on a run thread: its result and the seconds it ran. Raises what ``fn`` raised,
        or :class:`Timeout` once the deadline passed."""
        future = self.loop.create_future()
        call = _Call(fn, args, future)
        self.calls.put(call)
        self.pending += 1
        deadline = self.loop.call_later(self.timeout_s, self._expire, call)
        try:
            result = await future
        finally:
            deadline.cancel()
            self.pending -= 1
        return result, call.seconds

    def _expire(self, call: _Call) -> None:
        if call.future.done():
            return
        if call.state == _RUNNING and call.thread is not None:
            call.thread.retired = True
            self.threads.remove(call.thread)
            self._spawn()
        call.state = _ABANDONED
        call.future.set_exception(Timeout(f"run() did not finish within {round(self.timeout_s * 1000)} ms "
                                          "(SCORING_TIMEOUT_MS)"))

    def close(self) -> None:
        """Let every thread finish its current call and exit."""
        for _ in self.threads:
            self.calls.put(None)
