"""What ingest accepts is what the store keeps: the admission checks at a real hub (text that is not
UTF-8, values nested too deep, numbers past their columns, bodies too large or cut short), each
answered per item or as a whole, never a 200 for items the store then drops, never a 500."""

from __future__ import annotations

import gzip
import secrets
from typing import Any

import httpx
import orjson

from scorewatch.ingest.track import MAX_DEPTH, json_depth
from tests.ingest.conftest import RunningHub, running_hub
from tests.ingest.test_track import envelope, post


def _trace(hub: RunningHub, message: str, **base: Any) -> dict[str, Any]:
    return envelope(hub.ikey, "MessageData", {"message": message, **base})


def test_text_that_is_not_utf8_is_refused_per_item(shared_hub: RunningHub) -> None:
    hub, tag = shared_hub, secrets.token_hex(8)
    good = orjson.dumps(_trace(hub, f"{tag}-good"))
    bad = orjson.dumps(_trace(hub, f"{tag}-bad-XX")).replace(b"XX", b"\xff\xfe")  # msgspec skips it
    for body in (b"[" + good + b"," + bad + b"]", good + b"\n" + bad):  # array and NDJSON
        response = post(hub, body)
        assert response.status_code == 206, response.text
        assert response.json()["itemsAccepted"] == 1
        assert response.json()["errors"] == [{"index": 1, "statusCode": 400,
                                              "message": "the envelope is not valid UTF-8 text"}]
    assert hub.rows("SELECT message FROM traces WHERE message LIKE ?", (f"{tag}%",)) == [[f"{tag}-good"]] * 2
    assert hub.hub.metrics.quarantined == 0


def test_nesting_past_the_limit_is_refused_per_item_and_below_it_is_queryable(shared_hub: RunningHub) -> None:
    hub, tag = shared_hub, secrets.token_hex(8)

    def nested(depth: int) -> Any:
        value: Any = "leaf"
        for i in range(depth):
            value = [value] if i % 2 else {"k": value}
        return value

    deepest_kept = MAX_DEPTH - 4  # envelope, data, baseData, properties, then the value's own levels
    items = [_trace(hub, f"{tag}-ok", properties={"v": nested(deepest_kept)}),
             _trace(hub, f"{tag}-deep", properties={"v": nested(deepest_kept + 1)}),
             _trace(hub, f"{tag}-very-deep", properties={"v": nested(300)}),
             _trace(hub, f'{tag}-brackets in strings do not count: {"[" * 500}')]
    body = b"[" + b",".join(_dumps_deep(i) for i in items) + b"]"
    response = post(hub, body)
    assert response.status_code == 206, response.text
    assert [e["index"] for e in response.json()["errors"]] == [1, 2]
    assert "deeper than 100 levels" in response.json()["errors"][0]["message"]
    rows = hub.rows("SELECT message FROM traces WHERE message LIKE ? ORDER BY message", (f"{tag}%",))
    assert [r[0][len(tag) + 1:len(tag) + 9] for r in rows] == ["brackets", "ok"]
    app_id = hub.default["app_id"]
    answer = httpx.get(f"{hub.url}/v1/apps/{app_id}/query", headers={"x-api-key": hub.default["api_key"]},
                       params={"query": f"traces | where message == '{tag}-ok' | project customDimensions",
                               "timespan": "P36500D"})
    assert answer.status_code == 200, answer.text  # the deepest value kept can be given back
    assert answer.json()["tables"][0]["rows"][0][0] == {"v": nested(deepest_kept)}

    # ~1000 levels, where the JSON parser itself gives up: the whole body is refused (array or
    # NDJSON), so that replay, which parses it again, can never accept what the answer refused.
    deepest = _dumps_deep(_trace(hub, f"{tag}-1000", properties={"v": nested(1000)}))
    for body in (b"[" + deepest + b"]", deepest + b"\n" + orjson.dumps(_trace(hub, f"{tag}-next"))):
        response = post(hub, body)
        assert response.status_code == 400 and "deeper than 100" in response.text


