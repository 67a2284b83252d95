"""The operators that combine or reshape whole tables: ``join``, ``union``, ``search``, ``mv-expand``
and ``parse``. Part of :class:`~scorewatch.kql.compiler.Compiler`, kept here so each module stays
about one thing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlglot import exp

from scorewatch.kql import ast
from scorewatch.kql.dialects import lit
from scorewatch.kql.errors import suggest
from scorewatch.kql.functions import Typed
from scorewatch.kql.relation import Relation, Scope, alias, col
from scorewatch.kql.strings import regex_escape
from scorewatch.store import schema

if TYPE_CHECKING:
    from scorewatch.kql.compiler import Compiler
    from scorewatch.kql.expressions import ExpressionCompiler

_JOIN_TYPES = {"innerunique": "INNER", "inner": "INNER", "leftouter": "LEFT", "rightouter": "RIGHT",
               "fullouter": "FULL"}
_PARSE_TYPES = {"string": "string", "long": "long", "int": "int", "real": "real", "double": "real",
                "bool": "bool", "boolean": "bool", "datetime": "datetime", "date": "datetime",
                "dynamic": "dynamic", "timespan": "string", "decimal": "real", "guid": "string"}


# ------------------------------------------------------------ join
def join(c: Compiler, relation: Relation, op: ast.Join) -> Relation:
    right = c.query(op.right)
    left = relation
    pairs = [(a.name, b.name) for a, b in op.on]
    for l_name, r_name in op.on:
        c._column(left, l_name)
        if r_name.name not in right.columns:
            raise c.error(f"unknown column {r_name.name!r} in the right side of the join"
                             + suggest(r_name.name, right.columns), r_name)
    if op.kind == "innerunique":
        left = _first_per_key(c, left, [key for key, _ in pairs])
    la, ra = c.fresh("_l"), c.fresh("_r")
    condition = exp.and_(*(
        exp.EQ(this=a, expression=b) for a, b, _ in (
            c.comparison_operands(Typed(col(lk, la), left.columns[lk]), Typed(col(rk, ra), right.columns[rk]), op)
            for lk, rk in pairs)))
    left_sub = left.query.subquery(la, copy=False)
    right_sub = right.query.subquery(ra, copy=False)
    if op.kind in ("leftsemi", "leftanti", "rightsemi", "rightanti"):
        keep, keep_alias, keep_sub, other_sub = (
            (left, la, left_sub, right_sub) if op.kind.startswith("left") else (right, ra, right_sub, left_sub))
        exists: exp.Expr = exp.Exists(this=exp.select(lit(1)).from_(other_sub, copy=False).where(condition, copy=False))
        if op.kind.endswith("anti"):
            exists = exp.Not(this=exists)
        query = exp.select(*(alias(col(n, keep_alias), n) for n in keep.columns)).from_(keep_sub, copy=False).where(exists, copy=False)
        return Relation(query, dict(keep.columns))
    items: list[exp.Expr] = [alias(col(n, la), n) for n in left.columns]
    columns = dict(left.columns)
    for name, kind in right.columns.items():
        out, n = name, 0
        while out.lower() in {c.lower() for c in columns}:  # DuckDB ignores case in names
            n += 1
            out = f"{name}{n}"
        columns[out] = kind
        items.append(alias(col(name, ra), out))
    query = exp.select(*items).from_(left_sub, copy=False).join(right_sub, on=condition, join_type=_JOIN_TYPES[op.kind], copy=False)
    return Relation(query, columns)

def _first_per_key(c: Compiler, relation: Relation, keys: list[str]) -> Relation:
    """One row per join key: the left side of KQL's default ``innerunique`` join."""
    rank = c.fresh("_rank")
    window = exp.Window(this=exp.RowNumber(), partition_by=[col(k) for k in keys])
    inner = exp.select(*(col(n) for n in relation.columns), exp.alias_(window, rank, quoted=True))
    inner = inner.from_(c.wrap(relation), copy=False)
    query = exp.select(*(col(n) for n in relation.columns)).from_(inner.subquery(c.fresh(), copy=False))
    return Relation(query.where(exp.EQ(this=col(rank), expression=lit(1)), copy=False), dict(relation.columns))

# ------------------------------------------------------------ union
def union(c: Compiler, relation: Relation | None, op: ast.Union) -> Relation:
    parts: list[tuple[str, Relation]] = []
    if relation is not None:
        parts.append((relation.source_name or "union_arg0", relation))
    for query in op.tables:
        part = c.query(query)
        label = query.source.name if isinstance(query.source, ast.TableRef) and not query.operators \
            else f"union_arg{len(parts)}"
        parts.append((label, part))
    return union_all(c, parts, op.kind, op.withsource)

