"""``render`` charts drawn in the terminal, for ``scorewatch query`` in table mode.

``timechart`` (and ``linechart``, ``areachart``, ``scatterchart``): one line per series over the x
column, on a grid of characters with the y range on the left and the first and last x under it.
``columnchart``: vertical columns (in eighths of a character), ``barchart``: horizontal bars with their
values. The x column is ``xcolumn`` from ``render ... with (...)``, else the first datetime column (time
charts) or the first column that is not a number; the y columns are ``ycolumns``, else every numeric
column; every other text column splits the rows into series (``summarize count() by bin(timestamp,
1m), name``: one series per name), as Application Insights draws them. ``make-series`` rows (arrays
over an array axis) are drawn point by point. Drawn with rich only: a chart
of a few dozen points needs no plotting library.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.text import Text

from scorewatch.kql.display import cell

LINES = frozenset(("timechart", "linechart", "areachart", "scatterchart"))
CHARTS = LINES | {"columnchart", "barchart"}
NUMERIC = ("int", "long", "real")
COLORS = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta")
MARKERS = "•×+o*#@%"
EIGHTHS = " ▁▂▃▄▅▆▇█"
BAR_EIGHTHS = " ▏▎▍▌▋▊▉█"
HEIGHT = 12


class Series:
    def __init__(self, name: str) -> None:
        self.name = name
        self.points: list[tuple[Any, float]] = []


def _series(table: dict[str, Any], render: dict[str, Any], time_x: bool) -> tuple[int, list[Series]] | None:
    """The x column's index and the series to draw, or None when the result has nothing to plot."""
    names = [c["name"] for c in table["columns"]]
    kinds = [c["type"] for c in table["columns"]]
    x = names.index(render["xcolumn"]) if render.get("xcolumn") in names else None
    if x is None:
        candidates = [i for i, k in enumerate(kinds) if (k == "datetime" if time_x else k not in NUMERIC)]
        x = candidates[0] if candidates else None
    if x is None:
        return None
    wanted = render.get("ycolumns")
    wanted = [wanted] if isinstance(wanted, str) else wanted
    ys = [i for i, k in enumerate(kinds) if i != x and k in NUMERIC and (not wanted or names[i] in wanted)]
    splits = [i for i, k in enumerate(kinds) if i not in ys and i != x and k not in NUMERIC]
    if not ys:
        return None
    series: dict[str, Series] = {}
    for row in table["rows"]:
        key = ", ".join(cell(row[i], kinds[i]) or "(empty)" for i in splits)
        for y in ys:
            if row[y] is None or row[x] is None:
                continue
            name = names[y] if not key else (key if len(ys) == 1 else f"{names[y]} ({key})")
            series.setdefault(name, Series(name)).points.append((row[x], float(row[y])))
    return x, list(series.values())


def _explode(table: dict[str, Any]) -> dict[str, Any]:
    """``make-series`` rows (arrays of values over an array axis, the last array column) as one row
    per point, so they chart like ``summarize ... by bin(...)``; any other table as it is."""
    columns, rows = table["columns"], table["rows"]
    arrays = [i for i, c in enumerate(columns) if c["type"] == "dynamic"
              and rows and all(isinstance(row[i], list) for row in rows)]
    if len(arrays) < 2:
        return table
    x = arrays[-1]
    sample = next((v for row in rows for v in row[x] if v is not None), None)
    x_type = "datetime" if isinstance(sample, str) else "real"
    kinds = [("real" if i in arrays else c["type"]) for i, c in enumerate(columns)]
    kinds[x] = x_type
    exploded = []
    for row in rows:
        for n, at in enumerate(row[x]):
            exploded.append([at if i == x else (row[i][n] if n < len(row[i]) else None) if i in arrays else row[i]
                             for i in range(len(columns))])
    return {**table, "columns": [{"name": c["name"], "type": k} for c, k in zip(columns, kinds, strict=True)],
            "rows": exploded}


def draw(console: Console, table: dict[str, Any], render: dict[str, Any]) -> bool:
    """Draw the chart ``render`` asks for; False when it is not one drawn here or there is nothing to draw."""
    kind = render.get("visualization", "")
    if kind not in CHARTS:
        return False
    table = _explode(table)
    found = _series(table, render, time_x=kind in LINES)
    if found is None or not any(s.points for s in found[1]):
        return False
    x, series = found
    x_kind = table["columns"][x]["type"]
    if render.get("title"):
        console.print(Text(str(render["title"]), style="bold"))
    if kind in LINES:
        _lines(console, series, x_kind)
    elif kind == "columnchart":
        _columns(console, series, x_kind)
    else:
        _bars(console, series, x_kind)
    if len(series) > 1 or kind in LINES:
        legend = Text()
        for i, s in enumerate(series):
            legend.append(f"{MARKERS[i % len(MARKERS)]} {s.name}  ", style=COLORS[i % len(COLORS)])
        console.print(legend)
    return True


def _number(value: float) -> str:
    return cell(float(value), "real")


def _position(value: Any, x_kind: str) -> float:
    if x_kind == "datetime":
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    return float(value)


