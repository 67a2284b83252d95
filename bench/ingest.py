"""Ingest throughput, end to end: HTTP senders → hub → write-ahead log → store.

Starts a real hub (``python -m scorewatch hub``) on a fresh workspace, then several sender processes
POST gzip bodies of ~500 Application Insights envelopes (built once, up front; a realistic mix of
requests, traces, dependencies, exceptions and metrics) to ``/v2.1/track`` for ``--seconds``. The
clock stops when every accepted item is a row in the store. Prints items/s, the hub's CPU use and its
peak resident memory.

    python bench/ingest.py [--senders 4] [--seconds 20] [--batch 500] [--no-baseline]
                           [--store duckdb|clickhouse] [--rounds 1]

Then, as a baseline in the same run, the store alone writes the same envelopes in this process.
``--store clickhouse`` measures a hub on ClickHouse (chdb, ``--store chdb:///DIR``: one replica's
figures) beside a hub on DuckDB, taking turns for ``--rounds`` rounds, and prints the median of each
(the machine may be shared: turns put the neighbours' load on both alike).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import free_port, wait_for_http  # noqa: E402

from scorewatch.settings import Settings  # noqa: E402


def envelopes(ikey: str, n: int) -> list[dict]:
    out = []
    for i in range(n):
        op = uuid.uuid4().hex
        tags = {"ai.operation.id": op, "ai.operation.parentId": op[:16], "ai.cloud.role": "bench-svc",
                "ai.cloud.roleInstance": "host-1", "ai.internal.sdkVersion": "py3:bench",
                "ai.operation.name": "POST /score"}
        kind = i % 10
        if kind < 4:
            data = {"baseType": "RequestData", "baseData": {
                "ver": 2, "id": op[:16], "name": "POST /score", "duration": "00:00:00.0123450",
                "responseCode": "200", "success": True, "url": "http://127.0.0.1:5001/score",
                "properties": {"Service Name": "bench", "x-request-id": str(uuid.uuid4())}}}
        elif kind < 7:
            data = {"baseType": "MessageData", "baseData": {
                "ver": 2, "message": f"scored batch {i} with 3 rows", "severityLevel": "Information",
                "properties": {"logger": "score", "lineno": 42}}}
        elif kind < 9:
            data = {"baseType": "RemoteDependencyData", "baseData": {
                "ver": 2, "id": op[16:], "name": "GET /features", "duration": "0.00:00:00.004",
                "resultCode": "200", "success": True, "type": "HTTP", "target": "features:8080",
                "data": "http://features:8080/features?id=7"}}
        elif i % 20 == 9:
            data = {"baseType": "ExceptionData", "baseData": {"ver": 2, "severityLevel": 3, "exceptions": [
                {"typeName": "ValueError", "message": "bad input", "hasFullStack": True,
                 "stack": "Traceback ...\n  File score.py, line 12, in run\nValueError: bad input"}]}}
        else:
            data = {"baseType": "MetricData", "baseData": {"ver": 2, "metrics": [
                {"name": "batch_rows", "value": 3.0, "count": 1}], "properties": {"model": "ridge"}}}
        out.append({"name": "Microsoft.ApplicationInsights.Bench", "time": "2026-01-01T00:00:00.000000Z",
                    "iKey": ikey, "tags": tags, "data": data})
    return out


def sender(port: int, bodies: list[bytes], items_per_body: int, stop_at: float, counts: mp.Queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    sent = accepted = throttled = 0
    i = 0
    while time.monotonic() < stop_at:
        body = bodies[i % len(bodies)]
        i += 1
        conn.request("POST", "/v2.1/track", body=body,
                     headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        if response.status == 200:
            accepted += orjson.loads(payload)["itemsAccepted"]
            sent += items_per_body
        elif response.status == 429:
            throttled += 1
            time.sleep(float(response.getheader("Retry-After", "1")) / 10)
        else:
            raise RuntimeError(f"{response.status}: {payload[:200]!r}")
    conn.close()
    counts.put((sent, accepted, throttled))


def envelope_tables(ikey: str, batch: int, items: int, app_id: str = "a", app_name: str = "n") -> dict:
    """About ``items`` envelopes (copies of ``batch`` distinct ones) as the hub's writer hands them to
    ``DuckDBStore.write_envelopes``: an Arrow table per store table."""
    import numpy as np
    import pyarrow as pa

    from scorewatch.store.envelopes import BASE_TYPES

    envs = envelopes(ikey, batch) * max(1, items // batch)
    by_table: dict[str, list[bytes]] = {}
    for env in envs:
        by_table.setdefault(BASE_TYPES[env["data"]["baseType"]], []).append(orjson.dumps(env))
    tables = {}
    for table, lines in by_table.items():
        offsets = np.zeros(len(lines) + 1, dtype=np.int64)
        np.cumsum([len(line) for line in lines], out=offsets[1:])
        env_col = pa.LargeStringArray.from_buffers(len(lines), pa.py_buffer(offsets), pa.py_buffer(b"".join(lines)))
        tables[table] = pa.table({"env": env_col, "appId": [app_id] * len(lines), "appName": [app_name] * len(lines),
                                  "iKey": [ikey] * len(lines)})
    return tables


def store_baseline(ikey: str, batch: int, items: int, kind: str = "duckdb") -> float:
    """Items/s of the store alone (same envelopes, in transactions as large as the hub's
    ``ingest_batch_items``, no HTTP, no log), in this process: the ceiling end-to-end ingest can
    approach on this machine."""
    from scorewatch.store.backends import open_clickhouse, parse
    from scorewatch.store.duckdb import DuckDBStore

    tables = envelope_tables(ikey, batch, Settings.from_env().ingest_batch_items)
    per_transaction = sum(t.num_rows for t in tables.values())
    folder = Path(tempfile.mkdtemp(prefix="sw-bench-store-"))
    store = DuckDBStore(folder / "t.duckdb", threads=1) if kind == "duckdb" else \
        open_clickhouse(parse(f"chdb://{folder}"), ttl_days=0)
    started = time.monotonic()
    done = 0
    while done < items:
        store.write_envelopes(tables, position=done)
        done += per_transaction
    store.checkpoint()
    elapsed = time.monotonic() - started
    store.close()
    return done / elapsed


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def start_hub(home: Path, port: int, env: dict[str, str] | None = None, store: str = "duckdb") -> subprocess.Popen:
    """``scorewatch hub`` on a fresh workspace (on ``store``), answering /health."""
    hub = subprocess.Popen([sys.executable, "-m", "scorewatch", "hub", "--home", str(home), "--port", str(port),
                            "--store", store],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                           env={**os.environ, **(env or {})})
    wait_for_http(f"http://127.0.0.1:{port}/health", proc=hub, expect_status=200)
    return hub


def flood(port: int, bodies: list[bytes], batch: int, senders: int, seconds: float) -> tuple[int, int, float, str]:
    """Send ``bodies`` from ``senders`` processes for ``seconds``; returns the items accepted, the 429
    answers, the seconds until every accepted item was a row, and the hub's metrics then."""
    counts: mp.Queue = mp.Queue()
    started = time.monotonic()
    stop_at = started + seconds
    workers = [mp.Process(target=sender, args=(port, bodies, batch, stop_at, counts)) for _ in range(senders)]
    for w in workers:
        w.start()
    results = [counts.get() for _ in workers]
    for w in workers:
        w.join()
    accepted = sum(r[1] for r in results)
    while True:  # until every accepted item is a row
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        if metric(text, "scorewatch_store_rows_written_total") >= accepted:
            return accepted, sum(r[2] for r in results), time.monotonic() - started, text
        time.sleep(0.05)


