"""SageMaker training and processing jobs through the stand-in: the image's programs run locally, as the
job's RoleArn."""
from __future__ import annotations

import io
import json
import tarfile
import time

import pytest
from botocore.exceptions import ClientError

from lambdas import evaluation as evaluation_worker
from lambdas import training as training_worker
from lambdas.sagemaker_jobs import JobSecurity
from mlops_local.gateway import Gateway, LocalAws
from tests.conftest import ROOT
from mlops_local.runtime import Runtime
from mlops_local.sagemaker.processing_jobs import ProcessingJobs
from mlops_local.sagemaker.training_jobs import TrainingJobs

from tests.lambdas.pipeline_stubs import invoke_worker as invoke
from tests.mlops_local.sagemaker_requests import (
    BUCKET, ETL, EXECUTION, IMAGE, REPOSITORY_ARN, ROLE, ROLE_NAME, TINY, channel, create_role, execution_statements,
    role_session_arn, splits, training_request)

MODEL_FILES = {"model.keras", "dense.npz", "model.json", "features.json"}
DONE = {"Completed", "Failed", "Stopped"}


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    with LocalAws(Gateway()) as aws:
        runtime = Runtime(aws=aws, workdir=tmp_path_factory.mktemp("sagemaker-runtime"), source_root=ROOT)
        runtime.images.add(IMAGE, ROOT / "src/training/Dockerfile")
        training, processing = TrainingJobs(runtime).register(), ProcessingJobs(runtime).register()
        create_role(aws.client("iam"), ROLE_NAME, execution_statements())
        s3 = aws.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        for key, body in splits().items():
            s3.put_object(Bucket=BUCKET, Key=f"runs/{EXECUTION}/etl/{key}", Body=body)
        yield aws, runtime, training, processing
        training.close()
        processing.close()


def wait(runtime, describe, status_key: str, until=DONE, timeout: float = 120, **name) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        version = runtime.changes.version
        described = describe(**name)
        if described[status_key] in until or described.get("SecondaryStatus") in until:
            return described
        assert time.monotonic() < deadline, f"{name} still {described[status_key]}"
        runtime.changes.wait(version, timeout=1.0)


def drive(runtime, work, user_parameters: dict, timeout: float = 120) -> dict:
    """Re-invoke a monitor with its continuation token each time a job changes state, until it ends."""
    token, deadline = None, time.monotonic() + timeout
    while True:
        version = runtime.changes.version
        outcome = invoke(work, user_parameters, token)
        if outcome["result"] != "continue":
            return outcome
        token = outcome["state"]
        assert time.monotonic() < deadline, outcome
        runtime.changes.wait(version, timeout=2.0)


