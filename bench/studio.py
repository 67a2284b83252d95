"""Studio benchmark: the server time of each page's data over 10 million requests in the store.

Generates, with DuckDB SQL straight into a store file (not through HTTP ingest: the page queries are
what is measured), 7 days of telemetry ending now: ``--requests`` requests (6 operations, 4 services
of 2 instances, 2% failures, lognormal durations), one model-data trace per request, an outgoing call
for every second request and an exception per failed one. Then starts the hub on that workspace, as
``scorewatch hub`` does (same settings: one DuckDB thread unless SCOREWATCH_STORE_THREADS says
otherwise), and reads each page's JSON twin for the 24 h and 7 d ranges, ``--runs`` times in turns,
taking the hub's own time for the page's queries (its ``Server-Timing`` header: the page's queries,
run side by side). Prints the median per page and range, and the slowest query of each. Goal: every
page within 1 s.

Transaction search's text searches are timed as the page gets them: the page's data (its results,
with the windows they were looked for in and whether they are complete), then its count over time,
which the page fetches after it from ``search/timeline.json``, in parts: the first part (what the
chart first shows) and all the parts in turn.

    python bench/studio.py [--requests 10000000] [--runs 5] [--keep DIR] [--only TEXT]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import free_port  # noqa: E402

from scorewatch.apps import registry_for  # noqa: E402
from scorewatch.ingest.cli import ensure_default_app  # noqa: E402
from scorewatch.ingest.connections import uvicorn_config  # noqa: E402
from scorewatch.ingest.hub import create_app, open_hub  # noqa: E402
from scorewatch.settings import Settings  # noqa: E402
from scorewatch.store.duckdb import DuckDBStore  # noqa: E402
from scorewatch.workspace import Workspace  # noqa: E402

SPAN = "INTERVAL 7 DAY"
GENERATE = {
    "requests": """
INSERT INTO requests (timestamp, id, name, url, success, resultCode, duration, performanceBucket, itemType,
                      customDimensions, operation_Name, operation_Id, cloud_RoleName, cloud_RoleInstance, appId,
                      appName, itemCount)
