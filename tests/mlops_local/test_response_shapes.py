"""The stand-in's answers have the shapes AWS gives: every resource the pipeline creates reads back
through botocore's output shapes, the SageMaker SDK v3 resource classes and the aws CLI.

botocore validates requests, never answers, so `shape_problems` walks an answer (the raw JSON, before
botocore's parser drops what it does not know) against the operation's output shape: members that
exist, required members present, types, enum values, and no `{}` for a structure with required
members (a configuration AWS would omit).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest

from mlops_local.cloudformation.stacks import Stacks
from mlops_local.codepipeline import PipelineEngine
from mlops_local.gateway import LocalAws
from mlops_local.glue_runs import GlueRuns
from mlops_local.runtime import Runtime
from mlops_local.sagemaker.endpoints import Endpoints, capture_summary
from mlops_local.sagemaker.processing_jobs import ProcessingJobs
from mlops_local.sagemaker.shapes import ResponseShapes
from mlops_local.sagemaker.training_jobs import TrainingJobs, pack_model
from tests.conftest import ROOT
from tests.mlops_local.sagemaker_requests import BUCKET as TRAINING_BUCKET
from tests.mlops_local.sagemaker_requests import EXECUTION as TRAINING_EXECUTION
from tests.mlops_local.sagemaker_requests import create_role, execution_statements, splits, training_request
from tests.training.model_files import write_model_dir

ACCOUNT = "123456789012"
IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/mlops-training:c0ffee0"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/mlops-sagemaker"
BUCKET = "shape-data"
GROUP = "mlops-models"
EXECUTION = "exec-1"
SETTLED_WITHIN = 120.0
AWS_CLI = str(Path(sys.executable).parent / "aws")

# Members botocore marks required that the stand-in leaves out on purpose, each with its reason:
# where AWS's documentation does not say what AWS answers, nothing is made up.
NO_KMS_KEY = ("DataCaptureConfigSummary", "KmsKeyId")  # no key configured (templates/endpoint.yaml's default)
NO_MODEL = ("DescribeTrainingJobResponse", "ModelArtifacts")  # a job that failed before it wrote a model
NO_STUDIO_USER = ("DescribeModelPackageGroupOutput", "CreatedBy")  # created outside SageMaker Studio


# -- the output-shape check ----------------------------------------------------------------------
def shape_problems(shape: Any, value: Any, path: str = "", excused: frozenset = frozenset()) -> list[str]:
    """What in `value` (JSON as the service sent it) the output `shape` does not allow; `excused`
    holds (shape, member) pairs whose absence is not reported."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{path or '.'}: {type(value).__name__}, not a {shape.name} structure"]
        problems = []
        if not value and shape.required_members:
            problems.append(f"{path}: {{}} for {shape.name}, which requires {shape.required_members}; "
                            "AWS omits a configuration that was not given")
        else:
            problems += [f"{path}.{m}: required by {shape.name}, missing" for m in shape.required_members
                         if value.get(m) is None and (shape.name, m) not in excused]
        for key, item in value.items():
            if key not in shape.members:
                problems.append(f"{path}.{key}: not a member of {shape.name}")
            else:
                problems += shape_problems(shape.members[key], item, f"{path}.{key}", excused)
        return problems
    if kind == "list":
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__}, not a list"]
        return [p for i, item in enumerate(value) for p in shape_problems(shape.member, item, f"{path}[{i}]", excused)]
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__}, not a map"]
        return [p for k, item in value.items() for p in shape_problems(shape.value, item, f"{path}[{k}]", excused)]
    expected: dict[str, tuple[type, ...]] = {
        "string": (str,), "blob": (str,), "boolean": (bool,), "integer": (int,), "long": (int,),
        "float": (int, float), "double": (int, float), "timestamp": (int, float, str)}
    if not isinstance(value, expected.get(kind, (object,))) or (kind != "boolean" and isinstance(value, bool)):
        return [f"{path}: {value!r} is not a {kind} ({shape.name})"]
    if kind == "string" and shape.enum and value not in shape.enum:
        return [f"{path}: {value!r} is not one of {shape.name}'s values {shape.enum}"]
    return []


