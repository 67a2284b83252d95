"""Application scoping: every table a query touches is filtered to one app, and nothing widens it."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.kql.conftest import run

SCOPED = [
    ("requests | count", 1),
    ("union requests, traces | count", 1),
    ("let t = requests; t | count", 1),
    ('search "score" | count', 1),
    ("requests | join kind=inner (requests) on id | count", 1),
    ("requests | join kind=leftouter (union requests, traces) on operation_Id | count", 1),
    ("requests | union (requests | where true) | count", 2),
    ('requests | where appId == "app1" or true | count', 1),
    ("requests | as r | join kind=inner (r) on id | count", 1),
    ("requests | where operation_Id in (union requests, traces | project operation_Id) | count", 1),
    ('requests | where name == "x\' OR 1=1 --" | count', 0),
    ("requests | where appId != \"app2\" | count", 0),
    ("requests | make-series n = count() on timestamp step 1d | mv-expand n | summarize sum(toint(n))", 1),
]


@pytest.mark.parametrize(("kql", "expected"), SCOPED)
def test_queries_see_only_their_application(con, kql, expected):
    assert run(con, kql, app_id="app2") == [(expected,)]


def test_app1_sees_its_own_rows(con):
    assert run(con, "requests | count", app_id="app1") == [(9,)]
    assert run(con, "requests | count", app_id="nobody") == [(0,)]


def test_timespan_limits_every_table(con):
    span = (datetime(2024, 5, 1, 10, 0), datetime(2024, 5, 1, 10, 20))
    assert run(con, "requests | count", app_id="app1", timespan=span) == [(3,)]
    assert run(con, "union requests, exceptions | count", app_id="app1", timespan=span) == [(3,)]


def test_several_applications_are_scoped_together_and_none_sees_nothing(con):
    # The studio scopes a session that opens several applications with one query.
    assert run(con, "requests | count", app_id=("app1", "app2")) == [(10,)]
    assert run(con, "union requests, traces | count", app_id=["app2", "nobody"]) == [(1,)]
    assert run(con, "requests | count", app_id=()) == [(0,)]
    assert run(con, 'requests | where appId == "app2" | count', app_id=("app1",)) == [(0,)]