def union_all(c: Compiler, parts: list[tuple[str, Relation]], kind: str = "outer",
              withsource: str | None = None) -> Relation:
    """Columns matched by name; a name with different types in different parts becomes
    ``name_type``, as in KQL; missing columns are null."""
    types: dict[str, set[str]] = {}
    for _, part in parts:
        for name, column_type in part.columns.items():
            types.setdefault(name, set()).add(column_type)
    renamed = [{name: (f"{name}_{t}" if len(types[name]) > 1 else name) for name, t in part.columns.items()}
               for _, part in parts]
    output: dict[str, str] = {}
    for (_, part), names in zip(parts, renamed, strict=True):
        for name, column_type in part.columns.items():
            output.setdefault(names[name], column_type)
    if kind == "inner":
        output = {n: t for n, t in output.items() if all(n in names.values() for names in renamed)}
    if withsource:
        output = {withsource: "string", **{n: t for n, t in output.items() if n != withsource}}
    selects: list[exp.Expr] = []
    for (label, part), names in zip(parts, renamed, strict=True):
        back = {new: old for old, new in names.items()}
        items = []
        for name, column_type in output.items():
            if withsource and name == withsource:
                items.append(alias(lit(label), name))
            elif name in back:
                items.append(alias(col(back[name]), name))
            else:
                items.append(alias(c.d.null(column_type if column_type != "null" else "string"), name))
        selects.append(exp.select(*items).from_(c.wrap(part), copy=False))
    query = selects[0]
    for select in selects[1:]:
        query = exp.union(query, select, distinct=False, copy=False)
    return Relation(query, output)  # type: ignore[arg-type]

# ------------------------------------------------------------ search
def search(c: Compiler, relation: Relation | None, op: ast.Search) -> Relation:
    predicate = _mark_terms(op.predicate)
    where = ast.Where(predicate, pos=op.pos, length=op.length)
    if relation is not None:
        return c.op_where(relation, where)
    names = [t.name for t in op.tables] or list(schema.TABLES)
    parts = []
    for table in op.tables or [ast.Name(n) for n in names]:
        ref = ast.TableRef(table.name, pos=table.pos, length=table.length)
        parts.append((table.name, c.op_where(c.table(ref), where)))
    return union_all(c, parts, withsource="$table")

def search_term(c: ExpressionCompiler, node: ast.Call, scope: Scope) -> Typed:
    term = str(node.args[0].value)  # type: ignore[attr-defined]
    operator = "has"
    if len(term) > 1 and term.startswith("*") and term.endswith("*"):
        operator, term = "contains", term[1:-1]
    elif term.endswith("*"):
        operator, term = "hasprefix", term[:-1]
    elif term.startswith("*"):
        operator, term = "hassuffix", term[1:]
    tests = []
    for typed in scope.columns.values():
        if typed.type not in ("string", "dynamic"):
            continue
        text = Typed(typed.sql.copy() if typed.type == "string" else c.d.json_text(typed.sql.copy()), "string")
        tests.append(c.string_predicate(operator, text, Typed(lit(term), "string"), node))
    if not tests:
        return Typed(exp.false(), "bool")
    return Typed(exp.Paren(this=exp.or_(*tests)), "bool")

# ------------------------------------------------------------ mv-expand and parse
def mv_expand(c: Compiler, relation: Relation, op: ast.MvExpand) -> Relation:
    scope = c.scope(relation)
    items = c.passthrough(relation)
    conversions: dict[str, str] = {}
    lists: dict[str, exp.Expr] = {}
    for item, to_type in zip(op.items, op.to_type, strict=True):
        typed = c.expr(item.expr, scope)
        name = item.name or c.infer_name(item.expr)
        if name is None:
            raise c.error("name the expanded column: mv-expand name = expression", item)
        lists[name] = c.d.json_elements(c.dynamic(typed))
        items[name] = Typed(exp.Null(), "dynamic")  # its place among the columns; filled below
        if to_type:
            conversions[name] = _PARSE_TYPES[to_type]
    together = c.d.unnest_together(list(lists.values())) if len(lists) > 1 else [c.d.unnest(v) for v in lists.values()]
    expanded: Relation
    if isinstance(together, list):  # one expression per list, lined up by the engine
        for name, sql in zip(lists, together, strict=True):
            items[name] = Typed(sql, "dynamic")
        expanded = c.select(items, relation)
    else:  # one expression of tuples: expand it, then take each list's element out of the tuple
        zipped = c.fresh("_mv")
        inner = {n: t for n, t in items.items() if n not in lists}
        inner[zipped] = Typed(together, "dynamic")
        elements = {n: Typed(c.d.tuple_element(col(zipped), list(lists).index(n)), "dynamic") if n in lists
                    else Typed(col(n), t.type) for n, t in items.items()}
        expanded = c.select(elements, c.select(inner, relation))
    if not conversions:
        return expanded
    converted = {n: Typed(c.coerce(Typed(col(n), t), conversions.get(n, t)), conversions.get(n, t))
                 for n, t in expanded.columns.items()}
    return c.select(converted, expanded)

