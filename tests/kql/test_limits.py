"""Hostile queries: every one is a 400 that names the position, never a 500 or a stall. Sizes past the
limits are "query too complex"; out-of-range literals name the literal."""

from __future__ import annotations

import time

import pytest

from scorewatch.kql import KqlError, compile_query
from scorewatch.kql.compiler import MAX_READS
from scorewatch.kql.parser import MAX_DEPTH, MAX_NESTING


def error_of(kql: str) -> KqlError:
    with pytest.raises(KqlError) as info:
        compile_query(kql, app_id="app1")
    return info.value


def doubling_lets(n: int) -> str:
    return "let t0 = traces; " + " ".join(f"let t{i} = t{i - 1} | union t{i - 1};" for i in range(1, n + 1)) \
        + f" t{n} | count"


def test_a_let_used_many_times_compiles_once_and_a_doubling_chain_is_refused_at_once() -> None:
    compiled = compile_query(doubling_lets(7), app_id="app1")  # 128 reads: allowed, compiled once each
    assert compiled.sql.startswith("WITH ") and compiled.sql.count('FROM "traces"') == 1
    started = time.monotonic()
    err = error_of(doubling_lets(10))  # 259 bytes; was 16 s of compiling on the event loop
    assert time.monotonic() - started < 2
    assert err.message.startswith("query too complex") and str(MAX_READS) in err.message
    assert err.snippet[err.column - 1:err.column + 1] == "t8"  # the use that passes the limit


def test_a_let_that_refers_to_itself_is_an_error() -> None:
    err = error_of("let t = traces; let t = t | take 1; t")
    assert "refers to itself" in err.message and err.column == 25


@pytest.mark.parametrize(("kql", "what"), [
    ("print x = " + "(" * 90 + "1" + ")" * 90, f"more than {MAX_NESTING} nested levels"),
    ("print x = " + "-" * 1000 + "1", f"more than {MAX_NESTING} nested levels"),
    ("traces" + " | where 1 == 1" * 160, f"more than {MAX_DEPTH} levels"),
    ("traces | extend x = " + " + ".join(["1"] * 300), f"more than {MAX_DEPTH} levels"),
])
def test_queries_past_the_size_limits_are_too_complex_with_a_position(kql: str, what: str) -> None:
    err = error_of(kql)
    assert err.message.startswith("query too complex") and what in err.message
    assert err.kind == "SyntaxError" and 1 <= err.column <= len(kql)


def test_long_or_and_chains_are_not_too_complex() -> None:
    ors = " or ".join(f"message == 'm{i}'" for i in range(400))  # a 160-term chain was a RecursionError
    compiled = compile_query(f"traces | where {ors} and (severityLevel > 1 or severityLevel < 0)", app_id="a")
    assert compiled.sql.count("'m399'") == 1


@pytest.mark.parametrize(("kql", "literal", "message"), [
    ("print x = -9223372036854775809", "-9223372036854775809", "range of long"),
    ("print x = 9223372036854775808", "9223372036854775808", "range of long"),
    ("traces | take 99999999999999999999", "99999999999999999999", "range of long"),
    ("print x = 1e999", "1e999", "range of real"),
    ("print x = 99999999d", "99999999d", "range of timespan"),
    ("print x = timespan(99999999999.00:00:00)", "timespan(99999999999.00:00:00)", "range of timespan"),
    ("print x = 'a\\ud800b'", "\\ud800", "lone surrogate"),
])
def test_out_of_range_literals_name_the_literal(kql: str, literal: str, message: str) -> None:
    err = error_of(kql)
    assert message in err.message
    assert err.snippet[err.column - 1:err.column - 1 + err.length] == literal


def test_datetimes_past_the_calendar_are_a_position_not_a_crash() -> None:
    err = error_of("print ago(10000000d)")
    assert "ago() goes past" in err.message and err.column == 11
    assert error_of("print now(-3650000d)").column == 11


def test_edges_that_are_fine() -> None:
    assert "-9223372036854775808" in compile_query("print x = -9223372036854775808").sql
    assert compile_query("print x = '\\ud83d\\ude00'").sql.count("\U0001F600") == 1  # a surrogate pair


def test_text_that_is_not_unicode_is_refused() -> None:
    err = error_of("traces | where message == 'a\udcffb'")  # what undecodable command-line bytes become
    assert "lone surrogate" in err.message and err.column == 29


def test_a_recursion_the_limits_did_not_foresee_is_still_an_answer() -> None:
    import sys

    kql = "traces" + " | extend x = 1" * 30
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(120)  # as if the query were deeper than the limits allow for
    try:
        with pytest.raises(KqlError) as info:
            compile_query(kql, app_id="app1")
    finally:
        sys.setrecursionlimit(limit)
    assert info.value.message.startswith("query too complex")
