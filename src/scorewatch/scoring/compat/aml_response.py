"""``azureml.contrib.services.aml_response``: the response a ``@rawhttp`` run() may return."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from werkzeug.wrappers import Response

__all__ = ["AMLResponse"]


class AMLResponse(Response):
    """``AMLResponse(message, status_code, response_headers=None, json_str=False)``, as in Azure.

    With ``json_str=True`` the message is JSON-encoded and sent as ``application/json``; otherwise it is
    sent as given (``str`` or ``bytes``) with Flask's default ``text/html`` type unless the headers say
    otherwise.
    """

    default_mimetype = "text/html"

    def __init__(self, message: Any, status_code: int, response_headers: Mapping[str, str] | None = None,
                 json_str: bool = False) -> None:
        if json_str:
            body = orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
            super().__init__(body, status=status_code, headers=dict(response_headers or {}),
                             mimetype="application/json")
        else:
            super().__init__(message, status=status_code, headers=dict(response_headers or {}))
