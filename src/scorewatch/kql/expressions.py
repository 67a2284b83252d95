"""Scalar expressions: KQL expressions to typed sqlglot expressions.

Every compiled value is a :class:`~scorewatch.kql.functions.Typed` (SQL and KQL type), so the rules
KQL has and SQL lacks come out right: dynamic values compared with strings compare as text and with
numbers as numbers, integer division truncates, a negated string predicate is true on null. The
coercions here (``text``, ``number``, ``boolean``, ``dynamic``, ``coerce``) are what the function table
in :mod:`scorewatch.kql.functions` builds on.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlglot import exp

from scorewatch.kql import ast, relations, strings
from scorewatch.kql.dialects import Dialect, lit
from scorewatch.kql.errors import KqlError, suggest
from scorewatch.kql.functions import FUNCTIONS, NAME_PRESERVING, NUMERIC, SPECIAL_AGGREGATES, Typed
from scorewatch.kql.relation import Scope

TYPE_CASTS = {"long": "long", "int": "int", "real": "real", "double": "real", "bool": "bool",
              "boolean": "bool", "string": "string", "datetime": "datetime", "dynamic": "dynamic",
              "timespan": "timespan"}
_COMPARE = {"==": exp.EQ, "!=": exp.NEQ, "<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE}


def naive_utc(value: datetime) -> datetime:
    """``value`` as a naive UTC datetime, as the store keeps timestamps."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def null_guard(test: exp.Expr) -> exp.Expr:
    """``COALESCE(test, FALSE)``: a string test on a null is false, as on KQL's empty string. In a
    filter the guard changes nothing and hides the test from the engine; ``strip_null_guards`` drops it."""
    return exp.Coalesce(this=test, expressions=[exp.false()])


def strip_null_guards(condition: exp.Expr) -> exp.Expr:
    """``condition`` without the guards a WHERE does not need: a null there already counts as false,
    through AND and OR (not through NOT, which keeps its guards)."""
    if isinstance(condition, exp.Paren):
        condition.set("this", strip_null_guards(condition.this))
        return condition
    if isinstance(condition, (exp.And, exp.Or)):
        condition.set("this", strip_null_guards(condition.this))
        condition.set("expression", strip_null_guards(condition.expression))
        return condition
    if isinstance(condition, exp.Coalesce) and len(condition.expressions) == 1 and \
            isinstance(condition.expressions[0], exp.Boolean) and not condition.expressions[0].this:
        return strip_null_guards(condition.this)
    return condition


