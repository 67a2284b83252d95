"""What builds envelopes in the scoring worker, on its telemetry thread (never on the request path).

The processor hands :class:`EnvelopeBuilder` one record at a time (see ``rows.RECORD_*``). Rows, the
common items, are built by :class:`~scorewatch.telemetry.templates.Templates`: in the exporter
process, which gets them as they are in one marshal frame per batch (:meth:`EnvelopeBuilder.pack`),
or here when exporting in-process (:meth:`EnvelopeBuilder.build`). A row whose payloads are over the
inline limit has them moved to blobs here first, so 10 MiB never crosses the pipe. The rarer kinds
(exceptions, logs, outgoing calls, events, metrics, collector traces) are built here by the
:class:`~scorewatch.telemetry.envelopes.EnvelopeFactory`, serialized, and shipped as they are
(exceptions and spans do not cross a pipe).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from scorewatch.telemetry import dependencies, rows
from scorewatch.telemetry.blobs import Payloads
from scorewatch.telemetry.context import Operation
from scorewatch.telemetry.envelopes import (
    SEVERITY_ERROR,
    SEVERITY_INFO,
    EnvelopeFactory,
    format_duration,
    format_time,
    sample_rate,
    severity_for_level,
)
from scorewatch.telemetry.processor import Record
from scorewatch.telemetry.rows import Request
from scorewatch.telemetry.templates import Templates


class EnvelopeBuilder:
    """Records to serialized envelopes, for one service."""

    def __init__(self, factory: EnvelopeFactory, templates: Templates, payloads: Payloads,
                 base_properties: Mapping[str, str]) -> None:
        self.factory = factory
        self.templates = templates
        self.payloads = payloads
        self.base_properties = dict(base_properties)
        self._build: dict[str, Callable[..., list[Any]]] = {rows.RECORD_ROWS: self._rows, rows.RECORD_LARGE: self._large, rows.RECORD_LOG: self._log,
                       rows.RECORD_EXCEPTION: self._exception, rows.RECORD_SPAN: self._span,
                       rows.RECORD_DEPENDENCY: self._dependency, rows.RECORD_EVENT: self._event,
                       rows.RECORD_METRIC: self._metric, rows.RECORD_TRACE: self._trace}

    def build(self, record: Record) -> list[bytes]:
        """The serialized envelopes of one record (when exporting in-process)."""
        built = self._build[record[0]](*record[2:])
        return [item if isinstance(item, bytes) else orjson.dumps(item) for item in built]

    def pack(self, record: Record) -> list[Any]:
        """What the exporter process gets for one record: its rows, in one frame (it builds their
        envelopes), or the serialized envelopes of any other record."""
        if record[0] == rows.RECORD_ROWS:
            return [(rows.FRAME, Templates.frame(record[2]), len(record[2]))]
        if record[0] == rows.RECORD_LARGE:
            return [(rows.FRAME, Templates.frame([self.with_blobs(record[2])]), 1)]
        return self.build(record)

    def with_blobs(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """A request row with its payloads as the row keeps them: text, or blob markers when large.
        A long printed chunk is left to the templates, which put its line together first."""
        if row[rows.KIND] != Request.TAG or not row[Request.MODEL_DATA]:
            return row
        values = list(row)
        values[Request.INPUT] = self.payloads.value(row[Request.INPUT])
        values[Request.PREDICTION] = self.payloads.value(row[Request.PREDICTION])
        return tuple(values)

    # -- one method per record kind ------------------------------------------------------------------
    def _rows(self, batch: list[tuple[Any, ...]]) -> list[bytes]:
        return self.templates.rows(batch)

    def _large(self, row: tuple[Any, ...]) -> list[bytes]:
        return self.templates.rows([self.with_blobs(row)])

    def _log(self, when: float, message: str, levelno: int, props: dict[str, Any], op: Operation | None,
             rate: float) -> list[dict[str, Any]]:
        value = self.payloads.value(message)
        if not isinstance(value, str):  # a log line over the inline limit: its marker, and a preview
            props = {**props, "Message": value}
            value = value["preview"]
        return [self.factory.message(time=format_time(when), message=value, severity=severity_for_level(levelno),
                                     properties={**self.base_properties, **props}, sample_rate=sample_rate(rate),
                                     **_operation_fields(op))]

    def _exception(self, when: float, exc: BaseException, op: Operation | None, during: str,
                   props: dict[str, Any]) -> list[dict[str, Any]]:
        properties = {**self.base_properties, **props, "During": during}
        return [self.factory.exception(time=format_time(when), exc=exc, properties=properties,
                                       severity=SEVERITY_ERROR, **_operation_fields(op))]

    def _span(self, span: Any, op: Operation | None, rate: float) -> list[dict[str, Any]]:
        fields = dependencies.describe(span)
        parent = op.parent_id if op is not None and op.operation_id == fields["trace_id"] else None
        return [self.factory.dependency(
            time=format_time(fields["start"]), id=fields["id"], name=fields["name"], type=fields["type"],
            target=fields["target"], data=fields["data"], duration=format_duration(fields["duration_ms"]),
            result_code=fields["result_code"], success=fields["success"], properties=self.base_properties,
            operation_id=fields["trace_id"], parent_id=fields["parent_span_id"] or parent,
            operation_name=op.name if op else None, sample_rate=sample_rate(rate))]

    def _dependency(self, f: dict[str, Any], op: Operation | None, rate: float) -> list[dict[str, Any]]:
        return [self.factory.dependency(
            time=format_time(f["start"]), id=f["id"], name=f["name"], type=f["type"], target=f["target"],
            data=f["data"], duration=format_duration(f["duration_ms"]), result_code=f["result_code"],
            success=f["success"], properties={**self.base_properties, **f["properties"]},
            sample_rate=sample_rate(rate), **_operation_fields(op, with_ids=True))]

    def _event(self, when: float, name: str, props: Mapping[str, Any], measurements: Mapping[str, float],
               op: Operation | None) -> list[dict[str, Any]]:
        return [self.factory.event(time=format_time(when), name=name, properties={**self.base_properties, **props},
                                   measurements=measurements, **_operation_fields(op))]

    def _metric(self, when: float, name: str, value: float, props: Mapping[str, Any],
                op: Operation | None) -> list[dict[str, Any]]:
        return [self.factory.metric(time=format_time(when), name=name, value=value,
                                    properties={**self.base_properties, **props}, **_operation_fields(op))]

    def _trace(self, when: float, message: str, props: Mapping[str, Any], op: Operation | None) -> list[dict[str, Any]]:
        properties = {**self.base_properties,
                      **{k: self.payloads.value(v) if isinstance(v, str | bytes) else v for k, v in props.items()}}
        return [self.factory.message(time=format_time(when), message=message, severity=SEVERITY_INFO,
                                     properties=properties, **_operation_fields(op))]


def _operation_fields(op: Operation | None, *, with_ids: bool = False) -> dict[str, Any]:
    """The operation tags of an item recorded while ``op`` was running (with ``with_ids``, the
    dependency factory's required ids too, None outside a request)."""
    if op is None:
        return {"operation_id": None, "parent_id": None} if with_ids else {}
    return {"operation_id": op.operation_id, "parent_id": op.parent_id, "operation_name": op.name or None}