def measure(kind: str, args: argparse.Namespace) -> tuple[str, float]:
    """One hub on a fresh workspace (``kind``: duckdb, or clickhouse on chdb), flooded; prints what it
    saw; returns the instrumentation key and the items/s."""
    home = Path(tempfile.mkdtemp(prefix="sw-bench-ingest-"))
    port = free_port()
    hub = start_hub(home, port, store="duckdb" if kind == "duckdb" else f"chdb://{home}/chdb")
    try:
        ikey = orjson.loads((home / "config.json").read_bytes())["default_app"]["instrumentation_key"]
        bodies = [gzip.compress(orjson.dumps(envelopes(ikey, args.batch)), 6) for _ in range(8)]
        print(f"[{kind}] payload: {args.batch} envelopes/body, {sum(map(len, bodies)) // len(bodies)} bytes gzip "
              f"({len(orjson.dumps(envelopes(ikey, args.batch)))} raw)")

        proc = psutil.Process(hub.pid)
        peak = [proc.memory_info().rss]
        sampling = threading.Event()

        timeline: list[tuple[float, int]] = []

        def sample() -> None:
            while not sampling.wait(0.1):
                rss = proc.memory_info().rss
                peak[0] = max(peak[0], rss)
                timeline.append((time.monotonic(), rss))

        threading.Thread(target=sample, daemon=True).start()
        cpu0 = sum(proc.cpu_times()[:2])
        threads0 = {t.id: t.user_time + t.system_time for t in proc.threads()}
        times0 = proc.cpu_times()
        started = time.monotonic()
        accepted, throttled, elapsed, text = flood(port, bodies, args.batch, args.senders, args.seconds)
        stored = metric(text, "scorewatch_store_rows_written_total")
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        times1 = proc.cpu_times()
        per_thread = sorted(((t.user_time + t.system_time - threads0.get(t.id, 0.0), t.id) for t in proc.threads()),
                            reverse=True)
        sampling.set()
        print(f"[{kind}] senders: {args.senders}, sending for {args.seconds:.1f}s, all stored after {elapsed:.1f}s")
        print(f"[{kind}] items accepted: {accepted}, stored: {int(stored)}, 429 answers: {throttled}")
        print(f"[{kind}] end-to-end throughput: {accepted / elapsed:,.0f} items/s (target >= 100,000)")
        print(f"[{kind}] hub CPU: {cpu:.1f}s over {elapsed:.1f}s = {cpu / elapsed:.2f} cores; "
              f"(user {times1.user - times0.user:.1f}s, system {times1.system - times0.system:.1f}s); "
              f"hub peak RSS: {peak[0] / 2**20:.0f} MiB")
        # CPU per item is the steadier number on a shared machine (wall time depends on the neighbours).
        print(f"[{kind}] hub CPU per item: {cpu / max(accepted, 1) * 1e6:.1f} us; by thread: "
              + ", ".join(f"{'event loop' if tid == hub.pid else tid} {t / max(accepted, 1) * 1e6:.1f} us"
                          for t, tid in per_thread[:4]))
        batches = metric(text, "scorewatch_store_batch_write_seconds_count")
        write_s = metric(text, "scorewatch_store_batch_write_seconds_sum")
        print(f"[{kind}] store size: {metric(text, 'scorewatch_store_size_bytes') / 2**20:.0f} MiB; "
              f"{batches:.0f} batch writes, {write_s:.1f}s writing ({write_s / max(batches, 1) * 1000:.0f} ms each)")
        marks = [started + args.seconds * f for f in (0.25, 0.5, 0.75, 1.0)]
        rss_at = [next((r for t, r in timeline if t >= m), timeline[-1][1]) / 2**20 for m in marks]
        print(f"[{kind}] hub RSS at 25/50/75/100% of the flood: " + ", ".join(f"{r:.0f}" for r in rss_at) + " MiB")
        return ikey, accepted / elapsed
    finally:
        os.killpg(hub.pid, signal.SIGTERM)
        hub.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--no-baseline", action="store_true", help="Skip the store-only baseline.")
    parser.add_argument("--store", choices=("duckdb", "clickhouse"), default="duckdb",
                        help="clickhouse: a hub on ClickHouse (chdb) beside one on DuckDB, taking turns")
    parser.add_argument("--rounds", type=int, default=1, help="Turns of each store (medians printed).")
    args = parser.parse_args()

    kinds = ["duckdb"] if args.store == "duckdb" else ["duckdb", "clickhouse"]
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    ikey = ""
    for _ in range(args.rounds):
        for kind in kinds:
            ikey, rate = measure(kind, args)
            rates[kind].append(rate)
    for kind, values in rates.items():
        print(f"{kind}: end to end {statistics.median(values):,.0f} items/s, median of {len(values)} "
              f"({', '.join(f'{v:,.0f}' for v in values)})")
    if not args.no_baseline:
        items = min(1_000_000, int(max(max(v) for v in rates.values()) * args.seconds))
        for kind in kinds:
            baseline = store_baseline(ikey, args.batch, items, kind)
            print(f"baseline, the {kind} store alone in one process ({Settings.from_env().ingest_batch_items:,} "
                  f"items per write): {baseline:,.0f} items/s; end to end over HTTP reached "
                  f"{statistics.median(rates[kind]) / baseline:.0%} of it")


if __name__ == "__main__":
    main()
