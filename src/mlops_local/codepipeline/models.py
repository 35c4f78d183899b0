"""The engine's records: executions, action runs, jobs, stage locks, and the store that holds them.

Each record renders itself in CodePipeline's response shapes (`state`, `detail`, `summary_record`);
`compact` drops unset fields as AWS omits them.
"""
from __future__ import annotations

import copy
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlops_local.codepipeline.actions import Approval, ArtifactRef
from mlops_local.gateway import AwsError, now

TERMINAL = {"Succeeded", "Failed", "Stopped", "Superseded", "Cancelled"}


def compact(value: Any) -> Any:
    """Drop None members, as AWS omits unset fields."""
    if isinstance(value, dict):
        return {k: compact(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value


@dataclass
class Job:
    """One invocation of a job worker: the event it got and the result it reported."""
    id: str
    account_id: str
    data: dict[str, Any]
    status: str = "InProgress"     # InProgress -> Succeeded | Failed | Ended (no result)
    result: dict[str, Any] | None = None

    def event(self) -> dict[str, Any]:
        data = {k: copy.deepcopy(v) for k, v in self.data.items() if k not in ("actionTypeId", "pipelineContext")}
        return {"CodePipeline.job": {"id": self.id, "accountId": self.account_id, "data": data}}


@dataclass
class ActionRun:
    execution_id: str
    pipeline_version: int
    stage: str
    action: str
    declaration: dict[str, Any]
    region: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    token: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "InProgress"
    summary: str | None = None
    started: datetime = field(default_factory=now)
    updated: datetime = field(default_factory=now)
    percent: int | None = None
    external_id: str | None = None
    external_url: str | None = None
    error: dict[str, str] | None = None
    resolved: dict[str, str] = field(default_factory=dict)
    inputs: list[ArtifactRef] = field(default_factory=list)
    outputs: list[ArtifactRef] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    revision: dict[str, Any] | None = None
    token_visible: bool = False      # an approval's token, shown by GetPipelineState (not for PARALLEL)
    updated_by: str | None = None    # who answered an approval

    def state(self) -> dict[str, Any]:
        """ActionState.latestExecution."""
        return compact({"actionExecutionId": self.id, "status": self.status, "summary": self.summary,
                        "lastStatusChange": self.updated, "token": self.token if self.token_visible else None,
                        "lastUpdatedBy": self.updated_by,
                        "externalExecutionId": self.external_id, "externalExecutionUrl": self.external_url,
                        "percentComplete": self.percent, "errorDetails": self.error})

    def detail(self, pipeline_execution_id: str) -> dict[str, Any]:
        """ActionExecutionDetail."""
        decl = self.declaration
        output: dict[str, Any] | None = None
        if self.status == "InProgress" and self.external_id:
            # A running action's external id is already there: for a PARALLEL pipeline's approval it is the token
            # PutApprovalResult needs (API Reference, PutApprovalResult: "use ListActionExecutions").
            output = {"executionResult": {"externalExecutionId": self.external_id}}
        elif self.status != "InProgress":
            output = {"outputArtifacts": [a.detail() for a in self.outputs],
                      "executionResult": {"externalExecutionId": self.external_id,
                                          "externalExecutionSummary": self.summary,
                                          "externalExecutionUrl": self.external_url,
                                          "errorDetails": self.error},
                      "outputVariables": dict(self.variables)}
        return compact({
            "pipelineExecutionId": pipeline_execution_id, "actionExecutionId": self.id,
            "pipelineVersion": self.pipeline_version, "stageName": self.stage, "actionName": self.action,
            "startTime": self.started, "lastUpdateTime": self.updated, "status": self.status,
            "updatedBy": self.updated_by,
            "input": {"actionTypeId": decl["actionTypeId"], "configuration": dict(decl.get("configuration") or {}),
                      "resolvedConfiguration": dict(self.resolved), "roleArn": decl.get("roleArn"),
                      "region": decl.get("region") or self.region,
                      "inputArtifacts": [a.detail() for a in self.inputs], "namespace": decl.get("namespace")},
            "output": output})


@dataclass
class Execution:
    id: str
    pipeline: str
    pipeline_arn: str
    version: int
    definition: dict[str, Any]
    mode: str
    variables: dict[str, str]
    source_overrides: dict[str, dict[str, str]]
    status: str = "InProgress"
    summary: str | None = None
    started: datetime = field(default_factory=now)
    updated: datetime = field(default_factory=now)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    artifacts: dict[str, ArtifactRef] = field(default_factory=dict)
    revisions: list[dict[str, Any]] = field(default_factory=list)          # ArtifactRevision
    source_revisions: list[dict[str, Any]] = field(default_factory=list)   # SourceRevision
    stages: dict[str, str] = field(default_factory=dict)                   # stage -> StageExecutionStatus
    entered: dict[str, datetime] = field(default_factory=dict)
    runs: list[ActionRun] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    abandon: threading.Event = field(default_factory=threading.Event)
    stop_reason: str | None = None
    superseded: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    trigger: dict[str, str] = field(default_factory=lambda: {"triggerType": "StartPipelineExecution"})
    execution_type: str = "STANDARD"                                       # or ROLLBACK (RollbackStage)
    rollback_target: str | None = None                                     # the execution rolled back to

    def rollback_metadata(self) -> dict[str, str] | None:
        """PipelineRollbackMetadata of a ROLLBACK execution."""
        return {"rollbackTargetPipelineExecutionId": self.rollback_target} if self.rollback_target else None

    def latest_runs(self, stage: str | None = None) -> list[ActionRun]:
        """The last run of each action (of `stage`): a retried action's earlier runs stay in the history."""
        latest: dict[tuple[str, str], ActionRun] = {}
        for run in self.runs:
            if stage is None or run.stage == stage:
                latest[(run.stage, run.action)] = run
        return list(latest.values())

    def summary_record(self) -> dict[str, Any]:
        """PipelineExecutionSummary."""
        return compact({
            "pipelineExecutionId": self.id, "status": self.status, "statusSummary": self.summary,
            "startTime": self.started, "lastUpdateTime": self.updated,
            "sourceRevisions": list(self.source_revisions),
            "trigger": dict(self.trigger),
            "stopTrigger": {"reason": self.stop_reason} if self.stop.is_set() else None,
            "executionMode": self.mode, "executionType": self.execution_type,
            "rollbackMetadata": self.rollback_metadata()})


class StageLocks:
    """Per-pipeline stage locks for QUEUED/SUPERSEDED executions, FIFO per stage."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.holders: dict[str, str | None] = {}
        self.waiting: dict[str, list[Execution]] = {}

    def enter(self, execution: Execution, stage: str, supersede: bool) -> bool:
        """Wait to enter `stage`; False when the execution was stopped or superseded meanwhile."""
        with self.condition:
            queue = self.waiting.setdefault(stage, [])
            if supersede:
                for older in queue:
                    older.superseded = True
                self.condition.notify_all()
            queue.append(execution)
            try:
                while True:
                    if execution.stop.is_set() or execution.superseded:
                        return False
                    if self.holders.get(stage) is None and queue[0] is execution:
                        self.holders[stage] = execution.id
                        return True
                    self.condition.wait(timeout=0.5)
            finally:
                queue.remove(execution)

    def leave(self, execution: Execution, stage: str) -> None:
        with self.condition:
            if self.holders.get(stage) == execution.id:
                self.holders[stage] = None
            self.condition.notify_all()

    def inbound(self, stage: str) -> list[Execution]:
        with self.condition:
            return list(self.waiting.get(stage, []))

    def wake(self) -> None:
        with self.condition:
            self.condition.notify_all()


class PipelineStore:
    """Every execution and job of the engine, behind one re-entrant lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.executions: dict[str, list[Execution]] = {}     # pipeline -> in start order
        self.jobs: dict[str, Job] = {}
        self.stage_locks: dict[str, StageLocks] = {}
        self.tokens: dict[tuple[str, str], str] = {}         # (pipeline, clientRequestToken) -> id
        # (pipeline, stage, Inbound|Outbound) -> TransitionState of a disabled transition
        self.disabled: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.approvals: dict[str, Approval] = {}             # token -> the approval request it answers

    def blocked(self, pipeline: str, previous: str | None, stage: str) -> bool:
        """Whether an execution must wait before entering `stage` (after `previous`)."""
        with self.lock:
            return (pipeline, stage, "Inbound") in self.disabled or \
                (previous is not None and (pipeline, previous, "Outbound") in self.disabled)

    def add(self, execution: Execution, token: str | None) -> None:
        with self.lock:
            self.executions.setdefault(execution.pipeline, []).append(execution)
            self.stage_locks.setdefault(execution.pipeline, StageLocks())
            if token:
                self.tokens[(execution.pipeline, token)] = execution.id

    def of(self, pipeline: str) -> list[Execution]:
        """The pipeline's executions in start order (a copy)."""
        with self.lock:
            return list(self.executions.get(pipeline, []))

    def find(self, pipeline: str, execution_id: str) -> Execution | None:
        with self.lock:
            for execution in self.executions.get(pipeline, []):
                if execution.id == execution_id:
                    return execution
        return None

    def add_job(self, job: Job) -> None:
        with self.lock:
            self.jobs[job.id] = job

    def job(self, job_id: str) -> Job:
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise AwsError("JobNotFoundException", f"job {job_id} does not exist")
        return job
