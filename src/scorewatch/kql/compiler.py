"""The KQL compiler: syntax tree to sqlglot expressions to SQL for the store's dialect.

Each tabular step is a :class:`Relation` (a sqlglot query and its columns with their KQL types);
each pipe operator builds the next one, usually as a SELECT over the previous one as a subquery (the
engines flatten those). Scalar expressions compile to :class:`~scorewatch.kql.functions.Typed` values
so KQL's semantics for strings, dynamic values and datetimes come out right.

Nothing from the query text is spliced into SQL: literals become ``exp.Literal`` nodes, names are
resolved against known columns and tables and quoted by sqlglot. When an ``app_id`` is given, every
table reference becomes a subquery filtered on it (and on the timespan) before any operator sees it,
so no query can read another application's rows.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlglot import exp

from scorewatch.kql import ast, relations
from scorewatch.kql.dialects import DIALECTS, Dialect, lit
from scorewatch.kql.errors import KqlError, suggest
from scorewatch.kql.expressions import ExpressionCompiler, naive_utc, strip_null_guards
from scorewatch.kql.functions import FUNCTIONS, MULTI_COLUMN, SPECIAL_AGGREGATES, Typed
from scorewatch.kql.parser import parse, too_complex
from scorewatch.kql.relation import Relation, Scope, alias, col
from scorewatch.store import schema

MAX_READS = 256  # table reads of one query, with every let written out in full


@dataclass
class CompiledQuery:
    """The SQL for one KQL query, what its columns are, and its ``render`` hint."""

    sql: str
    params: list[Any]
    columns: list[tuple[str, str]]
    render: dict[str, Any] | None = None


def compile_query(kql: str, *, dialect: str = "duckdb", app_id: str | Collection[str] | None = None,
                  timespan: tuple[datetime, datetime] | None = None, now: datetime | None = None) -> CompiledQuery:
    """Compile ``kql`` to SQL for ``dialect``.

    ``app_id`` scopes every table to one application (or to several, given as a collection of ids;
    an empty one sees no rows) and ``timespan`` (start, end) to a time range;
    ``now`` is the clock ``ago()`` and ``now()`` read (default: the current UTC time).
    """
    if dialect not in DIALECTS:
        raise KqlError(f"unknown SQL dialect {dialect!r}", query=kql)
    try:
        return Compiler(kql, DIALECTS[dialect](), app_id=app_id, timespan=timespan, now=now).compile()
    except RecursionError:  # a shape the size limits did not foresee: still an answer, not a crash
        raise too_complex("it nests too deeply to compile", kql, 0, len(kql)) from None


class Compiler(ExpressionCompiler):
    """Compiles one query: the tabular part here, scalar expressions in :class:`ExpressionCompiler`."""

    def __init__(self, text: str, dialect: Dialect, *, app_id: str | Collection[str] | None = None,
                 timespan: tuple[datetime, datetime] | None = None, now: datetime | None = None) -> None:
        super().__init__(text, dialect, now=naive_utc(now or datetime.now(UTC)))
        self.app_ids = None if app_id is None else (app_id,) if isinstance(app_id, str) else tuple(sorted(app_id))
        self.timespan = (naive_utc(timespan[0]), naive_utc(timespan[1])) if timespan else None
        self.tabular_lets: dict[str, ast.Query | Relation] = {}
        self.render: dict[str, Any] | None = None
        self._aliases = 0
        # Each tabular let (and `as`) is compiled once, as a common table expression; ``reads``
        # counts the table reads the query would make with every let written out in full, which
        # is what a let that doubles another costs, so it is bounded (MAX_READS).
        self.ctes: list[tuple[str, exp.Query]] = []
        self.let_reads: dict[str, int] = {}
        self.reads = 0
        self._compiling: set[str] = set()

    # ------------------------------------------------------------ entry
    def compile(self) -> CompiledQuery:
        script = parse(self.source_text, schema.TABLES)
        for let in script.lets:
            if let.name in schema.TABLES:
                raise self.error(f"'{let.name}' is a table name; choose another name", let)
            if isinstance(let.value, ast.Query):
                self.tabular_lets[let.name] = let.value
            else:
                self.scalar_lets[let.name] = (let.value, self.expr(let.value, Scope({})))
        relation = self.query(script.query)
        query = relation.query
        _parenthesize(query)
        lets = []
        for name, cte in self.ctes:
            _parenthesize(cte)
            lets.append(exp.CTE(this=cte, alias=exp.TableAlias(this=exp.to_identifier(name, quoted=True))))
        if lets:  # before the query's own CTEs (make-series adds some), which may read them
            own = query.args.get("with_")
            query.set("with_", exp.With(expressions=lets + (own.expressions if own else [])))
        columns = [(name, "string" if kind == "null" else kind) for name, kind in relation.columns.items()]
        return CompiledQuery(self.d.finish(query).sql(dialect=self.d.name), [], columns, self.render)

    def fresh(self, prefix: str = "_q") -> str:
        self._aliases += 1
        return f"{prefix}{self._aliases}"

    def wrap(self, relation: Relation, prefix: str = "_q") -> exp.Expr:
        return relation.query.subquery(self.fresh(prefix), copy=False)

    def scope(self, relation: Relation, table: str | None = None) -> Scope:
        return Scope({name: Typed(col(name, table), kind) for name, kind in relation.columns.items()})

    def select(self, items: dict[str, Typed], relation: Relation | None, **flags: Any) -> Relation:
        unchanged = relation is not None and list(items) == list(relation.columns) and all(
            isinstance(t.sql, exp.Column) and not t.sql.table and t.sql.name == name for name, t in items.items())
        # Passing every column through unchanged is `SELECT *`: shorter SQL, the same columns.
        query = exp.select(exp.Star()) if unchanged else exp.select(*(alias(t.sql, n) for n, t in items.items()))
        if relation is not None:
            query = query.from_(self.wrap(relation), copy=False)
        return Relation(query, {name: t.type for name, t in items.items()}, **flags)

    def passthrough(self, relation: Relation) -> dict[str, Typed]:
        return {name: Typed(col(name), kind) for name, kind in relation.columns.items()}

    # ------------------------------------------------------------ tabular expressions
    def query(self, node: ast.Query) -> Relation:
        relation = self.source(node.source)
        for index, op in enumerate(node.operators):
            if isinstance(op, ast.Render):
                if index != len(node.operators) - 1:
                    raise self.error("'render' must be the last operator of the query", op)
                self.render = {"visualization": op.visualization, **op.properties}
                continue
            handler = getattr(self, "op_" + type(op).__name__.lower())
            relation = handler(relation, op)
        return relation

    def source(self, node: ast.Node) -> Relation:
        if isinstance(node, ast.TableRef):
            return self.table(node)
        if isinstance(node, ast.Query):
            return self.query(node)
        if isinstance(node, ast.Print):
            return self.select(self.assignments(node.items, Scope({}), positional="print_"), None)
        if isinstance(node, ast.Union):
            return self.op_union(None, node)
        if isinstance(node, ast.Search):
            return self.op_search(None, node)
        raise self.error("expected a table", node)

    def table(self, ref: ast.TableRef) -> Relation:
        bound = self.tabular_lets.get(ref.name)
        if isinstance(bound, ast.Query):  # a let's first use: compile it once, as a CTE
            if ref.name in self._compiling:
                raise self.error(f"'{ref.name}' refers to itself", ref)
            self._compiling.add(ref.name)
            reads = self.reads
            relation = self.query(bound)
            self._compiling.discard(ref.name)
            self.let_reads[ref.name] = self.reads - reads
            self.reads = reads
            bound = self.tabular_lets[ref.name] = self.common_table(relation)
        if isinstance(bound, Relation):
            self.count_reads(self.let_reads.get(ref.name, 1), ref)
            return Relation(bound.query.copy(), dict(bound.columns), filterable=True, source_name=ref.name)
        self.count_reads(1, ref)
        if ref.name not in schema.TABLES:
            names = list(schema.TABLES) + list(self.tabular_lets)
            raise self.error(f"unknown table {ref.name!r}" + suggest(ref.name, names), ref)
        columns = {c.name: c.type for c in schema.TABLES[ref.name]}
        query = exp.select(*(col(name) for name in columns)).from_(exp.Table(this=exp.to_identifier(ref.name, quoted=True)), copy=False)
        conditions: list[exp.Expr] = []
        if self.app_ids is not None:
            conditions.append(_in_apps(self.app_ids))
        if self.timespan is not None and "timestamp" in columns:
            start, end = self.timespan
            conditions.append(exp.GTE(this=col("timestamp"), expression=self.d.timestamp(start)))
            conditions.append(exp.LTE(this=col("timestamp"), expression=self.d.timestamp(end)))
        if conditions:
            query = query.where(exp.and_(*conditions), copy=False)
        # The scoped table is never merged into (filterable=False): the user's filters stay outside it.
        return Relation(query, columns, source_name=ref.name)

    # ------------------------------------------------------------ simple operators
    def op_where(self, relation: Relation, op: ast.Where) -> Relation:
        condition = strip_null_guards(self.boolean(self.expr(op.predicate, self.scope(relation))))
        if relation.filterable and isinstance(relation.query, exp.Select):
            relation.query = relation.query.where(condition, copy=False)
            return relation
        query = exp.select(exp.Star()).from_(self.wrap(relation), copy=False).where(condition, copy=False)
        return Relation(query, dict(relation.columns), filterable=True)

    def op_project(self, relation: Relation, op: ast.Project) -> Relation:
        return self.select(self.assignments(op.items, self.scope(relation)), relation)

    def op_extend(self, relation: Relation, op: ast.Extend) -> Relation:
        items = self.passthrough(relation)
        scope = self.scope(relation)
        for name, typed in self.assignments(op.items, scope, taken=set(items)).items():
            items[name] = typed
        return self.select(items, relation)

    def assignments(self, items: list[ast.Assignment], scope: Scope, *, taken: set[str] | None = None,
                    positional: str = "Column") -> dict[str, Typed]:
        """Named expressions, each able to use the ones before it (``extend a = 1, b = a + 1``)."""
        out: dict[str, Typed] = {}
        scope = Scope(dict(scope.columns), scope.group_names, scope.in_aggregate)
        skip = set(taken or ())
        count = 0
        for index, item in enumerate(items):
            if isinstance(item.expr, ast.Call) and item.expr.name in MULTI_COLUMN:  # series_stats(x): 7 columns
                for column, value in MULTI_COLUMN[item.expr.name](self, item, scope):
                    out[column] = scope.columns[column] = value
                continue
            typed = self.expr(item.expr, scope)
            name = item.name or self.infer_name(item.expr)
            if name is None and positional == "print_":  # print numbers by position: print_0, b, print_2
                name = f"print_{index}"
            if name is None:
                count += 1
                while f"{positional}{count}" in skip:
                    count += 1
                name = f"{positional}{count}"
            elif item.name and item.name in out:
                raise self.error(f"column {item.name!r} is assigned twice", item)
            clash = [n for n in (*out, *skip) if n.lower() == name.lower() and n != name]
            if clash:  # the store (DuckDB) compares column names ignoring case
                raise self.error(f"column {name!r} differs from {clash[0]!r} only in case; choose another name", item)
            out[name] = typed
            scope.columns[name] = typed
        return out

    def op_projectaway(self, relation: Relation, op: ast.ProjectAway) -> Relation:
        matched = self._match_columns(relation, op.names)
        keep = [n for n in relation.columns if (n in matched) == op.keep]
        if not keep:
            raise self.error("no column would be left", op)
        return self.select({n: Typed(col(n), relation.columns[n]) for n in keep}, relation)

    def op_projectreorder(self, relation: Relation, op: ast.ProjectReorder) -> Relation:
        first: list[str] = []
        for pattern in op.names:
            for name in self._match_columns(relation, [pattern]):
                if name not in first:
                    first.append(name)
        order = first + [n for n in relation.columns if n not in first]
        return self.select({n: Typed(col(n), relation.columns[n]) for n in order}, relation)

    def op_projectrename(self, relation: Relation, op: ast.ProjectRename) -> Relation:
        renames = {}
        for new, old in op.pairs:
            self._column(relation, old)
            renames[old.name] = new.name
        items = {renames.get(n, n): Typed(col(n), kind) for n, kind in relation.columns.items()}
        return self.select(items, relation)

    def _match_columns(self, relation: Relation, patterns: list[ast.Name]) -> list[str]:
        matched: list[str] = []
        for pattern in patterns:
            if "*" in pattern.name:
                matched += [n for n in relation.columns if fnmatch.fnmatchcase(n, pattern.name)]
            else:
                self._column(relation, pattern)
                matched.append(pattern.name)
        return matched

    def _column(self, relation: Relation, name: ast.Name) -> str:
        if name.name not in relation.columns:
            raise self.error(f"unknown column {name.name!r}" + suggest(name.name, relation.columns), name)
        return relation.columns[name.name]

    def op_count(self, relation: Relation, op: ast.Count) -> Relation:
        return self.select({"Count": Typed(exp.Count(this=exp.Star()), "long")}, relation)

    def row_count(self, node: ast.Node) -> int:
        count = self.constant(node, int, "a row count")
        if count < 0:
            raise self.error("a row count cannot be negative", node)
        return count

    def op_take(self, relation: Relation, op: ast.Take) -> Relation:
        count = self.row_count(op.count)
        if isinstance(relation.query, exp.Select) and not relation.query.args.get("limit"):
            # LIMIT applies last in a SELECT, so it can join the previous step: no new subquery.
            relation.query = relation.query.limit(count, copy=False)
            relation.filterable = False
            return relation
        relation = self.select(self.passthrough(relation), relation)
        relation.query = relation.query.limit(count, copy=False)
        return relation

    def op_sort(self, relation: Relation, op: ast.Sort) -> Relation:
        scope = self.scope(relation)
        keys = [self.sort_key(key, scope) for key in op.keys]
        relation = self.select(self.passthrough(relation), relation)
        relation.query = relation.query.order_by(*keys, copy=False)
        return relation

    def op_top(self, relation: Relation, op: ast.Top) -> Relation:
        count = self.row_count(op.count)
        relation = self.op_sort(relation, ast.Sort(op.keys))
        relation.query = relation.query.limit(count, copy=False)
        return relation

    def sort_key(self, key: ast.SortKey, scope: Scope) -> exp.Ordered:
        typed = self.expr(key.expr, scope)
        nulls_first = key.ascending if key.nulls_first is None else key.nulls_first
        return exp.Ordered(this=self.comparable(typed), desc=not key.ascending, nulls_first=nulls_first)

    def op_distinct(self, relation: Relation, op: ast.Distinct) -> Relation:
        if op.columns:
            items = self.assignments([ast.Assignment(None, c, pos=c.pos, length=c.length) for c in op.columns],
                                     self.scope(relation))
        else:
            items = self.passthrough(relation)
        result = self.select(items, relation)
        assert isinstance(result.query, exp.Select)
        result.query = result.query.distinct(copy=False)
        return result

    def op_as(self, relation: Relation, op: ast.As) -> Relation:
        shared = self.tabular_lets[op.name] = self.common_table(relation)
        self.let_reads[op.name] = max(1, self.reads)
        return Relation(shared.query.copy(), dict(shared.columns), filterable=True,
                        source_name=relation.source_name)

    def common_table(self, relation: Relation) -> Relation:
        """``relation`` as a CTE of the query; returns ``SELECT * FROM`` it (copy it for each use)."""
        name = self.fresh("_let")
        self.ctes.append((name, relation.query))
        query = exp.select(exp.Star()).from_(exp.Table(this=exp.to_identifier(name, quoted=True)), copy=False)
        return Relation(query, dict(relation.columns))

    def count_reads(self, reads: int, node: ast.Node) -> None:
        self.reads += reads
        if self.reads > MAX_READS:
            raise too_complex(f"it reads tables more than {MAX_READS} times once its lets are written out "
                              "(a let that uses another twice doubles it)", self.source_text, node.pos, node.length)

    def op_getschema(self, relation: Relation, op: ast.GetSchema) -> Relation:
        system = {"string": "System.String", "datetime": "System.DateTime", "real": "System.Double",
                  "int": "System.Int32", "long": "System.Int64", "bool": "System.SByte",
                  "dynamic": "System.Object", "timespan": "System.TimeSpan", "null": "System.String"}
        rows = [exp.Tuple(expressions=[lit(name), lit(i), lit(system[kind]),
                                       lit("string" if kind == "null" else kind)])
                for i, (name, kind) in enumerate(relation.columns.items())]
        names = ["ColumnName", "ColumnOrdinal", "DataType", "ColumnType"]
        values = exp.Values(expressions=rows, alias=exp.TableAlias(
            this=exp.to_identifier(self.fresh("_v")), columns=[exp.to_identifier(n, quoted=True) for n in names]))
        query = exp.select(*(col(n) for n in names)).from_(values, copy=False)
        return Relation(query, {"ColumnName": "string", "ColumnOrdinal": "long", "DataType": "string",
                                "ColumnType": "string"})

    def in_query(self, node: ast.InList, left: Typed, query: ast.Query) -> Typed:
        """``x in (query)``: ``x IN (SELECT first column FROM query)``; ``in~`` compares lowered text."""
        if node.op in ("has_any", "has_all"):
            raise self.error(f"'{node.op}' takes a list of values, not a tabular expression", query)
        relation = self.query(query)
        name, kind = next(iter(relation.columns.items()))
        inner = Typed(col(name), kind)
        if node.op in ("in~", "!in~"):
            a: exp.Expr = exp.Lower(this=self.text(left))
            b: exp.Expr = exp.Lower(this=self.text(inner))
        else:
            a, b, _ = self.comparison_operands(left, inner, node)
        values = exp.select(alias(b, name)).from_(self.wrap(relation), copy=False)
        return self.in_test(node.op, exp.In(this=a, query=exp.Subquery(this=values)))

    # ------------------------------------------------------------ summarize
    def op_summarize(self, relation: Relation, op: ast.Summarize) -> Relation:
        scope = self.scope(relation)
        by = self.assignments(op.by, scope)
        aggregate_scope = Scope(dict(scope.columns), group_names=set(by))
        for name, typed in by.items():
            aggregate_scope.columns[name] = typed
        items: dict[str, Typed] = dict(by)
        for item in op.aggregates:
            for name, typed in self.aggregate(item, relation, aggregate_scope, set(by)):
                base, n = name, 0
                while name in items:
                    n += 1
                    name = f"{base}{n}"
                items[name] = typed
        query = exp.select(*(alias(t.sql, name) for name, t in items.items())).from_(self.wrap(relation), copy=False)
        if by:
            query = query.group_by(*(t.sql.copy() for t in by.values()), copy=False)
        return Relation(query, {name: t.type for name, t in items.items()})

    def aggregate(self, item: ast.Assignment, relation: Relation, scope: Scope,
                  by: set[str]) -> list[tuple[str, Typed]]:
        """The column(s) one summarize item makes: ``percentiles`` and ``arg_max`` make several."""
        call = item.expr
        if isinstance(call, ast.Call) and call.name in SPECIAL_AGGREGATES:
            if len(call.args) < 2:
                raise self.error(f"{call.name}() needs at least two arguments", call)
            value = self.expr(call.args[0], Scope(scope.columns, in_aggregate=True))
            if call.name == "percentiles":
                return self._percentiles(item, call, value)
            return self._arg_extreme(item, call, value, relation, scope, by)
        typed = self.expr(call, scope)
        name = item.name or self._aggregate_name(call) or self.infer_name(call) or "Column1"
        return [(name, typed)]

    def _aggregate_name(self, call: ast.Node) -> str | None:
        """Kusto's name for an unnamed aggregate: ``count_``, ``avg_duration``, ``percentile_x_95``."""
        if not (isinstance(call, ast.Call) and call.name in FUNCTIONS and FUNCTIONS[call.name].aggregate):
            return None
        spec = FUNCTIONS[call.name]
        arg = self.infer_name(call.args[0]) if call.args else None
        if spec.name_is_argument:
            return arg or call.name
        if spec.name_ignores_args or not call.args:
            return f"{spec.prefix or call.name}_"
        name = f"{spec.prefix or call.name}_{arg or ''}"
        if call.name == "percentile":
            name += "_" + _percent_text(self.constant(call.args[1], float, "a constant percentage"))
        return name

    def _percentiles(self, item: ast.Assignment, call: ast.Call, value: Typed) -> list[tuple[str, Typed]]:
        arg_name = self.infer_name(call.args[0]) or ""
        sql = self.number(value) if value.type == "dynamic" else value.sql
        percents = [self.constant(arg, float, "a constant percentage") for arg in call.args[1:]]
        for arg, percent in zip(call.args[1:], percents, strict=True):
            if not 0 <= percent <= 100:
                raise self.error("a percentile must be between 0 and 100", arg)
        kind = "real" if value.type == "dynamic" else value.type
        out = []
        for i, (percent, column) in enumerate(zip(percents, self.d.percentiles(sql, percents), strict=True)):
            name = item.names[i] if i < len(item.names) else f"percentile_{arg_name}_{_percent_text(percent)}"
            out.append((name, Typed(column, kind)))
        return out

    def _arg_extreme(self, item: ast.Assignment, call: ast.Call, value: Typed, relation: Relation, scope: Scope,
                     by: set[str]) -> list[tuple[str, Typed]]:
        """``arg_max(x, a, b)``: the largest x and, from its row, a and b (``*``: every other column)."""
        largest = call.name == "arg_max"
        arg_name = self.infer_name(call.args[0])
        by_value = self.comparable(value)
        inner = Scope(scope.columns, in_aggregate=True)
        extras: list[tuple[str, Typed]] = []
        for arg in call.args[1:]:
            if isinstance(arg, ast.Star):
                extras += [(n, scope.columns[n]) for n in relation.columns
                           if n not in by and n != arg_name and n not in dict(extras)]
            else:
                extras.append((self.infer_name(arg) or f"Column{len(extras) + 1}", self.expr(arg, inner)))
        out = [(item.name or arg_name or ("max_" if largest else "min_"),
                Typed((exp.Max if largest else exp.Min)(this=by_value.copy()),
                      "string" if value.type == "dynamic" else value.type))]
        for name, typed in extras:
            out.append((name, Typed(self.d.arg_extreme(typed.sql.copy(), by_value.copy(), largest), typed.type)))
        # (t, i) = arg_max(timestamp, id) names the columns in order
        return [(item.names[i] if i < len(item.names) else name, typed) for i, (name, typed) in enumerate(out)]

    # ------------------------------------------------------------ operators in relations.py
    def op_join(self, relation: Relation, op: ast.Join) -> Relation:
        return relations.join(self, relation, op)

    def op_union(self, relation: Relation | None, op: ast.Union) -> Relation:
        return relations.union(self, relation, op)

    def op_search(self, relation: Relation | None, op: ast.Search) -> Relation:
        return relations.search(self, relation, op)

    def op_makeseries(self, relation: Relation, op: ast.MakeSeries) -> Relation:
        return relations.make_series(self, relation, op)

    def op_mvexpand(self, relation: Relation, op: ast.MvExpand) -> Relation:
        return relations.mv_expand(self, relation, op)

    def op_parse(self, relation: Relation, op: ast.Parse) -> Relation:
        return relations.parse(self, relation, op)


def _in_apps(app_ids: tuple[str, ...]) -> exp.Expr:
    """The scope's condition: ``appId`` is one of ``app_ids`` (none: no row)."""
    if not app_ids:
        return exp.false()
    if len(app_ids) == 1:
        return exp.EQ(this=col("appId"), expression=lit(app_ids[0]))
    return exp.In(this=col("appId"), expressions=[lit(a) for a in app_ids])


def _percent_text(percent: float) -> str:
    return str(int(percent)) if percent.is_integer() else str(percent).replace(".", "_")


def _parenthesize(query: exp.Expr) -> None:
    """Parenthesize nested operators: sqlglot prints trees as built, without precedence."""
    for node in list(query.walk()):
        if isinstance(node, (exp.Binary, exp.Unary)) and not isinstance(node, (exp.Paren, exp.Escape, exp.Dot)):
            for key in ("this", "expression"):
                child = node.args.get(key)
                if isinstance(child, (exp.Binary, exp.Unary, exp.Between, exp.In)) and \
                        not isinstance(child, (exp.Paren, exp.Escape)):
                    node.set(key, exp.Paren(this=child))