@pytest.mark.parametrize("shape, value, problem", [
    ("DescribeModelOutput", {"ModelName": "m", "ModelArn": "a", "CreationTime": 1.0, "VpcConfig": {}},
     ".VpcConfig: {} for VpcConfig"),
    ("DescribeEndpointOutput", {"EndpointName": "e", "EndpointArn": "a", "EndpointStatus": "InService",
                                "CreationTime": 1.0, "LastModifiedTime": 1.0,
                                "DataCaptureConfig": {"EnableCapture": True, "DestinationS3Uri": "s3://b/c"}},
     ".DataCaptureConfig.CaptureStatus: required by DataCaptureConfigSummary, missing"),
    ("DescribeEndpointOutput", {"EndpointName": "e", "EndpointArn": "a", "EndpointStatus": "Serving",
                                "CreationTime": 1.0, "LastModifiedTime": 1.0}, "'Serving' is not one of"),
    ("DescribeEndpointOutput", {"EndpointName": "e", "EndpointArn": "a", "EndpointStatus": "InService",
                                "CreationTime": 1.0}, ".LastModifiedTime: required by DescribeEndpointOutput"),
    ("DescribeModelOutput", {"ModelName": "m", "ModelArn": "a", "CreationTime": 1.0, "Vpc": 1},
     ".Vpc: not a member of DescribeModelOutput"),
    ("DescribeModelOutput", {"ModelName": "m", "ModelArn": "a", "CreationTime": 1.0,
                             "EnableNetworkIsolation": "true"}, "'true' is not a boolean"),
], ids=["empty-structure", "missing-required", "bad-enum", "missing-top-level", "unknown-member", "wrong-type"])
def test_shape_problems_finds_what_aws_would_never_answer(shape, value, problem):
    problems = shape_problems(_sagemaker_model().shape_for(shape), value)
    assert any(problem in p for p in problems), problems


def _sagemaker_model() -> Any:
    from mlops_local.moto_access import service_model

    return service_model("sagemaker")


@pytest.mark.parametrize("config, summary", [
    ({"EnableCapture": True, "InitialSamplingPercentage": 30, "DestinationS3Uri": "s3://b/c",
      "CaptureOptions": [{"CaptureMode": "Input"}]},
     {"EnableCapture": True, "CaptureStatus": "Started", "CurrentSamplingPercentage": 30,
      "DestinationS3Uri": "s3://b/c"}),
    ({"InitialSamplingPercentage": "100", "DestinationS3Uri": "s3://b/c", "KmsKeyId": "arn:aws:kms:k"},
     {"EnableCapture": True, "CaptureStatus": "Started", "CurrentSamplingPercentage": 100,
      "DestinationS3Uri": "s3://b/c", "KmsKeyId": "arn:aws:kms:k"}),
    ({"EnableCapture": "false", "InitialSamplingPercentage": 5, "DestinationS3Uri": "s3://b/c"},
     {"EnableCapture": False, "CaptureStatus": "Stopped", "CurrentSamplingPercentage": 5,
      "DestinationS3Uri": "s3://b/c"}),
    ({}, None),
], ids=["enabled", "enabled-by-default-from-cloudformation-with-key", "disabled", "none"])
def test_capture_summary_reports_the_configured_capture(config, summary):
    assert capture_summary(config) == summary


# -- the stand-in with every resource the pipeline creates ------------------------------------------
@dataclass
class Made:
    aws: LocalAws
    runtime: Runtime
    names: dict[str, str]


def wait_until(runtime: Runtime, done: Callable[[], Any], what: str, timeout: float = SETTLED_WITHIN) -> Any:
    """`done()` once it is truthy, re-checked whenever the runtime signals a change."""
    deadline = time.monotonic() + timeout
    while True:
        seen = runtime.changes.version
        value = done()
        if value:
            return value
        left = deadline - time.monotonic()
        assert left > 0, f"{what} did not happen within {timeout:.0f} s"
        runtime.changes.wait(seen, min(left, 1.0))


def ended(status: str) -> bool:
    return status in ("Completed", "Failed", "Stopped", "SUCCEEDED", "FAILED", "STOPPED", "InService")


