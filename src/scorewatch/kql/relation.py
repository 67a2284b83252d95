"""A compiled tabular step (:class:`Relation`), the names an expression may use (:class:`Scope`), and
the two column helpers every operator uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from scorewatch.kql.functions import Typed


@dataclass
class Relation:
    query: exp.Query
    columns: dict[str, str]
    filterable: bool = False   # a plain filter over its source: a following `where` can join its WHERE
    source_name: str | None = None


@dataclass
class Scope:
    """The names an expression can use: columns (and, inside summarize, the rules for them)."""

    columns: dict[str, Typed]
    group_names: set[str] | None = None   # in summarize: the `by` columns usable outside aggregations
    in_aggregate: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def col(name: str, table: str | None = None) -> exp.Column:
    return exp.Column(this=exp.to_identifier(name, quoted=True),
                      table=exp.to_identifier(table, quoted=True) if table else None)


def alias(value: exp.Expr, name: str) -> exp.Expr:
    if isinstance(value, exp.Column) and value.name == name:
        return value
    return exp.alias_(value, name, quoted=True)
