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

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from scorewatch.apps import Application
from scorewatch.errors import BadRequest, PayloadTooLarge
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
# Arrays and objects nest at most this deep in an envelope: the store keeps, and queries give back,
# what ingest accepts (Python's JSON libraries stop at a few hundred levels).
MAX_DEPTH = 100
_ENVELOPE_LEVELS = 3  # the envelope, data and baseData hold a kept JSON value (properties...)


def decode_body(body: bytes, content_encoding: str | None, *, max_bytes: int) -> bytes:
    """The body uncompressed: gzip/deflate by header, or gzip by its magic bytes; at most ``max_bytes``.

    Every member of a multi-member gzip body is read (``cat a.gz b.gz`` is one valid gzip body); a
    body that ends before its compressed stream does is refused, never taken as whole.
    """
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate") or body[:2] == _GZIP_MAGIC:
        # wbits 47 = auto-detect gzip or zlib header.
        wbits = 47 if body[:2] == _GZIP_MAGIC or encoding != "deflate" else 15
        parts: list[bytes] = []
        size = 0
        rest = body
        while True:
            inflater = zlib.decompressobj(wbits=wbits)
            try:
                data = inflater.decompress(rest, max_bytes + 1 - size)
            except zlib.error as exc:
                raise BadRequest(f"the body is not valid {encoding or 'gzip'} data: {exc}") from None
            size += len(data)
            if size > max_bytes or inflater.unconsumed_tail:
                raise PayloadTooLarge(f"the uncompressed body is larger than {max_bytes} bytes")
            parts.append(data)
            if not inflater.eof:
                raise BadRequest(f"the {encoding or 'gzip'} body is truncated: it ends before its compressed data does")
            rest = inflater.unused_data
            if rest[:2] != _GZIP_MAGIC:  # another gzip member follows, or the end (trailing zeros are padding)
                if rest.strip(b"\0"):
                    raise BadRequest(f"the {encoding or 'gzip'} body has {len(rest)} bytes of garbage after its data")
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)
    if encoding not in ("", "identity"):
        raise BadRequest(f"unsupported Content-Encoding {content_encoding!r}")
    return body


@dataclass
class Accepted:
    """Items accepted from one request, ready for the write-ahead log and the store.

    ``lines`` holds each envelope's JSON text (bytes or ``msgspec.Raw``); ``base_types`` and ``apps``
    run parallel to it.
    ``body``/``encoding`` keep the track request body as received: the write-ahead log stores that
    (an order of magnitude smaller than the lines when gzipped) and replay parses it again.
    """

    lines: list[Any] = field(default_factory=list)
    base_types: list[str] = field(default_factory=list)
    apps: list[Application] = field(default_factory=list)
    received: int = 0
    filtered: int = 0
    filtered_at: list[int] = field(default_factory=list)  # body positions of the filtered items
    kept_json: list[Any] = field(default_factory=list)  # each accepted item's baseData (_BaseData)
    errors: list[dict[str, Any]] = field(default_factory=list)
    refused_by_reason: dict[str, int] = field(default_factory=dict)
    body: bytes | None = None
    encoding: str | None = None
    nbytes: int = 0  # uncompressed size, counted against the hub's queue budget

    @property
    def accepted(self) -> int:
        return len(self.lines) + self.filtered

    def refuse(self, index: int, reason: str, message: str, status: int = 400) -> None:
        self.errors.append({"index": index, "statusCode": status, "message": message})
        self.refused_by_reason[reason] = self.refused_by_reason.get(reason, 0) + 1


_ABSENT = msgspec.Raw()


class _BaseData(msgspec.Struct, gc=False):
    metrics: Any = None
    # The fields the store keeps as JSON (customDimensions, customMeasurements, details): their
    # nesting is checked (MAX_DEPTH). Everything else deep is stored as text or not at all.
    properties: msgspec.Raw = _ABSENT
    measurements: msgspec.Raw = _ABSENT
    exceptions: msgspec.Raw = _ABSENT


class _Data(msgspec.Struct, gc=False):
    baseType: Any = None
    baseData: _BaseData | None = None


class _Envelope(msgspec.Struct, gc=False):
    """The few fields ingest checks; msgspec skips the rest without building Python objects.
    ``gc=False``: they hold no cycles, so the garbage collector need not track thousands of them."""

    iKey: Any = None
    data: _Data | None = None


