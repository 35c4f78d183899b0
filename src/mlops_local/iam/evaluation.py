"""The decision on one request within one account, made as AWS's policy evaluation logic makes it.

Source: IAM User Guide, "Policy evaluation logic", its pages "How AWS enforcement code logic
evaluates requests to allow or deny access" and "Policy evaluation for requests within a single
account" (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):
1. an explicit Deny in any applicable policy (identity- or resource-based) is final;
2. within one account, an Allow in either the identity-based policies or the resource-based
   policy allows ("If either the identity-based policy or the resource-based policy within the
   same account allows the request and the other doesn't, the request is still allowed");
   a resource policy allows by itself only when it names the caller: the user, the role session
   ARN or the role ARN (a grant to the role applies to all its sessions; with no session policies
   and no permissions boundaries, which this stand-in never issues, both grant the same).
   Naming the account (arn:aws:iam::<account>:root) delegates to the account's IAM policies;
3. IAM role trust policies and KMS key policies are exceptions: "they must explicitly allow
   access for principals", so without an Allow in them (naming the caller, or the account to
   enable IAM policies) the request is denied (resource_policy_required=True);
4. otherwise the request is implicitly denied. The account root user is allowed unless denied.
5. a session policy (AssumeRole's Policy: CodePipeline's artifact credentials here) limits the
   session to the intersection of the role's policies and itself ("Session policies", IAM User
   Guide, "Policies and permissions in AWS Identity and Access Management"). AWS lets a resource
   policy that names the session ARN itself grant past a session policy; the stand-in applies the
   session policy to every grant, which is stricter, never more lenient.
Organizations SCPs/RCPs and permissions boundaries do not exist here.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Sequence

from mlops_local.iam.policy import Effect, Policy, PrincipalMatch, RequestContext, Statement


class Outcome(Enum):
    ALLOWED_BY_IDENTITY = "allowed by an identity-based policy"
    ALLOWED_BY_RESOURCE = "allowed by a resource-based policy"
    ALLOWED_AS_ROOT = "allowed as the account root user"
    EXPLICIT_DENY_IDENTITY = "explicit deny in an identity-based policy"
    EXPLICIT_DENY_RESOURCE = "explicit deny in a resource-based policy"
    NO_IDENTITY_ALLOW = "no identity-based policy allows"
    NO_RESOURCE_ALLOW = "no resource-based policy allows"
    EXPLICIT_DENY_SESSION = "explicit deny in a session policy"
    NO_SESSION_ALLOW = "no session policy allows"


_ALLOWED = {Outcome.ALLOWED_BY_IDENTITY, Outcome.ALLOWED_BY_RESOURCE, Outcome.ALLOWED_AS_ROOT}


@dataclass(frozen=True)
class Decision:
    """The outcome, the statement that decided it (if one did) and AWS's message for a denial."""
    outcome: Outcome
    sid: str | None = None
    policy: str | None = None  # name of the policy holding the deciding statement
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.outcome in _ALLOWED

    @property
    def denied(self) -> bool:
        return not self.allowed


def denial_message(ctx: RequestContext, outcome: Outcome, policy_arn: str | None = None) -> str:
    """AWS's access-denied text for this request.

    Wording: IAM User Guide, "Troubleshoot access denied error messages" and "... with
    authorization ID" (User: <arn> is not authorized to perform: <action> on resource: <arn>
    because no identity-based policy allows the <action> action / with an explicit deny in an
    identity-based policy[: <managed policy ARN>]). Amazon S3 quotes the resource ARN (Amazon S3
    User Guide, "Troubleshoot access denied (403 Forbidden) errors": ... on resource:
    "<resource-arn>" because ...).
    """
    resource = f'"{ctx.resource}"' if ctx.action.lower().startswith("s3:") else ctx.resource
    head = f"User: {ctx.principal_arn} is not authorized to perform: {ctx.action} on resource: {resource}"
    if outcome is Outcome.EXPLICIT_DENY_IDENTITY:
        return f"{head} with an explicit deny in an identity-based policy" + (f": {policy_arn}" if policy_arn else "")
    if outcome is Outcome.EXPLICIT_DENY_RESOURCE:
        return f"{head} with an explicit deny in a resource-based policy"
    if outcome is Outcome.NO_RESOURCE_ALLOW:
        return f"{head} because no resource-based policy allows the {ctx.action} action"
    if outcome is Outcome.NO_IDENTITY_ALLOW:
        return f"{head} because no identity-based policy allows the {ctx.action} action"
    if outcome is Outcome.EXPLICIT_DENY_SESSION:
        return f"{head} with an explicit deny in a session policy"
    if outcome is Outcome.NO_SESSION_ALLOW:
        return f"{head} because no session policy allows the {ctx.action} action"
    raise ValueError(f"{outcome} is not a denial")


