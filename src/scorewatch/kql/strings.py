"""KQL's string operators: ``contains``, ``has``, ``startswith``, ``endswith`` and their forms.

KQL's rules, which SQL does not share: the plain forms ignore case and the ``_cs`` forms do not;
``has`` matches whole terms (runs of letters and digits); every negated form (``!contains``) is true
on a null (KQL's strings are never null, only empty). A constant right-hand side compiles to a
constant pattern the engine can match fast (``ILIKE '%x%'``); ``has`` adds a term-boundary regular
expression behind that cheap pre-filter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlglot import exp

from scorewatch.kql import ast
from scorewatch.kql.dialects import lit
from scorewatch.kql.functions import Typed

if TYPE_CHECKING:
    from scorewatch.kql.expressions import ExpressionCompiler as Compiler

_TERM_START = r"(?:^|[^\pL\pN])"
_TERM_END = r"(?:$|[^\pL\pN])"
_RE2_SPECIAL = set("\\.+*?()|[]{}^$")


def like_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "%_\\" else ch for ch in text)


def regex_escape(text: str) -> str:
    return "".join("\\" + ch if ch in _RE2_SPECIAL else ch for ch in text)


def is_term_char(ch: str) -> bool:
    return ch.isalpha() or ch.isnumeric()


def _constant_string(value: Typed) -> str | None:
    sql = value.sql
    return sql.this if isinstance(sql, exp.Literal) and sql.is_string else None


def predicate(c: Compiler, op: str, left: Typed, right: Typed, node: ast.Node) -> exp.Expr:
    negated = op.startswith("!")
    base = op.lstrip("!")
    if base == "matches regex":
        test = c.d.regex_match(c.text(left), c.text(right))
    else:
        case_sensitive = base.endswith("_cs")
        base = base.removesuffix("_cs")
        test = _string_test(c, base, case_sensitive, _haystack(c, left, base), right, node)
    if negated:
        return exp.Not(this=exp.Coalesce(this=test, expressions=[exp.false()]))
    return exp.Coalesce(this=test, expressions=[exp.false()])  # see expressions.null_guard


def _haystack(c: Compiler, left: Typed, base: str) -> exp.Expr:
    """The text a predicate searches. A whole dynamic column (``customDimensions contains "x"``) is
    searched as its JSON text, read as is: over twice as fast as unquoting it first."""
    if left.type == "dynamic" and left.path is None and isinstance(left.sql, exp.Column) and \
            base in ("contains", "has", "hasprefix", "hassuffix"):
        return c.d.json_text(left.sql)
    return c.text(left)


def _string_test(c: Compiler, base: str, cs: bool, text: exp.Expr, right: Typed,
                 node: ast.Node) -> exp.Expr:
    needle = _constant_string(right)
    if base in ("has", "hasprefix", "hassuffix"):
        if needle is None:
            raise c.error(f"'{base}' needs a constant string on its right", node)
        return _term_test(c, base, cs, text, needle)
    if needle is not None:
        pattern = {"contains": "%{}%", "startswith": "{}%", "endswith": "%{}"}[base].format(like_escape(needle))
        like: exp.Expr = (exp.Like if cs else exp.ILike)(this=text, expression=lit(pattern))
        if any(ch in needle for ch in "%_\\"):
            like = exp.Escape(this=like, expression=lit("\\"))
        return like
    other = c.text(right)
    if not cs:
        text, other = exp.Lower(this=text), exp.Lower(this=other)
    if base == "contains":
        return c.d.contains(text, other)
    if base == "startswith":
        return c.d.starts_with(text, other)
    return c.d.ends_with(text, other)

def _term_test(c: Compiler, base: str, cs: bool, text: exp.Expr, needle: str) -> exp.Expr:
    if not needle:
        return exp.true()
    lead = base in ("has", "hasprefix") and is_term_char(needle[0])
    trail = base in ("has", "hassuffix") and is_term_char(needle[-1])
    prefilter: exp.Expr = (exp.Like if cs else exp.ILike)(this=text, expression=lit(f"%{like_escape(needle)}%"))
    if "\\" in needle or "%" in needle or "_" in needle:
        prefilter = exp.Escape(this=prefilter, expression=lit("\\"))
    if not (lead or trail):
        return prefilter
    regex = ("" if cs else "(?i)") + (_TERM_START if lead else "") + regex_escape(needle) + \
        (_TERM_END if trail else "")
    # The LIKE pre-filter is cheap and rejects most rows before the regular expression runs.
    return exp.and_(prefilter, c.d.regex_match(text.copy(), lit(regex)))
