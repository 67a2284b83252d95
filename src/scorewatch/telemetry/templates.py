"""Serialized envelopes for the records every request produces: the request, its model data, prints.

They are built from plain tuples (:data:`RequestRow`, :data:`OutputRow`) straight into JSON with
f-string templates, which is several times cheaper than dicts through the factory: user-controlled
text always goes through orjson (so it is escaped); ids are hex. The tuples are picklable, so the
same templates run in the service's telemetry thread or in the exporter process
(``scorewatch.telemetry.sidecar``). ``tests/telemetry/test_envelopes.py`` checks them against
:class:`~scorewatch.telemetry.envelopes.EnvelopeFactory`.
"""

from __future__ import annotations

import contextlib
import marshal
from collections.abc import Mapping
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

# What the request path records, as plain tuples (marshal-able: str, bytes, float, int, bool, None),
# shipped in batches (:meth:`Templates.frame`) and turned into envelopes by :meth:`Templates.raw`:
#   ("r", *RequestRow) with input/prediction still raw (bytes | str | marker dict | None);
#   ("o", time, stream, chunk, thread_id, operation_id | None, parent_id, operation_name, sample_rate):
#       one write() to stdout/stderr; lines are put together here, per stream and thread.
MAX_PENDING_CHARS = 64 * 1024


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class Templates:
    """The per-request envelopes of one service."""

    def __init__(self, instrumentation_key: str, *, role: str, role_instance: str,
                 base_properties: Mapping[str, str], models: str, inline_limit: int = 64 * 1024,
                 blobs: BlobStore | None = None) -> None:
        self.inline_limit = inline_limit
        self.blobs = blobs
        self._pending: dict[tuple[str, int], str] = {}  # unfinished printed lines
        factory = EnvelopeFactory(instrumentation_key, role=role, role_instance=role_instance)
        self._ikey = _json(instrumentation_key)
        self._request_name = _json(factory.request_name)
        self._message_name = _json(factory.message_name)
        self._tags = _json(factory.base_tags)[1:-1]
        self._base_props = _json(dict(base_properties))[1:-1]
        self._props_head = self._base_props + "," if self._base_props else ""  # members, then a comma
        self._models = _json(models)
        self._names: dict[str, str] = {}

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

    def _name(self, name: str) -> str:
        cached = self._names.get(name)
        if cached is None:
            cached = _json(name)
            if len(self._names) < 64:  # a handful of operation names ("POST /score", "GET /score")
                self._names[name] = cached
        return cached

    def request(self, row: RequestRow) -> list[bytes]:
        (start, operation_id, span_id, caller, name, url, duration_ms, status, success, request_id,
         client_request_id, input_value, prediction, rate, model_data) = row
        ids = f'"Request Id":{_json(request_id)},"Client Request Id":{_json(client_request_id)}'
        parent_tag = f',"ai.operation.parentId":"{caller}"' if caller else ""
        name = self._name(name)
        sample = f',"sampleRate":{float(rate)!r}' if success and rate < 100.0 else ""
        head = (f'"time":"{format_time(start)}","iKey":{self._ikey},"tags":{{{self._tags},'
                f'"ai.operation.id":"{operation_id}"')
        out = [(f'{{"name":{self._request_name},{head}{parent_tag},"ai.operation.name":{name}}},'
                f'"data":{{"baseType":"RequestData","baseData":{{"ver":2,"id":"{span_id}","name":{name},'
                f'"url":{_json(url)},"duration":"{format_duration(duration_ms)}",'
                f'"responseCode":"{int(status)}","success":{"true" if success else "false"},'
                f'"properties":{{{self._props_head}{ids}}}}}}}{sample}}}').encode()]
        if model_data:
            prediction = _json(prediction)
            data = (f'{{{self._props_head}{ids},"Models":{self._models},"Input":{_json(input_value)},'
                    f'"Prediction":{prediction}')
            if not success:
                data = f'{data},"Error":{prediction},"Status Code":"{int(status)}"'
            out.append((f'{{"name":{self._message_name},{head},"ai.operation.parentId":"{span_id}",'
                        f'"ai.operation.name":{name}}},"data":{{"baseType":"MessageData","baseData":{{"ver":2,'
                        f'"message":"model_data_collection","severityLevel":{SEVERITY_INFO},'
                        f'"properties":{data}}}}}}}{sample}}}').encode())
        return out

    def output(self, row: OutputRow) -> list[bytes]:
        when, stream, contents, operation_id, parent_id, operation_name, rate, inline_limit = row
        if isinstance(contents, str) and len(contents) <= inline_limit and (
                contents[:1] in ("{", "[") or contents.lstrip()[:1] in ("{", "[")):
            # Printed JSON is kept as a nested object, so KQL can reach into it.
            with contextlib.suppress(orjson.JSONDecodeError):
                contents = orjson.loads(contents)
        tags = self._tags
        if operation_id:
            tags = f'{tags},"ai.operation.id":"{operation_id}","ai.operation.parentId":"{parent_id}"'
            if operation_name:
                tags = f'{tags},"ai.operation.name":{self._name(operation_name)}'
        severity = SEVERITY_INFO if stream == "STDOUT" else SEVERITY_WARNING
        sample = f',"sampleRate":{float(rate)!r}' if rate < 100.0 else ""
        return [(f'{{"name":{self._message_name},"time":"{format_time(when)}","iKey":{self._ikey},"tags":{{{tags}}},'
                 f'"data":{{"baseType":"MessageData","baseData":{{"ver":2,"message":{_json(stream)},'
                 f'"severityLevel":{severity},"properties":{{{self._props_head}"Contents":{_json(contents)}}}'
                 f'}}}}{sample}}}').encode()]

    def _value(self, value: Any) -> Any:
        return value if isinstance(value, dict) else inline_or_blob(value, self.inline_limit, self.blobs)

    def raw(self, row: tuple[Any, ...]) -> list[bytes]:
        """Envelopes for one row the request path recorded (see the module's row shapes)."""
        if row[0] == "r":
            if row[15]:  # model data: the payloads as rows keep them (inline text, or a blob marker)
                row = (*row[1:12], self._value(row[12]), self._value(row[13]), row[14], True)
            else:
                row = row[1:]
            return self.request(row)  # type: ignore[arg-type]
        _, when, stream, chunk, thread, operation_id, parent_id, name, rate = row
        key = (stream, thread)
        pending = self._pending.pop(key, "")
        if not chunk.endswith("\n"):
            pending += chunk
            if len(pending) <= MAX_PENDING_CHARS:  # a line without end must not grow forever
                self._pending[key] = pending
                return []
            line = pending
        else:
            line = (pending + chunk)[:-1] if pending else chunk[:-1]
        if not line.strip():
            return []
        contents = self._value(line) if len(line) > self.inline_limit // 4 else line
        return self.output((when, stream, contents, operation_id, parent_id, name, rate, self.inline_limit))

    @staticmethod
    def frame(rows: list[tuple[Any, ...]]) -> bytes:
        """A batch of rows as one byte string: one C call, whatever the batch size."""
        return marshal.dumps(rows)

    def build(self, item: Any) -> list[bytes]:
        """Envelopes for one shipped item: ``("F", frame, count)``, ``("R", RequestRow)``,
        ``("O", OutputRow)`` or ready bytes."""
        if isinstance(item, bytes):
            return [item]
        kind, row = item[0], item[1]
        if kind == "F":
            out: list[bytes] = []
            for raw in marshal.loads(row):
                out.extend(self.raw(raw))
            return out
        return self.request(row) if kind == "R" else self.output(row)
