"""How every scorewatch server turns an error into a response: one place, JSON, never a traceback."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scorewatch.errors import ScorewatchError, TooManyRequests

log = logging.getLogger("scorewatch.http")


def error_response(exc: BaseException) -> Response:
    """The JSON response for ``exc``: ``{"error": {"code", "message", ...}}`` with its status."""
    if isinstance(exc, ScorewatchError):
        headers = {}
        if isinstance(exc, TooManyRequests):
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.status, headers=headers)
    if isinstance(exc, HTTPException):
        return JSONResponse({"error": {"code": _code_for(exc.status_code), "message": exc.detail}},
                            status_code=exc.status_code, headers=exc.headers)
    log.error("unhandled error", exc_info=exc)
    return JSONResponse({"error": {"code": "InternalError", "message": "internal server error"}},
                        status_code=500)


async def handle_exception(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for ``ScorewatchError``, ``HTTPException`` and ``Exception``."""
    return error_response(exc)


EXCEPTION_HANDLERS = {ScorewatchError: handle_exception, HTTPException: handle_exception,
                      Exception: handle_exception}


def _code_for(status: int) -> str:
    return {400: "BadArgument", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            405: "MethodNotAllowed", 413: "PayloadTooLarge", 415: "UnsupportedMediaType",
            429: "TooManyRequests"}.get(status, "Error")
