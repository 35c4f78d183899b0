"""Rows store the spread of the repeats behind their figure; ratio and difference rows pair repeats up."""
from __future__ import annotations

from bench import bench_etl, bench_server


def etl_run(spark_wall: float, pandas_wall: float, startup: float | None = 1.0) -> dict:
    return {"spark": {"wall_s": spark_wall, "startup_s": startup, "peak_rss_mb": 900.0 + spark_wall, "quality": {}},
            "pandas": {"wall_s": pandas_wall, "startup_s": None, "peak_rss_mb": 100.0, "quality": {}}}


def by_metric(rows: list[dict]) -> dict[str, dict]:
    return {row["metric"]: row for row in rows}


def test_etl_rows_carry_the_repeats_spread():
    small = bench_etl.summarise(1000, [etl_run(2.0, 4.0), etl_run(4.0, 4.0), etl_run(3.0, 6.0)])
    large = bench_etl.summarise(2000, [etl_run(2.0, 8.0), etl_run(4.0, 8.0), etl_run(4.0, 8.0)])
    rows = by_metric(bench_etl.rows_for([small, large], {"match": True, "rows_in": 10}))
    assert rows["spark rows/s, 1,000 rows"]["spread"] == {"min": 250.0, "max": 500.0, "n": 3}
    assert rows["spark rows/s after start-up, 1,000 rows"]["spread"] == {"min": 1000 / 3, "max": 1000.0, "n": 3}
    assert rows["spark/pandas speed, 1,000 rows"]["spread"] == {"min": 1.0, "max": 2.0, "n": 3}
    assert rows["pandas peak RSS, 1,000 rows"]["spread"]["n"] == 3
    assert rows["spark rows/s at 2,000 rows"]["spread"] == rows["spark rows/s, 2,000 rows"]["spread"]
    # repeat i at 2,000 rows over repeat i at 1,000 rows: 1000/500, 500/250, 500/(1000/3)
    assert rows["scaling efficiency 1,000 -> 2,000 rows"]["spread"] == {"min": 1.5, "max": 2.0, "n": 3}
    for metric in ("size where Spark overtakes pandas", "pandas baseline counts match Spark"):
        assert "spread" not in rows[metric]


def test_etl_rows_without_pairs_store_no_spread():
    small = bench_etl.summarise(1000, [etl_run(2.0, 4.0), etl_run(4.0, 4.0, startup=None), etl_run(3.0, 6.0)])
    large = bench_etl.summarise(2000, [etl_run(2.0, 8.0), etl_run(4.0, 8.0)])
    rows = by_metric(bench_etl.rows_for([small, large], {"match": True, "rows_in": 10}))
    assert "spread" not in rows["spark rows/s after start-up, 1,000 rows"]  # one run logged no start-up
    assert "spread" not in rows["scaling efficiency 1,000 -> 2,000 rows"]  # 3 repeats against 2
    assert rows["spark rows/s, 2,000 rows"]["spread"]["n"] == 2


def server_cell(p50: float, throughput: float, rss: float) -> dict:
    return {"p50_ms": p50, "p99_ms": 2 * p50, "requests_per_s": throughput, "server_cpu_percent": 50.0,
            "server_rss_peak_mb": rss, "failed": 0}


def test_server_ratio_pairs_repeats_and_rss_is_each_repeats_peak():
    plan = bench_server.Plan(concurrency=(1,), requests={}, cell_seconds={}, repeats=2, warmup={})
    cells = {}
    for name, speed in (("ours", 100.0), ("baseline", 10.0), ("ours-1-blas", 100.0)):
        for rows in bench_server.PAYLOAD_ROWS:
            if name == "ours-1-blas" and rows == 1:
                continue
            cells[(name, rows, 1)] = [server_cell(1.0, speed, 50.0 + rows), server_cell(3.0, 2 * speed, 60.0)]
    cells[("baseline", 1, 1)] = [server_cell(1.0, 10.0, 40.0), server_cell(1.0, 40.0, 40.0)]
    rows = by_metric(bench_server.summarise(plan, cells, 0.0, {}, {n: {} for n in bench_server.LABELS}, {})["rows"])
    assert rows["p50 latency, ours, 1 row, concurrency 1"]["spread"] == {"min": 1.0, "max": 3.0, "n": 2}
    # 100/10 and 200/40, not the medians' 150/25
    assert rows["throughput ratio ours / Flask + Keras, 1 row, concurrency 1"]["spread"] == {
        "min": 5.0, "max": 10.0, "n": 2}
    # repeat 1 peaks at 150 (its 100-row cell), repeat 2 at 60
    assert rows["server RSS, ours, peak under load"]["spread"] == {"min": 60.0, "max": 150.0, "n": 2}
    assert "spread" not in rows["failed requests, every cell"]