def seed_registry(sm: Any) -> dict[str, str]:
    sm.create_model_package_group(ModelPackageGroupName=GROUP, ModelPackageGroupDescription="candidates")
    arns = {}
    for status in ("Approved", "Rejected"):
        arns[status] = sm.create_model_package(
            ModelPackageGroupName=GROUP, ModelPackageDescription=f"{status} by {EXECUTION}",
            ModelApprovalStatus=status,
            InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"}],
                                    "SupportedContentTypes": ["text/csv"],
                                    "SupportedResponseMIMETypes": ["text/csv"]},
            ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                          "S3Uri": f"s3://{BUCKET}/evaluation.json"}}},
            CustomerMetadataProperties={"PipelineExecutionId": EXECUTION})["ModelPackageArn"]
    return arns


def deploy_endpoint_stack(aws: LocalAws, package_arn: str) -> dict[str, str]:
    """templates/endpoint.yaml as the DeployEndpoint action deploys it (dev, data capture on)."""
    cfn = aws.client("cloudformation")
    parameters = {"EndpointName": "mlops-endpoint", "DataCaptureUri": f"s3://{BUCKET}/capture",
                  "DataCapturePercent": "40", "ExecutionId": "abcdef12-3456-7890",
                  "ModelPackageArn": package_arn, "ExecutionRoleArn": ROLE}
    cfn.create_stack(StackName="mlops-endpoint", TemplateBody=(ROOT / "templates" / "endpoint.yaml").read_text(),
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])
    outputs = cfn.describe_stacks(StackName="mlops-endpoint")["Stacks"][0]["Outputs"]
    return {o["OutputKey"]: o["OutputValue"] for o in outputs}


