"""`make bench`: every bench/bench_*.py at full size, then bench/RESULTS.md from the results.

Each figure is compared with the committed result (bench/results/<name>.json in git HEAD, read before
any benchmark overwrites it); RESULTS.md marks the changes beyond noise (bench/compare.py)."""
from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH, RESULTS, ROOT, TABLE, render_table, write_result
from bench.compare import committed


def modules() -> list[str]:
    return sorted(p.stem for p in BENCH.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    size = "smoke" if "--smoke" in argv else "full"
    chosen = [a for a in argv if not a.startswith("--")] or modules()
    loaded = [importlib.import_module(f"bench.{name}") for name in chosen]
    baselines = {module.NAME: committed(module.NAME, ROOT) for module in loaded}
    for module in loaded:
        started = time.perf_counter()
        print(f"== {module.NAME} ({size})", flush=True)
        path = write_result(module.NAME, module.run(size), size, baseline=baselines[module.NAME], compare=True)
        print(f"   {time.perf_counter() - started:.0f} s", flush=True)
        regressed = [m for m, row in _compared(path).items() if row.get("verdict") == "regressed"]
        for metric in regressed:
            print(f"   regressed: {metric}", flush=True)
    TABLE.write_text(render_table(RESULTS))
    print(f"wrote {TABLE}")
    return 0


def _compared(path: Path) -> dict[str, Any]:
    return (json.loads(path.read_text()).get("compared") or {}).get("rows") or {}


if __name__ == "__main__":
    sys.exit(main())
