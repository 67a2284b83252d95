"""What records telemetry on the request path of a scoring worker.

:class:`Recorder` is every producer: the finished request (with its model data), each write to
stdout/stderr and each ``print()``, log records, exceptions, outgoing calls, and the public API's
events and metrics. The common items, a request and a printed line, become one row each (see
:mod:`scorewatch.telemetry.rows`), appended to the processor's row list: that is all the request
path pays. The rarer ones are queued as records and built into envelopes on the telemetry thread
(:mod:`scorewatch.telemetry.builder`).

The Python code here is the reference: plain, and the path of every call the C fast paths leave to
it. When the ``_worker`` extension is usable (:mod:`scorewatch.telemetry.native`), the common
request and the common ``print()`` are recorded in C, making the same rows
(``tests/telemetry/test_worker_native.py`` compares them case by case).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Mapping
from threading import get_ident
from typing import Any

from scorewatch.telemetry import rows
from scorewatch.telemetry.blobs import Payloads
from scorewatch.telemetry.context import Operation, current_operation
from scorewatch.telemetry.native import worker_module
from scorewatch.telemetry.processor import BatchProcessor
from scorewatch.telemetry.rows import Text

_RECORDED = "__scorewatch_recorded__"  # set on an exception once its record is made
URLS_KEPT = 64  # distinct (path, server, scheme) whose URL is kept: a handful per worker


class State:
    """The switches the request path reads on every call: set at start and by ``/control/telemetry``
    (their names are part of the row protocol: the C fast paths read them, see ``rows.StateAttributes``)."""

    __slots__ = ("capturing", "model_data", "sampling")

    def __init__(self, capturing: bool = True, model_data: bool = True, sampling: float = 100.0) -> None:
        self.capturing = capturing
        self.model_data = model_data
        self.sampling = sampling

    def keep(self, operation: Operation | None) -> bool:
        """Sampling by operation id, so a request and everything inside it are kept or dropped together."""
        if self.sampling >= 100.0 or operation is None:
            return True
        try:
            return int(operation.operation_id[:8], 16) < self.sampling * 42949672.96  # 2**32 / 100
        except ValueError:
            return True


class Recorder:
    """The producers of one worker's telemetry, recording into ``processor`` (see the module docstring)."""

    def __init__(self, processor: BatchProcessor, state: State, payloads: Payloads,
                 base_properties: Mapping[str, str], *, native: bool = True) -> None:
        self.processor = processor
        self.state = state
        self.payloads = payloads
        self.base_properties = dict(base_properties)
        self._urls: dict[tuple[Any, ...], str] = {}  # (path, server, scheme) -> the URL without its query
        # Per stream: thread id -> the row of a text written there, held while its newline may follow.
        self._held: dict[str, dict[int, tuple[Any, ...]]] = {rows.STDOUT: {}, rows.STDERR: {}}
        self.echoing: set[int] = set()  # threads echoing a log record to the console (see capture.py)
        self._worker = worker_module(native)
        # Monitor.request_finished: the common request in C when it can, this Python method otherwise.
        self.request_finished: Callable[..., None] = self.record_request if self._worker is None else \
            self._worker.Recorder(self.record_request, processor.rows, state, processor, self._urls,
                                  payloads.limit)

    @property
    def native(self) -> bool:
        """Whether the common request and print() are recorded in C (``_worker``)."""
        return self._worker is not None

    @property
    def capturing(self) -> bool:
        return self.state.capturing

    # -- requests ------------------------------------------------------------------------------------
    def record_request(self, operation: Operation, scope: Mapping[str, Any], start_ts: float, duration_ms: float,
                       status_code: int, input: bytes | str, output: bytes | bytearray | memoryview | str | None,
                       exception: BaseException | None = None) -> None:
        """The facts of one finished call to /score (``Monitor.request_finished``), recorded: its
        exception (unless recorded already), and its row, with its model data unless that is off."""
        state = self.state
        if not state.capturing:
            return
        success = status_code < 400
        if exception is not None and not getattr(exception, _RECORDED, False):
            self.processor.emit((rows.RECORD_EXCEPTION, 0, time.time(), exception, operation, "run",
                                 {**self.base_properties, "Request Id": operation.request_id,
                                  "Client Request Id": operation.client_request_id}))
        if success and not state.keep(operation):  # failures are always kept
            return
        size = 0
        if state.model_data:
            if isinstance(output, bytearray | memoryview):
                output = bytes(output)  # from run(): rows hold plain values
            size = len(input) + (len(output) if output is not None else 0)
        row = rows.make_request(
            start=start_ts, operation_id=operation.operation_id, span_id=operation.parent_id,
            caller=operation.extra.get(rows.OperationAttributes.EXTRA_PARENT_SPAN_ID), name=operation.name,
            url=self.url(scope), duration_ms=duration_ms, status=status_code, success=success,
            request_id=operation.request_id, client_request_id=operation.client_request_id,
            input=input if state.model_data else None, prediction=output if state.model_data else None,
            sample_rate=state.sampling if success else 100.0, model_data=state.model_data)
        if self.payloads.fits(size):
            self.processor.add(row)
        else:  # its payloads move to blobs on the telemetry thread, bounded in bytes meanwhile
            self.processor.emit((rows.RECORD_LARGE, size, row))

    def url(self, scope: Mapping[str, Any]) -> str:
        """The URL of a request, from its ASGI scope."""
        key = (scope["path"], scope.get("server"), scope.get("scheme"))
        url = self._urls.get(key)
        if url is None:
            host, port = key[1] or ("127.0.0.1", 80)
            url = f"{key[2] or 'http'}://{host}:{port}{key[0]}"
            if len(self._urls) < URLS_KEPT:
                self._urls[key] = url
        query = scope.get("query_string")
        return f"{url}?{query.decode('latin-1')}" if query else url

    def exception(self, exc: BaseException, *, during: str) -> None:
        if not self.state.capturing:
            return
        operation = current_operation.get()
        if operation is None and during == "run":
            return  # record_request records it with its request's operation
        with contextlib.suppress(AttributeError, TypeError):
            setattr(exc, _RECORDED, True)
        self.processor.emit((rows.RECORD_EXCEPTION, 0, time.time(), exc, operation, during, {}))

    # -- stdout and stderr (see capture.py) ----------------------------------------------------------
    def _text_row(self, kind: str, stream: str, text: str, thread: int) -> tuple[Any, ...] | None:
        """The row of a text written now, for the current operation; None when sampled out."""
        operation = current_operation.get()
        if operation is None:
            return rows.make_text(kind, time=time.time(), stream=stream, text=text, thread=thread, operation_id=None,
                                  parent_id="", operation_name="", sample_rate=self.state.sampling)
        if not self.state.keep(operation):
            return None
        return rows.make_text(kind, time=time.time(), stream=stream, text=text, thread=thread,
                              operation_id=operation.operation_id, parent_id=operation.parent_id,
                              operation_name=operation.name, sample_rate=self.state.sampling)

    def writer(self, stream: str, write_through: Callable[[str], int]) -> Callable[[str], int]:
        """The ``write`` of the ``sys.stdout``/``sys.stderr`` proxy: records ``text``, then writes it
        through. ``print()`` writes a text, then its newline: the text is held (one per thread) until
        the next write of its thread, and its newline makes it a LINE row; anything else ships it
        as a CHUNK, which the templates put together with what follows into lines."""
        held = self._held[stream]
        echoing = self.echoing

        def write(text: str) -> int:
            # What logging's own handlers write is the console echo of a record the log row holds.
            if text and self.state.capturing and get_ident() not in echoing:
                self._record_write(stream, held, text)
            return write_through(text)

        return write

    def _record_write(self, stream: str, held: dict[int, tuple[Any, ...]], text: str) -> None:
        thread = get_ident()
        earlier = held.pop(thread, None)
        if text == "\n":
            self.processor.add(earlier if earlier is not None else rows.make_newline(stream, thread))
            return
        if earlier is not None:  # text after text: the earlier one is a chunk of a longer line
            self.processor.add(rows.as_chunk(earlier))
        inline = len(text) <= self.payloads.inline_chars
        kind = Text.LINE if inline and not text.endswith("\n") else Text.CHUNK
        row = self._text_row(kind, stream, text, thread)
        if row is None:
            return
        if kind == Text.LINE:
            held[thread] = row
        elif inline:
            self.processor.add(row)
        else:  # may go to a blob: bounded in bytes on its way
            self.processor.emit((rows.RECORD_LARGE, len(text), row))

    def printer(self, stdout: Any, write_through: Callable[[str], int],
                builtin: Callable[..., None]) -> Callable[..., None]:
        """The ``print`` installed while capturing (see capture.py). Its common call, values and
        nothing else to the proxy ``stdout``, makes the LINE row of its line and writes the line
        through once, where the builtin calls the proxy's ``write`` twice (the text, then the
        newline). Any other call (``sep``, ``end``, ``file``, ``flush``, ``sys.stdout`` replaced, a
        line that is long or ends its own line) is the builtin's, through the proxy, as before."""
        held = self._held[rows.STDOUT]

        def print(*values: Any, sep: str | None = None, end: str | None = None, file: Any = None,
                  flush: bool = False) -> None:
            if not values or sep is not None or end is not None or file is not None or flush \
                    or sys.stdout is not stdout:
                return builtin(*values, sep=sep, end=end, file=file, flush=flush)
            text = " ".join(map(str, values))
            if not self.state.capturing or not text or len(text) > self.payloads.inline_chars or text.endswith("\n"):
                stdout.write(text)  # what the builtin writes, str() already taken
                stdout.write("\n")
                return None
            thread = get_ident()
            earlier = held.pop(thread, None)
            if earlier is not None:  # a text written before on this thread: this line continues it
                self.processor.add(rows.as_chunk(earlier))
            row = self._text_row(Text.LINE, rows.STDOUT, text, thread)
            if row is not None:
                self.processor.add(row)
            write_through(text + "\n")
            return None

        if self._worker is None:
            return print
        # The same print, in C for its common call (one str, capturing, no sampling), this one for the rest.
        return self._worker.Printer(print, stdout, write_through, self.processor.rows, held, self.state,
                                    self.processor, current_operation, self.payloads.inline_chars)

    # -- logging, outgoing calls, the public API, the azureml collectors -----------------------------
    def log(self, record: Any) -> None:
        operation = current_operation.get()
        if not self.state.keep(operation):
            return
        props = {"loggerName": record.name, "fileName": record.pathname, "lineNumber": str(record.lineno),
                 "module": record.module, "functionName": record.funcName, "level": record.levelname}
        self.processor.emit((rows.RECORD_LOG, 0, record.created, record.getMessage(), record.levelno, props,
                             operation, self.state.sampling))
        if record.exc_info and record.exc_info[1] is not None:
            self.processor.emit((rows.RECORD_EXCEPTION, 0, record.created, record.exc_info[1], operation, "log",
                                 {"loggerName": record.name}))

    def span(self, span: Any, operation: Operation | None) -> None:
        if self.state.capturing and self.state.keep(operation):
            self.processor.emit((rows.RECORD_SPAN, 0, span, operation, self.state.sampling))

    def dependency(self, fields: dict[str, Any]) -> None:
        operation = current_operation.get()
        if self.state.capturing and self.state.keep(operation):
            self.processor.emit((rows.RECORD_DEPENDENCY, 0, fields, operation, self.state.sampling))

    def event(self, name: str, properties: Mapping[str, Any], measurements: Mapping[str, float]) -> None:
        if self.state.capturing:
            self.processor.emit((rows.RECORD_EVENT, 0, time.time(), name, properties, measurements,
                                 current_operation.get()))

    def metric(self, name: str, value: float, properties: Mapping[str, Any]) -> None:
        if self.state.capturing:
            self.processor.emit((rows.RECORD_METRIC, 0, time.time(), name, value, properties,
                                 current_operation.get()))

    def trace(self, message: str, properties: Mapping[str, Any], size: int = 0) -> None:
        """A custom trace (the azureml collectors): ``properties`` are added to the service's own."""
        if self.state.capturing:
            self.processor.emit((rows.RECORD_TRACE, 0 if self.payloads.fits(size) else size, time.time(), message,
                                 properties, current_operation.get()))
