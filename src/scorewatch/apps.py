"""Applications and their keys: the hub's tenants.

An application has a ``name``, an ``app_id`` (rows carry it; the query API scopes by it), an
instrumentation key (ingest accepts items carrying it) and API keys (the query API asks for one).
They are the document ``apps`` (:mod:`scorewatch.documents`): ``apps.json`` in the workspace (mode
0600), not in the store, since DuckDB lets only the hub's process open its file and ``scorewatch app
...`` must work whether or not the hub runs; or, with hub replicas on a shared ClickHouse, a document
in that server. Every change is an atomic edit of the current value; the hub re-reads it when it
changes.

API keys are kept as sha256 digests only and compared with :func:`hmac.compare_digest`; a new one is
shown once, when it is made. Instrumentation keys are not secret in Application Insights (they ship in
browser pages) but are still never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from scorewatch.documents import CachedDocument, Documents, FileDocuments, documents_for
from scorewatch.errors import BadRequest, Forbidden, NotFound, Unauthorized
from scorewatch.settings import Settings
from scorewatch.workspace import Workspace

if TYPE_CHECKING:
    from scorewatch.store.base import Store

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class Application:
    name: str
    app_id: str
    instrumentation_key: str
    retention_days: int
    api_key_hashes: list[str] = field(default_factory=list)
    created: str = ""

    def connection_string(self, hub_url: str) -> str:
        """The Application Insights connection string SDKs use to send here."""
        return f"InstrumentationKey={self.instrumentation_key};IngestionEndpoint={hub_url.rstrip('/')}"

    def public(self, hub_url: str) -> dict[str, Any]:
        """What ``app list``/``app keys`` show (no API key digests)."""
        return {"name": self.name, "app_id": self.app_id, "instrumentation_key": self.instrumentation_key,
                "connection_string": self.connection_string(hub_url), "retention_days": self.retention_days,
                "api_keys": len(self.api_key_hashes), "created": self.created}


def _digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    return "swk_" + secrets.token_urlsafe(32)


class Registry:
    """The applications of one workspace: the document ``apps`` of ``documents`` (or the JSON file
    ``documents`` names, such as ``<home>/apps.json``)."""

    def __init__(self, documents: Documents | str | os.PathLike[str], *, key: str = "apps",
                 default_retention_days: int = 90) -> None:
        if isinstance(documents, (str, os.PathLike)):
            documents, key = FileDocuments.of_file(documents)
        self.documents, self.key = documents, key
        self._document = CachedDocument(documents, key, lambda data: self._load(_apps(data)))
        self._forced = 0.0
        self.default_retention_days = default_retention_days
        self._apps: dict[str, Application] = {}
        self._by_ikey: dict[str, Application] = {}
        self._by_id: dict[str, Application] = {}

    # -- reading (cached; cheap enough for every ingest request) -----------------------------------

    def refresh(self) -> bool:
        """Read the applications again if they changed since the last read; True when they did."""
        return self._document.refresh()

    def _load(self, data: dict[str, Any]) -> None:
        apps = [Application(**a) for a in data.get("apps", [])]
        self._apps = {a.name: a for a in apps}
        self._by_ikey = {a.instrumentation_key: a for a in apps}
        self._by_id = {a.app_id: a for a in apps}

    def by_instrumentation_key(self, ikey: str | None) -> Application | None:
        """The application owning ``ikey``; reads the applications again if the key is not known yet."""
        if not ikey:
            return None
        app = self._by_ikey.get(ikey)
        if app is None and (self.refresh() or (self._read_again() and self.refresh())):
            app = self._by_ikey.get(ikey)
        return app

    def list(self) -> list[Application]:
        self.refresh()
        return sorted(self._apps.values(), key=lambda a: a.name)

    def get(self, name: str) -> Application:
        self.refresh()
        try:
            return self._apps[name]
        except KeyError:
            raise NotFound(f"no application named {name!r} (see `scorewatch app list`)") from None

    def authenticate(self, app_id: str, api_key: str | None) -> None:
        """Raise unless ``api_key`` is an API key of application ``app_id``.

        A missing key is 401; a wrong key, or an application that does not exist, is 403 (the answer
        does not tell which, so app ids cannot be probed).
        """
        if not api_key:
            raise Unauthorized("an API key is required (header x-api-key)")
        self.refresh()
        digest = _digest(api_key)
        if not self._valid(app_id, digest) and self._read_again():  # a key made a moment ago elsewhere
            self.refresh()
        if not self._valid(app_id, digest):
            raise Forbidden("the API key is not valid for this application")

    def _valid(self, app_id: str, digest: str) -> bool:
        app = self._by_id.get(app_id)
        hashes = app.api_key_hashes if app is not None else ["0" * 64]
        ok = False
        for known in hashes:
            ok |= hmac.compare_digest(digest, known)
        return app is not None and ok

    def _read_again(self) -> bool:
        """Whether to read the applications again now, past the documents' own caching (shared
        documents are asked at most every second): at most ten times a second, so wrong keys cannot
        turn into a flood of reads."""
        now = time.monotonic()
        if now - self._forced < 0.1:
            return False
        self._forced = now
        self.documents.forget(self.key)
        return True

    # -- writing (locked, atomic) --------------------------------------------------------------------

    def _edit(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``change`` to the applications (it may run again if another writer came first)."""
        def apply(current: Any) -> dict[str, Any]:
            data = _apps(current)
            change(data)
            return data

        self.documents.edit(self.key, apply)
        self._document.reread()  # read it back, as written

    def create(self, name: str, *, retention_days: int | None = None) -> tuple[Application, str]:
        """Make a new application; returns it and its first API key (shown once)."""
        if not _NAME.match(name):
            raise BadRequest(f"invalid application name {name!r}: use letters, digits, '_', '.', '-'")
        days = self.default_retention_days if retention_days is None else _check_days(retention_days)
        api_key = new_api_key()
        app = Application(name=name, app_id=str(uuid.uuid4()), instrumentation_key=str(uuid.uuid4()),
                          retention_days=days, api_key_hashes=[_digest(api_key)],
                          created=datetime.now(UTC).isoformat(timespec="seconds"))

        def add(data: dict[str, Any]) -> None:
            apps = data.setdefault("apps", [])
            if any(a["name"] == name for a in apps):
                raise BadRequest(f"application {name!r} already exists")
            apps.append(asdict(app))

        self._edit(add)
        return app, api_key

    def add_api_key(self, name: str) -> str:
        """Issue another API key for ``name`` (earlier ones keep working); returns it."""
        api_key = new_api_key()
        self._edit(lambda data: self._find(data, name)["api_key_hashes"].append(_digest(api_key)))
        return api_key

    def set_retention(self, name: str, days: int) -> Application:
        days = _check_days(days)
        self._edit(lambda data: self._find(data, name).__setitem__("retention_days", days))
        return self._apps[name]

    def ensure(self, name: str) -> tuple[Application, str | None]:
        """The application ``name``, created if missing (then with its new API key)."""
        self.refresh()
        if name in self._apps:
            return self._apps[name], None
        try:
            return self.create(name)
        except BadRequest:  # created meanwhile by another process
            return self.get(name), None

    @staticmethod
    def _find(data: dict[str, Any], name: str) -> dict[str, Any]:
        for app in data.get("apps", []):
            if app["name"] == name:
                return app
        raise NotFound(f"no application named {name!r} (see `scorewatch app list`)")


def _check_days(days: int) -> int:
    if not isinstance(days, int) or days < 1:
        raise BadRequest(f"retention days must be a whole number >= 1, not {days!r}")
    return days


def _apps(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {"apps": []}


def registry_for(workspace: Workspace, settings: Settings, store: Store | None = None) -> Registry:
    """The registry of ``workspace`` (where :func:`~scorewatch.documents.documents_for` keeps the
    shared state), with the settings' default retention."""
    return Registry(documents_for(workspace, settings, store), default_retention_days=settings.retention_days)
