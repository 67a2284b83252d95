"""``azureml.monitoring`` inside a scoring service: ``ModelDataCollector`` recording into our telemetry.

Azure ML v1 entry scripts do::

    from azureml.monitoring import ModelDataCollector
    inputs_dc = ModelDataCollector("best_model", designation="inputs", feature_names=["a", "b"])
    ...
    correlation = inputs_dc.collect(data)

Each ``collect`` becomes a ``traces`` row with message ``model_data_collector``, correlated with the
request being served (its ``operation_Id`` and ``Request Id``); the row shape is in
``docs/model-data.md``. Without monitoring, ``collect`` records nothing and still returns the dict.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from scorewatch.telemetry import api
from scorewatch.telemetry.context import current_operation

DESIGNATIONS = ("inputs", "predictions", "labels", "signals", "general", "default")


def to_json_text(data: Any) -> str:
    """Collected data as JSON text: DataFrames as records, numpy arrays as lists, anything else as is."""
    if hasattr(data, "to_json") and hasattr(data, "columns"):  # a pandas DataFrame
        return str(data.to_json(orient="records", date_format="iso"))
    if hasattr(data, "tolist"):  # numpy arrays and scalars
        data = data.tolist()
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    return orjson.dumps(data, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode()


class ModelDataCollector:
    """Collects a model's inputs or predictions (``designation``; ``identifier`` is its older name)."""

    def __init__(self, model_name: str, designation: str = "default", feature_names: list[str] | None = None,
                 workspace: str = "default/default/default", debug: bool = False,
                 model_version: str = "Unknown", identifier: str | None = None, **kwargs: Any) -> None:
        if identifier is not None:
            designation = identifier
        self.model_name = model_name
        self.designation = designation
        self.feature_names = list(feature_names) if feature_names is not None else None
        self.workspace = workspace
        self.model_version = str(model_version)
        self.debug = debug
        self.collection_name = kwargs.get("collection_name", designation)

    def collect(self, input_data: Any, user_correlation_id: str = "") -> dict[str, str]:
        """Record ``input_data``; returns the correlation dict (``RequestId``, ``CorrelationId``,
        ``UserCorrelationId``) to pass on to a predictions collector or a caller."""
        operation = current_operation.get()
        request_id = operation.request_id if operation is not None else ""
        correlation = {"RequestId": request_id,
                       "CorrelationId": operation.operation_id if operation is not None else uuid.uuid4().hex,
                       "UserCorrelationId": str(user_correlation_id or "")}
        recorder = api.active_recorder()
        trace = getattr(recorder, "trace", None)
        if trace is not None:
            data = to_json_text(input_data)
            trace("model_data_collector", {
                "Request Id": request_id,
                "Client Request Id": operation.client_request_id if operation is not None else "",
                "Model Name": self.model_name, "Model Version": self.model_version,
                "Designation": self.designation, "Collection Name": self.collection_name,
                "Feature Names": orjson.dumps(self.feature_names).decode() if self.feature_names else "",
                "Correlation Id": correlation["CorrelationId"],
                "User Correlation Id": correlation["UserCorrelationId"], "Data": data}, len(data))
        return correlation

    def add_correlations(self, input_data: Any, correlations: dict[str, str]) -> Any:
        """Azure's helper to attach correlation columns; the data is returned unchanged here, the
        correlation travels on the row instead."""
        return input_data