@pytest.fixture(scope="module")
def project_key(stand_in) -> str:
    """A KMS key that the jobs' role may grant to their volumes (the stack's GrantProjectKeyToVolumes)."""
    aws, _, _, _ = stand_in
    key = aws.client("kms").create_key(Description="project key")["KeyMetadata"]["Arn"]
    grant = [s for s in execution_statements(volume_key=key) if s["Sid"] == "GrantVolumeKey"]
    aws.client("iam").put_role_policy(RoleName=ROLE_NAME, PolicyName="volume-key", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": grant}))
    return key


@pytest.fixture(scope="module")
def pipeline(stand_in, project_key):
    """SubmitTraining/MonitorTraining then SubmitEvaluation/MonitorEvaluation, the real workers, with the jobs
    sealed as the stack seals them: network-isolated (their processes get no AWS credentials), the project key
    on volumes and outputs."""
    aws, runtime, _, _ = stand_in
    sagemaker, s3 = aws.client("sagemaker"), aws.client("s3")
    sealed = JobSecurity(kms_key=project_key)
    submitted = invoke(lambda job: training_worker.submit(job, sagemaker=sagemaker, security=sealed), {
        "execution_id": EXECUTION, "name_prefix": "mlops", "image_uri": IMAGE, "role_arn": ROLE,
        "train_uri": f"{ETL}/train/", "validation_uri": f"{ETL}/validation/",
        "features_uri": f"{ETL}/features.json", "output_uri": f"s3://{BUCKET}/runs/{EXECUTION}/training/",
        "hyperparameters": {"epochs": 3, "batch_size": 64, "hidden_units": [8], "learning_rate": 0.01}})
    assert submitted["result"] == "success", submitted
    name = submitted["variables"]["TrainingJobName"]
    trained = drive(runtime, lambda job: training_worker.monitor(job, sagemaker=sagemaker),
                    {"training_job_name": name})
    assert trained["result"] == "success", trained

    evaluate = {"execution_id": EXECUTION, "name_prefix": "mlops", "image_uri": IMAGE, "role_arn": ROLE,
                "model_data_uri": trained["variables"]["ModelDataUrl"], "test_uri": f"{ETL}/test/",
                "output_uri": f"s3://{BUCKET}/runs/{EXECUTION}/evaluation/",
                "model_package_group": "mlops-models"}  # none Approved in it: no champion to score
    submitted_eval = invoke(lambda job: evaluation_worker.submit(job, sagemaker=sagemaker, security=sealed), evaluate)
    assert submitted_eval["result"] == "success", submitted_eval
    variables = submitted_eval["variables"]
    judged = drive(runtime, lambda job: evaluation_worker.monitor(job, sagemaker=sagemaker, s3=s3), {
        "processing_job_name": variables["ProcessingJobName"], "evaluation_uri": variables["EvaluationUri"],
        "threshold": 1e9, "model_package_group": "mlops-models", "image_uri": IMAGE,
        "model_data_uri": trained["variables"]["ModelDataUrl"], "execution_id": EXECUTION})
    return {"training": name, "trained": trained, "processing": variables["ProcessingJobName"],
            "judged": judged, "evaluation_uri": variables["EvaluationUri"]}


def test_training_runs_the_image_and_uploads_model_tar_gz(stand_in, pipeline):
    aws, runtime, _, _ = stand_in
    sagemaker, s3 = aws.client("sagemaker"), aws.client("s3")
    described = sagemaker.describe_training_job(TrainingJobName=pipeline["training"])
    assert described["TrainingJobStatus"] == "Completed" and described["SecondaryStatus"] == "Completed"
    model = f"s3://{BUCKET}/runs/{EXECUTION}/training/{pipeline['training']}/output/model.tar.gz"
    assert described["ModelArtifacts"]["S3ModelArtifacts"] == model
    assert pipeline["trained"]["variables"]["ModelDataUrl"] == model
    assert (described["CreationTime"] <= described["TrainingStartTime"] <= described["TrainingEndTime"]
            <= described["LastModifiedTime"])
    assert [t["Status"] for t in described["SecondaryStatusTransitions"]] == [
        "Starting", "Downloading", "Training", "Uploading", "Completed"]
    metrics = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    assert {"train:loss", "validation:loss", "validation:rmse"} <= set(metrics)

    body = s3.get_object(Bucket=BUCKET, Key=model.split(f"{BUCKET}/", 1)[1])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        assert MODEL_FILES <= set(archive.getnames())  # files at the archive root

    base = runtime.workdir / "sagemaker" / "training" / pipeline["training"]
    hps = json.loads((base / "input/config/hyperparameters.json").read_text())
    assert hps == {"epochs": "3", "batch_size": "64", "hidden_units": "[8]", "learning_rate": "0.01"}
    assert (base / "input/data/features/features.json").is_file()  # a single-object prefix
    assert (base / "input/data/train/part-00000.csv").is_file() and (base / "train.log").is_file()


def test_processing_runs_evaluate_and_uploads_evaluation_json(stand_in, pipeline):
    aws, runtime, _, _ = stand_in
    sagemaker, s3 = aws.client("sagemaker"), aws.client("s3")
    assert pipeline["judged"]["result"] == "success" and pipeline["judged"]["variables"]["Decision"] == "APPROVED"
    described = sagemaker.describe_processing_job(ProcessingJobName=pipeline["processing"])
    assert described["ProcessingJobStatus"] == "Completed" and "FailureReason" not in described
    assert described["ProcessingStartTime"] <= described["ProcessingEndTime"]
    key = pipeline["evaluation_uri"].split(f"{BUCKET}/", 1)[1]
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert report["regression_metrics"]["rmse"]["value"] > 0 and report["dataset"]["item_count"] == 64
    base = runtime.workdir / "sagemaker" / "processing" / pipeline["processing"]
    assert (base / "processing/model/model.tar.gz").is_file()  # the object lands as a file in the dir


def test_describe_answers_what_the_workers_requested(stand_in, pipeline, project_key):
    """AWS shows a job's request: the hyperparameters (string map), the isolation, the keys."""
    aws, _, _, _ = stand_in
    sagemaker = aws.client("sagemaker")
    training = sagemaker.describe_training_job(TrainingJobName=pipeline["training"])
    assert training["HyperParameters"] == {"epochs": "3", "batch_size": "64", "hidden_units": "[8]",
                                           "learning_rate": "0.01"}
    assert training["EnableNetworkIsolation"] is True
    assert training["OutputDataConfig"]["KmsKeyId"] == training["ResourceConfig"]["VolumeKmsKeyId"] == project_key
    assert "VpcConfig" not in training  # none was requested
    processing = sagemaker.describe_processing_job(ProcessingJobName=pipeline["processing"])
    assert processing["NetworkConfig"] == {"EnableNetworkIsolation": True}
    assert processing["ProcessingOutputConfig"]["KmsKeyId"] == project_key
    assert processing["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == project_key


VPC = {"SecurityGroupIds": ["sg-0123abcd"], "Subnets": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"]}


@pytest.mark.parametrize("extra, expected", [
    ({}, {"EnableNetworkIsolation": False, "HyperParameters": TINY}),
    ({"EnableNetworkIsolation": True, "VpcConfig": VPC, "HyperParameters": {"epochs": "7"}},
     {"EnableNetworkIsolation": True, "VpcConfig": VPC, "HyperParameters": {"epochs": "7"}}),
], ids=["as-created-plainly", "isolated-in-a-vpc"])
def test_describe_training_job_answers_the_request(stand_in, extra, expected):
    aws, _, _, _ = stand_in
    sagemaker = aws.client("sagemaker")
    name = f"describe-{'vpc' if extra else 'plain'}"
    sagemaker.create_training_job(**{**training_request(name), **extra})
    described = sagemaker.describe_training_job(TrainingJobName=name)
    assert {key: described.get(key) for key in expected} == expected
    if "VpcConfig" not in extra:
        assert "VpcConfig" not in described  # AWS omits what was not given (VpcConfig has required members)


ENV_SCRIPT = ["python3", "-c", "import os, pathlib, sys; pathlib.Path(sys.argv[1], 'env.txt').write_text("
              "' '.join(sorted(k for k in os.environ if k.startswith('AWS_'))))", "/opt/ml/processing/out"]
ACCESS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"}


@pytest.mark.parametrize("isolated", [True, False], ids=["isolated", "not-isolated"])
def test_an_isolated_jobs_process_gets_no_aws_credentials_or_endpoint(stand_in, isolated):
    """On AWS a network-isolated container has no network and no credentials; SageMaker stages its data."""
    aws, runtime, _, _ = stand_in
    sagemaker, s3 = aws.client("sagemaker"), aws.client("s3")
    name = f"environment-{'isolated' if isolated else 'open'}"
    request = {**key_job(name, ROLE), "AppSpecification": {"ImageUri": IMAGE, "ContainerEntrypoint": ENV_SCRIPT},
               "NetworkConfig": {"EnableNetworkIsolation": isolated}}
    sagemaker.create_processing_job(**request)
    described = wait(runtime, sagemaker.describe_processing_job, "ProcessingJobStatus", ProcessingJobName=name,
                     timeout=60)
    assert described["ProcessingJobStatus"] == "Completed", described.get("FailureReason")
    names = set(s3.get_object(Bucket=BUCKET, Key=f"runs/{EXECUTION}/keys/{name}/env.txt")["Body"].read().decode()
                .split())
    assert "AWS_REGION" in names  # SageMaker still tells the container its region
    assert (names & ACCESS) == (set() if isolated else ACCESS)


def test_a_volume_key_the_role_cannot_grant_fails_the_job(stand_in, project_key):
    aws, runtime, _, _ = stand_in
    role = create_role(aws.client("iam"), "role-no-grant", execution_statements())
    sagemaker = aws.client("sagemaker")
    request = {**training_request("no-grant"), "RoleArn": role}
    request["ResourceConfig"] = {**request["ResourceConfig"], "VolumeKmsKeyId": project_key}
    sagemaker.create_training_job(**request)
    described = wait(runtime, sagemaker.describe_training_job, "TrainingJobStatus", TrainingJobName="no-grant",
                     timeout=20)
    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"].startswith(f"ClientError: SageMaker could not use the volume KMS key "
                                                 f"{project_key} (AccessDenied"), described["FailureReason"]
    assert (f"User: {role_session_arn('role-no-grant')} is not authorized to perform: kms:CreateGrant on resource: "
            f"{project_key}") in described["FailureReason"]


def test_a_missing_channel_fails_with_the_failure_file(stand_in):
    aws, runtime, _, _ = stand_in
    sagemaker = aws.client("sagemaker")
    sagemaker.create_training_job(**training_request("no-validation", channels=("train", "features")))
    described = wait(runtime, sagemaker.describe_training_job, "TrainingJobStatus",
                     TrainingJobName="no-validation")
    assert described["TrainingJobStatus"] == "Failed" and described["SecondaryStatus"] == "Failed"
    assert "the 'validation' channel is missing" in described["FailureReason"]
    assert len(described["FailureReason"]) <= 1024 and "ModelArtifacts" not in described


@pytest.mark.parametrize("request_, reason", [
    (training_request("unknown-image", image="123456789012.dkr.ecr.us-east-1.amazonaws.com/other:1"),
     "is not known locally"),
    ({**training_request("empty-channel"),
      "InputDataConfig": [channel("train", f"s3://{BUCKET}/nothing/here/")]}, "No S3 objects found under"),
], ids=["unknown-image", "empty-channel"])
def test_jobs_that_cannot_start_fail_with_a_reason(stand_in, request_, reason):
    aws, runtime, _, _ = stand_in
    sagemaker = aws.client("sagemaker")
    sagemaker.create_training_job(**request_)
    described = wait(runtime, sagemaker.describe_training_job, "TrainingJobStatus",
                     TrainingJobName=request_["TrainingJobName"], timeout=20)
    assert described["TrainingJobStatus"] == "Failed" and reason in described["FailureReason"]


def test_stop_training_job_ends_the_process(stand_in):
    aws, runtime, training, _ = stand_in
    sagemaker = aws.client("sagemaker")
    sagemaker.create_training_job(**training_request("long-run", hyperparameters={**TINY, "epochs": "5000"}))
    wait(runtime, sagemaker.describe_training_job, "TrainingJobStatus", until=DONE | {"Training"},
         TrainingJobName="long-run")
    sagemaker.stop_training_job(TrainingJobName="long-run")
    status = sagemaker.describe_training_job(TrainingJobName="long-run")["TrainingJobStatus"]
    assert status in ("Stopping", "Stopped")
    described = wait(runtime, sagemaker.describe_training_job, "TrainingJobStatus", TrainingJobName="long-run")
    assert described["TrainingJobStatus"] == "Stopped" and described["SecondaryStatus"] == "Stopped"
    assert training.jobs["long-run"].process.returncode is not None
    with pytest.raises(ClientError) as caught:
        sagemaker.stop_training_job(TrainingJobName="long-run")
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_a_failing_processing_job_reports_the_message_file(stand_in):
    aws, runtime, _, _ = stand_in
    sagemaker = aws.client("sagemaker")
    inputs = [{"InputName": name, "S3Input": {"S3Uri": uri, "LocalPath": f"/opt/ml/processing/{name}",
                                              "S3DataType": "S3Prefix", "S3InputMode": "File"}}
              for name, uri in (("model", f"{ETL}/validation/"), ("test", f"{ETL}/test/"))]
    sagemaker.create_processing_job(
        ProcessingJobName="bad-model", RoleArn=ROLE, ProcessingInputs=inputs,
        AppSpecification={"ImageUri": IMAGE, "ContainerEntrypoint": ["python3", "-m", "training.evaluate"]},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                               "VolumeSizeInGB": 10}})
    described = wait(runtime, sagemaker.describe_processing_job, "ProcessingJobStatus",
                     ProcessingJobName="bad-model", timeout=60)
    assert described["ProcessingJobStatus"] == "Failed"
    assert "no model at" in described["ExitMessage"] and "exit code: 2" in described["FailureReason"]
    assert "CloudWatch" not in described["FailureReason"]  # SageMaker's names no log; the Monitor worker adds it


