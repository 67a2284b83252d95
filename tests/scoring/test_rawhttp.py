"""@rawhttp entry scripts: AMLRequest in (binary, multipart, JSON, GET, OPTIONS), AMLResponse out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scoring.conftest import SCRIPTS, Served, serving


@pytest.fixture(scope="module")
def svc(module_dir: Path) -> Iterator[Served]:
    with serving(SCRIPTS / "rawhttp" / "score.py", module_dir) as served:
        yield served


def test_binary_body_and_response_status_and_headers(svc: Served) -> None:
    payload = bytes(range(256)) * 4
    r = svc.post(content=payload, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 201
    assert r.content == payload[::-1]
    assert r.headers["x-reversed"] == str(len(payload))
    assert r.headers["x-ms-run-function-failed"] == "False"
    assert r.headers["x-request-id"]


def test_multipart_files_and_form_fields(svc: Served) -> None:
    r = svc.post(files={"image": ("a.png", b"\x89PNG" + b"\x00" * 996, "image/png")}, data={"label": "cat"})
    assert r.status_code == 200, r.text
    assert r.json() == {"files": {"image": 1000}, "form": {"label": "cat"}}


def test_json_body_and_a_json_str_response_with_an_error_status(svc: Served) -> None:
    assert svc.post({"a": 1}).json() == {"echo": {"a": 1}}
    r = svc.post({"teapot": True})
    assert r.status_code == 418
    assert r.json() == {"error": "short and stout"}
    assert r.headers["content-type"] == "application/json"


def test_get_sees_query_arguments_and_path(svc: Served) -> None:
    r = svc.client.get("/score", params={"q": "1"})
    assert r.json() == {"args": {"q": "1"}, "path": "/score?q=1"}
    assert r.headers["content-type"] == "application/json"


def test_options_reaches_a_rawhttp_run(svc: Served) -> None:
    r = svc.client.options("/score")
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "*"


def test_plain_text_response(svc: Served) -> None:
    r = svc.post(content=b"hi", headers={"content-type": "text/plain"})
    assert (r.status_code, r.text) == (400, "unsupported")
