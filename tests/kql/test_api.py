"""The query API over a real socket: App Insights' REST shape, keys, scoping, limits, errors."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest

from tests.kql.conftest import ApiServer


def post(api, body, app="app1", key="key-one", **kwargs):
    headers = {"x-api-key": key} if key else {}
    return httpx.post(f"{api.url}/v1/apps/{app}/query", json=body, headers=headers, timeout=30, **kwargs)


def test_get_answers_in_the_application_insights_shape(api):
    response = httpx.get(f"{api.url}/v1/apps/app1/query",
                         params={"query": "requests | summarize count() by resultCode | order by resultCode asc"},
                         headers={"x-api-key": "key-one"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"tables": [{
        "name": "PrimaryResult",
        "columns": [{"name": "resultCode", "type": "string"}, {"name": "count_", "type": "long"}],
        "rows": [["200", 7], ["500", 2]]}]}


def test_post_types_datetimes_dynamic_and_timespans(api):
    kql = ('requests | where id == "r1" | project timestamp, customDimensions, ok = success, d = duration, '
           "t = 90m + 1.5s, n = toint(customDimensions.n)")
    table = post(api, {"query": kql}).json()["tables"][0]
    assert [c["type"] for c in table["columns"]] == ["datetime", "dynamic", "bool", "real", "timespan", "int"]
    assert table["rows"] == [["2024-05-01T10:07:01.000000Z",
                              {"Input": "in1", "Request Id": "rid-1", "n": 1, "list": [1, 2]},
                              True, 15.0, "01:30:01.5000000", 1]]


def test_the_application_in_the_path_scopes_the_query(api):
    both = "union requests, traces | summarize count() by appId"
    assert post(api, {"query": both}).json()["tables"][0]["rows"] == [["app1", 12]]
    assert post(api, {"query": both}, app="app2", key="key-two").json()["tables"][0]["rows"] == [["app2", 1]]


def test_timespan_limits_the_rows(api):
    # the clock is 2024-05-01 12:00; PT2H reaches back to 10:00, PT1H30M to 10:30
    assert post(api, {"query": "requests | count", "timespan": "PT2H"}).json()["tables"][0]["rows"] == [[9]]
    assert post(api, {"query": "requests | count", "timespan": "PT1H30M"}).json()["tables"][0]["rows"] == [[4]]
    span = "2024-05-01T10:00:00Z/2024-05-01T10:20:00Z"
    response = httpx.get(f"{api.url}/v1/apps/app1/query", params={"query": "requests | count", "timespan": span},
                         headers={"x-api-key": "key-one"})
    assert response.json()["tables"][0]["rows"] == [[3]]


@pytest.mark.parametrize(("key", "status"), [(None, 401), ("wrong", 403), ("key-two", 403)])
def test_missing_or_wrong_keys_get_nothing(api, key, status):
    response = post(api, {"query": "requests | count"}, key=key)
    assert response.status_code == status
    assert "tables" not in response.json() and response.json()["error"]["code"] in ("Unauthorized", "Forbidden")


def test_kql_errors_carry_the_position(api):
    response = post(api, {"query": "requests\n| where durration > 1"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadArgumentError"
    assert error["innererror"] == {"code": "SemanticError", "message": error["message"], "line": 2, "column": 9,
                                   "length": 9, "snippet": "| where durration > 1"}
    assert "'duration'" in error["message"]


@pytest.mark.parametrize(("request_kwargs", "fragment"), [
    ({"json": {}}, "'query' parameter is required"),
    ({"content": b"{not json"}, "must be JSON"),
    ({"json": ["requests"]}, "JSON object"),
    ({"json": {"query": "requests", "timespan": "yesterday"}}, "invalid ISO 8601 duration"),
    ({"json": {"query": "requests", "timespan": 5}}, "'timespan' must be"),
    ({"json": {"query": "requests", "timespan": "2024-05-02T00:00:00Z/2024-05-01T00:00:00Z"}}, "end is before"),
])
def test_bad_requests_get_clear_errors(api, request_kwargs, fragment):
    response = httpx.post(f"{api.url}/v1/apps/app1/query", headers={"x-api-key": "key-one"}, **request_kwargs)
    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]


def test_render_hint_is_returned(api):
    body = post(api, {"query": "requests | summarize count() by bin(timestamp, 1h) | render timechart "
                               'with (title="Load")'}).json()
    assert body["render"] == {"visualization": "timechart", "title": "Load"}


def test_row_limit_truncates_and_says_so(store):
    with ApiServer(store, max_rows=3) as server:
        body = post(server, {"query": "requests | project id"}).json()
    assert len(body["tables"][0]["rows"]) == 3
    assert body["error"]["code"] == "PartialError"
    assert body["error"]["details"][0]["code"] == "ResultTruncated"


def test_time_limit_cancels_the_query(store):
    # ten rows joined with themselves eight times is 10^9 rows to count: far past 0.3 s
    kql = "requests | extend k = 1 | project k" + " | join kind=inner (requests | extend k = 1 | project k) on k" * 8
    with ApiServer(store, timeout_s=0.3) as server:
        response = post(server, {"query": kql + " | count"})
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "Timeout"
        # the server is still there and answers the next query
        assert post(server, {"query": "requests | count"}).json()["tables"][0]["rows"] == [[9]]


def test_compiling_and_running_a_query_leaves_the_event_loop_free(store):
    """The clock a query reads is where compiling starts: here it blocks until the test has seen the
    server answer another route meanwhile (on the event loop, it would freeze every route)."""
    import threading

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from scorewatch.kql.api import query_routes
    from tests.helpers import serve_in_thread
    from tests.kql.conftest import NOW, authenticate

    entered, release = threading.Event(), threading.Event()

    def clock():
        entered.set()
        assert release.wait(30)
        return NOW

    async def ping(request):
        return PlainTextResponse("pong")

    app = Starlette(routes=[*query_routes(store, authenticate, clock=clock, concurrency=1),
                            Route("/ping", ping)])
    with serve_in_thread(app, log_level="error", lifespan="off") as url:
        results: dict[int, list[int]] = {200: [], 429: []}

        def ask():
            response = httpx.post(f"{url}/v1/apps/app1/query", json={"query": "requests | count"},
                                  headers={"x-api-key": "key-one"}, timeout=60)
            results.setdefault(response.status_code, []).append(int(response.headers.get("Retry-After", 0)))

        threads = [threading.Thread(target=ask) for _ in range(12)]
        try:
            threads[0].start()
            assert entered.wait(30)
            assert httpx.get(f"{url}/ping", timeout=10).text == "pong"  # the loop is free
            for thread in threads[1:]:
                thread.start()
            deadline = time.monotonic() + 30
            while len(results[429]) < 4 and time.monotonic() < deadline:  # 8 admitted (1 running), 4 refused
                time.sleep(0.02)
        finally:
            release.set()
            for thread in threads:
                if thread.ident is not None:
                    thread.join(60)
        assert len(results[200]) == 8 and len(results[429]) == 4 and min(results[429]) >= 1


def test_a_chunked_body_is_refused_as_it_passes_the_limit(api):
    """The body is checked while it streams: a chunked body without end gets its 413 at 1 MiB."""
    import socket
    from urllib.parse import urlsplit

    host, port = urlsplit(api.url).hostname, urlsplit(api.url).port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /v1/apps/app1/query HTTP/1.1\r\nHost: x\r\nx-api-key: key-one\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b" " * 65536
        for _ in range(20):  # 1.25 MiB, and the body never ends
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_timespans_past_the_calendar_and_arithmetic_overflow_are_400_without_sql(api):
    for timespan in ("P99999999999D", "9999-12-31T00:00:00Z/P30D"):
        response = post(api, {"query": "requests | count", "timespan": timespan})
        assert response.status_code == 400 and "timespan" in response.json()["error"]["message"], response.text
    response = post(api, {"query": "print x = 9223372036854775807 * 2"})
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "Overflow" in message and "SELECT" not in message and "LINE" not in message


def test_a_value_nested_deeper_than_json_output_allows_comes_back_as_text(tmp_path):
    """Rows stored before ingest limited nesting (or by another writer) never make a query fail."""
    from scorewatch.store.duckdb import DuckDBStore
    from tests.kql.conftest import ApiServer

    deep = "[" * 300 + "]" * 300
    store = DuckDBStore(tmp_path / "t.duckdb")
    try:
        store.write_batch("traces", [{"timestamp": datetime(2024, 5, 1, 10), "message": "deep", "appId": "app1",
                                      "customDimensions": deep}])
        with ApiServer(store) as server:
            response = post(server, {"query": "traces | project message, customDimensions"})
        assert response.status_code == 200, response.text
        assert response.json()["tables"][0]["rows"] == [["deep", deep]]
    finally:
        store.close()
