"""The worker's C fast paths (``_worker.c``) against their Python references: the same rows, the same text.

Each case runs once through the Python reference (:class:`~scorewatch.telemetry.recorder.Recorder`
without the extension) and once through the C object, from the same state; the C object's fallback is
the reference behind a spy, so each case also says which way it went. These tests run both paths
themselves, so they run once (not once per mode of the conftest).
"""

from __future__ import annotations

import builtins
import dataclasses
import sys
import time
from threading import get_ident
from typing import Any

import pytest

from scorewatch.telemetry.blobs import BlobStore, Payloads
from scorewatch.telemetry.context import current_operation
from scorewatch.telemetry.exporter import InMemoryExporter
from scorewatch.telemetry.monitor import create_monitor
from scorewatch.telemetry.native import worker_module
from scorewatch.telemetry.recorder import Recorder, State
from scorewatch.telemetry.rows import Request, Text
from tests.telemetry.conftest import require_extensions
from tests.telemetry.test_monitor import INFO, new_op, scored, serve, settings  # noqa: F401

_worker = worker_module()


@pytest.fixture(autouse=True)
def native() -> bool:  # this module compares the two paths itself
    require_extensions()
    return True


class Rows:
    """What the request path uses of a BatchProcessor, keeping what it is given (no thread takes the rows)."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.row_limit = 1000
        self.emitted: list[Any] = []
        self.refusals = 0

    def add(self, row: tuple[Any, ...]) -> bool:
        if len(self.rows) >= self.row_limit:
            self.refused()
            return False
        self.rows.append(row)
        return True

    def refused(self) -> None:
        self.refusals += 1

    def emit(self, record: Any) -> None:
        self.emitted.append(record)


class Stream:
    def __init__(self) -> None:
        self.written: list[str] = []

    def write(self, text: str) -> int:
        self.written.append(text)
        return len(text)

    def flush(self) -> None:
        pass


class Spy:
    """A fallback that counts its calls and hands them on."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.target(*args, **kwargs)


class StrSubclass(str):
    pass


@pytest.fixture
def recorder(tmp_path):
    """The Python reference (native=False), over rows no thread takes."""
    return Recorder(Rows(), State(), Payloads(1024, BlobStore(tmp_path)), {"Service Name": "svc"},  # type: ignore[arg-type]
                    native=False)


def outcome(recorder, stream, started):
    """What a call left behind, times checked and taken out (they differ by the clock only)."""
    rows = []
    for row in recorder.processor.rows:
        assert started <= row[1] <= time.time()
        rows.append((row[0], None, *row[2:]))
    return (rows, recorder.processor.emitted, recorder.processor.refusals, stream.written,
            dict(recorder._held["STDOUT"]))


def reset(recorder, stream):
    recorder.processor.rows.clear()
    recorder.processor.emitted.clear()
    recorder.processor.refusals = 0
    recorder._held["STDOUT"].clear()
    stream.written.clear()


def printer(recorder, fallback, stream):
    """A Printer over the recorder's rows, as Recorder.printer makes it, with ``fallback`` for Python's calls."""
    return _worker.Printer(fallback, stream, stream.write, recorder.processor.rows, recorder._held["STDOUT"],
                           recorder.state, recorder.processor, current_operation, recorder.payloads.inline_chars)


SAMPLED_IN, SAMPLED_OUT = "00000000" + "a" * 24, "ffffffff" + "a" * 24

# (case, print arguments, keyword arguments, state, whether C takes it)
PRINTS = [
    ("common", ("scored 2 rows",), {}, {}, True),
    ("non-ASCII", ("é ☃ \u2028 😀 \"q\"",), {}, {}, True),
    ("no operation", ("hello",), {}, {"operation": None}, True),
    ("traced caller", ("hello",), {}, {"extra": {"parent_span_id": "b" * 16}}, True),
    ("several values", ("a", 1, None), {}, {}, False),
    ("not a str", (42,), {}, {}, False),
    ("a str subclass", (StrSubclass("sub"),), {}, {}, False),
    ("nothing", (), {}, {}, False),
    ("empty", ("",), {}, {}, False),
    ("ends its line", ("line\n",), {}, {}, False),
    ("long", ("x" * 300,), {}, {}, False),
    ("sep", ("a", "b"), {"sep": "-"}, {}, False),
    ("end", ("a",), {"end": ""}, {}, False),
    ("flush", ("a",), {"flush": True}, {}, False),
    ("file", ("a",), {"file": "other"}, {}, False),
    ("held text", ("rest",), {}, {"held": "start "}, False),
    ("sampled in", ("a",), {}, {"sampling": 50.0, "operation_id": SAMPLED_IN}, False),
    ("sampled out", ("a",), {}, {"sampling": 50.0, "operation_id": SAMPLED_OUT}, False),
    ("not capturing", ("a",), {}, {"capturing": False}, False),
    ("rows full", ("a",), {}, {"row_limit": 0}, False),
    ("stdout replaced", ("a",), {}, {"stdout": "other"}, False),
]


