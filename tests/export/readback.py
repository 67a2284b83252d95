"""Reading an export back: every file under a target, and the item ids it holds per format."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pyarrow.parquet as pq


def files(fs: Any, root: str) -> dict[str, bytes]:
    """Every file under ``root`` (relative name → bytes)."""
    root = root.rstrip("/")
    out = {}
    for path in sorted(fs.find(root)):
        out[path[len(root) + 1:] if path.startswith(root) else path] = fs.cat_file(path)
    return out


def item_ids(exported: dict[str, bytes], fmt: str) -> list[str]:
    """The itemId of every row in the exported files (one entry per copy)."""
    ids: list[str] = []
    for data in exported.values():
        if fmt == "parquet":
            ids += pq.read_table(io.BytesIO(data)).column("itemId").to_pylist()
            continue
        for line in data.splitlines():
            doc = orjson.loads(line)
            ids.append(doc["internal"]["data"]["id"] if fmt == "appinsights" else doc["_ItemId"])
    return ids


def lines(exported: dict[str, bytes], part: str) -> list[dict[str, Any]]:
    """The JSON lines of the files whose name contains ``part``."""
    return [orjson.loads(line) for name, data in exported.items() if part in name for line in data.splitlines()]