def parse(c: Compiler, relation: Relation, op: ast.Parse) -> Relation:
    scope = c.scope(relation)
    source = c.text(c.expr(op.source, scope))
    regex = "" if op.pattern[0][0] == "star" else "^"
    columns: list[tuple[str, str]] = []
    for i, (kind, value) in enumerate(op.pattern):
        if kind == "text":
            regex += regex_escape(value)
        elif kind == "star":
            regex += ".*?"
        else:
            name, type_name, _, _ = value
            last = i == len(op.pattern) - 1
            regex += "(.*)" if last else "(.*?)"
            columns.append((name, _PARSE_TYPES[type_name]))
    items = c.passthrough(relation)
    for group, (name, kind) in enumerate(columns, start=1):
        text = Typed(c.d.regex_extract(source.copy(), lit(regex), group), "string")
        items[name] = Typed(c.coerce(text, kind), kind)
    return c.select(items, relation)




def _mark_terms(node: ast.Node) -> ast.Node:
    """In a search predicate, a bare string means "this term in any column"."""
    if isinstance(node, ast.Literal) and node.kind == "string":
        return ast.Call("__search_term", [node], pos=node.pos, length=node.length)
    if isinstance(node, ast.Binary) and node.op in ("and", "or"):
        return ast.Binary(node.op, _mark_terms(node.left), _mark_terms(node.right), pos=node.pos, length=node.length)
    if isinstance(node, ast.Call) and node.name == "not" and node.args:
        return ast.Call("not", [_mark_terms(node.args[0])], pos=node.pos, length=node.length)
    return node


