"""The C writer of the common rows (``_rows.c``) against the Python templates, byte for byte.

These tests run both paths themselves, so they run once (not once per mode of the conftest)."""

from __future__ import annotations

import math
import random
from functools import partial

import orjson
import pytest

from scorewatch.telemetry.blobs import BlobStore
from scorewatch.telemetry.templates import ROWS_PER_PAUSE, Templates
from tests.telemetry.conftest import require_extensions


@pytest.fixture(autouse=True)
def native() -> bool:  # this module compares the two paths itself
    require_extensions()
    return True

ODD_TEXT = "".join(map(chr, range(0x80))) + 'é ☃ \u2028 😀 "q" \\ /'


def templates(tmp_path, native: bool) -> Templates:
    blobs = BlobStore(tmp_path / ("native" if native else "python"))
    return Templates("ikey-1", role="svc", role_instance="host",
                     base_properties={"Container Id": "c-1", "Service Name": "s%v\"c"}, models="m:1",
                     inline_limit=1024, blobs=blobs, native=native)


def request(when=1.7e9 + 0.25, *, op="a" * 32, span="b" * 16, caller=None, name="POST /score",
            url="http://h:1/score", duration=1.5, status=200, success=True, request_id="r-1", client="",
            body=b'{"x": 1}', output=b"[2]", rate=100.0, model_data=True):
    return ("r", when, op, span, caller, name, url, duration, status, success, request_id, client, body, output,
            rate, model_data)


def line(text="scored", when=1.7e9 + 0.5, *, stream="STDOUT", thread=1, op="a" * 32, parent="b" * 16,
         name="POST /score", rate=100.0):
    return ("l", when, stream, text, thread, op, parent, name, rate)


def random_rows(seed: int, count: int) -> list[tuple]:
    """Rows of every shape the request path makes, most of them the common ones."""
    rng = random.Random(seed)
    texts = ["scored 2 rows", ODD_TEXT, "", "   ", " {\"k\": 1}", '{"k": [1]}', "[1]", "{not json", "ends\n",
             "a\nb", "x" * 300, "t\tab", "\ud800 lone surrogate"]
    payloads = [b'{"data": [1, 2]}', ODD_TEXT.encode(), b"\xff\xfe not utf-8", b"", b"y" * 2000, "text",
                "t" * 300, None, {"blob": "sha256:...", "size": 9, "preview": "..."}, b"\xed\xa0\x80"]
    rows: list[tuple] = []
    for i in range(count):
        when = 1.7e9 + rng.random() * 5 + rng.choice([0.0, 0.9999996, 0.4999995, 0.0000005])
        op, span = f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(64):016x}"
        pick = rng.random()
        if pick < 0.45:
            status = rng.choice([200, 200, 201, 404, 500, 503])
            rows.append(request(
                when, op=op, span=span, caller=rng.choice([None, None, "", "c" * 16]),
                name=rng.choice(["POST /score", "GET /score", "POST /scóre"]),
                url=rng.choice(["http://h:1/score", 'http://h:1/score?a=1&b="2"', "http://h/é"]),
                duration=rng.choice([0.0, 0.0004999, 1.5, rng.random() * 100, 59_999.9999, 61_000.0, -1.0,
                                     math.nan, 1e300, 7]),
                status=status, success=status < 400, request_id=rng.choice([f"req-{i}", ODD_TEXT]),
                client=rng.choice(["", "client-é", "\ud800"]), body=rng.choice(payloads),
                output=rng.choice(payloads), rate=rng.choice([100.0, 100.0, 50.0, 12.5, 100, 50]),
                model_data=rng.random() < 0.8))
        elif pick < 0.9:
            rows.append(line(rng.choice(texts), when, stream=rng.choice(["STDOUT", "STDOUT", "STDERR", "OTHER"]),
                             thread=rng.choice([1, 2]), op=rng.choice([op, op, None, ""]), parent=span,
                             name=rng.choice(["POST /score", ""]), rate=rng.choice([100.0, 25.0])))
        else:  # the pieces of a line written in several calls, which the Python side puts together
            thread = rng.choice([1, 2])
            if rng.random() < 0.5:
                rows.append(("o", when, "STDOUT", rng.choice(["part, ", "more\n", "x"]), thread, op, span,
                             "POST /score", 100.0))
            else:
                rows.append(("n", "STDOUT", thread))
    return rows


