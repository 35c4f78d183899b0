"""SageMaker acting as an execution role: the session it assumes, the image pull, AWS's texts for failures.

A training or processing job acts as its RoleArn, a model server as its model's ExecutionRoleArn: SageMaker
assumes the role as sagemaker.amazonaws.com (the trust policy must allow it), downloads and uploads S3 data
and pulls the image with it, and hands its credentials to the container. Here the staging goes through the
gateway signed as that session (runtime.client_as), so IAM judges it as AWS would; the image pull, which
makes no request here, is judged with runtime.authorize_checks.
"""
from __future__ import annotations

from mlops_local.iam.actions import image_pull, partition
from mlops_local.iam.enforcement import AccessDenied
from mlops_local.runtime import RoleCredentials, RoleNotAssumable, Runtime

SERVICE = "sagemaker.amazonaws.com"
# The session name SageMaker gives the roles it assumes, as denial messages show it
# ("assumed-role/AmazonSageMaker-ExecutionRole-.../SageMaker", aws/amazon-sagemaker-examples#363).
SESSION_NAME = "SageMaker"


class RoleUnusable(Exception):
    """SageMaker cannot assume the role; the message is what the runtime found (RoleNotAssumable)."""


def could_not_assume(role_arn: str) -> str:
    """CreateTrainingJob / CreateProcessingJob / CreateModel's ValidationException for a role SageMaker
    cannot assume (as AWS words it: awslabs/predictive-maintenance-using-machine-learning#3)."""
    return (f"Could not assume role {role_arn}. Please ensure that the role exists and allows principal "
            f"'{SERVICE}' to assume the role.")


def inference_source(runtime: Runtime) -> str:
    """The aws:SourceArn SageMaker sends when it assumes a model's role for inference (CreateModel, an
    endpoint's instances): arn:<partition>:sagemaker:<region>:<account>:*, whose asterisk "does not stand
    for wildcard" (SageMaker Developer Guide, "Cross-service confused deputy prevention", Inference), so a
    trust policy naming one model or endpoint refuses it."""
    region = runtime.aws.gateway.region
    return f"arn:{partition(region)}:sagemaker:{region}:{runtime.aws.account_id}:*"


def session(runtime: Runtime, role_arn: str, source_arn: str | None = None) -> RoleCredentials:
    """The role session SageMaker acts with for `source_arn` (a training or processing job's ARN; None for
    inference: inference_source); RoleUnusable when it cannot assume the role."""
    try:
        return runtime.session(role_arn, SESSION_NAME, SERVICE, source_arn=source_arn or inference_source(runtime))
    except RoleNotAssumable as exc:
        raise RoleUnusable(str(exc)) from None


def pull(runtime: Runtime, acting: RoleCredentials, image_uri: str) -> AccessDenied | None:
    """Judge and record the image pull as the session (ecr:GetAuthorizationToken, ecr:BatchGetImage,
    ecr:GetDownloadUrlForLayer); the denial, or None when allowed."""
    checks = image_pull(image_uri, runtime.aws.gateway.region)
    if not checks:  # an image outside ECR needs nothing of IAM
        return None
    try:
        runtime.authorize_checks(acting, "ecr", "BatchGetImage", checks)
    except AccessDenied as denied:
        return denied
    return None
