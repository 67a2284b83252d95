"""Export rules: which application's tables go where, in which format; the document ``exports``.

Like ``apps``, it is a file of the workspace (``exports.json``, mode 0600) or, with hub replicas on
a shared ClickHouse, a document in it (:mod:`scorewatch.documents`); the CLI edits it whether or not
the hub runs, and the hub re-reads it when it changes. Each rule has a fixed ``id`` that names its
state (``exports/<id>/...``: checkpoints and status), so a rule removed and added again under the
same name starts afresh.

A ``once`` rule is a one-shot export (``scorewatch export run``) handed to a running hub: it has a
time range and ends when everything stored in it when it started is exported.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import orjson

from scorewatch.documents import CachedDocument, Documents, FileDocuments
from scorewatch.errors import BadRequest, NotFound
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


Rules = list[Rule]


class RuleBook:
    """The export rules of one workspace: the document ``exports`` of ``documents`` (or the JSON file
    ``documents`` names, such as ``<home>/exports.json``)."""

    def __init__(self, documents: Documents | str | os.PathLike[str], *, key: str = "exports") -> None:
        if isinstance(documents, (str, os.PathLike)):
            documents, key = FileDocuments.of_file(documents)
        self.documents, self.key = documents, key
        self._rules: dict[str, Rule] = {}
        self._document = CachedDocument(documents, key, self._index)

    def _index(self, data: Any) -> None:
        self._rules = {r.name: r for r in self._load(data)}

    def refresh(self) -> bool:
        """Read the rules again if they changed since the last read; True when they did."""
        return self._document.refresh()

    @staticmethod
    def _load(data: Any) -> list[Rule]:
        known = {f.name for f in fields(Rule)}
        rules = data.get("rules", []) if isinstance(data, dict) else []
        return [Rule(**{k: v for k, v in r.items() if k in known}) for r in rules]

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

    def _edit(self, change: Callable[[Rules], Rules]) -> None:
        self.documents.edit(self.key, lambda data: {"rules": [asdict(r) for r in change(self._load(data))]})
        self._document.reread()  # read it back, as written

    def add(self, rule: Rule) -> Rule:
        check_name(rule.name)

        def add(rules: list[Rule]) -> list[Rule]:
            if any(r.name == rule.name for r in rules):
                raise BadRequest(f"export rule {rule.name!r} already exists")
            return [*rules, rule]

        self._edit(add)
        return rule

    def update(self, name: str, **changes: Any) -> Rule:
        updated: list[Rule] = []

        def update(rules: list[Rule]) -> list[Rule]:
            updated.clear()
            for rule in rules:
                if rule.name == name:
                    for key, value in changes.items():
                        setattr(rule, key, value)
                    updated.append(rule)
                    return rules
            raise NotFound(f"no export rule named {name!r} (see `scorewatch export list`)")

        self._edit(update)
        return updated[0]

    def remove(self, name: str) -> Rule:
        removed: list[Rule] = []

        def remove(rules: list[Rule]) -> list[Rule]:
            removed[:] = [r for r in rules if r.name == name]
            if not removed:
                raise NotFound(f"no export rule named {name!r} (see `scorewatch export list`)")
            return [r for r in rules if r.name != name]

        self._edit(remove)
        return removed[0]
