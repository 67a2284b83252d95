"""The row protocol: what the request path records, declared once.

Every request of a monitored service, and every ``print()`` of its entry script, becomes a *row*: a
plain tuple of values the request path already has (marshal-able: str, bytes, float, int, bool,
None). Rows travel in batches (one ``marshal`` frame) from the scoring worker to its exporter
process, which turns them into envelopes (:mod:`scorewatch.telemetry.templates`). This module is
the one place that says what a row holds, at which position, and which names cross from Python to
the C fast paths:

- the Python code makes and reads rows through the positions below (``row[Request.STATUS]``) and
  the ``make_*`` functions derived from them;
- the C code (``_worker.c`` makes rows, ``_rows.c`` reads them) takes the same positions, tags and
  names from ``_protocol.h``, which is generated from this module (``python -m
  scorewatch.telemetry.rows > src/scorewatch/telemetry/_protocol.h``). ``tests/telemetry/
  test_protocol.py`` regenerates it and fails when the committed header differs; the header's
  fingerprint is compiled into the extensions, and :mod:`scorewatch.telemetry.native` refuses an
  extension built against another protocol.

Adding a field: add its name to the layout's ``range`` line (and the ``SIZE``), regenerate the
header, then give it a value where rows are made and read it where it is needed.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

# -- row layouts ---------------------------------------------------------------------------------------
# A layout is a class whose upper-case int attributes name the positions of a row's fields, in order;
# position KIND, the first, always holds the row's tag.
KIND = 0


class Request:
    """``"r"``: one finished call to /score, with its model data (made by the recorder, read by
    the templates). INPUT and PREDICTION are raw (bytes or str) until the exporter side decodes them,
    or a blob marker (dict) when they were too large to travel inline; SAMPLE_RATE is 100.0 unless
    the request was kept by sampling; MODEL_DATA says whether its model data envelope is made."""

    TAG = "r"
    SIZE = 16
    (KIND, START, OPERATION_ID, SPAN_ID, CALLER, NAME, URL, DURATION_MS, STATUS, SUCCESS, REQUEST_ID,
     CLIENT_REQUEST_ID, INPUT, PREDICTION, SAMPLE_RATE, MODEL_DATA) = range(SIZE)


class Text:
    """``"l"`` and ``"o"``: text written to stdout/stderr. A LINE is a text and the newline written
    right after it on its thread (a whole line, what a ``print()`` makes); a CHUNK is any other
    write, which the templates put together into lines per stream and thread. OPERATION_ID is None
    outside a request (then PARENT_ID and OPERATION_NAME are "")."""

    LINE = "l"
    CHUNK = "o"
    SIZE = 9
    (KIND, TIME, STREAM, TEXT, THREAD, OPERATION_ID, PARENT_ID, OPERATION_NAME, SAMPLE_RATE) = range(SIZE)


class Newline:
    """``"n"``: a write of just ``"\\n"`` (``print()`` writes it on its own): it ends the line begun
    on its stream and thread."""

    TAG = "n"
    SIZE = 3
    (KIND, STREAM, THREAD) = range(SIZE)


LAYOUTS: tuple[type, ...] = (Request, Text, Newline)
TAGS = (Request.TAG, Text.LINE, Text.CHUNK, Newline.TAG)  # one ASCII character each: the C code compares one

# The streams a Text row names.
STDOUT = "STDOUT"
STDERR = "STDERR"


def fields(layout: type) -> list[str]:
    """The field names of ``layout`` (lower case), in position order."""
    positions = {name: value for name, value in vars(layout).items()
                 if name.isupper() and name != "SIZE" and isinstance(value, int) and not isinstance(value, bool)}
    names = sorted(positions, key=positions.__getitem__)
    if [positions[n] for n in names] != list(range(layout.SIZE)):  # type: ignore[attr-defined]
        raise TypeError(f"{layout.__name__}: positions must be 0..SIZE-1, each once")
    return [name.lower() for name in names]


def _maker(layout: type) -> Callable[..., tuple[Any, ...]]:
    """``make(*, field, ...)`` for a layout: its row, the fields in their positions (made once here, from
    the layout, as ``collections.namedtuple`` makes its ``__new__``)."""
    names = fields(layout)[1:]
    source = (f"def make(kind, *, {', '.join(names)}):\n    return (kind, {', '.join(names)})\n")
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # noqa: S102 - generated from the field names above, nothing else
    make: Callable[..., tuple[Any, ...]] = namespace["make"]
    make.__doc__ = f"A {layout.__name__} row: ``({', '.join(['kind', *names])})``."
    return make


_make_request = _maker(Request)
_make_text = _maker(Text)


def make_request(**values: Any) -> tuple[Any, ...]:
    """A :class:`Request` row from its fields by name."""
    return _make_request(Request.TAG, **values)


def make_text(kind: str, **values: Any) -> tuple[Any, ...]:
    """A :class:`Text` row (``kind``: :attr:`Text.LINE` or :attr:`Text.CHUNK`) from its fields by name."""
    return _make_text(kind, **values)


def make_newline(stream: str, thread: int) -> tuple[Any, ...]:
    return (Newline.TAG, stream, thread)


def as_chunk(line: tuple[Any, ...]) -> tuple[Any, ...]:
    """The same text as a CHUNK: a text whose newline did not follow (another text did)."""
    return (Text.CHUNK, *line[1:])


# -- records: the rarer items, built into envelopes on the worker's telemetry thread ---------------------
# A record is (kind, size, *arguments): ``size`` is the bytes of payload it holds when it may be large
# (the processor bounds those), else 0. Records never leave the worker process.
RECORD_ROWS = "rows"            # ("rows", 0, [row, ...]): rows the processor picked up
RECORD_LARGE = "large"          # ("large", size, row): a row whose payloads may go to blobs first
RECORD_EXCEPTION = "exception"  # ("exception", 0, time, exc, operation, during, properties)
RECORD_LOG = "log"              # ("log", 0, time, message, levelno, properties, operation, sample_rate)
RECORD_SPAN = "span"            # ("span", 0, span, operation, sample_rate)
RECORD_DEPENDENCY = "dependency"  # ("dependency", 0, fields, operation, sample_rate)
RECORD_EVENT = "event"          # ("event", 0, time, name, properties, measurements, operation)
RECORD_METRIC = "metric"        # ("metric", 0, time, name, value, properties, operation)
RECORD_TRACE = "trace"          # ("trace", 0 or size, time, message, properties, operation)

# -- between the worker and its exporter process (telemetry/sidecar.py) ------------------------------
# What the worker's processor hands the exporter for a batch: ready envelopes (bytes) and frames.
FRAME = "F"                     # (FRAME, marshal.dumps(rows), row count)
# On the pipe: a header (kind, length), then the payload.
PIPE_ROWS = b"F"                # payload: a frame of rows, as the worker marshalled it
PIPE_MESSAGE = b"P"             # payload: a pickled message, one of:
MESSAGE_DATA = "data"           # ("data", [envelope bytes, ...])
MESSAGE_FLUSH = "flush"         # ("flush", token, timeout_s): answered "flushed <token>\n" on stdout
MESSAGE_CLOSE = "close"         # ("close", timeout_s)
MESSAGE_INTERVAL = "interval"   # ("interval", seconds): send a partial batch at least this often from now on
MESSAGE_ROWS = "rows"           # what the reader makes of a PIPE_ROWS payload: ("rows", [row, ...])
FLUSHED = "flushed {}\n"


# -- names the C fast paths read from Python objects ------------------------------------------------------
class StateAttributes:
    """The attributes of :class:`scorewatch.telemetry.recorder.State` the C recorder and printer read."""

    CAPTURING = "capturing"       # bool: recording at all
    SAMPLING = "sampling"         # float: the sampling percentage (C takes only 100.0)
    MODEL_DATA = "model_data"     # bool: requests carry their input and output


class ProcessorAttributes:
    """The attribute of :class:`scorewatch.telemetry.processor.BatchProcessor` they read (its rows
    list itself is handed to them)."""

    ROW_LIMIT = "row_limit"       # int: rows are added only while len(rows) < row_limit


class OperationAttributes:
    """The attributes of :class:`scorewatch.telemetry.context.Operation` they read."""

    OPERATION_ID = "operation_id"
    PARENT_ID = "parent_id"
    NAME = "name"
    REQUEST_ID = "request_id"
    CLIENT_REQUEST_ID = "client_request_id"
    EXTRA = "extra"
    EXTRA_PARENT_SPAN_ID = "parent_span_id"  # the key of the caller's span id in ``extra``


class ScopeKeys:
    """The keys of the ASGI scope the C recorder reads."""

    PATH = "path"
    SERVER = "server"
    SCHEME = "scheme"
    QUERY_STRING = "query_string"


NAMES: dict[str, type] = {"STATE": StateAttributes, "PROCESSOR": ProcessorAttributes,
                          "OPERATION": OperationAttributes, "SCOPE": ScopeKeys}


# -- the slots of the envelope templates (templates.py compiles them; _rows.c fills them in this order) ----
class Slot(NamedTuple):
    """One per-request value of an envelope template. ``raw``: text put as is between the
    template's quotes (hex ids, formatted times); else a whole JSON value. ``optional``: a member
    that is left out unless given."""

    name: str
    raw: bool = False
    optional: bool = False


REQUEST_ENVELOPE = (
    Slot("time", raw=True), Slot("operation_id", raw=True), Slot("caller", raw=True, optional=True),
    Slot("operation_name"), Slot("id", raw=True), Slot("name"), Slot("url"), Slot("duration", raw=True),
    Slot("response_code", raw=True), Slot("success"), Slot("request_id"), Slot("client_request_id"),
    Slot("sample_rate", optional=True))
MODEL_DATA_ENVELOPE = (
    Slot("time", raw=True), Slot("operation_id", raw=True), Slot("parent_id", raw=True), Slot("operation_name"),
    Slot("request_id"), Slot("client_request_id"), Slot("input"), Slot("prediction"),
    Slot("error", optional=True), Slot("status_code", raw=True, optional=True), Slot("sample_rate", optional=True))
OUTPUT_ENVELOPE = (
    Slot("time", raw=True), Slot("operation_id", raw=True, optional=True), Slot("parent_id", raw=True, optional=True),
    Slot("operation_name", optional=True), Slot("message"), Slot("severity"), Slot("contents"),
    Slot("sample_rate", optional=True))
ENVELOPES = {"REQUEST_ENVELOPE": REQUEST_ENVELOPE, "MODEL_DATA_ENVELOPE": MODEL_DATA_ENVELOPE,
             "OUTPUT_ENVELOPE": OUTPUT_ENVELOPE}


# -- the C header ---------------------------------------------------------------------------------------
def _header_body() -> list[str]:
    lines = ["/* Row layouts: positions of each field in its tuple. */"]
    for layout in LAYOUTS:
        prefix = layout.__name__.upper()
        lines.append(f"#define {prefix}_SIZE {layout.SIZE}")  # type: ignore[attr-defined]
        lines += [f"#define {prefix}_{name.upper()} {i}" for i, name in enumerate(fields(layout))]
    lines.append("/* Row tags and stream names. */")
    lines += [f'#define TAG_REQUEST "{Request.TAG}"', f'#define TAG_LINE "{Text.LINE}"',
              f'#define TAG_CHUNK "{Text.CHUNK}"', f'#define TAG_NEWLINE "{Newline.TAG}"',
              f'#define STREAM_STDOUT "{STDOUT}"', f'#define STREAM_STDERR "{STDERR}"']
    lines.append("/* Attribute and key names read from Python objects. */")
    for prefix, names in NAMES.items():
        lines += [f'#define NAME_{prefix}_{attr} "{value}"' for attr, value in vars(names).items() if attr.isupper()]
    lines.append("/* Envelope templates: the index of each slot; the literal piece i comes before slot i. */")
    for name, slots in ENVELOPES.items():
        lines.append(f"#define {name}_SLOTS {len(slots)}")
        lines += [f"#define {name}_{slot.name.upper()} {i}" for i, slot in enumerate(slots)]
    return lines


def fingerprint() -> str:
    """A digest of the protocol: compiled into the C extensions, compared when they are loaded."""
    return hashlib.sha256("\n".join(_header_body()).encode()).hexdigest()[:16]


def c_header() -> str:
    """``_protocol.h``: the layouts, tags and names above, for the C extensions."""
    return "\n".join([
        "/* Generated from src/scorewatch/telemetry/rows.py by `python -m scorewatch.telemetry.rows`: do not edit.",
        "   tests/telemetry/test_protocol.py fails when this file and rows.py disagree. */",
        "#ifndef SCOREWATCH_PROTOCOL_H",
        "#define SCOREWATCH_PROTOCOL_H",
        f'#define PROTOCOL_FINGERPRINT "{fingerprint()}"',
        *_header_body(),
        "#endif",
        "",
    ])


if __name__ == "__main__":
    sys.stdout.write(c_header())
