"""The regression guard: each new figure against the committed one (bench/results/<name>.json in git HEAD).

A change counts only beyond the figure's noise: the relative spread (max - min) / median of the repeated
runs behind it, the larger of the new and the committed run's, never below FLOOR. A row without a stored
spread is judged on the floor alone, and the table says so. Which way is better comes from the row's
"better" ("higher", "lower" or "neither"), else from METRIC_RULES, else from the unit (UNIT_BETTER);
a figure with no direction gets its change shown and no marker.
"""
from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any, Mapping

FLOOR = 0.05  # 5 %: two clean runs of the same commit on this machine differ by about this much
HIGHER, LOWER, NEITHER = "higher", "lower", "neither"
# Ratios ("x") and percentages point either way: decided by the metric's name, first match wins.
METRIC_RULES: tuple[tuple[str, str], ...] = (
    ("spark/pandas speed", HIGHER),
    ("scaling efficiency", HIGHER),
    ("throughput ratio", HIGHER),
    ("rmse ratio", LOWER),
    ("importing boto3", LOWER),   # "N of M" handler modules: the unit names M, which grows with the modules
    ("server cpu", NEITHER),      # CPU used at a fixed load: a diagnostic, not a score
    ("epochs run", NEITHER),      # how long training ran, judged through its wall time
)
UNIT_BETTER = {
    "rows/s": HIGHER, "req/s": HIGHER, "examples/s": HIGHER,
    "s": LOWER, "ms": LOWER, "MB": LOWER, "KB": LOWER, "%": LOWER, "USD": LOWER, "calls": LOWER,
}


def better(row: Mapping[str, Any]) -> str:
    """Which way the figure should move."""
    if row.get("better") in (HIGHER, LOWER, NEITHER):
        return str(row["better"])
    metric = str(row.get("metric", "")).lower()
    for pattern, direction in METRIC_RULES:
        if pattern in metric:
            return direction
    return UNIT_BETTER.get(str(row.get("unit", "")), NEITHER)


def spread_of(values: list[float]) -> dict[str, float]:
    """What a row stores about its repeated runs: {"min", "max", "n"}."""
    return {"min": min(values), "max": max(values), "n": len(values)}


def relative_spread(row: Mapping[str, Any] | None) -> float | None:
    """(max - min) / |value| of the row's repeated runs; None when it stored none (or a single run)."""
    spread = (row or {}).get("spread")
    value: Any = (row or {}).get("value")
    if not isinstance(spread, Mapping) or not _number(value) or spread.get("n", 0) < 2:
        return None
    if value == 0:
        return None
    return abs(float(spread["max"]) - float(spread["min"])) / abs(float(value))


def noise(new: Mapping[str, Any], old: Mapping[str, Any], floor: float = FLOOR) -> tuple[float, bool]:
    """The relative change that is still noise, and whether a stored spread (not only the floor) decided it."""
    spreads = [s for s in (relative_spread(new), relative_spread(old)) if s is not None]
    return max([floor, *spreads]), bool(spreads)


def compare_row(new: Mapping[str, Any], old: Mapping[str, Any] | None, floor: float = FLOOR) -> dict[str, Any]:
    """One figure against its committed value: {"change", "noise", "from_spread", "verdict"}.

    verdict: "regressed" / "improved" beyond noise the wrong / right way, "changed" beyond noise with no
    direction, "same" within noise, "new" with nothing committed to compare with, "" when not a number.
    """
    if not _number(new.get("value")):
        return {"verdict": ""}
    if old is None or not _number(old.get("value")):
        return {"verdict": "new"}
    before, after = float(old["value"]), float(new["value"])
    if before == 0:
        change = 0.0 if after == 0 else math.copysign(math.inf, after)
    else:
        change = (after - before) / abs(before)
    threshold, from_spread = noise(new, old, floor)
    direction = better(new)
    if abs(change) <= threshold:
        verdict = "same"
    elif direction == NEITHER:
        verdict = "changed"
    elif (change > 0) == (direction == HIGHER):
        verdict = "improved"
    else:
        verdict = "regressed"
    return {"change": change, "noise": threshold, "from_spread": from_spread, "verdict": verdict}


def compare_result(new: Mapping[str, Any], old: Mapping[str, Any] | None, floor: float = FLOOR) -> dict[str, Any]:
    """A whole benchmark against its committed result, row by row (matched on the metric's name):
    {"to": the committed date or None, "said": one sentence for RESULTS.md, "rows": {metric: compare_row}}.

    Compared only at the same size; a committed result from another machine is compared, and said."""
    if old is None:
        return {"to": None, "said": "Nothing committed to compare with.", "rows": {}}
    if old.get("size") != new.get("size"):
        return {"to": old.get("date"), "rows": {},
                "said": f"Not compared: the committed result ({old.get('date')}) is of size `{old.get('size')}`."}
    committed_rows = {row["metric"]: row for row in old.get("rows", [])}
    rows = {row["metric"]: compare_row(row, committed_rows.get(row["metric"]), floor) for row in new.get("rows", [])}
    said = f"Compared with the committed result of {old.get('date')}"
    here, there = new.get("machine") or {}, old.get("machine") or {}
    if (here.get("cpu"), here.get("cores")) != (there.get("cpu"), there.get("cores")):
        said += f", measured on another machine ({there.get('cpu')}, {there.get('cores')} cores)"
    regressed = sorted(metric for metric, row in rows.items() if row.get("verdict") == "regressed")
    said += f"; **{len(regressed)} regressed**." if regressed else "; nothing regressed."
    return {"to": old.get("date"), "said": said, "rows": rows}


def cell(compared: Mapping[str, Any] | None) -> str:
    """The "vs committed" cell: the relative change and, beyond noise, a marker."""
    if not compared or not compared.get("verdict"):
        return ""
    verdict = compared["verdict"]
    if verdict == "new":
        return "new"
    change = compared["change"]
    shown = f"{change * 100:+.1f} %" if math.isfinite(change) else ("+inf" if change > 0 else "-inf")
    if verdict == "same":
        return shown
    marker = {"regressed": "**regressed**", "improved": "improved", "changed": "changed"}[verdict]
    basis = "" if compared.get("from_spread") else ", floor only"
    return f"{shown} {marker} (noise {compared['noise'] * 100:.0f} %{basis})"


def committed(name: str, root: Path, ref: str = "HEAD") -> dict[str, Any] | None:
    """bench/results/<name>.json as committed at `ref`; None when it is not there (or no git)."""
    try:
        shown = subprocess.run(["git", "show", f"{ref}:bench/results/{name}.json"], cwd=root,
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if shown.returncode != 0:
        return None
    try:
        loaded = json.loads(shown.stdout)
    except ValueError:
        return None
    return loaded if isinstance(loaded, dict) else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