SELECT start + to_microseconds(CAST(i * (604800000000 // $n) AS BIGINT)),
       'r' || i, op, 'http://svc' || (i % 4) || '.local/score', NOT failed,
       CASE WHEN failed THEN (CASE WHEN i % 2 = 0 THEN '500' ELSE '503' END) ELSE '200' END,
       dur, CASE WHEN dur < 250 THEN '<250ms' ELSE '250ms-500ms' END, 'request',
       json_object('Request Id', 'rid-' || i, 'Service Name', 'service-' || (i % 4)),
       op, 'op' || i, 'service-' || (i % 4), 'instance-' || (i % 8), '$app', 'bench', 1
FROM (SELECT i, random() < 0.02 AS failed,
             exp(3.0 + 0.8 * sqrt(-2 * ln(greatest(random(), 1e-12))) * cos(2 * pi() * random())) AS dur,
             ['POST /score', 'POST /score', 'POST /score', 'GET /score', 'GET /', 'GET /swagger.json'][1 + i % 6] AS op,
             now()::TIMESTAMP - $span AS start
      FROM range($n) t(i))""",
    "traces": """
INSERT INTO traces (timestamp, message, severityLevel, itemType, customDimensions, operation_Name, operation_Id,
                    operation_ParentId, cloud_RoleName, cloud_RoleInstance, appId, appName, itemCount)
SELECT timestamp, 'model_data_collection', 1, 'trace',
       CASE WHEN success THEN json_object('Request Id', 'rid-' || substr(id, 2), 'Input', '{"data": [[' || (hash(id) % 97) || ']]}',
                                          'Prediction', '[0.' || (hash(id) % 1000) || ']')
            ELSE json_object('Request Id', 'rid-' || substr(id, 2), 'Input', '{"data": [[' || (hash(id) % 97) || ']]}',
                             'Prediction', '{"message": "error"}', 'Status Code', resultCode) END,
       operation_Name, operation_Id, id, cloud_RoleName, cloud_RoleInstance, appId, appName, 1
FROM requests""",
    "dependencies": """
INSERT INTO dependencies (timestamp, id, target, type, name, data, success, resultCode, duration, itemType,
                          operation_Name, operation_Id, operation_ParentId, cloud_RoleName, cloud_RoleInstance,
                          appId, appName, itemCount)
SELECT timestamp, 'd' || substr(id, 2), 'db-' || (hash(id) % 3) || ':5432', 'HTTP', 'GET /features',
       'http://db/features', hash(id) % 100 <> 0, CASE WHEN hash(id) % 100 = 0 THEN '503' ELSE '200' END,
       duration / 3, 'dependency', operation_Name, operation_Id, id, cloud_RoleName, cloud_RoleInstance, appId,
       appName, 1
FROM requests WHERE hash(id) % 2 = 0""",
    "exceptions": """
INSERT INTO exceptions (timestamp, problemId, type, message, outerType, outerMessage, innermostType,
                        innermostMessage, severityLevel, details, itemType, operation_Name, operation_Id,
                        operation_ParentId, cloud_RoleName, cloud_RoleInstance, appId, appName, itemCount)
SELECT timestamp, 'ValueError at run', t, 'bad input', t, 'bad input', t, 'bad input', 3,
       '[{"typeName": "ValueError", "message": "bad input", "parsedStack": []}]', 'exception', operation_Name,
       operation_Id, id, cloud_RoleName, cloud_RoleInstance, appId, appName, 1
FROM (SELECT *, CASE WHEN resultCode = '500' THEN 'ValueError' ELSE 'KeyError' END AS t FROM requests WHERE NOT success)""",
}

# (label, page, extra parameters)
PAGES = [
    ("overview", "overview", {}),
    ("performance", "performance", {}),
    ("performance, one operation", "performance", {"operation": "POST /score"}),
    ("failures", "failures", {}),
    ("failures, one operation", "failures", {"operation": "POST /score"}),
    ("transaction search", "search", {}),
    # Text searches: the page (its latest 100 results, looked for newest first, window by window)
    # and its count of matches over time, which the page fetches on its own (search/timeline).
    # An id found in 2,222 rows (in customDimensions), mostly 4 days ago:
    ("search 'rid-4242'", "search", {"q": "rid-4242"}),
    ("search 'rid-4242': timeline", "search/timeline", {"q": "rid-4242"}),
    # A word in every model-data row (a term found often: the latest hour has 100 matches):
    ("search 'prediction'", "search", {"q": "prediction"}),
    ("search 'prediction': timeline", "search/timeline", {"q": "prediction"}),
    # A word found nowhere, with no digits or punctuation to narrow it (the worst case):
    ("search 'zebra'", "search", {"q": "zebra"}),
    ("search 'zebra': timeline", "search/timeline", {"q": "zebra"}),
    ("end-to-end transaction", "transaction/op4242", {}),
    ("model data", "modeldata", {}),
    ("model data, failed only", "modeldata", {"failed": "1"}),
    ("logs (default query)", "logs", {"query": "requests | summarize count() by bin(timestamp, 1h), resultCode"}),
    ("filter choices", "filters", {}),
]
RANGES = ("P1D", "P7D")


def generate(workspace: Workspace, settings: Settings, n: int) -> str:
    workspace.ensure()
    ensure_default_app(workspace, settings)
    app, _ = registry_for(workspace, settings).create("bench")
    path = workspace.store_dir / "telemetry.duckdb"
    DuckDBStore(path).close()  # the store's own tables
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    for table, sql in GENERATE.items():
        started = time.perf_counter()
        con.execute(sql.replace("$n", str(n)).replace("$app", app.app_id).replace("$span", SPAN))
        count = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - our table names
        print(f"  {table:13} {count:>12,} rows in {time.perf_counter() - started:5.1f}s")
    con.execute("CHECKPOINT")
    con.close()
    _, api_key = app, registry_for(workspace, settings).add_api_key("bench")
    return api_key


def serve(workspace: Workspace, settings: Settings) -> tuple[uvicorn.Server, threading.Thread, Any]:
    hub = open_hub(workspace, settings)
    server = uvicorn.Server(uvicorn_config(create_app(hub), settings, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, hub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="", help="Measure only the pages whose label holds this text.")
    parser.add_argument("--keep", type=Path, default=None, help="Workspace to generate into and keep (default: a temporary one); one kept earlier is reused.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="scorewatch-bench-studio-") as tmp:
        home = args.keep or Path(tmp) / "ws"
        settings = Settings.from_env(home=home, hub_port=free_port())
        workspace = Workspace(home)
        started = time.perf_counter()
        if (workspace.store_dir / "telemetry.duckdb").exists():  # kept from an earlier run: measured again
            print(f"reusing the store in {home} (its 7 days end when it was generated)")
            api_key = registry_for(workspace, settings).add_api_key("bench")
        else:
            print(f"generating {args.requests:,} requests over 7 days into {home}")
            api_key = generate(workspace, settings, args.requests)
        print(f"ready in {time.perf_counter() - started:.0f}s; duckdb {duckdb.__version__}, "
              f"{settings.store_threads or 'all'} store thread(s), query_concurrency {settings.query_concurrency}")
        server, thread, _ = serve(workspace, settings)
        url = f"http://127.0.0.1:{settings.hub_port}/studio/bench"
        pages = [p for p in PAGES if args.only in p[0]]
        labels = [row for label, page, _ in pages
                  for row in ([label, f"{label} (all parts)"] if page == "search/timeline" else [label])]
        times: dict[tuple[str, str], list[float]] = {}
        notes: dict[tuple[str, str], str] = {}
        slowest: dict[tuple[str, str], tuple[float, str]] = {}
        try:
            with httpx.Client(headers={"x-api-key": api_key}, timeout=300) as client:
                for run in range(args.runs + 1):  # the first round warms the store's caches and is not counted
                    for label, page, extra in pages:
                        for span in RANGES:
                            parts = _fetch(client, f"{url}/{page}.json", {"range": span, **extra}, label)
                            if run == 0:
                                continue
                            ms = [_server_ms(response, body) for response, body in parts]
                            times.setdefault((label, span), []).append(ms[0])
                            body = parts[0][1]
                            worst = max(((q["elapsed_ms"], name) for name, q in body.get("queries", {}).items()),
                                        default=(0.0, ""))
                            if worst > slowest.get((label, span), (0.0, "")):
                                slowest[(label, span)] = worst
                            if page == "search/timeline":  # the page fetches the parts one after another
                                times.setdefault((f"{label} (all parts)", span), []).append(sum(ms))
                                notes[(f"{label} (all parts)", span)] = f"{len(parts)} part(s)"
                            elif "windows" in body.get("queries", {}).get("results", {}):
                                results = body["queries"]["results"]
                                notes[(label, span)] = f"{len(results['windows'])} window(s), " + (
                                    "complete" if results["complete"] else f"back to {results['searched_from'][:16]}")
        finally:
            server.should_exit = True
            thread.join(60)
    print(f"\nserver time of each page's data (median of {args.runs} runs, ms); goal: <= 1000 ms")
    print(f"{'page':40} {'24 h':>8} {'7 d':>8}   slowest query (7 d); windows or parts read (24 h | 7 d)")
    missed = []
    for label in labels:
        day, week = (statistics.median(times[(label, span)]) for span in RANGES)
        read = " | ".join(notes[(label, span)] for span in RANGES if (label, span) in notes)
        if (label, "P7D") in slowest:
            worst_ms, worst_name = slowest[(label, "P7D")]
            read = f"{worst_name} ({worst_ms:.0f} ms at most)" + (f"; {read}" if read else "")
        print(f"{label:40} {day:8.0f} {week:8.0f}   {read}")
        missed += [f"{label} ({span})" for span, ms in zip(RANGES, (day, week), strict=True) if ms > 1000]
    print("every page within 1 s" if not missed else f"over 1 s: {', '.join(missed)}")


def _fetch(client: httpx.Client, url: str, params: dict[str, str], label: str) -> list[tuple[httpx.Response, Any]]:
    """One page's data: its answer, and the further parts it names (``next``), in turn."""
    parts = []
    while url:
        response = client.get(url, params=params or None)  # httpx: {} would drop the URL's own query
        response.raise_for_status()
        body = response.json()
        errors = [q["error"]["message"] for q in body["queries"].values() if "error" in q] if "queries" in body else []
        if errors:
            raise SystemExit(f"{label}: {errors}")
        parts.append((response, body))
        url, params = (str(response.url.join(body["next"])), {}) if body.get("next") else ("", {})
    return parts


def _server_ms(response: httpx.Response, body: dict[str, Any]) -> float:
    timing = response.headers.get("server-timing", "")
    if "dur=" in timing:
        return float(timing.split("dur=")[1].split(",")[0])
    return float(body.get("elapsed_ms", 0.0))


if __name__ == "__main__":
    main()
