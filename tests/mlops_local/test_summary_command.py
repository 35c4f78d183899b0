"""`mlops-local summary <execution-id>` against a stand-in it shares no object with: the engine stand
runs a small pipeline to a failure, `follow()` shows it, and the command summarises it through
AWS_ENDPOINT_URL alone (public API answers), as it would a `--keep-running` run or AWS."""
from __future__ import annotations

import json

import pytest

from mlops_local.cli import main
from mlops_local.console import Console
from mlops_local.pipeline_run import follow
from mlops_local.iam.principals import ADMIN_USER
from tests.mlops_local.engine_stand import (HERE, actions_of, create_function, create_pipeline, data_source,
                                            lambda_action, wait_done, wait_for)

APPROVAL = {"category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1"}

PIPELINE = "summarised"


@pytest.fixture(scope="module")
def failed_execution(stand):
    """An execution that worked a stage, then failed at Judge; what follow() showed of it."""
    create_function(stand, "summarised-work", f"{HERE}.sleep_handler")
    create_function(stand, "summarised-judge", f"{HERE}.reject_handler")
    create_pipeline(stand, PIPELINE, [
        data_source(),
        {"name": "Work", "actions": [lambda_action("Sleep", "summarised-work", {"seconds": 0, "value": "v"},
                                                   namespace="Work")]},
        {"name": "Judge", "actions": [lambda_action("Evaluate", "summarised-judge")]},
        {"name": "After", "actions": [lambda_action("Never", "summarised-work")]}])
    execution_id = stand.aws.client("codepipeline").start_pipeline_execution(name=PIPELINE)["pipelineExecutionId"]
    lines: list[str] = []
    status = follow(stand, PIPELINE, execution_id, Console(lines.append), timeout=60)  # duck-typed: aws, runtime
    return execution_id, status, lines


def test_follow_shows_each_action_and_the_executions_end(failed_execution):
    execution_id, status, lines = failed_execution

    assert status == "Failed"
    assert "  Judge/Evaluate: Failed" in "\n".join(lines)
    assert any(line.startswith("  Judge/Evaluate: Failed (") and line.endswith(
        " - model REJECTED: rmse 700 > threshold 600") for line in lines)
    assert lines[-1].startswith(f"execution {execution_id}: Failed")


@pytest.mark.parametrize("extra", [[], ["--pipeline", PIPELINE]], ids=["pipeline-found", "pipeline-named"])
def test_summary_command_writes_the_runs_files_from_the_api_alone(stand, failed_execution, tmp_path, monkeypatch,
                                                                  capsys, extra):
    execution_id, _, _ = failed_execution
    monkeypatch.setenv("AWS_ENDPOINT_URL", stand.aws.url)

    code = main(["summary", execution_id, "--runs-dir", str(tmp_path), "--json", *extra])

    out, err = capsys.readouterr()
    assert code == 0
    summary = json.loads(out)  # stdout is the JSON alone; where the files are goes to stderr
    assert summary == json.loads((tmp_path / execution_id / "summary.json").read_text())
    assert f"{tmp_path / execution_id / 'report.md'}" in err
    assert (summary["status"], summary["decision"], summary["failed_stage"]) == ("Failed", None, "Judge")
    assert [(s["name"], s["status"]) for s in summary["stages"]] == [
        ("Source", "Succeeded"), ("Work", "Succeeded"), ("Judge", "Failed"), ("After", "Skipped")]
    assert summary["access"] is None and "no public API" in summary["access_unavailable"]
    assert (summary["endpoints"], summary["approval"]) == ({"dev": None, "prod": None}, None)  # no such stages
    report = (tmp_path / execution_id / "report.md").read_text()
    assert "decision: **none (failed at Judge)**" in report
    assert "## Access\n\nNot available: the access log is recorded by the stand-in's gateway" in report


def test_summary_of_an_unknown_execution_is_a_json_error(stand, failed_execution, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", stand.aws.url)

    code = main(["summary", "00000000-0000-0000-0000-000000000000", "--runs-dir", str(tmp_path), "--json"])

    answer = json.loads(capsys.readouterr().out)
    assert code == 1 and answer["exit_code"] == 1
    assert answer["error"].startswith("cannot summarise 00000000-0000-0000-0000-000000000000: no pipeline has")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("verb, status", [("approve", "Approved"), ("reject", "Rejected")])
def test_summary_command_names_the_approval_and_who_answered_it(stand, tmp_path, monkeypatch, capsys, verb, status):
    """Who answered comes from GetPipelineState's lastUpdatedBy (this ListActionExecutions gives no updatedBy)."""
    name = f"summarised-{verb}"
    create_function(stand, f"{name}-deploy", f"{HERE}.sleep_handler")
    create_pipeline(stand, name, [data_source(), {"name": "Approval", "actions": [{
        "name": "ApproveForProd", "actionTypeId": APPROVAL, "runOrder": 1,
        "configuration": {"CustomData": "rmse 512"}}]},
        {"name": "Production", "actions": [lambda_action("Deploy", f"{name}-deploy", params={"seconds": 0})]}])
    execution_id = stand.aws.client("codepipeline").start_pipeline_execution(name=name)["pipelineExecutionId"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", stand.aws.url)
    wait_for(lambda: actions_of(stand, name, execution_id).get("ApproveForProd", {}).get("status") == "InProgress",
             what="the approval to wait")
    assert main([verb, execution_id, "--summary", "looked at it"]) == 0
    wait_done(stand, name, execution_id)
    capsys.readouterr()

    assert main(["summary", execution_id, "--runs-dir", str(tmp_path), "--json"]) == 0

    summary = json.loads(capsys.readouterr().out)
    by = f"arn:aws:iam::{stand.aws.account_id}:user/{ADMIN_USER}"
    message = "looked at it" if status == "Approved" else f"Rejected by {by}: looked at it"
    assert summary["approval"] == {"stage": "Approval", "action": "ApproveForProd", "status": status,
                                   "summary": message, "by": by, "custom_data": "rmse 512"}
    report = (tmp_path / execution_id / "report.md").read_text()
    assert f"- approval Approval/ApproveForProd: {status if status == 'Rejected' else 'Approved by ' + by}" in report