def run_jobs(aws: LocalAws, runtime: Runtime) -> dict[str, str]:
    """A completed and a failed training job, a completed processing job; the completed ones isolated in a VPC
    (their Describe answers carry VpcConfig and the isolation, as requested)."""
    sm = aws.client("sagemaker")
    vpc = {"SecurityGroupIds": ["sg-0123abcd"], "Subnets": ["subnet-0a1b2c3d"]}
    sm.create_training_job(**training_request("shape-training"), EnableNetworkIsolation=True, VpcConfig=vpc)
    failing = training_request("shape-training-failed")
    failing["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = f"s3://{BUCKET}/no-such-prefix/"
    sm.create_training_job(**failing)
    output = f"s3://{BUCKET}/runs/{EXECUTION}/evaluation/"
    sm.create_processing_job(
        ProcessingJobName="shape-processing", RoleArn=ROLE,
        AppSpecification={"ImageUri": IMAGE, "ContainerEntrypoint": [
            "python3", "-c", "import pathlib, sys; pathlib.Path(sys.argv[1], 'evaluation.json').write_text('{}')",
            "/opt/ml/processing/evaluation"]},
        ProcessingInputs=[{"InputName": "test", "S3Input": {
            "S3Uri": f"s3://{BUCKET}/runs/{EXECUTION}/etl/test/", "LocalPath": "/opt/ml/processing/test",
            "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
        ProcessingOutputConfig={"Outputs": [{"OutputName": "evaluation", "S3Output": {
            "S3Uri": output, "LocalPath": "/opt/ml/processing/evaluation", "S3UploadMode": "EndOfJob"}}]},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                               "VolumeSizeInGB": 10}},
        NetworkConfig={"EnableNetworkIsolation": True, "VpcConfig": vpc},
        StoppingCondition={"MaxRuntimeInSeconds": 600})
    return {"TrainingJob": "shape-training", "FailedTrainingJob": "shape-training-failed",
            "ProcessingJob": "shape-processing"}


def run_glue(aws: LocalAws) -> dict[str, str]:
    """A Glue job whose script writes its output (no Spark needed) and one whose script fails."""
    s3, glue = aws.client("s3"), aws.client("glue")
    script = ("import pathlib, sys\n"
              "out = sys.argv[sys.argv.index('--output') + 1]\n"
              "pathlib.Path(out, 'done.txt').write_text('ok')\n")
    s3.put_object(Bucket=BUCKET, Key="code/ok.py", Body=script.encode())
    s3.put_object(Bucket=BUCKET, Key="code/fails.py", Body=b"raise SystemExit('the script failed')\n")
    runs = {}
    for name, key in (("shape-etl", "code/ok.py"), ("shape-etl-fails", "code/fails.py")):
        glue.create_job(Name=name, Role=f"arn:aws:iam::{ACCOUNT}:role/glue", GlueVersion="5.0",
                        Command={"Name": "glueetl", "PythonVersion": "3", "ScriptLocation": f"s3://{BUCKET}/{key}"},
                        WorkerType="G.1X", NumberOfWorkers=2, Timeout=30)
        runs[name] = glue.start_job_run(JobName=name, Arguments={
            "--output": f"s3://{BUCKET}/runs/{EXECUTION}/glue-output/"})["JobRunId"]
    return {"GlueJob": "shape-etl", "GlueRun": runs["shape-etl"], "FailedGlueJob": "shape-etl-fails",
            "FailedGlueRun": runs["shape-etl-fails"]}


def run_pipeline(aws: LocalAws, runtime: Runtime) -> dict[str, str]:
    """A two-stage pipeline (S3 source, a Lambda action) run once through the engine."""
    iam, s3 = aws.client("iam"), aws.client("s3")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": f"{service}.amazonaws.com"}}
        for service in ("codepipeline", "lambda")]}
    role = iam.create_role(RoleName="shape-pipeline", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="shape-pipeline", PolicyName="pipeline", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [  # the pipeline's and its function's (one role here)
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
             "Resource": [f"arn:aws:s3:::{BUCKET}/raw/*", "arn:aws:s3:::shape-artifacts/*"]},
            {"Effect": "Allow", "Action": "s3:GetBucketVersioning", "Resource": f"arn:aws:s3:::{BUCKET}"},  # S3 source
            {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"},
            {"Effect": "Allow", "Action": ["codepipeline:PutJobSuccessResult", "codepipeline:PutJobFailureResult"],
             "Resource": "*"}]}))
    s3.create_bucket(Bucket="shape-artifacts")
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=BUCKET, Key="raw/data.csv", Body=b"a,b\n1,2\n")
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "")
    aws.client("lambda").create_function(
        FunctionName="shape-sleep", Runtime="python3.11", Role=role, Timeout=60,
        Handler="tests.mlops_local.engine_stand.sleep_handler", Code={"ZipFile": buffer.getvalue()})
    aws.client("codepipeline").create_pipeline(pipeline={
        "name": "shape-pipeline", "roleArn": role, "pipelineType": "V2", "executionMode": "QUEUED",
        "artifactStore": {"type": "S3", "location": "shape-artifacts"},
        "stages": [
            {"name": "Source", "actions": [{
                "name": "DataSource", "runOrder": 1, "namespace": "Data",
                "actionTypeId": {"category": "Source", "owner": "AWS", "provider": "S3", "version": "1"},
                "configuration": {"S3Bucket": BUCKET, "S3ObjectKey": "raw/data.csv", "PollForSourceChanges": "false"},
                "outputArtifacts": [{"name": "RawData"}]}]},
            {"name": "Work", "actions": [{
                "name": "Sleep", "runOrder": 1,
                "actionTypeId": {"category": "Invoke", "owner": "AWS", "provider": "Lambda", "version": "1"},
                "configuration": {"FunctionName": "shape-sleep", "UserParameters": '{"value": "#{Data.ETag}"}'}}]}]})
    cp = aws.client("codepipeline")
    execution = cp.start_pipeline_execution(name="shape-pipeline")["pipelineExecutionId"]
    wait_until(runtime, lambda: cp.get_pipeline_execution(
        pipelineName="shape-pipeline", pipelineExecutionId=execution)["pipelineExecution"]["status"] == "Succeeded",
        "the pipeline execution")
    return {"Pipeline": "shape-pipeline", "PipelineExecution": execution}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Any:
    with LocalAws() as aws:
        runtime = Runtime(aws, tmp_path_factory.mktemp("shapes"), source_root=ROOT)
        runtime.images.add(IMAGE, ROOT / "src" / "training" / "Dockerfile")
        training, processing, glue = TrainingJobs(runtime), ProcessingJobs(runtime), GlueRuns(runtime)
        endpoints, stacks = Endpoints(runtime), Stacks(runtime)
        for component in (training, processing, glue, endpoints, stacks, ResponseShapes(runtime)):
            component.register()
        engine = PipelineEngine(runtime, stack_applier=stacks.apply)
        engine.register()
        try:
            s3, sm, iam = aws.client("s3"), aws.client("sagemaker"), aws.client("iam")
            for role in ("sagemaker", "mlops-sagemaker"):  # the services act as these roles
                create_role(iam, role, execution_statements(TRAINING_BUCKET, BUCKET))
            create_role(iam, "glue", execution_statements(BUCKET), service="glue.amazonaws.com")
            s3.create_bucket(Bucket=BUCKET)
            model_dir = write_model_dir(tmp_path_factory.mktemp("model") / "model")
            tarball = pack_model(model_dir, model_dir.parent / "model.tar.gz")
            s3.upload_file(str(tarball), BUCKET, "model.tar.gz")
            s3.create_bucket(Bucket=TRAINING_BUCKET)  # where training_request's channels are
            for key, body in splits().items():
                s3.put_object(Bucket=BUCKET, Key=f"runs/{EXECUTION}/etl/{key}", Body=body)
                s3.put_object(Bucket=TRAINING_BUCKET, Key=f"runs/{TRAINING_EXECUTION}/etl/{key}", Body=body)
            names = {"ModelPackageGroup": GROUP}
            packages = seed_registry(sm)
            names.update(ApprovedPackage=packages["Approved"], RejectedPackage=packages["Rejected"])
            names.update(run_jobs(aws, runtime))
            names.update(run_glue(aws))
            names.update(deploy_endpoint_stack(aws, packages["Approved"]))
            names.update(run_pipeline(aws, runtime))
            glue_client = aws.client("glue")
            wait_until(runtime, lambda: all(ended(s) for s in (
                endpoints.served(names["EndpointName"]).status,
                sm.describe_training_job(TrainingJobName=names["TrainingJob"])["TrainingJobStatus"],
                sm.describe_training_job(TrainingJobName=names["FailedTrainingJob"])["TrainingJobStatus"],
                sm.describe_processing_job(ProcessingJobName=names["ProcessingJob"])["ProcessingJobStatus"],
                glue_client.get_job_run(JobName=names["GlueJob"], RunId=names["GlueRun"])["JobRun"]["JobRunState"],
                glue_client.get_job_run(JobName=names["FailedGlueJob"], RunId=names["FailedGlueRun"])[
                    "JobRun"]["JobRunState"])), "every resource to settle")
            yield Made(aws, runtime, names)
        finally:
            endpoints.close()
            training.close()
            processing.close()
            glue.close()
            runtime.close()


