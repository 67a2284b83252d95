"""The data tests exercise every operator and function the issue lists (a new one needs a case)."""

from __future__ import annotations

import re

from scorewatch.kql.functions import FUNCTIONS
from tests.kql import test_azure_docs_queries, test_compiler, test_differential

OPERATORS = ["where", "project", "project-away", "project-rename", "project-reorder", "project-keep", "extend",
             "summarize", "count", "take", "limit", "top", "sort by", "order by", "distinct", "join", "union",
             "mv-expand", "parse", "as", "let", "search", "getschema", "render", "print", "make-series", "nulls first",
             "nulls last", "asc", "desc"]
JOIN_KINDS = ["inner", "leftouter", "rightouter", "fullouter", "leftanti", "rightanti", "leftsemi", "rightsemi"]
FUNCTION_NAMES = """count countif dcount dcountif sum sumif avg avgif min max percentile percentiles stdev variance
    make_list make_set arg_max arg_min any take_any bin floor ago now datetime todatetime startofday startofweek
    startofmonth endofday dayofweek format_datetime datetime_diff datetime_add parse_json todynamic tostring toint
    tolong todouble toreal tobool iff iif case coalesce strcat strcat_delim strlen substring tolower toupper trim
    replace_string extract split indexof isempty isnotempty isnull isnotnull round abs log exp pow sqrt bag_keys
    array_length hash""".split()  # noqa: SIM905 - the issue's list, pasted
STRING_OPERATORS = ["contains", "contains_cs", "!contains", "has", "has_cs", "!has", "startswith", "startswith_cs",
                    "!startswith", "endswith", "==", "!=", "=~", "!~", "in", "!in", "in~", "!in~"]


def _all_queries() -> str:
    queries = [q for q, _ in test_compiler.OPERATORS + test_compiler.AGGREGATES + test_compiler.SEMANTICS]
    queries += [f"print x = {e}" for e, _ in test_compiler.SCALARS]
    queries += [q for q, _ in test_azure_docs_queries.DOCS] + test_differential.QUERIES
    return "\n".join(queries)


def test_every_operator_has_a_case():
    text = _all_queries()
    missing = [op for op in OPERATORS if not re.search(rf"(\| |^|; |\n){re.escape(op)}\b|\b{re.escape(op)}\b", text)]
    missing += [kind for kind in JOIN_KINDS if f"kind={kind} " not in text]
    missing += ["join (default innerunique)"] if "| join (" not in text else []
    assert not missing


def test_every_listed_function_has_a_case_and_a_translation():
    text = _all_queries()
    assert not [name for name in FUNCTION_NAMES if name not in FUNCTIONS and name != "datetime"]
    assert not [name for name in FUNCTION_NAMES if not re.search(rf"\b{name}\(", text)]


def test_every_string_operator_has_a_case():
    text = _all_queries()
    assert not [op for op in STRING_OPERATORS if f" {op} " not in text]


def test_timespan_literals_have_cases():
    text = _all_queries()
    assert all(literal in text for literal in ("100ms", "5m", "1h", "7d"))
