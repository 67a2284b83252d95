"""Key authentication for /score, as Azure's AKS services have it.

Two keys (primary and secondary, so one can be rotated while the other works) are given by setting or
environment variable, read from a keys file, or generated and written to that file (mode 0600) on first
use. Workers receive only the keys' SHA-256 digests and compare digests in constant time, so a key is
never logged, never passed to a worker, and timing says nothing about how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson

from scorewatch.errors import ConfigError


@dataclass(frozen=True)
class Keys:
    primary: str
    secondary: str
    source: str          # "settings", a file path, or "generated:<file path>"

    @property
    def generated(self) -> bool:
        return self.source.startswith("generated:")

    def digests(self) -> list[str]:
        return [digest(self.primary), digest(self.secondary)]


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def resolve_keys(primary: str, secondary: str, keys_file: Path) -> Keys:
    """Keys from settings if given, else from ``keys_file``, else new ones written to ``keys_file``."""
    if primary:
        return Keys(primary, secondary or primary, "settings")
    if keys_file.is_file():
        try:
            data = orjson.loads(keys_file.read_bytes())
            return Keys(str(data["primaryKey"]), str(data["secondaryKey"]), str(keys_file))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"{keys_file} must be JSON with primaryKey and secondaryKey") from None
    keys = Keys(secrets.token_urlsafe(32), secrets.token_urlsafe(32), f"generated:{keys_file}")
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps({"primaryKey": keys.primary, "secondaryKey": keys.secondary}))
    return keys


class KeyChecker:
    """Checks an ``Authorization`` header against the keys' digests in constant time."""

    def __init__(self, digests: list[str]) -> None:
        self._digests = [bytes.fromhex(d) for d in digests]

    def check(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, key = authorization.partition(" ")
        given = hashlib.sha256(key.strip().encode()).digest()
        ok = False
        for expected in self._digests:  # no early exit: every key is compared every time
            ok |= hmac.compare_digest(given, expected)
        return ok and scheme.lower() == "bearer"
