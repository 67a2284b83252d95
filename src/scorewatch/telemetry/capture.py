"""Capture of what an entry script prints and logs.

``sys.stdout`` and ``sys.stderr`` are replaced by :class:`StreamCapture` proxies that still write
everything through to the real stream, and hand each write to the sink as ``STDOUT`` / ``STDERR``
(the sink only queues it: ``print`` writes the text and the newline separately, and lines are put
together per thread off the request path, in ``telemetry/templates.py``). A proxy's ``write`` is a
function the sink makes for that stream (:meth:`Sink.writer`), set on the instance: ``print`` calls it
directly, one Python call per write, and it does both the recording and the write-through. While
installed, ``builtins.print`` is the sink's too (:meth:`Sink.printer`): a plain ``print(value)`` to
``sys.stdout``, what entry scripts do on every request, is then one Python call instead of two writes.
:class:`LogCapture` hands every log record to the sink with its level, logger name, file and line.
It is called by a hook on ``logging.Logger.callHandlers``, not installed as a root handler: logging
then behaves as it does without monitoring (the script's ``basicConfig`` takes effect, and an
unconfigured script's warnings still reach the console through logging's last resort), and the
console echo of a record is not recorded a second time as a ``STDERR`` line (``Sink.echoing``). The
sink reads the current operation, so every line carries the ``operation_Id`` of the request it was
printed for.
"""

from __future__ import annotations

import builtins
import logging
import sys
from collections.abc import Callable
from threading import get_ident
from typing import Any, Protocol, TextIO

from scorewatch.telemetry.rows import STDERR, STDOUT

# Our own and the server's loggers are not the entry script's output (and recording them could loop).
EXCLUDED_LOGGERS = ("scorewatch", "uvicorn", "opentelemetry", "starlette", "asyncio")


class Sink(Protocol):
    @property
    def capturing(self) -> bool: ...

    echoing: set[int]  # threads inside logging's own handlers: what they write is a record's echo

    def writer(self, stream: str, write_through: Callable[[str], int]) -> Callable[[str], int]:
        """The ``write`` of a proxy for ``stream`` (``STDOUT``/``STDERR``): records ``text`` when
        capturing, and returns ``write_through(text)``."""
        ...

    def printer(self, stdout: Any, write_through: Callable[[str], int],
                builtin: Callable[..., None]) -> Callable[..., None]:
        """A ``print`` for while ``stdout`` (the proxy of ``sys.stdout``) is installed: records and
        writes through what the builtin would; may hand any call to ``builtin``."""
        ...

    def log(self, record: logging.LogRecord) -> None: ...


class StreamCapture:
    """A text stream proxy: writes through, and hands each write to the sink (see the module docstring)."""

    def __init__(self, stream: TextIO, name: str, sink: Sink) -> None:
        self._stream = stream
        self._name = name
        self._sink = sink
        self.write = sink.writer(name, stream.write)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        # fileno, flush, isatty, encoding, buffer...: the real stream's.
        return getattr(self._stream, name)

    @property
    def wrapped(self) -> TextIO:
        return self._stream


class LogCapture(logging.Handler):
    """Records the entry script's log records (not scorewatch's or the server's); see :class:`Capture`."""

    def __init__(self, sink: Sink) -> None:
        super().__init__(logging.NOTSET)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if not self._sink.capturing or record.name.startswith(EXCLUDED_LOGGERS):
            return
        try:
            self._sink.log(record)
        except Exception:
            self.handleError(record)


class Capture:
    """Installs and removes the stdout/stderr proxies and the logging handler for one sink."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.handler = LogCapture(sink)
        self._installed = False
        self._call_handlers: Callable[[logging.Logger, logging.LogRecord], None] | None = None
        self._print: Callable[..., None] | None = None
        self._builtin_print: Callable[..., None] = builtins.print

    def install(self) -> None:
        if self._installed:
            return
        if not isinstance(sys.stdout, StreamCapture):
            sys.stdout = StreamCapture(sys.stdout, STDOUT, self.sink)  # type: ignore[assignment]
        if not isinstance(sys.stderr, StreamCapture):
            sys.stderr = StreamCapture(sys.stderr, STDERR, self.sink)  # type: ignore[assignment]
        stdout = sys.stdout
        if isinstance(stdout, StreamCapture) and stdout._sink is self.sink:
            self._builtin_print = builtins.print
            self._print = self.sink.printer(stdout, stdout.wrapped.write, self._builtin_print)
            builtins.print = self._print
        self._call_handlers = original = logging.Logger.callHandlers
        handle, echoing = self.handler.handle, self.sink.echoing

        def call_handlers(logger: logging.Logger, record: logging.LogRecord) -> None:
            handle(record)  # recorded once, then logging's own handlers (or its last resort) as ever
            tid = get_ident()
            echoing.add(tid)
            try:
                original(logger, record)
            finally:
                echoing.discard(tid)

        logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign,assignment]
        self._installed = True

    def uninstall(self) -> None:
        if not self._installed:
            return
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, StreamCapture) and stream._sink is self.sink:
                setattr(sys, name, stream.wrapped)
        if self._print is not None and builtins.print is self._print:
            builtins.print = self._builtin_print
        self._print = None
        if self._call_handlers is not None:
            logging.Logger.callHandlers = self._call_handlers  # type: ignore[method-assign,assignment]
            self._call_handlers = None
        self._installed = False
