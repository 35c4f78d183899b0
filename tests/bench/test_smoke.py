"""Every benchmark runs at a tiny size, so the code cannot rot (the figures mean nothing here)."""
from __future__ import annotations

import importlib
import json
import math

import pytest

from bench.common import BENCH, render_table, write_result

MODULES = sorted(p.stem for p in BENCH.glob("bench_*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_benchmark_runs_small(module, tmp_path):
    bench = importlib.import_module(f"bench.{module}")
    result = bench.run("smoke")
    assert result["title"] and result["rows"]
    for row in result["rows"]:
        assert row["metric"] and "value" in row
        if isinstance(row["value"], float):
            assert math.isfinite(row["value"]), row
    path = write_result(bench.NAME, result, "smoke", tmp_path)
    assert json.loads(path.read_text())["machine"]["cores"] >= 1
    assert result["title"] in render_table(tmp_path)


def test_every_benchmark_is_covered():
    assert MODULES, "bench/ has no bench_*.py"
