"""``azureml.contrib.services.aml_request``: the request a ``@rawhttp`` run() receives.

In Azure, ``AMLRequest`` is a Flask (werkzeug) request; ours is a werkzeug ``Request`` built from the
ASGI request with its body already read, so ``get_data()``, ``get_json()``, ``args``, ``form``,
``files`` (multipart), ``headers``, ``method`` and ``full_path`` behave exactly as scripts expect.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from werkzeug.wrappers import Request

__all__ = ["AMLRequest", "rawhttp"]

F = TypeVar("F", bound=Callable[..., Any])

RAWHTTP_ATTR = "_scorewatch_rawhttp"


class AMLRequest(Request):
    """A werkzeug request; ``run(request)`` gets one when decorated with :func:`rawhttp`."""

    @classmethod
    def from_asgi(cls, scope: dict[str, Any], headers: Iterable[tuple[bytes, bytes]], body: bytes) -> AMLRequest:
        server = scope.get("server") or ("127.0.0.1", 80)
        client = scope.get("client") or ("127.0.0.1", 0)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": scope["method"],
            "SCRIPT_NAME": scope.get("root_path", ""),
            "PATH_INFO": scope["path"],
            "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
            "SERVER_NAME": str(server[0]),
            "SERVER_PORT": str(server[1]),
            "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
            "REMOTE_ADDR": str(client[0]),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": scope.get("scheme", "http"),
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        for raw_name, raw_value in headers:
            name = raw_name.decode("latin-1").upper().replace("-", "_")
            value = raw_value.decode("latin-1")
            if name == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            elif name != "CONTENT_LENGTH":
                key = f"HTTP_{name}"
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        return cls(environ)


def rawhttp(func: F) -> F:
    """Mark ``run`` as taking the whole request (an :class:`AMLRequest`) instead of its body."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    setattr(wrapper, RAWHTTP_ATTR, True)
    return wrapper  # type: ignore[return-value]
