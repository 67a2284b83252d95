"""``azureml.ai.monitoring`` inside a scoring service: ``Collector`` recording into our telemetry.

Azure ML v2 entry scripts do::

    from azureml.ai.monitoring import Collector
    inputs_collector = Collector(name="model_inputs")
    outputs_collector = Collector(name="model_outputs")
    context = inputs_collector.collect(input_df)          # a pandas DataFrame
    outputs_collector.collect(output_df, context)

Each ``collect`` becomes a ``traces`` row with message ``collector`` (shape in ``docs/model-data.md``)
carrying the correlation id, so inputs and outputs of one request join on it, and the request's
``operation_Id``. The correlation id is the request's ``x-request-id``, as on Azure.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from scorewatch.telemetry import api
from scorewatch.telemetry.azureml_monitoring import to_json_text
from scorewatch.telemetry.context import current_operation


class BasicCorrelationContext:
    """The correlation between collections: an id (and optional headers)."""

    def __init__(self, id: str | None = None, timestamp: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.id = id or str(uuid.uuid4())
        self.timestamp = timestamp
        self.headers = dict(headers or {})

    def get_id(self) -> str:
        return self.id

    def get_timestamp(self) -> int | None:
        return self.timestamp

    def get_headers(self) -> dict[str, str]:
        return self.headers


class Collector:
    """Collects DataFrames under ``name``; errors are passed to ``on_error`` (or raised)."""

    def __init__(self, *, name: str, on_error: Callable[[Exception], Any] | None = None, **kwargs: Any) -> None:
        if not name:
            raise ValueError("Collector needs a name")
        self.name = name
        self.on_error = on_error

    def collect(self, data: Any, correlation_context: BasicCorrelationContext | None = None
                ) -> BasicCorrelationContext:
        operation = current_operation.get()
        if correlation_context is None:
            correlation_context = BasicCorrelationContext(id=operation.request_id if operation else None)
        try:
            if not (hasattr(data, "to_json") and hasattr(data, "columns")):
                raise TypeError(f"Collector.collect takes a pandas DataFrame, not {type(data).__name__}")
            recorder = api.active_recorder()
            trace = getattr(recorder, "trace", None)
            if trace is not None:
                text = to_json_text(data)
                trace("collector", {
                    "Collector Name": self.name, "Correlation Id": correlation_context.get_id(),
                    "Request Id": operation.request_id if operation is not None else "",
                    "Client Request Id": operation.client_request_id if operation is not None else "",
                    "Rows": str(len(data)), "Columns": ",".join(map(str, data.columns)), "Data": text},
                    len(text))
        except Exception as exc:
            if self.on_error is None:
                raise
            self.on_error(exc)
        return correlation_context
