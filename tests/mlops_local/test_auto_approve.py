"""`mlops-local run --auto-approve`: a watcher answers every waiting Manual approval through the public API, as
the mlops-local user (IAM-judged), in every execution that waits; it stops with no thread left. Without it,
follow() says once how to answer the approval and keeps waiting."""
from __future__ import annotations

import json
import threading

import pytest

from mlops_local.approvals import AUTO_SUMMARY, AutoApprover, answer
from mlops_local.console import Console
from mlops_local.iam.principals import ADMIN_USER
from mlops_local.pipeline_run import AUTO_APPROVE_LINE, LocalPipeline, follow
from tests.conftest import ROOT
from tests.mlops_local.engine_stand import (HERE, Stand, actions_of, create_function, create_pipeline, data_source,
                                            lambda_action, wait_done, wait_for)

APPROVAL = {"category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1"}


def approval_pipeline(stand: Stand, name: str, mode: str = "QUEUED") -> None:
    """Source, Approve/Review (Manual), Prod/Deploy (a Lambda that returns at once)."""
    create_function(stand, f"{name}-deploy", f"{HERE}.sleep_handler")
    create_pipeline(stand, name, [data_source(), {"name": "Approve", "actions": [{
        "name": "Review", "actionTypeId": APPROVAL, "runOrder": 1, "configuration": {"CustomData": "rmse 512"}}]},
        {"name": "Prod", "actions": [lambda_action("Deploy", f"{name}-deploy", params={"seconds": 0})]}], mode=mode)


def no_watcher_thread() -> bool:
    return not any(thread.name == "auto-approve" for thread in threading.enumerate())


@pytest.mark.parametrize("mode", ["QUEUED", "PARALLEL"], ids=["queued", "parallel-token-from-list-actions"])
def test_every_waiting_execution_is_approved_as_the_mlops_local_user(stand: Stand, mode: str) -> None:
    name = f"auto-{mode.lower()}"
    approval_pipeline(stand, name, mode)
    cp = stand.aws.client("codepipeline")
    # Woken only by the engine's approval signal: a period longer than the wait proves the signal works.
    approver = AutoApprover(stand.aws.client("codepipeline"), stand.runtime.approvals, period=120).start()
    try:
        executions = [cp.start_pipeline_execution(name=name)["pipelineExecutionId"] for _ in range(2)]
        for execution_id in executions:  # QUEUED: the second waits for the first to leave the stage
            assert wait_done(stand, name, execution_id, timeout=30)["status"] == "Succeeded"
    finally:
        approver.stop()
    assert no_watcher_thread()
    assert sorted(a.execution_id for a in approver.answered) == sorted(executions)
    assert approver.errors == []
    for execution_id in executions:
        review = actions_of(stand, name, execution_id)["Review"]
        assert review["output"]["executionResult"]["externalExecutionSummary"] == AUTO_SUMMARY
    if mode == "QUEUED":  # the answerer GetPipelineState shows: the client's principal, not the engine
        latest = cp.get_pipeline_state(name=name)["stageStates"][1]["actionStates"][0]["latestExecution"]
        assert latest["lastUpdatedBy"] == f"arn:aws:iam::{stand.aws.account_id}:user/{ADMIN_USER}"