# -- what is read back ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Read:
    service: str
    operation: str                       # botocore's name, e.g. DescribeEndpoint
    request: Callable[[dict[str, str]], dict[str, Any]]
    cli: Callable[[dict[str, str]], list[str]]
    sdk: str | None = None               # sagemaker.core.resources class
    sdk_key: str | None = None           # the names entry its get() takes
    excused: frozenset = frozenset()     # required members left out on purpose (see NO_*)


READS = {
    "endpoint": Read("sagemaker", "DescribeEndpoint", lambda n: {"EndpointName": n["EndpointName"]},
                     lambda n: ["--endpoint-name", n["EndpointName"]], "Endpoint", "EndpointName",
                     frozenset({NO_KMS_KEY})),
    "endpoint-config": Read("sagemaker", "DescribeEndpointConfig",
                            lambda n: {"EndpointConfigName": n["EndpointConfigName"]},
                            lambda n: ["--endpoint-config-name", n["EndpointConfigName"]],
                            "EndpointConfig", "EndpointConfigName"),
    "model": Read("sagemaker", "DescribeModel", lambda n: {"ModelName": n["ModelName"]},
                  lambda n: ["--model-name", n["ModelName"]], "Model", "ModelName"),
    "model-package-approved": Read("sagemaker", "DescribeModelPackage",
                                   lambda n: {"ModelPackageName": n["ApprovedPackage"]},
                                   lambda n: ["--model-package-name", n["ApprovedPackage"]],
                                   "ModelPackage", "ApprovedPackage"),
    "model-package-rejected": Read("sagemaker", "DescribeModelPackage",
                                   lambda n: {"ModelPackageName": n["RejectedPackage"]},
                                   lambda n: ["--model-package-name", n["RejectedPackage"]],
                                   "ModelPackage", "RejectedPackage"),
    "model-package-group": Read("sagemaker", "DescribeModelPackageGroup",
                                lambda n: {"ModelPackageGroupName": n["ModelPackageGroup"]},
                                lambda n: ["--model-package-group-name", n["ModelPackageGroup"]],
                                "ModelPackageGroup", "ModelPackageGroup", frozenset({NO_STUDIO_USER})),
    "model-packages": Read("sagemaker", "ListModelPackages",
                           lambda n: {"ModelPackageGroupName": n["ModelPackageGroup"]},
                           lambda n: ["--model-package-group-name", n["ModelPackageGroup"]]),
    "training-job": Read("sagemaker", "DescribeTrainingJob", lambda n: {"TrainingJobName": n["TrainingJob"]},
                         lambda n: ["--training-job-name", n["TrainingJob"]], "TrainingJob", "TrainingJob"),
    "training-job-failed": Read("sagemaker", "DescribeTrainingJob",
                                lambda n: {"TrainingJobName": n["FailedTrainingJob"]},
                                lambda n: ["--training-job-name", n["FailedTrainingJob"]],
                                "TrainingJob", "FailedTrainingJob", frozenset({NO_MODEL})),
    "training-jobs": Read("sagemaker", "ListTrainingJobs", lambda n: {}, lambda n: []),
    "processing-job": Read("sagemaker", "DescribeProcessingJob",
                           lambda n: {"ProcessingJobName": n["ProcessingJob"]},
                           lambda n: ["--processing-job-name", n["ProcessingJob"]], "ProcessingJob", "ProcessingJob"),
    "processing-jobs": Read("sagemaker", "ListProcessingJobs", lambda n: {}, lambda n: []),
    "endpoints": Read("sagemaker", "ListEndpoints", lambda n: {}, lambda n: []),
    "endpoint-configs": Read("sagemaker", "ListEndpointConfigs", lambda n: {}, lambda n: []),
    "models": Read("sagemaker", "ListModels", lambda n: {}, lambda n: []),
    "glue-job-run": Read("glue", "GetJobRun", lambda n: {"JobName": n["GlueJob"], "RunId": n["GlueRun"]},
                         lambda n: ["--job-name", n["GlueJob"], "--run-id", n["GlueRun"]]),
    "glue-job-run-failed": Read("glue", "GetJobRun",
                                lambda n: {"JobName": n["FailedGlueJob"], "RunId": n["FailedGlueRun"]},
                                lambda n: ["--job-name", n["FailedGlueJob"], "--run-id", n["FailedGlueRun"]]),
    "glue-job-runs": Read("glue", "GetJobRuns", lambda n: {"JobName": n["GlueJob"]},
                          lambda n: ["--job-name", n["GlueJob"]]),
    "pipeline-state": Read("codepipeline", "GetPipelineState", lambda n: {"name": n["Pipeline"]},
                           lambda n: ["--name", n["Pipeline"]]),
    "pipeline-execution": Read("codepipeline", "GetPipelineExecution",
                               lambda n: {"pipelineName": n["Pipeline"], "pipelineExecutionId": n["PipelineExecution"]},
                               lambda n: ["--pipeline-name", n["Pipeline"], "--pipeline-execution-id",
                                          n["PipelineExecution"]]),
    "pipeline-executions": Read("codepipeline", "ListPipelineExecutions", lambda n: {"pipelineName": n["Pipeline"]},
                                lambda n: ["--pipeline-name", n["Pipeline"]]),
    "action-executions": Read("codepipeline", "ListActionExecutions", lambda n: {"pipelineName": n["Pipeline"]},
                              lambda n: ["--pipeline-name", n["Pipeline"]]),
}


