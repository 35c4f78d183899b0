"""The whole run's phase table (bench/bench_pipeline.py): moments from progress lines, phases from the summary."""
from __future__ import annotations

import pytest

from bench.bench_pipeline import moments, orchestration_parts, phase_table, phases, share_note

LINES = [
    (2.0, "local AWS stand-in on http://127.0.0.1:1 (work dir w)"),
    (2.1, "approvals are answered automatically (--auto-approve); without it the run waits"),
    (6.0, "deployed stack mlops-pipeline with scripts/deploy.sh (prod updates bake 3 s a step locally)"),
    (8.0, "uploaded diamonds.csv.gz and diamonds.yaml with scripts/upload_data.sh"),
    (8.1, "the data upload started execution e-1 of mlops (EventBridge rule r)"),
    (9.0, "  Source/Source: Succeeded (0.2 s)"),
    (28.0, "execution e-1: Succeeded"),
    (29.0, "results: runs/e-1/summary.json, runs/e-1/report.md"),
    (29.1, "dev serves ..."),
]


@pytest.mark.parametrize("lines, expected", [
    pytest.param(LINES, {"stand_in_up": 2.0, "deployed": 6.0, "uploaded": 8.0, "execution_ended": 28.0,
                         "results": 29.0}, id="whole-run"),
    pytest.param([(0.5, "execution lookalike before the stand-in"), *LINES],
                 {"stand_in_up": 2.0, "deployed": 6.0, "uploaded": 8.0, "execution_ended": 28.0, "results": 29.0},
                 id="lookalike-before-its-turn"),
    pytest.param(LINES[:3], {"stand_in_up": 2.0, "deployed": 6.0}, id="deploy-failed"),
])
def test_moments(lines, expected):
    assert moments(lines) == expected


def summary(wall=20.5, setup=6.5):
    return {"_moments": {**moments(LINES), "stdout": 30.0, "exit": 30.5},
            "timings": {"wall_seconds": wall, "setup_seconds": setup},
            "stages": [{"name": "Source", "seconds": 0.5}, {"name": "Training", "seconds": 18.0}]}


def test_phases_add_up_to_the_process_wall_time():
    table = phases(summary())
    assert sum(seconds for _, seconds in table) == pytest.approx(30.5)
    by_name = dict(table)
    assert by_name["python start, imports, preflight"] == pytest.approx(1.0)  # 28 - 20.5 - 6.5
    assert by_name["stand-in start"] == pytest.approx(1.0)
    assert by_name["deploy.sh"] == pytest.approx(4.0)
    assert by_name["upload_data.sh"] == pytest.approx(2.0)
    assert by_name["upload end to the execution's start"] == pytest.approx(-0.5)  # started during the upload
    assert by_name["execution: stage Training"] == pytest.approx(18.0)
    assert by_name["execution: between stages"] == pytest.approx(2.0)
    assert by_name["summary and report writing"] == pytest.approx(1.0)
    assert by_name["stand-in stop, CloudWatch Logs export, report on stdout"] == pytest.approx(1.0)
    assert by_name["interpreter exit"] == pytest.approx(0.5)


def test_phase_table_lists_every_phase_and_the_total():
    text = phase_table(phases(summary()), 30.5)
    assert "deploy.sh" in text and "execution: stage Training" in text
    assert text.splitlines()[-1].split()[-1] == "30.50"


def test_orchestration_parts_add_up_to_the_orchestration():
    """Each stage minus the job it runs (none: all of it), then the time between stages."""
    run = {"timings": {"wall_seconds": 20.5, "orchestration_seconds": 3.5, "jobs": {"training": 17.0}},
           "stages": [{"name": "Source", "seconds": 0.5}, {"name": "Training", "seconds": 18.0}]}
    parts = orchestration_parts(run)
    assert parts == [("stage Source (no job)", 0.5), ("stage Training minus its job", pytest.approx(1.0)),
                     ("between stages", pytest.approx(2.0))]
    assert sum(seconds for _, seconds in parts) == pytest.approx(run["timings"]["orchestration_seconds"])
    note = share_note([run], 3.5 / 20.5)
    assert note.startswith("5.7x the target") and "0.50 s = 2.4% by themselves" in note
    assert "largest parts: between stages 2.00 s, stage Training minus its job 1.00 s" in note