def _deny(ctx: RequestContext, outcome: Outcome, policy: Policy | None = None,
          statement: Statement | None = None) -> Decision:
    return Decision(outcome, statement.sid if statement else None, policy.name if policy else None,
                    denial_message(ctx, outcome, policy.arn if policy else None))


def _first(policies: Sequence[Policy], ctx: RequestContext, effect: Effect) -> tuple[Policy, Statement] | None:
    for policy in policies:
        for statement in policy.statements:
            if statement.effect is effect and statement.applies(ctx):
                return policy, statement
    return None


def _resource_statements(policy: Policy | None, ctx: RequestContext,
                         effect: Effect) -> list[tuple[Statement, PrincipalMatch]]:
    """Statements of the resource policy with this effect that apply and name the caller."""
    if policy is None:
        return []
    found: list[tuple[Statement, PrincipalMatch]] = []
    for statement in policy.statements:
        if statement.effect is effect and statement.applies(ctx):
            match = statement.principal_match(ctx)
            if match is not PrincipalMatch.NONE:
                found.append((statement, match))
    return found


def evaluate(ctx: RequestContext, identity_policies: Sequence[Policy], resource_policy: Policy | None = None,
             *, resource_policy_required: bool = False, session_policy: Policy | None = None) -> Decision:
    """Allow or deny one request; with a session policy, an allow must also be the session policy's."""
    decision = _evaluate(ctx, identity_policies, resource_policy, resource_policy_required=resource_policy_required)
    if session_policy is None or ctx.is_service:
        return decision
    denied = _first((session_policy,), ctx, Effect.DENY)
    if denied:
        return _deny(ctx, Outcome.EXPLICIT_DENY_SESSION, *denied)
    if decision.allowed and not _first((session_policy,), ctx, Effect.ALLOW):
        return _deny(ctx, Outcome.NO_SESSION_ALLOW)
    return decision


def _evaluate(ctx: RequestContext, identity_policies: Sequence[Policy], resource_policy: Policy | None = None,
              *, resource_policy_required: bool = False) -> Decision:
    """Allow or deny one request.

    identity_policies: every policy of the caller (inline and managed) as deployed; a service
    principal has none. resource_policy: the policy of the resource, if it has one (bucket
    policy, key policy, function policy, trust policy, repository policy).
    resource_policy_required: True for KMS key policies and role trust policies.
    """
    own = () if ctx.is_service else identity_policies
    denied = _first(own, ctx, Effect.DENY)
    if denied:
        return _deny(ctx, Outcome.EXPLICIT_DENY_IDENTITY, *denied)
    resource_denies = _resource_statements(resource_policy, ctx, Effect.DENY)
    if resource_denies:
        # A Deny naming the account covers every principal of it.
        return _deny(ctx, Outcome.EXPLICIT_DENY_RESOURCE, resource_policy, resource_denies[0][0])
    grants = _resource_statements(resource_policy, ctx, Effect.ALLOW)
    direct = next((statement for statement, match in grants if match is PrincipalMatch.DIRECT), None)
    if direct is not None:
        return Decision(Outcome.ALLOWED_BY_RESOURCE, direct.sid, resource_policy.name if resource_policy else None)
    if resource_policy_required and not grants:
        return _deny(ctx, Outcome.NO_RESOURCE_ALLOW)
    if ctx.is_service:
        return _deny(ctx, Outcome.NO_RESOURCE_ALLOW)
    if ctx.is_root:
        return Decision(Outcome.ALLOWED_AS_ROOT)
    allowed = _first(own, ctx, Effect.ALLOW)
    if allowed:
        policy, statement = allowed
        return Decision(Outcome.ALLOWED_BY_IDENTITY, statement.sid, policy.name)
    return _deny(ctx, Outcome.NO_IDENTITY_ALLOW)
