"""The KMS permissions Amazon S3 checks for SSE-KMS objects, added to a request's S3 checks.

S3 calls KMS as the caller (kms:ViaService s3.<region>.amazonaws.com, kms:CallerAccount), so an upload into
an SSE-KMS bucket, or a download of an SSE-KMS object, is denied unless the caller may use the key: its key
policy must allow, or delegate to IAM and an IAM policy allow (iam.decisions.Judge reads key policies).
`kms_checks(operation, params, headers, account, region)` finds the key: for what a request writes, its SSE
headers, else the bucket's default encryption; for what it reads, the stored object's key (moto's records);
aliases and key ids resolved to key ARNs through moto's KMS. Not SSE-KMS, or the AWS managed key aws/s3:
no checks. `with_kms_checks` adds them to an S3 request's Mapped checks (the gateway's one hook).

Which action each operation needs, general purpose buckets (S3 API Reference, each operation's
"Permissions"; S3 User Guide, "Using server-side encryption with AWS KMS keys (SSE-KMS)" and "Multipart
upload API and permissions"): an upload kms:GenerateDataKey, a download kms:Decrypt; CreateMultipartUpload
kms:GenerateDataKey, UploadPart and UploadPartCopy kms:Decrypt (S3 reads the upload's data key),
CompleteMultipartUpload kms:Decrypt only when the upload carries additional checksums; a copy Decrypt on the
source's key and GenerateDataKey on the destination's. HeadObject needs none: the API Reference asks KMS
permissions of HEAD only for directory buckets (S3 Express), which the stand-in does not have.
S3 Bucket Keys change how often S3 calls KMS, not who must be allowed: "Unique bucket-level keys are fetched
at least once per requester to ensure that the requester's access to the key is captured in an AWS KMS
CloudTrail event" (S3 User Guide, "Reducing the cost of SSE-KMS with Amazon S3 Bucket Keys"); so the same
checks whether BucketKeyEnabled or not.
"""
from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any, Iterable, Mapping, Protocol

from mlops_local.iam.actions import Check, Mapped, Unmapped, kms_via_service, partition
from mlops_local.moto_access import backend

KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")  # SSE-KMS and dual-layer DSSE-KMS: both use the KMS key
# The AWS managed key for S3. Its key policy (AWS maintains it) allows every principal of the account to use
# it through S3 (kms:ViaService s3.<region>.amazonaws.com, kms:CallerAccount <account>): "The key policy
# document for all AWS managed keys uses the kms:ViaService condition key to allow the KMS key to be used only
# when the request comes from the AWS service that created the KMS key" (KMS Developer Guide, "AWS KMS
# condition keys", kms:ViaService). An IAM allow is not needed, so S3 asks nothing of the caller for it.
MANAGED_ALIAS = "alias/aws/s3"

# operation -> the action on the key of what it writes, and on the key of what it reads
WRITES = {"PutObject": "kms:GenerateDataKey", "CreateMultipartUpload": "kms:GenerateDataKey",
          "CopyObject": "kms:GenerateDataKey", "UploadPart": "kms:Decrypt", "UploadPartCopy": "kms:Decrypt",
          "CompleteMultipartUpload": "kms:Decrypt"}
READS = {"GetObject": "kms:Decrypt", "CopyObject": "kms:Decrypt", "UploadPartCopy": "kms:Decrypt"}
_UPLOADS = ("UploadPart", "UploadPartCopy", "CompleteMultipartUpload")  # the key is the upload's


class Headers(Protocol):
    """A request's headers: a dict, or werkzeug's Headers as the gateway has them."""

    def items(self) -> Iterable[tuple[str, str]]: ...


def with_kms_checks(authorization: Mapped | Unmapped, params: Mapping[str, Any], headers: Headers,
                    account: str, region: str) -> Mapped | Unmapped:
    """An S3 request's checks with the KMS checks of its SSE-KMS key added; anything else unchanged."""
    if not isinstance(authorization, Mapped) or authorization.service != "s3":
        return authorization
    extra = kms_checks(authorization.operation, params, headers, account, region)
    return dataclasses.replace(authorization, checks=authorization.checks + extra) if extra else authorization


def kms_checks(operation: str, params: Mapping[str, Any], headers: Headers, account: str,
               region: str) -> tuple[Check, ...]:
    """The KMS checks S3 makes for this request (params as rest_operations.rest_request gives them)."""
    checks: list[Check] = []
    if operation in READS:
        source = _copy_source(params) if operation != "GetObject" else (
            str(params.get("Bucket", "")), str(params.get("Key", "")), params.get("VersionId"))
        key = _stored_key(source, account, region) if source else None
        if key:
            checks += _checks(READS[operation], key, account, region)
    if operation in WRITES and params.get("Bucket"):
        bucket = str(params["Bucket"])
        if operation in _UPLOADS:
            key = _upload_key(bucket, params, account, region)
        else:
            key = _requested_key(params, headers)
            key = _default_key(bucket, account, region) if key is None else key
        if key:
            checks += _checks(WRITES[operation], key, account, region)
    unique: list[Check] = []
    for check in checks:  # a copy within one key asks each action once
        if check not in unique:
            unique.append(check)
    return tuple(unique)


def _checks(action: str, key_id: str, account: str, region: str) -> list[Check]:
    arn = key_arn(key_id, account, region)
    return [kms_via_service(action, arn, "s3", region, account)] if arn else []


