"""Source/S3: the object becomes the artifact.

A zip object is the artifact as is (as on AWS); any other object is wrapped in a zip under its key's
basename, so every downstream action can unzip its input.
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
    try:
        obj = ctx.client("s3").get_object(Bucket=bucket, Key=key, **extra)
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
    version = obj.get("VersionId") or "null"
    etag = obj.get("ETag", "").strip('"')
    summary = f"s3://{bucket}/{key} version {version}"
    return ActionResult(summary=summary, variables={"VersionId": version, "ETag": etag},
                        external_id=version,
                        revision={"revisionId": version, "revisionChangeId": etag or version,
                                  "revisionSummary": summary, "created": obj.get("LastModified") or now()},
                        artifact_revision=version)
