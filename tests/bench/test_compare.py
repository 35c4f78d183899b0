"""The regression guard (bench/compare.py): direction, noise, verdicts, the RESULTS.md cell and header."""
from __future__ import annotations

import json
import subprocess

import pytest

from bench.common import render_table, write_result
from bench.compare import FLOOR, better, cell, committed, compare_result, compare_row, noise, spread_of


def row(value, unit="s", spread=None, **extra):
    found = {"metric": "m", "value": value, "unit": unit, **extra}
    if spread is not None:
        found["spread"] = spread_of(spread)
    return found


@pytest.mark.parametrize("given, expected", [
    pytest.param(row(1, "rows/s"), "higher", id="rows-per-second-up"),
    pytest.param(row(1, "req/s"), "higher", id="requests-per-second-up"),
    pytest.param(row(1, "s"), "lower", id="seconds-down"),
    pytest.param(row(1, "ms"), "lower", id="milliseconds-down"),
    pytest.param(row(1, "MB"), "lower", id="memory-down"),
    pytest.param(row(1, "USD"), "lower", id="rmse-down"),
    pytest.param({**row(1, "x"), "metric": "spark/pandas speed, 1,000,000 rows"}, "higher", id="speed-ratio-up"),
    pytest.param({**row(1, "x"), "metric": "RMSE ratio ours / gradient boosting"}, "lower", id="rmse-ratio-down"),
    pytest.param({**row(1, "%"), "metric": "server CPU, ours"}, "neither", id="cpu-diagnostic"),
    pytest.param({**row(0, "of 7"), "metric": "handler modules importing boto3/botocore at import"}, "lower",
                 id="modules-importing-boto3-down"),
    pytest.param(row(1, "x"), "neither", id="unknown-ratio"),
    pytest.param(row(1, "s", better="higher"), "higher", id="row-overrides-unit"),
])
def test_direction(given, expected):
    assert better(given) == expected


@pytest.mark.parametrize("new, old, expected", [
    pytest.param(row(10.0), row(10.0), (FLOOR, False), id="no-spread-floor"),
    pytest.param(row(10.0, spread=[9, 11]), row(10.0), (0.2, True), id="new-spread"),
    pytest.param(row(10.0, spread=[9.9, 10.1]), row(10.0, spread=[8, 11]), (0.3, True), id="larger-of-two"),
    pytest.param(row(10.0, spread=[9.99, 10.01]), row(10.0), (FLOOR, True), id="tight-spread-floor"),
    pytest.param(row(10.0, spread=[10.0]), row(10.0), (FLOOR, False), id="single-run-no-spread"),
])
def test_noise(new, old, expected):
    threshold, from_spread = noise(new, old)
    assert (round(threshold, 6), from_spread) == expected


@pytest.mark.parametrize("new, old, verdict", [
    pytest.param(row(11.0), row(10.0), "regressed", id="seconds-up-beyond-floor"),
    pytest.param(row(9.0), row(10.0), "improved", id="seconds-down-beyond-floor"),
    pytest.param(row(10.4), row(10.0), "same", id="within-floor"),
    pytest.param(row(11.0, spread=[8, 12]), row(10.0), "same", id="within-spread"),
    pytest.param(row(90.0, "rows/s"), row(100.0, "rows/s"), "regressed", id="throughput-down"),
    pytest.param(row(120.0, "rows/s"), row(100.0, "rows/s"), "improved", id="throughput-up"),
    pytest.param(row(2.0, "x"), row(1.0, "x"), "changed", id="no-direction"),
    pytest.param(row(1.0), None, "new", id="nothing-committed"),
    pytest.param(row(1.0), row("yes", ""), "new", id="committed-not-a-number"),
    pytest.param(row("yes", ""), row("yes", ""), "", id="not-a-number"),
    pytest.param(row(1.0), row(0.0), "regressed", id="from-zero"),
    pytest.param(row(0.0), row(0.0), "same", id="zero-to-zero"),
])
def test_verdict(new, old, verdict):
    assert compare_row(new, old)["verdict"] == verdict


@pytest.mark.parametrize("compared, shown", [
    pytest.param(compare_row(row(11.0), row(10.0)), "+10.0 % **regressed** (noise 5 %, floor only)",
                 id="regressed-floor"),
    pytest.param(compare_row(row(5.0, spread=[4, 6]), row(10.0)), "-50.0 % improved (noise 40 %)",
                 id="improved-spread"),
    pytest.param(compare_row(row(10.2), row(10.0)), "+2.0 %", id="same"),
    pytest.param(compare_row(row(1.0), None), "new", id="new"),
    pytest.param(None, "", id="not-compared"),
])
def test_cell(compared, shown):
    assert cell(compared) == shown


def result(size="full", cpu="cpu", **values):
    return {"size": size, "date": "d", "machine": {"cpu": cpu, "cores": 2},
            "rows": [{"metric": name, "value": value, "unit": "s"} for name, value in values.items()]}


@pytest.mark.parametrize("old, said, verdicts", [
    pytest.param(None, "Nothing committed", {}, id="nothing-committed"),
    pytest.param(result(size="smoke", a=1.0), "Not compared", {}, id="other-size"),
    pytest.param(result(a=1.0, b=1.0), "**1 regressed**", {"a": "regressed", "b": "same"}, id="one-regressed"),
    pytest.param(result(a=2.0, b=1.0), "nothing regressed", {"a": "same", "b": "same"}, id="nothing-regressed"),
    pytest.param(result(cpu="other", a=2.0), "another machine", {"a": "same", "b": "new"}, id="other-machine"),
])
def test_compare_result(old, said, verdicts):
    compared = compare_result(result(a=2.0, b=1.0), old)
    assert said in compared["said"]
    assert {metric: r["verdict"] for metric, r in compared["rows"].items()} == verdicts


def test_results_table_shows_the_change(tmp_path):
    committed_result = {**result(a=1.0), "title": "T"}
    new = {"title": "T", "rows": [{"metric": "a", "value": 2.0, "unit": "s"}], "details": {}}
    write_result("t", new, "full", tmp_path, baseline=committed_result, compare=True)
    table = render_table(tmp_path)
    assert "| vs committed |" in table
    assert "+100.0 % **regressed** (noise 5 %, floor only)" in table
    assert "1 regressed" in table


def test_committed_reads_git_head_not_the_working_tree(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "bench" / "results").mkdir(parents=True)
    path = tmp_path / "bench" / "results" / "x.json"
    path.write_text(json.dumps({"size": "full", "rows": []}))
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    path.write_text(json.dumps({"size": "smoke", "rows": []}))
    assert committed("x", tmp_path)["size"] == "full"
    assert committed("missing", tmp_path) is None
