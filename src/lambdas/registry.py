"""RegisterModel: put the approved candidate into the SageMaker Model Registry.

One model package per (model package group, pipeline execution). A retried invocation finds the
package it made before: it first looks in the group for a package whose customer metadata carries
this execution id, and CreateModelPackage carries a ClientToken derived from the same id, so even
two concurrent attempts end with one package. Exports `ModelPackageArn`.

UserParameters (JSON):
    execution_id         "#{codepipeline.PipelineExecutionId}"
    model_package_group  group name or ARN (the stack creates it)
    image_uri            inference image, e.g. "#{BuildTrainingImage.ImageUri}"
    model_data_uri       s3:// URI of model.tar.gz
    evaluation_uri       s3:// URI of evaluation.json (SageMaker ModelMetrics regression format)
    source_commits       optional {"ModelSource": "#{ModelSource.CommitId}", ...}
    description          optional free text (default names the execution)

The evaluation monitor registers REJECTED candidates itself (status Rejected); this action only
ever registers Approved ones.
"""
from __future__ import annotations

import logging
import re
import uuid
from typing import Any, Mapping

from lambdas.errors import ConfigurationError, JobFailed
from lambdas.job import AwsClient, Done, JobEvent, Param, client, parse_s3_uri, parse_user_parameters, run_job
from lambdas.sagemaker_jobs import CONTENT_TYPES, DECISION_KEY, EXECUTION_KEY

logger = logging.getLogger(__name__)

SCHEMA = {
    "execution_id": Param(str),
    "model_package_group": Param(str),
    "image_uri": Param(str),
    "model_data_uri": Param(str),
    "evaluation_uri": Param(str),
    "source_commits": Param(dict, required=False, default=None),
    "description": Param(str, required=False, default=None),
}

# CPU instances the TensorFlow inference image serves well on; the deploy config's instance_type
# (default ml.m5.large) should be one of these.
REALTIME_INSTANCE_TYPES = ["ml.m5.large", "ml.m5.xlarge", "ml.m5.2xlarge", "ml.c5.large", "ml.c5.xlarge",
                           "ml.c5.2xlarge"]
TRANSFORM_INSTANCE_TYPES = ["ml.m5.large", "ml.m5.xlarge", "ml.m5.2xlarge", "ml.c5.xlarge", "ml.c5.2xlarge"]

