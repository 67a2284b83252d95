"""Export throughput, and what an active export rule costs ingest.

1. Export alone: a store of ``--items`` telemetry items (bench/ingest.py's mix of requests, traces,
   dependencies, exceptions and metrics) is exported from its first row by the same exporter the
   hub runs (rounds of ``export_max_items``, checkpoint after each), to ``file://`` Parquet and to
   Azurite (``az://``, Parquet), timed until the last checkpoint: items/s.
2. Ingest with and without a rule, in the same run: a hub on a fresh workspace is flooded over HTTP
   for ``--seconds`` as bench/ingest.py does, once with no rule and once with one active rule
   (Parquet to ``file://``), ``--pairs`` times in alternating order; the ratio of the two ingest rates
   (items/s until every accepted item is a row). With the rule, it also prints how far behind the
   export was when the flood ended and how long it took to catch up. The export lets ingest go
   first for up to ``export_max_lag_s`` (60 s, longer than the flood); ``--eager`` also runs the
   rule with ``export_max_lag_s`` 0, as in a flood longer than that: the export then reads beside
   ingest's writes all along.

    python bench/export.py [--items 1000000] [--seconds 15] [--senders 4] [--pairs 1] [--no-azurite] [--eager]

Goals (docs/export.md): >= 200,000 items/s to Parquet; ingest with a rule >= 0.9 of ingest without.
"""

from __future__ import annotations

import argparse
import gzip
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.ingest import envelope_tables, envelopes, flood, start_hub  # noqa: E402
from tests.export.servers import Azurite  # noqa: E402
from tests.helpers import free_port  # noqa: E402

from scorewatch.documents import FileDocuments  # noqa: E402
from scorewatch.export.exporter import Exporter  # noqa: E402
from scorewatch.export.rules import Rule  # noqa: E402
from scorewatch.export.targets import Target  # noqa: E402
from scorewatch.settings import Settings  # noqa: E402
from scorewatch.store.duckdb import DuckDBStore  # noqa: E402
from scorewatch.store.envelopes import BASE_TYPES  # noqa: E402

TABLES = list(BASE_TYPES.values())


def filled_store(path: Path, items: int, per_write: int = 200_000) -> DuckDBStore:
    """A store holding at least ``items`` items of application ``bench``, written as the hub writes them
    (``per_write`` items at a time)."""
    batch = envelope_tables("bench-ikey", 500, per_write, app_id="bench", app_name="bench")
    store = DuckDBStore(path, threads=Settings.from_env().store_threads or None)
    while store.row_position() < items:
        store.write_envelopes(batch)
    store.checkpoint()
    return store


def export_rate(store: DuckDBStore, url: str, settings: Settings, state: Path) -> tuple[int, float, int]:
    """(items, seconds, bytes) of exporting the whole store to ``url`` as Parquet."""
    rule = Rule(name="bench", app="bench", app_id="bench", ikey="bench-ikey", url=url, format="parquet",
                tables=TABLES, start="beginning")
    exporter = Exporter(store, rule, Target.open(url, settings), FileDocuments(state),
                        max_items=settings.export_max_items)
    started = time.perf_counter()
    while exporter.round():
        pass
    return exporter.checkpoint.items, time.perf_counter() - started, exporter.checkpoint.bytes


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def ingest_rate(with_rule: bool, args: argparse.Namespace, work: Path, eager: bool = False) -> dict[str, float]:
    home, port = Path(tempfile.mkdtemp(prefix="sw-bench-export-hub-", dir=work)), free_port()
    hub = start_hub(home, port, env={"SCOREWATCH_EXPORT_MAX_LAG_S": "0"} if eager else None)
    try:
        ikey = orjson.loads((home / "config.json").read_bytes())["default_app"]["instrumentation_key"]
        if with_rule:
            from click.testing import CliRunner

            from scorewatch.export.cli import export

            out = CliRunner().invoke(export, ["add", "bench", "--to", str(home / "out"), "--format", "parquet",
                                              "--home", str(home)])
            assert out.exit_code == 0, out.output
            time.sleep(2)  # the hub starts the rule within a second
        bodies = [gzip.compress(orjson.dumps(envelopes(ikey, args.batch)), 6) for _ in range(8)]
        process = psutil.Process(hub.pid)
        cpu = sum(process.cpu_times()[:2])
        accepted, _, elapsed, text = flood(port, bodies, args.batch, args.senders, args.seconds)
        result = {"rate": accepted / elapsed, "accepted": accepted,
                  "cpu_us": (sum(process.cpu_times()[:2]) - cpu) / accepted * 1e6}
        if with_rule:
            result["behind"] = accepted - metric(text, "scorewatch_export_items_total")
            caught = time.monotonic()
            while True:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
                if metric(text, "scorewatch_export_items_total") >= accepted:
                    break
                time.sleep(0.1)
            result["catch_up_s"] = time.monotonic() - caught
            result["cpu_us_all"] = (sum(process.cpu_times()[:2]) - cpu) / accepted * 1e6
        return result
    finally:
        os.killpg(hub.pid, signal.SIGTERM)
        hub.wait(120)


