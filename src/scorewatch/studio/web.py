"""The studio's HTTP plumbing: templates, security headers, bounded form bodies.

Templates are Jinja2 with autoescaping always on: every value from telemetry (printed text,
``customDimensions``, operation names...) comes from clients the hub does not control, so it is
escaped wherever it is shown, and no template marks telemetry ``|safe``. JSON embedded in a page
goes through ``|tojson``, which escapes ``<``, ``>``, ``&`` and ``'`` (no ``</script>`` can end its
element). Every response also carries a Content-Security-Policy that allows only the studio's own
scripts, so even a value that escaped escaping could not run.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scorewatch.errors import PayloadTooLarge

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
MAX_FORM = 64 * 1024

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # no-referrer would make form posts say "Origin: null"
}


class SecurityHeaders:
    """ASGI middleware: the headers above on every studio response; pages and data are not cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/studio/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if not static:
                    headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def when(value: Any) -> str:
    """An ISO time from a result (``2024-05-01T10:00:00.123456Z``) as the studio shows it."""
    if not isinstance(value, str) or "T" not in value:
        return "" if value is None else str(value)
    return value.replace("T", " ").removesuffix("Z")[:23]


def number(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def show(value: Any) -> str:
    """A cell: dynamic values as compact JSON, the rest as text (escaped by the template)."""
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if value is None:
        return ""
    return str(value)


def pretty(value: Any) -> str:
    """A dynamic value as indented JSON (for the details pane)."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, number=number, show=show, pretty=pretty)
    env.globals["urlencode"] = lambda params: urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return env


async def read_form(request: Request, limit: int = MAX_FORM) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body of at most ``limit`` bytes (first value per name)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the form is larger than {limit} bytes")
    values = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: items[0] for name, items in values.items()}


def json_bytes(data: Mapping[str, Any]) -> bytes:
    return orjson.dumps(data, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError
