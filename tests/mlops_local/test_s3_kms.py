"""SSE-KMS: S3 asks the caller's permission on the KMS key, and the gateway enforces it as AWS does.

One stand-in with a customer managed key (default key policy: delegates to IAM), a key whose policy does
not delegate, an alias, buckets with default encryption of each kind, and one role per set of KMS
permissions (every role may do anything in S3). Each case signs as a role session.
"""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from mlops_local.gateway import Gateway, LocalAws
from mlops_local.iam import s3_kms
from mlops_local.iam.actions import Check, Mapped, Unmapped

ACCOUNT = "123456789012"
REGION = "us-east-1"
TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]}
ROLES = {  # role -> KMS actions its policy allows (on every key)
    "s3-only": [], "generate": ["kms:GenerateDataKey"], "decrypt": ["kms:Decrypt"],
    "both": ["kms:GenerateDataKey", "kms:Decrypt"]}


@pytest.fixture(scope="module")
def aws():
    with LocalAws(Gateway()) as local:
        kms, s3, iam = local.client("kms"), local.client("s3"), local.client("iam")
        keys = {"project": kms.create_key()["KeyMetadata"]}
        closed = {"Version": "2012-10-17", "Statement": [  # only the administrator, no delegation to IAM
            {"Sid": "AdministratorOnly", "Effect": "Allow", "Action": "kms:*", "Resource": "*",
             "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/mlops-local"}}]}
        keys["closed"] = kms.create_key(Policy=json.dumps(closed))["KeyMetadata"]
        kms.create_alias(AliasName="alias/project", TargetKeyId=keys["project"]["KeyId"])
        defaults = {"kms-bucket": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": keys["project"]["Arn"]},
                    "alias-bucket": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/project"},
                    "closed-bucket": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": keys["closed"]["KeyId"]},
                    "managed-bucket": {"SSEAlgorithm": "aws:kms"},
                    "sse-s3-bucket": {"SSEAlgorithm": "AES256"}}
        for bucket, default in defaults.items():
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
                {"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": True}]})
            s3.put_object(Bucket=bucket, Key="stored.txt", Body=b"stored")
        for role, actions in ROLES.items():
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(TRUST))
            statements = [{"Sid": "AnythingInS3", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}]
            if actions:
                statements.append({"Sid": "UseKeys", "Effect": "Allow", "Action": actions, "Resource": "*"})
            iam.put_role_policy(RoleName=role, PolicyName="access", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": statements}))
        local.keys = {name: metadata["Arn"] for name, metadata in keys.items()}
        local.key_ids = {name: metadata["KeyId"] for name, metadata in keys.items()}
        yield local


def s3_as(aws: LocalAws, role: str):
    credentials = aws.client("sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}",
                                                RoleSessionName="kms-test")["Credentials"]
    return aws.client("s3", aws_access_key_id=credentials["AccessKeyId"],
                      aws_secret_access_key=credentials["SecretAccessKey"],
                      aws_session_token=credentials["SessionToken"])


def call(client, operation: str, bucket: str, extra: dict) -> None:
    if operation == "put_object":
        client.put_object(Bucket=bucket, Key="new.txt", Body=b"new", **extra)
    elif operation == "copy_object":
        client.copy_object(Bucket=bucket, Key="copy.txt", CopySource={"Bucket": extra["From"], "Key": "stored.txt"})
    else:
        getattr(client, operation)(Bucket=bucket, Key="stored.txt", **extra)


# (role, operation, bucket, extra arguments (a key's name stands for its id), denied: (action, key name) or None)
CASES = [
    ("s3-only", "put_object", "kms-bucket", {}, ("kms:GenerateDataKey", "project")),
    ("decrypt", "put_object", "kms-bucket", {}, ("kms:GenerateDataKey", "project")),
    ("generate", "put_object", "kms-bucket", {}, None),
    ("generate", "get_object", "kms-bucket", {}, ("kms:Decrypt", "project")),
    ("decrypt", "get_object", "kms-bucket", {}, None),
    ("both", "put_object", "kms-bucket", {}, None),
    ("both", "get_object", "kms-bucket", {}, None),
    ("s3-only", "head_object", "kms-bucket", {}, None),
    ("both", "put_object", "closed-bucket", {}, ("kms:GenerateDataKey", "closed")),
    ("both", "get_object", "closed-bucket", {}, ("kms:Decrypt", "closed")),
    ("s3-only", "put_object", "sse-s3-bucket", {}, None),
    ("s3-only", "get_object", "sse-s3-bucket", {}, None),
    ("s3-only", "put_object", "sse-s3-bucket", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "project"},
     ("kms:GenerateDataKey", "project")),
    ("s3-only", "put_object", "kms-bucket", {"ServerSideEncryption": "AES256"}, None),
    ("generate", "put_object", "kms-bucket", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "closed"},
     ("kms:GenerateDataKey", "closed")),
    ("s3-only", "put_object", "sse-s3-bucket", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/project"},
     ("kms:GenerateDataKey", "project")),
    ("s3-only", "put_object", "alias-bucket", {}, ("kms:GenerateDataKey", "project")),
    ("decrypt", "get_object", "alias-bucket", {}, None),
    ("s3-only", "put_object", "managed-bucket", {}, None),
    ("s3-only", "put_object", "sse-s3-bucket", {"ServerSideEncryption": "aws:kms"}, None),
    ("generate", "copy_object", "sse-s3-bucket", {"From": "kms-bucket"}, ("kms:Decrypt", "project")),
    ("decrypt", "copy_object", "kms-bucket", {"From": "sse-s3-bucket"}, ("kms:GenerateDataKey", "project")),
    ("both", "copy_object", "kms-bucket", {"From": "kms-bucket"}, None),
    ("decrypt", "create_multipart_upload", "kms-bucket", {}, ("kms:GenerateDataKey", "project")),
]
IDS = ["put-default-kms-without-permissions", "put-with-decrypt-only", "put-with-generate-data-key",
       "get-with-generate-data-key-only", "get-with-decrypt", "put-with-both", "get-with-both",
       "head-needs-no-kms", "put-key-policy-not-delegating", "get-key-policy-not-delegating",
       "put-sse-s3-bucket", "get-sse-s3-object", "explicit-key-overrides-sse-s3-default",
       "explicit-aes256-overrides-kms-default", "explicit-key-overrides-kms-default", "explicit-alias-resolved",
       "bucket-default-alias-resolved", "object-under-alias-decrypts", "aws-managed-default-key",
       "aws-kms-header-without-key-is-aws-managed", "copy-needs-decrypt-on-source", "copy-needs-generate-on-target",
       "copy-within-key-with-both", "multipart-create-needs-generate-data-key"]


