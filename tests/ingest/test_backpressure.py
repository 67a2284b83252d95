"""Bounded memory: past its queue limit the hub answers 429 with Retry-After, and what it accepted is stored."""

from __future__ import annotations

import concurrent.futures
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

from tests.ingest.conftest import running_hub


def _body(ikey: str, tag: str, n: int) -> bytes:
    now = datetime.now(UTC).isoformat()
    return orjson.dumps([{"time": now, "iKey": ikey, "data": {"baseType": "MessageData",
                                                              "baseData": {"message": f"{tag}-{i}"}}}
                         for i in range(n)])


def test_full_queue_answers_429_with_retry_after(tmp_path: Path) -> None:
    # The writer holds its batch (long linger), so admitted items stay queued.
    with running_hub(tmp_path / "ws", ingest_queue_items=100, ingest_linger_ms=600_000,
                     ingest_batch_items=1_000_000) as hub:
        url = f"{hub.url}/v2.1/track"
        assert httpx.post(url, content=_body(hub.ikey, "a", 60)).status_code == 200
        response = httpx.post(url, content=_body(hub.ikey, "b", 60))
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) >= 1
        assert response.json()["error"]["code"] == "TooManyRequests"
        assert httpx.get(f"{hub.url}/health").json()["queue_items"] == 60
        assert "scorewatch_ingest_throttled_requests_total 1" in httpx.get(f"{hub.url}/metrics").text
        assert hub.rows("SELECT count(*) FROM traces") == [[60]]  # flushing frees the queue
        assert httpx.post(url, content=_body(hub.ikey, "c", 60)).status_code == 200


def test_flood_everything_accepted_is_stored(tmp_path: Path) -> None:
    with running_hub(tmp_path / "ws", ingest_queue_items=400, ingest_batch_items=200, ingest_linger_ms=50) as hub:
        url = f"{hub.url}/v2.1/track"

        def sender(n: int) -> tuple[int, int]:
            accepted = throttled = 0
            with httpx.Client() as client:
                for i in range(25):
                    response = client.post(url, content=_body(hub.ikey, f"s{n}r{i}", 150))
                    assert response.status_code in (200, 429), response.text
                    if response.status_code == 200:
                        accepted += response.json()["itemsAccepted"]
                    else:
                        throttled += 1
            return accepted, throttled

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            results = list(pool.map(sender, range(6)))
        accepted = sum(r[0] for r in results)
        assert accepted > 0
        assert hub.hub.ingestor.pending <= 400
        assert hub.rows("SELECT count(*), count(DISTINCT message) FROM traces") == [[accepted, accepted]]


def test_byte_budget_and_gzip_bomb(tmp_path: Path) -> None:
    import gzip

    with running_hub(tmp_path / "ws", ingest_queue_bytes=4000, ingest_linger_ms=600_000,
                     ingest_batch_items=1_000_000) as hub:
        url = f"{hub.url}/v2.1/track"
        assert httpx.post(url, content=_body(hub.ikey, "a", 10)).status_code == 200  # ~1.4 KB
        response = httpx.post(url, content=_body(hub.ikey, "b", 20))  # would pass 4000 bytes
        assert response.status_code == 429 and "Retry-After" in response.headers
        bomb = gzip.compress(b" " * (129 * 1024 * 1024), 1)  # 129 MiB of whitespace, ~130 KB sent
        response = httpx.post(url, content=bomb, headers={"Content-Encoding": "gzip"})
        assert response.status_code == 413
        assert hub.rows("SELECT count(*) FROM traces") == [[10]]
