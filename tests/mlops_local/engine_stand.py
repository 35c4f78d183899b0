"""The engine tests' stand-in and Lambda handlers, shared by the tests that run job workers.

The `*_handler` functions are Lambda handlers: the engine imports them by name in a child
interpreter (as it imports `lambdas.*` handlers) and they report through the stand-in's job API.
The `stand` fixture is offered to tests/mlops_local through its conftest.py.
"""
from __future__ import annotations

import io
import json
import os
import time
import zipfile
from dataclasses import dataclass

import pytest

from mlops_local.codepipeline import PipelineEngine
from mlops_local.gateway import LocalAws
from tests.conftest import ROOT
from mlops_local.cloudformation.stacks import Stacks
from mlops_local.runtime import Runtime

HERE = "tests.mlops_local.engine_stand"
REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
LAMBDA = {"category": "Invoke", "owner": "AWS", "provider": "Lambda", "version": "1"}
S3_SOURCE = {"category": "Source", "owner": "AWS", "provider": "S3", "version": "1"}


# -- Lambda handlers (run in the engine's child process) ---------------------------------------
def _codepipeline():
    import boto3

    return boto3.client("codepipeline")


def _params(event) -> dict:
    return json.loads(event["CodePipeline.job"]["data"]["actionConfiguration"]["configuration"]
                      .get("UserParameters") or "{}")


def submit_handler(event, context):
    job = event["CodePipeline.job"]
    params = _params(event)
    details = _codepipeline().get_job_details(jobId=job["id"])["jobDetails"]
    for output in job["data"]["outputArtifacts"]:
        import boto3

        location = output["location"]["s3Location"]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("config.json", json.dumps({"job": params["execution_id"]}))
        boto3.client("s3").put_object(Bucket=location["bucketName"], Key=location["objectKey"], Body=buffer.getvalue())
    _codepipeline().put_job_success_result(
        jobId=job["id"], executionDetails={"summary": "submitted", "externalExecutionId": "job-1"},
        outputVariables={"JobName": f"job-{params['execution_id']}", "Threshold": params["threshold"],
                         "Etag": params["etag"], "Greeting": os.environ.get("GREETING", "unset"),
                         "Stage": details["data"]["pipelineContext"]["stage"]["name"],
                         "Endpoint": os.environ["AWS_ENDPOINT_URL"], "JobId": job["id"]})


def sleep_handler(event, context):
    params = _params(event)
    time.sleep(float(params.get("seconds", 0)))
    _codepipeline().put_job_success_result(
        jobId=event["CodePipeline.job"]["id"], executionDetails={"summary": f"slept for {params.get('seconds')}"},
        outputVariables={"Value": params.get("value", ""), "Remaining": str(context.get_remaining_time_in_millis())})


def monitor_handler(event, context):
    """Done when the marker object exists; otherwise continue, counting invocations in the token."""
    import boto3

    job = event["CodePipeline.job"]
    params = _params(event)
    token = json.loads(job["data"].get("continuationToken") or '{"n": 0}')
    count = token["n"] + 1
    try:
        boto3.client("s3").head_object(Bucket=params["bucket"], Key=params["marker"])
    except Exception:
        _codepipeline().put_job_success_result(
            jobId=job["id"], continuationToken=json.dumps({"n": count}),
            executionDetails={"summary": "waiting for the marker", "percentComplete": 50})
        return
    _codepipeline().put_job_success_result(jobId=job["id"], executionDetails={"summary": "marker found"},
                                           outputVariables={"Invocations": str(count)})


def reject_handler(event, context):
    _codepipeline().put_job_failure_result(
        jobId=event["CodePipeline.job"]["id"],
        failureDetails={"type": "JobFailed", "message": "model REJECTED: rmse 700 > threshold 600"})


def flaky_handler(event, context):
    """Fails until the marker object exists (a fault fixed between a failure and its retry)."""
    import boto3

    job_id = event["CodePipeline.job"]["id"]
    params = _params(event)
    try:
        boto3.client("s3").head_object(Bucket=params["bucket"], Key=params["marker"])
    except Exception:
        _codepipeline().put_job_failure_result(
            jobId=job_id, failureDetails={"type": "JobFailed", "message": f"no marker {params['marker']}"})
        return
    _codepipeline().put_job_success_result(jobId=job_id, executionDetails={"summary": "marker found"})


def silent_handler(event, context):
    return {"forgot": "to report"}


def raising_handler(event, context):
    raise RuntimeError("boom in the handler")


CALLS = {"count": 0}  # module state: survives between invocations only in a warm worker


def pid_handler(event, context):
    """Reports which process served it and how many invocations that process has served."""
    CALLS["count"] += 1
    print(f"pid handler call {CALLS['count']} in {os.getpid()}", flush=True)
    if "exit" in _params(event):  # dies without an answer, as a segfault or os._exit in a handler would
        os._exit(int(_params(event)["exit"]))
    _codepipeline().put_job_success_result(
        jobId=event["CodePipeline.job"]["id"], executionDetails={"summary": "pid"},
        outputVariables={"Pid": str(os.getpid()), "Calls": str(CALLS["count"]),
                         "Greeting": os.environ.get("GREETING", "unset"), "Cwd": os.getcwd()})


