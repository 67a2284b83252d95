"""The ingest pipeline without HTTP: log segments are released while traffic goes on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson

from scorewatch.apps import Application
from scorewatch.errors import TooManyRequests
from scorewatch.ingest.metrics import IngestMetrics
from scorewatch.ingest.pipeline import Ingestor
from scorewatch.ingest.quarantine import Quarantine
from scorewatch.ingest.track import Accepted
from scorewatch.ingest.wal import WriteAheadLog
from scorewatch.store.duckdb import DuckDBStore


def test_applied_log_segments_are_released_under_continuous_traffic(tmp_path: Path) -> None:
    app = Application("a", "id-a", "key-a", 90)
    store = DuckDBStore(tmp_path / "t.duckdb")
    wal_dir = tmp_path / "wal"
    ingestor = Ingestor(store, WriteAheadLog(wal_dir, segment_bytes=2000), IngestMetrics(),
                        Quarantine(tmp_path / "quarantine"), queue_items=10_000,
                        batch_items=50, linger_s=0.01, release_interval_s=0.05)
    ingestor.start()

    async def send(n: int) -> None:
        line = orjson.dumps({"iKey": "key-a", "data": {"baseType": "MessageData", "baseData": {"message": "m"}}})
        await ingestor.submit(Accepted(lines=[line] * n, base_types=["MessageData"] * n, apps=[app] * n))

    try:
        counts: list[int] = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:  # ~3 s of steady traffic, a segment every record or two
            try:
                asyncio.run(send(20))
            except TooManyRequests:  # the writer is behind: back off as a client would
                time.sleep(0.05)
            counts.append(len(list(wal_dir.glob("*.wal"))))
        assert ingestor.flush(30)
        assert store.count("traces") == 20 * ingestor.wal.last_seq
        # Without release the number of segment files only grows while traffic goes on.
        drops = sum(1 for before, after in zip(counts, counts[1:], strict=False) if after < before)
        assert ingestor.wal.last_seq > 40 and drops > 0, counts[-20:]
    finally:
        ingestor.stop()
        store.close()
