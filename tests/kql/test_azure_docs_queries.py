"""Every query from the Azure ML monitoring documentation runs unchanged and answers right."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.kql.conftest import run

DOCS = [
    ('traces | where customDimensions contains "input" | limit 10 | project message',
     [("model_data_collection",)]),
    ('traces | where message == "model_data_collection" | extend input = customDimensions.Input | take 5 '
     "| project input", [('{"data": [[1, 2]]}',)]),
    ("requests | where success == false | project timestamp, name, resultCode, duration",
     [(datetime(2024, 5, 1, 10, 28, 4), "POST /score", "500", 45.0),
      (datetime(2024, 5, 1, 10, 56, 8), "POST /score", "500", 85.0)]),
    ("requests | summarize avg(duration) by bin(timestamp, 1h)", [(datetime(2024, 5, 1, 10), 60.0)]),
    ("exceptions | where timestamp > ago(1d) | project timestamp, type, outerMessage",
     [(datetime(2024, 5, 1, 11, 30), "ValueError", "bad value")]),
    ("requests | summarize count() by resultCode", [("200", 8), ("500", 2)]),
    ("dependencies | where success == false | project target, resultCode", [("db.local", "500")]),
    ("requests | summarize percentiles(duration, 50, 95, 99) by cloud_RoleName",
     [("svc1", 35.0, 75.0, 75.0), ("svc0", 45.0, 85.0, 85.0), ("svc9", 95.0, 95.0, 95.0),
      (None, 105.0, 105.0, 105.0)]),
    ('traces | where message == "model_data_collection" | project customDimensions["Request Id"], '
     "customDimensions.Prediction", [("rid-1", "[3]")]),
    ("requests | summarize count() by bin(timestamp, 5m) | count", [(9,)]),
]


@pytest.mark.parametrize(("kql", "expected"), DOCS, ids=[d[0][:60] for d in DOCS])
def test_azure_ml_monitoring_queries(con, kql, expected):
    assert sorted(run(con, kql), key=repr) == sorted(expected, key=repr)