@pytest.mark.parametrize(("args", "kwargs", "state", "native"), [case[1:] for case in PRINTS],
                         ids=[case[0] for case in PRINTS])
def test_print_makes_the_rows_and_text_of_the_python_print(recorder, monkeypatch, args, kwargs, state, native):
    stream, other = Stream(), Stream()
    reference = recorder.printer(stream, stream.write, builtins.print)
    spy = Spy(reference)
    fast = printer(recorder, spy, stream)
    if kwargs.get("file") == "other":
        kwargs = {**kwargs, "file": other}
    op = dataclasses.replace(new_op(), operation_id=state.get("operation_id", new_op().operation_id),
                             extra=state.get("extra", {}))
    recorder.state.sampling = state.get("sampling", 100.0)
    recorder.state.capturing = state.get("capturing", True)
    recorder.processor.row_limit = state.get("row_limit", 1000)
    monkeypatch.setattr(sys, "stdout", other if state.get("stdout") == "other" else stream)
    token = current_operation.set(state.get("operation", op))
    try:
        outcomes = []
        for print_ in (reference, fast):
            reset(recorder, stream)
            other.written.clear()
            started = time.time()
            if "held" in state:
                recorder.writer("STDOUT", stream.write)(state["held"])
            assert print_(*args, **kwargs) is None
            outcomes.append((*outcome(recorder, stream, started), list(other.written)))
    finally:
        current_operation.reset(token)
        monkeypatch.undo()
    assert outcomes[1] == outcomes[0]
    assert spy.calls == (0 if native else 1)
    if native:  # the case made the row it is about
        [row] = outcomes[1][0]
        assert (row[Text.KIND], row[Text.STREAM], row[Text.TEXT], row[Text.THREAD]) == (
            Text.LINE, "STDOUT", args[0], get_ident())


def test_print_refuses_bad_arguments_and_passes_on_what_its_stream_raises(recorder, monkeypatch):
    with pytest.raises(TypeError, match="must be a ContextVar"):
        _worker.Printer(print, None, print, [], {}, recorder.state, recorder.processor, "not a var", 100)
    with pytest.raises(TypeError, match="not initialized"):
        _worker.Printer.__new__(_worker.Printer)("text")

    def broken(text):
        raise OSError("disk full")

    stream = Stream()
    fast = _worker.Printer(Spy(print), stream, broken, recorder.processor.rows, {}, recorder.state,
                           recorder.processor, current_operation, 100)
    monkeypatch.setattr(sys, "stdout", stream)
    try:
        with pytest.raises(OSError, match="disk full"):
            fast("a line")
    finally:
        monkeypatch.undo()


def facts(op, **changes):
    """``scored``'s facts for request_finished, with changes: to the scope by key, else by name."""
    op, scope, start, duration, status, body, output, exc = scored(op)
    for key in ("method", "query_string", "server", "scheme", "path"):
        if key in changes:
            value = changes.pop(key)
            if value is None:
                del scope[key]
            else:
                scope[key] = value
    named = {"status": status, "body": body, "output": output, "exc": exc, **changes}
    return (op, scope, start, duration, named["status"], named["body"], named["output"], named["exc"])


# (case, facts' changes, state, whether C takes it)
REQUESTS = [
    ("common", {}, {}, True),
    ("str output", {"output": "[2]"}, {}, True),
    ("no output", {"output": None}, {}, True),
    ("no model data", {}, {"model_data": False}, True),
    ("traced caller", {}, {"extra": {"parent_span_id": "b" * 16}}, True),
    ("no server or scheme", {"server": None, "scheme": None}, {}, True),
    ("GET, its input as run() got it", {"method": "GET", "body": '{"a": 1}'}, {}, True),
    ("a client error", {"status": 404}, {}, False),
    ("a failure", {"status": 500, "exc": ValueError("boom")}, {}, False),
    ("an exception, answered", {"exc": ValueError("boom")}, {}, False),
    ("a query", {"query_string": b"a=1"}, {}, False),
    ("bytearray output", {"output": bytearray(b"[2]")}, {}, False),
    ("large input", {"body": b"x" * 2000}, {}, False),
    ("not bytes", {"body": memoryview(b"{}")}, {}, False),
    ("sampled in", {}, {"sampling": 50.0, "operation_id": SAMPLED_IN}, False),
    ("sampled out", {}, {"sampling": 50.0, "operation_id": SAMPLED_OUT}, False),
    ("rows full", {}, {"row_limit": 0}, False),
    ("URL not known yet", {}, {"forget_urls": True}, False),
    ("another path, known", {"path": "/other"}, {}, True),  # the reference, run first, learnt it
    ("not capturing", {}, {"capturing": False}, "nothing"),
]


