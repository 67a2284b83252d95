"""The ingest pipeline without HTTP: log segments are released while traffic goes on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson

from scorewatch.errors import TooManyRequests
from scorewatch.ingest.apps import Application
from scorewatch.ingest.metrics import IngestMetrics
from scorewatch.ingest.pipeline import Ingestor
from scorewatch.ingest.track import Accepted
from scorewatch.ingest.wal import WriteAheadLog
from scorewatch.store.duckdb import DuckDBStore


def test_applied_log_segments_are_released_under_continuous_traffic(tmp_path: Path) -> None:
    app = Application("a", "id-a", "key-a", 90)
    store = DuckDBStore(tmp_path / "t.duckdb")
    wal_dir = tmp_path / "wal"
    ingestor = Ingestor(store, WriteAheadLog(wal_dir, segment_bytes=2000), IngestMetrics(), queue_items=10_000,
                        batch_items=50, linger_s=0.01, release_interval_s=0.05)
    ingestor.start()

    async def send(n: int) -> None:
        line = orjson.dumps({"iKey": "key-a", "data": {"baseType": "MessageData", "baseData": {"message": "m"}}})
        await ingestor.submit(Accepted(lines=[line] * n, base_types=["MessageData"] * n, apps=[app] * n))

    try:
        most = 0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:  # ~3 s of steady traffic, many segments written
            try:
                asyncio.run(send(20))
            except TooManyRequests:  # the writer is behind: back off as a client would
                time.sleep(0.05)
            most = max(most, len(list(wal_dir.glob("*.log"))))
        assert ingestor.flush(30)
        assert store.count("traces") == 20 * ingestor.wal.last_seq
        # Every record fills most of a segment: without release there would be ~one file per record.
        assert ingestor.wal.last_seq > 40 and most < ingestor.wal.last_seq / 4, (most, ingestor.wal.last_seq)
    finally:
        ingestor.stop()
        store.close()
