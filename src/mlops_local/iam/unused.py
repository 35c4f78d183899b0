"""Granted but not used: each role's Allow grants that no request of the run needed (least privilege).

Follows IAM Access Analyzer's unused access findings (IAM User Guide, "IAM Access Analyzer findings";
Security Hub User Guide, "Understanding unused access findings in Security Hub": UnusedIAMRole, "a role
that has not been assumed", and UnusedPermission, "specific IAM actions that are granted to a role or
user but have not been invoked"; Access Analyzer API Reference, UnusedPermissionDetails: a service
namespace and its unused actions). The tracking period is the run; the grain is finer than Access
Analyzer's: one entry per Action pattern of each Allow statement, with its resources, so a grant on
more resources than the run touched shows too.

What counts as using a grant (one Action pattern of an Allow statement in a role's identity policies):
- a check of one of the role's sessions whose decision is "allowed": a denied check (enforced or
  would-be) used nothing; an allowed check counts even when another check of its request was denied;
- the check was allowed by the identity policies, not by a resource policy that names the caller
  (AWS then allows without the identity grant: iam.evaluation, rule 2), so that grant was not needed;
- the pattern matches the check's action, and the statement applies to the request as policy.py
  matches it: a Resource pattern matches the check's resource and the Condition holds with the
  check's condition keys (and aws:SecureTransport true, as iam.decisions judges);
- every statement that applies counts as used, not only the one the evaluator named first;
- a NotAction or NotResource statement is one grant, used when it applies to any allowed check.
A role none of whose sessions made a request in the run is an unused role, its grants not listed.
Deny statements grant nothing and are not listed. `deployed_roles` reads moto's IAM records; the
rest are pure functions over parsed policies and access.jsonl's records.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from mlops_local.iam.evaluation import Outcome
from mlops_local.iam.policy import ContextValue, Effect, Pattern, Policy, RequestContext, Statement

ALLOWED = "allowed"  # a check's decision (iam.decisions.ALLOWED)
RolePolicies = Mapping[str, tuple[Policy, ...] | str]  # role ARN -> its identity policies, or why unreadable


@dataclass(frozen=True)
class Grant:
    """One Action pattern of an Allow statement; a NotAction or NotResource statement is one grant."""
    policy: str
    statement: Statement
    action: str | None  # None: the whole statement (NotAction / NotResource)
    _pattern: Pattern | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # IAM matches actions ignoring case, with no policy variables (as policy._action_regex does).
        pattern = None if self.action is None else Pattern(self.action, arn=False, ignore_case=True, variables=False)
        object.__setattr__(self, "_pattern", pattern)

    def used_by(self, ctx: RequestContext) -> bool:
        if self._pattern is not None and not self._pattern.matches(ctx.action, ctx):
            return False
        return self.statement.applies(ctx)

    def as_dict(self) -> dict[str, Any]:
        statement = self.statement
        found: dict[str, Any] = {"policy": self.policy, "sid": statement.sid}
        if self.action is not None:
            found.update(service=self.action.split(":", 1)[0], action=self.action)
        elif statement.not_action:
            found["not_action"] = list(statement.actions)
        else:
            found["actions"] = list(statement.actions)
        resources = [pattern.text for pattern in statement.resources or ()]
        found["not_resources" if statement.not_resource else "resources"] = resources
        return found


def grants(policies: Iterable[Policy]) -> list[Grant]:
    """Every grant of the policies' Allow statements, in policy and statement order."""
    found: list[Grant] = []
    for policy in policies:
        for statement in policy.statements:
            if statement.effect is not Effect.ALLOW:
                continue
            if statement.not_action or statement.not_resource:
                found.append(Grant(policy.name, statement, None))
            else:
                found.extend(Grant(policy.name, statement, action) for action in statement.actions)
    return found


def _account(role_arn: str) -> str:
    return role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""


def identity_uses(records: Iterable[Mapping[str, Any]]) -> dict[str, list[RequestContext]]:
    """Per role ARN: the requests its sessions made (may be none) as contexts, one per distinct check
    that an identity policy allowed (see the module docstring)."""
    found: dict[str, dict[str, RequestContext]] = {}
    for record in records:
        principal = record.get("principal") or {}
        role = principal.get("role")
        if principal.get("kind") != "assumed-role" or not role:
            continue
        contexts = found.setdefault(role, {})
        for check in record.get("checks") or []:
            if check.get("decision") != ALLOWED or check.get("reason") == Outcome.ALLOWED_BY_RESOURCE.value:
                continue
            # aws:SecureTransport: true, as iam.decisions judges (its module docstring says why).
            keys: dict[str, ContextValue] = {"aws:SecureTransport": True, **(check.get("conditions") or {})}
            key = json.dumps([principal.get("arn"), check["action"], check["resource"], keys], sort_keys=True)
            if key not in contexts:
                contexts[key] = RequestContext(principal.get("arn", ""), check["action"], check["resource"],
                                               _account(role), role_arn=role, keys=keys)
    return {role: list(contexts.values()) for role, contexts in found.items()}


def unused_access(roles: RolePolicies, records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """summary.json's access.unused: `roles` (ARNs no session of which made a request), `permissions`
    (per role, the grants no allowed check used) and `unevaluated` (roles whose policies cannot be read)."""
    uses = identity_uses(records)
    unused_roles: list[str] = []
    permissions: list[dict[str, Any]] = []
    unevaluated: list[dict[str, str]] = []
    for role in sorted(roles):
        policies = roles[role]
        if role not in uses:
            unused_roles.append(role)
        elif isinstance(policies, str):
            unevaluated.append({"role": role, "reason": policies})
        else:
            idle = [grant.as_dict() for grant in grants(policies)
                    if not any(grant.used_by(ctx) for ctx in uses[role])]
            if idle:
                permissions.append({"role": role, "actions": idle})
    found: dict[str, Any] = {"roles": unused_roles, "permissions": permissions}
    if unevaluated:
        found["unevaluated"] = unevaluated
    return found


def deployed_roles(account: str, region: str) -> dict[str, tuple[Policy, ...] | str]:
    """Every role in moto's IAM with its identity policies, read as the Judge reads them."""
    from mlops_local.iam.actions import partition
    from mlops_local.iam.decisions import Judge
    from mlops_local.moto_access import backend

    judge = Judge(account, region)
    arns = [role.arn for role in list(backend("iam", account, partition(region)).roles.values())]
    return {arn: judge.identity_policies(arn) for arn in arns}