# ------------------------------------------------------------ make-series
def make_series(c: Compiler, relation: Relation, op: ast.MakeSeries) -> Relation:
    """One row per group (``by``) with an array per aggregation over the axis bins, empty bins filled
    with ``default`` (0), and the axis values. Built as CTEs: the bounds (given, or the data's first and
    last bin), the rows binned and aggregated, a grid of every group and bin, the grid left-joined to
    the aggregates and collected in bin order."""
    scope = c.scope(relation)
    axis = c.expr(op.axis, scope)
    if axis.type not in ("datetime", "long", "int", "real"):
        raise c.error(f"make-series needs a datetime or numeric axis, got {axis.type}", op.axis)
    time = axis.type == "datetime"
    step = c.constant(op.step, float, "a constant step such as 1h" if time else "a constant numeric step")
    if step <= 0:
        raise c.error("make-series needs a positive step", op.step)

    def position(typed: Typed, node: ast.Node) -> exp.Expr:
        if typed.type != axis.type and not (typed.type in ("long", "int", "real") and not time):
            raise c.error(f"expected a {axis.type} like the axis, got {typed.type}", node)
        return c.d.epoch_micros(typed.sql) if time else exp.cast(typed.sql, "DOUBLE")

    def bin_floor(value: exp.Expr) -> exp.Expr:
        return exp.Mul(this=exp.Floor(this=exp.Div(this=value, expression=lit(step))), expression=lit(step))

    names = {key: c.fresh(f"_ms_{key}") for key in ("s", "n", "i", "lo", "hi", "one")}
    bounds_name, binned_name, grid_name, groups_name = (c.fresh(p) for p in ("_bounds", "_binned", "_grid", "_groups"))
    empty = Scope({})
    start = position(c.expr(op.start, empty), op.start) if op.start is not None else None
    end = position(c.expr(op.end, empty), op.end) if op.end is not None else None
    if start is None or end is None:  # the data's first and last bins
        extent = exp.select(alias(exp.Min(this=position(axis, op.axis)), names["lo"]),
                            alias(exp.Max(this=position(axis, op.axis)), names["hi"])).from_(
            relation.query.copy().subquery(c.fresh(), copy=False), copy=False)
        start = start if start is not None else bin_floor(col(names["lo"]))
        end = end if end is not None else exp.Add(this=bin_floor(col(names["hi"])), expression=lit(step))
    count = exp.Greatest(this=lit(0), expressions=[exp.cast(exp.Ceil(this=exp.Div(
        this=exp.Paren(this=exp.Sub(this=end, expression=start.copy())), expression=lit(step))), "BIGINT")])
    bounds = exp.select(alias(start, names["s"]), alias(count, names["n"]))
    if op.start is None or op.end is None:
        bounds = bounds.from_(extent.subquery(c.fresh(), copy=False), copy=False)

    # the rows, each with its bin; the aggregates per group and bin
    index = exp.cast(exp.Floor(this=exp.Div(this=exp.Paren(this=exp.Sub(
        this=position(axis, op.axis), expression=col(names["s"]))), expression=lit(step))), "BIGINT")
    rows = exp.select(exp.Star(), alias(index, names["i"])).from_(
        relation.query.subquery(c.fresh(), copy=False), copy=False).join(
        exp.Table(this=exp.to_identifier(bounds_name, quoted=True)), join_type="CROSS", copy=False)
    by = c.assignments(op.by, scope)
    aggregate_scope = Scope(dict(scope.columns), group_names=set(by))
    aggregate_scope.columns.update(by)
    series: dict[str, tuple[Typed, exp.Expr]] = {}
    for item, default in zip(op.aggregates, op.defaults, strict=True):
        produced = c.aggregate(item, relation, aggregate_scope, set(by))
        if len(produced) != 1 or produced[0][1].type not in ("long", "int", "real"):
            raise c.error("make-series takes aggregations of one number each (count(), avg(x), sum(x), ...)", item)
        name, typed = produced[0]
        if name in series or name in by:
            raise c.error(f"column {name!r} is assigned twice", item)
        filler = c.coerce(c.expr(default, empty), typed.type) if default is not None else lit(0)
        series[name] = (typed, filler)
    axis_name = c.infer_name(op.axis) or "axis"
    keys = [alias(t.sql, n) for n, t in by.items()] or [alias(lit(1), names["one"])]
    key_names = list(by) or [names["one"]]
    binned = exp.select(*keys, col(names["i"]), *(alias(t.sql, n) for n, (t, _) in series.items())).from_(
        rows.subquery(c.fresh(), copy=False), copy=False).where(exp.and_(
            exp.GTE(this=col(names["i"]), expression=lit(0)),
            exp.LT(this=col(names["i"]), expression=col(names["n"]))), copy=False).group_by(
        *([t.sql.copy() for t in by.values()] or [lit(1)]), col(names["i"]), copy=False)

    # every group with every bin, joined to the aggregates and collected in bin order
    groups = exp.select(*(col(n) for n in key_names)).distinct(copy=False).from_(
        exp.Table(this=exp.to_identifier(binned_name, quoted=True)), copy=False)
    grid = exp.select(*(col(n, groups_name) for n in key_names), col(names["s"], bounds_name),
                      alias(c.d.unnest(c.d.range(col(names["n"], bounds_name))), names["i"])).from_(
        groups.subquery(groups_name, copy=False), copy=False).join(
        exp.Table(this=exp.to_identifier(bounds_name, quoted=True)), join_type="CROSS", copy=False)
    bin_index = col(names["i"], grid_name)
    value = exp.Add(this=col(names["s"], grid_name), expression=exp.Mul(this=bin_index.copy(), expression=lit(step)))
    axis_value = c.text(Typed(c.d.timestamp_from_micros(exp.cast(value, "BIGINT")), "datetime")) if time else (
        exp.cast(value, "BIGINT") if axis.type in ("long", "int") and step.is_integer() else value)
    condition = exp.and_(exp.EQ(this=col(names["i"], grid_name), expression=col(names["i"], binned_name)),
                         *(exp.NullSafeEQ(this=col(n, grid_name), expression=col(n, binned_name)) for n in by))
    final = exp.select(
        *(alias(col(n, grid_name), n) for n in by),
        *(alias(c.d.ordered_list(exp.Coalesce(this=col(n, binned_name), expressions=[filler]), bin_index.copy()), n)
          for n, (_, filler) in series.items()),
        alias(c.d.ordered_list(axis_value, bin_index.copy()), axis_name),
    ).from_(grid.subquery(grid_name, copy=False), copy=False).join(
        exp.Table(this=exp.to_identifier(binned_name, quoted=True)), on=condition, join_type="LEFT", copy=False)
    # grouped by the grid's keys even without ``by``: no input rows, no groups, no row (as Kusto)
    final = final.group_by(*(col(n, grid_name) for n in key_names), copy=False)
    final = final.with_(bounds_name, as_=bounds, copy=False).with_(binned_name, as_=binned, copy=False)
    columns = {**{n: t.type for n, t in by.items()}, **{n: "dynamic" for n in series}}
    if axis_name in columns:
        raise c.error(f"column {axis_name!r} is assigned twice; name the axis's series differently", op.axis)
    columns[axis_name] = "dynamic"
    return Relation(final, columns)
