"""Query benchmark: compiled KQL against hand-written SQL on the same DuckDB, 10 million requests.

Generates the rows in DuckDB with SQL (7 days, 20 services, 2% failures, lognormal durations, a
customDimensions bag), then times each query through the compiler (compile + run) and as hand-written
SQL (and scoped to one application, as the query API runs it), interleaved, best of N rounds. Targets: each under 1 s; each within 1.2x of the hand-written SQL.

    python bench/query.py [--rows 10000000] [--runs 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime

import duckdb

from scorewatch.kql import compile_query
from scorewatch.store import schema

NOW = datetime(2024, 5, 8)

GENERATE = """
INSERT INTO requests (timestamp, id, name, url, success, resultCode, duration, cloud_RoleName, appId, itemType,
                      customDimensions)
SELECT TIMESTAMP '2024-05-01' + to_microseconds(CAST(i * (604800000000 // $rows) AS BIGINT)),
       'r' || i,
       CASE WHEN i % 3 = 0 THEN 'GET /health' ELSE 'POST /score' END,
       'http://svc' || (i % 20) || '.local/score?item=' || (i % 100000),
       NOT failed,
       CASE WHEN failed THEN (CASE WHEN i % 2 = 0 THEN '500' ELSE '503' END) ELSE '200' END,
       exp(3.0 + 0.8 * sqrt(-2 * ln(greatest(random(), 1e-12))) * cos(2 * pi() * random())),
       'service-' || (i % 20),
       'app1', 'request',
       json_object('Model', 'model-' || (i % 7), 'Input', '{"data": [[' || (i % 97) || ']]}')
FROM (SELECT i, random() < 0.02 AS failed FROM range($rows) t(i))
"""

QUERIES = [
    ("count by bin(timestamp, 5m)",
     "requests | summarize count() by bin(timestamp, 5m)",
     "SELECT time_bucket(INTERVAL 5 MINUTE, timestamp) AS timestamp, count(*) AS count_ FROM requests GROUP BY 1"),
    ("percentiles by service",
     "requests | summarize percentiles(duration, 50, 95, 99) by cloud_RoleName",
     "SELECT cloud_RoleName, quantile_disc(duration, 0.5), quantile_disc(duration, 0.95), "
     "quantile_disc(duration, 0.99) FROM requests GROUP BY 1"),
    ("failures by resultCode",
     "requests | where success == false | summarize count() by resultCode",
     "SELECT resultCode, count(*) FROM requests WHERE NOT success GROUP BY 1"),
    ("customDimensions key group-by",
     "requests | summarize count() by tostring(customDimensions.Model)",
     "SELECT customDimensions ->> '$.Model' AS m, count(*) FROM requests GROUP BY 1"),
    ("contains search, take 10",
     'requests | where url contains "item=99999" | take 10',
     "SELECT * FROM requests WHERE url ILIKE '%item=99999%' LIMIT 10"),
]


def interleaved(fns: list, runs: int) -> list[float]:
    """Best time of each function over ``runs`` rounds, the functions taking turns in each round, so
    load from other processes on the machine falls on all of them alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [min(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    con = duckdb.connect(config={"threads": args.threads})
    columns = ", ".join(f'"{c.name}" {schema.DUCKDB_TYPES[c.type]}' for c in schema.TABLES["requests"])
    con.execute(f"CREATE TABLE requests ({columns})")
    start = time.perf_counter()
    con.execute(GENERATE.replace("$rows", str(args.rows)))
    print(f"generated {args.rows:,} requests in {time.perf_counter() - start:.1f}s "
          f"(duckdb {duckdb.__version__}, {args.threads} threads, best of {args.runs})")
    print(f"{'query':34} {'compiled':>10} {'hand SQL':>10} {'ratio':>7} {'scoped':>10} {'ratio':>7}")
    ratios = []
    for label, kql, hand in QUERIES:
        def compiled(kql: str = kql, app_id: str | None = None) -> None:
            query = compile_query(kql, now=NOW, app_id=app_id)
            con.execute(query.sql, query.params).fetchall()

        con.execute(hand).fetchall()  # warm up both paths once
        compiled()
        ours, theirs, scoped = interleaved([compiled, lambda hand=hand: con.execute(hand).fetchall(),
                                            lambda: compiled(app_id="app1")], args.runs)
        ratios.append(ours / theirs)
        print(f"{label:34} {ours * 1000:8.0f}ms {theirs * 1000:8.0f}ms {ours / theirs:6.2f}x "
              f"{scoped * 1000:8.0f}ms {scoped / theirs:6.2f}x")
    print(f"geometric mean ratio (unscoped): {statistics.geometric_mean(ratios):.2f}x")


if __name__ == "__main__":
    main()
