"""`make bench`: every bench/bench_*.py at full size, then bench/RESULTS.md from the results."""
from __future__ import annotations

import importlib
import sys
import time

from bench.common import BENCH, RESULTS, TABLE, render_table, write_result


def modules() -> list[str]:
    return sorted(p.stem for p in BENCH.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    size = "smoke" if "--smoke" in argv else "full"
    chosen = [a for a in argv if not a.startswith("--")] or modules()
    for name in chosen:
        module = importlib.import_module(f"bench.{name}")
        started = time.perf_counter()
        print(f"== {module.NAME} ({size})", flush=True)
        write_result(module.NAME, module.run(size), size)
        print(f"   {time.perf_counter() - started:.0f} s", flush=True)
    TABLE.write_text(render_table(RESULTS))
    print(f"wrote {TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
