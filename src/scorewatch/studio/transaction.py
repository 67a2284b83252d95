"""The end-to-end view of one operation: its timeline (Gantt) and the payloads it captured as blobs.

Both are laid out from the rows the transaction's KQL returned (:func:`scorewatch.studio.queries.
transaction`): positions are fractions of the operation's span, so the page draws them as SVG
without script, and every blob a row names (see docs/model-data.md) can be downloaded from the page,
checked against the same rows (a payload of another application is never named by them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

MIN_WIDTH = 0.4  # percent of the span: a 0 ms call is still visible


def _start_ms(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return None


def timeline(spans: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars for the request(s) and dependencies of an operation: ``left`` and ``width`` in percent of
    the operation's span, ``depth`` by the parent chain (``operation_ParentId`` → ``id``)."""
    timed = [(start, span) for span in spans if (start := _start_ms(span.get("timestamp"))) is not None]
    if not timed:
        return {"total_ms": 0, "bars": []}
    first = min(start for start, _ in timed)
    last = max(start + float(span.get("duration") or 0) for start, span in timed)
    total = max(last - first, 1.0)
    depth_of: dict[str, int] = {}
    bars = []
    for start, span in timed:
        parent = depth_of.get(str(span.get("operation_ParentId") or ""), -1)
        depth = parent + 1
        if span.get("id"):
            depth_of[str(span["id"])] = depth
        duration = float(span.get("duration") or 0)
        bars.append({"name": span.get("name") or span.get("target") or "", "kind": span.get("itemType") or "",
                     "target": span.get("target") or "", "offset_ms": round(start - first, 3),
                     "duration_ms": duration, "success": span.get("success"), "resultCode": span.get("resultCode"),
                     "left": round((start - first) / total * 100, 3),
                     "width": round(max(duration / total * 100, MIN_WIDTH), 3), "depth": min(depth, 8)})
    return {"total_ms": round(total, 3), "bars": bars}


def _markers(value: Any, depth: int = 0) -> list[str]:
    """The blob digests named in ``value`` (a dynamic value, or the JSON text of one)."""
    if isinstance(value, str) and value.startswith("{") and '"blob"' in value:
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return []
    if isinstance(value, dict):
        ref = value.get("blob")
        if isinstance(ref, str) and ref.startswith("sha256:"):
            return [ref.removeprefix("sha256:")]
        if depth < 3:
            return [d for item in value.values() for d in _markers(item, depth + 1)]
    if isinstance(value, list) and depth < 3:
        return [d for item in value for d in _markers(item, depth + 1)]
    return []


def blob_digests(items: list[dict[str, Any]]) -> set[str]:
    """Every blob the rows of an operation name, in ``customDimensions`` or a message."""
    found: set[str] = set()
    for item in items:
        for column in ("customDimensions", "message"):
            found.update(_markers(item.get(column)))
    return found


def blob_marker(value: Any) -> dict[str, Any] | None:
    """``value`` when it is a blob marker (for the page to offer its download), else None."""
    if isinstance(value, dict) and isinstance(value.get("blob"), str) and value["blob"].startswith("sha256:"):
        return value
    return None
