"""RegisterModel: put the candidate the evaluation gate approved into the SageMaker Model Registry.

The package records two decisions apart. The gate's verdict is in CustomerMetadataProperties
(Decision=APPROVED, the scores and the reason); the person's is the ModelApprovalStatus. The package is
registered PendingManualApproval (the default of UserParameters 'approval_status') before the dev
endpoint and the manual approval, and only PromoteModel (lambdas.promote), the Production stage's first
action after a person approved, sets it Approved. So a person who rejects promotion leaves a Pending
package, never the next champion (SubmitEvaluation's champion is the group's newest Approved package);
the latest package stays PendingManualApproval until an explicit approval decision, as SageMaker
project templates and governance checks expect. 'approval_status': "Approved" keeps the old flow (no
manual approval) for a pipeline that has none.

One model package per (model package group, pipeline execution). A retried invocation finds the
package it made before: it first looks in the group for a package whose customer metadata carries
this execution id, and CreateModelPackage carries a ClientToken derived from the same id, so even
two concurrent attempts end with one package. The package it finds may be Pending or, once promoted,
Approved: both are this action's work and it reports the package again; a Rejected one fails.
Exports `ModelPackageArn`.

UserParameters (JSON):
    execution_id         "#{codepipeline.PipelineExecutionId}"
    model_package_group  group name or ARN (the stack creates it)
    image_uri            inference image, e.g. "#{BuildTrainingImage.ImageUri}"
    model_data_uri       s3:// URI of model.tar.gz
    evaluation_uri       s3:// URI of evaluation.json (SageMaker ModelMetrics regression format)
    source_commits       optional {"ModelSource": "#{ModelSource.CommitId}", ...}
    gate                 optional, the evaluation gate's record as MonitorEvaluation exported it:
                         {"Rmse": "#{Evaluation.Rmse}", "ChampionRmse": ..., "DecisionReason": ...}; keys
                         are lambdas.sagemaker_jobs.GATE_KEYS, recorded as they are in CustomerMetadataProperties
    description          optional free text (default names the execution)
    approval_status      optional, "PendingManualApproval" (default: a person decides, PromoteModel
                         approves) or "Approved" (no manual approval in the pipeline)

The evaluation monitor registers REJECTED candidates itself (status Rejected, with the same gate record);
this action only ever registers ones the gate approved.

What a registered package references outlives the execution that made it. The data bucket expires
runs/ after RunRetentionDays and the image repository keeps only its newest images, yet a live
endpoint (scale-out, instance replacement) and any rollback read the package's model data and image
again, months later. So before registering, the worker
- copies model.tar.gz and evaluation.json to models/<group>/<execution>/ in the model's bucket, a
  prefix no lifecycle rule expires, and registers those copies (the endpoint stack serves the
  package, so the endpoint reads the copy too);
- tags the image `approved-<execution>` (ECR retags by putting the same manifest under a new tag:
  BatchGetImage, then PutImage), a tag the repository's lifecycle policy never expires.
Copying at registration, rather than exempting runs/<execution>/ of Approved executions, keeps the
bucket's lifecycle a plain prefix rule: S3 lifecycle filters cannot say "unless a package uses it".
Both steps are idempotent: a retry copies to the same keys and finds its tag already in place.
"""
from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from lambdas.errors import ConfigurationError, JobFailed
from lambdas.job import AwsClient, Done, JobEvent, Param, client, parse_s3_uri, parse_user_parameters, run_job
from lambdas.sagemaker_jobs import CONTENT_TYPES, DECISION_KEY, EXECUTION_KEY, GATE_KEYS

logger = logging.getLogger(__name__)

SCHEMA = {
    "execution_id": Param(str),
    "model_package_group": Param(str),
    "image_uri": Param(str),
    "model_data_uri": Param(str),
    "evaluation_uri": Param(str),
    "source_commits": Param(dict, required=False, default=None),
    "gate": Param(dict, required=False, default=None),
    "description": Param(str, required=False, default=None),
    "approval_status": Param(str, required=False, default="PendingManualApproval"),
}
# Statuses this action may register with; Rejected is the evaluation monitor's (CreateModelPackage's
# ModelApprovalStatus enum: Approved | Rejected | PendingManualApproval).
APPROVAL_STATUSES = ("PendingManualApproval", "Approved")
# An earlier attempt's package in one of these is this action's work (Approved: promoted since).
REGISTERED_STATUSES = ("PendingManualApproval", "Approved")

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

