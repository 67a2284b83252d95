"""How ``scorewatch query`` shows a result to a person: one line per row, fitted to the terminal.

As Application Insights' results grid does: a whole table (``requests | take 10``, every column of
``requests``) shows a default set of its columns (:data:`TABLE_COLUMNS`); any other result shows its
columns from the left, as many as fit. Long values end in an ellipsis and JSON values are shown as
compact one-line JSON, a bag's properties that differ from row to row first (ids after them); a line
says how many rows there are and how many columns were left out. ``--columns all`` shows every column
(still fitted: when they cannot share a line, each row becomes a block of ``column  value`` lines, as
psql's expanded display), ``--columns a,b`` those, ``--wide`` every column with whole values, one line
per row whatever the terminal's width. Timestamps are UTC, to the millisecond. ``render`` charts are
drawn by :mod:`scorewatch.kql.charts`; ``--format json|csv`` never come here.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from scorewatch.errors import BadRequest
from scorewatch.store import schema

# The columns shown for a whole table, as Application Insights' results grid leads with them.
TABLE_COLUMNS = {
    "requests": ("timestamp", "name", "resultCode", "duration", "operation_Id"),
    "traces": ("timestamp", "message", "severityLevel", "customDimensions"),
    "exceptions": ("timestamp", "type", "outerMessage", "operation_Id"),
    "dependencies": ("timestamp", "type", "target", "name", "resultCode", "duration", "operation_Id"),
    "customEvents": ("timestamp", "name", "customDimensions"),
    "customMetrics": ("timestamp", "name", "value", "customDimensions"),
    "pageViews": ("timestamp", "name", "url", "duration"),
    "availabilityResults": ("timestamp", "name", "location", "success", "duration"),
}
_FULL_TABLES = {tuple(c.name for c in columns): name for name, columns in schema.TABLES.items()}
RIGID = frozenset(("datetime", "bool", "int", "long", "real", "timespan"))  # shown whole, never shortened
MIN_WIDTH = 10  # a shortened column keeps at least this many characters
SHORT = 24      # a text column this narrow is kept whole while the table can fit
GAP = 2         # between two columns


def cell(value: Any, kind: str) -> str:
    """One value as one line of text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0 or 1e-3 <= abs(value) < 1e15:
            return f"{value:.3f}".rstrip("0").rstrip(".")
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    text = str(value)
    if kind == "datetime" and len(text) >= 19 and text[10] == "T":
        return text[:23].replace("T", " ")  # 2024-05-01 10:00:00.123 (UTC, as the header says)
    return text.replace("\r\n", " ⏎ ").replace("\n", " ⏎ ").replace("\t", " ")


def _header(name: str, kind: str) -> str:
    return f"{name} [UTC]" if kind == "datetime" else name


def choose(names: list[str], wanted: str | None) -> tuple[list[int], str]:
    """Indexes of the columns to show for ``--columns`` (None: the default), and a note for what is not."""
    if wanted and wanted.strip().lower() != "all":
        chosen = []
        for name in (part.strip() for part in wanted.split(",") if part.strip()):
            if name not in names:
                raise BadRequest(f"--columns: the result has no column {name!r} (it has: {', '.join(names)})")
            chosen.append(names.index(name))
        return chosen, ""
    if wanted is None and (table := _FULL_TABLES.get(tuple(names))) in TABLE_COLUMNS:
        chosen = [names.index(name) for name in TABLE_COLUMNS[table]]
        return chosen, f"{len(chosen)} of {len(names)} columns"
    return list(range(len(names))), ""


def fit(headers: list[str], rows: list[list[str]], kinds: list[str], budget: int) -> list[int]:
    """Column widths within ``budget`` characters: typed values (times, numbers) stay whole, and so do
    short texts (names, codes, messages up to :data:`SHORT`) while they can; the widest texts are
    shortened first, each to no less than :data:`MIN_WIDTH`."""
    natural = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    if sum(natural) <= budget:
        return natural
    for whole in (RIGID | {"short"}, RIGID):  # first keep short texts whole; if that cannot fit, shorten them too
        fixed = [kinds[i] in whole or (n <= SHORT and "short" in whole) for i, n in enumerate(natural)]
        minimum = [n if fixed[i] else min(n, MIN_WIDTH) for i, n in enumerate(natural)]

        def widths(cap: int, fixed: list[bool] = fixed, minimum: list[int] = minimum) -> list[int]:
            return [n if fixed[i] else min(n, max(cap, minimum[i])) for i, n in enumerate(natural)]

        if sum(widths(0)) <= budget or not whole - RIGID:
            low, high = 0, max(natural)
            while low < high:  # the largest cap on the shortened columns that fits
                middle = (low + high + 1) // 2
                if sum(widths(middle)) <= budget:
                    low = middle
                else:
                    high = middle - 1
            return widths(low)
    raise AssertionError("unreachable")


