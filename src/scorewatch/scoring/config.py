"""What a scoring worker needs to start, passed from ``scorewatch serve`` to each worker process.

Workers are separate processes (uvicorn spawns them and imports :func:`scorewatch.scoring.app.
create_app_from_env`), so the configuration travels as one small JSON document in the
``SCOREWATCH_SERVE_CONFIG`` environment variable. It holds resolved absolute paths, the final settings
and the key digests (never the keys).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from scorewatch.errors import ConfigError
from scorewatch.settings import Settings

ENV_VAR = "SCOREWATCH_SERVE_CONFIG"


@dataclass
class ServeConfig:
    entry_script: Path                      # absolute
    model_dir: Path | None                  # absolute, or None
    settings: Settings
    key_digests: list[str] = field(default_factory=list)   # empty: authentication off
    app_root: Path | None = None            # AML_APP_ROOT (default: the script's folder)

    @property
    def script_dir(self) -> Path:
        return self.entry_script.parent

    @property
    def service_name(self) -> str:
        return self.settings.service_name or self.script_dir.name

    @property
    def container_id(self) -> str:
        return socket.gethostname()

    def to_json(self) -> str:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self.settings).items()}
        return orjson.dumps({
            "entry_script": str(self.entry_script),
            "model_dir": str(self.model_dir) if self.model_dir else None,
            "app_root": str(self.app_root) if self.app_root else None,
            "settings": settings,
            "key_digests": self.key_digests,
        }).decode()

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        try:
            data: dict[str, Any] = orjson.loads(text)
            fields = {f.name: f for f in dataclasses.fields(Settings)}
            values: dict[str, Any] = {k: Path(v) if isinstance(fields[k].default, Path) else v
                      for k, v in data["settings"].items() if k in fields}
            return cls(entry_script=Path(data["entry_script"]),
                       model_dir=Path(data["model_dir"]) if data.get("model_dir") else None,
                       settings=Settings(**values), key_digests=list(data.get("key_digests") or []),
                       app_root=Path(data["app_root"]) if data.get("app_root") else None)
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(f"{ENV_VAR} is not a valid scoring configuration: {exc}") from None

    @classmethod
    def from_environ(cls) -> ServeConfig:
        text = os.environ.get(ENV_VAR)
        if not text:
            raise ConfigError(f"{ENV_VAR} is not set; start workers with `scorewatch serve`")
        return cls.from_json(text)

    def prepare_process(self) -> None:
        """Make this process look like Azure's scoring container: the script's folder is the working
        directory and first on ``sys.path``, and the Azure environment variables are set."""
        import sys

        os.chdir(self.script_dir)
        if str(self.script_dir) not in sys.path:
            sys.path.insert(0, str(self.script_dir))
        if self.model_dir is not None:
            os.environ["AZUREML_MODEL_DIR"] = str(self.model_dir)
        os.environ["AML_APP_ROOT"] = str(self.app_root or self.script_dir)
        os.environ["AZUREML_ENTRY_SCRIPT"] = str(self.entry_script)
        os.environ["SERVICE_NAME"] = self.service_name
        os.environ["WORKSPACE_NAME"] = self.settings.workspace_name
