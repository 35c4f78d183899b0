"""The local pipeline: wall time of `mlops-local run` on the full data, per stage, the share that is
orchestration (the execution's wall time minus the jobs' own run time), and where the whole run's time
goes, phase by phase (PHASES), from the moments its progress lines arrive and the summary's timings."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.common import ROOT, main, spread_of

NAME = "pipeline"
TARGET_WALL = 60.0
TARGET_WHOLE = 30.0
TARGET_SHARE = 0.03
TARGET_IAM_GROWTH = 0.05
TIMEOUT = 900.0  # seconds for one run
# The moments of pipeline_run.run_pipeline seen from outside: the first progress line starting so.
MARKS = {
    "stand_in_up": "local AWS stand-in on ",
    "deployed": "deployed stack ",
    "uploaded": "uploaded ",
    "execution_ended": "execution ",  # follow()'s last line, "execution <id>: <status>"
    "results": "results: ",
}
PHASES = ("python start, imports, preflight", "stand-in start", "deploy.sh", "upload_data.sh",
          "upload end to the execution's start")
AFTER = ("summary and report writing", "stand-in stop, CloudWatch Logs export, report on stdout",
         "interpreter exit")
TRANSITIONS = "execution: between stages"
# Where each job of summary timings["jobs"] runs: the rest of that stage's time is orchestration.
JOB_STAGES = {"glue": "DataAndFeatureEngineering", "training": "Training", "processing": "Evaluation"}


def one_run(data: Path, runs: Path, extra: Sequence[str]) -> dict[str, Any]:
    """One `mlops-local run --json --auto-approve` in a fresh process: its summary, with "_moments" added:
    seconds from the process start to each MARKS line, to the JSON on stdout ("stdout") and to the exit."""
    command = [sys.executable, "-m", "mlops_local.cli", "run", "--json", "--auto-approve", "--runs-dir", str(runs),
               "--data", str(data), *extra]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines: list[tuple[float, str]] = []

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append((time.perf_counter() - started, line.rstrip("\n")))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    watchdog = threading.Timer(TIMEOUT, process.kill)  # a hung run ends the reads below
    watchdog.start()
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # the summary's "{": printed after the stand-in stopped
        stdout_at = time.perf_counter() - started
        out = first + process.stdout.read()
        code = process.wait()
        exited = time.perf_counter() - started
    finally:
        watchdog.cancel()
    reader.join(timeout=10)
    if code != 0:
        tail = "\n".join(line for _, line in lines[-30:])
        raise RuntimeError(f"mlops-local run exited {code}: {tail}\n{out[-3000:]}")
    summary: dict[str, Any] = json.loads(out)
    summary["_moments"] = {**moments(lines), "stdout": stdout_at, "exit": exited}
    return summary


def moments(lines: Sequence[tuple[float, str]]) -> dict[str, float]:
    """Seconds to each MARKS line, looked for in MARKS order, each after the one before (so another line that
    happens to start alike earlier cannot be taken for it); a mark never said is missing, and so are the later."""
    found: dict[str, float] = {}
    position = 0
    for kind, prefix in MARKS.items():
        for index in range(position, len(lines)):
            at, line = lines[index]
            if line.startswith(prefix):
                found[kind], position = at, index + 1
                break
        else:
            return found
    return found


def phases(summary: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The whole run, phase by phase, in order; the seconds add up to the process's wall time.

    The execution's start is its end line minus the summary's wall_seconds, and run_pipeline's start
    (after imports and preflight) is that minus the summary's setup_seconds (both measured inside)."""
    at = summary["_moments"]
    timings = summary["timings"]
    execution_start = at["execution_ended"] - timings["wall_seconds"]
    pipeline_start = min(max(execution_start - timings.get("setup_seconds", 0.0), 0.0), at["stand_in_up"])
    before = (pipeline_start, at["stand_in_up"] - pipeline_start, at["deployed"] - at["stand_in_up"],
              at["uploaded"] - at["deployed"], execution_start - at["uploaded"])
    table = list(zip(PHASES, before))
    stages = [(f"execution: stage {s['name']}", float(s["seconds"])) for s in summary.get("stages", [])]
    table += stages
    table.append((TRANSITIONS, timings["wall_seconds"] - sum(seconds for _, seconds in stages)))
    after = (at["results"] - at["execution_ended"], at["stdout"] - at["results"], at["exit"] - at["stdout"])
    table += list(zip(AFTER, after))
    return table


