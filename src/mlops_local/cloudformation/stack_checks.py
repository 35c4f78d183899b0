"""What CloudFormation's handlers are authorized as: who acts for a stack, and which IAM checks a resource's
create, update or delete makes (the handler actions of cloudformation.handler_permissions as iam.actions checks).

Used by cloudformation.stack_permissions, which judges and records them as moto's CloudFormation works.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mlops_local.cloudformation import handler_permissions as hp
from mlops_local.iam import actions as iam_actions

if TYPE_CHECKING:
    from mlops_local.iam.principals import Principal

logger = logging.getLogger(__name__)

SERVICE = "cloudformation.amazonaws.com"


def acting_principal(role_arn: str | None, account: str, region: str, *, enforce: bool = True) -> Principal | None:
    """The stack role's CloudFormation session, or the caller of the request being served.

    A role whose trust policy does not let cloudformation.amazonaws.com assume it (or that does not exist)
    refuses the request: "ValidationError ... Role arn:aws:iam::<acct>:role/<name> is invalid or cannot be
    assumed" (CreateStack; quoted in github.com/awslabs/aws-service-catalog-puppet/issues/568). Not
    enforcing (the gateway's debugging switch), that is logged and the session used all the same.
    """
    from moto.cloudformation.exceptions import ValidationError

    from mlops_local.gateway import current_principal
    from mlops_local.iam import principals

    if not role_arn:
        return current_principal()
    decision = principals.service_may_assume(role_arn, SERVICE, account, region)
    if isinstance(decision, str) or decision.denied:
        reason = decision if isinstance(decision, str) else decision.message
        if enforce:
            raise ValidationError(message=f"Role {role_arn} is invalid or cannot be assumed")
        logger.warning("not enforced: %s cannot assume %s: %s", SERVICE, role_arn, reason)
    partition = role_arn.split(":")[1]
    return principals.Principal("assumed-role", f"arn:{partition}:sts::{account}:assumed-role/"
                                f"{role_arn.rsplit('/', 1)[-1]}/{hp.SESSION_NAME}",
                                role_arn=role_arn, session_name=hp.SESSION_NAME)


def authorization(resource_type: str, operation: hp.Operation, properties: dict[str, Any],
                  previous: dict[str, Any] | None, stack_tags: bool, name: str, physical: str, account: str,
                  region: str) -> iam_actions.Mapped | iam_actions.Unmapped:
    """The handler actions as IAM checks: create+read, update+read (create + delete for a replacement, or
    for a type without an update handler), delete; a type without handlers cannot be checked: Unmapped."""
    label = f"{resource_type} {operation.value}"
    try:
        handlers = hp.schema(resource_type, region).get("handlers") or {}
        if operation is hp.Operation.UPDATE and ("update" not in handlers or _replaces(resource_type, properties,
                                                                                       previous, region)):
            actions = hp.required(resource_type, hp.Operation.CREATE, properties, stack_tags=stack_tags, region=region)
            actions += [a for a in hp.required(resource_type, hp.Operation.DELETE, previous or properties,
                                               region=region) if a not in actions]
        else:
            actions = hp.required(resource_type, operation, properties, previous=previous, stack_tags=stack_tags,
                                  region=region)
    except hp.UnknownResourceType as exc:
        return iam_actions.Unmapped("cloudformation", label, str(exc))
    arn = _arn(resource_type, properties, name or physical, physical, account, region)
    checks = tuple(iam_actions.Check(check.action, check.resource, {k: _condition(v) for k, v in check.keys.items()})
                   for action in actions
                   for check in hp.checks(action, resource_type, properties, arn, account, region))
    region_key = {"aws:RequestedRegion": (region,)}
    return iam_actions.Mapped("cloudformation", label, tuple(replace(c, conditions={**region_key, **c.conditions})
                                                             for c in checks))


def _replaces(resource_type: str, properties: dict[str, Any], previous: dict[str, Any] | None, region: str) -> bool:
    """An update that changes a createOnly property replaces the resource (CloudFormation User Guide,
    "Update behaviors of stack resources": Replacement)."""
    if previous is None:
        return False
    create_only = [p.split("/")[-1] for p in hp.schema(resource_type, region).get("createOnlyProperties", [])]
    return any(properties.get(name) != previous.get(name) for name in create_only)


def _arn(resource_type: str, properties: dict[str, Any], name: str, physical: str, account: str, region: str) -> str:
    """The resource's ARN: its physical id when that is one, else from its name (given, or the generated one)."""
    from moto.cloudformation.parsing import resource_name_property_from_type

    if physical.startswith("arn:") and resource_type not in (hp._TARGET, hp._POLICY):
        return physical
    name_property = resource_name_property_from_type(resource_type)
    if name_property and name and not properties.get(name_property):
        properties = {**properties, name_property: name}
    return hp.arn_guess(resource_type, properties, account, region)


def _condition(value: Any) -> tuple[str, ...]:
    if isinstance(value, bool):
        return ("true" if value else "false",)
    if isinstance(value, (str, int, float)):
        return (str(value),)
    return tuple(str(item) for item in value)


def failure_reason(mapped: iam_actions.Mapped | iam_actions.Unmapped, decision: Any) -> str:
    """CloudFormation's status reason for the first check IAM denied (or why nothing could be checked)."""
    if isinstance(mapped, iam_actions.Mapped):
        for check, decided in zip(mapped.checks, decision.checks):
            if decided.decision != "allowed":
                return hp.handler_failure(check.action, check.resource, decided.message)
    return str(decision.message or decision.decision)
