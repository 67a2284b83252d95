"""The statistics bench/monitoring_overhead.py prints: its interval and the pooling of recorded runs."""

import json
import statistics

import pytest
from bench.monitoring_overhead import median_interval, record


def test_the_interval_holds_the_median_and_narrows_with_more_pairs():
    few = [0.80, 0.86, 0.88, 0.90, 0.91, 0.93, 0.97, 1.02]
    many = few * 6
    low, high = median_interval(few)
    assert low <= statistics.median(few) <= high
    assert low >= min(few) and high <= max(few)
    wide, narrow = high - low, median_interval(many)[1] - median_interval(many)[0]
    assert narrow < wide
    assert median_interval(few) == (low, high)  # a fixed seed: the same pairs, the same interval


def test_record_pools_the_runs_of_one_commit_only(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"commit": "other", "ratios": [0.5, 0.5], "p99_rises_ms": [9.0, 9.0]}) + "\n")
    first = record(path, [0.9, 0.95], [0.6, 0.7])
    second = record(path, [0.85], [0.5])
    assert sorted(first) == [0.9, 0.95]
    assert sorted(second) == [0.85, 0.9, 0.95]  # the other commit's pairs stay out
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 3 and lines[1]["p99_rises_ms"] == [0.6, 0.7]
    assert lines[1]["commit"] == lines[2]["commit"] != "other"  # this checkout's commit (or "unknown")


def test_record_refuses_a_file_it_did_not_write(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("pairs from Tuesday\n")
    with pytest.raises(SystemExit, match=r"notes.txt:1: not a run recorded by --record"):
        record(path, [0.9], [0.6])
    assert path.read_text() == "pairs from Tuesday\n"  # nothing appended to it


def test_the_export_bench_exports_a_store_to_parquet_and_counts_it(tmp_path):
    """bench/export.py drives the exporter itself: it must follow the exporter's signature."""
    from bench.export import export_rate, filled_store

    from scorewatch.settings import Settings

    store = filled_store(tmp_path / "store.duckdb", 1, per_write=2000)  # one write of the bench's mix
    try:
        items, seconds, size = export_rate(store, f"file://{tmp_path}/parquet", Settings.from_env(), tmp_path / "state")
    finally:
        store.close()
    assert items == store_items(tmp_path / "store.duckdb") and seconds > 0 and size > 0
    assert list((tmp_path / "parquet").rglob("*.parquet"))


def store_items(path):
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        tables = ("requests", "dependencies", "traces", "exceptions", "customEvents", "customMetrics")
        return sum(con.execute(f'select coalesce(sum(1), 0) from "{t}"').fetchone()[0] for t in tables)