# Kept as long as the stack: templates/pipeline.yaml (DataBucket lifecycle, TrainingImageRepository
# lifecycle policy, RegisterModelFunctionRole) is written against these two names.
MODELS_PREFIX = "models/"
PROTECTED_TAG_PREFIX = "approved-"
MODEL_FILE, EVALUATION_FILE = "model.tar.gz", "evaluation.json"
ECR_IMAGE = re.compile(r"(?P<registry>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
                       r"(?P<repository>[a-z0-9][a-z0-9._/-]*)"
                       r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@(?P<digest>sha256:[a-f0-9]{64}))")
# Asked for so ECR returns the manifest as pushed, not converted: a converted manifest has another
# digest, and PutImage would tag a new image instead of the served one.
MANIFEST_TYPES = ["application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json",
                  "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json"]


@dataclass(frozen=True)
class Image:
    """An image in a private ECR repository, named by tag or digest."""
    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def image_id(self) -> dict[str, str]:
        return {"imageDigest": self.digest} if self.digest else {"imageTag": str(self.tag)}


@dataclass(frozen=True)
class Protection:
    """Where the package's artifacts are copied to, and the tag that keeps its image."""
    copies: tuple[tuple[str, str], ...]   # (source s3:// URI, protected s3:// URI)
    image: Image
    tag: str

    def protected(self, source: str) -> str:
        return dict(self.copies)[source]


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return run_job(event, lambda job: register(job))


def register(job: JobEvent, *, sagemaker: AwsClient = None, s3: AwsClient = None, ecr: AwsClient = None) -> Done:
    params = parse_user_parameters(job.user_parameters, SCHEMA)
    group = _group(params["model_package_group"])
    execution_id = params["execution_id"]
    protection = protection_plan(params)
    request = package_request(params, protection)  # validates everything before any AWS call
    sagemaker = sagemaker or client("sagemaker")

    _check_group_exists(sagemaker, group)
    existing = find_package(sagemaker, group, execution_id)
    if existing is not None:
        arn, status = existing["ModelPackageArn"], existing.get("ModelApprovalStatus")
        if status not in REGISTERED_STATUSES:
            raise JobFailed(f"model package {arn} in group '{group}' for pipeline execution {execution_id} "
                            f"is {status}, not PendingManualApproval or Approved; this execution's candidate was "
                            "not approved (see the evaluation action), so it is not registered again")
        logger.info("job %s: model package %s already registered (%s) for execution %s", job.job_id, arn, status,
                    execution_id)
        return Done(f"Model package {arn} was already registered ({status}) for execution {execution_id}",
                    {"ModelPackageArn": arn})

    protect(job, protection, s3=s3 or client("s3"), ecr=ecr or client("ecr"))
    logger.info("job %s: registering model %s in group '%s' for execution %s", job.job_id,
                protection.protected(params["model_data_uri"]), group, execution_id)
    arn = sagemaker.create_model_package(**request)["ModelPackageArn"]
    status = request["ModelApprovalStatus"]
    logger.info("job %s: registered model package %s (%s)", job.job_id, arn, status)
    return Done(f"Registered model package {arn} ({status}) in group '{group}' for execution {execution_id}",
                {"ModelPackageArn": arn})


