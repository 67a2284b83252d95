"""The track decoder under arbitrary bodies: it answers with a ScorewatchError or accepts items, and
every item it accepts the store takes (then it is queryable); replay accepts the same items."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorewatch.apps import Application
from scorewatch.errors import ScorewatchError
from scorewatch.ingest.records import Record, decode, encode
from scorewatch.ingest.track import decode_body, parse_track
from scorewatch.store.duckdb import DuckDBStore
from scorewatch.store.envelopes import BASE_TYPES
from tests.fuzz.conftest import budget

APP = Application("a", "id-a", "key-a", 90)
lookup = {"key-a": APP}.get

# JSON text, built as bytes so that what a JSON library would never write can appear: numbers past
# every range, escapes of lone surrogates and control characters, bytes that are not UTF-8.
_numbers = st.one_of(st.integers(-(2**70), 2**70).map(str), st.floats(allow_nan=False).map(repr),
                     st.sampled_from(["1e400", "-1e400", "-0", "0.0000000001", "4e-8", "2147483648",
                                      "1e-330", "123456789012345678901234567890"]))
def _escaped(text: str) -> bytes:
    out = text.encode("utf-8", "surrogatepass").replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return re.sub(rb"[\x00-\x1f]", lambda m: b"\\u%04x" % m.group()[0], out)


_string_bodies = st.one_of(
    st.text(max_size=20).map(_escaped),
    st.sampled_from([b"\\ud800", b"\\udc00x", b"\\u0000", b"\\ud83d\\ude00", b"\xff\xfe", b"\xed\xa0\x80",
                     b"0.00:00:00.058", b"1.02:03:04.5", b"99999999.23:59:59", b"2026-01-01T00:00:00Z",
                     b"294247-01-10T04:00:54Z", b"true", b"False", b"Warning", b"-5", b"99999999999"]))
_strings = _string_bodies.map(lambda b: b'"' + b + b'"')
_scalars = st.one_of(_numbers.map(str.encode), _strings, st.sampled_from([b"true", b"false", b"null"]))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4).map(lambda xs: b"[" + b",".join(xs) + b"]"),
    st.dictionaries(_strings, inner, max_size=4).map(
        lambda d: b"{" + b",".join(k + b":" + v for k, v in d.items()) + b"}")), max_leaves=12)
_FIELDS = [b"id", b"name", b"url", b"success", b"responseCode", b"resultCode", b"duration", b"message",
           b"severityLevel", b"properties", b"measurements", b"metrics", b"exceptions", b"problemId",
           b"target", b"type", b"data", b"runLocation"]
_metric = st.fixed_dictionaries({b'"name"': _values, b'"value"': _values, b'"count"': _values,
                                 b'"min"': _values, b'"max"': _values, b'"stdDev"': _values})


def _obj(pairs: dict[bytes, bytes]) -> bytes:
    return b"{" + b",".join(k + b":" + v for k, v in pairs.items()) + b"}"


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    base = {b'"' + k + b'"': draw(_values) for k in draw(st.lists(st.sampled_from(_FIELDS), max_size=6))}
    if draw(st.booleans()):
        base[b'"metrics"'] = b"[" + b",".join(_obj(m) for m in draw(st.lists(_metric, max_size=2))) + b"]"
    if draw(st.booleans()):
        base[b'"exceptions"'] = b"[" + _obj({b'"typeName"': draw(_values), b'"message"': draw(_values),
                                             b'"parsedStack"': draw(_values)}) + b"]"
    kind = draw(st.sampled_from([*BASE_TYPES, "Unknown"])).encode()
    envelope = {b'"iKey"': draw(st.sampled_from([b'"key-a"', b'"other"', b"5", b"null"])),
                b'"time"': draw(_values), b'"sampleRate"': draw(_values), b'"tags"': draw(_values),
                b'"data"': _obj({b'"baseType"': b'"' + kind + b'"', b'"baseData"': _obj(base)})}
    return _obj(envelope)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBStore]:
    s = DuckDBStore(Path(tmp_path_factory.mktemp("fuzz")) / "t.duckdb")
    yield s
    s.close()


def _tables(record: Record) -> dict[str, pa.Table]:
    by_table: dict[str, list[bytes]] = {}
    for line, base_type in zip(record.lines(), record.base_types, strict=True):
        by_table.setdefault(BASE_TYPES[base_type], []).append(line)
    return {table: pa.table({"env": pa.array([x.decode("utf-8") for x in lines], pa.large_string()),
                             "appId": ["id-a"] * len(lines), "appName": ["a"] * len(lines),
                             "iKey": ["key-a"] * len(lines)}) for table, lines in by_table.items()}


@given(st.lists(envelopes(), min_size=1, max_size=5), st.sampled_from(["array", "ndjson"]))
@settings(max_examples=budget(60))
def test_what_admission_accepts_the_store_takes(store: DuckDBStore, items: list[bytes], form: str) -> None:
    body = b"[" + b",".join(items) + b"]" if form == "array" else b"\n".join(items)
    try:
        accepted = parse_track(body, lookup)
    except ScorewatchError:
        return
    assert accepted.received == len(items)
    assert len(accepted.lines) + accepted.filtered + len(accepted.errors) == accepted.received
    if not accepted.lines:
        return
    accepted.body, accepted.encoding = body, None
    record = decode(1, encode(accepted))  # replay accepts exactly the same items
    assert record.lines() == [bytes(line) for line in accepted.lines]
    written = store.write_envelopes(_tables(record), dry_run=True)  # raises if the store refuses any
    assert sum(written.values()) >= len(accepted.lines) - sum(b == "MetricData" for b in accepted.base_types)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_an_answer_never_a_crash(body: bytes) -> None:
    for encoding in (None, "gzip", "deflate"):
        with contextlib.suppress(ScorewatchError):
            parse_track(decode_body(body, encoding, max_bytes=1 << 20), lookup)