def _axis(console: Console, width: int, low: float, high: float, rows: list[Text]) -> None:
    labels = [_number(high), _number((low + high) / 2), _number(low)]
    label_width = max(len(label) for label in labels)
    for r, line in enumerate(rows):
        label = labels[0] if r == 0 else labels[2] if r == len(rows) - 1 else (
            labels[1] if r == len(rows) // 2 else "")
        out = Text(f"{label:>{label_width}} ┤" if label else " " * label_width + " │")
        out.append_text(line)
        console.print(out, soft_wrap=True)
    console.print(" " * label_width + " └" + "─" * width, soft_wrap=True)


def _x_labels(console: Console, first: str, last: str, width: int, indent: int) -> None:
    gap = max(1, width - len(first) - len(last))
    console.print(" " * (indent + 2) + first + (" " * gap + last if last != first else ""), soft_wrap=True)


def _range(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(0.0, min(values)), max(values)
    return low, high if high > low else low + 1


def _lines(console: Console, series: list[Series], x_kind: str) -> None:
    xs = [_position(px, x_kind) for s in series for px, _ in s.points]
    low, high = _range([py for s in series for _, py in s.points])
    label_width = max(len(_number(v)) for v in (low, high, (low + high) / 2))
    width = max(10, console.width - label_width - 3)
    x0, x1 = min(xs), max(xs)
    grid: list[list[tuple[str, str] | None]] = [[None] * width for _ in range(HEIGHT)]

    def row_of(y: float) -> int:
        return HEIGHT - 1 - round((y - low) / (high - low) * (HEIGHT - 1))

    for i, s in enumerate(series):
        style, marker = COLORS[i % len(COLORS)], MARKERS[i % len(MARKERS)]
        points = sorted((round((_position(px, x_kind) - x0) / ((x1 - x0) or 1) * (width - 1)), py)
                        for px, py in s.points)
        for (c0, y0), (c1, y1) in zip(points, points[1:], strict=False):
            for c in range(c0 + 1, c1):  # the line between two points
                grid[row_of(y0 + (y1 - y0) * (c - c0) / (c1 - c0))][c] = ("·", style)
        for c, y in points:
            grid[row_of(y)][c] = (marker, style)
    rows = []
    for r in range(HEIGHT):
        line = Text()
        for spot in grid[r]:
            line.append(*(spot or (" ", "")))
        rows.append(line)
    _axis(console, width, low, high, rows)
    first = min((px for s in series for px, _ in s.points), key=lambda v: _position(v, x_kind))
    last = max((px for s in series for px, _ in s.points), key=lambda v: _position(v, x_kind))
    _x_labels(console, cell(first, x_kind), cell(last, x_kind), width, label_width)


def _categories(series: list[Series], x_kind: str) -> list[Any]:
    """The x values in the result's order; times and numbers in their own order."""
    seen: dict[Any, None] = {}
    for s in series:
        for px, _ in s.points:
            seen.setdefault(px if not isinstance(px, (dict, list)) else str(px), None)
    if x_kind in ("datetime", *NUMERIC):
        return sorted(seen, key=lambda v: _position(v, x_kind))
    return list(seen)


def _columns(console: Console, series: list[Series], x_kind: str) -> None:
    categories = _categories(series, x_kind)
    values = {(s.name, px if not isinstance(px, (dict, list)) else str(px)): py for s in series for px, py in s.points}
    low, high = _range(list(values.values()))
    label_width = max(len(_number(v)) for v in (low, high, (low + high) / 2))
    width = max(10, console.width - label_width - 3)
    per = len(series)
    column = max(1, min(4, (width // max(1, len(categories)) - 1) // per))
    shown = categories[: max(1, width // (column * per + 1))]
    rows = []
    for r in range(HEIGHT):
        line = Text()
        for category in shown:
            for i, s in enumerate(series):
                y = values.get((s.name, category))
                eighths = 0 if y is None else round((y - low) / (high - low) * HEIGHT * 8)
                level = min(8, max(0, eighths - (HEIGHT - 1 - r) * 8))
                line.append(EIGHTHS[level] * column, style=COLORS[i % len(COLORS)])
            line.append(" ")
        rows.append(line)
    used = len(shown) * (column * per + 1)
    _axis(console, used, low, high, rows)
    labels = [cell(c, x_kind) for c in shown]
    if all(len(label) <= column * per for label in labels):
        console.print(" " * (label_width + 2) + "".join(f"{label:<{column * per + 1}}" for label in labels),
                      soft_wrap=True)
    else:
        _x_labels(console, labels[0], labels[-1], used, label_width)
    if len(shown) < len(categories):
        console.print(f"(the first {len(shown)} of {len(categories)} columns; --format csv for all)", style="dim")


def _bars(console: Console, series: list[Series], x_kind: str) -> None:
    categories = _categories(series, x_kind)
    values = {(s.name, px if not isinstance(px, (dict, list)) else str(px)): py for s in series for px, py in s.points}
    labels = {c: cell(c, x_kind) or "(empty)" for c in categories}
    label_width = min(24, max(len(label) for label in labels.values()))
    numbers = {key: _number(v) for key, v in values.items()}
    number_width = max(len(n) for n in numbers.values())
    width = max(5, console.width - label_width - number_width - 4)
    top = max(max(values.values()), 0.0) or 1.0
    for category in categories:
        label = labels[category]
        label = label if len(label) <= label_width else label[: label_width - 1] + "…"
        for i, s in enumerate(series):
            key = (s.name, category)
            if key not in values:
                continue
            eighths = round(max(values[key], 0.0) / top * width * 8)
            bar = "█" * (eighths // 8) + (BAR_EIGHTHS[eighths % 8] if eighths % 8 else "")
            line = Text(f"{label:<{label_width}} │")
            label = ""  # once per category
            line.append(bar, style=COLORS[i % len(COLORS)])
            line.append(f" {numbers[key]}")
            console.print(line, soft_wrap=True)
