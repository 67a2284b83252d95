"""AppInsightsExporter against a real local receiver: delivery, 206, throttling, outages, the spool."""

from __future__ import annotations

import orjson
import pytest

from scorewatch.telemetry.exporter import AppInsightsExporter, ExportResult, decode, encode
from scorewatch.telemetry.metrics import ExporterStats
from scorewatch.telemetry.spool import Spool
from tests.telemetry.receiver import Receiver


def envelopes(n: int, start: int = 0) -> list[bytes]:
    return [orjson.dumps({"name": "Microsoft.ApplicationInsights.x.Message", "time": "2026-01-01T00:00:00.000000Z",
             "iKey": "x", "data": {"baseType": "MessageData", "baseData": {"ver": 2, "message": f"m{i}"}}})
            for i in range(start, start + n)]


def messages(items) -> list[str]:
    return sorted(i["data"]["baseData"]["message"] for i in items)


_open: list[AppInsightsExporter] = []


@pytest.fixture(autouse=True)
def _close_exporters():
    yield
    while _open:
        _open.pop().shutdown()


def make_exporter(tmp_path, url: str, **kwargs) -> AppInsightsExporter:
    stats = ExporterStats()
    spool = Spool(tmp_path / "spool", kwargs.pop("max_bytes", 10_000_000), stats)
    kwargs.setdefault("retry_initial_s", 0.05)
    kwargs.setdefault("retry_max_s", 0.2)
    exporter = AppInsightsExporter(url + "/v2.1/track", spool=spool, stats=stats, timeout_s=5, **kwargs)
    _open.append(exporter)
    return exporter


def test_batch_arrives_gzipped(tmp_path, receiver):
    exporter = make_exporter(tmp_path, receiver.url)
    assert exporter.export(envelopes(3)) is ExportResult.SUCCESS
    assert messages(receiver.items) == ["m0", "m1", "m2"]
    assert receiver.headers[0]["content-encoding"] == "gzip"
    assert exporter.stats.counts["sent"] == 3


def test_206_resends_only_the_failed_items(tmp_path, receiver):
    receiver.script.append((206, {"errors": [{"index": 1, "statusCode": 503, "message": "busy"},
                                             {"index": 3, "statusCode": 400, "message": "bad"}]}, {}))
    exporter = make_exporter(tmp_path, receiver.url)
    assert exporter.export(envelopes(5)) is ExportResult.FAILURE
    exporter.force_flush(5)
    assert [messages(p) for p in receiver.posts] == [["m0", "m1", "m2", "m3", "m4"], ["m1"]]
    assert messages(receiver.items) == ["m0", "m1", "m2", "m4"]
    assert exporter.stats.dropped["rejected"] == 1
    assert exporter.stats.counts["sent"] == 4
    assert exporter.spool.is_empty()


def test_throttled_batch_waits_for_retry_after_then_arrives(tmp_path, receiver):
    receiver.script.append((429, {}, {"Retry-After": "30"}))
    clock = [100.0]
    exporter = make_exporter(tmp_path, receiver.url, clock=lambda: clock[0])
    assert exporter.export(envelopes(2)) is ExportResult.FAILURE
    assert exporter.backing_off()
    exporter.export(envelopes(1, start=2))  # while backing off: straight to the spool, nothing sent
    assert len(receiver.posts) == 1
    clock[0] += 29
    exporter.retry_due()
    assert len(receiver.posts) == 1
    clock[0] += 2
    exporter.retry_due()
    assert messages(receiver.items) == ["m0", "m1", "m2"]
    assert exporter.stats.counts["retried"] == 3


def test_receiver_down_then_back_loses_nothing(tmp_path):
    receiver = Receiver()
    exporter = make_exporter(tmp_path, receiver.url)
    for i in range(5):  # receiver not started yet: connection refused
        exporter.export(envelopes(10, start=i * 10))
    assert exporter.spool.pending()[0] == 5
    with receiver.start():
        assert exporter.force_flush(10)
        assert messages(receiver.items) == sorted(f"m{i}" for i in range(50))
    assert exporter.stats.counts["spooled"] == 50
    assert exporter.stats.counts["sent"] == 50


def test_a_new_exporter_replays_what_an_earlier_one_spooled(tmp_path, receiver):
    dead = make_exporter(tmp_path, "http://127.0.0.1:9")
    dead.export(envelopes(4))
    fresh = make_exporter(tmp_path, receiver.url)
    fresh.retry_due()
    assert messages(receiver.items) == ["m0", "m1", "m2", "m3"]


def test_400_is_counted_as_rejected_not_retried(tmp_path, receiver):
    receiver.script.append((400, {"error": "unknown key"}, {}))
    exporter = make_exporter(tmp_path, receiver.url)
    assert exporter.export(envelopes(3)) is ExportResult.SUCCESS
    assert exporter.stats.dropped["rejected"] == 3
    assert exporter.spool.is_empty()


def test_spool_is_bounded_and_drops_oldest_first(tmp_path):
    stats = ExporterStats()
    spool = Spool(tmp_path / "spool", 1000, stats)
    bodies = [encode(envelopes(1, start=i)) + b"x" * 300 for i in range(5)]
    for body in bodies:
        spool.put(body, 1)
    count, size = spool.pending()
    assert size <= 1000 and count == 2
    assert stats.dropped["spool_full"] == 3
    oldest = spool.claim_oldest()
    assert oldest is not None and oldest.read() == bodies[3]


def test_claims_of_a_dead_process_are_released(tmp_path):
    stats = ExporterStats()
    spool = Spool(tmp_path / "spool", 10_000, stats)
    spool.put(encode(envelopes(1)), 1)
    entry = spool.claim_oldest()
    assert entry is not None and spool.claim_oldest() is None
    entry.path.rename(entry.path.with_name(entry.path.name.split(".claimed-")[0] + ".claimed-999999999"))
    again = Spool(tmp_path / "spool", 10_000, stats).claim_oldest()
    assert again is not None and orjson.loads(decode(again.read())[0])["data"]["baseData"]["message"] == "m0"


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried(tmp_path, receiver, status):
    receiver.script.append((status, {}, {}))
    exporter = make_exporter(tmp_path, receiver.url)
    assert exporter.export(envelopes(2)) is ExportResult.FAILURE
    assert exporter.force_flush(5)
    assert messages(receiver.items) == ["m0", "m1"]


@pytest.mark.parametrize("count", [0, 1, 128, 129, 300])
def test_encode_is_one_gzip_json_array_of_the_envelopes_whatever_the_slicing(count):
    import gzip

    envelopes = [orjson.dumps({"name": f"e{i}", "data": {"n": i, "text": "x" * (i % 7)}}) for i in range(count)]
    body = encode(envelopes)
    assert body[:2] == b"\x1f\x8b"  # a gzip member, as /v2.1/track takes with Content-Encoding: gzip
    assert orjson.loads(gzip.decompress(body)) == [orjson.loads(e) for e in envelopes]
    assert decode(body) == [orjson.dumps(orjson.loads(e)) for e in envelopes]