# -- which key ------------------------------------------------------------------------------
def _requested_key(params: Mapping[str, Any], headers: Headers) -> str | None:
    """The request's own SSE choice: the key it names (MANAGED_ALIAS if none), "" for SSE-S3 or SSE-C,
    None when it makes none (the bucket default applies). S3 API Reference, PutObject: "If you specify
    x-amz-server-side-encryption:aws:kms, but don't provide x-amz-server-side-encryption-aws-kms-key-id,
    Amazon S3 uses the Amazon Web Services managed key (aws/s3)"."""
    lowered = {name.lower(): value for name, value in headers.items()}
    algorithm = params.get("ServerSideEncryption") or lowered.get("x-amz-server-side-encryption")
    if params.get("SSECustomerAlgorithm") or lowered.get("x-amz-server-side-encryption-customer-algorithm"):
        return ""
    if not algorithm:
        return None
    if algorithm not in KMS_ALGORITHMS:
        return ""
    return str(params.get("SSEKMSKeyId") or lowered.get("x-amz-server-side-encryption-aws-kms-key-id")
               or MANAGED_ALIAS)


def _default_key(bucket_name: str, account: str, region: str) -> str:
    """The bucket's default encryption key (moto keeps PutBucketEncryption's XML, and a stack's
    BucketEncryption, as {"Rule": {"ApplyServerSideEncryptionByDefault": {...}}}); "" if not SSE-KMS."""
    bucket = backend("s3", account, region).buckets.get(bucket_name)
    rules = (getattr(bucket, "encryption", None) or {}).get("Rule") or []
    for rule in rules if isinstance(rules, list) else [rules]:
        default = rule.get("ApplyServerSideEncryptionByDefault") or {}
        if default.get("SSEAlgorithm") in KMS_ALGORITHMS:
            return str(default.get("KMSMasterKeyID") or MANAGED_ALIAS)
    return ""


def _stored_key(source: tuple[str, str, str | None], account: str, region: str) -> str:
    """The key a stored object (bucket, key, version or None: the current one) was encrypted with; "" if none."""
    bucket_name, object_key, version = source
    bucket = backend("s3", account, region).buckets.get(bucket_name)
    if bucket is None or not object_key:
        return ""
    versions = list(bucket.keys.getlist(object_key, default=[]))
    found = next((v for v in versions if str(getattr(v, "version_id", "")) == str(version)), None) if version \
        else (versions[-1] if versions else None)
    if getattr(found, "encryption", None) not in KMS_ALGORITHMS:
        return ""
    return str(getattr(found, "kms_key_id", None) or MANAGED_ALIAS)


def _upload_key(bucket_name: str, params: Mapping[str, Any], account: str, region: str) -> str:
    """A multipart upload's key, chosen when it was created (moto applies the bucket default at completion,
    so an upload without its own SSE choice has the bucket's)."""
    bucket = backend("s3", account, region).buckets.get(bucket_name)
    upload = bucket.multiparts.get(str(params.get("UploadId", ""))) if bucket is not None else None
    if upload is None:
        return ""  # no such upload: S3 answers NoSuchUpload
    if params.get("PartNumber") is None and not _has_checksums(upload, params):
        return ""  # CompleteMultipartUpload needs kms:Decrypt only with additional checksums (API Reference)
    if upload.sse_encryption:
        return str(upload.kms_key_id or MANAGED_ALIAS) if upload.sse_encryption in KMS_ALGORITHMS else ""
    return _default_key(bucket_name, account, region)


def _has_checksums(upload: Any, params: Mapping[str, Any]) -> bool:
    """"If you provide an additional checksum value in your MultipartUpload requests and the object is
    encrypted with Key Management Service, you must have permission to use the kms:Decrypt action for the
    CompleteMultipartUpload request to succeed" (S3 API Reference, CompleteMultipartUpload)."""
    return bool(upload.metadata.get("x-amz-checksum-algorithm")) or any(
        value for name, value in params.items() if name.startswith("Checksum") and name != "ChecksumType")


def _copy_source(params: Mapping[str, Any]) -> tuple[str, str, str | None] | None:
    source = params.get("CopySource")
    if not isinstance(source, str) or not source:
        return None
    path, _, query = source.lstrip("/").partition("?")
    bucket, _, key = urllib.parse.unquote(path).partition("/")
    return bucket, key, urllib.parse.parse_qs(query).get("versionId", [None])[0]


# -- key ARNs -------------------------------------------------------------------------------
def key_arn(key_id: str, account: str, region: str) -> str | None:
    """The ARN of the key a key id, key ARN, alias name or alias ARN names; None for the AWS managed aws/s3
    key (see MANAGED_ALIAS). An alias no key has stays an alias ARN: S3 fails the request on AWS
    (KMS.NotFoundException), and here no key policy or IAM statement on a key ARN allows it."""
    if key_id.startswith("arn:"):
        parts = key_id.split(":", 5)
        if len(parts) < 6:
            return key_id
        region, account, resource = parts[3], parts[4], parts[5]
    else:
        resource = key_id if key_id.startswith("alias/") else f"key/{key_id}"
    prefix = f"arn:{partition(region)}:kms:{region}:{account}:"
    records = list(backend("kms", account, region).keys.values())
    if resource.startswith("alias/"):
        if resource == MANAGED_ALIAS:
            return None
        target = next((key for key in records if resource in key.aliases), None)
        return prefix + (f"key/{target.id}" if target is not None else resource)
    target = next((key for key in records if key.id == resource.split("/", 1)[-1]), None)
    if target is not None and MANAGED_ALIAS in target.aliases:
        return None
    return prefix + resource