def _dumps_deep(item: dict[str, Any]) -> bytes:
    """orjson refuses to write past 255 levels; the deep value is spliced in as text."""
    value = item["data"]["baseData"].get("properties", {}).get("v")
    depth = 0
    while isinstance(value, (dict, list)):
        value = value["k"] if isinstance(value, dict) else value[0]
        depth += 1
    if depth < 200:
        return orjson.dumps(item)
    item["data"]["baseData"]["properties"]["v"] = "SPLICE"
    text = ""
    for i in range(depth):
        text = ('[' if i % 2 else '{"k":') + text
    deep = text + '"leaf"' + "".join("]" if i % 2 else "}" for i in range(depth))
    return orjson.dumps(item).replace(b'"SPLICE"', deep.encode())


def test_json_depth_skips_strings_and_escapes() -> None:
    assert json_depth(b'{"a": [1, {"b": "]]}}"}]}') == 3
    assert json_depth(b'{"a": "\\"[[[[", "b": "\\\\"}') == 1  # an escaped quote, then an escaped backslash
    assert json_depth(b'["\\\\\\"{{"]') == 1
    assert json_depth(b"}{") > MAX_DEPTH  # not JSON: no bound
    assert json_depth(b'{"a": "x\\n[", "b": [[]]}') == 3  # an escape that hides no quote


def test_numbers_past_their_columns_are_stored_clamped(shared_hub: RunningHub) -> None:
    hub, tag = shared_hub, secrets.token_hex(8)
    items = [envelope(hub.ikey, "MetricData", {"metrics": [{"name": f"{tag}-hist", "value": 10.0,
                                                            "count": 2**31}]}),  # a long-lived histogram
             envelope(hub.ikey, "MessageData", {"message": f"{tag}-sampled"}, sampleRate=4e-8),
             envelope(hub.ikey, "MessageData", {"message": f"{tag}-plain"})]
    response = post(hub, orjson.dumps(items))
    assert response.status_code == 200 and response.json()["itemsAccepted"] == 3
    assert hub.rows("SELECT valueCount FROM customMetrics WHERE name = ?", (f"{tag}-hist",)) == [[2**31 - 1]]
    assert hub.rows("SELECT message, itemCount FROM traces WHERE message LIKE ? ORDER BY message",
                    (f"{tag}%",)) == [[f"{tag}-plain", 1], [f"{tag}-sampled", 2**31 - 1]]
    assert hub.hub.metrics.quarantined == 0


def test_a_request_larger_than_the_whole_queue_is_413_not_429(tmp_path: Any) -> None:
    with running_hub(tmp_path / "ws", ingest_queue_items=10) as hub:
        response = post(hub, orjson.dumps([_trace(hub, str(i)) for i in range(11)]))
        assert response.status_code == 413 and "at most 10 items" in response.json()["error"]["message"]
        assert post(hub, orjson.dumps([_trace(hub, str(i)) for i in range(10)])).status_code == 200


def test_multi_member_gzip_is_read_whole_and_a_truncated_one_is_refused(shared_hub: RunningHub) -> None:
    hub, tag = shared_hub, secrets.token_hex(8)
    first = gzip.compress(orjson.dumps(_trace(hub, f"{tag}-1")) + b"\n")
    second = gzip.compress(orjson.dumps(_trace(hub, f"{tag}-2")))
    response = post(hub, first + second, **{"Content-Encoding": "gzip"})
    assert response.status_code == 200 and response.json()["itemsReceived"] == 2
    assert hub.rows("SELECT count(*) FROM traces WHERE message LIKE ?", (f"{tag}%",)) == [[2]]
    whole = gzip.compress(orjson.dumps([_trace(hub, f"{tag}-{i}") for i in range(3, 50)]))
    for cut in (whole[:-4], whole[: len(whole) // 2]):  # the trailer lost, half the stream lost
        response = post(hub, cut, **{"Content-Encoding": "gzip"})
        assert response.status_code == 400 and "truncated" in response.json()["error"]["message"], response.text
    assert hub.rows("SELECT count(*) FROM traces WHERE message LIKE ?", (f"{tag}%",)) == [[2]]
