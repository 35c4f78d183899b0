"""CreateDeployConfig: the template configuration written to the output artifact, mistakes named."""
from __future__ import annotations

import io
import json
import logging
import zipfile

import boto3
import pytest
from botocore.stub import ANY
from moto import mock_aws

from lambdas.deploy_config import write_deploy_config
from lambdas.job import run_job

from tests.lambdas.pipeline_stubs import JOB_ID
from tests.conftest import SECRETS, load_event

BUCKET, KEY = "mlops-artifacts", "mlops-pipeline/DeployConf/def456"
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
EXECUTION = "2d6b0c50-6f3a-4d8e-9f1a-1234567890ab"
CAPTURE = "s3://mlops-data/data-capture/mlops-diamonds-dev"
PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-diamonds/3"
PARAMS = {"endpoint_name": "mlops-diamonds-dev", "execution_id": EXECUTION, "data_capture_uri": CAPTURE}


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def invoke(codepipeline_client, s3_client, params, event="codepipeline_job"):
    return run_job(load_event(event, user_parameters=params),
                   lambda job: write_deploy_config(job, s3=s3_client), codepipeline_client)


def written(s3_client) -> dict[str, bytes]:
    body = s3_client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


GOOD = [
    ("dev-defaults", PARAMS,
     {"Parameters": {"EndpointName": "mlops-diamonds-dev", "Stage": "dev", "InstanceType": "ml.m5.large",
                     "InstanceCount": "1", "DataCaptureUri": CAPTURE, "DataCapturePercent": "100",
                     "ExecutionId": EXECUTION}},
     "Wrote DeployConfig::endpoint-config.json for endpoint mlops-diamonds-dev (dev, 1 x ml.m5.large, "
     f"capturing 100% to {CAPTURE})"),
    ("prod-everything",
     {**PARAMS, "endpoint_name": "mlops-diamonds-prod", "stage": "prod", "instance_type": "ml.c5.xlarge",
      "instance_count": 2, "data_capture_percent": 35, "model_package_arn": PACKAGE,
      "tags": {"Project": "mlops-diamonds", "CostCenter": "ml-42"}},
     {"Parameters": {"EndpointName": "mlops-diamonds-prod", "Stage": "prod", "InstanceType": "ml.c5.xlarge",
                     "InstanceCount": "2", "DataCaptureUri": CAPTURE, "DataCapturePercent": "35",
                     "ExecutionId": EXECUTION, "ModelPackageArn": PACKAGE},
      "Tags": {"CostCenter": "ml-42", "Project": "mlops-diamonds"}},
     "Wrote DeployConfig::endpoint-config.json for endpoint mlops-diamonds-prod (prod, 2 x ml.c5.xlarge, "
     f"capturing 35% to {CAPTURE})"),
    ("prod-default-capture-and-numbers-from-variables",
     {**PARAMS, "stage": "prod", "instance_count": "3", "data_capture_percent": None},
     {"Parameters": {"EndpointName": "mlops-diamonds-dev", "Stage": "prod", "InstanceType": "ml.m5.large",
                     "InstanceCount": "3", "DataCaptureUri": CAPTURE, "DataCapturePercent": "20",
                     "ExecutionId": EXECUTION}},
     "Wrote DeployConfig::endpoint-config.json for endpoint mlops-diamonds-dev (prod, 3 x ml.m5.large, "
     f"capturing 20% to {CAPTURE})"),
    ("capture-off-from-variable-string", {**PARAMS, "data_capture_percent": "0"},
     {"Parameters": {"EndpointName": "mlops-diamonds-dev", "Stage": "dev", "InstanceType": "ml.m5.large",
                     "InstanceCount": "1", "DataCaptureUri": CAPTURE, "DataCapturePercent": "0",
                     "ExecutionId": EXECUTION}},
     "Wrote DeployConfig::endpoint-config.json for endpoint mlops-diamonds-dev (dev, 1 x ml.m5.large, "
     f"capturing 0% to {CAPTURE})"),
]


