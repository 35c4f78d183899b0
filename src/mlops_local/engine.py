"""The local pipeline engine: CodePipeline executions and the job API, served by the gateway.

moto keeps pipeline definitions (CRUD) but runs nothing. This engine overrides the execution and
job operations on the gateway: StartPipelineExecution reads the definition from moto and runs it
in a background thread; GetPipelineState, GetPipelineExecution, ListPipelineExecutions,
ListActionExecutions and StopPipelineExecution report and control it; PutJobSuccessResult,
PutJobFailureResult and GetJobDetails are how Lambda job workers report back.

Semantics kept from CodePipeline:
- stages run in order; inside a stage, actions run by runOrder, actions with the same runOrder in
  parallel; a failed action fails its stage and the execution (statusSummary = its message) once
  its parallel siblings have ended; later stages do not run.
- `#{codepipeline.PipelineExecutionId}`, `#{variables.X}` (defaults, overridable at start) and
  `#{Namespace.Var}` (output variables of earlier actions) resolve in every configuration value; an
  unresolvable reference fails the action and says which.
- execution modes: QUEUED and SUPERSEDED lock each stage (one execution in a stage at a time; an
  execution enters the next stage before it leaves the current one, so order is kept); QUEUED
  waits in order, SUPERSEDED lets the newest waiting execution replace older waiting ones;
  PARALLEL does not lock.
- StopPipelineExecution: "stop and wait" lets in-progress actions finish; abandon=True abandons them
  (status Abandoned, a running Lambda handler is killed). The execution ends Stopped.
What each action type does here is in `mlops_local.actions`.
"""
from __future__ import annotations

import copy
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from mlops_local.actions import (FAKE_ARTIFACT_CREDENTIALS, MAX_MESSAGE, MAX_SUMMARY, PROVIDERS, ActionAbandoned,
                                 ActionContext, ActionFailed, ArtifactRef, SourceProvider,
                                 new_artifact_key)
from mlops_local.gateway import AwsError
from mlops_local.runtime import Runtime

logger = logging.getLogger(__name__)

PREFIX = "CodePipeline_20150709."
VARIABLE = re.compile(r"#\{([A-Za-z0-9@_-]+)\.([A-Za-z0-9@_.-]+)\}")
TERMINAL = {"Succeeded", "Failed", "Stopped", "Superseded", "Cancelled"}
DEFAULT_ACTION_TIMEOUT = 3600.0
DEFAULT_POLL_INTERVAL = (0.5, 2.0)
MAX_RESULTS = 100


def now() -> datetime:
    return datetime.now(timezone.utc)


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

    def state(self) -> dict[str, Any]:
        """ActionState.latestExecution."""
        return compact({"actionExecutionId": self.id, "status": self.status, "summary": self.summary,
                        "lastStatusChange": self.updated, "token": self.token,
                        "externalExecutionId": self.external_id, "externalExecutionUrl": self.external_url,
                        "percentComplete": self.percent, "errorDetails": self.error})

    def detail(self, pipeline_execution_id: str) -> dict[str, Any]:
        """ActionExecutionDetail."""
        decl = self.declaration
        output = None
        if self.status != "InProgress":
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

    def summary_record(self) -> dict[str, Any]:
        """PipelineExecutionSummary."""
        return compact({
            "pipelineExecutionId": self.id, "status": self.status, "statusSummary": self.summary,
            "startTime": self.started, "lastUpdateTime": self.updated,
            "sourceRevisions": list(self.source_revisions),
            "trigger": {"triggerType": "StartPipelineExecution"},
            "stopTrigger": {"reason": self.stop_reason} if self.stop.is_set() else None,
            "executionMode": self.mode, "executionType": "STANDARD"})


