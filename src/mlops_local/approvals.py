"""`mlops-local approve|reject <execution-id>`: answer an execution's waiting Manual approval action.

Public APIs only (GetPipelineState, ListActionExecutions, PutApprovalResult), so it works against a
running `mlops-local run --keep-running` (AWS_ENDPOINT_URL) and against AWS alike. The token is where AWS
puts it: GetPipelineState's `latestExecution.token` of the waiting action, or, for a PARALLEL pipeline (whose
state shows no token), the action execution's `externalExecutionId` (PutApprovalResult API reference).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class NoOpenApproval(LookupError):
    """The execution has no approval action waiting for an answer."""


@dataclass(frozen=True)
class OpenApproval:
    stage: str
    action: str
    token: str


def open_approval(codepipeline: Any, pipeline: str, execution_id: str) -> OpenApproval:
    """The execution's approval action that waits for an answer, with its token."""
    for stage in codepipeline.get_pipeline_state(name=pipeline).get("stageStates", []):
        if (stage.get("latestExecution") or {}).get("pipelineExecutionId") != execution_id:
            continue
        for action in stage.get("actionStates", []):
            latest = action.get("latestExecution") or {}
            if latest.get("status") == "InProgress" and latest.get("token"):
                return OpenApproval(stage["stageName"], action["actionName"], latest["token"])
    details = codepipeline.list_action_executions(pipelineName=pipeline,
                                                  filter={"pipelineExecutionId": execution_id})
    for detail in details.get("actionExecutionDetails", []):
        category = ((detail.get("input") or {}).get("actionTypeId") or {}).get("category")
        token = ((detail.get("output") or {}).get("executionResult") or {}).get("externalExecutionId")
        if detail.get("status") == "InProgress" and category == "Approval" and token:
            return OpenApproval(detail["stageName"], detail["actionName"], token)
    raise NoOpenApproval(f"execution {execution_id} of {pipeline} has no approval waiting for an answer")


def answer(codepipeline: Any, pipeline: str, execution_id: str, approved: bool, summary: str) -> OpenApproval:
    """PutApprovalResult for the execution's waiting approval; returns which one was answered."""
    found = open_approval(codepipeline, pipeline, execution_id)
    codepipeline.put_approval_result(
        pipelineName=pipeline, stageName=found.stage, actionName=found.action, token=found.token,
        result={"status": "Approved" if approved else "Rejected", "summary": summary})
    return found
