"""Export rules: which application's tables go where, in which format; kept in ``exports.json``.

Like ``apps.json``, the file lives in the workspace (mode 0600), the CLI edits it under a lock whether
or not the hub runs, and the hub re-reads it when it changes. Each rule has a fixed ``id`` that names
its state folder (``<home>/exports/<id>/``: checkpoint and status), so a rule removed and added again
under the same name starts afresh.

A ``once`` rule is a one-shot export (``scorewatch export run``) handed to a running hub: it has a
time range and ends when everything stored in it when it started is exported.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from scorewatch.errors import BadRequest, NotFound
from scorewatch.files import Watch, locked, read_json, write_atomic
from scorewatch.store.schema import TABLES

FORMATS = ("appinsights", "diagnostic", "parquet")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class Rule:
    name: str
    app: str            # application name
    app_id: str
    ikey: str           # the application's instrumentation key (classic export's folder names carry it)
    url: str            # the target, an fsspec URL
    format: str
    tables: list[str]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "active"          # active | paused
    paused_at: str = ""            # when it was paused (ISO, UTC)
    created: str = field(default_factory=lambda: now_iso())
    start: str = "now"             # continuous: export rows stored from "now" on, or from the "beginning"
    kind: str = "continuous"       # continuous | once
    since: str = ""                # once: the time range [since, until) of the rows' timestamps
    until: str = ""
    resource_id: str = ""          # diagnostic: the Azure resource id written into paths and records

    @property
    def active(self) -> bool:
        return self.state == "active"

    def public(self) -> dict[str, Any]:
        return asdict(self)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise BadRequest(f"invalid export rule name {name!r}: use letters, digits, '_', '.', '-'")
    return name


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise BadRequest(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt


def parse_tables(text: str | None) -> list[str]:
    """``requests,traces`` → the table names (all tables when empty), each checked."""
    if not text:
        return list(TABLES)
    tables = [t.strip() for t in text.split(",") if t.strip()]
    for table in tables:
        if table not in TABLES:
            raise BadRequest(f"unknown table {table!r}: use any of {', '.join(TABLES)}")
    return list(dict.fromkeys(tables))


def default_resource_id(app_name: str) -> str:
    """The resource id diagnostic exports carry when the rule names none: an Application Insights
    component named after the application, in a resource group ``scorewatch``."""
    return ("/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/SCOREWATCH/PROVIDERS/"
            f"MICROSOFT.INSIGHTS/COMPONENTS/{app_name.upper()}")


def run_id(app_id: str, since: str, until: str, url: str, fmt: str, tables: list[str]) -> str:
    """The id of a one-shot export: the same command names the same job, so it resumes."""
    key = orjson.dumps([app_id, since, until, url, fmt, tables])
    return "run-" + hashlib.sha256(key).hexdigest()[:12]


class RuleBook:
    """The export rules of one workspace, backed by ``<home>/exports.json``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._watch = Watch(self.path)
        self._rules: dict[str, Rule] = {}

    def refresh(self) -> bool:
        """Re-read the file if it changed since the last read; True when it did."""
        if not self._watch.changed():
            return False
        self._rules = {r.name: r for r in self._load(self._read())}
        return True

    def _read(self) -> dict[str, Any]:
        data = read_json(self.path, {"rules": []})
        return data if isinstance(data, dict) else {"rules": []}

    @staticmethod
    def _load(data: dict[str, Any]) -> list[Rule]:
        known = {f.name for f in fields(Rule)}
        return [Rule(**{k: v for k, v in r.items() if k in known}) for r in data.get("rules", [])]

    def list(self) -> list[Rule]:
        self.refresh()
        return sorted(self._rules.values(), key=lambda r: r.name)

    def get(self, name: str) -> Rule:
        self.refresh()
        try:
            return self._rules[name]
        except KeyError:
            raise NotFound(f"no export rule named {name!r} (see `scorewatch export list`)") from None

    def find(self, name: str) -> Rule | None:
        self.refresh()
        return self._rules.get(name)

    def _write(self, rules: Sequence[Rule]) -> None:
        write_atomic(self.path, orjson.dumps({"rules": [asdict(r) for r in rules]}, option=orjson.OPT_INDENT_2))
        self._watch.forget()
        self.refresh()

    def add(self, rule: Rule) -> Rule:
        check_name(rule.name)
        with locked(self.path):
            rules = self._load(self._read())
            if any(r.name == rule.name for r in rules):
                raise BadRequest(f"export rule {rule.name!r} already exists")
            self._write([*rules, rule])
        return rule

    def update(self, name: str, **changes: Any) -> Rule:
        with locked(self.path):
            rules = self._load(self._read())
            for rule in rules:
                if rule.name == name:
                    for key, value in changes.items():
                        setattr(rule, key, value)
                    self._write(rules)
                    return rule
        raise NotFound(f"no export rule named {name!r} (see `scorewatch export list`)")

    def remove(self, name: str) -> Rule:
        with locked(self.path):
            rules = self._load(self._read())
            kept = [r for r in rules if r.name != name]
            if len(kept) == len(rules):
                raise NotFound(f"no export rule named {name!r} (see `scorewatch export list`)")
            self._write(kept)
        return next(r for r in rules if r.name == name)
