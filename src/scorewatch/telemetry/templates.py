"""Serialized envelopes for the records every request produces: the request, its model data, prints.

They are built from plain tuples (:data:`RequestRow`, :data:`OutputRow`) straight into JSON with
f-string templates, which is several times cheaper than dicts through the factory: user-controlled
text always goes through orjson (so it is escaped); ids are hex. The tuples are picklable, so the
same templates run in the service's telemetry thread or in the exporter process
(``scorewatch.telemetry.sidecar``). ``tests/telemetry/test_envelopes.py`` checks them against
:class:`~scorewatch.telemetry.envelopes.EnvelopeFactory`.

The common rows (a request, a whole printed line) are written by a small C extension when it was
built (``_rows.c``, about a tenth of the Python cost); every other row, and every row when it was not
built, takes the Python code here, which is the reference the C is tested against byte for byte.
"""

from __future__ import annotations

import contextlib
import marshal
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from scorewatch.telemetry.blobs import BlobStore, inline_or_blob
from scorewatch.telemetry.envelopes import (
    SEVERITY_INFO,
    SEVERITY_WARNING,
    EnvelopeFactory,
    format_duration,
    format_time,
)

# (start, operation_id, request_span_id, caller_span_id | None, name, url, duration_ms, status_code,
#  success, request_id, client_request_id, input, prediction, sample_rate, model_data)
# input/prediction: the inline text or a blob marker dict (already resolved by the service).
RequestRow = tuple[float, str, str, "str | None", str, str, float, int, bool, str, str, Any, Any, float, bool]

# (time, stream, contents, operation_id | None, parent_id, operation_name, sample_rate, inline_limit)
# contents: the printed text, or a blob marker dict when it was too large to keep inline.
OutputRow = tuple[float, str, Any, "str | None", str, str, float, int]

try:  # built from _rows.c when a C compiler was at hand at install time; optional
    from scorewatch.telemetry import _rows
except ImportError:  # pragma: no cover - depends on the install
    _rows = None  # type: ignore[assignment]

# What the request path records, as plain tuples (marshal-able: str, bytes, float, int, bool, None),
# shipped in batches (:meth:`Templates.frame`) and turned into envelopes by :meth:`Templates.raw`:
#   ("r", *RequestRow) with input/prediction still raw (bytes | str | marker dict | None);
#   ("o", time, stream, chunk, thread_id, operation_id | None, parent_id, operation_name, sample_rate):
#       one write() to stdout/stderr; lines are put together here, per stream and thread;
#   ("n", stream, thread_id): a write() of just "\n" (print() writes it on its own);
#   ("l", <as "o">): a write() and the "\n" that came right after it on its thread: a whole line.
MAX_PENDING_CHARS = 64 * 1024
# Rows built between two calls of a pause (see sidecar.Courtesy): ~30 us of work in C, ~100 us in Python.
ROWS_PER_PAUSE = 16
_JSON_STARTS = ("{", "[")
# The envelopes' optional parts (the envelopes themselves: Templates._compile).
PARENT_TAG = b',"ai.operation.parentId":"%b"'
OPERATION_TAGS = b',"ai.operation.id":"%b","ai.operation.parentId":"%b"'
NAMED_OPERATION_TAGS = OPERATION_TAGS + b',"ai.operation.name":%b'
MODEL_DATA_ERROR = b',"Error":%b,"Status Code":"%d"'
SAMPLE_RATE = b',"sampleRate":%a'
_SLOT = re.compile(rb"%(%|b|d|a)")