def _fitting(names: list[str], kinds: list[str], rows: list[list[Any]], width: int) -> int:
    """How many columns from the left fit ``width`` at their smallest."""
    used = 0
    for i, name in enumerate(names):
        texts = [cell(row[i], kinds[i]) for row in rows]
        natural = max([len(_header(name, kinds[i]))] + [len(t) for t in texts])
        used += (natural if kinds[i] in RIGID else min(natural, MIN_WIDTH)) + (GAP if i else 0)
        if used > width:
            return max(1, i)
    return len(names)


def print_table(console: Console, table: dict[str, Any], *, columns: str | None = None,
                wide: bool = False) -> None:
    """Print ``table`` (the query API's ``PrimaryResult``) as the module docstring says."""
    names = [c["name"] for c in table["columns"]]
    kinds = [c["type"] for c in table["columns"]]
    rows = table["rows"]
    chosen, note = choose(names, "all" if wide and columns is None else columns)
    if not wide and columns is None and not note:
        shown = _fitting(names, kinds, rows, console.width)
        if shown < len(names):
            chosen = chosen[:shown]
            note = f"{shown} of {len(names)} columns"
    headers = [_header(names[i], kinds[i]) for i in chosen]
    columns_shown = [[row[i] for row in rows] for i in chosen]
    if not wide:
        columns_shown = [_varying_first(values) if kinds[i] == "dynamic" else values
                         for i, values in zip(chosen, columns_shown, strict=True)]
    texts = [[cell(values[r], kinds[i]) for i, values in zip(chosen, columns_shown, strict=True)]
             for r in range(len(rows))]
    picked = [kinds[i] for i in chosen]
    budget = console.width - GAP * (len(chosen) - 1)
    if not wide and _least(headers, texts, picked) > budget:
        _records(console, headers, texts)  # too many columns for one line each: psql's expanded display
        count = f"{len(rows)} row{'s' if len(rows) != 1 else ''} · {len(chosen)} columns, one per line"
        console.print(f"{count} · --wide: one line per row", style="dim")
        return
    widths = None if wide else fit(headers, texts, picked, budget)
    view = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True,
                 header_style="bold")
    for i, header in enumerate(headers):
        view.add_column(Text(header), no_wrap=True, overflow="ellipsis", width=widths[i] if widths else None,
                        justify="right" if picked[i] in ("int", "long", "real") else "left")
    for line in texts:
        view.add_row(*(Text(t) for t in line))
    console.print(view)
    count = f"{len(rows)} row{'s' if len(rows) != 1 else ''}"
    if note:
        count += f" · {note} · --columns all, --wide: whole values"
    elif not wide and widths and any(len(t) > w for line in texts for t, w in zip(line, widths, strict=True)):
        count += " · --wide: whole values"
    console.print(count, style="dim")


def _least(headers: list[str], texts: list[list[str]], kinds: list[str]) -> int:
    """The narrowest the columns can be made (typed values whole, text down to MIN_WIDTH)."""
    natural = [max([len(h)] + [len(line[i]) for line in texts]) for i, h in enumerate(headers)]
    return sum(n if kinds[i] in RIGID else min(n, MIN_WIDTH) for i, n in enumerate(natural))


def _records(console: Console, headers: list[str], texts: list[list[str]]) -> None:
    """Each row as a block of ``column  value`` lines, values shortened to the terminal's width."""
    name_width = min(SHORT, max(len(h) for h in headers))
    value_width = max(MIN_WIDTH, console.width - name_width - GAP)
    for number, line in enumerate(texts, start=1):
        console.print(Text(f"── row {number} " + "─" * max(0, console.width - 8 - len(str(number))), style="dim"))
        for header, text in zip(headers, line, strict=True):
            if len(text) > value_width:
                text = text[: value_width - 1] + "…"
            name = header if len(header) <= name_width else header[: name_width - 1] + "…"
            console.print(Text(f"{name:<{name_width}}{' ' * GAP}", style="bold") + Text(text))


def _varying_first(column: list[Any]) -> list[Any]:
    """The bags of a column with the properties that differ between the rows shown first, in the same
    order on every row: the most a shortened cell can say (``Input`` and ``Prediction`` before the
    ``Container Id`` every row shares). Ids among them (one length, a new value on every row, such as
    ``Request Id``) come after the others: the row's other columns already tell rows apart."""
    bags = [v for v in column if isinstance(v, dict)]
    if len(bags) < 2:
        return column
    texts = [{k: orjson.dumps(v) for k, v in bag.items()} for bag in bags]
    keys = dict.fromkeys(k for bag in bags for k in bag)
    varying = [k for k in keys if len({t.get(k) for t in texts}) > 1]

    def is_id(key: str) -> bool:
        values = [t[key] for t in texts if key in t]
        return len(values) == len(texts) == len(set(values)) and len({len(v) for v in values}) == 1

    order = [k for k in varying if not is_id(k)] + [k for k in varying if is_id(k)]
    return [{**{k: v[k] for k in order if k in v}, **v} if isinstance(v, dict) else v for v in column]