_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])  # each item's JSON text, unparsed
_ONE_VALUE = msgspec.json.Decoder(msgspec.Raw)
_ENVELOPE = msgspec.json.Decoder(_Envelope)
_ENVELOPES = msgspec.json.Decoder(list[_Envelope])
_KNOWN_BASE_TYPES = frozenset(BASE_TYPES)


def parse_track(data: bytes, lookup: Callable[[str | None], Application | None]) -> Accepted:
    """Split and check a track body; ``lookup`` maps an instrumentation key to its application.

    Each envelope is cut out of the body as its own JSON text (``msgspec.Raw``, no copy) and only
    ``iKey``, ``data.baseType`` and ``data.baseData`` are decoded to check it: the store maps the
    rest, so no per-field Python objects are made here.
    """
    try:
        return _parse_track(data, lookup)
    except RecursionError:  # nested so deep the parser gave up: the whole body, so replay agrees
        raise BadRequest(f"the body nests arrays and objects deeper than {MAX_DEPTH} levels") from None


def _parse_track(data: bytes, lookup: Callable[[str | None], Application | None]) -> Accepted:
    head = data.lstrip()[:1]
    if head == b"[":
        try:
            lines: list[Any] = _ITEMS.decode(data)
        except msgspec.DecodeError as exc:
            raise BadRequest(f"the body is not a valid JSON array of envelopes: {exc}") from None
    elif head == b"{":
        try:  # one (possibly pretty-printed) object
            _ONE_VALUE.decode(data)
            lines = [data]
        except msgspec.DecodeError:
            lines = [line for line in (part.strip() for part in data.split(b"\n")) if line]
    else:
        raise BadRequest("the body must be a JSON array or newline-delimited JSON objects")
    result = Accepted(received=len(lines), nbytes=len(data))
    if not (head == b"[" and _accept_all(data, lines, lookup, result)):
        check_items(lines, lookup, result)
    _check_storable(result, data)
    return result


def _check_storable(result: Accepted, data: bytes) -> None:
    """Refuse the accepted items the store could not take or give back: text that is not UTF-8 (the
    whole body is checked at once, ~free for ASCII), and JSON values the store keeps (properties,
    measurements, exceptions) nested past :data:`MAX_DEPTH`, checked together in one pass. Item by
    item only when something is off. Deterministic, as replay needs: the same body, the same answer."""
    if not result.lines:
        return
    valid_text = data.isascii() or _is_utf8(data)
    kept, result.kept_json = result.kept_json, []  # needed here only
    shallow = _ENVELOPE_LEVELS + json_depth(b"\n".join(
        [b.properties for b in kept] + [b.measurements for b in kept] + [b.exceptions for b in kept])) <= MAX_DEPTH
    if valid_text and shallow:
        return
    keep = []
    skipped = {e["index"] for e in result.errors} | set(result.filtered_at)
    indexes = [i for i in range(result.received) if i not in skipped]  # body position of each accepted item
    for i, (line, base) in enumerate(zip(result.lines, kept, strict=True)):
        if not valid_text and not _is_utf8(bytes(line)):
            keep.append(False)
            reason, message = "invalid_utf8", "the envelope is not valid UTF-8 text"
        elif not shallow and _ENVELOPE_LEVELS + json_depth(
                b"\n".join((base.properties, base.measurements, base.exceptions))) > MAX_DEPTH:
            keep.append(False)
            reason, message = "too_deep", f"the envelope nests arrays and objects deeper than {MAX_DEPTH} levels"
        else:
            keep.append(True)
            continue
        result.refuse(indexes[i], reason, message)
    result.lines = [x for x, k in zip(result.lines, keep, strict=True) if k]
    result.base_types = [x for x, k in zip(result.base_types, keep, strict=True) if k]
    result.apps = [x for x, k in zip(result.apps, keep, strict=True) if k]
    result.errors.sort(key=lambda e: e["index"])


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_STRUCTURE_ONLY = bytes(b for b in range(256) if b not in b'"[]{}')  # bytes.translate: delete the rest
_ESCAPE = re.compile(rb"\\.", re.DOTALL)


def _hides_a_quote(text: bytes) -> bool:
    """Whether an escape in ``text`` is ``\\"`` or ``\\\\`` (or there are too many escapes to look)."""
    pos = text.find(b"\\")
    for _ in range(64):
        if pos < 0:
            return False
        if text[pos + 1:pos + 2] in (b'"', b"\\"):
            return True
        pos = text.find(b"\\", pos + 2)
    return pos >= 0


