"""The CodePipeline API the engine serves on the gateway: execution and job operations.

moto keeps pipeline definitions (CRUD); these handlers start, report and stop executions from the
engine's store and take job results from Lambda job workers. Each takes the request's JSON
parameters and returns the response's.
"""
from __future__ import annotations

import copy
import logging
import uuid
from typing import Any, Callable, Mapping

from botocore.exceptions import ClientError

from mlops_local.codepipeline.models import TERMINAL, Execution, PipelineStore, compact
from mlops_local.codepipeline.scheduler import Scheduler
from mlops_local.gateway import AwsError, account_id, now, paginate

logger = logging.getLogger(__name__)

MAX_RESULTS = 100


class CodePipelineResponses:
    """Handlers for StartPipelineExecution ... GetJobDetails, over the store and the scheduler."""

    def __init__(self, store: PipelineStore, scheduler: Scheduler, client: Callable[[str], Any]) -> None:
        self.store = store
        self.scheduler = scheduler
        self.client = client

    # -- StartPipelineExecution ---------------------------------------------------------------
    def start_pipeline_execution(self, params: dict[str, Any],
                                 trigger: dict[str, str] | None = None) -> dict[str, Any]:
        """`trigger`: ExecutionTrigger, StartPipelineExecution unless the engine starts it (CreatePipeline)."""
        name = params["name"]
        token = params.get("clientRequestToken")
        with self.store.lock:
            if token and (name, token) in self.store.tokens:
                return {"pipelineExecutionId": self.store.tokens[(name, token)]}
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
                              variables=variables, source_overrides=overrides,
                              trigger=trigger or {"triggerType": "StartPipelineExecution"})
        self.store.add(execution, token)
        self.scheduler.start(execution)
        logger.info("pipeline %s: execution %s started (%s)", name, execution.id, mode)
        return {"pipelineExecutionId": execution.id}

    def _pipeline(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
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

    # -- the job API ---------------------------------------------------------------------------
    def _report(self, job_id: str, result: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            job = self.store.job(job_id)
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
        job = self.store.job(params["jobId"])
        return {"jobDetails": {"id": job.id, "accountId": job.account_id, "data": copy.deepcopy(job.data)}}

    # -- PutApprovalResult -----------------------------------------------------------------------
    def put_approval_result(self, params: dict[str, Any]) -> dict[str, Any]:
        """Answer the open approval request of a Manual approval action (API Reference, PutApprovalResult):
        PipelineNotFoundException, StageNotFoundException, ActionNotFoundException for names the pipeline
        lacks; InvalidApprovalTokenException for a token that is not this action's request or whose request
        expired ("already received a response or has expired"); ApprovalAlreadyCompletedException when the
        request was already approved or rejected. The answerer is the request's principal (lastUpdatedBy)."""
        name, stage, action = params["pipelineName"], params["stageName"], params["actionName"]
        result, token = params["result"], params["token"]
        if result.get("status") not in ("Approved", "Rejected"):
            raise AwsError("ValidationException", f"result.status must be Approved or Rejected, "
                                                  f"got {result.get('status')!r}")
        if not 0 <= len(result.get("summary") or "") <= 512:  # ApprovalSummary: at most 512 characters
            raise AwsError("ValidationException", "result.summary must be at most 512 characters")
        pipeline, _ = self._pipeline(name)
        stages = {s["name"]: s for s in pipeline["stages"]}
        if stage not in stages:
            raise AwsError("StageNotFoundException", f"stage {stage} is not a stage of pipeline {name}")
        if action not in [a["name"] for a in stages[stage]["actions"]]:
            raise AwsError("ActionNotFoundException", f"action {action} is not an action of stage {stage} "
                                                      f"of pipeline {name}")
        with self.store.lock:
            approval = self.store.approvals.get(token)
        if approval is None or (approval.pipeline, approval.stage, approval.action) != (name, stage, action):
            raise AwsError("InvalidApprovalTokenException", f"{token} is not the token of an approval request "
                                                            f"of {name}/{stage}/{action}")
        at = now()
        before = approval.answer(result["status"], result.get("summary") or "", self._caller(), at)
        if before == "Expired":
            raise AwsError("InvalidApprovalTokenException", f"the approval request of {name}/{stage}/{action} "
                                                            f"with token {token} has expired")
        if before != "Open":
            raise AwsError("ApprovalAlreadyCompletedException", f"the approval request of {name}/{stage}/{action} "
                                                                f"was already {before.lower()}")
        execution = self.store.find(name, approval.execution_id)
        with self.store.lock:
            for run in execution.runs if execution else []:
                if run.id == approval.action_execution_id:
                    run.updated_by = approval.by
        logger.info("pipeline %s: %s/%s %s by %s", name, stage, action, result["status"].lower(), approval.by)
        return {"approvedAt": at}

    # -- reading ------------------------------------------------------------------------------
    def execution(self, pipeline: str, execution_id: str) -> Execution:
        found = self.store.find(pipeline, execution_id)
        if found is not None:
            return found
        self._pipeline(pipeline)  # PipelineNotFoundException first, as AWS answers
        raise AwsError("PipelineExecutionNotFoundException",
                       f"Pipeline execution {execution_id} of pipeline {pipeline} not found")

    def get_pipeline_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        execution = self.execution(params["pipelineName"], params["pipelineExecutionId"])
        with self.store.lock:
            return {"pipelineExecution": compact({
                "pipelineName": execution.pipeline, "pipelineVersion": execution.version,
                "pipelineExecutionId": execution.id, "status": execution.status,
                "statusSummary": execution.summary, "artifactRevisions": list(execution.revisions),
                "variables": [{"name": k, "resolvedValue": v} for k, v in execution.variables.items()],
                "trigger": dict(execution.trigger), "executionMode": execution.mode,
                "executionType": execution.execution_type, "rollbackMetadata": execution.rollback_metadata()})}

    def list_pipeline_executions(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["pipelineName"]
        self._pipeline(name)
        with self.store.lock:
            executions = list(reversed(self.store.of(name)))
            wanted = ((params.get("filter") or {}).get("succeededInStage") or {}).get("stageName")
            if wanted:
                executions = [e for e in executions if e.stages.get(wanted) == "Succeeded"]
            records = [e.summary_record() for e in executions]
        page, token = paginate(records, params, token="nextToken", size="maxResults",
                               default_size=MAX_RESULTS)
        return compact({"pipelineExecutionSummaries": page, "nextToken": token})

    def list_action_executions(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["pipelineName"]
        wanted = (params.get("filter") or {}).get("pipelineExecutionId") or \
            ((params.get("filter") or {}).get("latestInPipelineExecution") or {}).get("pipelineExecutionId")
        if wanted:
            executions = [self.execution(name, wanted)]
        else:
            self._pipeline(name)
            executions = self.store.of(name)
        with self.store.lock:
            runs = [(r, e.id) for e in executions for r in e.runs]
            runs.sort(key=lambda pair: pair[0].started, reverse=True)
            records = [r.detail(execution_id) for r, execution_id in runs]
        page, token = paginate(records, params, token="nextToken", size="maxResults",
                               default_size=MAX_RESULTS)
        return compact({"actionExecutionDetails": page, "nextToken": token})

    def get_pipeline_state(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["name"]
        pipeline, metadata = self._pipeline(name)
        locks = self.store.stage_locks.get(name)
        stages = []
        with self.store.lock:
            executions = self.store.of(name)
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
                                         "type": inbound[0].execution_type} if inbound else None,
                    "inboundExecutions": [{"pipelineExecutionId": e.id, "status": "InProgress",
                                           "type": e.execution_type} for e in inbound] or None,
                    "inboundTransitionState": self.store.disabled.get((name, stage["name"], "Inbound"),
                                                                      {"enabled": True}),
                    "actionStates": actions,
                    "latestExecution": {"pipelineExecutionId": latest.id, "status": latest.stages[stage["name"]],
                                        "type": latest.execution_type} if latest else None}))
        return compact({"pipelineName": name, "pipelineVersion": int(pipeline.get("version", 1)),
                        "stageStates": stages, "created": metadata.get("created"),
                        "updated": metadata.get("updated")})

    # -- stopping -----------------------------------------------------------------------------
    def stop_pipeline_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        execution = self.execution(params["pipelineName"], params["pipelineExecutionId"])
        abandon = bool(params.get("abandon"))
        with self.store.lock:
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
        locks = self.store.stage_locks.get(execution.pipeline)
        if locks:
            locks.wake()
        if abandon:
            self.scheduler.runtime.changes.notify()  # wake a continuation loop waiting for a change
        return {"pipelineExecutionId": execution.id}

    # -- ListPipelines ---------------------------------------------------------------------------
    def list_pipelines(self, params: dict[str, Any]) -> dict[str, Any]:
        """PipelineSummary with the pipelineType and executionMode of the stored definition (moto's own
        ListPipelines leaves them out). AWS's defaults when a definition omits them: V1, SUPERSEDED."""
        from moto.codepipeline.models import codepipeline_backends

        backend = codepipeline_backends[account_id()][self.scheduler.runtime.aws.gateway.region]
        records = [compact({"name": name, "version": stored.pipeline.get("version", 1),
                            "pipelineType": stored.pipeline.get("pipelineType") or "V1",
                            "executionMode": stored.pipeline.get("executionMode") or "SUPERSEDED",
                            "created": stored.metadata.get("created"), "updated": stored.metadata.get("updated")})
                   for name, stored in sorted(backend.pipelines.items())]
        page, token = paginate(records, params, token="nextToken", size="maxResults", default_size=MAX_RESULTS)
        return compact({"pipelines": page, "nextToken": token})

    # -- RetryStageExecution ---------------------------------------------------------------------
    def retry_stage_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        """Re-run a failed stage of the latest execution that entered it, then the stages after it.
        CodePipeline API Reference, RetryStageExecution, and User Guide "Retry a failed action in a
        stage": the stage must have failed actions and none in progress, the execution must be the
        latest in that stage, and the pipeline structure must not have changed since."""
        name, stage, mode = params["pipelineName"], params["stageName"], params["retryMode"]
        execution = self.execution(name, params["pipelineExecutionId"])
        pipeline, _ = self._pipeline(name)
        if stage not in [s["name"] for s in execution.definition["stages"]]:
            raise AwsError("StageNotFoundException", f"stage {stage} is not a stage of pipeline {name}")
        with self.store.lock:
            later = [e for e in self.store.of(name) if e is not execution and stage in e.entered
                     and e.entered[stage] > execution.entered.get(stage, e.entered[stage])]
            if later:
                raise AwsError("NotLatestPipelineExecutionException",
                               f"stage {stage} ran in a later execution ({later[-1].id}); retry that one")
            if execution.status not in TERMINAL:
                raise AwsError("ConflictException", f"execution {execution.id} is {execution.status}; it can be "
                                                    "retried when it has ended")
            if execution.stages.get(stage) != "Failed" or \
                    not any(r.status == "Failed" for r in execution.latest_runs(stage)):
                raise AwsError("StageNotRetryableException", f"stage {stage} of execution {execution.id} has no "
                                                             "failed actions")
            if int(pipeline.get("version", 1)) != execution.version:
                raise AwsError("StageNotRetryableException", f"pipeline {name} changed (version "
                                                             f"{execution.version} -> {pipeline.get('version')}) "
                                                             "since the stage failed")
            execution.status, execution.summary, execution.updated = "InProgress", None, now()
            execution.done.clear()
        self.scheduler.start(execution, retry=(stage, mode))
        logger.info("pipeline %s: execution %s retries stage %s (%s)", name, execution.id, stage, mode)
        return {"pipelineExecutionId": execution.id}

    # -- DisableStageTransition / EnableStageTransition -------------------------------------------
    def _transition(self, params: dict[str, Any]) -> tuple[str, str, str]:
        name, stage = params["pipelineName"], params["stageName"]
        pipeline, _ = self._pipeline(name)
        if stage not in [s["name"] for s in pipeline["stages"]]:
            raise AwsError("StageNotFoundException", f"stage {stage} is not a stage of pipeline {name}")
        return name, stage, params["transitionType"]

    def disable_stage_transition(self, params: dict[str, Any]) -> dict[str, Any]:
        """Executions wait at the transition until it is enabled again (Inbound: before the stage;
        Outbound: after it). CodePipeline API Reference, DisableStageTransition, TransitionState."""
        key = self._transition(params)
        with self.store.lock:
            self.store.disabled[key] = {"enabled": False, "disabledReason": params["reason"],
                                        "lastChangedAt": now(), "lastChangedBy": self._caller()}
        return {}

    def enable_stage_transition(self, params: dict[str, Any]) -> dict[str, Any]:
        key = self._transition(params)
        with self.store.lock:
            self.store.disabled.pop(key, None)
        return {}

    @staticmethod
    def _caller() -> str:
        from mlops_local.gateway import current_principal

        principal = current_principal()
        return getattr(principal, "arn", "") or "unknown"

    # -- RollbackStage ------------------------------------------------------------------------------
    def rollback_stage(self, params: dict[str, Any]) -> dict[str, Any]:
        """A new execution (executionType ROLLBACK, trigger ManualRollback) that runs the stage alone with
        the source revisions, artifacts and variables of a target execution that succeeded in it.
        CodePipeline User Guide, "Configuring stage rollback" (considerations: not a source stage; the target
        started in the current pipeline structure version; the target is not a rollback) and API Reference,
        RollbackStage (UnableToRollbackStageException: "the pipeline version has changed since the target
        pipeline execution was deployed, the stage is currently running, or an incorrect target pipeline
        execution ID was provided"; PipelineExecutionOutdatedException). Rollback is a V2 feature."""
        name, stage, target_id = params["pipelineName"], params["stageName"], params["targetPipelineExecutionId"]
        pipeline, metadata = self._pipeline(name)
        declared = {s["name"]: s for s in pipeline["stages"]}
        if stage not in declared:
            raise AwsError("StageNotFoundException", f"stage {stage} is not a stage of pipeline {name}")
        target = self.execution(name, target_id)
        version = int(pipeline.get("version", 1))

        def refuse(reason: str) -> AwsError:
            return AwsError("UnableToRollbackStageException", f"cannot roll back stage {stage} of {name} to "
                                                              f"execution {target_id}: {reason}")
        if (pipeline.get("pipelineType") or "V1") != "V2":
            raise refuse("stage rollback needs a V2 pipeline")
        if any(a["actionTypeId"]["category"] == "Source" for a in declared[stage]["actions"]):
            raise refuse("a source stage cannot be rolled back")
        with self.store.lock:
            if target.execution_type == "ROLLBACK":
                raise refuse("the target is itself a rollback execution")
            if target.stages.get(stage) != "Succeeded":
                raise refuse(f"the target did not succeed in the stage ({target.stages.get(stage) or 'not run'})")
            if target.version != version:
                raise AwsError("PipelineExecutionOutdatedException",
                               f"execution {target_id} ran pipeline version {target.version}; {name} is at "
                               f"version {version}")
            running = [e.id for e in self.store.of(name) if e.stages.get(stage) == "InProgress"]
            if running:
                raise refuse(f"the stage is running (execution {running[0]})")
            execution = Execution(
                id=str(uuid.uuid4()), pipeline=name, pipeline_arn=metadata.get("pipelineArn", ""), version=version,
                definition=pipeline, mode=pipeline.get("executionMode") or "SUPERSEDED",
                variables=dict(target.variables), source_overrides={},
                trigger={"triggerType": "ManualRollback", "triggerDetail": self._caller()},
                execution_type="ROLLBACK", rollback_target=target.id,
                namespaces=copy.deepcopy(target.namespaces), artifacts=dict(target.artifacts),
                revisions=copy.deepcopy(target.revisions), source_revisions=copy.deepcopy(target.source_revisions))
        self.store.add(execution, None)
        self.scheduler.start(execution, only=stage)
        logger.info("pipeline %s: execution %s rolls stage %s back to %s", name, execution.id, stage, target_id)
        return {"pipelineExecutionId": execution.id}

    # -- ListRuleExecutions --------------------------------------------------------------------------
    def list_rule_executions(self, params: dict[str, Any]) -> dict[str, Any]:
        """Rules run only in stage conditions (beforeEntry/onSuccess/onFailure), which the engine does not
        evaluate; a pipeline without conditions has no rule executions: an empty list, after AWS's checks
        (PipelineNotFoundException, PipelineExecutionNotFoundException for the filter's execution,
        InvalidNextTokenException). CodePipeline API Reference, ListRuleExecutions."""
        name = params["pipelineName"]
        pipeline, _ = self._pipeline(name)
        wanted = (params.get("filter") or {}).get("pipelineExecutionId") or \
            ((params.get("filter") or {}).get("latestInPipelineExecution") or {}).get("pipelineExecutionId")
        if wanted:
            self.execution(name, wanted)
        conditions = [s["name"] for s in pipeline["stages"]
                      if any(s.get(k) for k in ("beforeEntry", "onSuccess", "onFailure"))]
        if conditions:  # never an empty answer that hides rules which should have run
            raise AwsError("ValidationException", f"stages {conditions} of {name} have conditions, which the "
                                                  "local stand-in does not evaluate")
        page, token = paginate([], params, token="nextToken", size="maxResults", default_size=MAX_RESULTS)
        if params.get("nextToken"):  # no page was ever handed out, so no token is one of ours
            raise AwsError("InvalidNextTokenException", "the nextToken is not valid")
        return compact({"ruleExecutionDetails": page, "nextToken": token})
