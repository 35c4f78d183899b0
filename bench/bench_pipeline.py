"""The local pipeline: wall time of `mlops-local run` on the full data, per stage, and the share
that is orchestration (the execution's wall time minus the jobs' own run time)."""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT, main, python

NAME = "pipeline"
TARGET_WALL = 60.0
TARGET_SHARE = 0.03
TARGET_IAM_GROWTH = 0.05


def one_run(data: Path, runs: Path, extra: list[str]) -> dict:
    done = python("-m", "mlops_local.cli", "run", "--json", "--runs-dir", str(runs), "--data", str(data),
                  *extra, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"mlops-local run exited {done.returncode}: {done.stderr[-3000:]}\n"
                           f"{done.stdout[-3000:]}")
    return json.loads(done.stdout)


def run(size: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        if size == "smoke":
            from mlops_local.synthetic import write_sample

            data = write_sample(ROOT / "data" / "diamonds.csv.gz", ROOT / "data" / "diamonds.yaml",
                                Path(tmp) / "sample.csv", every=40)
            extra, repeats = ["-H", "epochs=2", "--quality-threshold", "100000"], 1
        else:
            data, extra, repeats = ROOT / "data" / "diamonds.csv.gz", [], 3
        # Enforced and not, interleaved, so drift of the machine hits both alike.
        summaries, unenforced = [], []
        for i in range(repeats):
            summaries.append(one_run(data, Path(tmp) / f"runs{i}", extra))
            unenforced.append(one_run(data, Path(tmp) / f"off{i}", [*extra, "--no-enforce-iam"]))

    def med(values):
        return statistics.median(values)

    wall = med([s["timings"]["wall_seconds"] for s in summaries])
    jobs = med([s["timings"]["job_seconds"] for s in summaries])
    orchestration = med([s["timings"]["orchestration_seconds"] for s in summaries])
    share = orchestration / wall if wall else float("nan")
    total = med([s["timings"].get("total_seconds", 0.0) for s in summaries])
    rows = [
        {"metric": "pipeline execution wall time", "value": wall, "unit": "s", "target": f"<= {TARGET_WALL:g} s",
         "met": wall <= TARGET_WALL},
        {"metric": "jobs' own run time (Glue, training, processing)", "value": jobs, "unit": "s"},
        {"metric": "orchestration", "value": orchestration, "unit": "s"},
        {"metric": "orchestration share", "value": share * 100, "unit": "%", "target": f"<= {TARGET_SHARE:.0%}",
         "met": share <= TARGET_SHARE,
         "note": "" if share <= TARGET_SHARE else f"{share / TARGET_SHARE:.1f}x the target; each Lambda's first "
                 "invocation cold-starts a child interpreter on the critical path"},
        {"metric": "whole `mlops-local run` (stand-in start, deploy.sh, upload, execution)",
         "value": total, "unit": "s"},
    ]
    wall_off = med([s["timings"]["wall_seconds"] for s in unenforced])
    orchestration_off = med([s["timings"]["orchestration_seconds"] for s in unenforced])
    growth = (wall - wall_off) / wall_off if wall_off else float("nan")
    rows.append({"metric": "IAM enforcement: execution wall time added", "value": growth * 100, "unit": "%",
                 "target": f"<= {TARGET_IAM_GROWTH:.0%}", "met": growth <= TARGET_IAM_GROWTH,
                 "note": f"median {wall:.1f} s enforced / {wall_off:.1f} s with --no-enforce-iam; orchestration "
                         f"{orchestration:.2f} s / {orchestration_off:.2f} s"})
    stages = [s["name"] for s in summaries[0]["stages"]]
    for stage in stages:
        seconds = med([next(x["seconds"] for x in s["stages"] if x["name"] == stage) for s in summaries])
        rows.append({"metric": f"stage {stage}", "value": seconds, "unit": "s"})
    return {"title": "Local pipeline (`mlops-local run`)", "rows": rows,
            "details": {"repeats": repeats, "runs": [s["timings"] for s in summaries],
                        "rmse": [s["metrics"]["rmse"] for s in summaries],
                        "floor": "Spark session start ~5 s and TensorFlow import ~4 s are inside the jobs"}}


if __name__ == "__main__":
    sys.exit(main(NAME, run))