# -- fixtures ----------------------------------------------------------------------------------
@dataclass
class Stand:
    aws: LocalAws
    runtime: Runtime
    engine: PipelineEngine
    role: str
    key: str
    applied: list


@pytest.fixture(scope="module")
def stand(tmp_path_factory):
    with LocalAws() as aws:
        runtime = Runtime(aws=aws, workdir=tmp_path_factory.mktemp("engine"), source_root=ROOT)
        Stacks(runtime).register()  # stacks check their resources' handler permissions, as on AWS
        applied: list[str] = []
        # Continuations re-run only on a change signal here (30 s fallback), which the tests drive.
        engine = PipelineEngine(runtime, stack_applier=applied.append, poll_interval=(30.0, 30.0)).register()
        iam = aws.client("iam")
        trust = {"Version": "2012-10-17", "Statement": [  # one statement per service: moto's CreatePipeline
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": service}}  # reads it so
            for service in ("codepipeline.amazonaws.com", "lambda.amazonaws.com", "codebuild.amazonaws.com",
                            "cloudformation.amazonaws.com")]}
        role = iam.create_role(RoleName="engine-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        # The engine's tests are about orchestration, not IAM: the pipeline and its functions share one role
        # allowed the services they use (tests of enforcement make least-privilege roles of their own).
        iam.put_role_policy(RoleName="engine-role", PolicyName="engine-tests", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
                "codepipeline:*", "s3:*", "kms:*", "lambda:*", "cloudformation:*", "codebuild:*", "codecommit:*",
                "iam:PassRole", "glue:*", "sagemaker:*", "ecr:*", "logs:*"]}]}))
        key = aws.client("kms").create_key()["KeyMetadata"]["Arn"]
        s3 = aws.client("s3")
        for bucket in ("engine-artifacts", "engine-data"):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket="engine-data", VersioningConfiguration={"Status": "Enabled"})
        s3.put_object(Bucket="engine-data", Key="raw/data.csv", Body=b"a,b\n1,2\n")
        try:
            yield Stand(aws, runtime, engine, role, key, applied)
        finally:
            runtime.close()  # the warm Lambda workers


def create_function(stand: Stand, name: str, handler: str, env: dict | None = None, image: str | None = None):
    lam = stand.aws.client("lambda")
    if image:
        lam.create_function(FunctionName=name, PackageType="Image", Role=stand.role, Code={"ImageUri": image},
                            Timeout=60)
        return
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "")
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=stand.role, Handler=handler, Timeout=60,
                        Code={"ZipFile": buffer.getvalue()}, Environment={"Variables": env or {}})


def data_source(namespace: str = "Data", key: str = "raw/data.csv") -> dict:
    return {"name": "Source", "actions": [{
        "name": "DataSource", "actionTypeId": S3_SOURCE, "namespace": namespace, "runOrder": 1,
        "configuration": {"S3Bucket": "engine-data", "S3ObjectKey": key, "PollForSourceChanges": "false"},
        "outputArtifacts": [{"name": "RawData"}]}]}


def lambda_action(name: str, function: str, params: dict | str = "{}", run_order: int = 1, **extra) -> dict:
    return {"name": name, "actionTypeId": LAMBDA, "runOrder": run_order,
            "configuration": {"FunctionName": function,
                              "UserParameters": params if isinstance(params, str) else json.dumps(params)},
            **extra}


def create_pipeline(stand: Stand, name: str, stages: list[dict], mode: str = "QUEUED", variables=None) -> None:
    """Create the pipeline, then abandon the execution CodePipeline starts for a new one (trigger
    CreatePipeline), as deploy.sh does: each test starts the executions it is about."""
    cp = stand.aws.client("codepipeline")
    cp.create_pipeline(pipeline={
        "name": name, "roleArn": stand.role, "pipelineType": "V2", "executionMode": mode,
        "artifactStore": {"type": "S3", "location": "engine-artifacts",
                          "encryptionKey": {"id": stand.key, "type": "KMS"}},
        "variables": variables or [], "stages": stages})
    (created,) = cp.list_pipeline_executions(pipelineName=name)["pipelineExecutionSummaries"]
    assert created["trigger"]["triggerType"] == "CreatePipeline"
    if created["status"] == "InProgress":
        try:
            cp.stop_pipeline_execution(pipelineName=name, pipelineExecutionId=created["pipelineExecutionId"],
                                       abandon=True, reason="the test starts its own executions")
        except cp.exceptions.PipelineExecutionNotStoppableException:
            pass  # it ended meanwhile
    wait_done(stand, name, created["pipelineExecutionId"])


def wait_done(stand: Stand, pipeline: str, execution_id: str, timeout: float = 90) -> dict:
    cp = stand.aws.client("codepipeline")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        execution = cp.get_pipeline_execution(pipelineName=pipeline, pipelineExecutionId=execution_id)
        if execution["pipelineExecution"]["status"] not in ("InProgress", "Stopping"):
            return execution["pipelineExecution"]
        time.sleep(0.1)
    raise AssertionError(f"execution {execution_id} did not end in {timeout} s")


def actions_of(stand: Stand, pipeline: str, execution_id: str) -> dict[str, dict]:
    details = stand.aws.client("codepipeline").list_action_executions(
        pipelineName=pipeline, filter={"pipelineExecutionId": execution_id})["actionExecutionDetails"]
    return {d["actionName"]: d for d in details}


def wait_for(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
