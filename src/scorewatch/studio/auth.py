"""Who may see what in the studio: one-time login tokens, sessions, and CSRF protection.

- **One-time login tokens**, as Jupyter prints them: ``scorewatch hub``, ``scorewatch up`` and
  ``scorewatch studio`` issue one (:func:`issue_login_token`) and print ``/studio/login?token=...``.
  A token is kept as its sha256 digest in ``<home>/studio/tokens/`` (mode 0600; any process of the
  workspace's owner can issue one, whether the hub runs or not), opens every application of the
  workspace, works once (:func:`consume_login_token` deletes it) and runs out after a day.
- **API keys**: logging in with an application's API key opens that application (every one the key
  opens). Scripts may instead send the key in ``x-api-key`` to any JSON twin, as to the query API.
  Logging in with the workspace's **admin key** (the control API's) opens every application.
- **Administering** deployments (switching their monitoring, showing or regenerating their keys,
  restarting them) is for sessions that hold what the control API asks for: a session from a
  one-time token (whoever can issue one can read the admin key in ``config.json``) or from the admin
  key. A session from an application's API key, a no-login session and an ``x-api-key`` script see
  the Services page but cannot act on it (:attr:`Session.administers`).
- **Sessions** live in the hub's memory (a restarted hub asks for a login again) and are named by a
  random cookie, ``HttpOnly`` and ``SameSite=Strict``; a login always makes a new one.
- **No login from 127.0.0.1**, only when the ``studio_local_no_login`` setting is on: a request from
  the loopback address gets a session that opens every application.
- **CSRF**: every state-changing request (POST) must carry the session's CSRF token (form field
  ``csrf`` or header ``x-csrf-token``) and, when the browser sends one, an ``Origin`` that is the
  hub's own. The login form, before any session, uses a double-submit cookie.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from scorewatch.apps import Registry
from scorewatch.errors import Forbidden, ScorewatchError
from scorewatch.workspace import Workspace

TOKEN_TTL_S = 24 * 3600
SESSION_IDLE_S = 12 * 3600
MAX_SESSIONS = 1000
SESSION_COOKIE = "scorewatch_studio"
LOGIN_CSRF_COOKIE = "scorewatch_studio_login"
CSRF_HEADER = "x-csrf-token"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


# ------------------------------------------------------------------ one-time login tokens
def tokens_dir(workspace: Workspace) -> Path:
    return workspace.home / "studio" / "tokens"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def issue_login_token(workspace: Workspace, *, ttl_s: float = TOKEN_TTL_S) -> str:
    """A new one-time login token for the studio of ``workspace`` (kept only as its digest)."""
    directory = tokens_dir(workspace)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = time.time()
    for old in directory.iterdir():  # forget the ones that ran out
        with contextlib.suppress(OSError, ValueError):
            if float(old.read_text()) < now:
                old.unlink()
    token = secrets.token_urlsafe(32)
    fd = os.open(directory / _digest(token), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(repr(now + ttl_s))
    return token


def consume_login_token(workspace: Workspace, token: str) -> bool:
    """Whether ``token`` is a valid login token; it is used up either way (it works once)."""
    if not _TOKEN.match(token or ""):
        return False
    path = tokens_dir(workspace) / _digest(token)
    try:
        expires = float(path.read_text())
        path.unlink()  # only one of two concurrent logins with the same token gets past this
    except (OSError, ValueError):
        return False
    return time.time() < expires


def login_url(hub_url: str, token: str) -> str:
    return f"{hub_url.rstrip('/')}/studio/login?token={token}"


# ------------------------------------------------------------------ sessions
@dataclass
class Session:
    """One browser's login. ``apps`` is the set of application ids it opens (None: every one)."""

    id: str
    csrf: str
    apps: frozenset[str] | None
    kind: str  # "token", "admin" (the admin key), "key" (an application's API key) or "local"
    seen: float = field(default_factory=time.monotonic)

    @property
    def administers(self) -> bool:
        """Whether it may act on deployments (see the module docstring)."""
        return self.kind in ("token", "admin")

    def app_ids(self, registry: Registry) -> list[str]:
        """The ids of the applications this session opens that exist now."""
        existing = [a.app_id for a in registry.list()]
        return existing if self.apps is None else [a for a in existing if a in self.apps]


class Sessions:
    """The sessions of one hub, in memory: idle ones expire, the oldest go first past ``limit``."""

    def __init__(self, *, idle_s: float = SESSION_IDLE_S, limit: int = MAX_SESSIONS) -> None:
        self.idle_s = idle_s
        self.limit = limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, apps: Collection[str] | None, kind: str) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32),
                          None if apps is None else frozenset(apps), kind)
        self._sessions[session.id] = session
        while len(self._sessions) > self.limit:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.seen > self.idle_s:
            del self._sessions[session_id]
            return None
        session.seen = now
        self._sessions.move_to_end(session_id)
        return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)


def set_session_cookie(response: Response, request: Request, session: Session) -> None:
    response.set_cookie(SESSION_COOKIE, session.id, httponly=True, samesite="strict", path="/studio",
                        secure=request.url.scheme == "https")


def is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def apps_for_key(registry: Registry, api_key: str) -> list[str]:
    """The ids of the applications ``api_key`` opens (each compared in constant time)."""
    opened = []
    for app in registry.list():
        try:
            registry.authenticate(app.app_id, api_key)
        except ScorewatchError:
            continue
        opened.append(app.app_id)
    return opened


# ------------------------------------------------------------------ CSRF
def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin (``Origin``, else ``Referer``)."""
    own = f"{request.url.scheme}://{request.url.netloc}"
    origin = request.headers.get("origin")
    if origin is not None:
        return origin == own
    referer = request.headers.get("referer")
    return referer is None or referer == own or referer.startswith(own + "/")


def check_csrf(request: Request, expected: str, given: str | None) -> None:
    """Raise Forbidden unless ``given`` is the ``expected`` CSRF token and the origin is the hub's own."""
    if not same_origin(request):
        raise Forbidden("cross-origin request refused")
    if not given or not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("missing or wrong CSRF token; reload the page and try again")
