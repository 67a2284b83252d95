"""One renderer of error bodies (two shapes), statuses taken from the error classes."""

from __future__ import annotations

import orjson
import pytest
from starlette.exceptions import HTTPException

from scorewatch import errors
from scorewatch.errors import APP_INSIGHTS, AZURE_ML, error_body, for_status
from scorewatch.http import error_response
from scorewatch.kql.errors import KqlError


def test_both_shapes_come_from_the_same_error():
    error = errors.NotFound("no such application", details={"appId": "x"})
    assert error_body(error, AZURE_ML) == {"message": "no such application"}
    assert error_body(error, APP_INSIGHTS) == {"error": {"code": "NotFound", "message": "no such application",
                                                         "appId": "x"}}
    query = KqlError.at("unknown table 'reqests'", "reqests | take 1", 0, 7, kind="SemanticError")
    assert error_body(query, APP_INSIGHTS)["error"]["code"] == "BadArgumentError"
    assert error_body(query, APP_INSIGHTS)["error"]["innererror"]["column"] == 1
    with pytest.raises(ValueError, match="shape"):
        error_body(error, "xml")


def test_a_status_finds_its_class_the_most_general_one():
    assert for_status(400) is errors.BadRequest  # not KqlError, a BadRequest too
    assert for_status(405) is errors.MethodNotAllowed
    assert for_status(504) is errors.Timeout
    assert for_status(500) is errors.ScorewatchError  # ConfigError answers 500 too, but is not the general one
    assert for_status(418) is errors.ScorewatchError  # no class: the root, given the status
    for cls in errors.ScorewatchError.__subclasses__():
        assert for_status(cls.status).status == cls.status


def test_responses_take_status_code_and_body_from_the_error():
    too_many = error_response(errors.TooManyRequests("busy", retry_after=2.4))
    assert too_many.status_code == 429 and too_many.headers["retry-after"] == "2"
    assert orjson.loads(too_many.body) == {"error": {"code": "TooManyRequests", "message": "busy"}}
    routing = error_response(HTTPException(405, "Method Not Allowed", headers={"Allow": "GET"}), AZURE_ML)
    assert routing.status_code == 405 and routing.headers["allow"] == "GET"
    assert orjson.loads(routing.body) == {"message": "Method Not Allowed"}
    defect = error_response(RuntimeError("a bug"))
    assert defect.status_code == 500
    assert orjson.loads(defect.body) == {"error": {"code": "InternalError", "message": "internal server error"}}
