"""The envelopes of the rows the request path records: a request, its model data, printed lines.

Every request makes two or three envelopes, so they are not built as dicts: each kind is compiled
once, per service, into a byte template from :class:`~scorewatch.telemetry.envelopes.EnvelopeFactory`
itself. The factory's envelope is rendered with a named marker in place of each per-request value
(the slots :mod:`scorewatch.telemetry.rows` declares); the literal bytes around the markers are the
template. Filling the slots is then all a row costs: user text goes through orjson (so it is
escaped), ids and times are ASCII written between the template's quotes.

The common rows (a request whose payloads are inline UTF-8, a whole printed line) are filled by a
small C extension when it was built (``_rows.c``); every other row, and every row when it was not
built (or ``SCOREWATCH_NATIVE=0``), takes the Python code here, which is the reference the C is
tested against byte for byte (``tests/telemetry/test_rows_native.py``). The same templates run in
the worker's telemetry thread or in its exporter process (:mod:`scorewatch.telemetry.sidecar`).
"""

from __future__ import annotations

import contextlib
import marshal
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from scorewatch.telemetry import rows
from scorewatch.telemetry.blobs import BlobStore, Payloads
from scorewatch.telemetry.envelopes import (
    SEVERITY_INFO,
    SEVERITY_WARNING,
    EnvelopeFactory,
    format_duration,
    format_time,
    sample_rate,
)
from scorewatch.telemetry.native import rows_module
from scorewatch.telemetry.rows import Newline, Request, Slot, Text

# A line written in pieces is held until its end; one without end is sent once it is this long.
MAX_PENDING_CHARS = 64 * 1024
# Rows built between two calls of a pause (see sidecar.Courtesy).
ROWS_PER_PAUSE = 16
SEVERITIES = {rows.STDOUT: SEVERITY_INFO, rows.STDERR: SEVERITY_WARNING}
_MARKER = re.compile(rb'(,"(?:[^"\\]|\\.)*":)?("\\u0000(\w+)\\u0000")')  # (a member's key) "marker"


def _marker(name: str) -> str:
    return f"\x00{name}\x00"  # JSON: "\u0000name\u0000", which no constant of a service contains


@dataclass(frozen=True)
class Template:
    """An envelope with slots: ``pieces[i]`` is the literal before ``slots[i]`` (the last piece ends
    the envelope). An optional slot's value is wrapped in its member (``members[i]``: the bytes
    before and after it), or left out; a raw slot's quotes are in the pieces."""

    slots: tuple[Slot, ...]
    pieces: tuple[bytes, ...]
    members: tuple[tuple[bytes, bytes] | None, ...]

    @classmethod
    def compile(cls, envelope: dict[str, Any], slots: tuple[Slot, ...]) -> Template:
        """The template of ``envelope``, made with :func:`markers` of ``slots`` in place of values."""
        text = orjson.dumps(envelope)
        pieces: list[bytes] = []
        members: list[tuple[bytes, bytes] | None] = []
        found: list[str] = []
        at = 0
        for match in _MARKER.finditer(text):
            member, name = match.group(1), match.group(3).decode()
            slot = slots[len(found)] if len(found) < len(slots) else None
            if slot is None or slot.name != name or (slot.optional and member is None):
                raise ValueError(f"envelope slots {[*found, name]} do not follow the declared {slots}")
            quote = b'"' if slot.raw else b""
            if slot.optional:  # the whole member is the slot's: left out unless given
                pieces.append(text[at:match.start(1)])
                members.append((member + quote, quote))
            else:  # a raw slot keeps its quotes in the pieces around it
                pieces.append(text[at:match.start(2)] + quote)
                members.append(None)
            at = match.end() if slot.optional else match.end() - len(quote)
            found.append(name)
        pieces.append(text[at:])
        if len(found) != len(slots) or any(b"\\u0000" in piece for piece in pieces):
            raise ValueError(f"envelope slots {found} do not follow the declared {slots}")
        return cls(slots, tuple(pieces), tuple(members))

    def fill(self, **values: bytes | None) -> bytes:
        """The envelope with ``values`` (bytes, by slot name; None leaves an optional member out)."""
        out = [self.pieces[0]]
        for slot, member, piece in zip(self.slots, self.members, self.pieces[1:], strict=True):
            value = values[slot.name]
            if member is None:
                out.append(value)  # type: ignore[arg-type]
            elif value is not None:
                out += (member[0], value, member[1])
            out.append(piece)
        return b"".join(out)


def markers(slots: tuple[Slot, ...]) -> dict[str, Any]:
    """A marker for each slot, by name, to render an envelope with (see :meth:`Template.compile`): a
    string, whatever type the factory's argument has (a marker only has to reach the JSON)."""
    return {slot.name: _marker(slot.name) for slot in slots}


