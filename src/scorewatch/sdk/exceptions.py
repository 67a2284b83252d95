"""Azure ML v1's exceptions (``azureml.exceptions``), as scorewatch's SDK raises them.

Each is also a :class:`~scorewatch.errors.ScorewatchError`, the root of every scorewatch error, and,
as Azure's, carries its text in ``message``: code that matches on Azure's texts
(``'WebserviceNotFound' in e.message``) works unchanged.
"""

from __future__ import annotations

from typing import Any

from scorewatch.errors import ScorewatchError
from scorewatch.scoring.compat.model import ModelNotFoundException

__all__ = ["AzureMLException", "ComputeTargetException", "ModelNotFoundException", "UserErrorException",
           "WebserviceException"]


class AzureMLException(ScorewatchError):
    """The base of Azure ML's exceptions."""

    def __init__(self, exception_message: str, inner_exception: BaseException | None = None, target: Any = None,
                 details: Any = None, message_format: str | None = None, message_parameters: Any = None,
                 reference_code: str | None = None, **kwargs: Any) -> None:
        super().__init__(exception_message, status=kwargs.get("status"), code=kwargs.get("code"))
        self.inner_exception = inner_exception

    def __str__(self) -> str:
        return self.message


class UserErrorException(AzureMLException):
    """An error in what the caller asked for."""

    status = 400
    exit_code = 2
    code = "UserError"


class WebserviceException(AzureMLException):
    """An error about a web service or a model (Azure raises this one for both)."""

    def __init__(self, exception_message: str, status_code: int | None = None, logger: Any = None,
                 **kwargs: Any) -> None:
        status_code = status_code or kwargs.pop("status", None)
        super().__init__(exception_message, status=status_code, **kwargs)
        self.status_code = status_code


class ComputeTargetException(AzureMLException):
    """An error about a compute target."""