@pytest.mark.parametrize("params, config, summary", [c[1:] for c in GOOD], ids=[c[0] for c in GOOD])
def test_writes_the_template_configuration(codepipeline, s3, params, config, summary):
    cp, stub = codepipeline
    params = {k: v for k, v in params.items() if v is not None}
    stub.add_response("put_job_success_result", {}, {
        "jobId": JOB_ID, "executionDetails": {"summary": summary},
        "outputVariables": {"EndpointName": config["Parameters"]["EndpointName"],
                            "ConfigFile": "endpoint-config.json",
                            "TemplateConfiguration": "DeployConfig::endpoint-config.json"}})
    invoke(cp, s3, params)

    files = written(s3)
    assert list(files) == ["endpoint-config.json"]
    document = json.loads(files["endpoint-config.json"])
    assert document == config
    assert all(isinstance(v, str) for v in document["Parameters"].values())  # CloudFormation takes strings
    head = s3.head_object(Bucket=BUCKET, Key=KEY)
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", KMS_KEY)


def test_without_a_kms_key_the_artifact_is_written_without_kms_headers(codepipeline, s3):
    cp, stub = codepipeline
    stub.add_response("put_job_success_result", {}, {"jobId": JOB_ID, "executionDetails": ANY,
                                                     "outputVariables": ANY})
    invoke(cp, s3, PARAMS, event="deploy_no_kms_key")
    head = s3.head_object(Bucket=BUCKET, Key=KEY)
    assert head.get("ServerSideEncryption") != "aws:kms" and "SSEKMSKeyId" not in head
    assert "endpoint-config.json" in written(s3)


def test_the_action_needs_exactly_one_output_artifact(codepipeline, s3):
    cp, stub = codepipeline
    stub.add_response("put_job_failure_result", {}, {"jobId": JOB_ID, "failureDetails": {
        "type": "ConfigurationError", "message": "the action needs exactly one output artifact, has 2"}})
    invoke(cp, s3, PARAMS, event="deploy_two_outputs")
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


ALLOWED = ("['data_capture_percent', 'data_capture_uri', 'endpoint_name', 'execution_id', 'instance_count', "
           "'instance_type', 'model_package_arn', 'stage', 'tags']")
NAME_RULE = ("is not a SageMaker endpoint name: 1-63 letters, digits and hyphens, starting and ending with a "
             "letter or digit")