def raw_answer(made: Made, read: Read) -> tuple[Any, dict[str, Any]]:
    """The operation's output shape and the answer's JSON as the stand-in sent it."""
    client = made.aws.client(read.service)
    captured: dict[str, Any] = {}

    def keep(response_dict: dict[str, Any], **_: Any) -> None:
        captured["body"] = response_dict["body"]

    client.meta.events.register(f"before-parse.*.{read.operation}", keep)
    method = getattr(client, _snake(read.operation))
    method(**read.request(made.names))
    return client.meta.service_model.operation_model(read.operation).output_shape, json.loads(captured["body"])


def _snake(operation: str) -> str:
    from botocore import xform_name

    return xform_name(operation)


@pytest.mark.parametrize("case", list(READS))
def test_the_answer_has_the_operations_output_shape(made, case):
    shape, answer = raw_answer(made, READS[case])
    problems = shape_problems(shape, answer, excused=READS[case].excused)
    assert not problems, "\n".join(problems)


SDK_CASES = [case for case, read in READS.items() if read.sdk]


@pytest.mark.parametrize("case", SDK_CASES)
def test_the_sagemaker_sdk_resource_class_reads_it(made, case, monkeypatch):
    from sagemaker.core import resources

    read = READS[case]
    monkeypatch.setenv("AWS_ENDPOINT_URL", made.aws.url)
    session = boto3.Session(region_name=made.aws.gateway.region)  # a new session: a client for this endpoint
    resource = getattr(resources, read.sdk).get(made.names[read.sdk_key], session=session)
    request = read.request(made.names)
    identifier = next(iter(request.values()))
    assert identifier in repr(resource)