class StageLocks:
    """Per-pipeline stage locks for QUEUED/SUPERSEDED executions, FIFO per stage."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.holders: dict[str, str] = {}
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


class PipelineEngine:
    """Runs CodePipeline executions of the pipelines stored in moto; serves the job API."""

    def __init__(self, runtime: Runtime, *, sources: SourceProvider | None = None,
                 stack_applier: Callable[[str], None] | None = None,
                 action_timeout: float = DEFAULT_ACTION_TIMEOUT,
                 poll_interval: tuple[float, float] = DEFAULT_POLL_INTERVAL):
        self.runtime = runtime
        self.sources = sources or (lambda repository, branch: runtime.source_root)  # every branch: the checkout
        self.stack_applier = stack_applier
        self.action_timeout = action_timeout
        self.poll_interval = poll_interval
        self._lock = threading.RLock()
        self._executions: dict[str, list[Execution]] = {}     # pipeline -> in start order
        self._jobs: dict[str, Job] = {}
        self._stage_locks: dict[str, StageLocks] = {}
        self._tokens: dict[tuple[str, str], str] = {}         # (pipeline, clientRequestToken) -> id
        self._clients: dict[str, Any] = {}
        self._client_lock = threading.Lock()

    # -- wiring -----------------------------------------------------------------------------
    def register(self) -> "PipelineEngine":
        gateway = self.runtime.aws.gateway
        for name, handler in {
            "StartPipelineExecution": self.start_pipeline_execution,
            "GetPipelineState": self.get_pipeline_state,
            "GetPipelineExecution": self.get_pipeline_execution,
            "ListPipelineExecutions": self.list_pipeline_executions,
            "ListActionExecutions": self.list_action_executions,
            "StopPipelineExecution": self.stop_pipeline_execution,
            "PutJobSuccessResult": self.put_job_success_result,
            "PutJobFailureResult": self.put_job_failure_result,
            "GetJobDetails": self.get_job_details,
        }.items():
            gateway.operation(PREFIX + name, handler)
        return self

    def client(self, service: str):
        with self._client_lock:  # boto3's default session is not thread-safe while creating clients
            if service not in self._clients:
                self._clients[service] = self.runtime.aws.client(service)
            return self._clients[service]

    # -- Python conveniences (the CLI may use them; tests use the API) -------------------------
    def wait(self, pipeline: str, execution_id: str, timeout: float | None = None) -> str:
        """Block until the execution ends; return its status (or the current one on timeout)."""
        execution = self._execution(pipeline, execution_id)
        execution.done.wait(timeout)
        return execution.status

    # -- StartPipelineExecution ---------------------------------------------------------------
    def start_pipeline_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["name"]
        token = params.get("clientRequestToken")
        with self._lock:
            if token and (name, token) in self._tokens:
                return {"pipelineExecutionId": self._tokens[(name, token)]}
        pipeline, metadata = self._pipeline(name)
        variables = self._variables(pipeline, params.get("variables") or [])
        overrides = {}
        for override in params.get("sourceRevisions") or []:
            overrides[override["actionName"]] = override
        declared = {a["name"] for s in pipeline["stages"] for a in s["actions"]
                    if a["actionTypeId"]["category"] == "Source"}
        unknown = sorted(set(overrides) - declared)
        if unknown:
            raise AwsError("ValidationException", f"sourceRevisions name actions that are not source actions "
                                                  f"of {name}: {unknown}")
        mode = pipeline.get("executionMode") or "SUPERSEDED"
        execution = Execution(id=str(uuid.uuid4()), pipeline=name, pipeline_arn=metadata.get("pipelineArn", ""),
                              version=int(pipeline.get("version", 1)), definition=pipeline, mode=mode,
                              variables=variables, source_overrides=overrides)
        with self._lock:
            self._executions.setdefault(name, []).append(execution)
            self._stage_locks.setdefault(name, StageLocks())
            if token:
                self._tokens[(name, token)] = execution.id
        threading.Thread(target=self._run, args=(execution,), name=f"pipeline-{execution.id[:8]}",
                         daemon=True).start()
        logger.info("pipeline %s: execution %s started (%s)", name, execution.id, mode)
        return {"pipelineExecutionId": execution.id}

    def _pipeline(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        from botocore.exceptions import ClientError

        try:
            answer = self.client("codepipeline").get_pipeline(name=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "PipelineNotFoundException":
                raise AwsError("PipelineNotFoundException", exc.response["Error"].get("Message")
                               or f"pipeline {name} not found") from None
            raise
        return answer["pipeline"], answer.get("metadata", {})

    @staticmethod
    def _variables(pipeline: Mapping[str, Any], given: list[dict[str, str]]) -> dict[str, str]:
        declared = {v["name"]: v.get("defaultValue") for v in pipeline.get("variables") or []}
        values = dict(declared)
        for variable in given:
            if variable["name"] not in declared:
                raise AwsError("ValidationException", f"pipeline variable '{variable['name']}' is not declared by "
                                                      f"pipeline {pipeline['name']} (declared: {sorted(declared)})")
            values[variable["name"]] = variable["value"]
        missing = sorted(k for k, v in values.items() if v is None)
        if missing:
            raise AwsError("ValidationException", f"pipeline variables {missing} have no default value and were "
                                                  "not given")
        return values

    # -- running ------------------------------------------------------------------------------
    def _run(self, execution: Execution) -> None:
        locks = self._stage_locks[execution.pipeline]
        lock = execution.mode in ("QUEUED", "SUPERSEDED")
        held: str | None = None
        try:
            for stage in execution.definition["stages"]:
                name = stage["name"]
                if execution.stop.is_set():
                    break
                if lock and not locks.enter(execution, name, supersede=execution.mode == "SUPERSEDED"):
                    break
                if held:
                    locks.leave(execution, held)
                held = name if lock else None
                if self._run_stage(execution, stage) != "Succeeded":
                    break
        except Exception as exc:  # an engine bug must end the execution, not leave it InProgress
            logger.exception("pipeline %s: execution %s failed inside the engine", execution.pipeline, execution.id)
            self._end(execution, "Failed", f"internal error in the local pipeline engine: {exc}")
        finally:
            if held:
                locks.leave(execution, held)
        if execution.status in ("InProgress", "Stopping"):
            failed = [r for r in execution.runs if r.status == "Failed"]
            if failed:
                self._end(execution, "Failed", (failed[0].error or {}).get("message") or "an action failed")
            elif execution.stop.is_set():
                self._end(execution, "Stopped", execution.stop_reason)
            elif execution.superseded:
                self._end(execution, "Superseded", "a more recent execution superseded this one")
            else:
                self._end(execution, "Succeeded", None)

    def _end(self, execution: Execution, status: str, summary: str | None) -> None:
        with self._lock:
            execution.status, execution.summary, execution.updated = status, summary, now()
        execution.done.set()
        logger.info("pipeline %s: execution %s %s%s", execution.pipeline, execution.id, status,
                    f": {summary}" if summary else "")

    def _run_stage(self, execution: Execution, stage: Mapping[str, Any]) -> str:
        name = stage["name"]
        with self._lock:
            execution.stages[name], execution.entered[name], execution.updated = "InProgress", now(), now()
        status = "Succeeded"
        orders = sorted({int(a.get("runOrder", 1)) for a in stage["actions"]})
        for order in orders:
            if execution.stop.is_set():
                status = "Stopped"
                break
            group = [a for a in stage["actions"] if int(a.get("runOrder", 1)) == order]
            threads = [threading.Thread(target=self._run_action, args=(execution, name, action),
                                        name=f"action-{action['name']}", daemon=True) for action in group]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            statuses = {r.status for r in execution.runs if r.stage == name}
            if "Failed" in statuses:
                status = "Failed"
                break
            if "Abandoned" in statuses:
                status = "Stopped"
                break
        with self._lock:
            execution.stages[name], execution.updated = status, now()
        return status

    def _run_action(self, execution: Execution, stage: str, declaration: Mapping[str, Any]) -> None:
        run = ActionRun(execution_id=execution.id, pipeline_version=execution.version, stage=stage,
                        action=declaration["name"], declaration=copy.deepcopy(dict(declaration)),
                        region=self.runtime.aws.gateway.region)
        with self._lock:
            execution.runs.append(run)
        workdir = Path(self.runtime.workdir) / "pipeline" / execution.id / stage / declaration["name"]
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            kind = declaration["actionTypeId"]
            provider = PROVIDERS.get((kind["category"], kind["owner"], kind["provider"]))
            if provider is None:
                raise ActionFailed(f"action type {kind['category']}/{kind['owner']}/{kind['provider']} is not "
                                   "supported by the local pipeline engine", "ConfigurationError")
            run.resolved = self._resolve(execution, declaration)
            run.inputs = self._inputs(execution, declaration)
            store = self._artifact_store(execution.definition)
            run.outputs = [ArtifactRef(a["name"], store["location"], new_artifact_key(execution.pipeline, a["name"]))
                           for a in declaration.get("outputArtifacts") or []]
            context = ActionContext(
                runtime=self.runtime, pipeline=execution.pipeline, pipeline_arn=execution.pipeline_arn,
                execution_id=execution.id, stage=stage, action=run.action, action_execution_id=run.id,
                declaration=declaration, configuration=run.resolved, inputs=run.inputs, outputs=run.outputs,
                encryption_key=store.get("encryptionKey"), account_id=self._account(execution),
                region=run.region, workdir=workdir, deadline=time.monotonic() + self._timeout(declaration),
                client=self.client, sources=self.sources, stack_applier=self.stack_applier,
                abandoned=execution.abandon.is_set,
                progress=lambda **kw: self._progress(run, **kw),
                new_job=lambda token: self._new_job(execution, run, token, store),
                end_job=self._end_job, poll_interval=self.poll_interval,
                source_override=execution.source_overrides.get(run.action))
            result = provider(context)
        except ActionAbandoned:
            self._finish(run, "Abandoned", summary="abandoned by StopPipelineExecution")
            return
        except ActionFailed as exc:
            self._finish(run, "Failed", error={"code": exc.code, "message": exc.message})
            return
        except Exception as exc:
            logger.exception("pipeline %s: action %s failed inside the engine", execution.pipeline, run.action)
            self._finish(run, "Failed", error={"code": "JobFailed",
                                               "message": f"internal error in the local engine: {exc}"[:MAX_MESSAGE]})
            return
        outputs = [ArtifactRef(a.name, a.bucket, a.key, result.artifact_revision) for a in run.outputs]
        with self._lock:
            run.outputs = outputs
            for artifact in outputs:
                execution.artifacts[artifact.name] = artifact
            if declaration.get("namespace"):
                execution.namespaces[declaration["namespace"]] = dict(result.variables)
            if result.revision:
                run.revision = result.revision
                for artifact in outputs:
                    execution.revisions.append(compact({
                        "name": artifact.name, "revisionId": result.revision["revisionId"],
                        "revisionChangeIdentifier": result.revision.get("revisionChangeId"),
                        "revisionSummary": result.revision.get("revisionSummary"),
                        "created": result.revision.get("created")}))
                execution.source_revisions.append(compact({
                    "actionName": run.action, "revisionId": result.revision["revisionId"],
                    "revisionSummary": result.revision.get("revisionSummary")}))
        self._finish(run, "Succeeded", summary=result.summary, variables=result.variables,
                     external_id=result.external_id, external_url=result.external_url)

    def _finish(self, run: ActionRun, status: str, *, summary: str | None = None, error: dict | None = None,
                variables: dict | None = None, external_id: str | None = None,
                external_url: str | None = None) -> None:
        with self._lock:
            run.status, run.updated = status, now()
            if summary is not None:
                run.summary = summary[:MAX_SUMMARY]
            if error is not None:
                run.error = error
                run.summary = run.summary if status != "Failed" else error["message"][:MAX_SUMMARY]
            if variables is not None:
                run.variables = {k: str(v) for k, v in variables.items()}
            run.external_id = external_id or run.external_id
            run.external_url = external_url or run.external_url
            if status == "Succeeded":
                run.percent = None
        logger.info("action %s/%s: %s%s", run.stage, run.action, status,
                    f": {run.summary}" if run.summary else "")

    def _progress(self, run: ActionRun, summary: str | None = None, percent: int | None = None,
                  external_id: str | None = None, external_url: str | None = None) -> None:
        with self._lock:
            run.updated = now()
            if summary:
                run.summary = summary[:MAX_SUMMARY]
            if percent is not None:
                run.percent = int(percent)
            run.external_id = external_id or run.external_id
            run.external_url = external_url or run.external_url

    def _timeout(self, declaration: Mapping[str, Any]) -> float:
        """The action's own timeoutInMinutes when the definition sets one, else the engine's default."""
        minutes = declaration.get("timeoutInMinutes")
        return float(minutes) * 60 if minutes else self.action_timeout

    @staticmethod
    def _account(execution: Execution) -> str:
        parts = execution.pipeline_arn.split(":")
        return parts[4] if len(parts) > 4 and parts[4] else "123456789012"

    def _artifact_store(self, pipeline: Mapping[str, Any]) -> dict[str, Any]:
        if pipeline.get("artifactStore"):
            return pipeline["artifactStore"]
        stores = pipeline.get("artifactStores") or {}
        region = self.runtime.aws.gateway.region
        if region in stores:
            return stores[region]
        raise ActionFailed(f"the pipeline has no artifact store in {region}", "ConfigurationError")

    def _inputs(self, execution: Execution, declaration: Mapping[str, Any]) -> list[ArtifactRef]:
        refs = []
        with self._lock:
            for artifact in declaration.get("inputArtifacts") or []:
                if artifact["name"] not in execution.artifacts:
                    raise ActionFailed(f"input artifact '{artifact['name']}' was not produced by an earlier action "
                                       "of this execution", "ConfigurationError")
                refs.append(execution.artifacts[artifact["name"]])
        return refs

    def _resolve(self, execution: Execution, declaration: Mapping[str, Any]) -> dict[str, str]:
        with self._lock:
            scopes = {name: dict(values) for name, values in execution.namespaces.items()}
        scopes["codepipeline"] = {"PipelineExecutionId": execution.id}
        scopes["variables"] = dict(execution.variables)

        def one(key: str, value: str) -> str:
            def substitute(match: re.Match) -> str:
                namespace, name = match.groups()
                if namespace not in scopes:
                    raise ActionFailed(
                        f"configuration {key}: cannot resolve {match.group(0)}: no action with namespace "
                        f"'{namespace}' has succeeded earlier in this execution (known: {sorted(scopes)})",
                        "ConfigurationError")
                if name not in scopes[namespace]:
                    raise ActionFailed(
                        f"configuration {key}: cannot resolve {match.group(0)}: namespace '{namespace}' has no "
                        f"variable '{name}' (has: {sorted(scopes[namespace])})", "ConfigurationError")
                return scopes[namespace][name]
            return VARIABLE.sub(substitute, value)

        return {k: one(k, str(v)) for k, v in (declaration.get("configuration") or {}).items()}

    # -- jobs ---------------------------------------------------------------------------------
    def _new_job(self, execution: Execution, run: ActionRun, token: str | None, store: Mapping[str, Any]) -> Job:
        data = compact({
            "actionTypeId": run.declaration["actionTypeId"],
            "actionConfiguration": {"configuration": dict(run.resolved)},
            "pipelineContext": {"pipelineName": execution.pipeline, "stage": {"name": run.stage},
                                "action": {"name": run.action, "actionExecutionId": run.id},
                                "pipelineArn": execution.pipeline_arn or None,
                                "pipelineExecutionId": execution.id},
            "inputArtifacts": [a.job_artifact() for a in run.inputs],
            "outputArtifacts": [a.job_artifact() for a in run.outputs],
            "artifactCredentials": dict(FAKE_ARTIFACT_CREDENTIALS),
            "continuationToken": token,
            "encryptionKey": dict(store["encryptionKey"]) if store.get("encryptionKey") else None})
        job = Job(id=str(uuid.uuid4()), account_id=self._account(execution), data=data)
        with self._lock:
            self._jobs[job.id] = job
        return job

    def _end_job(self, job: Job) -> None:
        with self._lock:
            if job.status == "InProgress":
                job.status = "Ended"

    def _job(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise AwsError("JobNotFoundException", f"job {job_id} does not exist")
        return job

    def _report(self, job_id: str, result: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            job = self._job(job_id)
            if job.status != "InProgress":
                raise AwsError("InvalidJobStateException", f"job {job_id} is {job.status}, not InProgress")
            job.result = result
            job.status = "Succeeded" if result["type"] == "success" else "Failed"
        return {}

    def put_job_success_result(self, params: dict[str, Any]) -> dict[str, Any]:
        token = params.get("continuationToken")
        if token is not None and not 1 <= len(token) <= 2048:
            raise AwsError("ValidationException", "continuationToken must be 1 to 2048 characters")
        variables = params.get("outputVariables") or {}
        if len(str(variables)) > 122880:
            raise AwsError("OutputVariablesSizeExceededException", "output variables exceed 122880 characters")
        if token and variables:
            raise AwsError("ValidationException", "outputVariables can only be set on the final result "
                                                  "(without a continuationToken)")
        return self._report(params["jobId"], {"type": "success", "continuationToken": token,
                                              "executionDetails": params.get("executionDetails") or {},
                                              "outputVariables": variables,
                                              "currentRevision": params.get("currentRevision")})

    def put_job_failure_result(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._report(params["jobId"], {"type": "failure", "failureDetails": params["failureDetails"]})

    def get_job_details(self, params: dict[str, Any]) -> dict[str, Any]:
        job = self._job(params["jobId"])
        return {"jobDetails": {"id": job.id, "accountId": job.account_id, "data": copy.deepcopy(job.data)}}

    # -- reading ------------------------------------------------------------------------------
    def _execution(self, pipeline: str, execution_id: str) -> Execution:
        with self._lock:
            for execution in self._executions.get(pipeline, []):
                if execution.id == execution_id:
                    return execution
        self._pipeline(pipeline)  # PipelineNotFoundException first, as AWS answers
        raise AwsError("PipelineExecutionNotFoundException",
                       f"Pipeline execution {execution_id} of pipeline {pipeline} not found")

    def get_pipeline_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        execution = self._execution(params["pipelineName"], params["pipelineExecutionId"])
        with self._lock:
            return {"pipelineExecution": compact({
                "pipelineName": execution.pipeline, "pipelineVersion": execution.version,
                "pipelineExecutionId": execution.id, "status": execution.status,
                "statusSummary": execution.summary, "artifactRevisions": list(execution.revisions),
                "variables": [{"name": k, "resolvedValue": v} for k, v in execution.variables.items()],
                "trigger": {"triggerType": "StartPipelineExecution"}, "executionMode": execution.mode,
                "executionType": "STANDARD"})}

    def list_pipeline_executions(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["pipelineName"]
        self._pipeline(name)
        with self._lock:
            executions = list(reversed(self._executions.get(name, [])))
            wanted = ((params.get("filter") or {}).get("succeededInStage") or {}).get("stageName")
            if wanted:
                executions = [e for e in executions if e.stages.get(wanted) == "Succeeded"]
            records = [e.summary_record() for e in executions]
        page, token = self._page(records, params)
        return compact({"pipelineExecutionSummaries": page, "nextToken": token})

    def list_action_executions(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["pipelineName"]
        wanted = (params.get("filter") or {}).get("pipelineExecutionId") or \
            ((params.get("filter") or {}).get("latestInPipelineExecution") or {}).get("pipelineExecutionId")
        if wanted:
            executions = [self._execution(name, wanted)]
        else:
            self._pipeline(name)
            with self._lock:
                executions = list(self._executions.get(name, []))
        with self._lock:
            runs = [(r, e.id) for e in executions for r in e.runs]
            runs.sort(key=lambda pair: pair[0].started, reverse=True)
            records = [r.detail(execution_id) for r, execution_id in runs]
        page, token = self._page(records, params)
        return compact({"actionExecutionDetails": page, "nextToken": token})

    @staticmethod
    def _page(records: list[dict], params: Mapping[str, Any]) -> tuple[list[dict], str | None]:
        size = int(params.get("maxResults") or MAX_RESULTS)
        try:
            start = int(params.get("nextToken") or 0)
        except ValueError:
            raise AwsError("InvalidNextTokenException", "the next token is not valid") from None
        end = start + size
        return records[start:end], (str(end) if end < len(records) else None)

    def get_pipeline_state(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["name"]
        pipeline, metadata = self._pipeline(name)
        locks = self._stage_locks.get(name)
        stages = []
        with self._lock:
            executions = list(self._executions.get(name, []))
            for stage in pipeline["stages"]:
                entered = [e for e in executions if stage["name"] in e.entered]
                latest = max(entered, key=lambda e: e.entered[stage["name"]]) if entered else None
                inbound = locks.inbound(stage["name"]) if locks else []
                actions = []
                for action in stage["actions"]:
                    runs = [r for e in executions for r in e.runs
                            if r.stage == stage["name"] and r.action == action["name"]]
                    last = max(runs, key=lambda r: r.started) if runs else None
                    revised = [r for r in runs if r.revision and r.status == "Succeeded"]
                    revision = max(revised, key=lambda r: r.started).revision if revised else None
                    actions.append(compact({
                        "actionName": action["name"],
                        "currentRevision": {"revisionId": revision["revisionId"],
                                            "revisionChangeId": revision.get("revisionChangeId")
                                            or revision["revisionId"],
                                            "created": revision.get("created")} if revision else None,
                        "latestExecution": last.state() if last else None}))
                stages.append(compact({
                    "stageName": stage["name"],
                    "inboundExecution": {"pipelineExecutionId": inbound[0].id, "status": "InProgress",
                                         "type": "STANDARD"} if inbound else None,
                    "inboundExecutions": [{"pipelineExecutionId": e.id, "status": "InProgress",
                                           "type": "STANDARD"} for e in inbound] or None,
                    "inboundTransitionState": {"enabled": True},
                    "actionStates": actions,
                    "latestExecution": {"pipelineExecutionId": latest.id, "status": latest.stages[stage["name"]],
                                        "type": "STANDARD"} if latest else None}))
        return compact({"pipelineName": name, "pipelineVersion": int(pipeline.get("version", 1)),
                        "stageStates": stages, "created": metadata.get("created"),
                        "updated": metadata.get("updated")})

    # -- stopping -----------------------------------------------------------------------------
    def stop_pipeline_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        execution = self._execution(params["pipelineName"], params["pipelineExecutionId"])
        abandon = bool(params.get("abandon"))
        with self._lock:
            if execution.status in TERMINAL:
                raise AwsError("PipelineExecutionNotStoppableException",
                               f"execution {execution.id} is {execution.status} and cannot be stopped")
            if execution.stop.is_set() and (not abandon or execution.abandon.is_set()):
                raise AwsError("DuplicatedStopRequestException", f"execution {execution.id} is already stopping")
            execution.stop_reason = params.get("reason") or execution.stop_reason
            execution.status, execution.updated = "Stopping", now()
            execution.stop.set()
            if abandon:
                execution.abandon.set()
        locks = self._stage_locks.get(execution.pipeline)
        if locks:
            locks.wake()
        if abandon:
            self.runtime.changes.notify()  # wake a continuation loop waiting for a change
        return {"pipelineExecutionId": execution.id}
