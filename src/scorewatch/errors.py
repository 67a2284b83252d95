"""The one root exception of scorewatch.

Every error a user can cause is a :class:`ScorewatchError` (or a subclass). It knows the HTTP status a
server answers with and the exit code the CLI ends with, so exactly one place in each front end turns
an exception into output: ``scorewatch.http.error_response`` for servers and ``scorewatch.cli.main``
for the command line. :func:`error_body` is the one renderer of an error's JSON body, in either shape
scorewatch answers with; :func:`for_status` is the way back from a status to a class.
"""

from __future__ import annotations

from typing import Any


class ScorewatchError(Exception):
    """Base of every error that reaches a user.

    ``code`` is a short machine-readable name (``"BadArgument"``), ``status`` the HTTP status, and
    ``exit_code`` the CLI exit code. ``details`` is extra JSON-able context (a KQL position, a
    parameter name) returned next to the message.
    """

    status: int = 500
    exit_code: int = 1
    code: str = "InternalError"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = dict(details or {})

    def render(self) -> str:
        """The text the CLI prints (a KQL error adds the query line with a caret under the token)."""
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """``{"code", "message", ...details}``."""
        return {"code": self.code, "message": self.message, **self.details}

    def app_insights_error(self) -> dict[str, Any]:
        """The ``error`` object of Application Insights' error body (see :func:`error_body`)."""
        return self.to_dict()


class BadRequest(ScorewatchError):
    status = 400
    exit_code = 2
    code = "BadArgument"


class Unauthorized(ScorewatchError):
    status = 401
    exit_code = 3
    code = "Unauthorized"


class Forbidden(ScorewatchError):
    status = 403
    exit_code = 3
    code = "Forbidden"


class NotFound(ScorewatchError):
    status = 404
    exit_code = 4
    code = "NotFound"


class MethodNotAllowed(ScorewatchError):
    status = 405
    exit_code = 2
    code = "MethodNotAllowed"


class Conflict(ScorewatchError):
    """The request contradicts the current state (a name already taken, a model still in use)."""

    status = 409
    exit_code = 2
    code = "Conflict"


class PayloadTooLarge(ScorewatchError):
    status = 413
    exit_code = 2
    code = "PayloadTooLarge"


class UnsupportedMediaType(ScorewatchError):
    status = 415
    exit_code = 2
    code = "UnsupportedMediaType"


class TooManyRequests(ScorewatchError):
    """Overload: the caller should retry after ``retry_after`` seconds."""

    status = 429
    exit_code = 5
    code = "TooManyRequests"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServiceUnavailable(TooManyRequests):
    """The server cannot take this now (its disk is full, its store cannot write): retry after
    ``retry_after`` seconds, as after a 429; nothing of the request was kept."""

    status = 503
    code = "ServiceUnavailable"


class HeadersTooLarge(ScorewatchError):
    status = 431
    exit_code = 2
    code = "RequestHeaderFieldsTooLarge"


class Timeout(ScorewatchError):
    status = 504
    exit_code = 6
    code = "Timeout"


class ConfigError(ScorewatchError):
    """The workspace, a setting or an entry script is unusable; the process cannot go on."""

    status = 500
    exit_code = 2
    code = "ConfigError"


# The shapes of an error's JSON body.
AZURE_ML = "azureml"            # Azure ML scoring services: {"message": ...}
APP_INSIGHTS = "appinsights"    # Application Insights' APIs (ingest, query, control): {"error": {"code", "message", ...}}


def error_body(error: ScorewatchError, shape: str = APP_INSIGHTS) -> dict[str, Any]:
    """The JSON body of ``error`` in ``shape`` (:data:`AZURE_ML` or :data:`APP_INSIGHTS`); the status
    to answer with is ``error.status``."""
    if shape == AZURE_ML:
        return {"message": error.message}
    if shape == APP_INSIGHTS:
        return {"error": error.app_insights_error()}
    raise ValueError(f"unknown error shape {shape!r}")


def for_status(status: int) -> type[ScorewatchError]:
    """The error class answered with ``status``: the most general one (``BadRequest`` for 400, not a
    subclass of it), or :class:`ScorewatchError` when no class has that status."""
    classes: list[type[ScorewatchError]] = [ScorewatchError]
    for cls in classes:  # breadth first: grows as it goes
        if cls.status == status:
            return cls
        classes.extend(cls.__subclasses__())
    return ScorewatchError
