"""Who makes a request: the principal behind its access key, read from moto's IAM and STS records.

Every request to the stand-in is signed (SigV4); its access key id (and X-Amz-Security-Token for
temporary credentials) names the caller, as AWS resolves it before any policy is evaluated:
- the fake `testing` key that `mlops-local`, deploy.sh and the tests use is the person running the
  stand-in: an administrator IAM user, `arn:aws:iam::<account>:user/mlops-local`, as an AWS profile's
  user would be (it is not the account root: root ignores identity policies);
- a key moto's STS issued (AssumeRole) is that role session,
  `arn:aws:sts::<account>:assumed-role/<RoleName>/<RoleSessionName>`, if its token matches and it has
  not expired;
- a key of an IAM user (iam:CreateAccessKey) is that user;
- anything else is unknown. AWS rejects such a request before authorization (`UNRECOGNIZED`).
Functions here read moto's records and change nothing.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from mlops_local.iam.actions import partition
from mlops_local.iam.evaluation import Decision, evaluate
from mlops_local.iam.policy import PolicyError, RequestContext, parse_policy
from mlops_local.moto_access import backend

ADMIN_ACCESS_KEY = "testing"  # gateway.FAKE_CREDENTIALS and LocalAws.environment()
ADMIN_USER = "mlops-local"
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")

# What AWS answers a request whose credentials it does not recognise (not enforced yet), by protocol.
# JSON and REST-JSON services: "UnrecognizedClientException ... The security token included in the
# request is invalid" (403), query services (IAM, STS, CloudFormation): InvalidClientTokenId (403);
# both list ExpiredTokenException/ExpiredToken for an expired session (Common Errors of the IAM and
# Lambda API References). Amazon S3: InvalidAccessKeyId "The AWS access key ID that you provided does
# not exist in our records.", InvalidToken, ExpiredToken, all 403 (Amazon S3 API Reference, Error codes).
UNRECOGNIZED = {"json": "UnrecognizedClientException", "query": "InvalidClientTokenId", "s3": "InvalidAccessKeyId"}


@dataclass(frozen=True)
class Principal:
    """The caller of one request.

    kind: "user" (an IAM user, the mlops-local administrator among them), "assumed-role" (a role
    session), "unknown" (credentials the stand-in never issued, a wrong token or an expired session:
    `reason` says which) or "anonymous" (an unsigned request).
    arn: the caller as AWS reports it (GetCallerIdentity, denial messages); "" when unknown.
    """
    kind: str
    arn: str
    access_key_id: str = ""
    role_arn: str | None = None  # the role behind a session
    session_name: str | None = None
    reason: str = ""
    session_policy: str | None = None  # AssumeRole's Policy, which limits the session (JSON text)

    @property
    def known(self) -> bool:
        return self.kind in ("user", "assumed-role")

    @property
    def administrator(self) -> bool:
        """The person running the stand-in: allowed everything, as an AdministratorAccess profile."""
        return self.kind == "user" and self.access_key_id == ADMIN_ACCESS_KEY

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"kind": self.kind, "arn": self.arn}
        if self.role_arn:
            found.update(role=self.role_arn, session=self.session_name)
        if self.reason:
            found.update(access_key_id=self.access_key_id, reason=self.reason)
        return found


def admin(account: str, region: str = "us-east-1") -> Principal:
    return Principal("user", f"arn:{partition(region)}:iam::{account}:user/{ADMIN_USER}", ADMIN_ACCESS_KEY)


def signed_credentials(authorization: str, security_token: str | None,
                       query: Mapping[str, str]) -> tuple[str, str | None] | None:
    """(access key id, security token) of a signed request: its Authorization and X-Amz-Security-Token
    headers, or the query parameters of a presigned URL (SigV4's X-Amz-Credential, S3's SigV2
    AWSAccessKeyId, which boto3 still makes for S3 by default); None when the request is not signed."""
    match = _CREDENTIAL.search(authorization)
    if match:
        return match.group(1), security_token
    if authorization.startswith("AWS ") and ":" in authorization:  # S3's signature version 2: AWS key:signature
        return authorization[4:].split(":", 1)[0], security_token
    credential = query.get("X-Amz-Credential")
    if credential:
        return credential.split("/", 1)[0], query.get("X-Amz-Security-Token")
    if query.get("AWSAccessKeyId") and query.get("Signature"):  # S3's signature version 2 presigned URL
        return query["AWSAccessKeyId"], query.get("x-amz-security-token")
    return None


def resolve(access_key_id: str, token: str | None, account: str, region: str) -> Principal:
    """The principal behind an access key, from moto's records (the stand-in's one account)."""
    if access_key_id == ADMIN_ACCESS_KEY:
        return admin(account, region)
    records = backend("iam", account, partition(region))  # IAM and STS records live per partition
    key = records.access_keys.get(access_key_id)
    if key is None:
        return _unknown(access_key_id, "the access key id was never issued by the stand-in")
    if key.role_arn:
        return _session(access_key_id, token, account, region)
    if key.status != "Active":
        return _unknown(access_key_id, "the access key is inactive")
    user = records.users.get(key.user_name)
    if user is None:
        return _unknown(access_key_id, "the access key's user no longer exists")
    return Principal("user", user.arn, access_key_id)


def _session(access_key_id: str, token: str | None, account: str, region: str) -> Principal:
    for session in list(backend("sts", account, partition(region)).assumed_roles):
        if session.access_key_id != access_key_id:
            continue
        if token != session.session_token:
            return _unknown(access_key_id, "the security token does not match the session's")
        if session.expiration <= dt.datetime.now(dt.timezone.utc).replace(tzinfo=None):  # moto: naive UTC
            return _unknown(access_key_id, "the session has expired")
        return Principal("assumed-role", session.arn, access_key_id, role_arn=session.role_arn,
                         session_name=session.session_name, session_policy=session.policy or None)
    return _unknown(access_key_id, "the access key id was never issued by the stand-in")


def _unknown(access_key_id: str, reason: str) -> Principal:
    return Principal("unknown", "", access_key_id, reason=reason)


# The confused-deputy keys each service puts in its AssumeRole request context, as its documentation says
# (IAM User Guide, "The confused deputy problem": aws:SourceAccount is the account of the resource the
# service acts for, aws:SourceArn that resource). A service not listed here documents neither, so it is
# given none: a trust policy that requires them refuses the service here as on AWS.
# - CodeBuild: both; aws:SourceArn is the project's ARN (CodeBuild User Guide, "Allow CodeBuild to interact
#   with other AWS services", the service role's trust policy; Amazon ECR User Guide, "Repository policy
#   examples": codebuild.amazonaws.com with aws:SourceAccount and aws:SourceArn ...:project/<name>; only
#   CodeBuild's own AssumeRole of the service role carries aws:SourceArn, awslabs/aws-deployment-framework#247).
# - SageMaker: aws:SourceArn, the training or processing job's ARN, and for inference the literal
#   arn:<partition>:sagemaker:<region>:<account>:* ("The asterisk in the ARN template does not stand for
#   wildcard"); its examples set no aws:SourceAccount (SageMaker Developer Guide, "Cross-service confused
#   deputy prevention": Training Jobs, Processing Jobs, Inference).
SOURCE_KEYS: dict[str, tuple[str, ...]] = {
    "codebuild.amazonaws.com": ("aws:SourceAccount", "aws:SourceArn"),
    "sagemaker.amazonaws.com": ("aws:SourceArn",),
}


def source_keys(service: str, account: str, source_arn: str | None) -> dict[str, str]:
    """The confused-deputy keys `service` sends when it assumes a role for `source_arn` (SOURCE_KEYS).
    ValueError when the service sends aws:SourceArn and the caller named no resource."""
    keys: dict[str, str] = {}
    for key in SOURCE_KEYS.get(service, ()):
        if key == "aws:SourceAccount":
            keys[key] = account
        elif not source_arn:
            raise ValueError(f"{service} sends aws:SourceArn: name the resource it assumes the role for")
        else:
            keys[key] = source_arn
    return keys


def service_may_assume(role_arn: str, service: str, account: str, region: str,
                       source_arn: str | None = None) -> Decision | str:
    """Whether a service principal (lambda.amazonaws.com, ...) may assume the role: the evaluator's
    decision on its trust policy, or why there is none to evaluate (the role does not exist, its trust
    policy does not parse). moto's AssumeRole checks neither (moto.sts.models.STSBackend.assume_role:
    "the role does not need to exist"), so the stand-in does; a trust policy must name the caller
    (resource_policy_required, IAM User Guide: "Policy evaluation for requests within a single account").
    `source_arn` is the resource the service acts for; the request carries the keys the service sends
    (source_keys), so a trust policy's aws:SourceAccount / aws:SourceArn condition is judged as on AWS.
    """
    records = backend("iam", account, partition(region))
    role = next((r for r in list(records.roles.values()) if r.arn == role_arn), None)  # list(): a copy, taken at once
    if role is None:
        return f"the role {role_arn} does not exist"
    try:
        trust = parse_policy(json.loads(role.assume_role_policy_document), name=f"{role.name} trust policy")
    except (PolicyError, TypeError, ValueError) as exc:
        return f"the trust policy of {role_arn} cannot be evaluated: {exc}"
    ctx = RequestContext(principal_arn=service, action="sts:AssumeRole", resource=role_arn, account=account,
                         keys=source_keys(service, account, source_arn))
    return evaluate(ctx, (), trust, resource_policy_required=True)
