"""What telemetry is told about where it runs: the service (:class:`ServiceInfo`), and the operation
(request) that code is running for, carried by a ContextVar.

The scoring service sets the operation for each request before calling ``run()``; ``print`` and
logging capture, dependency tracking and exception records read it. Threads started with
``contextvars.copy_context`` (as ``asyncio.to_thread`` and Starlette's threadpool do) see the request
they serve.
"""

from __future__ import annotations

import secrets
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class ServiceInfo:
    """What a monitor needs to know about the service it watches (the scoring app makes it)."""

    service_name: str
    workspace_name: str
    entry_script: str
    model_dir: str | None
    container_id: str
    models: list[str] = field(default_factory=list)  # "name:version" from the model dir layout


@dataclass(frozen=True)
class Operation:
    """W3C trace context of one request: ``operation_Id`` is the trace id, ``parent_id`` the span id
    of the request itself (the parent of everything recorded inside it)."""

    operation_id: str
    parent_id: str
    name: str = ""
    request_id: str = ""
    client_request_id: str = ""
    sampled: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    def traceparent(self, span_id: str | None = None) -> str:
        flags = "01" if self.sampled else "00"
        return f"00-{self.operation_id}-{span_id or self.parent_id}-{flags}"


current_operation: ContextVar[Operation | None] = ContextVar("scorewatch_operation", default=None)


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def parse_traceparent(value: str | None) -> tuple[str, str, bool] | None:
    """``(trace_id, parent_span_id, sampled)`` from a W3C ``traceparent`` header, or None if invalid."""
    if not value:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    version, trace_id, span_id, flags = parts[:4]
    if version == "00" and len(parts) != 4:
        return None
    if len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2:
        return None
    try:
        int(trace_id, 16), int(span_id, 16), int(flags, 16)
    except ValueError:
        return None
    if set(trace_id) == {"0"} or set(span_id) == {"0"}:
        return None
    return trace_id.lower(), span_id.lower(), bool(int(flags, 16) & 1)