@pytest.mark.parametrize("case", list(READS))
def test_the_aws_cli_reads_it(made, case):
    read = READS[case]
    command = _snake(read.operation).replace("_", "-")
    env = {"PATH": str(Path(sys.executable).parent), **made.aws.environment()}
    done = subprocess.run([AWS_CLI, read.service, command, *read.cli(made.names), "--output", "json"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)


def test_the_endpoint_reports_the_capture_it_was_deployed_with(made):
    described = made.aws.client("sagemaker").describe_endpoint(EndpointName=made.names["EndpointName"])
    assert described["EndpointStatus"] == "InService"
    assert described["DataCaptureConfig"] == {"EnableCapture": True, "CaptureStatus": "Started",
                                              "CurrentSamplingPercentage": 40,
                                              "DestinationS3Uri": f"s3://{BUCKET}/capture"}


@pytest.mark.parametrize("operation, request_key, absent", [
    ("describe_model", "ModelName", ("VpcConfig", "Containers")),
    ("describe_endpoint_config", "EndpointConfigName", ("AsyncInferenceConfig",)),
], ids=["model", "endpoint-config"])
def test_configurations_never_given_are_omitted(made, operation, request_key, absent):
    answer = getattr(made.aws.client("sagemaker"), operation)(**{request_key: made.names[request_key]})
    assert answer[request_key] == made.names[request_key]
    assert not set(absent) & set(answer), {k: answer[k] for k in absent if k in answer}


def test_update_model_package_changes_only_what_it_is_given(made):
    """SageMaker keeps the metadata, status and description an UpdateModelPackage leaves out (moto dropped
    them): PromoteModel's Approved must keep the gate's record."""
    sm = made.aws.client("sagemaker")
    arn = sm.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        CustomerMetadataProperties={"ExecutionId": EXECUTION, "Decision": "APPROVED", "Rmse": "513.3"},
    )["ModelPackageArn"]
    sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved", ApprovalDescription="by a person")
    sm.update_model_package(ModelPackageArn=arn, CustomerMetadataProperties={"Rmse": "500"},
                            CustomerMetadataPropertiesToRemove=["Decision"])
    package = sm.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == "Approved" and package["ApprovalDescription"] == "by a person"
    assert package["CustomerMetadataProperties"] == {"ExecutionId": EXECUTION, "Rmse": "500"}