def orchestration_parts(summary: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The execution's orchestration, part by part: each stage's seconds minus its job's own run time
    (a stage with no job is all orchestration), then the time between stages; they add up to
    timings["orchestration_seconds"] (the execution's wall time minus the jobs' own run time)."""
    jobs = summary["timings"].get("jobs", {})
    in_stage = {JOB_STAGES[kind]: seconds for kind, seconds in jobs.items() if kind in JOB_STAGES}
    stages = summary.get("stages", [])
    parts = [(f"stage {s['name']}" + (" minus its job" if s["name"] in in_stage else " (no job)"),
              float(s["seconds"]) - in_stage.get(s["name"], 0.0)) for s in stages]
    parts.append(("between stages", summary["timings"]["wall_seconds"] - sum(float(s["seconds"]) for s in stages)))
    return parts


def phase_table(rows: Sequence[tuple[str, float]], total: float) -> str:
    """The phases as a text table, each with its share of the total."""
    width = max(len(name) for name, _ in rows)
    lines = [f"{'phase':<{width}}  {'seconds':>8}  {'share':>6}"]
    lines += [f"{name:<{width}}  {seconds:8.2f}  {seconds / total:6.1%}" for name, seconds in rows]
    lines.append(f"{'total (process start to exit)':<{width}}  {total:8.2f}")
    return "\n".join(lines)


def share_note(summaries: Sequence[Mapping[str, Any]], share: float) -> str:
    """How far the share is from its target and what holds it there, from the median run's parts."""
    ordered = sorted(summaries, key=lambda s: s["timings"]["orchestration_seconds"])
    median_run = ordered[len(ordered) // 2]
    parts = orchestration_parts(median_run)
    wall = median_run["timings"]["wall_seconds"]
    jobless = sum(seconds for name, seconds in parts if name.endswith("(no job)"))
    largest = sorted(parts, key=lambda part: -part[1])[:3]
    return (f"{share / TARGET_SHARE:.1f}x the target; the stages with no job (sources, image builds, "
            f"endpoint stacks and tests, approval) are {jobless:.2f} s = {jobless / wall:.1%} by themselves; "
            f"largest parts: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in largest))


def run(size: str) -> dict[str, Any]:
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

    def measured(metric: str, values: list[float], unit: str, **extra_fields: Any) -> dict[str, Any]:
        return {"metric": metric, "value": statistics.median(values), "unit": unit, "spread": spread_of(values),
                **extra_fields}

    def timing(key: str, of: list[dict[str, Any]] = summaries) -> list[float]:
        return [float(s["timings"][key]) for s in of]

    wall = statistics.median(timing("wall_seconds"))
    orchestration = statistics.median(timing("orchestration_seconds"))
    shares = [s["timings"]["orchestration_seconds"] / s["timings"]["wall_seconds"] * 100 for s in summaries]
    share = statistics.median(shares) / 100
    wholes = [s["_moments"]["exit"] for s in summaries]
    whole = statistics.median(wholes)
    rows = [
        measured("pipeline execution wall time", timing("wall_seconds"), "s", target=f"<= {TARGET_WALL:g} s",
                 met=wall <= TARGET_WALL),
        measured("jobs' own run time (Glue, training, processing)", timing("job_seconds"), "s"),
        measured("orchestration", timing("orchestration_seconds"), "s"),
        measured("orchestration share", shares, "%", target=f"<= {TARGET_SHARE:.0%}", met=share <= TARGET_SHARE,
                 note="" if share <= TARGET_SHARE else share_note(summaries, share)),
        measured("whole `mlops-local run --auto-approve`, process start to exit", wholes, "s",
                 target=f"<= {TARGET_WHOLE:g} s", met=whole <= TARGET_WHOLE,
                 note=f"{whole - TARGET_WHOLE:+.1f} s from the target, {whole / TARGET_WHOLE:.2f}x; the phases below"),
    ]
    walls_off = timing("wall_seconds", unenforced)
    wall_off = statistics.median(walls_off)
    orchestration_off = statistics.median(timing("orchestration_seconds", unenforced))
    growths = [(on - off) / off * 100 for on, off in zip(timing("wall_seconds"), walls_off)]
    growth = (wall - wall_off) / wall_off if wall_off else float("nan")
    rows.append({"metric": "IAM enforcement: execution wall time added", "value": growth * 100, "unit": "%",
                 "target": f"<= {TARGET_IAM_GROWTH:.0%}", "met": growth <= TARGET_IAM_GROWTH,
                 "better": "neither",  # a difference of two noisy medians: judged against its target, not the past
                 "spread": spread_of(growths),
                 "note": f"median {wall:.1f} s enforced / {wall_off:.1f} s with --no-enforce-iam; orchestration "
                         f"{orchestration:.2f} s / {orchestration_off:.2f} s"})
    parts_per_run = [orchestration_parts(s) for s in summaries]
    for i, (name, _) in enumerate(parts_per_run[0]):
        values = [parts[i][1] for parts in parts_per_run if len(parts) == len(parts_per_run[0])]
        rows.append(measured(f"orchestration: {name}", values, "s"))
    per_run = [phases(s) for s in summaries]
    names = [name for name, _ in per_run[0]]
    medians = []
    for i, name in enumerate(names):
        values = [table[i][1] for table in per_run if len(table) == len(names)]
        medians.append((name, statistics.median(values)))
        rows.append(measured(f"phase: {name}", values, "s"))
    print(phase_table(medians, whole), flush=True)
    return {"title": "Local pipeline (`mlops-local run`)", "rows": rows,
            "details": {"repeats": repeats, "runs": [s["timings"] for s in summaries],
                        "moments": [s["_moments"] for s in summaries],
                        "phases": [dict(table) for table in per_run],
                        "rmse": [s["metrics"]["rmse"] for s in summaries],
                        "phase_method": "each phase ends when its progress line reaches the benchmark (stderr, "
                                        "flushed per line) or, for the execution, from the summary's wall_seconds "
                                        "and per-stage seconds; medians per phase, so they need not add up to the "
                                        "median total exactly",
                        "floor": "Spark session start ~5 s and TensorFlow import ~4 s are inside the jobs"}}


if __name__ == "__main__":
    sys.exit(main(NAME, run))
