"""Query benchmark: compiled KQL against hand-written SQL on the same engine, 10 million requests.

Generates the rows in DuckDB with SQL (7 days, 20 services, 2% failures, lognormal durations, a
customDimensions bag), then times each query through the compiler (compile + run) and as hand-written
SQL (and scoped to one application, as the query API runs it), interleaved, best of N rounds.
``--store clickhouse`` also copies the same rows into ClickHouse (chdb, in this process, through the
ClickHouse store) and times the same queries there, compiled for its dialect, beside DuckDB, with the
median of the rounds as well (the machine may be shared). Targets: each under 1 s on either engine;
each within 1.2x of the hand-written SQL.

    python bench/query.py [--rows 10000000] [--runs 7] [--threads 2] [--store duckdb|clickhouse]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime

import duckdb
import pyarrow as pa

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

# (label, KQL, hand-written DuckDB SQL, hand-written ClickHouse SQL)
QUERIES = [
    ("count by bin(timestamp, 5m)",
     "requests | summarize count() by bin(timestamp, 5m)",
     "SELECT time_bucket(INTERVAL 5 MINUTE, timestamp) AS timestamp, count(*) AS count_ FROM requests GROUP BY 1",
     "SELECT toStartOfInterval(timestamp, INTERVAL 5 MINUTE) AS t, count() FROM requests GROUP BY t"),
    ("percentiles by service",
     "requests | summarize percentiles(duration, 50, 95, 99) by cloud_RoleName",
     "SELECT cloud_RoleName, quantile_disc(duration, 0.5), quantile_disc(duration, 0.95), "
     "quantile_disc(duration, 0.99) FROM requests GROUP BY 1",
     "SELECT cloud_RoleName, quantilesExact(0.5, 0.95, 0.99)(duration) FROM requests GROUP BY 1"),
    ("failures by resultCode",
     "requests | where success == false | summarize count() by resultCode",
     "SELECT resultCode, count(*) FROM requests WHERE NOT success GROUP BY 1",
     "SELECT resultCode, count() FROM requests WHERE NOT success GROUP BY 1"),
    ("customDimensions key group-by",
     "requests | summarize count() by tostring(customDimensions.Model)",
     "SELECT customDimensions ->> '$.Model' AS m, count(*) FROM requests GROUP BY 1",
     "SELECT JSONExtractString(customDimensions, 'Model') AS m, count() FROM requests GROUP BY m"),
    ("contains search, take 10",
     'requests | where url contains "item=99999" | take 10',
     "SELECT * FROM requests WHERE url ILIKE '%item=99999%' LIMIT 10",
     "SELECT * FROM requests WHERE url ILIKE '%item=99999%' LIMIT 10"),
]


def interleaved(fns: list, runs: int) -> list[list[float]]:
    """The times of each function over ``runs`` rounds, the functions taking turns in each round, so
    load from other processes on the machine falls on all of them alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return times


def copy_to_clickhouse(con: duckdb.DuckDBPyConnection, rows: int):  # noqa: ANN201 - a ClickHouseStore
    """The generated rows, copied into a ClickHouse store on chdb (a temporary directory) in Arrow batches."""
    import tempfile

    from scorewatch.store.backends import open_clickhouse, parse

    store = open_clickhouse(parse(f"chdb://{tempfile.mkdtemp(prefix='sw-bench-query-')}"), ttl_days=0)
    names = [c.name for c in schema.TABLES["requests"]]
    select = ", ".join(f'CAST("{n}" AS VARCHAR) AS "{n}"' if n == "customDimensions" else f'"{n}"' for n in names)
    start = time.perf_counter()
    reader = con.sql(f"SELECT {select} FROM requests").to_arrow_reader(1_000_000)
    for batch in reader:
        store.client().insert_arrow("requests", pa.Table.from_batches([batch]))
    store.client().command("OPTIMIZE TABLE requests FINAL")  # as a store that has merged its parts
    print(f"copied {rows:,} requests into ClickHouse (chdb) in {time.perf_counter() - start:.1f}s")
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--store", choices=("duckdb", "clickhouse"), default="duckdb",
                        help="clickhouse: the same queries on ClickHouse (chdb) too, beside DuckDB")
    args = parser.parse_args()

    con = duckdb.connect(config={"threads": args.threads})
    columns = ", ".join(f'"{c.name}" {schema.DUCKDB_TYPES[c.type]}' for c in schema.TABLES["requests"])
    con.execute(f"CREATE TABLE requests ({columns})")
    start = time.perf_counter()
    con.execute(GENERATE.replace("$rows", str(args.rows)))
    print(f"generated {args.rows:,} requests in {time.perf_counter() - start:.1f}s "
          f"(duckdb {duckdb.__version__}, {args.threads} threads, best of {args.runs})")
    house = copy_to_clickhouse(con, args.rows) if args.store == "clickhouse" else None
    print(f"{'engine':10} {'query':34} {'compiled':>10} {'hand SQL':>10} {'ratio':>7} {'scoped':>10} {'ratio':>7} "
          f"{'median':>9}")
    ratios: dict[str, list[float]] = {}
    worst: dict[str, float] = {}
    for label, kql, hand, hand_clickhouse in QUERIES:
        engines = [("duckdb", lambda sql: con.execute(sql).fetchall(), hand)]
        if house is not None:
            engines.append(("clickhouse", lambda sql: house.query(sql), hand_clickhouse))
        for engine, run, hand_sql in engines:
            def compiled(kql: str = kql, app_id: str | None = None, engine: str = engine, run=run) -> None:
                run(compile_query(kql, dialect=engine, now=NOW, app_id=app_id).sql)

            run(hand_sql)  # warm up both paths once
            compiled()
            ours, theirs, scoped = interleaved([compiled, lambda run=run, sql=hand_sql: run(sql),
                                                lambda compiled=compiled: compiled(app_id="app1")], args.runs)
            best, hand_best, scoped_best = min(ours), min(theirs), min(scoped)
            ratios.setdefault(engine, []).append(best / hand_best)
            worst[engine] = max(worst.get(engine, 0.0), statistics.median(scoped))
            print(f"{engine:10} {label:34} {best * 1000:8.0f}ms {hand_best * 1000:8.0f}ms {best / hand_best:6.2f}x "
                  f"{scoped_best * 1000:8.0f}ms {scoped_best / hand_best:6.2f}x {statistics.median(scoped) * 1000:7.0f}ms")
    for engine, values in ratios.items():
        print(f"{engine}: geometric mean ratio (unscoped) {statistics.geometric_mean(values):.2f}x; slowest scoped "
              f"query (median) {worst[engine] * 1000:.0f} ms (target <= 1000 ms)")
    if house is not None:
        house.close()


if __name__ == "__main__":
    main()
