"""Entry scripts with inference-schema decorators: decoding, named parameters, errors, swagger."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scoring.conftest import SCRIPTS, Served, serving


@pytest.fixture(scope="module")
def numpy_svc(module_dir: Path) -> Iterator[Served]:
    with serving(SCRIPTS / "schema_numpy" / "score.py", module_dir) as served:
        yield served


@pytest.fixture(scope="module")
def pandas_svc(module_dir: Path) -> Iterator[Served]:
    with serving(SCRIPTS / "schema_pandas" / "score.py", module_dir) as served:
        yield served


@pytest.fixture(scope="module")
def standard_svc(module_dir: Path) -> Iterator[Served]:
    with serving(SCRIPTS / "schema_standard" / "score.py", module_dir) as served:
        yield served


def test_numpy_parameter_is_decoded_and_output_encoded(numpy_svc: Served) -> None:
    r = numpy_svc.post({"data": [[1.0, 1.0, 1.0], [0.0, 0.0, 2.0]]})
    assert r.status_code == 200, r.text
    assert r.json() == [6.0, 6.0]


def test_missing_parameter_is_400_naming_it(numpy_svc: Served) -> None:
    r = numpy_svc.post({"rows": [[1, 2, 3]]})
    assert r.status_code == 400
    assert "'rows'" in r.json()["message"] or "'data'" in r.json()["message"]
    r = numpy_svc.post({})
    assert r.status_code == 400
    assert "missing parameter 'data'" in r.json()["message"]


def test_undecodable_parameter_is_400_naming_it(numpy_svc: Served) -> None:
    r = numpy_svc.post({"data": "not an array"})
    assert r.status_code == 400
    assert "'data'" in r.json()["message"]
    assert numpy_svc.post({"data": [[1, 2, 3]]}).status_code == 200


def test_body_must_be_a_json_object(numpy_svc: Served) -> None:
    assert numpy_svc.post(content=b"{broken", headers={"content-type": "application/json"}).status_code == 400
    r = numpy_svc.post([[1, 2, 3]])
    assert r.status_code == 400
    assert "JSON object" in r.json()["message"]
    empty = numpy_svc.post(content=b"", headers={"content-type": "application/json"})
    assert empty.status_code == 400 and "empty" in empty.json()["message"]


def test_non_json_content_type_is_415(numpy_svc: Served) -> None:
    r = numpy_svc.post(content=b'{"data": [[1, 2, 3]]}', headers={"content-type": "text/csv"})
    assert r.status_code == 415
    assert numpy_svc.post(content=b'{"data": [[1, 2, 3]]}').status_code == 415  # none given, as Azure
    ok = numpy_svc.post(content=b'{"data": [[1, 2, 3]]}', headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


def test_pandas_parameter_and_a_second_named_parameter(pandas_svc: Served) -> None:
    frame = [{"age": 10, "income": 100.0}, {"age": 20, "income": 100.0}]
    assert pandas_svc.post({"frame": frame}).json() == [10.0, 5.0]
    assert pandas_svc.post({"frame": frame, "scale": 2.0}).json() == [20.0, 10.0]
    # Keys that are not parameters are ignored, as Azure's server does.
    assert pandas_svc.post({"frame": frame, "extra": 1}).json() == [10.0, 5.0]


def test_standard_types_optional_parameter_and_request_headers(standard_svc: Served) -> None:
    r = standard_svc.post({"text": "ab", "count": 3}, headers={"user-agent": "probe/1"})
    assert r.json() == {"out": "ababab", "agent": "probe/1"}
    r = standard_svc.post({"text": "ab", "count": 2, "options": {"upper": True}})
    assert r.json()["out"] == "ABAB"
    assert standard_svc.post({"text": "ab"}).status_code == 400


def test_get_on_a_decorated_run_maps_query_parameters(standard_svc: Served) -> None:
    r = standard_svc.client.get("/score", params={"text": "x", "count": "2"}, headers={"user-agent": "g"})
    assert r.json() == {"out": "xx", "agent": "g"}
    missing = standard_svc.client.get("/score", params={"text": "x"})
    assert missing.status_code == 400 and "'count'" in missing.json()["message"]


def test_swagger_2_and_3_are_generated_from_the_decorators(numpy_svc: Served) -> None:
    v2 = numpy_svc.client.get("/swagger.json").json()
    assert v2["swagger"] == "2.0"
    service_input = v2["definitions"]["ServiceInput"]
    assert service_input["properties"]["data"]["format"] == "numpy.ndarray"
    assert service_input["example"] == {"data": [[0.1, 1.2, 2.3]]}
    assert v2["definitions"]["ServiceOutput"]["format"] == "numpy.ndarray"
    v3 = numpy_svc.client.get("/swagger.json", params={"version": "3"}).json()
    assert v3["openapi"].startswith("3.")
    assert v3["components"]["schemas"]["ServiceInput"] == service_input
    assert numpy_svc.client.get("/swagger.json", params={"version": "9"}).status_code == 400


def test_request_headers_is_not_part_of_the_documented_payload(standard_svc: Served) -> None:
    properties = standard_svc.client.get("/swagger.json").json()["definitions"]["ServiceInput"]["properties"]
    assert set(properties) == {"text", "count", "options"}


def test_user_swagger_file_beside_the_script_wins(module_dir: Path) -> None:
    with serving(SCRIPTS / "swagger_user" / "score.py", module_dir) as svc:
        assert svc.client.get("/swagger.json?version=2").json()["info"]["title"] == "hand written"
        assert svc.client.get("/swagger.json?version=3").json()["openapi"].startswith("3.")  # generated


def test_output_schema_alone_still_maps_json_keys(module_dir: Path) -> None:
    script = module_dir / "output_only" / "score.py"
    script.parent.mkdir()
    script.write_text(
        "from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType\n"
        "from inference_schema.schema_decorators import output_schema\n\n"
        "def init():\n    pass\n\n"
        "@output_schema(StandardPythonParameterType({'n': 1}))\n"
        "def run(numbers):\n    return {'n': sum(numbers)}\n")
    with serving(script, module_dir) as svc:
        assert svc.post({"numbers": [1, 2, 3]}).json() == {"n": 6}