COMMIT_PREFIX = "Commit."
MAX_METADATA = 50          # CustomerMetadataProperties entries
MAX_METADATA_KEY = 128
MAX_METADATA_VALUE = 256
MAX_DESCRIPTION = 1024
LOOKBACK = 50              # newest packages in the group searched for an earlier attempt
GROUP = re.compile(r"(arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:model-package-group/)?"
                   r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
METADATA_TEXT = re.compile(r"[\w .:/=+\-@]+")  # SageMaker: letters, spaces, digits, _.:/=+-@
TOKEN_NAMESPACE = uuid.UUID("6f1c3c52-8f1e-4a43-9a43-6d0f1b0e5a11")


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return run_job(event, lambda job: register(job))


def register(job: JobEvent, *, sagemaker: AwsClient = None) -> Done:
    params = parse_user_parameters(job.user_parameters, SCHEMA)
    group = _group(params["model_package_group"])
    execution_id = params["execution_id"]
    request = package_request(params)  # validates everything before any AWS call
    sagemaker = sagemaker or client("sagemaker")

    _check_group_exists(sagemaker, group)
    existing = find_package(sagemaker, group, execution_id)
    if existing is not None:
        arn, status = existing["ModelPackageArn"], existing.get("ModelApprovalStatus")
        if status != "Approved":
            raise JobFailed(f"model package {arn} in group '{group}' for pipeline execution {execution_id} "
                            f"is {status}, not Approved; this execution's candidate was not approved "
                            "(see the evaluation action), so it is not registered again")
        logger.info("job %s: model package %s already registered for execution %s", job.job_id, arn,
                    execution_id)
        return Done(f"Model package {arn} was already registered (Approved) for execution {execution_id}",
                    {"ModelPackageArn": arn})

    logger.info("job %s: registering model %s in group '%s' for execution %s", job.job_id,
                params["model_data_uri"], group, execution_id)
    arn = sagemaker.create_model_package(**request)["ModelPackageArn"]
    logger.info("job %s: registered model package %s", job.job_id, arn)
    return Done(f"Registered model package {arn} (Approved) in group '{group}' for execution {execution_id}",
                {"ModelPackageArn": arn})


def package_request(params: Mapping[str, Any]) -> dict[str, Any]:
    """The CreateModelPackage request for validated UserParameters."""
    group = _group(params["model_package_group"])
    execution_id = params["execution_id"]
    parse_s3_uri(params["model_data_uri"], "UserParameters 'model_data_uri'")
    parse_s3_uri(params["evaluation_uri"], "UserParameters 'evaluation_uri'")
    if not params["image_uri"].strip():
        raise ConfigurationError("UserParameters 'image_uri' is empty; pass the built image URI")
    description = params["description"]
    if description is None:
        description = f"Approved by pipeline execution {execution_id}"
    if len(description) > MAX_DESCRIPTION:
        raise ConfigurationError(f"UserParameters 'description' is {len(description)} characters "
                                 f"(SageMaker allows {MAX_DESCRIPTION})")
    return {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": description,
        "InferenceSpecification": {
            "Containers": [{"Image": params["image_uri"], "ModelDataUrl": params["model_data_uri"]}],
            "SupportedContentTypes": list(CONTENT_TYPES),
            "SupportedResponseMIMETypes": list(CONTENT_TYPES),
            "SupportedRealtimeInferenceInstanceTypes": list(REALTIME_INSTANCE_TYPES),
            "SupportedTransformInstanceTypes": list(TRANSFORM_INSTANCE_TYPES),
        },
        "ModelMetrics": {"ModelQuality": {"Statistics": {
            "ContentType": "application/json", "S3Uri": params["evaluation_uri"]}}},
        "ModelApprovalStatus": "Approved",
        "CustomerMetadataProperties": metadata(execution_id, params["source_commits"]),
        "ClientToken": client_token(group, execution_id),
    }


def metadata(execution_id: str, source_commits: Mapping[str, Any] | None) -> dict[str, str]:
    """CustomerMetadataProperties: the execution id and each source's commit, within SageMaker's limits."""
    props = {EXECUTION_KEY: _metadata_text("execution_id", execution_id, MAX_METADATA_VALUE),
             DECISION_KEY: "APPROVED"}
    commits = source_commits or {}
    if len(commits) > MAX_METADATA - len(props):
        raise ConfigurationError(f"UserParameters 'source_commits' has {len(commits)} entries; "
                                 f"at most {MAX_METADATA - len(props)} fit in the model package metadata")
    for name, commit in sorted(commits.items()):
        if not isinstance(commit, str):
            raise ConfigurationError(f"UserParameters 'source_commits' value for '{name}' must be str, "
                                     f"got {type(commit).__name__}")
        key = _metadata_text(f"source_commits key '{name}'", COMMIT_PREFIX + name, MAX_METADATA_KEY)
        props[key] = _metadata_text(f"source_commits['{name}']", commit, MAX_METADATA_VALUE)
    return props


def client_token(group: str, execution_id: str) -> str:
    """36 characters of [a-f0-9-], stable per (group, execution): CreateModelPackage's idempotency token."""
    return str(uuid.uuid5(TOKEN_NAMESPACE, f"register-model/{group}/{execution_id}"))


def find_package(sagemaker: AwsClient, group: str, execution_id: str) -> dict[str, Any] | None:
    """The newest package in the group registered for this execution, or None."""
    seen = 0
    kwargs: dict[str, Any] = {"ModelPackageGroupName": group, "SortBy": "CreationTime",
                              "SortOrder": "Descending", "MaxResults": LOOKBACK}
    while seen < LOOKBACK:
        page = sagemaker.list_model_packages(**kwargs)
        for summary in page.get("ModelPackageSummaryList", []):
            seen += 1
            described: dict[str, Any] = sagemaker.describe_model_package(
                ModelPackageName=summary["ModelPackageArn"])
            if (described.get("CustomerMetadataProperties") or {}).get(EXECUTION_KEY) == execution_id:
                return described
            if seen >= LOOKBACK:
                break
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    return None


def _check_group_exists(sagemaker: AwsClient, group: str) -> None:
    from botocore.exceptions import ClientError

    try:
        sagemaker.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") in ("ValidationException", "ResourceNotFound") and \
                "does not exist" in error.get("Message", ""):
            raise ConfigurationError(f"model package group '{group}' does not exist in this account and "
                                     "region; create it (the pipeline stack defines it) or fix "
                                     "UserParameters 'model_package_group'") from None
        raise


def _group(value: str) -> str:
    if not GROUP.fullmatch(value):
        raise ConfigurationError(f"UserParameters 'model_package_group' {value!r} is not a model package "
                                 "group name (letters, digits, hyphens; at most 63) or group ARN")
    return value


def _metadata_text(what: str, value: str, limit: int) -> str:
    if not value or len(value) > limit or not METADATA_TEXT.fullmatch(value):
        raise ConfigurationError(f"UserParameters {what} {value!r} cannot be model package metadata: "
                                 f"1-{limit} characters of letters, digits, spaces and _.:/=+-@")
    return value