class Templates:
    """The per-request envelopes of one service, built from rows (see :mod:`scorewatch.telemetry.rows`)."""

    def __init__(self, instrumentation_key: str, *, role: str, role_instance: str,
                 base_properties: Mapping[str, str], models: str, inline_limit: int = 64 * 1024,
                 blobs: BlobStore | None = None, native: bool = True) -> None:
        self._config = {"ikey": instrumentation_key, "role": role, "role_instance": role_instance,
                        "base_properties": dict(base_properties), "models": models, "inline_limit": inline_limit,
                        "blobs_dir": str(blobs.directory) if blobs is not None else None, "native": native}
        self.payloads = Payloads(inline_limit, blobs)
        self._pending: dict[tuple[str, int], tuple[str, tuple[Any, ...]]] = {}  # unfinished lines, their first row
        factory = EnvelopeFactory(instrumentation_key, role=role, role_instance=role_instance)
        base = dict(base_properties)
        m = markers(rows.REQUEST_ENVELOPE)
        self.request = Template.compile(factory.request(
            time=m["time"], id=m["id"], name=m["name"], url=m["url"], duration=m["duration"],
            response_code=m["response_code"], success=m["success"],
            properties={**base, "Request Id": m["request_id"], "Client Request Id": m["client_request_id"]},
            operation_id=m["operation_id"], parent_id=m["caller"], operation_name=m["operation_name"],
            sample_rate=m["sample_rate"]), rows.REQUEST_ENVELOPE)
        m = markers(rows.MODEL_DATA_ENVELOPE)
        self.model_data = Template.compile(factory.message(
            time=m["time"], message="model_data_collection", severity=SEVERITY_INFO,
            properties={**base, "Request Id": m["request_id"], "Client Request Id": m["client_request_id"],
                        "Models": models, "Input": m["input"], "Prediction": m["prediction"], "Error": m["error"],
                        "Status Code": m["status_code"]},
            operation_id=m["operation_id"], parent_id=m["parent_id"], operation_name=m["operation_name"],
            sample_rate=m["sample_rate"]), rows.MODEL_DATA_ENVELOPE)
        m = markers(rows.OUTPUT_ENVELOPE)
        self.output = Template.compile(factory.message(
            time=m["time"], message=m["message"], severity=m["severity"],
            properties={**base, "Contents": m["contents"]}, operation_id=m["operation_id"],
            parent_id=m["parent_id"], operation_name=m["operation_name"],
            sample_rate=m["sample_rate"]), rows.OUTPUT_ENVELOPE)
        writer = rows_module(native)
        self._native = writer.Builder(
            self.request.pieces, self.request.members, self.model_data.pieces, self.model_data.members,
            self.output.pieces, self.output.members,
            {stream: (orjson.dumps(stream), severity) for stream, severity in SEVERITIES.items()}, inline_limit,
        ) if writer is not None else None

    @property
    def native(self) -> bool:
        """Whether the C writer (``_rows``) fills the common rows' envelopes."""
        return self._native is not None

    def config(self) -> dict[str, Any]:
        """What a :class:`Templates` in another process needs (see :meth:`from_config`)."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Templates:
        blobs = BlobStore(config["blobs_dir"]) if config.get("blobs_dir") else None
        return cls(config["ikey"], role=config["role"], role_instance=config["role_instance"],
                   base_properties=config["base_properties"], models=config["models"],
                   inline_limit=config["inline_limit"], blobs=blobs, native=config["native"])

    # -- rows to envelopes ---------------------------------------------------------------------------
    @staticmethod
    def frame(batch: list[tuple[Any, ...]]) -> bytes:
        """A batch of rows as one byte string: one C call, whatever the batch size."""
        return marshal.dumps(batch)

    def build(self, item: Any, pause: Callable[[], None] | None = None) -> list[bytes]:
        """Envelopes for one shipped item: a frame ``(rows.FRAME, frame, count)`` or ready bytes.
        ``pause`` is called between rows of a frame (the exporter process lets the scoring worker
        run there, see ``sidecar.Courtesy``)."""
        if isinstance(item, bytes):
            return [item]
        return self.rows(marshal.loads(item[1]), pause)

    def rows(self, batch: list[tuple[Any, ...]], pause: Callable[[], None] | None = None,
             on_error: Callable[[], None] | None = None) -> list[bytes]:
        """Envelopes for rows the request path recorded, in order; ``pause`` is called after every
        ``ROWS_PER_PAUSE`` of them. A row that cannot be built is skipped and reported to
        ``on_error`` (without one, its exception propagates)."""
        if self._native is not None:  # the same, with the common rows filled in C
            return self._native.rows(batch if batch.__class__ is list else list(batch), self._pending,
                                     self.row, pause, on_error, ROWS_PER_PAUSE)
        out: list[bytes] = []
        for start in range(0, len(batch), ROWS_PER_PAUSE):
            for row in batch[start:start + ROWS_PER_PAUSE]:
                try:
                    out.extend(self.row(row))
                except Exception:
                    if on_error is None:
                        raise
                    on_error()
            if pause is not None:
                pause()
        return out

    def row(self, row: tuple[Any, ...]) -> list[bytes]:
        """The envelopes of one row (none while a line is still being written)."""
        kind, size = row[rows.KIND], len(row)
        if kind == Request.TAG and size == Request.SIZE:
            return self._request(row)
        if kind == Text.CHUNK and size == Text.SIZE:
            return self._chunk(row)
        if kind == Text.LINE and size == Text.SIZE:  # a text and its newline
            return self._chunk(row) + self._newline(row[Text.STREAM], row[Text.THREAD])
        if kind == Newline.TAG and size == Newline.SIZE:
            return self._newline(row[Newline.STREAM], row[Newline.THREAD])
        raise ValueError(f"not a row: {row!r:.80}")

    def _chunk(self, row: tuple[Any, ...]) -> list[bytes]:
        """A text written to a stream: the lines it ends, its unfinished rest held until its end comes."""
        text = row[Text.TEXT]
        key = (row[Text.STREAM], row[Text.THREAD])
        begun = self._pending.pop(key, None)
        if begun is not None:  # the line began earlier: it keeps its first chunk's time and operation
            text, row = begun[0] + text, begun[1]
        if text.endswith("\n"):
            return self._line(text[:-1], row)
        if len(text) <= MAX_PENDING_CHARS:
            self._pending[key] = (text, row)
            return []
        return self._line(text, row)

    def _newline(self, stream: str, thread: int) -> list[bytes]:
        """Ends the line begun on ``stream`` by ``thread``, if one was."""
        begun = self._pending.pop((stream, thread), None)
        return [] if begun is None else self._line(*begun)

    def _request(self, row: tuple[Any, ...]) -> list[bytes]:
        """The request envelope of a :class:`~scorewatch.telemetry.rows.Request` row, and its model data's."""
        dumps = orjson.dumps  # a shorter name, for reading
        success = row[Request.SUCCESS]
        rate = sample_rate(row[Request.SAMPLE_RATE]) if success else None
        sample = dumps(rate) if rate is not None else None
        time = format_time(row[Request.START]).encode()
        operation_id = row[Request.OPERATION_ID].encode()
        span_id = row[Request.SPAN_ID].encode()
        name = dumps(row[Request.NAME])
        request_id, client_request_id = dumps(row[Request.REQUEST_ID]), dumps(row[Request.CLIENT_REQUEST_ID])
        caller = row[Request.CALLER]
        envelopes = [self.request.fill(
            time=time, operation_id=operation_id, caller=caller.encode() if caller else None, operation_name=name,
            id=span_id, name=name, url=dumps(row[Request.URL]),
            duration=format_duration(row[Request.DURATION_MS]).encode(),
            response_code=str(row[Request.STATUS]).encode(), success=dumps(success), request_id=request_id,
            client_request_id=client_request_id, sample_rate=sample)]
        if row[Request.MODEL_DATA]:
            prediction = dumps(self.payloads.value(row[Request.PREDICTION]))
            envelopes.append(self.model_data.fill(
                time=time, operation_id=operation_id, parent_id=span_id, operation_name=name, request_id=request_id,
                client_request_id=client_request_id, input=dumps(self.payloads.value(row[Request.INPUT])),
                prediction=prediction, error=None if success else prediction,
                status_code=None if success else str(row[Request.STATUS]).encode(), sample_rate=sample))
        return envelopes

    def _line(self, line: str, row: tuple[Any, ...]) -> list[bytes]:
        """The ``STDOUT``/``STDERR`` envelope of a line that ``row`` began (none for a blank line)."""
        if not line or line.isspace():
            return []
        contents: Any = line if len(line) <= self.payloads.inline_chars else self.payloads.value(line)
        if contents.__class__ is str and len(contents) <= self.payloads.limit and contents.lstrip()[:1] in ("{", "["):
            with contextlib.suppress(orjson.JSONDecodeError):  # printed JSON is kept as a nested object, for KQL
                contents = orjson.loads(contents)
        operation_id = row[Text.OPERATION_ID]
        stream = row[Text.STREAM]
        rate = sample_rate(row[Text.SAMPLE_RATE])
        return [self.output.fill(
            time=format_time(row[Text.TIME]).encode(),
            operation_id=operation_id.encode() if operation_id else None,
            parent_id=row[Text.PARENT_ID].encode() if operation_id and row[Text.PARENT_ID] else None,
            operation_name=orjson.dumps(row[Text.OPERATION_NAME]) if operation_id and row[Text.OPERATION_NAME] else None,
            message=orjson.dumps(stream), severity=b"%d" % SEVERITIES.get(stream, SEVERITY_WARNING),
            contents=orjson.dumps(contents), sample_rate=orjson.dumps(rate) if rate is not None else None)]
