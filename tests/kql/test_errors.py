"""KQL errors point at the offending text and suggest the closest names."""

from __future__ import annotations

import pytest

from scorewatch.errors import BadRequest
from scorewatch.kql import KqlError, compile_query


def error_of(kql: str) -> KqlError:
    with pytest.raises(KqlError) as info:
        compile_query(kql)
    return info.value


def test_unknown_operator_is_a_syntax_error_with_caret_and_suggestion():
    err = error_of("requests | wher duration > 1")
    assert err.kind == "SyntaxError"
    assert (err.line, err.column, err.length) == (1, 12, 4)
    assert "did you mean 'where'" in err.message
    assert err.render().splitlines()[1:] == ["  requests | wher duration > 1", "             ^^^^"]


def test_unknown_column_suggests_the_closest():
    err = error_of("requests | where durration > 1")
    assert err.kind == "SemanticError"
    assert "unknown column 'durration'" in err.message and "'duration'" in err.message
    assert (err.column, err.length) == (18, 9)


def test_unknown_table_suggests_the_closest():
    err = error_of("request | count")
    assert "unknown table 'request'" in err.message and "'requests'" in err.message
    assert (err.line, err.column, err.length) == (1, 1, 7)


def test_unknown_function_suggests_the_closest():
    err = error_of("requests | extend x = tolowr(name)")
    assert "unknown function 'tolowr'" in err.message and "'tolower'" in err.message
    assert err.column == 23


def test_error_on_a_later_line_points_at_that_line():
    err = error_of("requests\n| where success\n| project nme")
    assert (err.line, err.column, err.length) == (3, 11, 3)
    assert err.snippet == "| project nme"
    assert err.render().endswith("  | project nme\n            ^^^")


@pytest.mark.parametrize("kql", [
    'requests | where name == "unterminated',
    "requests | where (duration > 1",
    "requests | take",
    "requests | summarize",
    "requests | sort duration",
    "requests | join kind=sideways (traces) on id",
    "requests | where x == 1ly",
    "requests | project a = ",
    "requests | where name == \"a\" garbage",
    "| count",
    "",
    "requests | extend x = dynamic({bad json})",
    "requests | where timestamp > datetime(yesterday)",
    "requests | render timechart | count",
    "requests | extend c = count()",
    "requests | summarize count() by bin(timestamp, x)",
    "requests | summarize duration",
    "requests | summarize percentile(duration, 101)",
    "requests | summarize percentiles(duration, 50, -1)",
    "requests | project-away nosuch",
    "requests | where name has tostring(id)",
    "requests | where success + 1 > 0",
    "requests | where 'a' - 1 > 0",
    "requests | extend x = substring()",
    "requests | mv-expand tostring(1) + 'a'",
    "let requests = traces; requests",
    "requests | project ['a\" FROM x --']",
    "requests | take -1",
    "requests | extend Name = name",
    "requests | project a = 1, A = 2",
    "requests | top -2 by duration",
    "requests | project id | project-away id",
    "requests | project x = customDimensions['a\"b'][-1]",
    "requests | make-series count() on name step 1h",
    "requests | make-series count() on timestamp step 0s",
    "requests | make-series count() on timestamp step x",
    "requests | make-series percentiles(duration, 50, 90) on timestamp step 1h",
    "requests | make-series tostring(1) on timestamp step 1h",
    "requests | make-series kind=nonempty count() on timestamp step 1h",
    "requests | make-series count() on timestamp in range(ago(1h), now(), 1m)",
    "requests | make-series count() on timestamp from 5 step 1h",
    "requests | make-series count() step 1h",
    "requests | extend series_stats(customDimensions) + 1",
    "print series_fir(dynamic([1]), dynamic([1, -1]))",
    "print x = dynamic([1])[1.5]",
])
def test_bad_queries_raise_kql_errors_not_crashes(kql):
    err = error_of(kql)
    assert isinstance(err, BadRequest) and err.status == 400
    body = err.to_dict()
    assert set(body) == {"code", "message", "line", "column", "length", "snippet"}
    assert body["code"] in ("SyntaxError", "SemanticError")
    assert err.render().startswith(err.message)


@pytest.mark.parametrize(("kql", "operator"), [
    ("requests | evaluate bag_unpack(customDimensions)", "evaluate"),
    ("requests | lookup (exceptions) on operation_Id", "lookup"),
    ("requests | mv-apply x = customDimensions on (take 1)", "mv-apply"),
    ("requests | top-nested 3 of name by count()", "top-nested"),
    ("range x from 1 to 3 step 1", "range"),
    ("datatable(a: long) [1, 2]", "datatable"),
])
def test_kql_operators_not_built_yet_say_so(kql, operator):
    err = error_of(kql)
    assert err.message == f"operator '{operator}' is not supported yet"
    assert "did you mean" not in err.render()
    column = kql.index(operator) + 1
    assert (err.column, err.length) == (column, len(operator))


def test_error_survives_a_round_trip_through_json():
    err = error_of("requests\n| where durration > 1")
    again = KqlError.from_dict(err.to_dict())
    assert again.render() == err.render()
    assert again.kind == err.kind and again.status == 400