def build_both(tmp_path, rows):
    native, python = templates(tmp_path, True), templates(tmp_path, False)
    assert native.native and not python.native
    results = []
    for built in (native, python):
        errors: list[int] = []
        out = [envelope for start in range(0, len(rows), 100)
               for envelope in built.rows(rows[start:start + 100], on_error=partial(errors.append, 1))]
        results.append((out, len(errors), sorted(built._pending)))
    return results


def test_the_c_writer_makes_the_same_envelopes_as_python_for_every_row_shape(tmp_path):
    rows = random_rows(seed=3, count=4000)
    (native, native_errors, native_pending), (python, python_errors, python_pending) = build_both(tmp_path, rows)
    assert native == python
    assert native_errors == python_errors > 0  # the lone surrogates: skipped and reported, both ways
    assert native_pending == python_pending
    assert len(native) > 3000
    assert sorted((tmp_path / "native").rglob("*")) != []  # large payloads went to blobs, as in Python


def test_the_c_writer_takes_the_common_rows_itself(tmp_path):
    # The fast path must be the path of an ordinary request and print, not a fallback in disguise.
    built = templates(tmp_path, True)
    fallbacks: list[tuple] = []
    python_row = built.row
    built.row = lambda row: fallbacks.append(row) or python_row(row)  # type: ignore[method-assign]
    common = [request(), request(status=500, success=False, output=b"boom"), request(rate=25.0),
              request(caller="c" * 16, model_data=False), line(), line(stream="STDERR", op=None),
              line(ODD_TEXT), request(body=ODD_TEXT.encode(), request_id=ODD_TEXT)]
    envelopes = built.rows(common)
    assert fallbacks == []
    assert len(envelopes) == 12
    assert envelopes == templates(tmp_path, False).rows(common)
    parsed = [orjson.loads(envelope) for envelope in envelopes]
    assert parsed[9]["data"]["baseData"]["properties"]["Contents"] == ODD_TEXT
    assert parsed[11]["data"]["baseData"]["properties"]["Input"] == ODD_TEXT
    assert parsed[3]["data"]["baseData"]["properties"]["Error"] == "boom"
    assert parsed[4]["sampleRate"] == 25.0 and parsed[5]["sampleRate"] == 25.0
    assert parsed[6]["tags"]["ai.operation.parentId"] == "c" * 16


def test_rows_it_does_not_take_go_to_python_in_order(tmp_path):
    built = templates(tmp_path, True)
    fallbacks: list[tuple] = []
    python_row = built.row
    built.row = lambda row: fallbacks.append(row) or python_row(row)  # type: ignore[method-assign]
    odd = [line('{"k": 1}'), request(body=b"\xff"), request(duration=61_000.0), request(body=b"y" * 2000),
           line("   "), ("n", "STDOUT", 1), request(status=True)]
    rows = [request(), *odd, line()]
    envelopes = built.rows(rows)
    assert fallbacks == odd
    assert envelopes == templates(tmp_path, False).rows(rows)
    assert orjson.loads(envelopes[2])["data"]["baseData"]["properties"]["Contents"] == {"k": 1}


def test_pauses_and_errors_are_as_in_python(tmp_path):
    rows = [request(), line(), ("r", "too short"), line()] * 5  # 20 rows: 3 pauses, 5 bad rows
    for native in (True, False):
        built = templates(tmp_path, native)
        pauses: list[int] = []
        errors: list[int] = []
        envelopes = built.rows(rows, partial(pauses.append, 1), partial(errors.append, 1))
        assert len(pauses) == math.ceil(len(rows) / ROWS_PER_PAUSE)
        assert len(errors) == 5 and len(envelopes) == 20
        with pytest.raises(ValueError):  # without on_error, a bad row raises
            built.rows(rows)


def test_a_half_written_line_sends_later_lines_through_python(tmp_path):
    rows = [("o", 1.7e9, "STDOUT", "begun, ", 1, "a" * 32, "b" * 16, "POST /score", 100.0), line("other", thread=2),
            line("ended"), request()]
    native, python = (templates(tmp_path, flag).rows(rows) for flag in (True, False))
    assert native == python
    assert [orjson.loads(e)["data"]["baseData"].get("properties", {}).get("Contents") for e in native][:2] == [
        "other", "begun, ended"]
