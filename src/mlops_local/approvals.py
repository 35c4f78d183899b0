"""`mlops-local approve|reject <execution-id>`: answer an execution's waiting Manual approval action.

Public APIs only (GetPipelineState, ListActionExecutions, PutApprovalResult), so it works against a
running `mlops-local run --keep-running` (AWS_ENDPOINT_URL) and against AWS alike. The token is where AWS
puts it: GetPipelineState's `latestExecution.token` of the waiting action, or, for a PARALLEL pipeline (whose
state shows no token), the action execution's `externalExecutionId` (PutApprovalResult API reference).
AutoApprover answers every waiting approval the same way, for `mlops-local run --auto-approve`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from botocore.exceptions import ClientError


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


AUTO_SUMMARY = "auto-approved by mlops-local run --auto-approve"
# Answers that only mean someone else got there first: a person (`mlops-local approve`) or the action's timeout.
ALREADY_ANSWERED = ("ApprovalAlreadyCompletedException", "InvalidApprovalTokenException")


def waiting_executions(codepipeline: Any, pipeline: str) -> list[str]:
    """The pipeline's executions still in progress (ListPipelineExecutions, newest first)."""
    pages = codepipeline.get_paginator("list_pipeline_executions").paginate(pipelineName=pipeline)
    return [summary["pipelineExecutionId"] for page in pages for summary in page["pipelineExecutionSummaries"]
            if summary["status"] == "InProgress"]


def pipelines(codepipeline: Any) -> list[dict[str, Any]]:
    """ListPipelines' summaries (name, executionMode)."""
    return [p for page in codepipeline.get_paginator("list_pipelines").paginate() for p in page["pipelines"]]


def token_shown(codepipeline: Any, pipeline: str) -> bool:
    """Whether GetPipelineState shows a waiting approval's token: one call, so a sweep with nothing waiting
    costs two requests per pipeline (a PARALLEL pipeline shows none: its executions are listed instead)."""
    return any((action.get("latestExecution") or {}).get("status") == "InProgress"
               and (action.get("latestExecution") or {}).get("token")
               for stage in codepipeline.get_pipeline_state(name=pipeline).get("stageStates", [])
               for action in stage.get("actionStates", []))


class Changes(Protocol):
    """runtime.Changes as the watcher uses it."""

    @property
    def version(self) -> int: ...

    def wait(self, since: int, timeout: float) -> int: ...

    def notify(self) -> None: ...


@dataclass(frozen=True)
class Answered:
    pipeline: str
    execution_id: str
    approval: OpenApproval


class AutoApprover:
    """`mlops-local run --auto-approve`: a thread that approves every Manual approval that waits, in any
    execution of any pipeline of the stand-in, through the public API (GetPipelineState for the token,
    PutApprovalResult), so the request is signed by and IAM-judged as the client's principal (mlops-local).
    It looks again whenever `changes` (the runtime's `approvals`: a Manual approval opened) is bumped, else
    every `period` seconds, a safety net: an approval opened by another engine would wait that long."""

    def __init__(self, codepipeline: Any, changes: Changes, summary: str = AUTO_SUMMARY, period: float = 2.0,
                 say: Callable[[str], None] | None = None) -> None:
        self.codepipeline = codepipeline  # made by the caller's thread: creating boto3 clients is not thread-safe
        self.changes, self.summary, self.period = changes, summary, period
        self.say = say or (lambda line: None)
        self.answered: list[Answered] = []
        self.errors: list[str] = []
        self._tokens: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auto-approve", daemon=True)

    def start(self) -> AutoApprover:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ends the thread before returning (no thread of the run is left behind)."""
        self._stop.set()
        self.changes.notify()  # wake it now rather than after its period
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        version = self.changes.version
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception as exc:  # the stand-in stopping, a denial: said once, the watcher goes on
                self._error(f"auto-approve: {type(exc).__name__}: {exc}")
            version = self.changes.wait(version, timeout=self.period)

    def sweep(self) -> list[Answered]:
        """Answer each approval that waits now; returns those answered."""
        done: list[Answered] = []
        for summary in pipelines(self.codepipeline):
            pipeline = summary["name"]
            if summary.get("executionMode") != "PARALLEL" and not token_shown(self.codepipeline, pipeline):
                continue
            for execution_id in waiting_executions(self.codepipeline, pipeline):
                if self._stop.is_set():
                    return done
                try:
                    found = open_approval(self.codepipeline, pipeline, execution_id)
                    if found.token in self._tokens:
                        continue  # answered; the action has not ended yet
                    self.codepipeline.put_approval_result(
                        pipelineName=pipeline, stageName=found.stage, actionName=found.action, token=found.token,
                        result={"status": "Approved", "summary": self.summary})
                except NoOpenApproval:
                    continue
                except ClientError as exc:
                    if exc.response["Error"]["Code"] in ALREADY_ANSWERED:
                        continue
                    raise
                self._tokens.add(found.token)
                done.append(Answered(pipeline, execution_id, found))
        self.answered.extend(done)
        return done

    def _error(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)
            self.say(message)