def test_list_jobs(stand_in, pipeline):
    aws, _, _, _ = stand_in
    sagemaker = aws.client("sagemaker")
    names = [j["TrainingJobName"] for j in sagemaker.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]]
    assert pipeline["training"] in names
    completed = sagemaker.list_training_jobs(StatusEquals="Completed", SortOrder="Descending")
    assert {j["TrainingJobStatus"] for j in completed["TrainingJobSummaries"]} == {"Completed"}
    processing = sagemaker.list_processing_jobs(NameContains="evaluate")["ProcessingJobSummaries"]
    assert [j["ProcessingJobName"] for j in processing] == [pipeline["processing"]]


@pytest.mark.parametrize("call, code, message", [
    (lambda sm: sm.describe_training_job(TrainingJobName="nope"), "ValidationException",
     "Requested resource not found."),
    (lambda sm: sm.stop_training_job(TrainingJobName="nope"), "ValidationException",
     "Requested resource not found."),
    (lambda sm: sm.describe_processing_job(ProcessingJobName="nope"), "ValidationException",
     "Requested resource not found."),
    (lambda sm: sm.create_training_job(**training_request("duplicate")), "ResourceInUse", "already exists"),
    (lambda sm: sm.create_training_job(**{**training_request("bad_name!")}), "ValidationException",
     "regular expression"),
    (lambda sm: sm.create_training_job(**{**training_request("no-image"),
                                          "AlgorithmSpecification": {"TrainingInputMode": "File"}}),
     "ValidationException", "TrainingImage"),
    (lambda sm: sm.create_training_job(**{**training_request("local-output"),
                                          "OutputDataConfig": {"S3OutputPath": "/tmp/out"}}),
     "ValidationException", "Value '/tmp/out' at 'outputDataConfig.s3OutputPath' failed to satisfy constraint"),
    (lambda sm: sm.create_processing_job(
        ProcessingJobName="outside", RoleArn=ROLE,
        AppSpecification={"ImageUri": IMAGE, "ContainerEntrypoint": ["python3"]},
        ProcessingInputs=[{"InputName": "x", "S3Input": {"S3Uri": f"{ETL}/test/", "LocalPath": "/tmp/x",
                                                         "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                               "VolumeSizeInGB": 10}}),
     "ValidationException", "/opt/ml/processing"),
], ids=["describe-unknown", "stop-unknown", "describe-unknown-processing", "duplicate-name", "bad-name",
        "no-image", "local-output-path", "processing-path-outside"])
def test_errors_in_sagemaker_terms(stand_in, call, code, message):
    aws, _, _, _ = stand_in
    sagemaker = aws.client("sagemaker")
    if code == "ResourceInUse":  # this test's own first job (it fails at once: an empty channel)
        sagemaker.create_training_job(**{**training_request("duplicate"),
                                         "InputDataConfig": [channel("train", f"s3://{BUCKET}/nothing/")]})
    with pytest.raises(ClientError) as caught:
        call(sagemaker)
    assert caught.value.response["Error"]["Code"] == code
    assert message in caught.value.response["Error"]["Message"]


# -- acting as the job's role ------------------------------------------------------------------------
KEY_SCRIPT = ["python3", "-c", "import os, pathlib, sys; "
              "pathlib.Path(sys.argv[1], 'key.txt').write_text(os.environ['AWS_ACCESS_KEY_ID'])",
              "/opt/ml/processing/out"]


def key_job(name: str, role: str) -> dict:
    """A processing job that reads features.json and writes the access key its process was given."""
    return {"ProcessingJobName": name, "RoleArn": role,
            "AppSpecification": {"ImageUri": IMAGE, "ContainerEntrypoint": KEY_SCRIPT},
            "ProcessingInputs": [{"InputName": "features", "S3Input": {
                "S3Uri": f"{ETL}/features.json", "LocalPath": "/opt/ml/processing/features",
                "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
            "ProcessingOutputConfig": {"Outputs": [{"OutputName": "out", "S3Output": {
                "S3Uri": f"s3://{BUCKET}/runs/{EXECUTION}/keys/{name}", "LocalPath": "/opt/ml/processing/out",
                "S3UploadMode": "EndOfJob"}}]},
            "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                                      "VolumeSizeInGB": 10}}}


def test_a_job_acts_as_its_role_in_its_staging_and_its_process(stand_in):
    aws, runtime, _, _ = stand_in
    sagemaker, s3 = aws.client("sagemaker"), aws.client("s3")
    mark = len(runtime.access_log)
    sagemaker.create_processing_job(**key_job("keys-of-the-role", ROLE))
    described = wait(runtime, sagemaker.describe_processing_job, "ProcessingJobStatus",
                     ProcessingJobName="keys-of-the-role", timeout=60)
    assert described["ProcessingJobStatus"] == "Completed", described.get("FailureReason")

    key = s3.get_object(Bucket=BUCKET, Key=f"runs/{EXECUTION}/keys/keys-of-the-role/key.txt")["Body"].read().decode()
    assert key != "testing" and key == runtime.session(ROLE, "SageMaker", "sagemaker.amazonaws.com",
                                                       source_arn=described["ProcessingJobArn"]).access_key_id
    staged = {(a.service, a.operation) for a in runtime.access_log.records(mark)
              if a.principal.arn == role_session_arn(ROLE_NAME)}
    assert {("s3", "ListObjectsV2"), ("s3", "GetObject"), ("s3", "PutObject"), ("ecr", "BatchGetImage")} <= staged


@pytest.mark.parametrize("name, action, reason, resource", [
    ("lacks-get", "s3:GetObject", "ClientError: Data download failed:",
     f"arn:aws:s3:::{BUCKET}/runs/{EXECUTION}/etl/features.json"),
    ("lacks-list", "s3:ListBucket", "ClientError: Data download failed:", f"arn:aws:s3:::{BUCKET}"),
    ("lacks-put", "s3:PutObject", "ClientError: Data upload failed:",
     f"arn:aws:s3:::{BUCKET}/runs/{EXECUTION}/keys/lacks-put/key.txt"),
    ("lacks-pull", "ecr:BatchGetImage", "ClientError: Cannot pull algorithm container.", REPOSITORY_ARN),
], ids=["lacks-get-object", "lacks-list-bucket", "lacks-put-object", "lacks-batch-get-image"])
def test_a_job_whose_role_lacks_an_action_fails_naming_it(stand_in, name, action, reason, resource):
    aws, runtime, _, _ = stand_in
    role = create_role(aws.client("iam"), f"role-{name}", execution_statements(without=(action,)))
    sagemaker = aws.client("sagemaker")
    sagemaker.create_processing_job(**key_job(name, role))
    described = wait(runtime, sagemaker.describe_processing_job, "ProcessingJobStatus", ProcessingJobName=name,
                     timeout=60)
    assert described["ProcessingJobStatus"] == "Failed"
    failure = described["FailureReason"]
    assert failure.startswith(reason), failure
    quoted = f'"{resource}"' if action.startswith("s3:") else resource  # S3's denials quote the ARN
    assert (f"User: {role_session_arn(f'role-{name}')} is not authorized to perform: {action} on resource: "
            f"{quoted} because no identity-based policy allows the {action} action") in failure


@pytest.mark.parametrize("role_name, create", [
    ("trusts-glue-1", lambda sm, role: sm.create_training_job(**{**training_request("untrusted"), "RoleArn": role})),
    ("trusts-glue-2", lambda sm, role: sm.create_processing_job(**key_job("untrusted", role))),
    (None, lambda sm, role: sm.create_training_job(**{**training_request("untrusted"), "RoleArn": role})),
], ids=["training-role-trusts-glue", "processing-role-trusts-glue", "role-does-not-exist"])
def test_a_role_sagemaker_cannot_assume_is_refused_at_create(stand_in, role_name, create):
    aws, _, training, processing = stand_in
    role = "arn:aws:iam::123456789012:role/nobody"
    if role_name:
        role = create_role(aws.client("iam"), role_name, execution_statements(), service="glue.amazonaws.com")
    with pytest.raises(ClientError) as caught:
        create(aws.client("sagemaker"), role)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert caught.value.response["Error"]["Message"] == (
        f"Could not assume role {role}. Please ensure that the role exists and allows principal "
        "'sagemaker.amazonaws.com' to assume the role.")
    assert "untrusted" not in training.jobs and "untrusted" not in processing.jobs


# -- logs and failures: fake trainers (no TensorFlow) ------------------------------------------------------------
LOGS_STATEMENT = {"Sid": "WriteJobLogs", "Effect": "Allow",
                  "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                  "Resource": ["arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/TrainingJobs",
                               "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/TrainingJobs:*"]}
BANNER = "I tensorflow/core/util/port.cc:113] oneDNN custom operations are on."
FAKE_TRAINERS = {  # program -> what the image's `train` runs
    "sleeper": f"import os, time; print({BANNER!r}, os.getpid(), flush=True); time.sleep(120)",
    "leaves-a-child": "import subprocess; subprocess.Popen(['sleep', '120']); print('started a helper', flush=True)",
    "quotes-its-paths": "import os, sys; sys.exit('ValueError: no rows in ' + os.environ['SM_CHANNEL_TRAIN'])",
}


def fake_trainer(runtime, program: str) -> str:
    """An image of the training repository (the role may pull it) whose `train` is a small script."""
    import sys

    from mlops_local.runtime import LocalImage

    uri = IMAGE.rsplit(":", 1)[0] + f":{program}"
    runtime.images.images[uri] = LocalImage(uri=uri, dockerfile=ROOT / "src/training/Dockerfile",
                                            programs={"train": [sys.executable, "-c", FAKE_TRAINERS[program]]},
                                            code=ROOT / "src")
    return uri


def job_messages(aws, name: str) -> tuple[str, list[str]]:
    from mlops_local.cloudwatch_logs import stream_messages

    logs = aws.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                        logStreamNamePrefix=f"{name}/")["logStreams"]
    assert len(streams) <= 1, streams
    if not streams:  # the job has not written its first line yet
        return "", []
    stream = streams[0]["logStreamName"]
    return stream, stream_messages(logs, "/aws/sagemaker/TrainingJobs", stream)


def test_a_killed_trainer_is_reported_as_killed_naming_its_log_stream(stand_in):
    import os
    import re
    import signal

    aws, runtime, _, _ = stand_in
    role = create_role(aws.client("iam"), "role-with-logs", [*execution_statements(), LOGS_STATEMENT])
    sagemaker = aws.client("sagemaker")
    sagemaker.create_training_job(**{**training_request("killed-trainer", image=fake_trainer(runtime, "sleeper")),
                                     "RoleArn": role})
    deadline = time.monotonic() + 30
    while True:  # the banner line reaches the job's stream while it runs
        try:
            stream, lines = job_messages(aws, "killed-trainer")
        except ClientError:
            lines = []
        if lines:
            break
        assert time.monotonic() < deadline, "the trainer's output never reached CloudWatch Logs"
        time.sleep(0.2)
    assert re.fullmatch(r"killed-trainer/algo-1-\d{10}", stream) and lines[0].startswith(BANNER)
    os.kill(int(lines[0].split()[-1]), signal.SIGKILL)
    described = wait(runtime, sagemaker.describe_training_job, "TrainingJobStatus", TrainingJobName="killed-trainer")
    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"] == "AlgorithmError: the training process was killed by SIGKILL, exit code: 137"


def test_a_failure_quotes_paths_as_the_container_saw_them(stand_in):
    aws, runtime, _, _ = stand_in
    role = create_role(aws.client("iam"), "role-quoting", [*execution_statements(), LOGS_STATEMENT])
    sagemaker = aws.client("sagemaker")
    sagemaker.create_training_job(**{**training_request("quotes-its-paths",
                                                        image=fake_trainer(runtime, "quotes-its-paths")),
                                     "RoleArn": role})
    described = wait(runtime, sagemaker.describe_training_job, "TrainingJobStatus", TrainingJobName="quotes-its-paths")
    assert described["FailureReason"] == "AlgorithmError: ValueError: no rows in /opt/ml/input/data/train, exit code: 1"
    assert str(runtime.workdir) not in described["FailureReason"]


def test_what_a_trainer_leaves_in_its_group_ends_with_it(stand_in):
    from mlops_local import processes

    aws, runtime, training, _ = stand_in
    sagemaker = aws.client("sagemaker")
    sagemaker.create_training_job(**training_request("leaves-a-child", image=fake_trainer(runtime, "leaves-a-child")))
    described = wait(runtime, sagemaker.describe_training_job, "TrainingJobStatus", TrainingJobName="leaves-a-child")
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    leader = training.jobs["leaves-a-child"].process
    deadline = time.monotonic() + 5
    while processes.group_alive(leader.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes.group_alive(leader.pid)


def test_a_role_without_logs_permissions_loses_the_logs_not_the_job(stand_in):
    aws, runtime, _, _ = stand_in
    mark = len(runtime.access_log)
    sagemaker = aws.client("sagemaker")
    sagemaker.create_training_job(**training_request("no-logs", image=fake_trainer(runtime, "leaves-a-child")))
    described = wait(runtime, sagemaker.describe_training_job, "TrainingJobStatus", TrainingJobName="no-logs")
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    denied = {a.operation for a in runtime.access_log.records(mark)
              if a.service == "logs" and a.decided is not None and a.decided.denied}
    assert denied & {"CreateLogStream", "CreateLogGroup", "PutLogEvents"}