def package_request(params: Mapping[str, Any], protection: Protection) -> dict[str, Any]:
    """The CreateModelPackage request for validated UserParameters: it names the protected copies."""
    group = _group(params["model_package_group"])
    execution_id = params["execution_id"]
    status = params["approval_status"]
    if status not in APPROVAL_STATUSES:
        raise ConfigurationError(f"UserParameters 'approval_status' {status!r} is not one of "
                                 f"{list(APPROVAL_STATUSES)}; PendingManualApproval leaves the decision to a person "
                                 "(PromoteModel approves), Rejected candidates are registered by the evaluation action")
    description = params["description"]
    if description is None:
        description = f"Approved by the evaluation gate of pipeline execution {execution_id}"
    if len(description) > MAX_DESCRIPTION:
        raise ConfigurationError(f"UserParameters 'description' is {len(description)} characters "
                                 f"(SageMaker allows {MAX_DESCRIPTION})")
    return {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": description,
        "InferenceSpecification": {
            "Containers": [{"Image": params["image_uri"],
                            "ModelDataUrl": protection.protected(params["model_data_uri"])}],
            "SupportedContentTypes": list(CONTENT_TYPES),
            "SupportedResponseMIMETypes": list(CONTENT_TYPES),
            "SupportedRealtimeInferenceInstanceTypes": list(REALTIME_INSTANCE_TYPES),
            "SupportedTransformInstanceTypes": list(TRANSFORM_INSTANCE_TYPES),
        },
        "ModelMetrics": {"ModelQuality": {"Statistics": {
            "ContentType": "application/json", "S3Uri": protection.protected(params["evaluation_uri"])}}},
        "ModelApprovalStatus": status,
        "CustomerMetadataProperties": metadata(execution_id, params["source_commits"], params["gate"]),
        "ClientToken": client_token(group, execution_id),
    }


def protection_plan(params: Mapping[str, Any]) -> Protection:
    """Validated UserParameters -> where the artifacts go (models/<group>/<execution>/ in the model's
    bucket) and the image's protecting tag. Raises ConfigurationError before any AWS call."""
    model_bucket, model_key = _object_uri(params["model_data_uri"], "model_data_uri")
    _object_uri(params["evaluation_uri"], "evaluation_uri")
    image_uri = params["image_uri"].strip()
    if not image_uri:
        raise ConfigurationError("UserParameters 'image_uri' is empty; pass the built image URI")
    match = ECR_IMAGE.fullmatch(image_uri)
    if not match:
        raise ConfigurationError(f"UserParameters 'image_uri' {image_uri!r} is not an image in a private ECR "
                                 "repository (<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag> or "
                                 "@sha256:<digest>); the registry tags the image it registers so that the "
                                 "repository's lifecycle policy keeps it")
    group_name = _group(params["model_package_group"]).rsplit("/", 1)[-1]
    execution = _key_part(params["execution_id"])
    folder = f"s3://{model_bucket}/{MODELS_PREFIX}{group_name}/{execution}/"
    image = Image(match["registry"], match["repository"], match["tag"], match["digest"])
    return Protection(copies=((params["model_data_uri"], folder + MODEL_FILE),
                              (params["evaluation_uri"], folder + EVALUATION_FILE)),
                      image=image, tag=(PROTECTED_TAG_PREFIX + execution)[:128])


def protect(job: JobEvent, protection: Protection, *, s3: AwsClient, ecr: AwsClient) -> None:
    """Copy the artifacts to their protected keys and tag the image; both idempotent."""
    for source, target in protection.copies:
        source_bucket, source_key = parse_s3_uri(source)
        bucket, key = parse_s3_uri(target)
        # No SSE arguments: a copy gets the destination bucket's default encryption (the project key,
        # SSE-KMS), not the source's (S3 API Reference, CopyObject). Up to 5 GB in one call.
        s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": source_bucket, "Key": source_key})
        logger.info("job %s: copied %s to %s", job.job_id, source, target)
    tag_image(job, protection.image, protection.tag, ecr=ecr)


# PutImage of a tag already on this manifest: ImageAlreadyExistsException ("no changes to the manifest or image
# tag"), or ImageTagAlreadyExistsException where tags are immutable (ECR API Reference, PutImage, Errors).
ALREADY_TAGGED = ("ImageAlreadyExistsException", "ImageTagAlreadyExistsException")


