"""The local CodePipeline: runs the pipelines stored in moto and serves their executions and jobs.

`PipelineEngine` wires the store of executions (`models`), the `scheduler` that runs them and the
API handlers (`responses`) registered on the gateway; `actions` holds what each action type does.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Mapping

from mlops_local.codepipeline.actions import SourceProvider
from mlops_local.codepipeline.models import PipelineStore
from mlops_local.codepipeline.responses import CodePipelineResponses
from mlops_local.codepipeline.scheduler import Scheduler
from mlops_local.runtime import RoleCredentials, Runtime

logger = logging.getLogger(__name__)
PREFIX = "CodePipeline_20150709."
DEFAULT_ACTION_TIMEOUT = 3600.0
DEFAULT_POLL_INTERVAL = (0.5, 2.0)
# "If no response is received within seven days ... the pipeline status changes to Failed" (User Guide,
# "Approve or reject an approval action in CodePipeline").
DEFAULT_APPROVAL_TIMEOUT = 7 * 24 * 3600.0


class PipelineEngine:
    """Runs CodePipeline executions of the pipelines stored in moto; serves the job API."""

    def __init__(self, runtime: Runtime, *, sources: SourceProvider | None = None,
                 stack_applier: Callable[[str], object] | None = None,
                 action_timeout: float = DEFAULT_ACTION_TIMEOUT,
                 poll_interval: tuple[float, float] = DEFAULT_POLL_INTERVAL,
                 approval_timeout: float = DEFAULT_APPROVAL_TIMEOUT) -> None:
        self.runtime = runtime
        self.store = PipelineStore()
        self._clients: dict[tuple[str, str], Any] = {}
        self._client_lock = threading.Lock()
        self.scheduler = Scheduler(
            runtime, self.store, self.client,
            sources=sources or (lambda repository, branch: runtime.source_root),  # every branch: the checkout
            stack_applier=stack_applier, action_timeout=action_timeout, poll_interval=poll_interval,
            approval_timeout=approval_timeout)
        self.responses = CodePipelineResponses(self.store, self.scheduler, self.client)

    def register(self) -> "PipelineEngine":
        api = self.responses
        for name, handler in {
            "StartPipelineExecution": api.start_pipeline_execution,
            "GetPipelineState": api.get_pipeline_state,
            "GetPipelineExecution": api.get_pipeline_execution,
            "ListPipelineExecutions": api.list_pipeline_executions,
            "ListActionExecutions": api.list_action_executions,
            "StopPipelineExecution": api.stop_pipeline_execution,
            "PutJobSuccessResult": api.put_job_success_result,
            "PutJobFailureResult": api.put_job_failure_result,
            "GetJobDetails": api.get_job_details,
            "PutApprovalResult": api.put_approval_result,
            "ListPipelines": api.list_pipelines,
            "RetryStageExecution": api.retry_stage_execution,
            "DisableStageTransition": api.disable_stage_transition,
            "EnableStageTransition": api.enable_stage_transition,
            "RollbackStage": api.rollback_stage,
            "ListRuleExecutions": api.list_rule_executions,
        }.items():
            self.runtime.aws.gateway.operation(PREFIX + name, handler)
        self.runtime.aws.gateway.after("codepipeline", "CreatePipeline", self._after_create_pipeline)
        # The pipeline's source and trigger services, where moto lacks what the pipeline uses.
        from mlops_local.codecommit import CodeCommitApi

        CodeCommitApi(self.runtime.aws.gateway).register()
        from mlops_local.events import EventBridge

        self.events = EventBridge(self.runtime, self._start_for_event).register()
        from mlops_local.cloudformation import stack_models

        stack_models.pipeline_created = self._pipeline_created
        return self

    # -- a new pipeline starts an execution --------------------------------------------------
    # "When a pipeline is created, a pipeline execution starts automatically. This is the CreatePipeline
    # trigger type" (CodePipeline User Guide, "Start a pipeline in CodePipeline"). On AWS it fails at
    # Source when the sources do not exist yet; deploy.sh abandons it.
    def _after_create_pipeline(self, params: dict[str, Any], status: int, body: bytes) -> None:
        if status == 200:
            self._pipeline_created(str((params.get("pipeline") or {}).get("name", "")))

    def _pipeline_created(self, name: str) -> None:
        if not name or not self.runtime.aws.thread.is_alive():  # an engine of a stand-in that has stopped
            return
        try:
            self.responses.start_pipeline_execution({"name": name}, trigger={"triggerType": "CreatePipeline"})
        except Exception:  # never fail the pipeline's creation for it; the log says why
            logger.exception("could not start the execution of the new pipeline %s", name)

    def _start_for_event(self, pipeline: str, trigger: Mapping[str, str]) -> str:
        """An EventBridge rule's target: an execution with the rule as its trigger."""
        answer = self.responses.start_pipeline_execution({"name": pipeline}, trigger=dict(trigger))
        return str(answer["pipelineExecutionId"])

    def client(self, service: str, session: RoleCredentials | None = None) -> Any:
        """One boto3 client per service and signer (the administrator, or a role session), shared by
        the engine's threads."""
        key = (service, session.access_key_id if session else "")
        with self._client_lock:  # boto3's default session is not thread-safe while creating clients
            if key not in self._clients:
                self._clients[key] = (self.runtime.client_as(service, session) if session
                                      else self.runtime.aws.client(service))
            return self._clients[key]

    def wait(self, pipeline: str, execution_id: str, timeout: float | None = None) -> str:
        """Block until the execution ends; return its status (or the current one on timeout)."""
        execution = self.responses.execution(pipeline, execution_id)
        execution.done.wait(timeout)
        return execution.status


__all__ = ["PipelineEngine"]