@pytest.mark.parametrize("role, operation, bucket, extra, denied", CASES, ids=IDS)
def test_s3_asks_permission_on_the_kms_key(aws, role, operation, bucket, extra, denied):
    client = s3_as(aws, role)
    extra = {name: aws.key_ids.get(value, value) for name, value in extra.items()}  # key names -> key ids
    if denied is None:
        call(client, operation, bucket, extra)
        return
    with pytest.raises(ClientError) as raised:
        call(client, operation, bucket, extra)
    action, key = denied
    error = raised.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403)
    assert error["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/xml"
    assert (f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/kms-test is not authorized to perform: {action} "
            f"on resource: {aws.keys[key]}") in error["Error"]["Message"]


def test_a_denied_put_stores_nothing(aws):
    with pytest.raises(ClientError):
        s3_as(aws, "s3-only").put_object(Bucket="kms-bucket", Key="refused.txt", Body=b"x")
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket="kms-bucket", Prefix="refused")


# -- the checks themselves --------------------------------------------------------------------
def test_checks_carry_s3s_context_keys(aws):
    checks = s3_kms.kms_checks("PutObject", {"Bucket": "kms-bucket", "Key": "k"}, {}, ACCOUNT, REGION)
    assert checks == (Check("kms:GenerateDataKey", aws.keys["project"], {
        "kms:ViaService": ("s3.us-east-1.amazonaws.com",), "kms:CallerAccount": (ACCOUNT,)}),)


