"""The KQL syntax tree: statements, tabular operators and scalar expressions.

Every node declares its children in ``children`` (names of fields holding nodes or lists of nodes),
so a walk needs no per-node code, and carries ``pos``/``length``: where its text is in the query, for
errors that point at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(eq=False)
class Node:
    children: ClassVar[tuple[str, ...]] = ()
    pos: int = field(default=0, kw_only=True)
    length: int = field(default=1, kw_only=True)

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, depth first."""
        yield self
        for name in self.children:
            value = getattr(self, name)
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, tuple):
                    item = item[1]
                if isinstance(item, Node):
                    yield from item.walk()


# ---------------------------------------------------------------- scalar expressions
@dataclass(eq=False)
class Literal(Node):
    value: Any
    kind: str   # string, long, real, bool, timespan (microseconds), datetime, dynamic, null


@dataclass(eq=False)
class Name(Node):
    name: str


@dataclass(eq=False)
class Member(Node):
    """``obj.key`` or ``obj["key"]`` or ``obj[0]`` on a dynamic value."""
    children = ("obj",)
    obj: Node
    key: str | int


@dataclass(eq=False)
class Index(Node):
    """``obj[expr]``: an array element (or a property) at a computed position; ``[0]``, ``[-1]`` and
    ``["key"]`` are :class:`Member`."""
    children = ("obj", "index")
    obj: Node
    index: Node


@dataclass(eq=False)
class Unary(Node):
    children = ("operand",)
    op: str
    operand: Node


@dataclass(eq=False)
class Binary(Node):
    children = ("left", "right")
    op: str
    left: Node
    right: Node


@dataclass(eq=False)
class InList(Node):
    """``x in (a, b)``, ``!in``, ``in~``, ``!in~``, ``has_any``; or ``x in (query)``: then ``values``
    holds that one :class:`Query` (its first column is the list)."""
    children = ("left", "values")
    op: str
    left: Node
    values: list[Node]


@dataclass(eq=False)
class Between(Node):
    children = ("expr", "low", "high")
    expr: Node
    low: Node
    high: Node
    negated: bool = False


@dataclass(eq=False)
class Call(Node):
    children = ("args",)
    name: str
    args: list[Node]


@dataclass(eq=False)
class Star(Node):
    """``*`` as a function argument: ``arg_max(timestamp, *)``."""


# ---------------------------------------------------------------- tabular operators
@dataclass(eq=False)
class Assignment(Node):
    """``name = expr`` or a bare ``expr`` (``name`` None) in project, extend, summarize."""
    children = ("expr",)
    name: str | None
    expr: Node
    names: list[str] = field(default_factory=list)   # (a, b) = arg_max(...)


@dataclass(eq=False)
class SortKey(Node):
    children = ("expr",)
    expr: Node
    ascending: bool = False
    nulls_first: bool | None = None


@dataclass(eq=False)
class Operator(Node):
    """A pipe operator; subclasses below."""


@dataclass(eq=False)
class Where(Operator):
    children = ("predicate",)
    predicate: Node


@dataclass(eq=False)
class Project(Operator):
    children = ("items",)
    items: list[Assignment]


@dataclass(eq=False)
class Extend(Operator):
    children = ("items",)
    items: list[Assignment]


@dataclass(eq=False)
class ProjectAway(Operator):
    names: list[Name]
    keep: bool = False   # project-keep


@dataclass(eq=False)
class ProjectRename(Operator):
    pairs: list[tuple[Name, Name]]   # (new, old)


@dataclass(eq=False)
class ProjectReorder(Operator):
    names: list[Name]


@dataclass(eq=False)
class Summarize(Operator):
    children = ("aggregates", "by")
    aggregates: list[Assignment]
    by: list[Assignment]


@dataclass(eq=False)
class MakeSeries(Operator):
    """``make-series agg [default = v], ... on axis [from a] [to b] step s [by ...]``."""
    children = ("aggregates", "defaults", "axis", "start", "end", "step", "by")
    aggregates: list[Assignment]
    defaults: list[Node | None]
    axis: Node
    start: Node | None
    end: Node | None
    step: Node
    by: list[Assignment]


@dataclass(eq=False)
class Count(Operator):
    pass


@dataclass(eq=False)
class Take(Operator):
    children = ("count",)
    count: Node


@dataclass(eq=False)
class Top(Operator):
    children = ("count", "keys")
    count: Node
    keys: list[SortKey]


@dataclass(eq=False)
class Sort(Operator):
    children = ("keys",)
    keys: list[SortKey]


@dataclass(eq=False)
class Distinct(Operator):
    children = ("columns",)
    columns: list[Node]   # empty: distinct *


@dataclass(eq=False)
class Join(Operator):
    children = ("right", "on")
    kind: str
    right: Query
    on: list[tuple[Name, Name]]   # (left column, right column)


@dataclass(eq=False)
class Union(Operator):
    children = ("tables",)
    tables: list[Query]
    kind: str = "outer"
    withsource: str | None = None


@dataclass(eq=False)
class MvExpand(Operator):
    children = ("items",)
    items: list[Assignment]
    to_type: list[str | None] = field(default_factory=list)


@dataclass(eq=False)
class Parse(Operator):
    children = ("source",)
    source: Node
    pattern: list[tuple[str, Any]]   # ("text", "..."), ("column", (name, type)), ("star", None)


@dataclass(eq=False)
class As(Operator):
    name: str


@dataclass(eq=False)
class Search(Operator):
    children = ("predicate",)
    predicate: Node
    tables: list[Name] = field(default_factory=list)


@dataclass(eq=False)
class GetSchema(Operator):
    pass


@dataclass(eq=False)
class Render(Operator):
    visualization: str
    properties: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- sources and statements
@dataclass(eq=False)
class TableRef(Node):
    name: str


@dataclass(eq=False)
class Print(Node):
    children = ("items",)
    items: list[Assignment]


@dataclass(eq=False)
class Query(Node):
    """A tabular expression: a source, then pipe operators."""
    children = ("source", "operators")
    source: Node   # TableRef, Print, Union (as a source), Search (as a source)
    operators: list[Operator]


@dataclass(eq=False)
class Let(Node):
    children = ("value",)
    name: str
    value: Node   # a scalar expression or a Query


@dataclass(eq=False)
class Script(Node):
    children = ("lets", "query")
    lets: list[Let]
    query: Query