def tag_image(job: JobEvent, image: Image, tag: str, *, ecr: AwsClient) -> None:
    """Add `tag` to the image: ECR User Guide, "Retagging an image": BatchGetImage for the manifest,
    then PutImage with the same manifest and the new tag. The repository's tags are immutable, so a
    tag that exists on another image fails; on this image it means an earlier attempt tagged it."""
    from botocore.exceptions import ClientError

    found = ecr.batch_get_image(registryId=image.registry, repositoryName=image.repository,
                                imageIds=[image.image_id], acceptedMediaTypes=MANIFEST_TYPES)
    if not found.get("images"):
        reasons = "; ".join(f"{f.get('failureCode')}: {f.get('failureReason')}" for f in found.get("failures", []))
        raise JobFailed(f"image {image.image_id} is not in ECR repository {image.repository} "
                        f"({reasons or 'not found'}); the build pushes it before training, so check the Build "
                        "stage and the repository")
    record = found["images"][0]
    digest = record["imageId"]["imageDigest"]
    request = {"registryId": image.registry, "repositoryName": image.repository, "imageTag": tag,
               "imageManifest": record["imageManifest"], "imageDigest": digest}
    if record.get("imageManifestMediaType"):
        request["imageManifestMediaType"] = record["imageManifestMediaType"]
    try:
        tagged = ecr.put_image(**request)["image"]["imageId"]["imageDigest"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ALREADY_TAGGED:
            raise
        tagged = _digest_of(ecr, image, tag)
    if tagged != digest:
        raise JobFailed(f"tag {tag} in ECR repository {image.repository} names image {tagged}, not the registered "
                        f"image {digest}; tags there are immutable, so remove the stray tag and retry")
    logger.info("job %s: image %s in %s tagged %s", job.job_id, digest, image.repository, tag)


def _digest_of(ecr: AwsClient, image: Image, tag: str) -> str:
    described = ecr.describe_images(registryId=image.registry, repositoryName=image.repository,
                                    imageIds=[{"imageTag": tag}])
    return str(described["imageDetails"][0]["imageDigest"])


def metadata(execution_id: str, source_commits: Mapping[str, Any] | None,
             gate: Mapping[str, Any] | None = None) -> dict[str, str]:
    """CustomerMetadataProperties: the execution id, the gate's record (both scores, the decision and its
    reason) and each source's commit, within SageMaker's limits."""
    props = {EXECUTION_KEY: _metadata_text("execution_id", execution_id, MAX_METADATA_VALUE),
             DECISION_KEY: "APPROVED"}
    unknown = sorted(set(gate or {}) - set(GATE_KEYS))
    if unknown:
        raise ConfigurationError(f"UserParameters 'gate' has unknown key(s) {unknown}; allowed: {list(GATE_KEYS)}")
    for key, value in sorted((gate or {}).items()):
        if not isinstance(value, str):
            raise ConfigurationError(f"UserParameters 'gate' value for '{key}' must be str, got {type(value).__name__}")
        props[key] = _metadata_text(f"gate['{key}']", value, MAX_METADATA_VALUE)
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


def _object_uri(uri: str, key: str) -> tuple[str, str]:
    bucket, object_key = parse_s3_uri(uri, f"UserParameters '{key}'")
    if not object_key or object_key.endswith("/"):
        raise ConfigurationError(f"UserParameters '{key}' {uri!r} names no object; pass the s3:// URI of the file")
    return bucket, object_key


def _key_part(execution_id: str) -> str:
    """The execution id as one S3 key segment and ECR tag body: [A-Za-z0-9_.-] only."""
    part = re.sub(r"[^A-Za-z0-9_.-]", "-", execution_id).strip(".-")
    if not part:
        raise ConfigurationError(f"UserParameters 'execution_id' {execution_id!r} has no usable characters")
    return part


def _metadata_text(what: str, value: str, limit: int) -> str:
    if not value or len(value) > limit or not METADATA_TEXT.fullmatch(value):
        raise ConfigurationError(f"UserParameters {what} {value!r} cannot be model package metadata: "
                                 f"1-{limit} characters of letters, digits, spaces and _.:/=+-@")
    return value