@pytest.mark.parametrize("operation, params, expected", [
    ("HeadObject", {"Bucket": "kms-bucket", "Key": "stored.txt"}, []),
    ("GetObject", {"Bucket": "kms-bucket", "Key": "missing.txt"}, []),
    ("GetObject", {"Bucket": "no-such-bucket", "Key": "stored.txt"}, []),
    ("PutObject", {"Bucket": "kms-bucket", "Key": "k", "SSECustomerAlgorithm": "AES256"}, []),
    ("PutObject", {"Bucket": "sse-s3-bucket", "Key": "k", "ServerSideEncryption": "aws:kms:dsse",
                   "SSEKMSKeyId": "closed"}, [("kms:GenerateDataKey", "closed")]),
    ("DeleteObject", {"Bucket": "kms-bucket", "Key": "stored.txt"}, []),
    ("CopyObject", {"Bucket": "closed-bucket", "Key": "k", "CopySource": "kms-bucket/stored.txt"},
     [("kms:Decrypt", "project"), ("kms:GenerateDataKey", "closed")]),
], ids=["head", "missing-object", "missing-bucket", "sse-c", "dsse-kms", "delete", "copy-across-keys"])
def test_which_checks(aws, operation, params, expected):
    params = {name: aws.key_ids.get(value, value) for name, value in params.items()}
    checks = s3_kms.kms_checks(operation, params, {}, ACCOUNT, REGION)
    assert [(check.action, check.resource) for check in checks] == [(a, aws.keys[k]) for a, k in expected]


@pytest.mark.parametrize("checksum, expected", [(None, []), ("CRC32", ["kms:Decrypt"])],
                         ids=["without-checksums", "with-checksums"])
def test_multipart_steps(aws, checksum, expected):
    s3 = aws.client("s3")
    extra = {"ChecksumAlgorithm": checksum} if checksum else {}
    upload = s3.create_multipart_upload(Bucket="kms-bucket", Key="parts", **extra)["UploadId"]
    part = {"Bucket": "kms-bucket", "Key": "parts", "UploadId": upload, "PartNumber": "1"}
    assert [c.action for c in s3_kms.kms_checks("UploadPart", part, {}, ACCOUNT, REGION)] == ["kms:Decrypt"]
    complete = {"Bucket": "kms-bucket", "Key": "parts", "UploadId": upload}
    assert [c.action for c in s3_kms.kms_checks("CompleteMultipartUpload", complete, {}, ACCOUNT, REGION)] == expected
    assert s3_kms.kms_checks("UploadPart", {**part, "UploadId": "nope"}, {}, ACCOUNT, REGION) == ()


@pytest.mark.parametrize("key_id, expected", [
    ("project-id", "project"), ("project-arn", "project"), ("alias/project", "project"),
    ("arn:aws:kms:us-east-1:123456789012:alias/project", "project"), ("alias/aws/s3", None),
], ids=["key-id", "key-arn", "alias", "alias-arn", "aws-managed"])
def test_key_arn(aws, key_id, expected):
    project = aws.keys["project"]
    key_id = {"project-id": project.rsplit("/", 1)[-1], "project-arn": project}.get(key_id, key_id)
    assert s3_kms.key_arn(key_id, ACCOUNT, REGION) == (aws.keys[expected] if expected else None)
    assert s3_kms.key_arn("alias/nobody", ACCOUNT, REGION) == f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/nobody"


def test_only_s3_requests_gain_checks(aws):
    put = Mapped("s3", "PutObject", (Check("s3:PutObject", "arn:aws:s3:::kms-bucket/k"),))
    params = {"Bucket": "kms-bucket", "Key": "k"}
    assert [c.action for c in s3_kms.with_kms_checks(put, params, {}, ACCOUNT, REGION).checks] == \
        ["s3:PutObject", "kms:GenerateDataKey"]
    other = Mapped("glue", "PutObject", ())
    unmapped = Unmapped("s3", "PutObject", "no reason")
    assert s3_kms.with_kms_checks(other, params, {}, ACCOUNT, REGION) is other
    assert s3_kms.with_kms_checks(unmapped, params, {}, ACCOUNT, REGION) is unmapped
