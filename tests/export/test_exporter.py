"""Exactly once: a round stopped at any write (a crash, an outage, rejected credentials, a full disk)
is finished by the next exporter on the same checkpoint, and every stored row is in the target once.

The stop at an exact write is made by a target that raises there (a process cannot be SIGKILLed at an
exact instruction from outside); the hub's own tests SIGKILL the real process mid-stream
(tests/export/test_hub.py). The full disk is a real tmpfs mounted small, then made larger.
"""

from __future__ import annotations

import errno
import logging
import subprocess
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fsspec
import pytest

from scorewatch.documents import FileDocuments
from scorewatch.export.exporter import Exporter, read_checkpoint
from scorewatch.export.rules import Rule
from scorewatch.export.targets import LocalTarget, Target
from scorewatch.settings import Settings
from scorewatch.store.duckdb import DuckDBStore
from tests.export import readback, telemetry
from tests.export.servers import AZURITE_KEY, Azurite, MotoS3
from tests.export.telemetry import APP_ID, APP_NAME, IKEY


class Stop(BaseException):
    """The process ends here (nothing catches it, as nothing runs after a SIGKILL)."""


class StoppingTarget(LocalTarget):
    """A folder that stops the process at its ``stop_at``-th write, halfway through that write."""

    def __init__(self, url: str, stop_at: int) -> None:
        super().__init__(url, fsspec.filesystem("file"), url.removeprefix("file://"), [])
        self.writes, self.stop_at = 0, stop_at

    def _count(self) -> bool:
        self.writes += 1
        return self.writes == self.stop_at

    def put(self, name: str, data: bytes) -> None:
        if self._count():
            path = self._file(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_name(f".{path.name}.deadbeef.tmp").write_bytes(data[: len(data) // 2])
            raise Stop
        super().put(name, data)

    def append(self, name: str, data: bytes, size: int) -> None:
        if self._count():
            super().append(name, data[: len(data) // 2], size)  # half of it reached the disk
            raise Stop
        super().append(name, data, size)


def rule(url: str, fmt: str, **extra: str) -> Rule:
    return Rule(name="r", app=APP_NAME, app_id=APP_ID, ikey=IKEY, url=url, format=fmt,
                tables=["requests", "traces", "customMetrics"], **{"start": "beginning", **extra})


def fill(store: DuckDBStore) -> None:
    """Rows over two hours and three tables, in several transactions, with another app's between."""
    for hour in ("03", "04"):
        telemetry.write(store, telemetry.envelopes(time=f"2026-01-02T{hour}:30:00Z") * 3)
        telemetry.write(store, telemetry.messages(40, prefix=f"h{hour}-", time=f"2026-01-02T{hour}:10:00Z"))
        telemetry.write(store, telemetry.messages(5), app_id="other-app")


def stored_ids(store: DuckDBStore, tables: list[str], app_id: str = APP_ID) -> Counter[str]:
    ids: Counter[str] = Counter()
    for table in tables:
        ids.update(r[0] for r in store.query(f"SELECT itemId FROM {table} WHERE appId = ?", [app_id]).rows)
    return ids


def exported_ids(root: Path, fmt: str) -> Counter[str]:
    exported = {n: d for n, d in readback.files(fsspec.filesystem("file"), str(root)).items()
                if not n.rsplit("/", 1)[-1].startswith(".")}
    return Counter(readback.item_ids(exported, fmt))


def run_out(exporter: Exporter) -> None:
    while exporter.round():
        pass


@pytest.mark.parametrize("fmt", ["appinsights", "diagnostic", "parquet"])
@pytest.mark.parametrize("stop_at", [1, 2, 4, 7])
def test_a_round_stopped_at_any_write_is_finished_once(store: DuckDBStore, tmp_path: Path, fmt: str,
                                                       stop_at: int) -> None:
    fill(store)
    url, state = f"file://{tmp_path}/out", FileDocuments(tmp_path / "state")
    r = rule(url, fmt)
    first = Exporter(store, r, StoppingTarget(url, stop_at), state, max_items=60)
    with pytest.raises(Stop):
        run_out(first)
    pending = read_checkpoint(state, r.id)
    assert pending is not None and pending.pending is not None  # stopped between its two checkpoints
    second = Exporter(store, r, Target.open(url, Settings()), state, max_items=60)  # the restarted hub
    run_out(second)
    assert exported_ids(tmp_path / "out", fmt) == stored_ids(store, r.tables)
    assert max(stored_ids(store, r.tables).values()) == 1
    assert not list((tmp_path / "out").rglob(".*.tmp"))  # the half-written temporary went with the redo
    assert second.checkpoint.items == sum(stored_ids(store, r.tables).values())
    assert second.checkpoint.position == store.row_position() and second.lag_items() == 0


def test_rows_stored_later_are_exported_by_later_rounds(store: DuckDBStore, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/out"
    exporter = Exporter(store, rule(url, "parquet"), Target.open(url, Settings()), FileDocuments(tmp_path / "s"), max_items=1000)
    run_out(exporter)  # nothing stored yet: nothing written
    assert not exporter.round() and not (tmp_path / "out").exists()
    fill(store)
    assert exporter.lag_items() == sum(stored_ids(store, exporter.rule.tables).values())
    run_out(exporter)
    telemetry.write(store, telemetry.messages(7, prefix="late"))
    assert exporter.lag_items() == 7
    run_out(exporter)
    assert exported_ids(tmp_path / "out", "parquet") == stored_ids(store, exporter.rule.tables)


def test_a_rule_from_now_skips_what_was_stored_before(store: DuckDBStore, tmp_path: Path) -> None:
    fill(store)
    url = f"file://{tmp_path}/out"
    r = rule(url, "appinsights", start="now")
    exporter = Exporter(store, r, Target.open(url, Settings()), FileDocuments(tmp_path / "s"), max_items=1000)
    assert not exporter.round()
    telemetry.write(store, telemetry.messages(3, prefix="new"))
    run_out(exporter)
    assert sorted(exported_ids(tmp_path / "out", "appinsights").values()) == [1, 1, 1]


def test_a_one_shot_export_takes_its_time_range_as_stored_when_it_started(store: DuckDBStore, tmp_path: Path) -> None:
    fill(store)
    url = f"file://{tmp_path}/out"
    r = rule(url, "appinsights", kind="once", since="2026-01-02T04:00:00+00:00", until="2026-01-02T05:00:00+00:00")
    exporter = Exporter(store, r, Target.open(url, Settings()), FileDocuments(tmp_path / "s"), max_items=50)
    telemetry.write(store, telemetry.messages(5, prefix="after-start", time="2026-01-02T04:20:00Z"))
    expected = Counter(row[0] for t in r.tables for row in store.query(
        f"SELECT itemId FROM {t} WHERE appId = ? AND timestamp >= '2026-01-02 04:00' AND timestamp < "
        "'2026-01-02 05:00' AND _position <= ?", [APP_ID, exporter.checkpoint.end]).rows)
    assert exporter.total() == sum(expected.values()) == 3 * 3 + 40
    run_out(exporter)
    assert exporter.done and exported_ids(tmp_path / "out", "appinsights") == expected


def test_a_replaced_store_is_exported_from_its_beginning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url, state = f"file://{tmp_path}/out", FileDocuments(tmp_path / "s")
    r = rule(url, "parquet")
    old = telemetry.open_store(tmp_path / "old.duckdb")
    fill(old)
    run_out(Exporter(old, r, Target.open(url, Settings()), state, max_items=1000))
    old.close()
    new = telemetry.open_store(tmp_path / "new.duckdb")
    telemetry.write(new, telemetry.messages(4, prefix="new"))
    with caplog.at_level(logging.ERROR, "scorewatch.export"):
        exporter = Exporter(new, r, Target.open(url, Settings()), state, max_items=1000)
    assert "the store was replaced" in caplog.text
    run_out(exporter)
    assert exporter.checkpoint.position == new.row_position() == 4
    new.close()


def test_rejected_credentials_then_the_right_ones_export_once(store: DuckDBStore, tmp_path: Path,
                                                              azurite: Azurite) -> None:
    fill(store)
    container = "c" + uuid.uuid4().hex[:12]
    azurite.filesystem().mkdir(container)
    url, state = f"az://{container}/diag", FileDocuments(tmp_path / "state")
    r = rule(url, "diagnostic")
    wrong = Target.open(url, Settings(export_azure_connection_string=azurite.connection_string(AZURITE_KEY[:-4] + "AAA=")))
    exporter = Exporter(store, r, wrong, state, max_items=60)
    for _ in range(2):  # the hub tries again and again
        with pytest.raises(Exception) as info:
            exporter.round()
        assert "credentials were rejected" in wrong.describe(info.value)
    assert exporter.checkpoint.position == -1
    right = Target.open(url, Settings(export_azure_connection_string=azurite.connection_string()))
    run_out(Exporter(store, r, right, state, max_items=60))  # restarted with the right key
    exported = readback.files(azurite.filesystem(), f"{container}/diag")
    assert Counter(readback.item_ids(exported, "diagnostic")) == stored_ids(store, r.tables)


def _mount(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root, as CI has): {result.stderr.decode().strip()}")


def test_a_full_disk_stops_the_export_until_there_is_room(store: DuckDBStore, tmp_path: Path) -> None:
    disk = tmp_path / "small-disk"
    _mount(disk, "160k")
    try:
        telemetry.write(store, telemetry.envelopes() * 150)  # ~1 MB of classic JSON
        url, state = f"file://{disk}/out", FileDocuments(disk / "state")
        r = rule(url, "appinsights")
        exporter = Exporter(store, r, Target.open(url, Settings()), state, max_items=200)
        with pytest.raises(OSError) as info:
            run_out(exporter)
        assert info.value.errno == errno.ENOSPC
        assert not list((disk / "out").rglob(".*.tmp"))  # no partial file left behind
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        run_out(Exporter(store, r, Target.open(url, Settings()), state, max_items=200))  # the next attempts
        assert exported_ids(disk / "out", "appinsights") == stored_ids(store, r.tables)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_retention_keeps_what_a_rule_has_not_exported(store: DuckDBStore, tmp_path: Path) -> None:
    old = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%SZ")
    telemetry.write(store, telemetry.messages(10, time=old))
    url = f"file://{tmp_path}/out"
    exporter = Exporter(store, rule(url, "appinsights"), Target.open(url, Settings()), FileDocuments(tmp_path / "s"), max_items=4)
    exporter.round()  # positions (-1, 3]: rows 1-3 exported
    assert store.apply_retention(APP_ID, 30, keep_after=exporter.checkpoint.position) == 3
    run_out(exporter)
    assert len(exported_ids(tmp_path / "out", "appinsights")) == 10


@pytest.mark.parametrize("fmt", ["appinsights", "diagnostic", "parquet"])
def test_export_to_s3_stopped_mid_round_then_finished_once(store: DuckDBStore, tmp_path: Path, moto_s3: MotoS3,
                                                           fmt: str) -> None:
    fill(store)
    bucket = "b" + uuid.uuid4().hex[:12]
    moto_s3.filesystem().mkdir(bucket)
    url, state = f"s3://{bucket}/{fmt}", FileDocuments(tmp_path / "state")
    settings = Settings(export_s3_endpoint_url=moto_s3.endpoint, export_s3_access_key_id="testing",
                        export_s3_secret_access_key="testing")
    r = rule(url, fmt)
    target = Target.open(url, settings)
    writes = {"n": 0}
    real_put = target.put

    def put_then_stop(name: str, data: bytes) -> None:  # the third write lands, then the process ends
        real_put(name, data)
        writes["n"] += 1
        if writes["n"] == 3:
            raise Stop

    target.put = put_then_stop  # type: ignore[method-assign]
    with pytest.raises(Stop):
        run_out(Exporter(store, r, target, state, max_items=60))
    run_out(Exporter(store, r, Target.open(url, settings), state, max_items=60))
    exported = readback.files(moto_s3.filesystem(), f"{bucket}/{fmt}")
    assert Counter(readback.item_ids(exported, fmt)) == stored_ids(store, r.tables)
