"""Runs CodePipeline executions: stages in order, actions by runOrder, variables, artifacts, locks.

`Scheduler.start` runs one execution in a background thread; each action runs in a thread of its
own through its provider (`actions.PROVIDERS`), and its state is kept in the engine's store.
"""
from __future__ import annotations

import copy
import logging
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

from mlops_local.codepipeline.actions import lambda_invoke
from mlops_local.codepipeline.actions import (MAX_MESSAGE, MAX_SUMMARY, PROVIDERS,
                                              ActionAbandoned, ActionContext, ActionFailed, Approval, ArtifactRef,
                                              SourceProvider, new_artifact_key)
from mlops_local.codepipeline.models import ActionRun, Execution, Job, PipelineStore, compact
from mlops_local.codepipeline.principals import artifact_credentials, pipeline_session
from mlops_local import limits
from mlops_local.gateway import now
from mlops_local.runtime import Runtime

logger = logging.getLogger(__name__)

VARIABLE = re.compile(r"#\{([A-Za-z0-9@_-]+)\.([A-Za-z0-9@_.-]+)\}")
# Lambda workers start this many stages ahead (lambda_invoke.prewarm): far enough to be ready before their
# actions, near enough that a function an earlier stage deploys exists by then, and the starts spread
# over the execution instead of competing with its first stages for the CPU.
PREWARM_STAGES_AHEAD = 2


