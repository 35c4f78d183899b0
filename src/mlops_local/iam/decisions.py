"""Each recorded request judged as IAM judges it: on the request path (enforcement) or after a run.

`Judge(account, region).decide(access)` decides one access-log record against the policies as
deployed: the caller's identity policies (a role's or a user's inline and attached managed
policies, a user's groups', from moto's IAM), a session policy the session was issued with, and,
where AWS has one, the resource's policy (an S3 bucket policy; a KMS key policy, which must allow by
itself or delegate to IAM). The mlops-local administrator is allowed everything, as an
AdministratorAccess profile is; unrecognized credentials and unmapped operations are denied.

The gateway judges every request before serving it (iam.enforcement), with the verdict DENIED. With
enforcement off (a debugging switch), a run judges its records when it writes the access log, with
the verdict WOULD_DENY: a dry run. A Judge reads moto's records once per role and bucket, so the
gateway makes one per request (policies change as stacks deploy); each policy text is parsed once
per process (`_parsed`, keyed by the text, so a changed policy is parsed again).

aws:SecureTransport is true in every context: the gateway speaks HTTP on the loopback, but the
clients it stands in for speak TLS to AWS (botocore's endpoints are https), so a template's
DenyInsecureTransport statement must not match here, as it does not on AWS.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Optional

from mlops_local.iam.actions import Check, Mapped, partition
from mlops_local.iam.evaluation import evaluate
from mlops_local.iam.policy import ContextValue, Policy, PolicyError, RequestContext, parse_policy
from mlops_local.moto_access import backend

if TYPE_CHECKING:
    from mlops_local.access_log import Access

ALLOWED, WOULD_DENY, DENIED = "allowed", "would-deny", "denied"
ADMINISTRATOR = "allowed (administrator)"


@dataclass(frozen=True)
class CheckDecision:
    """The decision on one check: allowed (by which policy and statement) or would-deny (AWS's message)."""
    decision: str  # ALLOWED, or the verdict: DENIED (enforced) or WOULD_DENY (dry run)
    reason: str = ""  # evaluation.Outcome's text, e.g. "no identity-based policy allows"
    message: str = ""  # AWS's access-denied message, for a denial
    policy: str | None = None
    sid: str | None = None

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"decision": self.decision, "reason": self.reason}
        if self.message:
            found["message"] = self.message
        if self.policy:
            found.update(policy=self.policy, sid=self.sid)
        return found


@dataclass(frozen=True)
class AccessDecision:
    """The record's decision (allowed only if every check is) and one per check (evaluated principals)."""
    decision: str
    checks: tuple[CheckDecision, ...] = ()
    message: str = ""  # AWS's message for a denial: the first denied check's, or why nothing was evaluated

    @property
    def denied(self) -> bool:
        return not self.decision.startswith(ALLOWED)


@lru_cache(maxsize=4096)
def _parsed(text: str, name: str, arn: Optional[str]) -> Policy | str:
    """A policy text parsed once; a text the evaluator cannot judge comes back as the reason (a str)."""
    try:
        return parse_policy(text, name=name, arn=arn)
    except PolicyError as error:
        return f"the policy {name} cannot be evaluated: {error}"


def _text(document: Any) -> str:
    """moto keeps documents as JSON text (sometimes URL-encoded by its CloudFormation parser) or bytes."""
    from urllib.parse import unquote

    if isinstance(document, bytes):
        document = document.decode("utf-8")
    if isinstance(document, str):
        return document if document.lstrip().startswith("{") else unquote(document)
    return json.dumps(document)


def _policies(holders: list[Any]) -> tuple[Policy, ...] | str:
    """The inline and attached managed policies of moto IAM records (a role, a user, groups), parsed."""
    found: list[Policy | str] = []
    for holder in holders:
        found += [_parsed(_text(text), name, None) for name, text in sorted(holder.policies.items())]
        for arn, managed in sorted(holder.managed_policies.items()):
            version = next((v for v in managed.versions if v.is_default), None)
            found.append(_parsed(_text(version.document), managed.name, arn) if version
                         else f"the managed policy {arn} has no default version")
    problems = [item for item in found if isinstance(item, str)]
    if problems:
        return "; ".join(problems)
    return tuple(item for item in found if isinstance(item, Policy))


