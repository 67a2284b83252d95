"""inference-schema glue: which run() parameters are decorated, decoding them, and swagger documents.

The decorators from the ``inference-schema`` package register swagger fragments by function name and
wrap ``run`` in ``wrapt`` function wrappers whose closures hold each parameter's type. We read both, so
a script's own decorators decide how its input is decoded and documented; nothing is copied from the
package.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from inference_schema.schema_decorators import _deserialize_input_argument
from inference_schema.schema_util import get_input_schema, get_output_schema, get_supported_versions

from scorewatch import __version__
from scorewatch.errors import BadRequest


@dataclass(frozen=True)
class Parameter:
    """One ``@input_schema`` parameter: its name, inference-schema type and whether it may be absent."""

    name: str
    param_type: Any
    optional: bool


def decorated_parameters(run: Any) -> dict[str, Parameter]:
    """The ``@input_schema`` parameters of ``run``, outermost decorator first; ``{}`` if undecorated."""
    found: dict[str, Parameter] = {}
    wrapper = run
    while hasattr(wrapper, "_self_wrapper") and hasattr(wrapper, "__wrapped__"):
        names = inspect.getclosurevars(wrapper._self_wrapper).nonlocals
        if "param_name" in names and "param_type" in names:
            found.setdefault(names["param_name"], Parameter(names["param_name"], names["param_type"],
                                                            bool(names.get("optional", False))))
        wrapper = wrapper.__wrapped__
    return found


def decode(parameter: Parameter, value: Any) -> Any:
    """``value`` (parsed JSON) converted to the parameter's type, the way the decorator would.

    We convert before calling ``run`` so a bad value is a 400 naming the parameter, not an exception
    from inside the user's function; the decorator then sees the right type and passes it through.
    """
    try:
        return _deserialize_input_argument(value, parameter.param_type, parameter.name)
    except Exception as exc:  # inference-schema raises bare Exception, ValueError, TypeError, ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadRequest(f"parameter {parameter.name!r} could not be decoded: {reason}",
                         details={"parameter": parameter.name}) from None


# --- swagger --------------------------------------------------------------------------------------

_HEALTH = {
    "operationId": "ServiceHealthCheck",
    "description": "Simple health check endpoint to ensure the service is up at any given point.",
}
_SCORE = {"operationId": "RunMLService",
          "description": "Run web service's model and get the prediction output"}
_ERROR = {"type": "object", "properties": {"status_code": {"type": "integer", "format": "int32"},
                                           "message": {"type": "string"}}}


def _schemas(run: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if run is None or not decorated_parameters(run) and get_output_schema(run) == {"type": "object"}:
        return {"type": "object"}, {"type": "object"}
    inp, out = copy.deepcopy(get_input_schema(run)), copy.deepcopy(get_output_schema(run))
    # inference-schema lists every argument of run(); request_headers is not part of the payload.
    inp.get("properties", {}).pop("request_headers", None)
    inp.get("example", {}).pop("request_headers", None)
    return inp, out


def swagger(run: Any, version: str, *, service_name: str, script_dir: Path | None, auth: bool) -> bytes:
    """The swagger document: a user's ``swagger2.json``/``swagger3.json`` beside the script, or one
    generated from the schema decorators (``{"type": "object"}`` for undecorated scripts)."""
    if version not in ("2", "3"):
        raise BadRequest(f"swagger version {version!r} is not supported; use 2 or 3")
    if script_dir is not None:
        user_file = script_dir / f"swagger{version}.json"
        if user_file.is_file():
            return user_file.read_bytes()
    inp, out = _schemas(run)
    title = service_name or "ML service"
    info = {"title": title, "version": __version__,
            "description": f"API specification for the scoring service {title}"}
    bearer = {"type": "apiKey", "name": "Authorization", "in": "header",
              "description": "For example: Bearer abc123"}
    security: list[dict[str, list[str]]] = [{"Bearer": []}] if auth else []
    if version == "2":
        ref = "#/definitions/"
        doc: dict[str, Any] = {
            "swagger": "2.0", "info": info, "schemes": ["http"],
            "consumes": ["application/json"], "produces": ["application/json"],
            "securityDefinitions": {"Bearer": bearer},
            "paths": {
                "/": {"get": {**_HEALTH, "responses": {
                    "200": {"description": "The service is up: the body is 'Healthy'.",
                            "schema": {"type": "string"}, "examples": {"application/json": "Healthy"}},
                    "default": {"description": "The service failed.", "schema": {"$ref": ref + "ErrorResponse"}}}}},
                "/score": {"post": {**_SCORE, "security": security, "parameters": [{
                    "name": "serviceInputPayload", "in": "body",
                    "description": "The input payload for executing the real-time machine learning service.",
                    "schema": {"$ref": ref + "ServiceInput"}}],
                    "responses": {
                        "200": {"description": "The prediction.", "schema": {"$ref": ref + "ServiceOutput"}},
                        "default": {"description": "The service failed to execute due to an error.",
                                    "schema": {"$ref": ref + "ErrorResponse"}}}}},
            },
            "definitions": {"ServiceInput": inp, "ServiceOutput": out, "ErrorResponse": _ERROR},
        }
    else:
        ref = "#/components/schemas/"
        versions = get_supported_versions(run) if run is not None else ["3.0"]
        doc = {
            "openapi": "3.1.0" if versions == ["3.1"] else "3.0.1", "info": info,
            "paths": {
                "/": {"get": {**_HEALTH, "responses": {
                    "200": {"description": "The service is up: the body is 'Healthy'.",
                            "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
                "/score": {"post": {**_SCORE, "security": security,
                                    "requestBody": {"content": {"application/json": {
                                        "schema": {"$ref": ref + "ServiceInput"}}}},
                                    "responses": {
                                        "200": {"description": "The prediction.", "content": {
                                            "application/json": {"schema": {"$ref": ref + "ServiceOutput"}}}},
                                        "default": {"description": "The service failed to execute due to an error.",
                                                    "content": {"application/json": {
                                                        "schema": {"$ref": ref + "ErrorResponse"}}}}}}},
            },
            "components": {"securitySchemes": {"Bearer": {"type": "http", "scheme": "bearer"}},
                           "schemas": {"ServiceInput": inp, "ServiceOutput": out, "ErrorResponse": _ERROR}},
        }
    return orjson.dumps(doc)
