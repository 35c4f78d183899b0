"""Shared by every benchmark: repeated runs, medians, the machine, results JSON, RESULTS.md.

A benchmark module `bench/bench_<name>.py` defines
    NAME = "<name>"
    def run(size: str) -> dict   # size "full" (make bench) or "smoke" (the test in make test)
and returns {"title", "rows": [{"metric", "value", "unit", "target"?, "met"?, "note"?, "spread"?, "better"?}],
"details"}. "spread" (spread_of: min, max, n of the repeated runs) is the figure's noise for the regression
guard, "better" ("higher", "lower", "neither") overrides the direction bench/compare.py infers.
`python -m bench.<module> [--smoke]` runs one; `python -m bench.run_all` runs them all and
rewrites bench/RESULTS.md from bench/results/*.json. Both compare each figure with the committed result
(git HEAD) and store the comparison in the result ("compared"), which RESULTS.md shows as "vs committed".
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from bench.compare import cell, committed, compare_result, spread_of

__all__ = ["spread_of"]  # for the benchmarks: a row's "spread"

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
TABLE = BENCH / "RESULTS.md"
VERSIONED = ("tensorflow-cpu", "pyspark", "numpy", "moto", "boto3", "flask", "pandas", "scikit-learn")


def median_of(repeats: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    """Median of `repeats` measurements, and the measurements themselves."""
    values = [measure() for _ in range(repeats)]
    return statistics.median(values), values


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def percentile(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100.0
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def machine() -> dict[str, Any]:
    from importlib import metadata

    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory, "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions}


def write_result(name: str, result: dict[str, Any], size: str, out_dir: Path = RESULTS,
                 baseline: Mapping[str, Any] | None = None, compare: bool = False) -> Path:
    """bench/results/<name>.json; with `compare`, the figures' change against `baseline` (the committed result)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"name": name, "size": size, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": machine(), **result}
    if compare:
        payload["compared"] = compare_result(payload, baseline)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def render_table(results_dir: Path = RESULTS) -> str:
    results = [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))]
    lines = ["# Benchmark results", "",
             "Written by `make bench` (bench/run_all.py); every figure is a median of repeated runs and "
             "every comparison a ratio measured in the same run.", ""]
    if results:
        m = results[0]["machine"]
        versions = ", ".join(f"{k} {v}" for k, v in sorted(m["versions"].items()))
        lines += [f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}; "
                  f"{versions}.", ""]
    for result in results:
        compared = result.get("compared") or {}
        said = f" {compared['said']}" if compared.get("said") else ""
        lines += [f"## {result['title']}", "",
                  f"{result['date']}, size `{result['size']}`.{said}", "",
                  "| metric | value | target | met | vs committed |", "|---|---|---|---|---|"]
        for row in result["rows"]:
            value = row["value"]
            shown = f"{value:,.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
            target = row.get("target", "")
            met = {True: "yes", False: "**no**", None: ""}[row.get("met")]
            note = f" ({row['note']})" if row.get("note") else ""
            change = cell((compared.get("rows") or {}).get(row["metric"]))
            lines.append(f"| {row['metric']}{note} | {shown} {row.get('unit', '')} | {target} | {met} | {change} |")
        lines.append("")
    if any(r.get("compared") for r in results):
        lines += [NOISE_LEGEND, ""]
    return "\n".join(lines)


NOISE_LEGEND = ("\"vs committed\": the change from bench/results/<name>.json as committed before this run; "
                "**regressed** / improved when it is beyond the figure's noise, the relative spread (max - min) / "
                "median of the repeated runs (the larger of the two runs'), at least 5 % (\"floor only\": no "
                "spread stored). See bench/README.md.")


def main(name: str, run: Callable[[str], dict[str, Any]], argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    size = "smoke" if "--smoke" in argv else "full"
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else RESULTS
    baseline = committed(name, ROOT)  # before the run overwrites it
    result = run(size)
    path = write_result(name, result, size, out, baseline=baseline, compare=True)
    print(f"{name}: wrote {path}")
    return 0


def python(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run this interpreter in a fresh process (cold imports, isolated memory)."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)