def test_a_principal_iam_denies_cannot_approve_and_the_watcher_says_so(stand: Stand) -> None:
    """The watcher's PutApprovalResult is judged like any request: a user without the permission is refused."""
    approval_pipeline(stand, "auto-denied")
    iam = stand.aws.client("iam")
    iam.create_user(UserName="auto-reader")
    iam.put_user_policy(UserName="auto-reader", PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Sid": "Read", "Effect": "Allow", "Resource": "*", "Action": [
            "codepipeline:ListPipelines", "codepipeline:ListPipelineExecutions", "codepipeline:GetPipelineState",
            "codepipeline:ListActionExecutions"]}]}))
    key = iam.create_access_key(UserName="auto-reader")["AccessKey"]
    reader = stand.aws.client("codepipeline", aws_access_key_id=key["AccessKeyId"],
                              aws_secret_access_key=key["SecretAccessKey"], aws_session_token=None)
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name="auto-denied")["pipelineExecutionId"]
    wait_for(lambda: actions_of(stand, "auto-denied", execution_id).get("Review", {}).get("status") == "InProgress",
             what="the approval to wait")
    said: list[str] = []
    approver = AutoApprover(reader, stand.runtime.changes, period=0.1, say=said.append).start()
    try:
        wait_for(lambda: approver.errors, what="the denial")
    finally:
        approver.stop()
    assert no_watcher_thread()
    assert len(said) == 1 and "AccessDenied" in said[0] and "codepipeline:PutApprovalResult" in said[0]
    assert actions_of(stand, "auto-denied", execution_id)["Review"]["status"] == "InProgress"  # still waiting
    answer(cp, "auto-denied", execution_id, approved=False, summary="cleaning up")
    assert wait_done(stand, "auto-denied", execution_id)["status"] == "Failed"


def test_without_the_watcher_follow_says_once_how_to_answer_and_keeps_waiting(stand: Stand) -> None:
    approval_pipeline(stand, "auto-off")
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name="auto-off")["pipelineExecutionId"]
    lines: list[str] = []
    followed: list[str] = []
    thread = threading.Thread(target=lambda: followed.append(
        follow(stand, "auto-off", execution_id, Console(lines.append), timeout=60)))
    thread.start()
    try:
        wait_for(lambda: any("mlops-local approve" in line for line in lines), what="the instructions")
        token = cp.get_pipeline_state(name="auto-off")["stageStates"][1]["actionStates"][0]["latestExecution"]["token"]
        stand.runtime.changes.notify()  # follow looks again: it must not repeat itself
        wait_for(lambda: sum(1 for line in lines if "Approve/Review: InProgress" in line), what="the action's row")
        assert followed == []  # nothing answered yet: the follow keeps waiting
        answer(cp, "auto-off", execution_id, approved=True, summary="reviewed by hand")
    finally:
        thread.join(timeout=30)
    assert followed == ["Succeeded"]
    text = "\n".join(lines)
    assert text.count("Approve/Review waits for an answer") == 1
    assert (f"  export AWS_ENDPOINT_URL={stand.aws.url} AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing "
            "AWS_SECRET_ACCESS_KEY=testing") in text
    assert f"  mlops-local approve {execution_id} --summary" in text
    assert f"  mlops-local reject {execution_id} --summary" in text
    assert (f"aws codepipeline put-approval-result --pipeline-name auto-off --stage-name Approve "
            f"--action-name Review --token {token} --result summary=reviewed,status=Approved") in text


def test_the_local_pipeline_starts_the_watcher_and_close_stops_it(tmp_path) -> None:
    local = LocalPipeline(tmp_path / "work", ROOT)  # unattended by default, as PipelineOptions
    try:
        assert local.approver is not None and local.approver.running
    finally:
        local.close()
    assert not local.approver.running and no_watcher_thread()
    off = LocalPipeline(tmp_path / "off", ROOT, auto_approve=False)  # the CLI without --auto-approve
    off.close()
    assert off.approver is None
    assert "--auto-approve" in AUTO_APPROVE_LINE and "mlops-local approve" in AUTO_APPROVE_LINE


def test_a_sweep_with_nothing_waiting_costs_two_requests_per_queued_pipeline() -> None:
    """ListPipelines, then GetPipelineState: no token shown, so no execution is listed (Stubber fails an extra call)."""
    import boto3
    from botocore.stub import Stubber

    from mlops_local.runtime import Changes

    client = boto3.client("codepipeline", region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        stubber.add_response("list_pipelines", {"pipelines": [{"name": "p", "executionMode": "QUEUED"}]})
        stubber.add_response("get_pipeline_state", {"pipelineName": "p", "stageStates": [{
            "stageName": "Approval", "actionStates": [{"actionName": "ApproveForProd",
                                                       "latestExecution": {"status": "Succeeded"}}]}]},
                             {"name": "p"})
        assert AutoApprover(client, Changes()).sweep() == []
        stubber.assert_no_pending_responses()
