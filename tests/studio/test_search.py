"""Transaction search on a hub of its own, holding telemetry sent through the track API at chosen
times: its results are looked for newest first, window by window, within a time budget, and its
count of matches over time comes from its own endpoint; both are the query API's answers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from scorewatch.ingest.cli import ensure_default_app
from scorewatch.ingest.connections import protocol_class
from scorewatch.ingest.hub import create_app, open_hub
from scorewatch.settings import Settings
from scorewatch.studio import queries
from scorewatch.workspace import Workspace
from tests.helpers import free_port, serve_in_thread, wait_until

FREQUENT = 120  # traces saying "needle" in the last 20 minutes; one more 10 hours ago
RARE = "Zx-90817"  # in a request's customDimensions 30 hours ago and a trace's message 50 hours ago


@dataclass
class Hub:
    url: str
    app: dict[str, Any]

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(f"{self.url}/studio/default/{path}", params=params,
                         headers={"x-api-key": self.app["api_key"]}, timeout=30)

    def query(self, kql: str, timespan: str = "P7D") -> list[list[Any]]:
        response = httpx.get(f"{self.url}/v1/apps/{self.app['app_id']}/query",
                             params={"query": kql, "timespan": timespan},
                             headers={"x-api-key": self.app["api_key"]}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["tables"][0]["rows"]


def _item(kind: str, ikey: str, at: datetime, operation_id: str, base: dict[str, Any]) -> dict[str, Any]:
    return {"name": f"Microsoft.ApplicationInsights.{kind}", "iKey": ikey,
            "time": at.isoformat().replace("+00:00", "Z"), "tags": {"ai.operation.id": operation_id},
            "data": {"baseType": f"{kind}Data", "baseData": {"ver": 2, **base}}}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    home: Path = tmp_path_factory.mktemp("search") / "ws"
    port = free_port()
    settings = Settings.from_env({}, home=home, hub_port=port, ingest_linger_ms=20)
    workspace = Workspace(home)
    app = ensure_default_app(workspace, settings)
    with serve_in_thread(create_app(open_hub(workspace, settings)), port=port, http=protocol_class(settings)) as url:
        now, ikey = datetime.now(UTC), app["instrumentation_key"]
        items = [_item("Message", ikey, now - timedelta(seconds=10 * k), f"op-n{k}", {"message": f"needle {k}"})
                 for k in range(1, FREQUENT + 1)]
        items.append(_item("Message", ikey, now - timedelta(hours=10), "op-old", {"message": "an old Needle"}))
        items += [_item("Message", ikey, now - timedelta(hours=h), f"op-h{h}", {"message": f"hay {h}"})
                  for h in range(1, 160, 7)]
        items.append(_item("Request", ikey, now - timedelta(hours=30), "op-rare-1",
                           {"id": "r1", "name": "POST /score", "duration": "00:00:00.010", "responseCode": "200",
                            "success": True, "properties": {"Order": RARE.upper()}}))
        items.append(_item("Message", ikey, now - timedelta(hours=50), "op-rare-2",
                           {"message": f"order {RARE.lower()} done"}))
        assert httpx.post(f"{url}/v2.1/track", content=orjson.dumps(items)).status_code == 200
        running = Hub(url, app)
        wait_until(lambda: len(running.query("union traces, requests | project itemType")) == len(items),
                   what="the items sent")
        yield running


def test_a_term_found_often_is_answered_from_the_latest_hour(hub: Hub) -> None:
    data = hub.get("search.json", range="P7D", q="needle").json()
    results = data["queries"]["results"]
    [window] = results["windows"]  # older windows were not read
    start, end = (datetime.fromisoformat(window[edge]) for edge in ("start", "end"))
    assert end - start == queries.SEARCH_WINDOW and window["rows"] == queries.SEARCH_ROWS
    assert results["complete"] is True and len(results["rows"]) == queries.SEARCH_ROWS
    # The same rows as the results query over the whole range, read at once.
    assert results["rows"] == hub.query(results["kql"])
    assert all(row[2].startswith("needle ") for row in results["rows"])  # summary: the message


def test_a_rare_term_is_looked_for_back_to_the_range_s_start(hub: Hub) -> None:
    data = hub.get("search.json", range="P7D", q=RARE, full="1").json()
    results = data["queries"]["results"]
    windows = results["windows"]
    assert results["complete"] is True and results["searched_from"] == windows[-1]["start"]
    assert results["searched_from"][:19] == data["filters"]["start"][:19]
    assert [w["rows"] for w in windows] == [0, 0, 0, 2, 0]  # 1 h, then 3, 12, 48 and the rest
    for newer, older in zip(windows, windows[1:], strict=False):  # back to back, no overlap
        assert datetime.fromisoformat(newer["start"]) - datetime.fromisoformat(older["end"]) == \
            timedelta(microseconds=1)
    # Case ignored, in customDimensions and in a message; the same rows as a search of the whole range.
    assert [(row[1], row[4]) for row in results["rows"]] == [("request", "op-rare-1"), ("trace", "op-rare-2")]
    assert results["rows"] == hub.query(results["kql"])


def test_within_its_time_budget_a_search_says_how_far_back_it_looked(hub: Hub,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "SEARCH_BUDGET_S", 0.0)  # the hub runs in this process
    data = hub.get("search.json", range="P7D", q=RARE).json()
    results = data["queries"]["results"]
    assert results["complete"] is False and len(results["windows"]) == 1 and results["rows"] == []
    assert results["searched_from"] == results["windows"][0]["start"]
    page = hub.get("search", range="P7D", q=RARE).text
    assert "Searched back to" in page and 'id="search-full"' in page and "full=1" in page
    assert "Nothing matches in the part of the range searched so far" in page


def test_the_count_over_time_is_its_own_endpoint(hub: Hub) -> None:
    page = hub.get("search.json", range="P7D", q="needle", types="trace").json()
    deferred = page["deferred"]["timeline"]
    assert "timeline" not in page["queries"]  # the page does not wait for it
    response = httpx.get(hub.url + deferred["href"], headers={"x-api-key": hub.app["api_key"]}, timeout=30)
    assert response.headers["server-timing"].startswith("total;dur=")
    timeline = response.json()
    assert timeline["part"] == "timeline" and timeline["filters"]["q"] == "needle"
    result = timeline["queries"]["timeline"]
    assert result["complete"] is True and "next" not in timeline  # a small store is counted at once
    assert result["kql"] == deferred["kql"] and sorted(result["rows"]) == sorted(hub.query(deferred["kql"]))
    assert sum(row[2] for row in result["rows"]) == FREQUENT + 1  # every match, the old one too
    # It counts the page's very range, whenever it is fetched.
    assert (timeline["filters"]["start"], timeline["filters"]["end"]) == \
        (page["filters"]["start"], page["filters"]["end"])
    html = hub.get("search", range="P7D", q="needle").text
    assert "counting…" in html and 'data-src="/studio/default/search/timeline.json?' in html


def test_a_search_text_is_tested_cheapest_first_with_a_case_sensitive_prefilter(hub: Hub) -> None:
    assert queries.text_contains("data", "rid-4242") == \
        '(data contains_cs "-4242" and data contains "rid-4242")'
    assert queries.text_contains("data", "Needle ab") == 'data contains "Needle ab"'  # no run of 3 to lead
    for text in (RARE, RARE.swapcase(), "0817", "x-9", "needle"):
        for column in ("customDimensions", "message"):
            led = hub.query(f"union traces, requests | where {queries.text_contains(column, text)} | project itemId")
            plain = hub.query(f"union traces, requests | where {column} contains {queries.kql_string(text)} "
                              "| project itemId")
            assert sorted(led) == sorted(plain), (text, column)
    kql = queries.search(queries.Filters.parse({"q": RARE}, datetime.now(UTC), extra=("q",)), ["request"])
    assert 'where operation_Id == "Zx-90817" or' in kql["results"]
    assert 'tostring(customDimensions)' not in kql["results"]


def test_a_count_that_takes_too_long_comes_in_parts_newest_first(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = hub.get("search/timeline.json", range="P7D", q="e").json()["queries"]["timeline"]["rows"]
    monkeypatch.setattr(queries, "SEARCH_BUDGET_S", 0.0)  # one window per part
    href, parts = hub.get("search.json", range="P7D", q="e").json()["deferred"]["timeline"]["href"], []
    while href:
        part = httpx.get(hub.url + href, headers={"x-api-key": hub.app["api_key"]}, timeout=30).json()
        parts.append(part)
        href = part.get("next")
    assert len(parts) > 2 and [p["queries"]["timeline"]["complete"] for p in parts] == [False] * (len(parts) - 1) + [True]
    froms = [p["queries"]["timeline"]["searched_from"] for p in parts]
    assert froms == sorted(froms, reverse=True) and froms[-1][:19] == parts[0]["filters"]["start"][:19]
    rows = [row for p in parts for row in p["queries"]["timeline"]["rows"]]
    assert len({(row[0], row[1]) for row in rows}) == len(rows)  # no bin counted in two parts
    assert sum(row[2] for row in rows) == sum(row[2] for row in whole) > FREQUENT
    assert hub.get("search/timeline.json", range="P7D", q="e", until="2001-01-01T00:00:00Z").status_code == 400
    assert hub.get("search/timeline.json", range="P7D", q="e", until="soon").status_code == 400
    assert hub.get("search/timeline.json", range="P7D", q="e", step="-1").status_code == 400
    assert "step=" in parts[0]["next"] and "until=" in parts[0]["next"]  # sized by the pace of the first part
