"""A client of the hub's control API, for the SDK, the CLI and ``scorewatch up`` (standard library only).

It finds the hub and the admin key in the workspace's ``config.json`` and turns an error answer into
the :class:`~scorewatch.errors.ScorewatchError` of its status, with the hub's message and code.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson

from scorewatch.errors import ConfigError, ScorewatchError, for_status
from scorewatch.workspace import Workspace


class ControlClient:
    def __init__(self, hub_url: str, admin_key: str, *, timeout: float = 120.0) -> None:
        self.hub_url = hub_url.rstrip("/")
        self._auth = f"Bearer {admin_key}"
        self.timeout = timeout

    @classmethod
    def for_workspace(cls, workspace: Workspace) -> ControlClient:
        """The client of ``workspace``'s hub (its address and admin key are in ``config.json``)."""
        config = workspace.require().read_config()
        if not config.get("hub_url") or not config.get("admin_key"):
            raise ConfigError(f"the workspace {workspace.home} has no hub yet: start one with `scorewatch hub` "
                              "(or `scorewatch up`)")
        return cls(config["hub_url"], config["admin_key"])

    def request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        """The JSON answer of ``method path``; raises the error the hub answered with."""
        url = self.hub_url + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode({k: str(v).lower() if isinstance(v, bool) else v
                                                 for k, v in params.items()})
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"authorization": self._auth, "content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - the hub's URL
                return orjson.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _error(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ScorewatchError(f"cannot reach the hub at {self.hub_url}: {getattr(exc, 'reason', exc)} (is "
                                  "`scorewatch hub` or `scorewatch up` running?)", status=503,
                                  code="HubUnreachable") from None


def _error(status: int, raw: bytes) -> ScorewatchError:
    try:
        error = orjson.loads(raw).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {}
    message = error.get("message") or raw.decode(errors="replace")[:500] or f"the hub answered {status}"
    details = {k: v for k, v in error.items() if k not in ("code", "message")}
    return for_status(status)(message, status=status, code=error.get("code"), details=details)
