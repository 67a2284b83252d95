"""The KQL function table: each KQL function and its translation to sqlglot expressions.

A translation gets the compiler (for type coercions, constants and the dialect), the compiled
arguments as :class:`Typed` values and the call node (for error positions), and returns a
:class:`Typed`. Aggregates carry how ``summarize`` names their column when the query does not
(``count_``, ``avg_duration``, ``list_x``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlglot import exp

from scorewatch.kql import ast
from scorewatch.kql.dialects import lit

if TYPE_CHECKING:
    from scorewatch.kql.expressions import ExpressionCompiler as Compiler


class Typed(NamedTuple):
    """A compiled scalar: its SQL expression and its KQL type."""

    sql: exp.Expr
    type: str
    path: tuple[exp.Expr, list[str | int]] | None = None   # a dynamic value read at a JSON path


NUMERIC = ("long", "int", "real")
Translate = Callable[["Compiler", list[Typed], ast.Call], Typed]


@dataclass(frozen=True)
class Function:
    translate: Translate
    min_args: int
    max_args: int
    aggregate: bool = False
    prefix: str | None = None          # summarize's default column name: prefix + "_" + argument name
    name_ignores_args: bool = False    # count() -> count_
    name_is_argument: bool = False     # take_any(x) -> x


FUNCTIONS: dict[str, Function] = {}

# Functions whose unnamed result takes its first argument's name (``bin(timestamp, 1h)`` is
# ``timestamp``), as Kusto names them.
NAME_PRESERVING = frozenset((
    "tostring", "toint", "tolong", "todouble", "toreal", "tobool", "toboolean", "todatetime", "todynamic",
    "parse_json", "split", "bin", "floor", "round", "startofday", "abs", "sqrt", "log", "log10", "log2",
    "exp", "format_datetime"))


def register(*names: str, args: tuple[int, int] = (1, 1), **options: object) -> Callable[[Translate], Translate]:
    def decorate(translate: Translate) -> Translate:
        for name in names:
            FUNCTIONS[name] = Function(translate, args[0], args[1], **options)  # type: ignore[arg-type]
        return translate
    return decorate


def _null_if_empty(value: exp.Expr) -> exp.Expr:
    return exp.Nullif(this=value, expression=lit(""))


def _string(c: Compiler, value: Typed) -> exp.Expr:
    """``value`` as a KQL string: never null, a null is the empty string."""
    return exp.Coalesce(this=c.text(value), expressions=[lit("")])


# ---------------------------------------------------------------- conversions
@register("tostring")
def _tostring(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(_string(c, a[0]), "string")


@register("toint", "tolong")
def _tolong(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    kind = "int" if call.name == "toint" else "long"
    value = a[0]
    if value.type == "real":
        return Typed(c.d.try_cast(exp.Anonymous(this="trunc", expressions=[value.sql]), kind), kind)
    if value.type in ("string", "dynamic"):
        return Typed(c.d.try_cast(c.text(value), kind), kind)
    if value.type in ("datetime", "timespan"):
        return Typed(c.d.null(kind), kind)
    return Typed(c.d.try_cast(value.sql, kind), kind)


@register("todouble", "toreal")
def _todouble(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(c.number(a[0], force_real=True), "real")


@register("tobool", "toboolean")
def _tobool(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(c.boolean(a[0]), "bool")


@register("todatetime")
def _todatetime(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    if a[0].type == "datetime":
        return a[0]
    return Typed(c.d.try_cast(c.text(a[0]), "datetime"), "datetime")


@register("parse_json", "todynamic")
def _parse_json(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    if a[0].type == "dynamic":
        return a[0]
    if a[0].type == "string":
        return Typed(c.d.parse_json(a[0].sql), "dynamic")
    return Typed(c.d.to_json(a[0].sql), "dynamic")


# ---------------------------------------------------------------- conditionals
@register("iff", "iif", args=(3, 3))
def _iff(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    kind = c.common_type(a[1], a[2])
    return Typed(exp.Case(ifs=[exp.If(this=c.boolean(a[0]), true=c.coerce(a[1], kind))],
                          default=c.coerce(a[2], kind)), kind)


@register("case", args=(3, 999))
def _case(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    if len(a) % 2 == 0:
        raise c.error("case() needs pairs of predicate, value and a final else value", call)
    kind = c.common_type(*a[1::2], a[-1])
    ifs = [exp.If(this=c.boolean(a[i]), true=c.coerce(a[i + 1], kind)) for i in range(0, len(a) - 1, 2)]
    return Typed(exp.Case(ifs=ifs, default=c.coerce(a[-1], kind)), kind)


@register("coalesce", args=(1, 64))
def _coalesce(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    kind = c.common_type(*a)
    # For strings KQL skips empty values as well as nulls.
    parts = [_null_if_empty(c.coerce(t, kind)) if kind == "string" else c.coerce(t, kind) for t in a]
    if kind == "string":
        parts.append(lit(""))
    return Typed(exp.Coalesce(this=parts[0], expressions=parts[1:]), kind)


@register("not")
def _not(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(exp.Not(this=exp.Paren(this=c.boolean(a[0]))), "bool")


@register("isnull")
def _isnull(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    test: exp.Expr = exp.Is(this=a[0].sql, expression=exp.Null())
    if a[0].type == "dynamic":
        test = exp.or_(test, exp.EQ(this=c.d.json_type(a[0].sql), expression=lit("NULL")))
    return Typed(exp.Paren(this=test), "bool")


@register("isnotnull")
def _isnotnull(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(exp.Not(this=_isnull(c, a, call).sql), "bool")


@register("isempty")
def _isempty(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    if a[0].type not in ("string", "dynamic"):
        return _isnull(c, a, call)
    text = c.text(a[0])
    return Typed(exp.Paren(this=exp.or_(exp.Is(this=text, expression=exp.Null()),
                                        exp.EQ(this=text, expression=lit("")))), "bool")


@register("isnotempty")
def _isnotempty(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(exp.Not(this=_isempty(c, a, call).sql), "bool")


# ---------------------------------------------------------------- strings
@register("strcat", args=(1, 64))
def _strcat(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(c.d.concat([c.text(t) for t in a]), "string")


@register("strcat_delim", args=(3, 64))
def _strcat_delim(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    parts: list[exp.Expr] = [exp.Coalesce(this=c.text(t), expressions=[lit("")]) for t in a[1:]]
    return Typed(c.d.concat_ws(c.text(a[0]), parts), "string")


@register("strlen")
def _strlen(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(exp.cast(exp.Length(this=_string(c, a[0])), "BIGINT"), "long")


@register("substring", args=(2, 3))
def _substring(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    start = exp.Add(this=exp.Greatest(this=a[1].sql, expressions=[lit(0)]), expression=lit(1))
    length = a[2].sql if len(a) > 2 else None
    return Typed(exp.Substring(this=_string(c, a[0]), start=start, length=length), "string")


@register("tolower")
def _tolower(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(exp.Lower(this=_string(c, a[0])), "string")


@register("toupper")
def _toupper(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(exp.Upper(this=_string(c, a[0])), "string")


@register("trim", "trim_start", "trim_end", args=(2, 2))
def _trim(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    regex = c.constant(call.args[0], str, "a regular expression string")
    parts = []
    if call.name in ("trim", "trim_start"):
        parts.append(f"^(?:{regex})+")
    if call.name in ("trim", "trim_end"):
        parts.append(f"(?:{regex})+$")
    return Typed(c.d.regex_replace(_string(c, a[1]), lit("|".join(parts)), lit("")), "string")


@register("replace_string", args=(3, 3))
def _replace_string(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(c.d.replace(_string(c, a[0]), c.text(a[1]), c.text(a[2])), "string")


@register("replace_regex", args=(3, 3))
def _replace_regex(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(c.d.regex_replace(_string(c, a[0]), c.text(a[1]), c.text(a[2])), "string")


@register("extract", args=(3, 4))
def _extract(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    regex = c.constant(call.args[0], str, "a regular expression string")
    group = c.constant(call.args[1], int, "a capture group number")
    value = _null_if_empty(c.d.regex_extract(c.text(a[2]), lit(regex), group))
    if len(call.args) == 4:
        kind = c.type_argument(call.args[3])
        return Typed(c.d.try_cast(value, kind) if kind != "string" else value, kind)
    return Typed(value, "string")


@register("split", args=(2, 3))
def _split(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    text, delimiter = c.text(a[0]), c.text(a[1])
    if len(a) == 3:
        return Typed(c.d.list_element(c.d.string_split(text, delimiter), a[2].sql), "dynamic")
    return Typed(c.d.split(text, delimiter), "dynamic")


@register("indexof", args=(2, 2))
def _indexof(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    # a null string is KQL's empty string: -1, not null
    position = exp.StrPosition(this=_string(c, a[0]), substr=c.text(a[1]))
    return Typed(exp.cast(exp.Sub(this=position, expression=lit(1)), "BIGINT"), "long")


@register("hash", args=(1, 2))
def _hash(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    value = c.d.hash(a[0].sql)
    if len(a) == 2:
        value = exp.Mod(this=value, expression=a[1].sql)
    return Typed(value, "long")


# ---------------------------------------------------------------- numbers
def _numeric(name: str, build: Callable[[exp.Expr], exp.Expr], guard: str | None = None) -> None:
    def translate(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
        value = c.number(a[0], force_real=True)
        result = build(value)
        if guard:  # KQL answers null where the math is undefined; DuckDB would raise
            test = exp.GT(this=value, expression=lit(0)) if guard == ">" else exp.GTE(this=value, expression=lit(0))
            result = exp.Case(ifs=[exp.If(this=test, true=result)])
        return Typed(result, "real")
    FUNCTIONS[name] = Function(translate, 1, 1)


_numeric("log", lambda v: exp.Ln(this=v), ">")
_numeric("log10", lambda v: exp.Log(this=lit(10), expression=v), ">")
_numeric("log2", lambda v: exp.Log(this=lit(2), expression=v), ">")
_numeric("exp", lambda v: exp.Exp(this=v))
_numeric("sqrt", lambda v: exp.Sqrt(this=v), ">=")


@register("abs")
def _abs(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    if a[0].type == "timespan":
        return Typed(c.d.interval_from_micros(exp.Abs(this=c.d.interval_micros(a[0].sql))), "timespan")
    return Typed(exp.Abs(this=c.number(a[0])), c.numeric_type(a[0]))


@register("round", args=(1, 2))
def _round(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    digits = a[1].sql if len(a) > 1 else lit(0)
    return Typed(c.d.round(c.number(a[0], force_real=True), digits), "real")


@register("pow", args=(2, 2))
def _pow(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(exp.Pow(this=c.number(a[0], force_real=True), expression=c.number(a[1])), "real")


@register("bin", "floor", args=(2, 2))
def _bin(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    value, size = a
    if value.type == "datetime":
        micros = c.constant(call.args[1], float, "a constant timespan such as 5m")
        if micros <= 0:
            raise c.error("bin() needs a positive bin size", call.args[1])
        return Typed(c.d.time_bucket(micros, value.sql), "datetime")
    if value.type == "timespan":
        micros = c.constant(call.args[1], float, "a constant timespan such as 5m")
        count = exp.Floor(this=exp.Div(this=c.d.interval_micros(value.sql), expression=lit(micros)))
        return Typed(c.d.interval_from_micros(exp.Mul(this=count, expression=lit(micros))), "timespan")
    number = c.number(value)
    kind = "long" if c.numeric_type(value) in ("long", "int") and size.type in ("long", "int") else "real"
    width = exp.Nullif(this=size.sql, expression=lit(0))
    result: exp.Expr = exp.Mul(this=exp.Floor(this=exp.Div(this=number, expression=width)), expression=size.sql)
    return Typed(exp.cast(result, "BIGINT") if kind == "long" else result, kind)


@register("max_of", "min_of", args=(2, 64))
def _extreme_of(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    kind = c.common_type(*a)
    node = exp.Greatest if call.name == "max_of" else exp.Least
    parts = [c.coerce(t, kind) for t in a]
    return Typed(node(this=parts[0], expressions=parts[1:]), kind)


# ---------------------------------------------------------------- datetimes
@register("now", args=(0, 1))
def _now(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    offset = c.constant(call.args[0], float, "a constant timespan") if call.args else 0.0
    return Typed(c.d.timestamp(_shifted(c, offset, call)), "datetime")


@register("ago")
def _ago(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    micros = c.constant(call.args[0], float, "a constant timespan such as 1h")
    return Typed(c.d.timestamp(_shifted(c, -micros, call)), "datetime")


def _shifted(c: Compiler, micros: float, call: ast.Call) -> datetime:
    try:
        return c.now + timedelta(microseconds=micros)
    except OverflowError:
        raise c.error(f"{call.name}() goes past the datetimes a query can use (years 1 to 9999)",
                      call.args[0]) from None


def _datetime_arg(c: Compiler, value: Typed, call: ast.Call) -> exp.Expr:
    if value.type == "datetime":
        return value.sql
    if value.type in ("string", "dynamic"):
        return c.d.try_cast(c.text(value), "datetime")
    raise c.error(f"{call.name}() expects a datetime, got {value.type}", call.args[0])


@register("startofday", "startofmonth", "startofyear", "startofweek", "endofday", "endofmonth", "endofweek",
          "endofyear")
def _start_end(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    ts = _datetime_arg(c, a[0], call)
    unit = call.name.removeprefix("startof").removeprefix("endof")
    start: exp.Expr
    if unit == "week":  # KQL weeks start on Sunday
        day = c.d.date_trunc("day", ts)
        start = c.d.shift(day, c.d.interval_from_micros(
            exp.Mul(this=c.d.day_of_week(ts), expression=lit(86_400_000_000))), subtract=True)
    else:
        start = c.d.date_trunc(unit, ts)
    if call.name.startswith("startof"):
        return Typed(start, "datetime")
    following = c.d.date_add(unit, lit(1), start) if unit != "week" else c.d.shift(start, c.d.interval(7 * 86_400_000_000))
    return Typed(c.d.shift(following, c.d.interval(1), subtract=True), "datetime")


@register("dayofweek")
def _dayofweek(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    days = c.d.day_of_week(_datetime_arg(c, a[0], call))
    return Typed(c.d.interval_from_micros(exp.Mul(this=days, expression=lit(86_400_000_000))), "timespan")


def _part(name: str, unit: str) -> None:
    def translate(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
        return Typed(exp.cast(exp.Extract(this=exp.Var(this=unit), expression=_datetime_arg(c, a[0], call)),
                              "INTEGER"), "int")
    FUNCTIONS[name] = Function(translate, 1, 1)


_part("hourofday", "HOUR")
_part("dayofmonth", "DAY")
_part("getmonth", "MONTH")
_part("getyear", "YEAR")

_DATE_UNITS = ("year", "quarter", "month", "week", "day", "hour", "minute", "second", "millisecond",
               "microsecond")


def _unit(c: Compiler, node: ast.Node) -> str:
    unit = str(c.constant(node, str, "a unit name such as 'day'")).lower()
    unit = {"years": "year", "months": "month", "weeks": "week", "days": "day", "hours": "hour",
            "minutes": "minute", "seconds": "second", "milliseconds": "millisecond",
            "microseconds": "microsecond", "quarters": "quarter"}.get(unit, unit)
    if unit not in _DATE_UNITS:
        raise c.error(f"unknown date part {unit!r}; expected one of {', '.join(_DATE_UNITS)}", node)
    return unit


@register("datetime_diff", args=(3, 3))
def _datetime_diff(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    unit = _unit(c, call.args[0])
    diff = c.d.date_diff(unit, _datetime_arg(c, a[2], call), _datetime_arg(c, a[1], call))
    return Typed(exp.cast(diff, "BIGINT"), "long")


@register("datetime_add", args=(3, 3))
def _datetime_add(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    unit = _unit(c, call.args[0])
    return Typed(c.d.date_add(unit, a[1].sql, _datetime_arg(c, a[2], call)), "datetime")


_FORMAT_TOKENS = [("yyyy", "%Y"), ("yy", "%y"), ("MM", "%m"), ("M", "%-m"), ("dd", "%d"), ("d", "%-d"),
                  ("HH", "%H"), ("H", "%-H"), ("hh", "%I"), ("h", "%-I"), ("mm", "%M"), ("m", "%-M"),
                  ("ss", "%S"), ("s", "%-S"), ("fffffff", "%n0"), ("ffffff", "%f"), ("fff", "%g"),
                  ("tt", "%p")]
_FORMAT_RE = re.compile("|".join(re.escape(token) for token, _ in _FORMAT_TOKENS) + r"|%")


@register("format_datetime", args=(2, 2))
def _format_datetime(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    pattern = c.constant(call.args[1], str, "a format string such as 'yyyy-MM-dd'")
    mapping = dict(_FORMAT_TOKENS)
    converted = _FORMAT_RE.sub(lambda m: "%%" if m.group() == "%" else mapping[m.group()], pattern)
    return Typed(c.d.strftime(_datetime_arg(c, a[0], call), converted.replace("%n0", "%f0")), "string")


# ---------------------------------------------------------------- dynamic values
@register("bag_keys")
def _bag_keys(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(c.d.json_keys(c.dynamic(a[0])), "dynamic")


@register("array_length")
def _array_length(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(c.d.json_array_length(c.dynamic(a[0])), "long")


# ---------------------------------------------------------------- series (make-series' arrays)
SERIES_STATS = ("min", "min_idx", "max", "max_idx", "avg", "stdev", "variance")


def _series_values(c: Compiler, value: Typed) -> exp.Expr:
    return c.d.number_list(c.dynamic(value))


@register("series_stats_dynamic")
def _series_stats_dynamic(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(c.d.json_object(c.d.series_stats(_series_values(c, a[0]))), "dynamic")


def _series_stats_columns(c: Compiler, item: ast.Assignment, scope: Any) -> list[tuple[str, Typed]]:
    """``series_stats(x)`` in extend/project: seven columns, ``series_stats_x_min`` ... (or the names of
    ``(a, b, ...) = series_stats(x)``, or ``name_min`` ... for ``name = series_stats(x)``)."""
    call = item.expr
    assert isinstance(call, ast.Call)
    if len(call.args) != 1:
        raise c.error(f"series_stats() takes 1 argument, got {len(call.args)}", call)
    stats = c.d.series_stats(_series_values(c, c.expr(call.args[0], scope)))
    prefix = item.name or f"series_stats_{c.infer_name(call.args[0]) or ''}".rstrip("_")
    out = []
    for i, (stat, sql) in enumerate(stats.items()):
        name = item.names[i] if i < len(item.names) else f"{prefix}_{stat}"
        out.append((name, Typed(exp.cast(sql, "BIGINT") if stat.endswith("idx") else sql,
                                "long" if stat.endswith("idx") else "real")))
    return out


FUNCTIONS["series_stats"] = Function(lambda c, a, call: _raise_whole_column(c, call), 1, 1)


def _raise_whole_column(c: Compiler, call: ast.Call) -> Typed:
    raise c.error(f"{call.name}() makes several columns: use it as a whole extend or project item, or "
                  f"{call.name}_dynamic() for one bag", call)


@register("series_fir", args=(2, 4))
def _series_fir(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    weights_node = call.args[1]
    try:
        weights = json.loads(weights_node.value) if isinstance(weights_node, ast.Literal) and \
            weights_node.kind == "dynamic" else None
    except ValueError:
        weights = None
    if not isinstance(weights, list) or not weights or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights):
        raise c.error("series_fir() needs a constant filter such as dynamic([1, 1, 1])", weights_node)
    flags = [c.constant(node, bool, "true or false") for node in call.args[2:]]
    normalize = flags[0] if flags else True  # divide by the sum of the filter, as Kusto by default
    center = flags[1] if len(flags) > 1 else False
    if normalize and sum(weights) == 0:
        raise c.error("series_fir() cannot normalize a filter whose sum is 0; pass normalize=false", weights_node)
    offset = (len(weights) - 1) // 2 if center else 0
    return Typed(c.d.series_fir(_series_values(c, a[0]), weights, offset, sum(weights) if normalize else 1),
                 "dynamic")


# Functions whose result is several columns; the compiler expands them in extend and project.
MULTI_COLUMN: dict[str, Callable[[Compiler, ast.Assignment, Any], list[tuple[str, Typed]]]] = {
    "series_stats": _series_stats_columns}


# ---------------------------------------------------------------- aggregates
def _aggregate(*names: str, args: tuple[int, int] = (1, 1), **options: object) -> Callable[[Translate], Translate]:
    return register(*names, args=args, aggregate=True, **options)


@_aggregate("count", args=(0, 1), name_ignores_args=True)
def _count(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(exp.Count(this=a[0].sql if a else exp.Star()), "long")


@_aggregate("countif", name_ignores_args=True)
def _countif(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(exp.CountIf(this=c.boolean(a[0])), "long")


@_aggregate("dcount", args=(1, 2))
def _dcount(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(exp.Count(this=exp.Distinct(expressions=[c.comparable(a[0])])), "long")


@_aggregate("dcountif", args=(2, 3))
def _dcountif(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    value = exp.Case(ifs=[exp.If(this=c.boolean(a[1]), true=c.comparable(a[0]))])
    return Typed(exp.Count(this=exp.Distinct(expressions=[value])), "long")


def _filtered(value: exp.Expr, predicate: exp.Expr) -> exp.Expr:
    return exp.Filter(this=value, expression=exp.Where(this=predicate))


def _sum_type(c: Compiler, value: Typed) -> str:
    return "long" if c.numeric_type(value) in ("long", "int") else "real"


@_aggregate("sum")
def _sum(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    kind = _sum_type(c, a[0])
    return Typed(c.d.cast(exp.Coalesce(this=exp.Sum(this=c.number(a[0])), expressions=[lit(0)]), kind), kind)


@_aggregate("sumif", args=(2, 2))
def _sumif(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    kind = _sum_type(c, a[0])
    total = _filtered(exp.Sum(this=c.number(a[0])), c.boolean(a[1]))
    return Typed(c.d.cast(exp.Coalesce(this=total, expressions=[lit(0)]), kind), kind)


@_aggregate("avg")
def _avg(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(exp.Avg(this=c.number(a[0])), "real")


@_aggregate("avgif", args=(2, 2))
def _avgif(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(_filtered(exp.Avg(this=c.number(a[0])), c.boolean(a[1])), "real")


@_aggregate("min", "max")
def _minmax(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    value = a[0] if a[0].type != "dynamic" else Typed(c.number(a[0]), "real")
    node = exp.Min if call.name == "min" else exp.Max
    return Typed(node(this=value.sql), value.type)


@_aggregate("minif", "maxif", args=(2, 2))
def _minmaxif(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    node = exp.Min if call.name == "minif" else exp.Max
    return Typed(_filtered(node(this=a[0].sql), c.boolean(a[1])), a[0].type)


@_aggregate("stdev", "variance")
def _spread(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    node = exp.Stddev if call.name == "stdev" else exp.Variance
    return Typed(exp.Coalesce(this=node(this=c.number(a[0], force_real=True)), expressions=[lit(0.0)]), "real")


@_aggregate("percentile", args=(2, 2))
def _percentile(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    percent = c.constant(call.args[1], float, "a constant percentage")
    if not 0 <= percent <= 100:
        raise c.error("a percentile must be between 0 and 100", call.args[1])
    value = a[0] if a[0].type != "dynamic" else Typed(c.number(a[0]), "real")
    return Typed(c.d.percentile(value.sql, percent), value.type)


@_aggregate("make_list", args=(1, 2), prefix="list")
def _make_list(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(c.d.collect(a[0].sql, distinct=False), "dynamic")


@_aggregate("make_set", args=(1, 2), prefix="set")
def _make_set(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(c.d.collect(a[0].sql, distinct=True), "dynamic")


@_aggregate("any")
def _any(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(c.d.any_value(a[0].sql), a[0].type)


@_aggregate("take_any", name_is_argument=True)
def _take_any(c: Compiler, a: list[Typed], call: ast.Call) -> Typed:
    return Typed(c.d.any_value(a[0].sql), a[0].type)


# percentiles() and arg_max()/arg_min() make several columns: the compiler expands them.
SPECIAL_AGGREGATES = frozenset(("percentiles", "arg_max", "arg_min"))
for _name in SPECIAL_AGGREGATES:
    FUNCTIONS[_name] = Function(lambda c, a, call: a[0], 2, 999, aggregate=True)
