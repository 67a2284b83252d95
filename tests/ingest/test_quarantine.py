"""``scorewatch quarantine list|replay|drop``: what the store refused, seen and sent again."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from scorewatch.apps import Application
from scorewatch.ingest.cli import quarantine
from scorewatch.ingest.quarantine import Quarantine
from scorewatch.ingest.records import Record
from tests.ingest.conftest import running_hub


def _quarantined(home: Path, ikey: str, app: Application, messages: list[str]) -> str:
    lines = [orjson.dumps({"iKey": ikey, "time": "2026-01-01T00:00:00Z",
                           "data": {"baseType": "MessageData", "baseData": {"message": m}}}) for m in messages]
    record = Record.of(7, lines, ["MessageData"] * len(lines), [app] * len(lines))
    return Quarantine(home / "quarantine").put(record, 0, "Conversion Error: something the store refused")


def test_list_replay_and_drop(tmp_path: Path) -> None:
    with running_hub(tmp_path / "ws") as hub:
        app = hub.hub.registry.by_instrumentation_key(hub.ikey)
        assert app is not None
        replayed = _quarantined(hub.workspace.home, hub.ikey, app, ["q1", "q2"])
        runner = CliRunner()
        listed = runner.invoke(quarantine, ["list", "--home", str(hub.workspace.home), "--json"])
        assert listed.exit_code == 0, listed.output
        entry, = orjson.loads(listed.output)
        assert (entry["id"], entry["items"], entry["apps"]) == (replayed, 2, ["default"])
        assert "something the store refused" in entry["error"]

        result = runner.invoke(quarantine, ["replay", replayed, "--home", str(hub.workspace.home),
                                            "--hub-url", hub.url])
        assert result.exit_code == 0, result.output
        assert "2 items stored, 0 refused" in result.output
        assert hub.rows("SELECT message FROM traces ORDER BY message") == [["q1"], ["q2"]]
        assert Quarantine(hub.workspace.home / "quarantine").entries() == []

        # An item the hub refuses on replay (its key is gone) stays; drop removes it for good.
        stranger = Application("gone", "id-gone", "key-gone", 90)
        kept = _quarantined(hub.workspace.home, "key-gone", stranger, ["lost"])
        result = runner.invoke(quarantine, ["replay", "--all", "--home", str(hub.workspace.home),
                                            "--hub-url", hub.url])
        assert result.exit_code != 0  # nothing usable: the entry is kept
        assert "answered 400 (Invalid instrumentation key)" in str(result.exception)
        assert [e.name for e in Quarantine(hub.workspace.home / "quarantine").entries()] == [kept]
        assert runner.invoke(quarantine, ["drop", "--home", str(hub.workspace.home)]).exit_code == 2
        result = runner.invoke(quarantine, ["drop", kept, "--home", str(hub.workspace.home)])
        assert result.exit_code == 0 and Quarantine(hub.workspace.home / "quarantine").entries() == []
        assert runner.invoke(quarantine, ["drop", "nope", "--home", str(hub.workspace.home)]).exit_code != 0
