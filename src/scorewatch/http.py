"""How every scorewatch server turns an error into a response: one place, JSON, never a traceback."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scorewatch.errors import APP_INSIGHTS, ScorewatchError, TooManyRequests, error_body, for_status

log = logging.getLogger("scorewatch.http")


def as_error(exc: BaseException) -> ScorewatchError:
    """``exc`` as the error a user is told about: ours as it is, Starlette's by its status, anything
    else (a defect) logged with its traceback and told as an internal error."""
    if isinstance(exc, ScorewatchError):
        return exc
    if isinstance(exc, HTTPException):
        return for_status(exc.status_code)(exc.detail, status=exc.status_code)
    log.error("unhandled error", exc_info=exc)
    return ScorewatchError("internal server error")


def error_headers(error: ScorewatchError) -> dict[str, str]:
    """The headers an error's status asks for."""
    if isinstance(error, TooManyRequests):
        return {"Retry-After": str(max(1, round(error.retry_after)))}
    return {}


def error_response(exc: BaseException, shape: str = APP_INSIGHTS) -> Response:
    """The JSON response for ``exc`` in ``shape`` (see :func:`scorewatch.errors.error_body`), with its status."""
    error = as_error(exc)
    headers = {**(exc.headers or {}), **error_headers(error)} if isinstance(exc, HTTPException) else error_headers(error)
    return JSONResponse(error_body(error, shape), status_code=error.status, headers=headers)


async def handle_exception(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for ``ScorewatchError``, ``HTTPException`` and ``Exception``."""
    return error_response(exc)


EXCEPTION_HANDLERS = {ScorewatchError: handle_exception, HTTPException: handle_exception,
                      Exception: handle_exception}
