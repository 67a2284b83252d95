"""KQL errors: where in the query it went wrong, and how to show it.

One error object serves every front end: the CLI prints :meth:`KqlError.render` (the message, the
query line and a caret line under the offending text), the query API answers :meth:`KqlError.to_dict`
inside its error body, and a client rebuilds the same error with :meth:`KqlError.from_dict`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from scorewatch.errors import BadRequest


class KqlError(BadRequest):
    """A query that cannot be parsed (``SyntaxError``) or compiled (``SemanticError``).

    ``line`` and ``column`` are 1-based; ``length`` is how many characters the caret underlines.
    """

    def __init__(self, message: str, *, query: str = "", line: int = 1, column: int = 1, length: int = 1,
                 kind: str = "SemanticError", snippet: str | None = None) -> None:
        super().__init__(message, code=kind)
        self.kind = kind
        self.query = query
        self.line = line
        self.column = column
        self.length = max(1, length)
        lines = query.split("\n")
        self.snippet = snippet if snippet is not None else (lines[line - 1] if 0 < line <= len(lines) else "")

    @classmethod
    def at(cls, message: str, query: str, pos: int, length: int = 1, *,
           kind: str = "SemanticError") -> KqlError:
        """An error at character offset ``pos`` of ``query``."""
        pos = max(0, min(pos, len(query)))
        line = query.count("\n", 0, pos) + 1
        column = pos - (query.rfind("\n", 0, pos) + 1) + 1
        return cls(message, query=query, line=line, column=column, length=length, kind=kind)

    def render(self) -> str:
        """The message, then the query line, then ``^^^`` under the offending text."""
        location = f"line {self.line}, column {self.column}"
        if not self.snippet:
            return f"{self.message} ({location})"
        caret = " " * (self.column - 1) + "^" * self.length
        return f"{self.message} ({location})\n  {self.snippet}\n  {caret}"

    def app_insights_error(self) -> dict[str, Any]:
        """As Application Insights answers a bad query: a 400 whose ``innererror`` is :meth:`to_dict`."""
        return {"code": "BadArgumentError", "message": self.message, "innererror": self.to_dict()}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.kind, "message": self.message, "line": self.line, "column": self.column,
                "length": self.length, "snippet": self.snippet}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KqlError:
        """The error a server described with :meth:`to_dict`."""
        return cls(str(data.get("message", "invalid query")), line=int(data.get("line", 1)),
                   column=int(data.get("column", 1)), length=int(data.get("length", 1)),
                   kind=str(data.get("code", "SemanticError")), snippet=str(data.get("snippet", "")))


def suggest(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidates, or ``""`` when none is close."""
    names = list(dict.fromkeys(candidates))
    exact = [c for c in names if c.lower() == name.lower()]
    close = exact or difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in names}
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)]
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
