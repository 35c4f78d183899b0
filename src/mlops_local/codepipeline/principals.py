"""Who CodePipeline acts as: the pipeline's service role, and the artifact credentials it hands to jobs.

CodePipeline assumes the pipeline's `roleArn` as codepipeline.amazonaws.com (its trust policy must
allow that) for everything it does itself: reading and writing artifacts, invoking functions,
calling CloudFormation and CodeBuild, passing the stack roles. A job's `artifactCredentials` are
temporary credentials limited to the pipeline's artifact store (CodePipeline API Reference,
"AWSSessionCredentials": "temporary credentials ... used to access input and output artifacts in
the S3 bucket used to store artifacts for the pipeline"); here a session of the pipeline role with
a session policy that allows only the artifact objects and the KMS key use S3 makes for them.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from mlops_local.codepipeline.actions import ActionFailed
from mlops_local.runtime import RoleCredentials, RoleNotAssumable, Runtime

SERVICE = "codepipeline.amazonaws.com"
MAX_SESSION_NAME = 64  # STS AssumeRole RoleSessionName: 2-64 characters


def pipeline_session(runtime: Runtime, pipeline: str, definition: Mapping[str, Any]) -> RoleCredentials:
    """The pipeline role's session; ActionFailed when CodePipeline cannot assume it."""
    role = definition.get("roleArn")
    if not role:
        raise ActionFailed("the pipeline has no roleArn: CodePipeline acts only as a service role",
                           "ConfigurationError")
    try:
        return runtime.session(role, pipeline[:MAX_SESSION_NAME], SERVICE)
    except RoleNotAssumable as exc:
        raise ActionFailed(f"CodePipeline cannot act as the pipeline's role: {exc}", "ConfigurationError") from None


def artifact_policy(bucket: str) -> str:
    """The session policy of artifact credentials: the artifact store's objects and KMS for them.

    KMS is limited to use through S3 (kms:ViaService), as a job needs it only for SSE-KMS artifacts."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Artifacts", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
         "Resource": f"arn:aws:s3:::{bucket}/*"},
        {"Sid": "ArtifactKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
         "Condition": {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}}}]}, separators=(",", ":"))


def artifact_credentials(runtime: Runtime, pipeline: str, definition: Mapping[str, Any],
                         bucket: str) -> dict[str, str]:
    """A job's artifactCredentials (accessKeyId, secretAccessKey, sessionToken)."""
    role = definition.get("roleArn") or ""
    try:
        session = runtime.session(role, f"{pipeline[:MAX_SESSION_NAME - 10]}-artifacts", SERVICE,
                                  policy=artifact_policy(bucket))
    except RoleNotAssumable as exc:
        raise ActionFailed(f"CodePipeline cannot issue artifact credentials: {exc}", "ConfigurationError") from None
    return {"accessKeyId": session.access_key_id, "secretAccessKey": session.secret_access_key,
            "sessionToken": session.session_token}
