"""`mlops-local run`: the real pipeline through the real templates, on the local stand-in for AWS.

Starts the stand-in (moto behind the gateway, plus the local runtime for Glue, SageMaker jobs,
endpoints, dropped stack resources and CodePipeline), deploys the pipeline stack with
scripts/deploy.sh through the `aws` CLI, uploads the data with scripts/upload_data.sh, starts an
execution, follows it, and writes runs/<execution-id>/summary.json and report.md.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from mlops_local import processes
from mlops_local.approvals import AutoApprover, NoOpenApproval, open_approval
from mlops_local.codepipeline import PipelineEngine
from mlops_local.sagemaker.endpoints import Endpoints
from mlops_local.gateway import Gateway, LocalAws
from mlops_local.glue_runs import GlueRuns
from mlops_local.iam.decisions import Judge
from mlops_local.iam.unused import deployed_roles
from mlops_local.sagemaker.processing_jobs import ProcessingJobs
from mlops_local.sagemaker.shapes import ResponseShapes
from mlops_local.runtime import Runtime
from mlops_local.cloudformation.stacks import Stacks
from mlops_local.cloudwatch_logs import export_groups
from mlops_local.console import Console
from mlops_local.summary import access_summary, build_summary, collect
from mlops_local import summary as summaries
from mlops_local.sagemaker.training_jobs import TrainingJobs

PRODUCTION_STAGE = "Production"
# follow() looks again this long after a change woke it: a run's changes come in bursts (an action
# ends, the next starts, a job moves), and each look is two requests through the stand-in's gateway.
FOLLOW_GAP = 0.1
PROJECT = "mlops"
STACK = f"{PROJECT}-pipeline"
EXIT_OK, EXIT_FAILED, EXIT_REJECTED, EXIT_APPROVAL_REJECTED = 0, 1, 3, 4
AUTO_APPROVE_LINE = ("approvals are answered automatically (--auto-approve); "
                     "without it the run waits for `mlops-local approve`")
ANSWER_ENVIRONMENT = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# A prod update's canary bakes, then the full fleet bakes, then the old fleet is kept (endpoint.yaml). On AWS the
# pipeline's defaults are 600 s / 300 s; a local run keeps the same steps, shortened.
LOCAL_PROD_WAITS = {"ProdCanaryWaitSeconds": 3, "ProdTerminationWaitSeconds": 0}
WAIT_FOR_APPROVAL_LINE = ("approvals wait for an answer (`mlops-local approve|reject <execution-id>`, "
                          "or run with --auto-approve)")


@dataclass
class PipelineOptions:
    source_root: Path                      # the project checkout: templates/, scripts/, src/
    data: Path
    dataset_config: Path
    runs_dir: Path
    quality_threshold: float
    keep_running: bool = False
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 3600.0
    enforce_iam: bool = True  # False: a debugging switch, requests IAM denies are served (judged afterwards)
    auto_approve: bool = True  # programmatic runs and tests are unattended; the CLI asks for --auto-approve


class LocalPipeline:
    """The stand-in with every runtime component, for one `run`."""

    def __init__(self, workdir: Path, source_root: Path, enforce_iam: bool = True, auto_approve: bool = True,
                 say: Callable[[str], None] | None = None):
        # auto_approve by default, as PipelineOptions: tests driving the stand-in directly are unattended.
        self.aws = LocalAws(Gateway(enforce=enforce_iam)).start()
        self.runtime = Runtime(self.aws, workdir, source_root)
        self.glue, self.training = GlueRuns(self.runtime), TrainingJobs(self.runtime)
        self.processing, self.endpoints = ProcessingJobs(self.runtime), Endpoints(self.runtime)
        self.stacks = Stacks(self.runtime)
        for component in (self.glue, self.training, self.processing, self.endpoints, self.stacks,
                          ResponseShapes(self.runtime)):
            component.register()
        self.engine = PipelineEngine(self.runtime, stack_applier=self.stacks.apply)
        self.engine.register()
        # Started last, stopped first (close): answers every Manual approval as the mlops-local user.
        self.approver: AutoApprover | None = None
        if auto_approve:
            self.approver = AutoApprover(self.aws.client("codepipeline"), self.runtime.approvals, say=say).start()

    def environment(self) -> dict[str, str]:
        """For the deploy scripts: the stand-in's endpoint, and this venv's `aws` first on PATH."""
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, **self.aws.environment(), "PATH": path}

    def script(self, name: str, *args: str, log: Path) -> None:
        # In a process group of its own, so an interrupted run stops the shell and the `aws` it runs.
        process = processes.start(["bash", str(self.runtime.source_root / "scripts" / name), *args],
                                  self.environment(), log)
        try:
            code = _wait(process)
        finally:
            with processes.cleaning_up():
                processes.stop(process, grace=2.0)
        if code != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"scripts/{name} failed (exit {code}): {' / '.join(tail)} [log: {log}]")

    def close(self) -> None:
        with processes.cleaning_up():  # a second signal does not cut this short
            if self.approver is not None:
                self.approver.stop()
            for component in (self.endpoints, self.glue, self.training, self.processing):
                component.close()
            self.runtime.close()
            self.aws.stop()


def _wait(process: subprocess.Popen) -> int:
    """Popen.wait() in short slices: a bare wait() was seen to hold SIGINT/SIGTERM until the script
    ended (tests/mlops_local/test_fault_matrix.py, signals during deploy.sh)."""
    while True:
        try:
            return process.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            continue


def run_pipeline(options: PipelineOptions, say: Callable[[str], None] = print,
                 before_close: Callable[[LocalPipeline, dict], None] | None = None) -> tuple[int, dict]:
    """Deploy, upload, execute, summarise. `before_close` sees the stand-in while it is still up."""
    started = time.perf_counter()
    workdir = (options.runs_dir / f".stand-in-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "deploy.log"
    local = LocalPipeline(workdir, options.source_root, options.enforce_iam, options.auto_approve, say=say)
    summary: dict[str, Any] = {}
    run_dir: Path | None = None
    try:
        say(f"local AWS stand-in on {local.aws.url} (work dir {workdir})")
        if not options.enforce_iam:
            say("IAM enforcement is OFF (--no-enforce-iam, for debugging): requests IAM would deny are served")
        say(AUTO_APPROVE_LINE if local.approver is not None else WAIT_FOR_APPROVAL_LINE)
        local.script("deploy.sh", "--project-name", PROJECT, f"DataObjectKey=raw/{options.data.name}",
                     f"QualityThreshold={options.quality_threshold:g}",
                     f"TrainingHyperparameters={json.dumps(dict(options.hyperparameters))}",
                     *(f"{key}={value}" for key, value in LOCAL_PROD_WAITS.items()), log=log)
        bake = LOCAL_PROD_WAITS["ProdCanaryWaitSeconds"]
        say(f"deployed stack {STACK} with scripts/deploy.sh (prod updates bake {bake} s a step locally: "
            "ProdCanaryWaitSeconds, 600 s by default on AWS)")
        local.script("upload_data.sh", "--stack-name", STACK, "--data", str(options.data),
                     "--dataset-config", str(options.dataset_config), log=log)
        say(f"uploaded {options.data.name} and {options.dataset_config.name} with scripts/upload_data.sh")
        pipeline = stack_output(local.aws.client("cloudformation"), STACK, "PipelineName")
        codepipeline = local.aws.client("codepipeline")
        execution_started = time.perf_counter()
        # The data upload starts the execution through the stack's EventBridge rule, as on AWS; QualityThreshold
        # reaches it as the pipeline variable's default, deploy.sh's QualityThreshold parameter.
        from mlops_local.events import triggered_execution

        triggered = triggered_execution(codepipeline, pipeline, local.runtime.changes)
        execution_id = triggered["pipelineExecutionId"]
        say(f"the data upload started execution {execution_id} of {pipeline} "
            f"(EventBridge rule {triggered['trigger'].get('triggerDetail', '').rsplit('/', 1)[-1]})")
        follow(local, pipeline, execution_id, say, options.timeout)
        local.endpoints.capture.flush()  # the endpoint test's captured requests are in S3 before the summary
        execution_seconds = time.perf_counter() - execution_started
        if triggered.get("startTime"):  # it started during the upload, before we found it
            execution_seconds = (datetime.now(timezone.utc) - triggered["startTime"]).total_seconds()
            execution_started = time.perf_counter() - execution_seconds
        summary = build_summary(
            collect(codepipeline, pipeline, execution_id), s3=local.aws.client("s3"),
            sagemaker=local.aws.client("sagemaker"), glue=local.aws.client("glue"),
            wall_seconds=execution_seconds,
            job_times=lambda found: summaries.job_times(local.aws.client, found),
            extra_timings={"setup_seconds": execution_started - started,
                           "total_seconds": time.perf_counter() - started})
        run_dir = options.runs_dir / execution_id
        # Every request of the run (deploy, upload, execution): who called, what IAM checked and its
        # decision, made on the request path (with enforcement switched off: judged now, a dry run).
        summary["access"] = access_summary(local.runtime.access_log.write_jsonl(
            run_dir / "access.jsonl", decide=Judge(local.aws.account_id, local.aws.gateway.region).decide),
            roles=deployed_roles(local.aws.account_id, local.aws.gateway.region))
        say(results_line(write_outputs(run_dir, summary, workdir)))
        for line in closing_lines(summary):
            say(line)
        code = exit_code(summary)
        if before_close:
            before_close(local, summary)
        if code == EXIT_OK and options.keep_running:
            keep_serving(local, summary, say)
        return code, summary
    finally:
        if run_dir is not None:  # CloudWatch Logs as `aws logs` showed them, kept after the stand-in stops
            with contextlib.suppress(Exception):
                export_groups(local.aws.client("logs"), run_dir / "logs")
        local.close()
        if run_dir is not None:  # the stand-in's logs and job folders stay with the run
            workdir.rename(run_dir / "stand-in")


def stack_output(cloudformation: Any, stack: str, key: str) -> str:
    outputs = cloudformation.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    for output in outputs:
        if output["OutputKey"] == key:
            return output["OutputValue"]
    raise RuntimeError(f"stack {stack} has no output {key}")


def follow(local: LocalPipeline, pipeline: str, execution_id: str, say: Callable[[str], None],
           timeout: float) -> str:
    """Show each action's status changes until the execution ends: `say` may be a console.Console
    (a live view on a terminal); any other callable gets plain lines. Without an auto-approver, an approval
    that starts waiting is said once with the commands that answer it; the follow keeps waiting (the
    approval's own timeout ends it)."""
    view = say if isinstance(say, Console) else Console(say)
    codepipeline = local.aws.client("codepipeline")
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    told: set[tuple[str, str]] = set()
    answered_for_us = getattr(local, "approver", None) is not None  # duck-typed: the tests' engine stand has none
    deadline = time.monotonic() + timeout
    version = local.runtime.changes.version
    try:
        while True:
            details = codepipeline.list_action_executions(
                pipelineName=pipeline, filter={"pipelineExecutionId": execution_id})["actionExecutionDetails"]
            for detail in sorted(details, key=lambda d: d["startTime"]):
                key = (detail["stageName"], detail["actionName"])
                result = (detail.get("output") or {}).get("executionResult") or {}
                message = (result.get("errorDetails") or {}).get("message") \
                    or result.get("externalExecutionSummary") or ""
                if seen.get(key) != (detail["status"], message):  # a new status, or a job's new state
                    seen[key] = (detail["status"], message)
                    seconds = (detail["lastUpdateTime"] - detail["startTime"]).total_seconds()
                    view.action(key[0], key[1], detail["status"], seconds, message)  # whole: the cause ends it
                if detail["status"] == "InProgress" and _is_approval(detail) and not answered_for_us \
                        and key not in told:
                    told.add(key)
                    for line in how_to_answer(codepipeline, local.aws.environment(), pipeline, execution_id, *key):
                        view.say(line)
            execution = codepipeline.get_pipeline_execution(
                pipelineName=pipeline, pipelineExecutionId=execution_id)["pipelineExecution"]
            status = execution["status"]
            if status not in ("InProgress", "Stopping"):
                view.close()
                view.say(f"execution {execution_id}: {status}" + (f" - {execution['statusSummary']}"
                                                                  if execution.get("statusSummary") else ""))
                return status
            if time.monotonic() > deadline:
                codepipeline.stop_pipeline_execution(pipelineName=pipeline, pipelineExecutionId=execution_id,
                                                     abandon=True, reason="mlops-local run timed out")
                raise RuntimeError(f"execution {execution_id} did not finish within {timeout:.0f} s")
            version = local.runtime.changes.wait(version, timeout=0.5)
            time.sleep(FOLLOW_GAP)  # changes come in bursts: one look covers the burst
    finally:
        view.close()  # an interrupted or failed follow leaves the terminal as it was


def _is_approval(detail: Mapping[str, Any]) -> bool:
    return ((detail.get("input") or {}).get("actionTypeId") or {}).get("category") == "Approval"


def how_to_answer(codepipeline: Any, environment: Mapping[str, str], pipeline: str, execution_id: str, stage: str,
                  action: str) -> list[str]:
    """What to type to answer the waiting approval, in another shell: the stand-in's environment (endpoint,
    region, the mlops-local user's keys), then mlops-local or the aws CLI with its token."""
    try:
        token = open_approval(codepipeline, pipeline, execution_id).token
    except NoOpenApproval:  # answered meanwhile: the CLI user reads it from get-pipeline-state
        token = "<token from aws codepipeline get-pipeline-state>"
    exports = " ".join(f"{key}={environment[key]}" for key in ANSWER_ENVIRONMENT)
    return [f"{stage}/{action} waits for an answer (until the approval's timeout); in another shell:",
            f"  export {exports}",
            f"  mlops-local approve {execution_id} --summary \"metrics reviewed\"",
            f"  mlops-local reject {execution_id} --summary \"why\"",
            f"  or: aws codepipeline put-approval-result --pipeline-name {pipeline} "
            f"--stage-name {stage} --action-name {action} --token {token} "
            f"--result summary=reviewed,status=Approved   (status=Rejected to reject)"]


def exit_code(summary: Mapping[str, Any]) -> int:
    """OK needs the whole way: Succeeded, the gate's APPROVED, dev's test passed and, when the pipeline has
    a Production stage, prod's too. A REJECTED gate and a rejected (or expired) approval have codes of their own."""
    if summary.get("decision") == "REJECTED":
        return EXIT_REJECTED
    if (summary.get("approval") or {}).get("status") in ("Rejected", "Expired"):
        return EXIT_APPROVAL_REJECTED
    endpoints = summary.get("endpoints") or {}
    tested = [summary.get("endpoint_test") or {}]
    if any(stage["name"] == PRODUCTION_STAGE for stage in summary.get("stages") or []):
        tested.append((endpoints.get("prod") or {}).get("test") or {})
    if summary.get("status") == "Succeeded" and summary.get("decision") == "APPROVED" and \
            all(test.get("passed") for test in tested):
        return EXIT_OK
    return EXIT_FAILED


def closing_lines(summary: Mapping[str, Any]) -> list[str]:
    """The run's last words: a rejected approval and who/why, and what dev and prod serve."""
    lines = []
    approval = summary.get("approval")
    if approval and approval["status"] in ("Rejected", "Expired"):
        lines.append(f"{summaries.approval_line(approval)} - prod was not deployed (exit {EXIT_APPROVAL_REJECTED})")
    served = summaries.serving_line(summary)
    if served:
        lines.append(served)
    return lines


def write_outputs(run_dir: Path, summary: Mapping[str, Any], workdir: Path) -> dict[str, Path]:
    """summary.json, report.md, the loss and evaluation plots; returns the paths by kind."""
    plot = next(workdir.glob("sagemaker/processing/*/processing/evaluation/evaluation.png"), None)
    return summaries.write_outputs(run_dir, summary, plot.read_bytes() if plot else None)


def results_line(written: Mapping[str, Path]) -> str:
    """Where the results are, said before anything waits (--keep-running)."""
    return "results: " + ", ".join(str(path) for path in written.values())


def keep_serving(local: LocalPipeline, summary: Mapping[str, Any], say: Callable[[str], None]) -> None:
    names = [f"{env} {e['name']}" for env, e in (summary.get("endpoints") or {}).items() if e and e.get("status")]
    say(f"AWS_ENDPOINT_URL={local.aws.url} (region {local.aws.gateway.region}); endpoints: {', '.join(names)}")
    say(f"summarise any execution meanwhile: AWS_ENDPOINT_URL={local.aws.url} mlops-local summary <execution-id>")
    say("the stand-in and the endpoint stay up until Ctrl-C")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
