"""KQL text under arbitrary input: the tokenizer, parser and compiler answer with a KqlError (or
another ScorewatchError), and SQL that compiles runs to an answer or a ScorewatchError, never a 500."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorewatch.errors import ScorewatchError
from scorewatch.kql import compile_query
from scorewatch.kql.api import encode_body
from scorewatch.kql.functions import FUNCTIONS
from scorewatch.kql.parser import Parser
from scorewatch.store.duckdb import DuckDBStore
from tests.fuzz.conftest import budget
from tests.kql.conftest import NOW, REQUESTS, TRACES

_WORDS = ["requests", "traces", "exceptions", "where", "project", "extend", "summarize", "by", "count", "take",
          "top", "sort", "order", "asc", "desc", "join", "kind", "inner", "leftouter", "on", "union", "let",
          "as", "mv-expand", "parse", "with", "render", "print", "search", "in", "has", "contains", "and", "or",
          "not", "between", "distinct", "project-away", "getschema", "timestamp", "name", "duration",
          "resultCode", "success", "customDimensions", "message", "x", "y", "t", "true", "false", "null",
          "datetime(2024-05-01)", "timespan(1d)", "dynamic({\"a\": [1]})", "bin", "ago", "now", "percentiles",
          "arg_max", "make_list", "iff", "case", "tostring", "toint", "todouble", "strcat", "split", "extract",
          *FUNCTIONS]
_PUNCT = ["|", "(", ")", ",", ";", "=", "==", "!=", "<", ">", "<=", "+", "-", "*", "/", "%", ".", "[", "]",
          "..", "=~", "!~", "'a'", '"b\\u00e9"', "'\\ud800'", "0", "1", "-1", "2.5", "1e308", "1e999", "5m",
          "99999999d", "9223372036854775807", "9223372036854775808", "h'x'", "@'c:\\'", "//c\n"]
_tokens = st.lists(st.sampled_from(_WORDS + _PUNCT), min_size=1, max_size=25).map(" ".join)
_columns = st.sampled_from(["timestamp", "name", "duration", "resultCode", "success", "customDimensions",
                            "customDimensions.n", "customDimensions['list'][0]", "message", "itemCount", "x"])
_literals = st.sampled_from([p for p in _PUNCT if p[0] in "'\"0123456789-h@"] + ["true", "null", "datetime(2024-05-01)",
                                                                                 "dynamic([1, 'a'])", "ago(1d)"])
_expressions = st.recursive(st.one_of(_columns, _literals), lambda e: st.one_of(
    st.tuples(e, st.sampled_from(["+", "-", "*", "/", "%", "==", "!=", "<", ">", "and", "or", "contains", "has",
                                  "startswith", "=~", "in~"]), e).map(
        lambda t: f"({t[0]} {t[1]} ({t[2]}))" if t[1] == "in~" else " ".join(t)),
    st.tuples(st.sampled_from(sorted(FUNCTIONS)), st.lists(e, max_size=3)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
    e.map(lambda x: f"-({x})"), e.map(lambda x: f"({x})")), max_leaves=6)
_operators = st.one_of(
    _expressions.map("where {}".format), _expressions.map("extend x = {}".format),
    st.tuples(_expressions, _expressions).map(lambda t: f"project a = {t[0]}, b = {t[1]}"),
    st.tuples(st.sampled_from(["count()", "sum(duration)", "avg(x)", "make_list(name)", "dcount(name)",
                               "percentiles(duration, 50, 99)", "arg_max(timestamp, *)"]), _expressions).map(
        lambda t: f"summarize {t[0]} by {t[1]}"),
    st.sampled_from(["take 3", "top 2 by duration", "sort by timestamp desc", "distinct name", "count",
                     "mv-expand customDimensions.list", "join kind=inner (requests | take 3) on name",
                     "union traces", "as t | union t", "project-away name", "getschema",
                     "parse name with a ' ' b", "render timechart"]))
_structured = st.tuples(st.sampled_from(["requests", "traces", "union requests, traces"]),
                        st.lists(_operators, max_size=5)).map(lambda t: " | ".join([t[0], *t[1]]))
_queries = st.one_of(_tokens, st.text(max_size=60), _structured, _structured,
                     st.tuples(st.sampled_from(["requests", "traces"]), _tokens).map(" | ".join))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBStore]:
    s = DuckDBStore(tmp_path_factory.mktemp("fuzz") / "t.duckdb")
    s.write_batch("requests", REQUESTS)
    s.write_batch("traces", TRACES)
    yield s
    s.close()


@given(st.text(max_size=200))
@settings(max_examples=budget(300))
def test_any_text_tokenizes_and_parses_to_an_answer(text: str) -> None:
    with contextlib.suppress(ScorewatchError):
        Parser(text).parse()


@given(_queries)
@settings(max_examples=budget(400))
def test_any_query_compiles_and_runs_to_an_answer(store: DuckDBStore, kql: str) -> None:
    try:
        compiled = compile_query(kql, app_id="app1", now=NOW, timespan=(NOW.replace(year=2020), NOW))
        result = store.query(compiled.sql, compiled.params, timeout_s=5, max_rows=100)
    except ScorewatchError:
        return
    encode_body(compiled, result, 100)
