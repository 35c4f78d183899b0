"""`mlops-local approve|reject <execution-id>` against a stand-in it shares no object with (AWS_ENDPOINT_URL
alone): it finds the execution's waiting approval and its token as a user of the aws CLI would, and answers."""
from __future__ import annotations

import json

import pytest

from mlops_local.cli import main
from tests.mlops_local.engine_stand import HERE, actions_of, create_function, create_pipeline, data_source, \
    lambda_action, wait_done, wait_for

APPROVAL = {"category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1"}


def start_waiting(stand, name: str, mode: str = "QUEUED") -> str:
    """An execution of a pipeline (Source, Approve/Review, Prod/Deploy) waiting at its approval."""
    create_function(stand, f"{name}-deploy", f"{HERE}.sleep_handler")
    create_pipeline(stand, name, [data_source(), {"name": "Approve", "actions": [{
        "name": "Review", "actionTypeId": APPROVAL, "runOrder": 1, "configuration": {"CustomData": "rmse 512"}}]},
        {"name": "Prod", "actions": [lambda_action("Deploy", f"{name}-deploy", params={"seconds": 0})]}], mode=mode)
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    wait_for(lambda: actions_of(stand, name, execution_id).get("Review", {}).get("status") == "InProgress",
             what="the approval to wait")
    return execution_id


@pytest.mark.parametrize("verb, mode, status, deployed", [
    ("approve", "QUEUED", "Succeeded", True),
    ("reject", "QUEUED", "Failed", False),
    ("approve", "PARALLEL", "Succeeded", True),  # no token in GetPipelineState: the externalExecutionId
], ids=["approve", "reject", "approve-parallel"])
def test_the_command_answers_the_waiting_approval(stand, monkeypatch, capsys, verb, mode, status, deployed):
    name = f"answered-{verb}-{mode.lower()}"
    execution_id = start_waiting(stand, name, mode)
    monkeypatch.setenv("AWS_ENDPOINT_URL", stand.aws.url)

    code = main([verb, execution_id, "--summary", "reviewed by the test", "--json"])

    answer = json.loads(capsys.readouterr().out)
    assert code == 0 and answer == {"pipeline": name, "stage": "Approve", "action": "Review",
                                    "execution_id": execution_id, "status": "Approved" if deployed else "Rejected"}
    assert wait_done(stand, name, execution_id)["status"] == status
    actions = actions_of(stand, name, execution_id)
    assert ("Deploy" in actions) is deployed
    summary = actions["Review"]["output"]["executionResult"].get("externalExecutionSummary") or \
        actions["Review"]["output"]["executionResult"].get("errorDetails", {}).get("message", "")
    assert "reviewed by the test" in summary


def test_nothing_to_answer_is_a_clear_error(stand, monkeypatch, capsys):
    execution_id = start_waiting(stand, "answered-twice")
    monkeypatch.setenv("AWS_ENDPOINT_URL", stand.aws.url)
    assert main(["approve", execution_id, "--pipeline", "answered-twice"]) == 0
    wait_done(stand, "answered-twice", execution_id)
    capsys.readouterr()

    code = main(["approve", execution_id, "--pipeline", "answered-twice", "--json"])

    answer = json.loads(capsys.readouterr().out)
    assert code == 1 == answer["exit_code"]
    assert answer["error"] == (f"cannot approve {execution_id}: execution {execution_id} of answered-twice has no "
                               "approval waiting for an answer")