def _function_principal(principal: Any) -> Any:
    """moto keeps AddPermission's Principal as given ("arn:...", "123456789012", "events.amazonaws.com");
    Lambda's GetPolicy answers it as a policy does ({"AWS": arn}, {"AWS": "arn:aws:iam::<acct>:root"},
    {"Service": name}), which is what the evaluator reads."""
    if not isinstance(principal, str) or principal == "*":
        return principal
    if principal.endswith(".amazonaws.com"):
        return {"Service": principal}
    if principal.isdigit():
        return {"AWS": f"arn:aws:iam::{principal}:root"}
    return {"AWS": principal}


class Judge:
    """Decisions against moto's IAM, S3 and KMS records as they are now (read lazily, once each).

    verdict: what a denial is called, DENIED when the gateway enforces it, WOULD_DENY in a dry run."""

    def __init__(self, account: str, region: str, verdict: str = WOULD_DENY) -> None:
        self.account, self.region, self.verdict = account, region, verdict
        self._roles: dict[str, Any] | None = None  # role ARN -> moto Role, read once
        self._identity: dict[str, tuple[Policy, ...] | str] = {}
        self._resource: dict[str, tuple[Policy | None, bool] | str] = {}

    def _refused(self, reason: str, message: str = "") -> AccessDecision:
        return AccessDecision(f"{self.verdict} ({reason})", message=message or reason)

    def decide(self, access: Access) -> AccessDecision:
        principal = access.principal
        if principal.administrator:
            return AccessDecision(ADMINISTRATOR)
        if principal.kind == "unknown":
            return self._refused(f"unrecognized credentials: {principal.reason}")
        if principal.kind == "anonymous":
            return self._refused("the request is not signed")
        if not isinstance(access.authorization, Mapped):
            return self._refused(f"unmapped: {access.authorization.reason}", access.authorization.message)
        if principal.kind == "assumed-role" and principal.role_arn:
            policies = self.identity_policies(principal.role_arn)
        else:
            policies = self.user_policies(principal.arn)
        if isinstance(policies, str):
            return self._refused(policies)
        session = _parsed(principal.session_policy, "session policy", None) if principal.session_policy else None
        if isinstance(session, str):
            return self._refused(session)
        checks = tuple(self._check(check, principal.arn, principal.role_arn, policies, session)
                       for check in access.authorization.checks)
        denied = next((check for check in checks if check.decision != ALLOWED), None)
        if denied is None:
            return AccessDecision(ALLOWED, checks)
        return AccessDecision(self.verdict, checks, denied.message)

    def _check(self, check: Check, caller: str, role_arn: str | None, policies: tuple[Policy, ...],
               session: Policy | None) -> CheckDecision:
        # aws:SecureTransport: true, see the module docstring.
        keys: dict[str, ContextValue] = {"aws:SecureTransport": True, **check.conditions}
        ctx = RequestContext(caller, check.action, check.resource, self.account, role_arn=role_arn, keys=keys)
        resource = self.resource_policy(check.resource)
        if isinstance(resource, str):
            return CheckDecision(self.verdict, resource, resource)
        resource_policy, required = resource
        decision = evaluate(ctx, policies, resource_policy, resource_policy_required=required, session_policy=session)
        if decision.allowed:
            return CheckDecision(ALLOWED, decision.outcome.value, policy=decision.policy, sid=decision.sid)
        return CheckDecision(self.verdict, decision.outcome.value, decision.message, decision.policy, decision.sid)

    # -- identity policies ------------------------------------------------------------------
    def identity_policies(self, role_arn: str) -> tuple[Policy, ...] | str:
        """The role's inline and attached managed policies, parsed; or why they cannot be evaluated."""
        if role_arn not in self._identity:
            self._identity[role_arn] = self._read_identity(role_arn)
        return self._identity[role_arn]

    def _read_identity(self, role_arn: str) -> tuple[Policy, ...] | str:
        if self._roles is None:
            records = backend("iam", self.account, partition(self.region))
            self._roles = {role.arn: role for role in list(records.roles.values())}  # list(): a copy at once
        role = self._roles.get(role_arn)
        if role is None:
            return f"the role {role_arn} no longer exists"
        return _policies([role])

    def user_policies(self, user_arn: str) -> tuple[Policy, ...] | str:
        """An IAM user's inline and managed policies and those of its groups."""
        if user_arn not in self._identity:
            records = backend("iam", self.account, partition(self.region))
            user = next((u for u in list(records.users.values()) if u.arn == user_arn), None)
            if user is None:
                self._identity[user_arn] = f"the user {user_arn} no longer exists"
            else:
                groups = [g for g in list(records.groups.values()) if user in g.users]
                self._identity[user_arn] = _policies([user, *groups])
        return self._identity[user_arn]

    # -- resource policies ------------------------------------------------------------------
    def resource_policy(self, resource: str) -> tuple[Policy | None, bool] | str:
        """(the resource's policy or None, whether it must allow by itself); or why it cannot be evaluated."""
        parts = resource.split(":", 5)
        if len(parts) < 6 or parts[2] not in ("s3", "kms", "lambda"):
            return None, False
        key = parts[5].split("/", 1)[0] if parts[2] == "s3" else resource
        if key not in self._resource:
            read = {"s3": lambda: self._bucket_policy(key), "kms": lambda: self._key_policy(parts),
                    "lambda": lambda: self._function_policy(parts)}[parts[2]]
            self._resource[key] = read()
        return self._resource[key]

    def _bucket_policy(self, bucket: str) -> tuple[Policy | None, bool] | str:
        """moto's bucket policy (PutBucketPolicy), else one a stack deployed: the stand-in keeps
        AWS::S3::BucketPolicy on the stack, not on the bucket (cloudformation.stack_models.BucketPolicyModel)."""
        found = backend("s3", self.account, self.region).buckets.get(bucket)
        text = _text(found.policy) if found is not None and found.policy else self._stack_bucket_policy(bucket)
        if not text:
            return None, False
        policy = _parsed(text, f"bucket policy of {bucket}", None)
        return policy if isinstance(policy, str) else (policy, False)

    def _stack_bucket_policy(self, bucket: str) -> str | None:
        from mlops_local.cloudformation.stack_models import BucketPolicyModel

        for stack in list(backend("cloudformation", self.account, self.region).stacks.values()):
            if stack.status.startswith("DELETE"):
                continue
            resources = getattr(stack.resource_map, "_parsed_resources", {})  # only what moto created
            for resource in list(resources.values()):
                if isinstance(resource, BucketPolicyModel) and resource.attributes.get("Bucket") == bucket:
                    return _text(resource.attributes["Policy"])
        return None

    def _function_policy(self, arn: list[str]) -> tuple[Policy | None, bool] | str:
        """A Lambda function's resource policy (AddPermission), for the function or its qualifier. Like
        a bucket policy it may allow by itself; a function without one has none."""
        from moto.core.exceptions import JsonRESTError

        name, _, qualifier = arn[5].removeprefix("function:").partition(":")
        try:
            wire = backend("lambda", self.account, arn[3]).get_policy(name, qualifier or None)
        except (JsonRESTError, KeyError, ValueError):  # no such function, or no statements: no policy
            return None, False
        document = json.loads(json.loads(wire)["Policy"])
        for statement in document.get("Statement", []):
            statement["Principal"] = _function_principal(statement.get("Principal"))
        policy = _parsed(json.dumps(document), f"resource policy of function {name}", None)
        return policy if isinstance(policy, str) else (policy, False)

    def _key_policy(self, arn: list[str]) -> tuple[Policy | None, bool] | str:
        """A KMS key policy must allow by itself (or name the account to delegate to IAM). A key that
        does not exist has none: the request fails on the key, so IAM policies alone are judged."""
        keys = backend("kms", self.account, arn[3]).keys
        key = keys.get(arn[5].split("/", 1)[-1]) if arn[5].startswith("key/") else None
        if key is None:
            return None, False
        policy = _parsed(_text(key.policy), f"key policy of {arn[5]}", None)
        return policy if isinstance(policy, str) else (policy, True)
