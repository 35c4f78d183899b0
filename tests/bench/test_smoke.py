"""Every benchmark runs at a tiny size, so the code cannot rot (the figures mean nothing here)."""
from __future__ import annotations

import importlib
import json
import math

import pytest

from bench.common import BENCH, render_table, write_result

MODULES = sorted(p.stem for p in BENCH.glob("bench_*.py"))
# What each benchmark starts, as markers (setup.cfg): Spark, TensorFlow (training or the Keras
# baseline), or the whole pipeline (both). A new benchmark must be listed here.
MARKS = {
    "bench_etl": [pytest.mark.spark],
    "bench_gateway": [],
    "bench_lambdas": [],
    "bench_pipeline": [pytest.mark.spark, pytest.mark.slow],
    "bench_server": [pytest.mark.slow],
    "bench_training": [pytest.mark.slow],
}
# Rows that compare two implementations: a smoke run must find them equal, not only print them.
PARITY_ROWS = {"bench_etl": ["pandas baseline counts match Spark"]}
MAX_SERVER_DIFFERENCE = 1e-4  # ours (numpy float32) vs Keras predictions, relative


def parity_values(node):
    """Every number stored under a key naming parity, anywhere in a result."""
    if isinstance(node, dict):
        for key, value in node.items():
            if "parity" in key and isinstance(value, (int, float)):
                yield key, value
            else:
                yield from parity_values(value)
    elif isinstance(node, list):
        for item in node:
            yield from parity_values(item)


@pytest.mark.parametrize("module", [pytest.param(m, marks=MARKS.get(m, []), id=m) for m in MODULES])
def test_benchmark_runs_small(module, tmp_path):
    bench = importlib.import_module(f"bench.{module}")
    result = bench.run("smoke")
    assert result["title"] and result["rows"]
    for row in result["rows"]:
        assert row["metric"] and "value" in row
        if isinstance(row["value"], float):
            assert math.isfinite(row["value"]), row
    by_metric = {row["metric"]: row for row in result["rows"]}
    for metric in PARITY_ROWS.get(module, []):
        assert by_metric[metric]["met"] is True and by_metric[metric]["value"] == "yes", by_metric[metric]
    for key, value in parity_values(result):
        assert value <= MAX_SERVER_DIFFERENCE, (key, value)
    path = write_result(bench.NAME, result, "smoke", tmp_path)
    assert json.loads(path.read_text())["machine"]["cores"] >= 1
    assert result["title"] in render_table(tmp_path)


def test_every_benchmark_is_covered():
    assert MODULES, "bench/ has no bench_*.py"
    assert sorted(MARKS) == MODULES, "say in MARKS what each benchmark starts"
