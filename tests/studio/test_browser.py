"""The studio in a real browser (Debian's chromium driven by Playwright), against a hub holding the
telemetry of a served model. With SCOREWATCH_SCREENSHOTS=docs/images these tests also make the
README's pictures."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from scorewatch.studio.queries import DEFAULT_LOGS_QUERY
from tests.studio.conftest import XSS, Page, Served

PAGES = ["overview", "performance", "failures", "search", "logs", "modeldata", "live", "services"]
# Pages whose charts are drawn from their data (canvas elements inside .chart).
CHARTED = {"overview": 6, "performance": 1, "failures": 1, "search": 1, "live": 5}

DRAWN = """(selector) => Array.from(document.querySelectorAll(selector)).filter((canvas) => {
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
    return false;
}).length"""


def _login(tab: Page, served: Served) -> None:
    tab.goto(served.login_link())
    assert re.search(r"/studio/_all/overview$", tab.url), tab.url  # the token opens every application


def _run_query(tab: Page, text: str) -> None:
    tab.fill("#kql", text)
    tab.click("#run")


@pytest.mark.slow
def test_every_page_loads_without_console_errors_and_draws_its_charts(tab: Page, served: Served) -> None:
    _login(tab, served)
    for name in PAGES:
        # The Logs page runs the query it opens with (as "Open in Logs" links give it one).
        query = {"query": DEFAULT_LOGS_QUERY.replace("1h", "1m")} if name == "logs" else {}
        tab.goto(f"{served.hub_url}/studio/default/{name}?{urlencode({'range': 'PT30M', **query})}")
        tab.wait_for_load_state("networkidle") if name != "live" else tab.wait_for_selector("#live-status.ok")
        assert tab.locator("nav.side a.active").inner_text() != ""
        if name in CHARTED:
            tab.wait_for_function("(n) => document.querySelectorAll('.chart canvas').length >= n", arg=CHARTED[name])
            assert tab.evaluate(DRAWN, ".chart canvas") >= CHARTED[name], name
        if name == "logs":
            tab.wait_for_selector("#logs-table")  # the default query runs and its chart is drawn
            assert tab.evaluate(DRAWN, "#logs-chart canvas") == 1
        if name != "services":
            tab.screenshot_as(name)
        assert tab.errors == [], f"{name}: {tab.errors}"
    # The Gantt of one transaction is drawn as SVG.
    tab.goto(f"{served.hub_url}/studio/default/transaction/{served.operations['req-3']}")
    assert tab.locator("#gantt svg rect").count() == 2  # the request and its outgoing call
    assert tab.locator("#transaction-items > li").count() >= 4
    assert tab.errors == []


@pytest.mark.slow
def test_overview_to_failures_to_a_failed_request_shows_its_print_exception_and_model_data(
        tab: Page, served: Served) -> None:
    _login(tab, served)
    tab.goto(f"{served.hub_url}/studio/default/overview")
    tab.evaluate("window.__sameDocument = true")  # partial updates keep the document
    tab.click("#to-failures")
    tab.wait_for_url(re.compile(r"/studio/default/failures"))
    assert tab.locator("#failed-operations").inner_text().count("POST /score") == 1
    tab.click("#failed-operations a.operation")
    tab.wait_for_url(re.compile(r"operation=POST"))
    assert tab.evaluate("window.__sameDocument") is True
    samples = tab.locator("#failure-samples tbody tr")
    assert samples.count() == 2
    samples.first.locator("a.tx-link").click()
    tab.wait_for_url(re.compile(r"/transaction/"))
    failed_op = tab.locator("#operation-id").inner_text()
    assert failed_op in (served.operations["req-4"], served.operations["req-7"])
    n = 7 if failed_op == served.operations["req-7"] else 4
    items = tab.locator("#transaction-items")
    assert items.locator("li.printed pre.printed").inner_text() == f"scoring {n}"
    assert items.locator(".exception-head").inner_text() == f"ValueError: asked to fail on {n}"
    assert f"at run ({served.home.parent / 'svc' / 'score.py'}:" in items.locator(".stack pre").inner_text()
    model_data = items.locator("li.model-data-item dl").inner_text()
    assert '"fail": true' in model_data.replace('":true', '": true') and "Status Code\n500" in model_data
    tab.screenshot_as("transaction")
    assert tab.errors == []


@pytest.mark.slow
def test_a_kql_error_is_marked_at_its_line_and_column(tab: Page, served: Served) -> None:
    _login(tab, served)
    tab.goto(f"{served.hub_url}/studio/default/logs")
    _run_query(tab, "requests\n| where durration > 1")
    mark = tab.wait_for_selector("#kql-error-mark")
    assert (mark.get_attribute("data-line"), mark.get_attribute("data-column")) == ("2", "9")
    assert mark.inner_text() == "durration"
    message = tab.locator("#logs-error").inner_text()
    assert "unknown column 'durration' (did you mean 'duration'?) (line 2, column 9)" in message
    assert "| where durration > 1\n        ^^^^^^^^^" in message
    tab.screenshot_as("logs-error")
    assert tab.errors == []


@pytest.mark.slow
def test_render_timechart_draws_a_chart_and_results_page(tab: Page, served: Served) -> None:
    _login(tab, served)
    tab.goto(f"{served.hub_url}/studio/default/logs")
    _run_query(tab, "requests | summarize count() by bin(timestamp, 1m), resultCode | render timechart")
    tab.wait_for_selector("#logs-chart-timechart canvas")
    assert tab.evaluate(DRAWN, "#logs-chart-timechart canvas") == 1
    assert tab.locator("#logs-table th").all_inner_texts() == ["timestamp", "resultCode", "count_"]
    _run_query(tab, "requests | mv-expand n = dynamic([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) | project name, n")
    tab.wait_for_selector("#page-info")  # more than a page of rows: paged
    assert tab.locator("#logs-table tbody tr").count() == 50
    tab.click("#page-next")
    assert tab.locator("#page-info").inner_text().startswith("page 2 of")
    _run_query(tab, "requests | summarize count() by resultCode | render piechart")
    tab.wait_for_selector("#logs-chart-piechart canvas")
    assert tab.evaluate(DRAWN, "#logs-chart-piechart canvas") == 1
    assert tab.locator("#history option").count() == 4  # "History" and the three queries
    assert tab.errors == []


@pytest.mark.slow
def test_a_script_printed_by_score_py_is_shown_as_text_and_not_run(tab: Page, served: Served) -> None:
    _login(tab, served)
    operation = served.operations["req-5"]
    tab.goto(f"{served.hub_url}/studio/default/transaction/{operation}")
    assert tab.locator("li.printed pre.printed").first.inner_text() == XSS
    tab.goto(f"{served.hub_url}/studio/default/search?q=__pwned")
    assert XSS in tab.locator("#search-results").inner_text()
    # The count over time comes after the page, from its own endpoint, and is drawn.
    status = tab.locator('[data-deferred-status="timeline"]')
    status.filter(has_text=re.compile(r"^\d+ match(es)? · [\d.]+ ms$")).wait_for()
    assert int(status.inner_text().split()[0]) >= 2 and tab.evaluate(DRAWN, "#search-timeline canvas") == 1
    tab.goto(f"{served.hub_url}/studio/default/modeldata?q=__pwned")
    assert "window.__pwned" in tab.locator("#model-data").inner_text()
    tab.goto(f"{served.hub_url}/studio/default/logs")
    _run_query(tab, "traces | where tostring(customDimensions.Contents) contains '__pwned' | project customDimensions")
    tab.wait_for_selector("#logs-table")
    assert "<script>" in tab.locator("#logs-table").inner_text()
    assert tab.evaluate("window.__pwned") is None
    assert tab.locator("#main script:not([type='application/json'])").count() == 0
    assert tab.errors == []


@pytest.mark.slow
def test_a_key_of_one_application_opens_nothing_of_another(tab: Page, served: Served) -> None:
    # Positive control first: the other application's own key opens its page and its blob.
    other = tab.context.request
    blob_path = f"/studio/other/transaction/op-other-1/blob/{served.other_blob}"
    assert other.get(served.hub_url + blob_path, headers={"x-api-key": served.other_key}).status == 200
    # Log in with the default application's key, through the form.
    tab.goto(f"{served.hub_url}/studio/login")
    tab.fill("input[name=api_key]", served.default["api_key"])
    tab.click("button[type=submit]")
    tab.wait_for_url(re.compile(r"/studio/default/overview"))
    assert tab.locator("select[data-navigate] option").all_inner_texts() == ["default"]
    response = tab.goto(f"{served.hub_url}/studio/other/overview")
    assert response is not None and response.status == 403
    assert "does not open an application named 'other'" in tab.locator("#error-message").inner_text()
    for path in ("/studio/other/overview.json", "/studio/other/logs.json?query=requests",
                 "/studio/other/transaction/op-other-1.json", blob_path):
        assert tab.context.request.get(served.hub_url + path).status == 403, path
    # Through its own application's URL the other's operation and blob are not there.
    assert tab.context.request.get(
        f"{served.hub_url}/studio/default/transaction/op-other-1/blob/{served.other_blob}").status == 404
    everything = tab.context.request.get(f"{served.hub_url}/studio/_all/search.json?q={served.other_blob[:12]}")
    assert everything.status == 200 and everything.json()["queries"]["results"]["rows"] == []
    logs = tab.context.request.get(f"{served.hub_url}/studio/_all/logs.json",
                                   params={"query": "requests | where name == 'POST /score' | summarize count() by cloud_RoleName"})
    assert logs.json()["queries"]["result"]["rows"] == [["svc", 8]]
    assert tab.errors == [] or all("403" in e for e in tab.errors)


@pytest.mark.slow
def test_live_metrics_show_a_request_within_a_second(tab: Page, served: Served) -> None:
    _login(tab, served)
    tab.goto(f"{served.hub_url}/studio/default/live")
    tab.wait_for_selector("#live-status.ok")
    total = "+document.querySelector('#live-requests-total').textContent"

    # The service switches to live mode within 250 ms of the lease; the first request shows it did.
    deadline = time.monotonic() + 20
    while tab.evaluate(total) == 0:
        assert time.monotonic() < deadline, "no request reached the live page"
        served.score_get(n="100")
        tab.wait_for_timeout(300)
    before: Any = tab.evaluate(total)
    started = time.monotonic()
    assert served.score_get(n="101", fail="1").status_code == 500
    tab.wait_for_function(f"(before) => {total} > before", arg=before, timeout=1000)
    elapsed = time.monotonic() - started
    print(f"live: {elapsed:.3f}s")
    assert elapsed < 1.0, f"{elapsed:.2f}s from the request to the live page"
    tab.wait_for_selector("#live-feed li.feed-request")  # the failed request in the feed
    tab.wait_for_selector("#live-processes tbody tr")   # and the service process's CPU and memory
    assert "svc-" in tab.locator("#live-processes").inner_text()
    tab.screenshot_as("live")
    assert tab.errors == []

    # Nobody watching: the hub stops its stream, its tap and the services' leases.
    tab.goto(f"{served.hub_url}/studio/default/overview")
    [lease] = (served.home / "services").glob("*.live.json")
    deadline = time.monotonic() + 10
    while tab.context.request.get(f"{served.hub_url}/studio/default/live.json").json()["viewers"] or \
            orjson.loads(lease.read_bytes())["until"] != 0:
        assert time.monotonic() < deadline, "the live stream or the lease outlived its page"
        time.sleep(0.1)
