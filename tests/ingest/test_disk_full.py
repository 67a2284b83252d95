"""A real full disk: a small tmpfs holds the workspace of a `scorewatch hub` process; it is filled while
two senders post, then freed, then the hub is SIGKILLed. Every item answered 200 is afterwards in the
store or in the quarantine, and none twice; none answered otherwise was stored.

Mounting needs root, as CI runs; where it cannot mount, the test fails and says why (it never passes
without having filled a disk)."""

from __future__ import annotations

import errno
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest

from scorewatch.ingest.quarantine import Quarantine
from tests.ingest.test_hub_process import start_hub, stop_hubs, stored_messages  # noqa: F401 - fixture


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a 48 MiB tmpfs for the full-disk test (it needs root, as CI has): "
                    f"{done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


class Sender(threading.Thread):
    """Posts batches of uniquely named traces until told to stop; remembers what was answered 200."""

    def __init__(self, url: str, ikey: str, name: str) -> None:
        super().__init__(daemon=True)
        self.url, self.ikey, self.name_ = url, ikey, name
        self.acknowledged: list[str] = []
        self.statuses: dict[int, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=60) as client:
            batch = 0
            while not self.stop.is_set():
                batch += 1
                now = datetime.now(UTC).isoformat()
                messages = [f"{self.name_}-b{batch}-i{i}" for i in range(200)]
                body = orjson.dumps([{"time": now, "iKey": self.ikey, "data": {"baseType": "MessageData",
                                      "baseData": {"message": m, "properties": {"pad": "p" * 200}}}}
                                     for m in messages])
                try:
                    status = client.post(f"{self.url}/v2.1/track", content=body).status_code
                except httpx.HTTPError:
                    status = 0
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status == 200:
                    self.acknowledged += messages
                else:
                    time.sleep(0.05)

    def acks(self) -> int:
        return self.statuses.get(200, 0)


def _wait(condition: object, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def _fill(path: Path) -> None:
    with open(path, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (256 * 1024))
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def test_a_full_disk_loses_no_acknowledged_item_and_stores_none_twice(tmp_path: Path, small_disk: Path) -> None:
    home = small_disk / "ws"
    # The writer waits a second for its batch: the log meets the full disk first, then the store.
    server, url = start_hub(home, tmp_path, ingest_linger_ms="1000", ingest_batch_items="1000000",
                            hub_request_timeout_s="60")
    ikey = orjson.loads((home / "config.json").read_bytes())["default_app"]["instrumentation_key"]
    senders = [Sender(url, ikey, name) for name in ("s1", "s2")]
    for sender in senders:
        sender.start()
    try:
        _wait(lambda: all(s.acks() >= 3 for s in senders), "the first acknowledgements")
        _fill(small_disk / "filler")
        _wait(lambda: _metric(url, "scorewatch_wal_append_failed_total") >= 1
              and _metric(url, "scorewatch_store_unavailable_total") >= 1, "the log and the store to meet the full disk")
        refused_while_full = {status: sum(s.statuses.get(status, 0) for s in senders) for status in (503, 500)}
        (small_disk / "filler").unlink()  # freed
        before = [s.acks() for s in senders]
        _wait(lambda: all(s.acks() >= b + 3 for s, b in zip(senders, before, strict=True)),
              "acknowledgements after the disk was freed")
    finally:
        for sender in senders:
            sender.stop.set()
        for sender in senders:
            sender.join(60)
    server.kill()  # SIGKILL: whatever was acknowledged and not yet in the store is only in the log

    server, url = start_hub(home, tmp_path)  # replays the log
    server.stop()
    acknowledged = [m for s in senders for m in s.acknowledged]
    stored = stored_messages(home)
    quarantine = Quarantine(home / "quarantine")
    quarantined = [orjson.loads(line)["data"]["baseData"]["message"]
                   for entry in quarantine.entries() for line in quarantine.items(entry.name)]
    assert refused_while_full[500] == 0 and all(500 not in s.statuses for s in senders)
    assert len(stored) == len(set(stored)), "an item was stored twice"
    assert not set(stored) & set(quarantined)
    assert set(stored) | set(quarantined) == set(acknowledged), (
        f"lost {len(set(acknowledged) - set(stored) - set(quarantined))}, "
        f"stored without a 200: {len(set(stored) - set(acknowledged))}")
