"""Source/S3: the object becomes the artifact.

A zip object is the artifact as is (as on AWS); any other object is wrapped in a zip under its key's
basename, so every downstream action can unzip its input.

The source bucket must be versioned: "the source location is an Amazon S3 bucket configured for
versioning" (CodePipeline User Guide, "Amazon S3 source action reference"), and the pipeline role's
s3:GetBucketVersioning is what CodePipeline reads it with. An unversioned or suspended bucket fails the
action; the wording of that failure is the stand-in's (AWS's own text is not documented).
"""
from __future__ import annotations

import io
import zipfile
from typing import Any

from mlops_local.codepipeline.actions.context import ActionContext, ActionFailed, ActionResult, put_artifact
from mlops_local.gateway import now


def source_s3(ctx: ActionContext) -> ActionResult:
    bucket, key = ctx.require("S3Bucket"), ctx.require("S3ObjectKey")
    extra: dict[str, Any] = {}
    override = ctx.source_override or {}
    if override.get("revisionType") == "S3_OBJECT_VERSION_ID":
        extra["VersionId"] = override["revisionValue"]
    elif override.get("revisionType") == "S3_OBJECT_KEY":
        key = override["revisionValue"]
    elif override:
        raise ActionFailed(f"revision type {override.get('revisionType')} does not apply to an S3 source",
                           "ConfigurationError")
    s3 = ctx.client("s3")
    try:
        versioning = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    except Exception as exc:
        raise ActionFailed(f"cannot read the versioning of source bucket {bucket}: {exc}") from None
    if versioning != "Enabled":
        raise ActionFailed(
            f"source bucket {bucket} is not versioned (versioning {versioning or 'never enabled'}); the S3 source "
            "action needs a bucket with versioning enabled: set VersioningConfiguration Status Enabled on the "
            f"bucket, or run aws s3api put-bucket-versioning --bucket {bucket} "
            "--versioning-configuration Status=Enabled", "ConfigurationError")
    try:
        obj = s3.get_object(Bucket=bucket, Key=key, **extra)
    except Exception as exc:
        raise ActionFailed(f"cannot read the source object s3://{bucket}/{key}: {exc}") from None
    data = obj["Body"].read()
    if zipfile.is_zipfile(io.BytesIO(data)):
        body = data  # a zip is the artifact as is, as on AWS
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(key.rsplit("/", 1)[-1], data)
        body = buffer.getvalue()
    for artifact in ctx.outputs:
        put_artifact(ctx, artifact, body)
    version = obj.get("VersionId") or "null"  # an object put before versioning was enabled
    etag = obj.get("ETag", "").strip('"')
    summary = f"s3://{bucket}/{key} version {version}"
    return ActionResult(summary=summary, variables={"VersionId": version, "ETag": etag},
                        external_id=version,
                        revision={"revisionId": version, "revisionChangeId": etag or version,
                                  "revisionSummary": summary, "created": obj.get("LastModified") or now()},
                        artifact_revision=version)