class Scheduler:
    """Runs the executions of a `PipelineStore`; `client(service, session=None)` reaches the stand-in
    as the administrator or, given a role session, as that role."""

    def __init__(self, runtime: Runtime, store: PipelineStore, client: Callable[..., Any], *,
                 sources: SourceProvider, stack_applier: Callable[[str], object] | None,
                 action_timeout: float, poll_interval: tuple[float, float],
                 approval_timeout: float = 7 * 24 * 3600.0) -> None:
        self.runtime = runtime
        self.store = store
        self.client = client
        self.sources = sources
        self.stack_applier = stack_applier
        self.action_timeout = action_timeout
        self.poll_interval = poll_interval
        self.approval_timeout = approval_timeout  # AWS: seven days; an engine setting, so tests can shorten it

    def start(self, execution: Execution, retry: tuple[str, str] | None = None, only: str | None = None) -> None:
        """Run the execution from its first stage or, given `retry` (stage, retryMode), from that stage on;
        given `only` (a rollback's stage), that stage alone."""
        threading.Thread(target=self._run, args=(execution, retry, only), name=f"pipeline-{execution.id[:8]}",
                         daemon=True).start()

    def _run(self, execution: Execution, retry: tuple[str, str] | None = None, only: str | None = None) -> None:
        locks = self.store.stage_locks[execution.pipeline]
        lock = execution.mode in ("QUEUED", "SUPERSEDED")
        held: str | None = None
        stages = execution.definition["stages"]
        if retry:
            stages = stages[[s["name"] for s in stages].index(retry[0]):]
        if only:  # RollbackStage: "the rolled back operation will result in a new execution" of that stage
            stages = [s for s in stages if s["name"] == only]
        previous: str | None = None
        try:
            for index, stage in enumerate(stages):
                self._prewarm(stages[index:index + 1 + PREWARM_STAGES_AHEAD])
                name = stage["name"]
                # a retry re-runs its stage and a rollback runs one: no transition crossed
                crossing = not (retry and retry[0] == name) and name != only
                while crossing and self.store.blocked(execution.pipeline, previous, name) \
                        and not execution.stop.is_set():
                    execution.stop.wait(0.2)  # DisableStageTransition: the execution waits at the transition
                previous = name
                if execution.stop.is_set():
                    break
                if lock and not locks.enter(execution, name, supersede=execution.mode == "SUPERSEDED"):
                    break
                if held:
                    locks.leave(execution, held)
                held = name if lock else None
                if self._run_stage(execution, stage, retry[1] if retry and retry[0] == name else None) != "Succeeded":
                    break
        except Exception as exc:  # an engine bug must end the execution, not leave it InProgress
            logger.exception("pipeline %s: execution %s failed inside the engine", execution.pipeline, execution.id)
            self._end(execution, "Failed", f"internal error in the local pipeline engine: {exc}")
        finally:
            if held:
                locks.leave(execution, held)
        if execution.status in ("InProgress", "Stopping"):
            failed = [r for r in execution.latest_runs() if r.status == "Failed"]
            if failed:
                self._end(execution, "Failed", (failed[0].error or {}).get("message") or "an action failed")
            elif execution.stop.is_set():
                self._end(execution, "Stopped", execution.stop_reason)
            elif execution.superseded:
                self._end(execution, "Superseded", "a more recent execution superseded this one")
            else:
                self._end(execution, "Succeeded", None)

    def _prewarm(self, stages: list[Mapping[str, Any]]) -> None:
        """Start the Lambda workers these stages' functions will need, in the background (no AWS behaviour:
        an invocation would start them anyway; this takes their start off the critical path)."""
        actions = [action for stage in stages for action in stage["actions"]]
        threading.Thread(target=self._prewarm_actions, args=(actions,), name="lambda-prewarm", daemon=True).start()

    def _prewarm_actions(self, actions: list[Mapping[str, Any]]) -> None:
        try:
            lambda_invoke.prewarm(self.runtime, actions)
        except Exception:  # a prewarm never fails an execution: the invocation starts its worker itself
            logger.exception("prewarming Lambda workers failed")

    def _end(self, execution: Execution, status: str, summary: str | None) -> None:
        with self.store.lock:
            execution.status, execution.summary, execution.updated = status, summary, now()
        execution.done.set()
        self.runtime.changes.notify()
        logger.info("pipeline %s: execution %s %s%s", execution.pipeline, execution.id, status,
                    f": {summary}" if summary else "")

    def _run_stage(self, execution: Execution, stage: Mapping[str, Any], retry_mode: str | None = None) -> str:
        """Run the stage's actions by runOrder; retrying FAILED_ACTIONS, the actions that succeeded keep
        their results (RetryStageExecution, CodePipeline API Reference)."""
        name = stage["name"]
        with self.store.lock:
            keep = {r.action for r in execution.latest_runs(name) if r.status == "Succeeded"} \
                if retry_mode == "FAILED_ACTIONS" else set()
            execution.stages[name], execution.entered[name], execution.updated = "InProgress", now(), now()
        status = "Succeeded"
        orders = sorted({int(a.get("runOrder", 1)) for a in stage["actions"]})
        for order in orders:
            if execution.stop.is_set():
                status = "Stopped"
                break
            group = [a for a in stage["actions"] if int(a.get("runOrder", 1)) == order and a["name"] not in keep]
            threads = [threading.Thread(target=self._run_action, args=(execution, name, action),
                                        name=f"action-{action['name']}", daemon=True) for action in group]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            statuses = {r.status for r in execution.latest_runs(name)}
            if "Failed" in statuses:
                status = "Failed"
                break
            if "Abandoned" in statuses:
                status = "Stopped"
                break
        with self.store.lock:
            execution.stages[name], execution.updated = status, now()
        return status

    def _run_action(self, execution: Execution, stage: str, declaration: Mapping[str, Any]) -> None:
        run = ActionRun(execution_id=execution.id, pipeline_version=execution.version, stage=stage,
                        action=declaration["name"], declaration=copy.deepcopy(dict(declaration)),
                        region=self.runtime.aws.gateway.region)
        with self.store.lock:
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
            for error in limits.resolved_configuration_errors(run.resolved):  # CodePipeline's 100 KB
                raise ActionFailed(error.message, error.code)
            run.inputs = self._inputs(execution, declaration)
            store = self._artifact_store(execution.definition)
            session = pipeline_session(self.runtime, execution.pipeline, execution.definition)
            if declaration.get("roleArn"):
                raise ActionFailed("an action roleArn (CodePipeline assuming another role for one action) is not "
                                   "supported by the local engine", "ConfigurationError")
            run.outputs = [ArtifactRef(a["name"], store["location"], new_artifact_key(execution.pipeline, a["name"]))
                           for a in declaration.get("outputArtifacts") or []]
            context = ActionContext(
                runtime=self.runtime, pipeline=execution.pipeline, pipeline_arn=execution.pipeline_arn,
                execution_id=execution.id, stage=stage, action=run.action, action_execution_id=run.id,
                declaration=declaration, configuration=run.resolved, inputs=run.inputs, outputs=run.outputs,
                encryption_key=store.get("encryptionKey"), account_id=self.runtime.aws.account_id,
                region=run.region, workdir=workdir, deadline=time.monotonic() + self._timeout(declaration),
                client=lambda service: self.client(service, session), internal=self.client, session=session,
                sources=self.sources, stack_applier=self.stack_applier,
                abandoned=execution.abandon.is_set,
                progress=lambda **kw: self._progress(run, **kw),
                new_job=lambda token: self._new_job(execution, run, token, store),
                end_job=self._end_job, poll_interval=self.poll_interval,
                source_override=execution.source_overrides.get(run.action),
                open_approval=lambda: self._open_approval(execution, run))
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
        with self.store.lock:
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

    def _finish(self, run: ActionRun, status: str, *, summary: str | None = None,
                error: dict[str, str] | None = None, variables: dict[str, Any] | None = None,
                external_id: str | None = None, external_url: str | None = None) -> None:
        with self.store.lock:
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
        self.runtime.changes.notify()  # a follower sees the action end at once, not at its next look
        logger.info("action %s/%s: %s%s", run.stage, run.action, status,
                    f": {run.summary}" if run.summary else "")

    def _progress(self, run: ActionRun, summary: str | None = None, percent: int | None = None,
                  external_id: str | None = None, external_url: str | None = None) -> None:
        with self.store.lock:
            run.updated = now()
            if summary:
                run.summary = summary[:MAX_SUMMARY]
            if percent is not None:
                run.percent = int(percent)
            run.external_id = external_id or run.external_id
            run.external_url = external_url or run.external_url

    def _timeout(self, declaration: Mapping[str, Any]) -> float:
        """The action's own timeoutInMinutes when the definition sets one (ActionDeclaration: "available only
        to the manual approval ActionType"), else the engine's default for its kind."""
        minutes = declaration.get("timeoutInMinutes")
        if minutes:
            return float(minutes) * 60
        return self.approval_timeout if declaration["actionTypeId"]["category"] == "Approval" else self.action_timeout

    def _open_approval(self, execution: Execution, run: ActionRun) -> Approval:
        """Register the action's approval request under its token. A PARALLEL pipeline shows no token in
        GetPipelineState; ListActionExecutions' externalExecutionId carries it (API Reference, PutApprovalResult)."""
        approval = Approval(token=run.token, pipeline=execution.pipeline, stage=run.stage, action=run.action,
                            execution_id=execution.id, action_execution_id=run.id)
        with self.store.lock:
            self.store.approvals[run.token] = approval
            if execution.mode == "PARALLEL":
                run.external_id = run.token
            else:
                run.token_visible = True
        self.runtime.changes.notify()  # who follows the execution looks now
        self.runtime.approvals.notify()  # and so does the auto-approver
        return approval

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
        with self.store.lock:
            for artifact in declaration.get("inputArtifacts") or []:
                if artifact["name"] not in execution.artifacts:
                    raise ActionFailed(f"input artifact '{artifact['name']}' was not produced by an earlier action "
                                       "of this execution", "ConfigurationError")
                refs.append(execution.artifacts[artifact["name"]])
        return refs

    def _resolve(self, execution: Execution, declaration: Mapping[str, Any]) -> dict[str, str]:
        with self.store.lock:
            scopes = {name: dict(values) for name, values in execution.namespaces.items()}
        scopes["codepipeline"] = {"PipelineExecutionId": execution.id}
        scopes["variables"] = dict(execution.variables)

        def one(key: str, value: str) -> str:
            def substitute(match: re.Match[str]) -> str:
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

    # -- jobs of Lambda actions ----------------------------------------------------------------
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
            "artifactCredentials": artifact_credentials(self.runtime, execution.pipeline, execution.definition,
                                                        store["location"]),
            "continuationToken": token,
            "encryptionKey": dict(store["encryptionKey"]) if store.get("encryptionKey") else None})
        job = Job(id=str(uuid.uuid4()), account_id=self.runtime.aws.account_id, data=data)
        self.store.add_job(job)
        return job

    def _end_job(self, job: Job) -> None:
        with self.store.lock:
            if job.status == "InProgress":
                job.status = "Ended"
