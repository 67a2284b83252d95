"""The Application Insights track protocol (``POST /v2/track``, ``/v2.1/track``): bodies → accepted items.

A body is a JSON array of envelopes or newline-delimited JSON (CRLF tolerated, blank lines skipped),
gzip-compressed or not (by ``Content-Encoding`` or by the gzip magic bytes). Each envelope is checked
just enough to answer per item, as Application Insights does: it must be a JSON object with a known
instrumentation key (``iKey``) and a ``data.baseType`` the store has a table for, with an object as
``baseData``. Everything else about its fields is tolerated and converted later, in the store (see
:mod:`scorewatch.store.envelopes`).

The SDKs' own bookkeeping metrics (:data:`BOOKKEEPING_METRICS`) are accepted, so the SDK does not
retry them, but not stored: they describe the SDK, not the application.
"""

from __future__ import annotations

import gc
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from scorewatch.errors import BadRequest, PayloadTooLarge
from scorewatch.ingest.apps import Application
from scorewatch.store.envelopes import BASE_TYPES

# MetricData items whose metrics all carry one of these names are accepted and dropped.
# _OTELRESOURCE_ / _APPRESOURCEPREVIEW_: the Azure Monitor exporter's resource carrier;
# the rest: statsbeat, the SDKs' reports about their own health.
BOOKKEEPING_METRICS = frozenset({
    "_OTELRESOURCE_", "_APPRESOURCEPREVIEW_", "Attach", "Feature", "Request_Success_Count",
    "Request_Failure_Count", "Request_Duration", "Request_Throttle_Count", "Retry_Count",
    "Throttle_Count", "Exception_Count", "Item_Success_Count", "Item_Failure_Count",
    "Item_Dropped_Count", "Item_Retry_Count", "Item_Throttle_Count", "Read_Failure_Count",
    "Write_Failure_Count",
})

_GZIP_MAGIC = b"\x1f\x8b"


def decode_body(body: bytes, content_encoding: str | None, *, max_bytes: int) -> bytes:
    """The body uncompressed: gzip/deflate by header, or gzip by its magic bytes; at most ``max_bytes``."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate") or body[:2] == _GZIP_MAGIC:
        # wbits 47 = auto-detect gzip or zlib header.
        inflater = zlib.decompressobj(wbits=47 if body[:2] == _GZIP_MAGIC or encoding != "deflate" else 15)
        try:
            data = inflater.decompress(body, max_bytes + 1)
        except zlib.error as exc:
            raise BadRequest(f"the body is not valid {encoding or 'gzip'} data: {exc}") from None
        if len(data) > max_bytes or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"the uncompressed body is larger than {max_bytes} bytes")
        return data
    if encoding not in ("", "identity"):
        raise BadRequest(f"unsupported Content-Encoding {content_encoding!r}")
    return body


@dataclass
class Accepted:
    """Items accepted from one request, ready for the write-ahead log and the store.

    ``lines`` holds each envelope's JSON text; ``base_types`` and ``apps`` run parallel to it.
    ``body``/``encoding`` keep the track request body as received: the write-ahead log stores that
    (an order of magnitude smaller than the lines when gzipped) and replay parses it again.
    """

    lines: list[bytes] = field(default_factory=list)
    base_types: list[str] = field(default_factory=list)
    apps: list[Application] = field(default_factory=list)
    received: int = 0
    filtered: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    refused_by_reason: dict[str, int] = field(default_factory=dict)
    body: bytes | None = None
    encoding: str | None = None

    @property
    def accepted(self) -> int:
        return len(self.lines) + self.filtered

    def refuse(self, index: int, reason: str, message: str, status: int = 400) -> None:
        self.errors.append({"index": index, "statusCode": status, "message": message})
        self.refused_by_reason[reason] = self.refused_by_reason.get(reason, 0) + 1


def parse_track(data: bytes, lookup: Callable[[str | None], Application | None]) -> Accepted:
    """Split and check a track body; ``lookup`` maps an instrumentation key to its application."""
    # Parsing allocates thousands of acyclic dicts: pausing the cycle collector meanwhile saves ~20%
    # of the hub's CPU at full load (refcounting still frees everything).
    gc.disable()
    try:
        return _parse(data, lookup)
    finally:
        gc.enable()


def _parse(data: bytes, lookup: Callable[[str | None], Application | None]) -> Accepted:
    head = data.lstrip()[:1]
    if head == b"[":
        try:
            items = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"the body is not a valid JSON array: {exc}") from None
        raw: list[bytes | None] = [None] * len(items)
    elif head == b"{":
        try:  # one (possibly pretty-printed) object
            items, raw = [orjson.loads(data)], [None]
        except orjson.JSONDecodeError:
            items, raw = _split_lines(data)
    else:
        raise BadRequest("the body must be a JSON array or newline-delimited JSON objects")
    result = Accepted(received=len(items))
    check_items(items, raw, lookup, result)
    return result


def _split_lines(data: bytes) -> tuple[list[Any], list[bytes | None]]:
    items: list[Any] = []
    raw: list[bytes | None] = []
    for line in data.split(b"\n"):
        line = line.strip()
        if not line:
            continue
        raw.append(line)
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            items.append(_BAD_JSON)
    return items, raw


_BAD_JSON = object()


def check_items(items: list[Any], raw: list[bytes | None], lookup: Callable[[str | None], Application | None],
                result: Accepted) -> None:
    """Accept or refuse each envelope into ``result`` (``raw[i]`` is its JSON text when already known)."""
    known: dict[str, Application | None] = {}
    dumps = orjson.dumps
    add_line, add_type, add_app = result.lines.append, result.base_types.append, result.apps.append
    for index, item in enumerate(items):  # the hot loop of ingest: keep it lean
        if type(item) is not dict:
            if item is _BAD_JSON:
                result.refuse(index, "invalid_json", "the line is not valid JSON")
            else:
                result.refuse(index, "invalid_item", "an envelope must be a JSON object")
            continue
        ikey: Any = item.get("iKey")
        app = known.get(ikey, _UNSEEN) if type(ikey) is str else None
        if app is _UNSEEN:
            app = known[ikey] = lookup(ikey)
        if app is None:
            result.refuse(index, "unknown_key", "Invalid instrumentation key")
            continue
        data: Any = item.get("data")
        base_type = data.get("baseType") if type(data) is dict else None
        if type(base_type) is not str or base_type not in BASE_TYPES:
            result.refuse(index, "invalid_item", f"unknown or missing data.baseType {str(base_type)[:100]!r}")
            continue
        base_data = data.get("baseData")
        if type(base_data) is not dict:
            result.refuse(index, "invalid_item", "data.baseData must be a JSON object")
            continue
        if base_type == "MetricData" and _is_bookkeeping(base_data):
            result.filtered += 1
            continue
        line = raw[index]
        add_line(line if line is not None else dumps(item))
        add_type(base_type)
        add_app(app)


_UNSEEN: Any = object()


def _is_bookkeeping(base_data: dict[str, Any]) -> bool:
    metrics = base_data.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        return False
    return all(isinstance(m, dict) and isinstance(m.get("name"), str) and m["name"] in BOOKKEEPING_METRICS
               for m in metrics)
