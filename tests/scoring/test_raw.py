"""A raw-input entry script (run(raw_data) gets a str), and the headers and routes around /score."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scoring.conftest import SCRIPTS, Served, serving


@pytest.fixture(scope="module")
def svc(module_dir: Path) -> Iterator[Served]:
    with serving(SCRIPTS / "raw" / "score.py", module_dir, "--name", "raw-svc",
                 "--model-dir", str(SCRIPTS / "raw")) as served:
        yield served


def test_body_reaches_run_as_a_string_and_the_result_is_json(svc: Served) -> None:
    r = svc.post({"data": [1, 2, 3]})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"result": [2, 4, 6]}


def test_get_passes_the_query_parameters_as_a_json_string(svc: Served) -> None:
    r = svc.client.get("/score", params=[("echo", "1"), ("b", "x y"), ("l", "[1, 2]"), ("r", "a"), ("r", "b")])
    assert r.status_code == 200
    # As Azure's server: values parsed as JSON where they are JSON, repeated names become lists.
    assert r.json() == {"got": {"echo": 1, "b": "x y", "l": [1, 2], "r": ["a", "b"]}}
    assert svc.post(content=b'[1, 2]').json() == {"got": [1, 2]}


def test_get_passes_the_text_azures_server_passes(svc: Served) -> None:
    # json.dumps of the parsed parameters, Python's default separators (and ASCII escapes), as Azure does
    r = svc.client.get("/score", params=[("raw", "1"), ("q", "[1,2]"), ("s", "é")])
    assert r.json() == {"raw": '{"raw": 1, "q": [1, 2], "s": "\\u00e9"}'}


def test_returned_error_string_is_a_200_json_string(svc: Served) -> None:
    r = svc.post(content=b"{not json")
    assert r.status_code == 200
    assert isinstance(r.json(), str) and r.json()


def test_numpy_return_values_are_encoded(svc: Served) -> None:
    assert svc.post({"action": "numpy"}).json() == [0, 2, 4]


def test_exception_in_run_is_a_500_without_internals_and_the_server_stays_up(svc: Served) -> None:
    r = svc.post({"action": "fail"})
    assert r.status_code == 500
    assert r.headers["x-ms-run-function-failed"] == "True"
    assert "secret internal detail" not in r.text
    assert r.json()["message"].startswith("An unexpected error occurred in scoring script")
    assert svc.post({"data": [1]}).json() == {"result": [2]}
    assert "secret internal detail" in svc.server.output()  # the traceback is in the log


def test_request_headers_parameter_gets_the_headers(svc: Served) -> None:
    headers = svc.post({"action": "headers"}, headers={"X-Custom": "yes"}).json()["headers"]
    assert headers["X-Custom"] == "yes"
    assert headers["Content-Type"] == "application/json"


def test_request_id_is_generated_or_echoed(svc: Served) -> None:
    r = svc.post({"data": []})
    generated = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", generated)
    assert r.headers["x-ms-request-id"] == generated
    assert "x-ms-client-request-id" not in r.headers  # only echoed when the caller sent one
    r = svc.post({"data": []}, headers={"x-request-id": "mine-1", "x-ms-client-request-id": "client-7"})
    assert r.headers["x-request-id"] == "mine-1"
    assert r.headers["x-ms-client-request-id"] == "client-7"
    assert r.headers["x-ms-request-id"] == "client-7"  # Azure's legacy header carries the caller's id
    legacy = svc.post({"data": []}, headers={"x-ms-request-id": "old-style"})
    assert (legacy.headers["x-ms-request-id"], legacy.headers["x-ms-client-request-id"]) == ("old-style", "old-style")
    assert r.headers["x-ms-run-function-failed"] == "False"
    assert float(r.headers["x-ms-run-fn-exec-ms"]) >= 0
    assert r.headers["x-ms-server-version"].startswith("scorewatch/")


def test_request_id_over_100_characters_is_431(svc: Served) -> None:
    assert svc.post({"data": []}, headers={"x-request-id": "x" * 100}).status_code == 200
    r = svc.post({"data": []}, headers={"x-request-id": "x" * 101})
    assert r.status_code == 431
    assert "100" in r.json()["message"]
    assert svc.post({"data": []}, headers={"x-ms-client-request-id": "y" * 101}).status_code == 431


def test_traceparent_is_the_operation_inside_run(svc: Served) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = svc.post({"action": "operation"}, headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01",
                                                   "x-request-id": "op-1"})
    assert r.json() == {"operation_id": trace, "request_id": "op-1"}
    fresh = svc.post({"action": "operation"}).json()["operation_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh) and fresh != trace
    assert svc.post({"action": "operation"}, headers={"traceparent": "garbage"}).json()["operation_id"] != "garbage"


def test_non_utf8_body_is_400(svc: Served) -> None:
    r = svc.post(content=b"\xff\xfe\x00bad", headers={"content-type": "text/plain"})
    assert r.status_code == 400
    assert "UTF-8" in r.json()["message"]


def test_script_folder_is_the_working_directory_and_azure_variables_are_set(svc: Served) -> None:
    env = svc.post({"action": "env"}).json()
    assert env["neighbour"] == "next door"
    assert Path(env["cwd"]) == SCRIPTS / "raw"
    assert Path(env["AZUREML_MODEL_DIR"]) == SCRIPTS / "raw"
    assert env["SERVICE_NAME"] == "raw-svc"


def test_routes_health_and_errors(svc: Served) -> None:
    root = svc.client.get("/")
    assert (root.status_code, root.text) == (200, "Healthy")
    assert svc.client.get("/health/live").status_code == 200
    assert svc.client.get("/health/ready").json()["status"] == "ready"
    missing = svc.client.get("/nope")
    assert (missing.status_code, missing.json()) == (404, {"message": "Not Found"})
    wrong = svc.client.put("/score", content=b"{}")
    assert wrong.status_code == 405
    assert "message" in wrong.json()
    assert svc.client.delete("/").status_code == 405
    options = svc.client.options("/score")
    assert options.status_code == 200
    assert "POST" in options.headers["allow"]


def test_metrics_count_requests_by_status(svc: Served) -> None:
    svc.post({"action": "fail"})
    text = svc.client.get("/metrics").text
    assert re.search(r'scorewatch_requests_total\{pid="\d+",code="500"\} [1-9]', text)
    assert re.search(r'scorewatch_run_failures_total\{pid="\d+"\} [1-9]', text)
    assert "scorewatch_request_duration_seconds_bucket" in text