def fast_recorder(recorder, fallback):
    """A C Recorder over the recorder's rows, as Recorder makes it, with ``fallback`` for Python's calls."""
    return _worker.Recorder(fallback, recorder.processor.rows, recorder.state, recorder.processor, recorder._urls,
                            recorder.payloads.limit)


@pytest.mark.parametrize(("changes", "state", "native"), [case[1:] for case in REQUESTS],
                         ids=[case[0] for case in REQUESTS])
def test_recorder_makes_the_rows_of_the_python_request_finished(recorder, changes, state, native):
    recorder.state.model_data = state.get("model_data", True)
    recorder.state.sampling = state.get("sampling", 100.0)
    recorder.state.capturing = state.get("capturing", True)
    recorder.processor.row_limit = state.get("row_limit", 1000)
    spy = Spy(recorder.record_request)
    fast = fast_recorder(recorder, spy)
    fast(*facts(new_op()))  # learns the common request's URL (from its fallback)
    op = dataclasses.replace(new_op(), operation_id=state.get("operation_id", new_op().operation_id),
                             extra=state.get("extra", {}))
    request = facts(op, **changes)
    outcomes = []
    for record in (recorder.record_request, fast):
        if state.get("forget_urls"):
            recorder._urls.clear()
            if record is fast:  # and forgets what it learnt: a new recorder
                fast = record = fast_recorder(recorder, spy)
        reset(recorder, Stream())
        spy.calls = 0
        assert record(*request) is None
        emitted = [(*e[:2], None, *e[3:]) if e[0] == "exception" else e for e in recorder.processor.emitted]  # time
        outcomes.append((recorder.processor.rows[:], emitted, recorder.processor.refusals))
    assert outcomes[1] == outcomes[0]
    assert spy.calls == (0 if native else 1)
    if native is True:
        [row] = outcomes[1][0]
        assert (row[Request.START], row[Request.OPERATION_ID], row[Request.NAME]) == (request[2], op.operation_id,
                                                                                     op.name)
        assert (row[Request.REQUEST_ID], row[Request.CLIENT_REQUEST_ID]) == ("req-1", "client-1")
    elif native == "nothing":
        assert outcomes[1] == ([], [], 0)


def test_recorder_takes_the_facts_without_an_exception_and_hands_odd_calls_on(recorder):
    spy = Spy(recorder.record_request)
    fast = fast_recorder(recorder, spy)
    request = facts(new_op())
    recorder.record_request(*request)  # URL known
    fast(*request[:7])
    assert spy.calls == 0 and len(recorder.processor.rows) == 2
    fast(*request[:7], exception=None)  # keywords: Python's
    assert spy.calls == 1 and len(recorder.processor.rows) == 3
    with pytest.raises(TypeError):  # too few facts: Python's error
        fast(*request[:3])
    with pytest.raises(TypeError, match="not initialized"):
        _worker.Recorder.__new__(_worker.Recorder)(*request)


def test_worker_started_installs_the_c_paths_which_record_a_request_end_to_end(settings, tmp_path):  # noqa: F811
    m = create_monitor(settings, INFO, exporter=InMemoryExporter())
    try:
        m.worker_started()
        assert isinstance(m.request_finished, _worker.Recorder)
        assert isinstance(builtins.print, _worker.Printer)
        op = new_op()
        serve(m, op, lambda: print("scored 2 rows"))
        serve(m, new_op(), lambda: print("scored 2 rows"))  # the URL known: C all the way
        m.pipeline.processor.force_flush(5)
        items = m.pipeline.exporter.items
        mine = [i for i in items if i["tags"]["ai.operation.id"] == op.operation_id]
        assert sorted(i["data"]["baseType"] for i in mine) == ["MessageData", "MessageData", "RequestData"]
        assert len(items) == 6
        [line] = [i for i in mine if i["data"]["baseData"].get("message") == "STDOUT"]
        assert line["data"]["baseData"]["properties"]["Contents"] == "scored 2 rows"
    finally:
        m.shutdown(5)
    assert not isinstance(builtins.print, _worker.Printer)  # shutdown gives print back
