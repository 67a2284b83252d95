"""The workspace: one directory holding everything scorewatch keeps on disk.

Found the way git finds its repository (:func:`discover`): ``SCOREWATCH_HOME`` when set, else the
nearest ``.scorewatch`` in the current directory or one of its parents, else ``./.scorewatch``, which
only commands that create (``hub``, ``up``, ``app create``, a monitored ``serve``) create.

Layout::

    config.json      workspace id, hub address and the default application's keys (mode 0600)
    store/           the embedded store (DuckDB) and its write-ahead files, written only by the hub
    spool/           telemetry batches waiting for an unreachable receiver
    blobs/           content-addressed payloads too large to keep inline (sha256/ab/cd/<digest>)
    models/          registered models: <name>/<version>/ (the files) and <name>/<version>.json
    deployments/     one folder per deployed service: its record, keys, app snapshots, consoles
    computes/        compute targets' records
    training/        models `scorewatch up` trained, before they are registered
    services/        running scoring services' telemetry state, control keys, exporter counters, live leases
    studio/tokens/   the studio's one-time login tokens, as their digests
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import orjson

from scorewatch.errors import ConfigError

DIRNAME = ".scorewatch"
HOME_HELP = ("Workspace directory (default: SCOREWATCH_HOME, else the nearest .scorewatch in the current "
             "directory or its parents, else ./.scorewatch).")


def discover(cwd: str | os.PathLike[str] | None = None) -> Path:
    """The workspace directory when ``SCOREWATCH_HOME`` is not set: the nearest ``.scorewatch`` in
    ``cwd`` (default: the current directory) or its parents, else ``cwd/.scorewatch``."""
    start = Path(cwd if cwd is not None else os.getcwd()).resolve()
    for directory in (start, *start.parents):
        if (directory / DIRNAME).is_dir():
            return directory / DIRNAME
    return start / DIRNAME


class Workspace:
    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home).resolve()

    @property
    def config_path(self) -> Path:
        return self.home / "config.json"

    @property
    def store_dir(self) -> Path:
        return self.home / "store"

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    @property
    def blobs_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def services_dir(self) -> Path:
        return self.home / "services"

    def require(self) -> Workspace:
        """Self, when the workspace exists; else a ConfigError that says where it was looked for."""
        if self.home.is_dir():
            return self
        start = "start one with `scorewatch up` or `scorewatch hub`"
        if os.environ.get("SCOREWATCH_HOME"):
            raise ConfigError(f"no scorewatch workspace at {self.home} (SCOREWATCH_HOME); {start} with it set")
        raise ConfigError(f"no scorewatch workspace at {self.home}: SCOREWATCH_HOME is not set and there is no "
                          f"{DIRNAME} in {self.home.parent} or its parents; {start} there, or set SCOREWATCH_HOME")

    def identity(self) -> str:
        """This workspace's id (kept in ``config.json``; made on first use). A hub reports it on
        ``/health``, so a client can tell its own workspace's hub from another's."""
        config = self.read_config()
        if not config.get("workspace_id"):
            config = self.update_config(workspace_id=uuid.uuid4().hex)
        return str(config["workspace_id"])

    def ensure(self) -> Workspace:
        """Create the workspace directories (idempotent, mode 0700: telemetry is private); returns self."""
        for path in (self.home, self.store_dir, self.spool_dir, self.blobs_dir, self.models_dir,
                     self.services_dir):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self

    def read_config(self) -> dict[str, Any]:
        """``config.json`` as a dict; ``{}`` when there is none yet.

        Shape: ``{"workspace_id": "...", "hub_url": "http://127.0.0.1:8400", "default_app": {"name",
        "app_id", "instrumentation_key", "connection_string", "api_key"}}``.
        """
        try:
            data = self.config_path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            config = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{self.config_path} is not valid JSON: {exc}") from None
        if not isinstance(config, dict):
            raise ConfigError(f"{self.config_path} must hold a JSON object")
        return config

    def write_config(self, config: dict[str, Any]) -> None:
        """Write ``config.json`` atomically with mode 0600: it holds keys."""
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(config, option=orjson.OPT_INDENT_2))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.config_path)

    def update_config(self, **changes: Any) -> dict[str, Any]:
        config = self.read_config()
        config.update(changes)
        self.write_config(config)
        return config
