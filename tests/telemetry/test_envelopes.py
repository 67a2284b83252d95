"""Envelope building, formats, connection strings; the monitor's inline builders match the factory."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from scorewatch.errors import ConfigError
from scorewatch.scoring.monitor import ScoredRequest
from scorewatch.telemetry.connection import parse_connection_string
from scorewatch.telemetry.envelopes import SEVERITY_INFO, format_duration, format_time, severity_for_level
from scorewatch.telemetry.exporter import InMemoryExporter
from scorewatch.telemetry.monitor import create_monitor
from tests.telemetry.test_monitor import INFO, new_op, scored, settings  # noqa: F401


@pytest.mark.parametrize(("ms", "text"), [(0, "0.00:00:00.000000"), (58, "0.00:00:00.058000"),
                                          (12.5, "0.00:00:00.012500"), (61_000.25, "0.00:01:01.000250"),
                                          (90_061_001, "1.01:01:01.001000")])
def test_format_duration(ms, text):
    assert format_duration(ms) == text


def test_format_time_from_timestamp_and_datetime():
    when = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    assert format_time(when) == "2026-03-04T05:06:07.890123Z"
    assert format_time(when.timestamp()) == "2026-03-04T05:06:07.890123Z"
    assert format_time(datetime(2026, 3, 4, 5, 6, 7)) == "2026-03-04T05:06:07.000000Z"


def test_severity_levels():
    assert [severity_for_level(n) for n in (10, 20, 30, 40, 50)] == [0, 1, 2, 3, 4]


def test_connection_strings():
    cs = parse_connection_string("instrumentationkey=ab-cd; IngestionEndpoint=http://127.0.0.1:8400/")
    assert (cs.instrumentation_key, cs.track_url, cs.ikey_no_dashes) == (
        "ab-cd", "http://127.0.0.1:8400/v2.1/track", "abcd")
    assert parse_connection_string("InstrumentationKey=k").ingestion_endpoint == "https://dc.services.visualstudio.com"
    assert parse_connection_string("InstrumentationKey=k;EndpointSuffix=ai.example;Location=west").track_url == (
        "https://west.dc.ai.example/v2.1/track")
    for bad, message in [("", "empty"), ("IngestionEndpoint=http://x", "no InstrumentationKey"),
                         ("InstrumentationKey=k;junk", "Key=Value"),
                         ("InstrumentationKey=k;IngestionEndpoint=ftp://x", "http")]:
        with pytest.raises(ConfigError, match=message):
            parse_connection_string(bad)


def test_inline_request_builder_matches_the_factory(settings):  # noqa: F811
    monitor = create_monitor(settings, INFO, exporter=InMemoryExporter())
    op = new_op()
    facts = scored(op)
    request = ScoredRequest(*facts)  # its derived properties, for the factory
    fast_request, fast_trace = map(orjson.loads, monitor.templates.raw(monitor._request_row(*facts[:7])[1]))
    props = {**monitor.base_properties, "Request Id": "req-1", "Client Request Id": "client-1"}
    expected = monitor.factory.request(
        when=request.start, id=op.parent_id, name="POST /score", url=request.url, duration_ms=12.5,
        response_code=200, success=True, properties=props, operation_id=op.operation_id, parent_id=None)
    assert fast_request == expected
    expected_trace = monitor.factory.message(
        when=request.start, message="model_data_collection", severity=SEVERITY_INFO,
        properties={**props, "Models": "ridge:3", "Input": '{"data": [1]}', "Prediction": "[2]"},
        operation_id=op.operation_id, parent_id=op.parent_id, operation_name="POST /score")
    assert fast_trace == expected_trace
    [fast_output] = map(orjson.loads, monitor.templates.raw(
        ("o", 1.7e9, "STDOUT", "hi\n", 1, op.operation_id, op.parent_id, op.name, 100.0)))
    assert fast_output == monitor.factory.message(
        when=1.7e9, message="STDOUT", severity=SEVERITY_INFO, properties={**monitor.base_properties, "Contents": "hi"},
        operation_id=op.operation_id, parent_id=op.parent_id, operation_name=op.name)


def test_inline_builders_escape_user_text_and_mark_samples(settings):  # noqa: F811
    monitor = create_monitor(settings, INFO, exporter=InMemoryExporter())
    op = new_op()
    request = scored(op, status=200, body='{"q": "\\"quoted\\" \u2028 </script>"}'.encode(), output=b"\xff\xfe")
    request[1]["query_string"] = b'a="b"'
    monitor.sampling = 25.0
    fast_request, fast_trace = map(orjson.loads, monitor.templates.raw(monitor._request_row(*request[:7])[1]))
    assert fast_request["data"]["baseData"]["url"] == 'http://127.0.0.1:5999/score?a="b"' and fast_request["sampleRate"] == 25.0
    assert orjson.loads(fast_trace["data"]["baseData"]["properties"]["Input"])["q"].startswith('"quoted"')
    assert fast_trace["data"]["baseData"]["properties"]["Prediction"]["size"] == 2  # not UTF-8: a blob
    [line] = map(orjson.loads, monitor.templates.raw(("o", 1.7e9, "STDERR", 'say "hi"\n\ttab\n', 2, None, "", "",
                                                       100.0)))
    assert line["data"]["baseData"]["properties"]["Contents"] == 'say "hi"\n\ttab'
    assert "ai.operation.id" not in line["tags"] and line["data"]["baseData"]["severityLevel"] == 2


def test_rows_in_a_batch_make_the_same_envelopes_as_one_by_one():
    # Templates.rows takes a print's text and its newline together when they follow each other; with
    # writes split, interleaved between threads or holding several lines, it falls back on the
    # pending-line table. Either way the envelopes are those of the rows taken one at a time.
    from scorewatch.telemetry.templates import Templates

    def templates() -> Templates:
        return Templates("ikey-1", role="svc", role_instance="host", base_properties={"Service Name": "svc"},
                         models="m:1")

    def out(when, stream, text, thread, op="a" * 32):
        return ("o", when, stream, text, thread, op, "b" * 16, "POST /score", 100.0)

    rows = [
        out(1.5, "STDOUT", "plain", 1), ("n", "STDOUT", 1),                     # print("plain")
        out(1.6, "STDOUT", '{"k": 1}', 1), ("n", "STDOUT", 1),                  # printed JSON
        out(1.7, "STDOUT", "part one, ", 1), out(1.8, "STDOUT", "two", 1),       # one line, two writes
        out(1.9, "STDOUT", "other thread", 2), ("n", "STDOUT", 2),              # meanwhile, thread 2
        ("n", "STDOUT", 1),
        out(2.0, "STDERR", "to stderr", 1), ("n", "STDOUT", 1),                 # a newline of another stream
        ("n", "STDERR", 1),
        out(2.1, "STDOUT", "a\nb\n", 1), ("n", "STDOUT", 1),                    # whole lines, then a blank
        out(2.2, "STDOUT", "   ", 1), ("n", "STDOUT", 1),                       # only blanks: nothing
        ("l", *out(2.4, "STDOUT", "a whole line", 1)[1:]),                      # text + newline, as the worker
        out(2.5, "STDOUT", "begun, ", 1), ("l", *out(2.6, "STDOUT", "ended", 1)[1:]),  # ships them
        ("r", 2.25, "a" * 32, "b" * 16, None, "POST /score", "http://h/score", 1.5, 200, True, "r-1", "",
         b'{"x": 1}', b"[2]", 100.0, True),                                    # a request, its model data
        ("l", *out(2.26, "STDOUT", '{"k": 2}', 1)[1:]),                         # a JSON line, whole
        out(2.3, "STDOUT", "last", 3),                                          # the batch ends mid-line
    ]
    one_by_one = templates()
    expected = [envelope for row in rows for envelope in one_by_one.raw(row)]
    batched = templates()
    assert batched.rows(rows) == expected
    envelopes = [orjson.loads(e) for e in expected]
    assert [e["data"]["baseData"].get("message", "request") for e in envelopes[8:10]] == [
        "request", "model_data_collection"]
    assert [e["data"]["baseData"]["properties"]["Contents"] for e in envelopes[:8] + envelopes[10:]] == [
        "plain", {"k": 1}, "other thread", "part one, two", "to stderr", "a\nb", "a whole line", "begun, ended",
        {"k": 2}]
    assert batched._pending.keys() == one_by_one._pending.keys() == {("STDOUT", 3)}


def test_urls_with_a_query_do_not_fill_the_name_cache():
    from scorewatch.telemetry.templates import Templates

    # The name cache is the Python writer's (native=False); the C writer escapes names as it goes.
    templates = Templates("ikey-1", role="svc", role_instance="host", base_properties={}, models="m:1", native=False)

    def row(url):
        return ("r", 1.7e9, "a" * 32, "b" * 16, None, "GET /score", url, 1.0, 200, True, "r", "", None, None,
                100.0, False)

    for i in range(100):  # every GET with its own query
        [envelope] = templates.rows([row(f"http://h/score?x={i}")])
        assert orjson.loads(envelope)["data"]["baseData"]["url"] == f"http://h/score?x={i}"
    templates.rows([row("http://h/score")])
    assert set(templates._names) == {"GET /score", "http://h/score"}  # names and the plain URL, cached once
