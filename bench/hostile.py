"""The hub under hostile clients, against itself without them in the same run.

Starts a real hub (``python -m scorewatch hub``) and, in pairs (alternating which goes first):

- a flood as ``bench/ingest.py`` sends it (sender processes posting gzip bodies of envelopes), with
  ``/health`` asked every 100 ms meanwhile; once alone and once while ``--idle`` connections are held
  open (reopened as the hub closes them after its request timeout). Prints items/s and the ``/health``
  latency of each, and the ratio of the rates (goal: >= 0.9);
- the doubling-``let`` query (``let t1 = t0 | union t0; ...``) sent to the query API: how long until
  it is refused, and ``/health``'s latency while it is.

    python bench/hostile.py [--idle 520] [--seconds 12] [--pairs 2] [--senders 3]
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing as mp
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.ingest import envelopes, metric, sender  # noqa: E402
from tests.helpers import free_port, wait_for_http  # noqa: E402


class IdleConnections(threading.Thread):
    """Holds ``count`` connections open that never send a byte; reopens those the hub closes."""

    def __init__(self, port: int, count: int) -> None:
        super().__init__(daemon=True)
        self.port, self.count = port, count
        self.stop = threading.Event()
        self.reopened = 0

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        for _ in range(self.count):
            self._open(selector)
        while not self.stop.is_set():
            for key, _ in selector.select(0.2):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if not data:  # closed by the hub: open another
                    selector.unregister(sock)
                    sock.close()
                    self._open(selector)
                    self.reopened += 1
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]

    def _open(self, selector: selectors.BaseSelector) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)


def probe_health(url: str, stop: threading.Event, latencies: list[float]) -> None:
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                ok = client.get(url + "/health").status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - started if ok else float("inf"))
            stop.wait(0.1)


def flood(port: int, bodies: list[bytes], batch: int, seconds: float, senders: int) -> tuple[float, list[float]]:
    """Items/s accepted and stored, and /health latencies meanwhile."""
    url = f"http://127.0.0.1:{port}"
    stored0 = metric(httpx.get(url + "/metrics").text, "scorewatch_store_rows_written_total")
    latencies: list[float] = []
    stop = threading.Event()
    prober = threading.Thread(target=probe_health, args=(url, stop, latencies), daemon=True)
    prober.start()
    counts: mp.Queue = mp.Queue()
    started = time.monotonic()
    workers = [mp.Process(target=sender, args=(port, bodies, batch, started + seconds, counts))
               for _ in range(senders)]
    for w in workers:
        w.start()
    accepted = sum(counts.get()[1] for _ in workers)
    for w in workers:
        w.join()
    while metric(httpx.get(url + "/metrics").text, "scorewatch_store_rows_written_total") - stored0 < accepted:
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    stop.set()
    prober.join()
    return accepted / elapsed, latencies


def doubling_let(url: str, app_id: str, api_key: str, levels: int) -> tuple[float, int, list[float]]:
    kql = "let t0 = traces; " + " ".join(f"let t{i} = t{i - 1} | union t{i - 1};" for i in range(1, levels + 1)) \
        + f" t{levels} | count"
    latencies: list[float] = []
    stop = threading.Event()
    prober = threading.Thread(target=probe_health, args=(url, stop, latencies), daemon=True)
    prober.start()
    time.sleep(0.3)
    started = time.perf_counter()
    response = httpx.post(f"{url}/v1/apps/{app_id}/query", json={"query": kql}, headers={"x-api-key": api_key},
                          timeout=600)
    took = time.perf_counter() - started
    time.sleep(0.3)
    stop.set()
    prober.join()
    return took, response.status_code, latencies


def describe(latencies: list[float]) -> str:
    finite = sorted(x for x in latencies if x != float("inf"))
    failed = len(latencies) - len(finite)
    if not finite:
        return f"/health: no answer ({failed} failed)"
    p99 = finite[min(len(finite) - 1, int(len(finite) * 0.99))]
    return (f"/health p50 {statistics.median(finite) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"max {finite[-1] * 1000:.1f} ms ({len(latencies)} probes, {failed} failed)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=520)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--pairs", type=int, default=2, help="Flood pairs (0: only the doubling let).")
    parser.add_argument("--senders", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--lets", type=int, default=10, help="Levels of the doubling let.")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="sw-bench-hostile-"))
    port = free_port()
    env = {**os.environ, "SCOREWATCH_HUB_REQUEST_TIMEOUT_S": "10"}
    hub = subprocess.Popen([sys.executable, "-m", "scorewatch", "hub", "--home", str(home), "--port", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/health", proc=hub, expect_status=200)
        default = orjson.loads((home / "config.json").read_bytes())["default_app"]
        bodies = [gzip.compress(orjson.dumps(envelopes(default["instrumentation_key"], args.batch)), 6)
                  for _ in range(8)]
        ratios = []
        for pair in range(args.pairs):
            results = {}
            for mode in (("alone", "idle") if pair % 2 == 0 else ("idle", "alone")):
                idle = IdleConnections(port, args.idle) if mode == "idle" else None
                if idle:
                    idle.start()
                    time.sleep(1.0)
                rate, latencies = flood(port, bodies, args.batch, args.seconds, args.senders)
                if idle:
                    idle.stop.set()
                    idle.join()
                results[mode] = rate
                extra = f", {args.idle} idle connections held ({idle.reopened} reopened)" if idle else ""
                print(f"pair {pair + 1}, {mode:5}: {rate:,.0f} items/s; {describe(latencies)}{extra}", flush=True)
            ratios.append(results["idle"] / results["alone"])
            print(f"pair {pair + 1}: with idle connections / alone = {ratios[-1]:.3f} (goal >= 0.9)", flush=True)
        if ratios:
            print(f"median ratio over {len(ratios)} pairs: {statistics.median(ratios):.3f}")
        took, status, latencies = doubling_let(url, default["app_id"], default["api_key"], args.lets)
        print(f"doubling let ({args.lets} levels): answered {status} after {took * 1000:.1f} ms; "
              f"meanwhile {describe(latencies)}")
    finally:
        os.killpg(hub.pid, signal.SIGTERM)
        hub.wait(60)


if __name__ == "__main__":
    main()
