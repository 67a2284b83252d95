"""The studio's pages over HTTP: JSON twins that are the query API's answers, the login, CSRF,
sessions and headers, against the hub and served model of ``conftest.served``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import httpx
import pytest

from scorewatch.studio import queries
from tests.studio.conftest import Served

TWINS = ["overview", "performance", "failures", "search", "modeldata"]


@contextmanager
def _logged_in(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.hub_url, timeout=30) as client:
        response = client.get(f"/studio/login?token={served.token()}")
        assert response.status_code == 303
        yield client


def test_the_hub_prints_a_login_link_that_works_once(served: Served) -> None:
    assert served.hub is not None
    [link] = re.findall(r"studio: (http://\S+/studio/login\?token=\S+)", served.hub.output())
    assert link.startswith(served.hub_url)
    with httpx.Client() as client:
        first = client.get(link)
        assert first.status_code == 303 and first.headers["location"] == "/studio/"
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/studio" in cookie
        again = httpx.get(link)
        assert again.status_code == 403 and "used already" in again.text


@pytest.mark.parametrize("page", TWINS)
def test_each_twin_is_its_kql_answered_as_the_query_api_answers_it(served: Served, page: str) -> None:
    with _logged_in(served) as client:
        data = client.get(f"/studio/default/{page}.json", params={"range": "P1D"}).json()
    assert data["page"] == page and data["filters"]["range"] == "P1D"
    assert "total;dur=" not in str(data)
    for name, result in data["queries"].items():
        assert "error" not in result, (name, result)
        assert result["rows"] == served.query(result["kql"]), name  # the same KQL through /v1/apps/.../query


def test_overview_numbers_are_the_served_model_s(served: Served) -> None:
    with _logged_in(served) as client:
        response = client.get("/studio/default/overview.json")
    assert response.headers["server-timing"].startswith("total;dur=")
    [totals] = [dict(zip([c["name"] for c in r["columns"]], r["rows"][0], strict=True))
                for r in [response.json()["queries"]["requests_total"]]]
    # 8 POST /score, 2 of them failed (and the live metrics test adds GET /score calls)
    requests, failed = served.query("requests | summarize count(), countif(success == false)")[0]
    assert (totals["requests"], totals["failed"]) == (requests, failed) and requests >= 8 and failed >= 2
    assert totals["percentile_duration_50"] <= totals["percentile_duration_95"] <= totals["percentile_duration_99"]


def test_pages_without_a_login_redirect_to_it_and_data_answers_401(served: Served) -> None:
    page = httpx.get(f"{served.hub_url}/studio/default/failures?range=PT1H")
    assert page.status_code == 303
    assert page.headers["location"] == "/studio/login?next=" + quote("/studio/default/failures?range=PT1H", safe="")
    data = httpx.get(f"{served.hub_url}/studio/default/failures.json")
    assert data.status_code == 401 and data.json()["error"]["code"] == "Unauthorized"
    assert httpx.get(f"{served.hub_url}/studio/default/live/stream").status_code == 401


def test_an_api_key_header_reads_the_twins_of_its_application_only(served: Served) -> None:
    key = {"x-api-key": served.default["api_key"]}
    assert httpx.get(f"{served.hub_url}/studio/default/overview.json", headers=key).status_code == 200
    assert httpx.get(f"{served.hub_url}/studio/other/overview.json", headers=key).status_code == 403
    assert httpx.get(f"{served.hub_url}/studio/default/overview.json",
                     headers={"x-api-key": "swk_wrong"}).status_code == 403


def test_logging_in_with_a_key_needs_the_form_s_csrf_token_and_the_hub_s_origin(served: Served) -> None:
    with httpx.Client(base_url=served.hub_url) as client:
        form = client.get("/studio/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        fields = {"api_key": served.default["api_key"], "next": "/studio/default/logs"}
        assert client.post("/studio/login", data=fields).status_code == 403  # no token
        assert client.post("/studio/login", data={**fields, "csrf": token[1]},
                           headers={"origin": "http://evil.example"}).status_code == 403
        wrong_key = client.post("/studio/login", data={**fields, "api_key": "swk_nope", "csrf": token[1]})
        assert wrong_key.status_code == 403 and "opens no application" in wrong_key.text
        ok = client.post("/studio/login", data={**fields, "csrf": token[1]},
                         headers={"origin": served.hub_url})
        assert ok.status_code == 303 and ok.headers["location"] == "/studio/default/logs"
        assert client.get("/studio/default/overview.json").status_code == 200


def test_state_changing_requests_need_the_session_s_csrf_token(served: Served) -> None:
    with _logged_in(served) as client:
        page = client.get("/studio/default/logs")
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
        assert csrf is not None
        query = {"query": "requests | where name == 'POST /score' | count", "range": "P1D"}
        assert client.post("/studio/default/logs.json", json=query).status_code == 403
        assert client.post("/studio/default/logs.json", json=query,
                           headers={"x-csrf-token": "not-it"}).status_code == 403
        ran = client.post("/studio/default/logs.json", json=query, headers={"x-csrf-token": csrf[1]})
        assert ran.status_code == 200 and ran.json()["queries"]["result"]["rows"] == [[8]]
        assert client.post("/studio/logout", data={"csrf": "not-it"}).status_code == 403
        assert client.get("/studio/default/overview.json").status_code == 200  # still logged in
        assert client.post("/studio/logout", data={"csrf": csrf[1]}).status_code == 303
        assert client.get("/studio/default/overview.json").status_code == 401


def test_logs_downloads_and_errors(served: Served) -> None:
    with _logged_in(served) as client:
        csv = client.get("/studio/default/logs.csv", params={"query": "requests | where name == 'POST /score' "
                                                                       "| summarize n = count() by success "
                                                                       "| order by success asc"})
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        assert csv.text == "success,n\nfalse,2\ntrue,6\n"
        data = client.get("/studio/default/logs.json", params={"query": "requests | take 3", "download": "1"})
        assert "attachment" in data.headers["content-disposition"]
        assert len(data.json()["queries"]["result"]["rows"]) == 3
        bad = client.get("/studio/default/logs.json", params={"query": "requests\n| where durration > 1"})
        error = bad.json()["queries"]["result"]["error"]
        assert (error["innererror"]["line"], error["innererror"]["column"]) == (2, 9)
        assert client.get("/studio/default/logs.json").status_code == 400  # no query
        assert client.get("/studio/default/logs.json", params={"query": "requests", "limit": "x"}).status_code == 400


def test_every_studio_response_carries_the_security_headers(served: Served) -> None:
    with _logged_in(served) as client:
        for path in ("/studio/default/overview", "/studio/default/overview.json", "/studio/login",
                     "/studio/static/studio.js", "/studio/nope/overview"):
            response = client.get(path)
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe" not in csp, path
            assert response.headers["x-content-type-options"] == "nosniff"
        assert client.get("/studio/default/overview").headers["cache-control"] == "no-store"
        assert client.get("/studio/static/vendor/uPlot.iife.min.js").status_code == 200


def test_bad_filters_are_clear_errors(served: Served) -> None:
    with _logged_in(served) as client:
        bad_range = client.get("/studio/default/overview.json", params={"range": "yesterday"})
        assert bad_range.status_code == 400 and "ISO 8601" in bad_range.json()["error"]["message"]
        page = client.get("/studio/default/overview", params={"range": "custom", "start": "2024-05-01T00:00"})
        assert page.status_code == 400 and "a custom range needs a start and an end" in page.text
        assert client.get("/studio/default/nowhere").status_code == 404
        long_id = client.get("/studio/default/transaction/" + "x" * 201 + ".json")
        assert long_id.status_code == 400


def test_a_custom_range_and_a_service_filter_narrow_every_query(served: Served) -> None:
    with _logged_in(served) as client:
        empty = client.get("/studio/default/overview.json", params={
            "range": "custom", "start": "2001-01-01T00:00:00", "end": "2001-01-02T00:00:00"}).json()
        assert empty["queries"]["requests_total"]["rows"][0][0] == 0
        assert empty["filters"]["grain"] == "15m"
        other_service = client.get("/studio/default/overview.json", params={"service": "not-svc"}).json()
        assert other_service["queries"]["requests_total"]["rows"][0][0] == 0
        assert 'cloud_RoleName == "not-svc"' in other_service["queries"]["requests_total"]["kql"]
        choices = client.get("/studio/default/filters.json").json()["services"]
        assert [c["cloud_RoleName"] for c in choices] == ["svc"]


def test_the_transaction_twin_lays_out_its_timeline_and_names_its_blob(served: Served) -> None:
    with _logged_in(served) as client:
        with_call = client.get(f"/studio/default/transaction/{served.operations['req-3']}.json").json()
        bars = with_call["timeline"]["bars"]
        assert [b["kind"] for b in bars] == ["request", "dependency"] and bars[1]["depth"] == 1
        assert 0 <= bars[1]["left"] <= 100
        big = client.get(f"/studio/default/transaction/{served.operations['req-8']}.json").json()
        [digest] = big["blobs"]
        blob = client.get(f"/studio/default/transaction/{served.operations['req-8']}/blob/{digest}")
        assert blob.status_code == 200 and len(blob.content) > 70_000 and b'"pad"' in blob.content
        assert "attachment" in blob.headers["content-disposition"]
        elsewhere = client.get(f"/studio/default/transaction/{served.operations['req-3']}/blob/{digest}")
        assert elsewhere.status_code == 404  # a blob is given for an operation whose rows name it


def test_services_page_says_there_are_no_deployments_yet(served: Served) -> None:
    with _logged_in(served) as client:
        assert client.get("/studio/default/services.json").json()["services"] == []
        assert 'id="no-deployments"' in client.get("/studio/default/services").text


def test_partial_updates_answer_the_body_only(served: Served) -> None:
    with _logged_in(served) as client:
        whole = client.get("/studio/default/performance").text
        part = client.get("/studio/default/performance", headers={"x-studio-partial": "1"}).text
    assert whole.startswith("<!doctype html>") and "<head>" not in part and 'id="operations"' in part


def test_open_in_logs_links_carry_each_query(served: Served) -> None:
    with _logged_in(served) as client:
        page = client.get("/studio/default/failures", params={"range": "PT6H"}).text
        data = client.get("/studio/default/failures.json", params={"range": "PT6H"}).json()
    links = re.findall(r'class="open-logs" href="([^"]+)"', page)
    assert len(links) == len(data["queries"])
    expected = "/studio/default/logs?" + httpx.QueryParams({"query": data["queries"]["timeline"]["kql"],
                                                             "range": "PT6H"}).__str__()
    assert expected.replace("&", "&amp;") in links


def test_values_from_the_url_stay_string_literals(served: Served) -> None:
    evil = 'x" or true or name == "'
    with _logged_in(served) as client:
        data = client.get("/studio/default/performance.json", params={"operation": evil}).json()
    assert data["queries"]["samples"]["rows"] == []
    assert queries.kql_string(evil) in data["queries"]["samples"]["kql"]