def lags(runs: list[dict[str, float]]) -> None:
    for r in runs:
        print(f"  with the rule: {r['accepted']:,.0f} items accepted; {r['behind']:,.0f} of them not exported yet "
              f"when the last was stored, all exported {r['catch_up_s']:.1f}s later")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--pairs", type=int, default=1, help="Ingest runs without and with a rule, alternating.")
    parser.add_argument("--no-azurite", action="store_true", help="Skip the export to Azurite.")
    parser.add_argument("--eager", action="store_true",
                        help="Also run the rule with export_max_lag_s 0 (reading beside ingest's writes).")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sw-bench-export-"))
    settings = Settings.from_env()

    store = filled_store(work / "store.duckdb", args.items)
    items, seconds, size = export_rate(store, f"file://{work}/parquet", settings, work / "state-file")
    print(f"export to file:// Parquet: {items:,} items in {seconds:.1f}s = {items / seconds:,.0f} items/s "
          f"(goal >= 200,000); {size / 2**20:.0f} MiB written, rounds of {settings.export_max_items:,}")
    if not args.no_azurite:
        azurite = Azurite(work, location=work / "azurite").start()
        try:
            azurite.filesystem().mkdir("bench")
            az = settings.replace(export_azure_connection_string=azurite.connection_string())
            items, seconds, size = export_rate(store, "az://bench/parquet", az, work / "state-az")
            print(f"export to Azurite (az://) Parquet: {items:,} items in {seconds:.1f}s = {items / seconds:,.0f} items/s")
        finally:
            azurite.stop()
    store.close()

    kinds = ["off", "on"] + (["eager"] if args.eager else [])
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for pair in range(args.pairs):
        for kind in (kinds if pair % 2 == 0 else kinds[::-1]):
            runs[kind].append(ingest_rate(kind != "off", args, work, eager=kind == "eager"))
    off = statistics.median(r["rate"] for r in runs["off"])
    on = statistics.median(r["rate"] for r in runs["on"])
    print(f"ingest with no export rule: {off:,.0f} items/s; with one active rule (Parquet to file://): "
          f"{on:,.0f} items/s; ratio {on / off:.2f} (goal >= 0.90), median of {args.pairs} pair(s)")
    lags(runs["on"])
    if args.eager:
        eager = statistics.median(r["rate"] for r in runs["eager"])
        print(f"with the rule reading beside ingest's writes (export_max_lag_s 0): {eager:,.0f} items/s; "
              f"ratio {eager / off:.2f}")
        lags(runs["eager"])
    # CPU per item is the steadier number on a shared machine (wall time depends on the neighbours).
    cpu = {kind: statistics.median(r["cpu_us"] for r in done) for kind, done in runs.items()}
    print(f"hub CPU per item until all stored: {cpu['off']:.1f} us without a rule, {cpu['on']:.1f} us with one"
          + (f" ({cpu['eager']:.1f} us reading beside)" if args.eager else "")
          + f"; with the export finished: {statistics.median(r['cpu_us_all'] for r in runs['on']):.1f} us")


if __name__ == "__main__":
    main()