def json_depth(text: bytes) -> int:
    """How deep arrays and objects nest in ``text`` (JSON values, one after another); brackets inside
    strings do not count. Two C passes over the bytes (drop escapes when one hides a quote; keep
    quotes and brackets), then numpy over what is left: a fraction of a microsecond per envelope."""
    if _hides_a_quote(text):
        text = _ESCAPE.sub(b"", text)  # an escaped quote is no quote
    kept = np.frombuffer(text.translate(None, _STRUCTURE_ONLY), np.uint8)
    if not kept.size:
        return 0
    folded = kept | 0x20  # '[' and '{' both become '{', ']' and '}' both '}'
    opens, closes = folded == 0x7B, folded == 0x7D
    quotes = kept == 0x22
    if quotes.any():  # a bracket after an odd number of quotes is inside a string
        outside = (np.cumsum(quotes, dtype=np.int32) & 1) == 0
        opens &= outside
        closes &= outside
    levels = np.cumsum(opens.view(np.int8) - closes.view(np.int8), dtype=np.int32)
    if levels.min() < 0:  # closes what it never opened: not JSON values, so no bound either
        return 1 << 30
    return int(levels.max())


def _accept_all(data: bytes, lines: list[Any], lookup: Callable[[str | None], Application | None],
                result: Accepted) -> bool:
    """The common case in one pass: an array whose items all share one known key and are all valid
    and stored. Decodes the whole array in one call (no per-item decoder call) and checks with set
    operations; False (``result`` untouched) for anything else, which :func:`check_items` handles."""
    try:
        items = _ENVELOPES.decode(data)
        base_types = [item.data.baseType for item in items]  # type: ignore[union-attr]
        kinds = set(base_types)
        ikeys = {item.iKey for item in items}
    except (msgspec.DecodeError, AttributeError, TypeError):  # a null data, an unhashable value
        return False
    if len(items) != len(lines) or not kinds <= _KNOWN_BASE_TYPES or len(ikeys) != 1:
        return False
    ikey = next(iter(ikeys))
    app = lookup(ikey) if type(ikey) is str else None
    if app is None or any(item.data.baseData is None for item in items):  # type: ignore[union-attr]
        return False
    if "MetricData" in kinds and any(
            kind == "MetricData" and _is_bookkeeping(item.data.baseData.metrics)  # type: ignore[union-attr]
            for kind, item in zip(base_types, items, strict=True)):
        return False
    result.lines, result.base_types, result.apps = lines, base_types, [app] * len(lines)
    result.kept_json = [item.data.baseData for item in items]  # type: ignore[union-attr]
    return True


def check_items(lines: list[Any], lookup: Callable[[str | None], Application | None], result: Accepted) -> None:
    """Accept or refuse each envelope (its JSON text in ``lines``) into ``result``."""
    known: dict[str, Application | None] = {}
    decode = _ENVELOPE.decode
    add_line, add_type, add_app = result.lines.append, result.base_types.append, result.apps.append
    add_json = result.kept_json.append
    for index, line in enumerate(lines):  # the hot loop of ingest: keep it lean
        try:
            item = decode(line)
        except msgspec.ValidationError as exc:
            result.refuse(index, "invalid_item", f"invalid envelope: {exc}")
            continue
        except msgspec.DecodeError:
            result.refuse(index, "invalid_json", "the line is not valid JSON")
            continue
        ikey = item.iKey
        app = known.get(ikey, _UNSEEN) if type(ikey) is str else None
        if app is _UNSEEN:
            app = known[ikey] = lookup(ikey)
        if app is None:
            result.refuse(index, "unknown_key", "Invalid instrumentation key")
            continue
        data = item.data
        base_type = data.baseType if data is not None else None
        if data is None or type(base_type) is not str or base_type not in BASE_TYPES:
            result.refuse(index, "invalid_item", f"unknown or missing data.baseType {str(base_type)[:100]!r}")
            continue
        if data.baseData is None:
            result.refuse(index, "invalid_item", "data.baseData must be a JSON object")
            continue
        if base_type == "MetricData" and _is_bookkeeping(data.baseData.metrics):
            result.filtered += 1
            result.filtered_at.append(index)
            continue
        add_line(line)
        add_type(base_type)
        add_app(app)
        add_json(data.baseData)


_UNSEEN: Any = object()


def _is_bookkeeping(metrics: Any) -> bool:
    if not isinstance(metrics, list) or not metrics:
        return False
    return all(isinstance(m, dict) and isinstance(m.get("name"), str) and m["name"] in BOOKKEEPING_METRICS
               for m in metrics)
