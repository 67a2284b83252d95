"""Envelope building, formats, connection strings; the templates make the factory's envelopes."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from scorewatch.errors import ConfigError
from scorewatch.telemetry import rows
from scorewatch.telemetry.blobs import BlobStore
from scorewatch.telemetry.connection import parse_connection_string
from scorewatch.telemetry.envelopes import (
    SEVERITY_INFO,
    EnvelopeFactory,
    format_duration,
    format_time,
    sample_rate,
    severity_for_level,
)
from scorewatch.telemetry.templates import Template, Templates, markers


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


def templates(native: bool, **kwargs) -> Templates:
    return Templates("ikey-1", role="svc", role_instance="host",
                     **{"base_properties": {"Service Name": "svc"}, "models": "m:1", "native": native, **kwargs})


def request_row(**changes):
    values = dict(start=1.7e9 + 0.25, operation_id="a" * 32, span_id="b" * 16, caller=None, name="POST /score",
                  url="http://h:1/score", duration_ms=12.5, status=200, success=True, request_id="req-1",
                  client_request_id="client-1", input=b'{"data": [1]}', prediction=b"[2]", sample_rate=100.0,
                  model_data=True)
    return rows.make_request(**{**values, **changes})


def test_the_templates_make_the_factory_s_envelopes(native):
    # The templates are compiled from the factory: filling them gives what the factory builds.
    factory = EnvelopeFactory("ikey-1", role="svc", role_instance="host")
    props = {"Service Name": "svc", "Request Id": "req-1", "Client Request Id": "client-1"}
    for success, status, caller, rate in [(True, 200, None, 100.0), (False, 404, "c" * 16, 100.0),
                                          (True, 201, "", 25.0)]:
        row = request_row(success=success, status=status, caller=caller, sample_rate=rate)
        request, trace = map(orjson.loads, templates(native).rows([row]))
        sampled = sample_rate(rate) if success else None
        assert request == factory.request(
            time=format_time(1.7e9 + 0.25), id="b" * 16, name="POST /score", url="http://h:1/score",
            duration="0.00:00:00.012500", response_code=str(status), success=success, properties=props,
            operation_id="a" * 32, parent_id=caller, sample_rate=sampled)
        failure = {} if success else {"Error": "[2]", "Status Code": str(status)}
        assert trace == factory.message(
            time=format_time(1.7e9 + 0.25), message="model_data_collection", severity=SEVERITY_INFO,
            properties={**props, "Models": "m:1", "Input": '{"data": [1]}', "Prediction": "[2]", **failure},
            operation_id="a" * 32, parent_id="b" * 16, operation_name="POST /score", sample_rate=sampled)
    for op, name, rate in [("a" * 32, "POST /score", 100.0), (None, "", 50.0), ("a" * 32, "", 100.0)]:
        line = rows.make_text(rows.Text.LINE, time=1.7e9, stream=rows.STDERR, text="hi", thread=1, operation_id=op,
                              parent_id="b" * 16 if op else "", operation_name=name, sample_rate=rate)
        [output] = map(orjson.loads, templates(native).rows([line]))
        assert output == factory.message(
            time=format_time(1.7e9), message="STDERR", severity=2, properties={"Service Name": "svc", "Contents": "hi"},
            operation_id=op, parent_id="b" * 16 if op else None, operation_name=name or None,
            sample_rate=sample_rate(rate))


def test_a_template_refuses_an_envelope_whose_slots_are_not_the_declared_ones():
    factory = EnvelopeFactory("ikey-1", role="svc", role_instance="host")
    slots = rows.OUTPUT_ENVELOPE
    m = markers(slots)
    envelope = factory.message(time=m["time"], message=m["message"], severity=m["severity"],
                               properties={"Contents": m["contents"]}, operation_id=m["operation_id"],
                               parent_id=m["parent_id"], operation_name=m["operation_name"],
                               sample_rate=m["sample_rate"])
    assert Template.compile(envelope, slots).slots == slots
    swapped = (slots[0], slots[2], slots[1], *slots[3:])
    with pytest.raises(ValueError, match="do not follow the declared"):
        Template.compile(envelope, swapped)
    with pytest.raises(ValueError, match="do not follow the declared"):
        Template.compile(envelope, slots[:-1])  # one slot the declaration does not have
    required = (*slots[:-1], rows.Slot("sample_rate"))
    assert Template.compile(envelope, required).members[-1] is None  # a required slot keeps its member's key


def test_templates_escape_user_text_and_mark_samples(native, tmp_path):
    built = templates(native, inline_limit=1024, blobs=BlobStore(tmp_path))
    row = request_row(url='http://h:1/score?a="b"', input='{"q": "\\"quoted\\" \u2028 </script>"}'.encode(),
                      prediction=b"\xff\xfe", sample_rate=25.0)
    request, trace = map(orjson.loads, built.rows([row]))
    assert request["data"]["baseData"]["url"] == 'http://h:1/score?a="b"' and request["sampleRate"] == 25.0
    assert orjson.loads(trace["data"]["baseData"]["properties"]["Input"])["q"].startswith('"quoted"')
    assert trace["data"]["baseData"]["properties"]["Prediction"]["size"] == 2  # not UTF-8: a blob
    chunk = rows.make_text(rows.Text.CHUNK, time=1.7e9, stream=rows.STDERR, text='say "hi"\n\ttab\n', thread=2,
                           operation_id=None, parent_id="", operation_name="", sample_rate=100.0)
    [line] = map(orjson.loads, built.rows([chunk]))
    assert line["data"]["baseData"]["properties"]["Contents"] == 'say "hi"\n\ttab'
    assert "ai.operation.id" not in line["tags"] and line["data"]["baseData"]["severityLevel"] == 2


def test_rows_in_a_batch_make_the_same_envelopes_as_one_by_one(native):
    # Templates.rows takes a print's text and its newline together when they follow each other; with
    # writes split, interleaved between threads or holding several lines, it falls back on the
    # pending-line table. Either way the envelopes are those of the rows taken one at a time.
    def out(when, stream, text, thread, op="a" * 32):
        return ("o", when, stream, text, thread, op, "b" * 16, "POST /score", 100.0)

    batch = [
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
        request_row(start=2.25, url="http://h/score", duration_ms=1.5, request_id="r-1", client_request_id="",
                    input=b'{"x": 1}'),                                         # a request, its model data
        ("l", *out(2.26, "STDOUT", '{"k": 2}', 1)[1:]),                         # a JSON line, whole
        out(2.3, "STDOUT", "last", 3),                                          # the batch ends mid-line
    ]
    one_by_one = templates(native)
    expected = [envelope for row in batch for envelope in one_by_one.row(row)]
    batched = templates(native)
    assert batched.rows(batch) == expected
    envelopes = [orjson.loads(e) for e in expected]
    assert [e["data"]["baseData"].get("message", "request") for e in envelopes[8:10]] == [
        "request", "model_data_collection"]
    assert [e["data"]["baseData"]["properties"]["Contents"] for e in envelopes[:8] + envelopes[10:]] == [
        "plain", {"k": 1}, "other thread", "part one, two", "to stderr", "a\nb", "a whole line", "begun, ended",
        {"k": 2}]
    assert batched._pending.keys() == one_by_one._pending.keys() == {("STDOUT", 3)}
