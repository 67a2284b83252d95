"""The KQL parser: tokens to a :class:`~scorewatch.kql.ast.Script`.

Recursive descent. Each pipe operator has one ``_parse_<operator>`` method, chosen from
:data:`Parser.OPERATORS`; scalar expressions are parsed by precedence (``or`` < ``and`` <
comparisons and string operators < ``+ -`` < ``* / %`` < unary minus < member access and calls).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from scorewatch.kql import ast
from scorewatch.kql.errors import KqlError, suggest
from scorewatch.kql.tokens import Token, TokenType, tokenize

T = TokenType
COMPARISONS = {T.EQ: "==", T.NEQ: "!=", T.EQ_CI: "=~", T.NEQ_CI: "!~", T.LT: "<", T.LE: "<=", T.GT: ">",
               T.GE: ">="}
_STRING_OPS = ("contains", "contains_cs", "has", "has_cs", "startswith", "startswith_cs", "endswith",
               "endswith_cs", "hasprefix", "hasprefix_cs", "hassuffix", "hassuffix_cs", "like")
STRING_OPERATORS = frozenset(_STRING_OPS + tuple("!" + op for op in _STRING_OPS))
LIST_OPERATORS = frozenset(("in", "!in", "in~", "!in~", "has_any", "has_all"))
JOIN_KINDS = ("innerunique", "inner", "leftouter", "rightouter", "fullouter", "leftanti", "rightanti",
              "leftsemi", "rightsemi", "leftantisemi", "rightantisemi", "anti", "semi")
# KQL's operators and sources this compiler does not translate (yet): named as such, not "did you mean".
NOT_SUPPORTED = frozenset(("evaluate", "lookup", "find", "facet", "fork", "invoke", "mv-apply", "partition",
                           "reduce", "sample", "sample-distinct", "scan", "serialize", "top-nested",
                           "top-hitters", "parse-where", "parse-kv", "make-graph", "graph-match", "consume",
                           "externaldata", "range", "datatable", "project-smart"))
TYPE_NAMES = ("string", "long", "int", "real", "double", "bool", "boolean", "datetime", "date", "dynamic",
              "timespan", "decimal", "guid")


# Limits that keep every query's parse and compile bounded (each level costs a few Python frames, and
# Python stops at about a thousand): past them a query is refused as "too complex", at the offending text.
MAX_NESTING = 64     # parentheses, calls, subqueries and unary signs inside each other
MAX_DEPTH = 80       # levels of the syntax tree, counting each pipe operator of a query as one
MAX_NODES = 20_000   # syntax tree nodes
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
MAX_TIMESPAN_MICROS = (2**63 - 1) // 10  # KQL's timespan is a signed 64-bit count of 100 ns ticks


class Parser:
    def __init__(self, query: str, tables: Iterable[str] = ()) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.i = 0
        self.tabular_names = set(tables)
        self.nesting = 0

    def nested(self, parse: Callable[[], Any]) -> Any:
        """``parse()`` one level deeper; past :data:`MAX_NESTING` the query is too complex."""
        self.nesting += 1
        try:
            if self.nesting > MAX_NESTING:
                raise too_complex(f"more than {MAX_NESTING} nested levels (parentheses, calls, subqueries)",
                                  self.query, self.tok.pos, self.tok.length)
            return parse()
        finally:
            self.nesting -= 1

    # ------------------------------------------------------------ token helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        if token.type is not T.EOF:
            self.i += 1
        return token

    def match(self, kind: TokenType) -> Token | None:
        return self.advance() if self.tok.type is kind else None

    def match_word(self, *words: str) -> Token | None:
        return self.advance() if self.tok.is_word(*words) else None

    def expect(self, kind: TokenType, what: str) -> Token:
        if self.tok.type is not kind:
            self.fail(f"expected {what}")
        return self.advance()

    def expect_word(self, word: str) -> Token:
        if not self.tok.is_word(word):
            self.fail(f"expected '{word}'")
        return self.advance()

    def expect_ident(self, what: str = "a name") -> Token:
        if self.tok.type is T.LBRACKET and self.peek().type is T.STRING and self.peek(2).type is T.RBRACKET:
            start = self.advance()
            name = self.advance().text
            end = self.advance()
            return Token(T.IDENT, name, start.pos, end.pos + 1 - start.pos)
        if self.tok.type is not T.IDENT or self.tok.text.startswith("!"):
            self.fail(f"expected {what}")
        return self.advance()

    def fail(self, message: str, token: Token | None = None) -> None:
        token = token or self.tok
        found = "end of query" if token.type is T.EOF else repr(self.query[token.pos:token.pos + token.length])
        raise KqlError.at(f"{message}, found {found}", self.query, token.pos, token.length, kind="SyntaxError")

    def span(self, node: ast.Node, start: Token) -> Any:
        previous = self.tokens[self.i - 1] if self.i > 0 else start
        node.pos = start.pos
        node.length = max(1, previous.pos + previous.length - start.pos)
        return node

    # ------------------------------------------------------------ statements
    def parse(self) -> ast.Script:
        lets: list[ast.Let] = []
        start = self.tok
        while self.tok.is_word("let") and self.peek().type is T.IDENT:
            lets.append(self._parse_let())
        if self.tok.type is T.EOF:
            self.fail("expected a query")
        query = self.parse_query()
        while self.match(T.SEMICOLON):
            pass
        if self.tok.type is not T.EOF:
            self.fail("expected '|' or the end of the query")
        return self.span(ast.Script(lets, query), start)

    def _parse_let(self) -> ast.Let:
        start = self.advance()
        name = self.expect_ident("a name after 'let'").text
        self.expect(T.ASSIGN, "'='")
        value: ast.Node
        if self._starts_tabular():
            value = self.parse_query()
            self.tabular_names.add(name)
        else:
            value = self.parse_expr()
        self.expect(T.SEMICOLON, "';' after the let statement")
        return self.span(ast.Let(name, value), start)

    def _starts_tabular(self) -> bool:
        tok = self.tok
        if tok.is_word("union", "print", "search"):
            return True
        return tok.type is T.IDENT and (tok.text in self.tabular_names or self.peek().type is T.PIPE)

    def parse_query(self) -> ast.Query:
        return self.nested(self._parse_query)

    def _parse_query(self) -> ast.Query:
        start = self.tok
        source: ast.Node
        if self.match_word("union"):
            source = self._parse_union(start)
        elif self.match_word("print"):
            source = self.span(ast.Print(self._assignments()), start)
        elif self.match_word("search"):
            source = self._parse_search(start)
        elif self.match(T.LPAREN):
            inner = self.parse_query()
            self.expect(T.RPAREN, "')'")
            source = inner
        else:
            tok = self.expect_ident("a table name")
            if tok.text in NOT_SUPPORTED and tok.text not in self.tabular_names:
                self._not_supported(tok)
            source = ast.TableRef(tok.text, pos=tok.pos, length=tok.length)
        operators: list[ast.Operator] = []
        while self.match(T.PIPE):
            op_tok = self.tok
            if op_tok.type is not T.IDENT:
                self.fail("expected a query operator")
            method = self.OPERATORS.get(op_tok.text)
            if method is None and op_tok.text in NOT_SUPPORTED:
                self._not_supported(op_tok)
            if method is None:
                raise KqlError.at(f"unknown query operator {op_tok.text!r}" + suggest(op_tok.text, self.OPERATORS),
                                  self.query, op_tok.pos, op_tok.length, kind="SyntaxError")
            self.advance()
            operators.append(self.span(method(self, op_tok), op_tok))
        return self.span(ast.Query(source, operators), start)

    def _not_supported(self, tok: Token) -> None:
        raise KqlError.at(f"operator '{tok.text}' is not supported yet", self.query, tok.pos, tok.length,
                          kind="SyntaxError")

    # ------------------------------------------------------------ pipe operators
    def _parse_where(self, start: Token) -> ast.Operator:
        return ast.Where(self.parse_expr())

    def _parse_project(self, start: Token) -> ast.Operator:
        return ast.Project(self._assignments())

    def _parse_extend(self, start: Token) -> ast.Operator:
        return ast.Extend(self._assignments())

    def _parse_project_away(self, start: Token) -> ast.Operator:
        return ast.ProjectAway(self._name_patterns(), keep=start.text == "project-keep")

    def _parse_project_reorder(self, start: Token) -> ast.Operator:
        return ast.ProjectReorder(self._name_patterns())

    def _parse_project_rename(self, start: Token) -> ast.Operator:
        pairs = []
        while True:
            new = self._name()
            self.expect(T.ASSIGN, "'=' (project-rename new = old)")
            pairs.append((new, self._name()))
            if not self.match(T.COMMA):
                return ast.ProjectRename(pairs)

    def _parse_summarize(self, start: Token) -> ast.Operator:
        aggregates = [] if self.tok.is_word("by") else self._assignments()
        by = self._assignments() if self.match_word("by") else []
        if not aggregates and not by:
            self.fail("expected an aggregation or 'by'")
        return ast.Summarize(aggregates, by)

    def _parse_make_series(self, start: Token) -> ast.Operator:
        if (self.tok.is_word("kind") or self.tok.text.startswith("hint.")) and self.peek().type is T.ASSIGN:
            self.fail("make-series parameters (kind=, hint.*=) are not supported yet; expected an aggregation")
        aggregates: list[ast.Assignment] = []
        defaults: list[ast.Node | None] = []
        while True:
            aggregates.append(self._assignments(single=True)[0])
            default = None
            if self.tok.is_word("default") and self.peek().type is T.ASSIGN:
                self.advance(), self.advance()
                default = self.parse_expr()
            defaults.append(default)
            if not self.match(T.COMMA):
                break
        self.expect_word("on")
        axis = self._parse_additive()  # not a comparison: `on timestamp in range(...)` is the other form
        if self.tok.is_word("in"):
            self.fail("make-series ... in range(start, stop, step) is not supported yet; write from start to stop "
                      "step step")
        begin = self.parse_expr() if self.match_word("from") else None
        end = self.parse_expr() if self.match_word("to") else None
        self.expect_word("step")
        step = self.parse_expr()
        by = self._assignments() if self.match_word("by") else []
        return ast.MakeSeries(aggregates, defaults, axis, begin, end, step, by)

    def _parse_count(self, start: Token) -> ast.Operator:
        return ast.Count()

    def _parse_take(self, start: Token) -> ast.Operator:
        return ast.Take(self.parse_expr())

    def _parse_top(self, start: Token) -> ast.Operator:
        count = self.parse_expr()
        self.expect_word("by")
        keys = [self._sort_key()]
        while self.match(T.COMMA):
            keys.append(self._sort_key())
        return ast.Top(count, keys)

    def _parse_sort(self, start: Token) -> ast.Operator:
        self.expect_word("by")
        keys = [self._sort_key()]
        while self.match(T.COMMA):
            keys.append(self._sort_key())
        return ast.Sort(keys)

    def _parse_distinct(self, start: Token) -> ast.Operator:
        if self.match(T.STAR):
            return ast.Distinct([])
        columns = [self.parse_expr()]
        while self.match(T.COMMA):
            columns.append(self.parse_expr())
        return ast.Distinct(columns)

    def _parse_join(self, start: Token) -> ast.Operator:
        kind = "innerunique"
        while self.tok.type is T.IDENT and self.peek().type is T.ASSIGN:
            key = self.advance().text
            self.advance()
            value = self.expect_ident("a value")
            if key == "kind":
                if value.text not in JOIN_KINDS:
                    raise KqlError.at(f"unknown join kind {value.text!r}" + suggest(value.text, JOIN_KINDS),
                                      self.query, value.pos, value.length, kind="SyntaxError")
                kind = {"anti": "leftanti", "semi": "leftsemi", "leftantisemi": "leftanti",
                        "rightantisemi": "rightanti"}.get(value.text, value.text)
            elif not key.startswith("hint"):
                self.fail("expected 'kind=' or '('")
        right = self._tabular_argument()
        self.expect_word("on")
        on: list[tuple[ast.Name, ast.Name]] = []
        while True:
            left = self._join_side("$left")
            if left.name.startswith("$"):
                self.fail("expected '$left.column'")
            if self.match(T.EQ):
                other = self._join_side("$right")
                on.append((left, other))
            else:
                on.append((left, left))
            if not (self.match(T.COMMA) or self.match_word("and")):
                return ast.Join(kind, right, on)

    def _join_side(self, side: str) -> ast.Name:
        tok = self.tok
        if tok.is_word("$left", "$right"):
            if tok.text != side:
                self.fail(f"expected {side}")
            self.advance()
            self.expect(T.DOT, "'.'")
        return self._name()

    def _parse_union(self, start: Token) -> ast.Union:
        kind, withsource = "outer", None
        while self.tok.type is T.IDENT and self.peek().type is T.ASSIGN:
            key = self.advance().text
            self.advance()
            value = self.expect_ident("a value").text
            if key == "kind":
                if value not in ("inner", "outer"):
                    self.fail("expected kind=inner or kind=outer")
                kind = value
            elif key == "withsource":
                withsource = value
            elif not key.startswith("hint") and key != "isfuzzy":
                self.fail("expected kind=, withsource= or a table")
        tables = [self._tabular_argument()]
        while self.match(T.COMMA):
            tables.append(self._tabular_argument())
        return self.span(ast.Union(tables, kind, withsource), start)

    def _tabular_argument(self) -> ast.Query:
        if self.match(T.LPAREN):
            query = self.parse_query()
            self.expect(T.RPAREN, "')'")
            return query
        tok = self.expect_ident("a table name or '('")
        return ast.Query(ast.TableRef(tok.text, pos=tok.pos, length=tok.length), [], pos=tok.pos,
                         length=tok.length)

    def _parse_mv_expand(self, start: Token) -> ast.Operator:
        items, types = [], []
        while True:
            items.extend(self._assignments(single=True))
            to_type = None
            if self.match_word("to"):
                self.expect_word("typeof")
                self.expect(T.LPAREN, "'('")
                to_type = self._type_name()
                self.expect(T.RPAREN, "')'")
            types.append(to_type)
            if not self.match(T.COMMA):
                return ast.MvExpand(items, types)

    def _parse_parse(self, start: Token) -> ast.Operator:
        if self.tok.is_word("kind") and self.peek().type is T.ASSIGN:
            self.advance(), self.advance()
            if not self.match_word("simple"):
                self.fail("only kind=simple is supported")
        source = self.parse_expr()
        self.expect_word("with")
        pattern: list[tuple[str, Any]] = []
        while self.tok.type not in (T.PIPE, T.EOF, T.SEMICOLON, T.RPAREN):
            if tok := self.match(T.STRING):
                pattern.append(("text", tok.text))
            elif self.match(T.STAR):
                pattern.append(("star", None))
            else:
                name = self.expect_ident("a string, '*' or a column name")
                kind = self._type_name() if self.match(T.COLON) else "string"
                pattern.append(("column", (name.text, kind, name.pos, name.length)))
        if not any(kind == "column" for kind, _ in pattern):
            self.fail("expected a column name in the parse pattern")
        return ast.Parse(source, pattern)

    def _parse_as(self, start: Token) -> ast.Operator:
        while self.tok.type is T.IDENT and self.peek().type is T.ASSIGN:
            self.advance(), self.advance(), self.advance()
        name = self.expect_ident("a name after 'as'").text
        self.tabular_names.add(name)
        return ast.As(name)

    def _parse_search(self, start: Token) -> ast.Search:
        tables: list[ast.Name] = []
        if self.match_word("in"):
            self.expect(T.LPAREN, "'('")
            tables.append(self._name())
            while self.match(T.COMMA):
                tables.append(self._name())
            self.expect(T.RPAREN, "')'")
        return self.span(ast.Search(self.parse_expr(), tables), start)

    def _parse_getschema(self, start: Token) -> ast.Operator:
        return ast.GetSchema()

    def _parse_render(self, start: Token) -> ast.Operator:
        visualization = self.expect_ident("a chart type").text
        properties: dict[str, Any] = {}
        if self.match_word("with"):
            self.expect(T.LPAREN, "'('")
            while not self.match(T.RPAREN):
                key = self.expect_ident("a property name").text
                self.expect(T.ASSIGN, "'='")
                properties[key] = self._render_value()
                if not self.match(T.COMMA) and self.tok.type is not T.RPAREN:
                    self.fail("expected ',' or ')'")
        return ast.Render(visualization, properties)

    def _render_value(self) -> Any:
        if self.match(T.LPAREN):
            values = []
            while not self.match(T.RPAREN):
                values.append(self._render_value())
                self.match(T.COMMA)
            return values
        tok = self.advance()
        if tok.type is T.LONG:
            return int(tok.text)
        if tok.type is T.REAL:
            return float(tok.text)
        if tok.type in (T.STRING, T.IDENT):
            return {"true": True, "false": False}.get(tok.text, tok.text) if tok.type is T.IDENT else tok.text
        self.fail("expected a property value", tok)
        return None

    OPERATORS: dict[str, Callable[[Parser, Token], ast.Operator]] = {
        "where": _parse_where, "filter": _parse_where, "project": _parse_project, "extend": _parse_extend,
        "project-away": _parse_project_away, "project-keep": _parse_project_away,
        "project-rename": _parse_project_rename, "project-reorder": _parse_project_reorder,
        "summarize": _parse_summarize, "make-series": _parse_make_series, "count": _parse_count, "take": _parse_take, "limit": _parse_take,
        "top": _parse_top, "sort": _parse_sort, "order": _parse_sort, "distinct": _parse_distinct,
        "join": _parse_join, "union": lambda self, start: self._parse_union(start),
        "mv-expand": _parse_mv_expand, "parse": _parse_parse, "as": _parse_as,
        "search": lambda self, start: self._parse_search(start), "getschema": _parse_getschema,
        "render": _parse_render,
    }

    # ------------------------------------------------------------ operator pieces
    def _assignments(self, single: bool = False) -> list[ast.Assignment]:
        items = []
        while True:
            start = self.tok
            names: list[str] = []
            if self.tok.type is T.LPAREN and self._looks_like_name_tuple():
                self.advance()
                names.append(self.expect_ident().text)
                while self.match(T.COMMA):
                    names.append(self.expect_ident().text)
                self.expect(T.RPAREN, "')'")
                self.expect(T.ASSIGN, "'='")
            name = None
            if self._at_name_assign():
                name = self.expect_ident().text
                self.advance()
            items.append(self.span(ast.Assignment(name, self.parse_expr(), names), start))
            if single or not self.match(T.COMMA):
                return items

    def _at_name_assign(self) -> bool:
        if self.tok.type is T.IDENT:
            return self.peek().type is T.ASSIGN
        return (self.tok.type is T.LBRACKET and self.peek().type is T.STRING
                and self.peek(2).type is T.RBRACKET and self.peek(3).type is T.ASSIGN)

    def _looks_like_name_tuple(self) -> bool:
        j = self.i + 1
        while self.tokens[j].type in (T.IDENT, T.COMMA):
            j += 1
        return self.tokens[j].type is T.RPAREN and self.tokens[j + 1].type is T.ASSIGN

    def _name(self) -> ast.Name:
        tok = self.expect_ident("a column name")
        return ast.Name(tok.text, pos=tok.pos, length=tok.length)

    def _name_patterns(self) -> list[ast.Name]:
        names = []
        while True:
            start = self.tok
            text = ""
            while self.tok.type in (T.IDENT, T.STAR) and (not text or self.tok.pos == start.pos + len(text)):
                text += self.advance().text
            if not text:
                self.fail("expected a column name")
            names.append(ast.Name(text, pos=start.pos, length=len(text)))
            if not self.match(T.COMMA):
                return names

    def _sort_key(self) -> ast.SortKey:
        start = self.tok
        key = ast.SortKey(self.parse_expr())
        if self.match_word("asc"):
            key.ascending = True
        else:
            self.match_word("desc")
        if self.match_word("nulls"):
            which = self.expect_ident("'first' or 'last'")
            if which.text not in ("first", "last"):
                self.fail("expected 'first' or 'last'", which)
            key.nulls_first = which.text == "first"
        return self.span(key, start)

    def _type_name(self) -> str:
        tok = self.expect_ident("a type name")
        if tok.text not in TYPE_NAMES:
            raise KqlError.at(f"unknown type {tok.text!r}" + suggest(tok.text, TYPE_NAMES), self.query,
                              tok.pos, tok.length, kind="SyntaxError")
        return tok.text

    # ------------------------------------------------------------ scalar expressions
    def parse_expr(self) -> ast.Node:
        return self.nested(self._parse_or)

    def _binary_chain(self, sub: Callable[[], ast.Node], words: tuple[str, ...]) -> ast.Node:
        """``a or b or c ...``: the operands as a balanced tree (and/or are associative), so a long
        chain stays shallow to compile."""
        operands = [sub()]
        op = ""
        while self.tok.is_word(*words):
            op = self.advance().text
            operands.append(sub())
        return _balanced(op, operands)

    def _parse_or(self) -> ast.Node:
        return self._binary_chain(self._parse_and, ("or",))

    def _parse_and(self) -> ast.Node:
        return self._binary_chain(self._parse_comparison, ("and",))

    def _parse_comparison(self) -> ast.Node:
        start = self.tok
        left = self._parse_additive()
        tok = self.tok
        if tok.type in COMPARISONS:
            self.advance()
            return self.span(ast.Binary(COMPARISONS[tok.type], left, self._parse_additive()), start)
        if tok.type is not T.IDENT:
            return left
        if tok.text in STRING_OPERATORS:
            self.advance()
            return self.span(ast.Binary(tok.text, left, self._parse_additive()), start)
        if tok.text in ("matches", "!matches") and self.peek().is_word("regex"):
            self.advance(), self.advance()
            return self.span(ast.Binary("matches regex", left, self._parse_additive()), start)
        if tok.text in LIST_OPERATORS:
            self.advance()
            self.expect(T.LPAREN, "'('")
            if self._starts_tabular():  # x in (requests | ... | project y), x in (a_tabular_let)
                query = self.parse_query()
                self.expect(T.RPAREN, "')'")
                return self.span(ast.InList(tok.text, left, [query]), start)
            values = [] if self.tok.type is T.RPAREN else [self.parse_expr()]
            while self.match(T.COMMA):
                values.append(self.parse_expr())
            self.expect(T.RPAREN, "')'")
            return self.span(ast.InList(tok.text, left, values), start)
        if tok.text in ("between", "!between"):
            self.advance()
            self.expect(T.LPAREN, "'('")
            low = self._parse_additive()
            self.expect(T.DOTDOT, "'..'")
            high = self._parse_additive()
            self.expect(T.RPAREN, "')'")
            return self.span(ast.Between(left, low, high, tok.text == "!between"), start)
        return left

    def _parse_additive(self) -> ast.Node:
        start = self.tok
        left = self._parse_multiplicative()
        while self.tok.type in (T.PLUS, T.MINUS):
            op = self.advance().text
            left = self.span(ast.Binary(op, left, self._parse_multiplicative()), start)
        return left

    def _parse_multiplicative(self) -> ast.Node:
        start = self.tok
        left = self._parse_unary()
        while self.tok.type in (T.STAR, T.SLASH, T.PERCENT):
            op = self.advance().text
            left = self.span(ast.Binary(op, left, self._parse_unary()), start)
        return left

    def _parse_unary(self) -> ast.Node:
        start = self.tok
        if start.type is T.MINUS and self.peek().type is T.LONG:  # -9223372036854775808 is a long
            self.advance()
            tok = self.advance()
            return self._long(-int(tok.text), start.pos, tok.pos + tok.length - start.pos)
        if self.match(T.MINUS):
            return self.span(ast.Unary("-", self.nested(self._parse_unary)), start)
        if self.match(T.PLUS):
            return self.nested(self._parse_unary)
        return self._parse_postfix()

    def _long(self, value: int, pos: int, length: int) -> ast.Literal:
        if not LONG_MIN <= value <= LONG_MAX:
            raise KqlError.at(f"the number is out of the range of long ({LONG_MIN} to {LONG_MAX})", self.query,
                              pos, length, kind="SyntaxError")
        return ast.Literal(value, "long", pos=pos, length=length)

    def _parse_postfix(self) -> ast.Node:
        start = self.tok
        node = self._parse_primary()
        while True:
            if self.match(T.DOT):
                if self.tok.type is T.LBRACKET:
                    continue
                key = self.expect_ident("a property name after '.'")
                node = self.span(ast.Member(node, key.text), start)
            elif self.tok.type is T.LBRACKET:
                self.advance()
                index = self.advance()
                negative = False
                if index.type is T.MINUS:
                    negative, index = True, self.advance()
                if index.type is T.STRING and self.tok.type is T.RBRACKET:
                    node = self.span(ast.Member(node, index.text), start)
                elif index.type is T.LONG and self.tok.type is T.RBRACKET:
                    node = self.span(ast.Member(node, -int(index.text) if negative else int(index.text)), start)
                else:  # a computed position: arr[i], arr[array_length(arr) - 1]
                    self.i -= 2 if negative else 1
                    node = self.span(ast.Index(node, self.parse_expr()), start)
                self.expect(T.RBRACKET, "']'")
                node = self.span(node, start)
            else:
                return node

    def _parse_primary(self) -> ast.Node:
        tok = self.tok
        literal_kinds = {T.STRING: "string", T.LONG: "long", T.REAL: "real", T.TIMESPAN: "timespan",
                         T.DATETIME: "datetime", T.DYNAMIC: "dynamic"}
        if tok.type in literal_kinds:
            self.advance()
            value: Any = tok.text
            if tok.type is T.LONG:
                return self._long(int(tok.text), tok.pos, tok.length)
            if tok.type in (T.REAL, T.TIMESPAN):
                value = float(tok.text)
                if not math.isfinite(value) or (tok.type is T.TIMESPAN and abs(value) > MAX_TIMESPAN_MICROS):
                    what = "real" if tok.type is T.REAL else "timespan (about 29,000 years either way)"
                    raise KqlError.at(f"the value is out of the range of {what}", self.query, tok.pos,
                                      tok.length, kind="SyntaxError")
            return ast.Literal(value, literal_kinds[tok.type], pos=tok.pos, length=tok.length)
        if tok.type is T.LPAREN:
            self.advance()
            inner = self.parse_expr()
            self.expect(T.RPAREN, "')'")
            return inner
        if tok.type is T.STAR:
            self.advance()
            return ast.Star(pos=tok.pos, length=1)
        if tok.is_word("true", "false"):
            self.advance()
            return ast.Literal(tok.text == "true", "bool", pos=tok.pos, length=tok.length)
        if tok.is_word("null"):
            self.advance()
            return ast.Literal(None, "null", pos=tok.pos, length=tok.length)
        if tok.type is T.IDENT and not tok.text.startswith("!") and self.peek().type is T.LPAREN:
            self.advance(), self.advance()
            args: list[ast.Node] = []
            if self.tok.type is not T.RPAREN:
                args.append(self.parse_expr())
                while self.match(T.COMMA):
                    args.append(self.parse_expr())
            self.expect(T.RPAREN, "')' to close the function call")
            return self.span(ast.Call(tok.text, args), tok)
        if tok.type is T.IDENT and tok.text.startswith("!"):
            self.fail("expected an expression")
        if tok.type in (T.IDENT, T.LBRACKET):
            name = self.expect_ident("an expression")
            return ast.Name(name.text, pos=name.pos, length=name.length)
        self.fail("expected an expression")
        raise AssertionError("unreachable")


def parse(query: str, tables: Iterable[str] = ()) -> ast.Script:
    """Parse ``query``; ``tables`` are the names a ``let`` may bind a tabular value to. A query past
    the size limits (:data:`MAX_DEPTH`, :data:`MAX_NODES`) is refused as too complex."""
    script = Parser(query, tables).parse()
    check_size(script, query)
    return script


def too_complex(reason: str, query: str, pos: int, length: int = 1) -> KqlError:
    return KqlError.at(f"query too complex: {reason}; simplify it or split it", query, pos, length,
                       kind="SyntaxError")


def check_size(script: ast.Script, query: str) -> None:
    """Walk the tree without recursion; refuse it past :data:`MAX_DEPTH` levels or :data:`MAX_NODES`."""
    stack: list[tuple[ast.Node, int]] = [(script, 0)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise too_complex(f"more than {MAX_DEPTH} levels of operators and expressions", query,
                              node.pos, node.length)
        if count > MAX_NODES:
            raise too_complex(f"more than {MAX_NODES} parts", query, node.pos, node.length)
        if isinstance(node, ast.Query):  # each pipe operator nests the query one level deeper
            stack.append((node.source, depth + 1))
            stack.extend((op, depth + 1 + i) for i, op in enumerate(node.operators, start=1))
            continue
        for name in node.children:
            value = getattr(node, name)
            for item in value if isinstance(value, list) else [value]:
                child = item[1] if isinstance(item, tuple) else item
                if isinstance(child, ast.Node):
                    stack.append((child, depth + 1))


def _balanced(op: str, operands: list[ast.Node]) -> ast.Node:
    if len(operands) == 1:
        return operands[0]
    middle = len(operands) // 2
    left, right = _balanced(op, operands[:middle]), _balanced(op, operands[middle:])
    return ast.Binary(op, left, right, pos=left.pos, length=max(1, right.pos + right.length - left.pos))