class ExpressionCompiler:
    def __init__(self, text: str, dialect: Dialect, *, now: datetime) -> None:
        self.source_text = text
        self.d = dialect
        self.now = now
        self.scalar_lets: dict[str, tuple[ast.Node, Typed]] = {}

    def error(self, message: str, node: ast.Node) -> KqlError:
        return KqlError.at(message, self.source_text, node.pos, node.length)

    def infer_name(self, node: ast.Node) -> str | None:
        """The name Kusto gives an unnamed expression, or None for a positional ``ColumnN``."""
        if isinstance(node, ast.Name):
            return node.name
        if isinstance(node, ast.Member):
            base = self.infer_name(node.obj)
            key = str(node.key).replace("-", "_")
            return f"{base}_{key}" if base else key
        if isinstance(node, ast.Call) and node.args:
            if node.name in NAME_PRESERVING:
                return self.infer_name(node.args[0])
            if node.name == "strlen":
                return "strlen_" + (self.infer_name(node.args[0]) or "")
        return None

    def string_predicate(self, op: str, left: Typed, right: Typed, node: ast.Node) -> exp.Expr:
        return strings.predicate(self, op, left, right, node)

    # ------------------------------------------------------------ scalar expressions
    def expr(self, node: ast.Node, scope: Scope) -> Typed:
        method = getattr(self, "expr_" + type(node).__name__.lower(), None)
        if method is None:
            raise self.error("'*' is only allowed in arg_max(), arg_min() and distinct", node)
        return method(node, scope)

    def expr_literal(self, node: ast.Literal, scope: Scope) -> Typed:
        value, kind = node.value, node.kind
        if kind == "string":
            return Typed(lit(value), "string")
        if kind in ("long", "real"):
            return Typed(lit(value), kind)
        if kind == "bool":
            return Typed(exp.Boolean(this=value), "bool")
        if kind == "null":
            return Typed(exp.Null(), "null")
        if kind == "timespan":
            return Typed(self.d.interval(value), "timespan")
        if kind == "datetime":
            return Typed(self.d.timestamp(self.parse_datetime(node)) if value != "null"
                         else self.d.null("datetime"), "datetime")
        try:
            parsed = json.loads(value) if value else None
        except ValueError:
            raise self.error("invalid dynamic literal: expected JSON", node) from None
        return Typed(self.d.json_literal(json.dumps(parsed)), "dynamic")

    def parse_datetime(self, node: ast.Literal) -> datetime:
        text = str(node.value).strip().strip("\"'")
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise self.error(f"invalid datetime {text!r}: expected ISO 8601 such as 2024-01-31 12:00", node) from None
        return naive_utc(value)

    def expr_name(self, node: ast.Name, scope: Scope) -> Typed:
        if node.name in scope.columns:
            if scope.group_names is not None and not scope.in_aggregate and node.name not in scope.group_names:
                raise self.error(f"column {node.name!r} must be in 'by' or inside an aggregation such as "
                                 f"any({node.name})", node)
            typed = scope.columns[node.name]
            return Typed(typed.sql.copy(), typed.type, typed.path)
        if node.name in self.scalar_lets:
            typed = self.scalar_lets[node.name][1]
            return Typed(typed.sql.copy(), typed.type, typed.path)
        names = list(scope.columns) + list(self.scalar_lets)
        raise self.error(f"unknown column {node.name!r}" + suggest(node.name, names), node)

    def expr_member(self, node: ast.Member, scope: Scope) -> Typed:
        keys: list[str | int] = []
        root: ast.Node = node
        while isinstance(root, ast.Member):
            keys.insert(0, root.key)
            root = root.obj
        base = self.expr(root, scope)
        if base.type not in ("dynamic", "string"):
            raise self.error(f"cannot read a property of a {base.type} value; only dynamic values have them", node)
        base_sql = self.dynamic(base)
        try:
            self.d.json_path(keys)
        except ValueError as exc:
            raise self.error(f"unsupported path: {exc}", node) from None
        path = (base_sql, keys)
        return Typed(self.d.json_get(base_sql.copy(), keys), "dynamic", path)

    def expr_index(self, node: ast.Index, scope: Scope) -> Typed:
        base, index = self.expr(node.obj, scope), self.expr(node.index, scope)
        if base.type not in ("dynamic", "string"):
            raise self.error(f"cannot index a {base.type} value; only dynamic values have elements", node)
        if index.type in ("long", "int"):
            return Typed(self.d.json_at(self.dynamic(base), index.sql, numeric=True), "dynamic")
        if index.type in ("string", "dynamic"):
            return Typed(self.d.json_at(self.dynamic(base), self.text(index), numeric=False), "dynamic")
        raise self.error(f"an index must be a whole number or a string, not {index.type}", node.index)

    def expr_unary(self, node: ast.Unary, scope: Scope) -> Typed:
        operand = self.expr(node.operand, scope)
        if operand.type == "timespan":
            return Typed(exp.Neg(this=operand.sql), "timespan")
        return Typed(exp.Neg(this=self.number(operand)), self.numeric_type(operand))

    def expr_between(self, node: ast.Between, scope: Scope) -> Typed:
        value, low, high = (self.expr(n, scope) for n in (node.expr, node.low, node.high))
        if value.type == "datetime" and high.type == "timespan":
            high = Typed(self.d.shift(low.sql.copy(), high.sql), "datetime")
        condition = exp.and_(self.compare(">=", value, low, node), self.compare("<=", value, high, node))
        return Typed(exp.Not(this=exp.Paren(this=condition)) if node.negated else exp.Paren(this=condition), "bool")

    def expr_binary(self, node: ast.Binary, scope: Scope) -> Typed:
        left, right = self.expr(node.left, scope), self.expr(node.right, scope)
        op = node.op
        if op in ("and", "or"):
            combine = exp.and_ if op == "and" else exp.or_
            return Typed(exp.Paren(this=combine(self.boolean(left), self.boolean(right))), "bool")
        if op in ("+", "-", "*", "/", "%"):
            return self.arithmetic(op, left, right, node)
        if op in _COMPARE or op in ("=~", "!~"):
            return Typed(self.compare(op, left, right, node), "bool")
        return Typed(self.string_predicate(op, left, right, node), "bool")

    def arithmetic(self, op: str, left: Typed, right: Typed, node: ast.Node) -> Typed:
        kinds = (left.type, right.type)
        if "datetime" in kinds or "timespan" in kinds:
            return self.time_arithmetic(op, left, right, node)
        if "string" in kinds or "bool" in kinds:
            raise self.error(f"operator '{op}' does not apply to {left.type} and {right.type}", node)
        a, b = self.number(left), self.number(right)
        integral = self.numeric_type(left) in ("long", "int") and self.numeric_type(right) in ("long", "int")
        kind = "long" if integral else "real"
        if op == "/":
            divisor = exp.Nullif(this=b, expression=lit(0))
            return Typed(exp.IntDiv(this=a, expression=divisor) if integral else exp.Div(this=a, expression=divisor), kind)
        if op == "%":
            return Typed(exp.Mod(this=a, expression=exp.Nullif(this=b, expression=lit(0))), kind)
        node_type = {"+": exp.Add, "-": exp.Sub, "*": exp.Mul}[op]
        return Typed(node_type(this=a, expression=b), kind)

    def time_arithmetic(self, op: str, left: Typed, right: Typed, node: ast.Node) -> Typed:
        kinds = (left.type, right.type)
        micros = self.d.interval_micros
        if op == "-" and kinds == ("datetime", "datetime"):
            return Typed(self.d.elapsed(right.sql, left.sql), "timespan")
        if op in ("+", "-") and kinds == ("datetime", "timespan"):
            return Typed(self.d.shift(left.sql, right.sql, subtract=op == "-"), "datetime")
        if op in ("+", "-") and kinds == ("timespan", "timespan"):
            return Typed((exp.Add if op == "+" else exp.Sub)(this=left.sql, expression=right.sql), "timespan")
        if op == "+" and kinds == ("timespan", "datetime"):
            return Typed(self.d.shift(right.sql, left.sql), "datetime")
        if op == "/" and kinds == ("timespan", "timespan"):
            return Typed(exp.Div(this=micros(left.sql), expression=exp.Nullif(this=micros(right.sql), expression=lit(0))),
                         "real")
        if op in ("*", "/") and left.type == "timespan" and right.type in NUMERIC + ("dynamic",):
            scaled = (exp.Mul if op == "*" else exp.Div)(this=micros(left.sql), expression=self.number(right))
            return Typed(self.d.interval_from_micros(scaled), "timespan")
        if op == "*" and right.type == "timespan" and left.type in NUMERIC:
            return Typed(self.d.interval_from_micros(exp.Mul(this=micros(right.sql), expression=left.sql)), "timespan")
        raise self.error(f"operator '{op}' does not apply to {left.type} and {right.type}", node)

    def compare(self, op: str, left: Typed, right: Typed, node: ast.Node) -> exp.Expr:
        if op in ("=~", "!~"):
            lowered: tuple[exp.Expr, exp.Expr] = (exp.Lower(this=self.text(left)), exp.Lower(this=self.text(right)))
            a, b = lowered
            if op == "=~":
                return null_guard(exp.EQ(this=a, expression=b))
            return exp.Not(this=exp.Coalesce(this=exp.EQ(this=a, expression=b), expressions=[exp.false()]))
        a, b, domain = self.comparison_operands(left, right, node)
        if domain == "string" and op in ("==", "!="):
            for this, other in ((a, b), (b, a)):
                if isinstance(other, exp.Literal) and other.is_string and other.this == "":
                    empty = exp.Paren(this=exp.or_(exp.Is(this=this, expression=exp.Null()),
                                                   exp.EQ(this=this.copy(), expression=lit(""))))
                    return empty if op == "==" else exp.Not(this=empty)
            if op == "!=":  # a null string is KQL's empty string: it differs from any non-empty one
                return exp.NullSafeNEQ(this=a, expression=b)
            return null_guard(exp.EQ(this=a, expression=b))
        # KQL compares two-valued: a null equals nothing and differs from everything
        if op == "!=":
            return exp.Not(this=null_guard(exp.EQ(this=a, expression=b)))
        return null_guard(_COMPARE[op](this=a, expression=b))

    def comparison_operands(self, left: Typed, right: Typed,
                            node: ast.Node) -> tuple[exp.Expr, exp.Expr, str]:
        kinds = {left.type, right.type} - {"null"}
        if not kinds:
            return left.sql, right.sql, "null"
        if kinds == {"dynamic"} or kinds <= {"dynamic", "string"}:
            return self.text(left), self.text(right), "string"
        other = next(iter(kinds - {"dynamic", "string"}), None)
        if other is None:
            return left.sql, right.sql, left.type
        if len(kinds - {"dynamic", "string"}) > 1:
            numeric = kinds <= {"long", "int", "real"}
            if numeric:
                return left.sql, right.sql, "real"
            if kinds == {"datetime", "timespan"} or (kinds - {"long", "int", "real"}):
                raise self.error(f"cannot compare {left.type} with {right.type}", node)
        return self.coerce(left, other), self.coerce(right, other), other

    def expr_inlist(self, node: ast.InList, scope: Scope) -> Typed:
        left = self.expr(node.left, scope)
        if len(node.values) == 1 and isinstance(node.values[0], ast.Query):
            return self.in_query(node, left, node.values[0])
        values = [self.expr(v, scope) for v in node.values]
        if not values:
            return Typed(exp.false() if node.op in ("in", "in~", "has_any") else exp.true(), "bool")
        if node.op in ("has_any", "has_all"):
            parts = [self.string_predicate("has", left, v, node) for v in values]
            combined = exp.or_(*parts) if node.op == "has_any" else exp.and_(*parts)
            return Typed(exp.Paren(this=combined), "bool")
        a: exp.Expr
        items: list[exp.Expr]
        if node.op in ("in~", "!in~"):
            a = exp.Lower(this=self.text(left))
            items = [exp.Lower(this=self.text(v)) for v in values]
        else:
            pairs = [self.comparison_operands(left, v, node) for v in values]
            a, items = pairs[0][0], [p[1] for p in pairs]
        return self.in_test(node.op, exp.In(this=a, expressions=items))

    def in_query(self, node: ast.InList, left: Typed, query: ast.Query) -> Typed:
        """``left in (query)``: compiled by the query compiler, which knows tabular expressions."""
        raise self.error("a tabular expression is not allowed here", query)

    def in_test(self, op: str, test: exp.Expr) -> Typed:
        """``test`` (an SQL IN) as KQL's ``in`` or negated ``!in``: two-valued, false on null."""
        if op.startswith("!"):
            return Typed(exp.Not(this=exp.Coalesce(this=test, expressions=[exp.false()])), "bool")
        return Typed(null_guard(test), "bool")

    def expr_call(self, node: ast.Call, scope: Scope) -> Typed:
        if node.name == "__search_term":
            return relations.search_term(self, node, scope)
        if node.name in TYPE_CASTS and node.name not in FUNCTIONS:
            if len(node.args) != 1:
                raise self.error(f"{node.name}() takes one argument", node)
            if isinstance(node.args[0], ast.Literal) and node.args[0].kind == "null":
                return Typed(self.d.null(TYPE_CASTS[node.name]), TYPE_CASTS[node.name])
            return Typed(self.coerce(self.expr(node.args[0], scope), TYPE_CASTS[node.name]), TYPE_CASTS[node.name])
        spec = FUNCTIONS.get(node.name)
        if spec is None:
            raise self.error(f"unknown function {node.name!r}" + suggest(node.name, FUNCTIONS), node)
        if not spec.min_args <= len(node.args) <= spec.max_args:
            expected = str(spec.min_args) if spec.min_args == spec.max_args else f"{spec.min_args} to {spec.max_args}"
            raise self.error(f"{node.name}() takes {expected} arguments, got {len(node.args)}", node)
        if spec.aggregate:
            if scope.group_names is None or scope.in_aggregate:
                raise self.error(f"{node.name}() is an aggregation: use it in summarize", node)
            if node.name in SPECIAL_AGGREGATES:
                raise self.error(f"{node.name}() must be a whole summarize column, not part of an expression", node)
            inner = Scope(scope.columns, scope.group_names, in_aggregate=True)
            args = [self.expr(arg, inner) for arg in node.args]
        else:
            args = [Typed(exp.Null(), "null") if isinstance(arg, ast.Call) and arg.name == "typeof"
                    else self.expr(arg, scope) for arg in node.args]
        return spec.translate(self, args, node)

    # ------------------------------------------------------------ coercions (used by functions.py)
    def constant(self, node: ast.Node, kind: type, what: str) -> Any:
        """The value of a constant argument (a literal, or a let bound to one)."""
        value: Any = None
        if isinstance(node, ast.Name) and node.name in self.scalar_lets:
            return self.constant(self.scalar_lets[node.name][0], kind, what)
        if isinstance(node, ast.Unary) and node.op == "-":
            inner = self.constant(node.operand, kind, what)
            return -inner
        if isinstance(node, ast.Literal):
            value = node.value
            if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if kind is int and isinstance(value, int) and not isinstance(value, bool):
                return value
            if kind is str and node.kind == "string":
                return value
            if kind is bool and node.kind == "bool":
                return value
        raise self.error(f"expected {what}", node)

    def type_argument(self, node: ast.Node) -> str:
        if isinstance(node, ast.Call) and node.name == "typeof" and len(node.args) == 1 \
                and isinstance(node.args[0], ast.Name) and node.args[0].name in TYPE_CASTS:
            return TYPE_CASTS[node.args[0].name]
        raise self.error("expected typeof(<type>)", node)

    def text(self, value: Typed) -> exp.Expr:
        """``value`` with string semantics (a dynamic string unquoted, other dynamic values as JSON)."""
        kind, sql = value.type, value.sql
        if kind == "string":
            return sql
        if kind == "dynamic":
            if value.path is not None:
                return self.d.json_get_text(value.path[0].copy(), value.path[1])
            return self.d.json_get_text(sql, [])
        if kind == "datetime":
            return self.d.strftime(sql, "%Y-%m-%dT%H:%M:%S.%fZ")
        if kind == "bool":  # as .NET prints them, which is what Kusto answers
            return exp.Case(ifs=[exp.If(this=sql, true=lit("True")),
                                 exp.If(this=exp.Not(this=sql.copy()), true=lit("False"))])
        return exp.cast(sql, "VARCHAR")

    def number(self, value: Typed, force_real: bool = False) -> exp.Expr:
        if value.type in ("long", "int"):
            return exp.cast(value.sql, "DOUBLE") if force_real else value.sql
        if value.type == "real":
            return value.sql
        if value.type in ("string", "dynamic"):
            return self.d.try_cast(self.text(value), "real")
        if value.type == "bool":
            return exp.cast(value.sql, "INTEGER")
        if value.type == "null":
            return self.d.null("real")
        if value.type == "timespan":
            return exp.Div(this=self.d.interval_micros(value.sql), expression=lit(1000.0))
        return self.d.try_cast(self.text(value), "real")

    def numeric_type(self, value: Typed) -> str:
        return value.type if value.type in NUMERIC else "real"

    def boolean(self, value: Typed) -> exp.Expr:
        if value.type == "bool":
            return value.sql
        if value.type in ("string", "dynamic"):
            return self.d.try_cast(exp.Lower(this=self.text(value)), "bool")
        if value.type in NUMERIC:
            return exp.NEQ(this=value.sql, expression=lit(0))
        if value.type == "null":
            return self.d.null("bool")
        raise KqlError(f"expected a boolean expression, got a {value.type} value", query=self.source_text)

    def dynamic(self, value: Typed) -> exp.Expr:
        if value.type == "dynamic":
            return value.sql
        if value.type == "string":
            return self.d.parse_json(value.sql)
        if value.type == "null":
            return self.d.null("dynamic")
        return self.d.to_json(value.sql)

    def comparable(self, value: Typed) -> exp.Expr:
        """A value SQL can compare, sort and group: dynamic values as their text."""
        return self.text(value) if value.type == "dynamic" else value.sql

    def coerce(self, value: Typed, kind: str) -> exp.Expr:
        if value.type == kind:
            return value.sql
        if value.type == "null":
            return self.d.null(kind if kind != "null" else "string")
        if kind == "string":
            return self.text(value)
        if kind == "real":
            return self.number(value, force_real=True)
        if kind in NUMERIC:
            return self.d.try_cast(self.number(value), kind)
        if kind == "bool":
            return self.boolean(value)
        if kind == "dynamic":
            return self.dynamic(value)
        if kind == "datetime":
            return self.d.try_cast(self.text(value), "datetime")
        if kind == "timespan" and value.type in NUMERIC:
            return self.d.interval_from_micros(exp.Mul(this=value.sql, expression=lit(1000)))
        return self.d.try_cast(value.sql, kind)

    def common_type(self, *values: Typed) -> str:
        kinds = [v.type for v in values if v.type != "null"]
        if not kinds:
            return "null"
        if all(k in NUMERIC for k in kinds) and len(set(kinds)) > 1:
            return "real" if "real" in kinds else "long"
        return kinds[0]
