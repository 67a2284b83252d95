"""ModelDataCollector (azureml.monitoring) and Collector (azureml.ai.monitoring) inside a request."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scorewatch.telemetry.azureml_ai_monitoring import BasicCorrelationContext, Collector
from scorewatch.telemetry.azureml_monitoring import ModelDataCollector
from tests.telemetry.test_monitor import items, monitor, new_op, serve, settings  # noqa: F401


def test_model_data_collector_rows_are_correlated(monitor):  # noqa: F811
    op = new_op()
    results = []

    def work():
        inputs = ModelDataCollector("ridge", identifier="inputs", feature_names=["a", "b"], model_version=3)
        preds = ModelDataCollector("ridge", designation="predictions")
        results.append(inputs.collect(np.array([[1, 2], [3, 4]])))
        results.append(preds.collect([0.5, 0.7], user_correlation_id="u-1"))

    serve(monitor, op, work)
    rows = items(monitor, "MessageData", "model_data_collector")
    props = sorted((r["data"]["baseData"]["properties"] for r in rows), key=lambda p: p["Designation"])
    assert [p["Designation"] for p in props] == ["inputs", "predictions"]
    assert props[0]["Data"] == "[[1,2],[3,4]]" and props[0]["Feature Names"] == '["a","b"]'
    assert props[0]["Model Version"] == "3" and props[1]["User Correlation Id"] == "u-1"
    assert all(p["Request Id"] == "req-1" and p["Service Name"] == "svc" for p in props)
    assert all(r["tags"]["ai.operation.id"] == op.operation_id for r in rows)
    assert results[0] == {"RequestId": "req-1", "CorrelationId": op.operation_id, "UserCorrelationId": ""}


def test_collector_joins_inputs_and_outputs_by_correlation_id(monitor):  # noqa: F811
    op = new_op()

    def work():
        context = Collector(name="model_inputs").collect(pd.DataFrame({"x": [1.0, 2.0]}))
        Collector(name="model_outputs").collect(pd.DataFrame({"y": [3]}), context)

    serve(monitor, op, work)
    rows = [r["data"]["baseData"]["properties"] for r in items(monitor, "MessageData", "collector")]
    by_name = {p["Collector Name"]: p for p in rows}
    assert by_name["model_inputs"]["Data"] == '[{"x":1.0},{"x":2.0}]'
    assert by_name["model_outputs"]["Correlation Id"] == by_name["model_inputs"]["Correlation Id"] == "req-1"
    assert by_name["model_inputs"]["Rows"] == "2" and by_name["model_outputs"]["Columns"] == "y"


def test_collector_rejects_non_frames_or_reports_to_on_error():
    with pytest.raises(TypeError, match="DataFrame"):
        Collector(name="c").collect([1, 2])
    errors = []
    context = Collector(name="c", on_error=errors.append).collect({"a": 1}, BasicCorrelationContext(id="k"))
    assert context.get_id() == "k" and isinstance(errors[0], TypeError)


def test_collectors_work_without_monitoring():
    assert ModelDataCollector("m").collect([1])["UserCorrelationId"] == ""
    assert Collector(name="c").collect(pd.DataFrame({"a": [1]})).get_id()