def _pieces(template: bytes) -> tuple[bytes, ...]:
    """The literal parts of a bytes %-format around its slots, ``%%`` read as ``%`` (for ``_rows``)."""
    pieces, literal, at = [], b"", 0
    for slot in _SLOT.finditer(template):
        literal += template[at:slot.start()]
        at = slot.end()
        if slot.group(1) == b"%":
            literal += b"%"
        else:
            pieces.append(literal)
            literal = b""
    pieces.append(literal + template[at:])
    return tuple(pieces)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class Templates:
    """The per-request envelopes of one service."""

    def __init__(self, instrumentation_key: str, *, role: str, role_instance: str,
                 base_properties: Mapping[str, str], models: str, inline_limit: int = 64 * 1024,
                 blobs: BlobStore | None = None, native: bool = True) -> None:
        self.inline_limit = inline_limit
        self.blobs = blobs
        self._pending: dict[tuple[str, int], tuple[str, tuple[Any, ...]]] = {}  # unfinished lines, their first row
        factory = EnvelopeFactory(instrumentation_key, role=role, role_instance=role_instance)
        self._ikey = _json(instrumentation_key)
        self._request_name = _json(factory.request_name)
        self._message_name = _json(factory.message_name)
        self._tags = _json(factory.base_tags)[1:-1]
        self._base_props = _json(dict(base_properties))[1:-1]
        self._props_head = self._base_props + "," if self._base_props else ""  # members, then a comma
        self._models = _json(models)
        self._names: dict[str, bytes] = {}
        self._streams = {"STDOUT": (b'"STDOUT"', SEVERITY_INFO), "STDERR": (b'"STDERR"', SEVERITY_WARNING)}
        self._compile()
        self._native = _rows.Builder(
            _pieces(self._request_fmt), _pieces(self._model_data_fmt), _pieces(self._output_fmt),
            _pieces(PARENT_TAG), _pieces(OPERATION_TAGS), _pieces(NAMED_OPERATION_TAGS),
            _pieces(MODEL_DATA_ERROR), _pieces(SAMPLE_RATE), self._streams, inline_limit,
        ) if native and _rows is not None else None

    @property
    def native(self) -> bool:
        """Whether the C writer (``_rows``) builds the common rows' envelopes."""
        return self._native is not None

    def config(self) -> dict[str, Any]:
        """What a :class:`Templates` in another process needs (see :meth:`from_config`)."""
        return {"ikey": orjson.loads(self._ikey), "tags": orjson.loads("{" + self._tags + "}"),
                "base_properties": orjson.loads("{" + self._base_props + "}"), "models": orjson.loads(self._models),
                "inline_limit": self.inline_limit,
                "blobs_dir": str(self.blobs.directory) if self.blobs is not None else None}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Templates:
        tags = config["tags"]
        blobs = BlobStore(config["blobs_dir"]) if config.get("blobs_dir") else None
        return cls(config["ikey"], role=tags["ai.cloud.role"], role_instance=tags["ai.cloud.roleInstance"],
                   base_properties=config["base_properties"], models=config["models"],
                   inline_limit=config.get("inline_limit", 64 * 1024), blobs=blobs)

    def _compile(self) -> None:
        # Each envelope is one bytes %-format with the service's constant parts baked in; the slots
        # take bytes (%b): ids are hex, user text goes through orjson (escaped). Constant parts are
        # themselves JSON made by orjson, with any "%" doubled.
        def const(text: str) -> bytes:
            return text.encode().replace(b"%", b"%%")

        head = (b'"time":"%b","iKey":' + const(self._ikey) + b',"tags":{' + const(self._tags)
                + b',"ai.operation.id":"%b"')
        props = b'"properties":{' + const(self._props_head)
        self._request_fmt = (b'{"name":' + const(self._request_name) + b',' + head
                             + b'%b,"ai.operation.name":%b},"data":{"baseType":"RequestData","baseData":{"ver":2,'
                             + b'"id":"%b","name":%b,"url":%b,"duration":"%b","responseCode":"%d","success":%b,'
                             + props + b'"Request Id":%b,"Client Request Id":%b}}}%b}')
        self._model_data_fmt = (b'{"name":' + const(self._message_name) + b',' + head
                                + b',"ai.operation.parentId":"%b","ai.operation.name":%b},"data":{"baseType":'
                                + b'"MessageData","baseData":{"ver":2,"message":"model_data_collection",'
                                + b'"severityLevel":' + str(SEVERITY_INFO).encode() + b','
                                + props + b'"Request Id":%b,"Client Request Id":%b,"Models":' + const(self._models)
                                + b',"Input":%b,"Prediction":%b%b}}}%b}')
        self._output_fmt = (b'{"name":' + const(self._message_name) + b',"time":"%b","iKey":' + const(self._ikey)
                            + b',"tags":{' + const(self._tags) + b'%b},"data":{"baseType":"MessageData",'
                            + b'"baseData":{"ver":2,"message":%b,"severityLevel":%d,' + props
                            + b'"Contents":%b}}}%b}')

    def _name(self, name: str) -> bytes:
        cached = self._names.get(name)
        if cached is None:
            cached = orjson.dumps(name)
            if len(self._names) < 64:  # a handful of operation names ("POST /score", "GET /score")
                self._names[name] = cached
        return cached

    def request(self, row: RequestRow) -> list[bytes]:
        return self._request(("r", *row))

    def _request(self, row: tuple[Any, ...]) -> list[bytes]:
        """The request envelope of an ``"r"`` row, and its model data's. The envelopes of every
        request are built here, so it is one flat function (each call or temporary tuple is ~1.5k
        instructions, a fifth of an envelope)."""
        (_, start, operation_id, span_id, caller, name, url, duration_ms, status, success, request_id,
         client_request_id, input_value, prediction, rate, model_data) = row
        dumps = orjson.dumps
        names = self._names
        request_id_json, client_request_id_json = dumps(request_id), dumps(client_request_id)
        name_json = names.get(name) or self._name(name)
        # A URL is the same for every request unless it has a query: only URLs without one are cached.
        url_json = names.get(url) or (self._name(url) if "?" not in url else dumps(url))
        when = format_time(start).encode()
        operation_id_hex = operation_id.encode()
        span_id_hex = span_id.encode()
        sample = SAMPLE_RATE % float(rate) if success and rate < 100.0 else b""
        micros = max(0, round(duration_ms * 1000))
        duration = (b"0.00:00:%02d.%06d" % divmod(micros, 1_000_000) if micros < 60_000_000
                    else format_duration(duration_ms).encode())
        request = self._request_fmt % (
            when, operation_id_hex, PARENT_TAG % caller.encode() if caller else b"",
            name_json, span_id_hex, name_json, url_json, duration, status, b"true" if success else b"false",
            request_id_json, client_request_id_json, sample)
        if not model_data:
            return [request]
        # The payloads as rows keep them: raw bytes (small ones are text here), or text or a blob marker.
        prediction_json = dumps(self._value(prediction))
        error = MODEL_DATA_ERROR % (prediction_json, status) if not success else b""
        return [request, self._model_data_fmt % (when, operation_id_hex, span_id_hex, name_json, request_id_json,
                                                 client_request_id_json, dumps(self._value(input_value)),
                                                 prediction_json, error, sample)]

    def output(self, row: OutputRow) -> list[bytes]:
        return [self._message(*row)]

    def _message(self, when: float, stream: str, contents: Any, operation_id: str | None, parent_id: str,
                 operation_name: str, rate: float, inline_limit: int) -> bytes:
        """The ``STDOUT``/``STDERR`` envelope of one line (``contents``: its text, or a blob marker)."""
        first = contents[:1] if contents.__class__ is str else ""
        if first and (first == "{" or first == "[" or (first.isspace() and contents.lstrip()[:1] in _JSON_STARTS)) \
                and len(contents) <= inline_limit:
            # Printed JSON is kept as a nested object, so KQL can reach into it.
            with contextlib.suppress(orjson.JSONDecodeError):
                contents = orjson.loads(contents)
        tags = b""
        if operation_id:
            if operation_name:
                tags = NAMED_OPERATION_TAGS % (operation_id.encode(), parent_id.encode(),
                                               self._names.get(operation_name) or self._name(operation_name))
            else:
                tags = OPERATION_TAGS % (operation_id.encode(), parent_id.encode())
        stream_json, severity = self._streams.get(stream) or (self._name(stream), SEVERITY_WARNING)
        return self._output_fmt % (
            format_time(when).encode(), tags, stream_json, severity, orjson.dumps(contents), SAMPLE_RATE % float(rate) if rate < 100.0 else b"")

    def _value(self, value: Any) -> Any:
        if value.__class__ is bytes and len(value) <= self.inline_limit:  # the common case, inline
            try:
                return value.decode()
            except UnicodeDecodeError:
                pass
        return value if isinstance(value, dict) else inline_or_blob(value, self.inline_limit, self.blobs)

    def raw(self, row: tuple[Any, ...]) -> list[bytes]:
        """Envelopes for one row the request path recorded (see the module's row shapes)."""
        if row[0] == "r":
            return self._request(row)
        if row[0] == "l":  # a text and its newline: a line, or the end of one begun by earlier chunks
            return self.raw(("o", *row[1:])) + self.raw(("n", row[2], row[4]))
        if row[0] == "n":  # a lone newline: ends the line of its stream and thread, if one was begun
            begun = self._pending.pop((row[1], row[2]), None)
            if begun is None:
                return []
            return self._line(begun[0], begun[1])
        chunk = row[3]
        key = (row[2], row[4])
        begun = self._pending.pop(key, None)
        if begun is not None:  # the line began earlier: it keeps its first chunk's time and operation
            row = begun[1]
            chunk = begun[0] + chunk
        if chunk.endswith("\n"):
            return self._line(chunk[:-1], row)
        if len(chunk) <= MAX_PENDING_CHARS:  # a line without end must not grow forever
            self._pending[key] = (chunk, row)
            return []
        return self._line(chunk, row)

    def _line(self, line: str, row: tuple[Any, ...]) -> list[bytes]:
        if not line or line.isspace():
            return []
        _, when, stream, _, _, operation_id, parent_id, name, rate = row
        contents = self._value(line) if len(line) > self.inline_limit // 4 else line
        return [self._message(when, stream, contents, operation_id, parent_id, name, rate, self.inline_limit)]

    @staticmethod
    def frame(rows: list[tuple[Any, ...]]) -> bytes:
        """A batch of rows as one byte string: one C call, whatever the batch size."""
        return marshal.dumps(rows)

    def build(self, item: Any, pause: Callable[[], None] | None = None) -> list[bytes]:
        """Envelopes for one shipped item: ``("F", frame, count)``, ``("R", RequestRow)``,
        ``("O", OutputRow)`` or ready bytes. ``pause`` is called after each row of a frame (the
        exporter process lets the scoring worker run there, see ``sidecar.Courtesy``)."""
        if isinstance(item, bytes):
            return [item]
        kind, row = item[0], item[1]
        if kind == "F":
            return self.rows(marshal.loads(row), pause)
        return self.request(row) if kind == "R" else self.output(row)

    def rows(self, rows: list[tuple[Any, ...]], pause: Callable[[], None] | None = None,
             on_error: Callable[[], None] | None = None) -> list[bytes]:
        """Envelopes for rows the request path recorded; ``pause`` is called after every
        ``ROWS_PER_PAUSE`` of them (see :meth:`build`). A row that cannot be built is skipped and
        reported to ``on_error``."""
        if self._native is not None:  # the same, with the common rows written in C
            return self._native.rows(rows if rows.__class__ is list else list(rows), self._pending, self._row,
                                     pause, on_error, ROWS_PER_PAUSE)
        out: list[bytes] = []
        for start in range(0, len(rows), ROWS_PER_PAUSE):
            for row in rows[start:start + ROWS_PER_PAUSE]:
                try:
                    out.extend(self._row(row))
                except Exception:
                    if on_error is None:
                        raise
                    on_error()
            if pause is not None:
                pause()
        return out

    def _row(self, row: tuple[Any, ...]) -> list[bytes]:
        kind = row[0]
        if kind == "r":
            return self._request(row)
        if (kind == "l" and (not self._pending or (row[2], row[4]) not in self._pending)
                and row[3][-1:] != "\n" and len(row[3]) <= self.inline_limit // 4):
            return self._line(row[3], row)  # the common print(): a whole line, nothing begun before it
        return self.raw(row)