BAD_PARAMETERS = [
    ("missing-key", {k: v for k, v in PARAMS.items() if k != "endpoint_name"},
     "UserParameters is missing required key 'endpoint_name'"),
    ("unknown-key", {**PARAMS, "region": "us-east-1"},
     f"UserParameters has unknown key(s) ['region']; allowed: {ALLOWED}"),
    ("wrong-type-name", {**PARAMS, "endpoint_name": 7},
     "UserParameters 'endpoint_name' must be str, got int"),
    ("wrong-type-count", {**PARAMS, "instance_count": "two"},
     "UserParameters 'instance_count' must be a number, got 'two'"),
    ("bool-for-count", {**PARAMS, "instance_count": True},
     "UserParameters 'instance_count' must be int or float, got bool"),
    ("wrong-type-tags", {**PARAMS, "tags": [["Project", "x"]]},
     "UserParameters 'tags' must be dict, got list"),
    ("unresolved-variable", {**PARAMS, "model_package_arn": "#{Registry.ModelPackageArn}"},
     "UserParameters 'model_package_arn' holds an unresolved variable #{Registry.ModelPackageArn}; "
     "check the namespace and variable name"),
    ("stage-qa", {**PARAMS, "stage": "qa"},
     "UserParameters 'stage' must be one of ['dev', 'prod'], got 'qa'"),
    ("instance-count-0", {**PARAMS, "instance_count": 0},
     "UserParameters 'instance_count' must be a whole number >= 1, got 0"),
    ("instance-count-fraction", {**PARAMS, "instance_count": 1.5},
     "UserParameters 'instance_count' must be a whole number >= 1, got 1.5"),
    ("capture-percent-101", {**PARAMS, "data_capture_percent": 101},
     "UserParameters 'data_capture_percent' must be a whole number 0-100, got 101"),
    ("capture-percent-negative", {**PARAMS, "data_capture_percent": -1},
     "UserParameters 'data_capture_percent' must be a whole number 0-100, got -1"),
    ("endpoint-name-underscore", {**PARAMS, "endpoint_name": "mlops_diamonds"},
     f"UserParameters 'endpoint_name' 'mlops_diamonds' {NAME_RULE}"),
    ("endpoint-name-leading-hyphen", {**PARAMS, "endpoint_name": "-mlops"},
     f"UserParameters 'endpoint_name' '-mlops' {NAME_RULE}"),
    ("endpoint-name-64-characters", {**PARAMS, "endpoint_name": "e" * 64},
     f"UserParameters 'endpoint_name' '{'e' * 64}' {NAME_RULE}"),
    ("instance-type", {**PARAMS, "instance_type": "m5.large"},
     "UserParameters 'instance_type' 'm5.large' is not a SageMaker instance type such as 'ml.m5.large'"),
    ("capture-uri-not-s3", {**PARAMS, "data_capture_uri": "mlops-data/capture"},
     "UserParameters 'data_capture_uri' must be an s3:// URI, got 'mlops-data/capture'"),
    ("model-package-arn", {**PARAMS, "model_package_arn": "mlops-diamonds/3"},
     "UserParameters 'model_package_arn' 'mlops-diamonds/3' is not a SageMaker model package ARN "
     "(arn:<partition>:sagemaker:<region>:<account>:model-package/...)"),
    ("tag-value-not-text", {**PARAMS, "tags": {"Replicas": 2}},
     "UserParameters 'tags' value for 'Replicas' must be str, got int"),
    ("tag-key-reserved", {**PARAMS, "tags": {"aws:owner": "me"}},
     "UserParameters 'tags' 'aws:owner': keys are 1-128 characters and may not start with 'aws:'; "
     "values at most 256 characters"),
    ("execution-id-empty", {**PARAMS, "execution_id": " "},
     "UserParameters 'execution_id' is empty; pass the pipeline execution id"),
]


@pytest.mark.parametrize("params, message", [c[1:] for c in BAD_PARAMETERS],
                         ids=[c[0] for c in BAD_PARAMETERS])
def test_bad_user_parameters_write_nothing(codepipeline, s3, params, message):
    cp, stub = codepipeline
    stub.add_response("put_job_failure_result", {}, {"jobId": JOB_ID, "failureDetails": {
        "type": "ConfigurationError", "message": message}})
    invoke(cp, s3, params)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_logs_name_the_job_and_endpoint_and_never_the_credentials(codepipeline, s3, caplog):
    cp, stub = codepipeline
    caplog.set_level(logging.DEBUG)
    stub.add_response("put_job_success_result", {}, {"jobId": JOB_ID, "executionDetails": ANY,
                                                     "outputVariables": ANY})
    stub.add_response("put_job_success_result", {}, {"jobId": JOB_ID, "executionDetails": ANY,
                                                     "outputVariables": ANY})
    stub.add_response("put_job_failure_result", {}, {"jobId": JOB_ID, "failureDetails": ANY})
    invoke(cp, s3, PARAMS)
    invoke(cp, s3, {**PARAMS, "stage": "prod"})  # prod on one instance: a warning
    invoke(cp, s3, {**PARAMS, "stage": "qa"})
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("lambdas")]
    assert ours and all(JOB_ID in message for message in ours)
    assert any("mlops-diamonds-dev" in message and "one instance" in message for message in ours)
    assert not any(secret in logged for secret in SECRETS)
