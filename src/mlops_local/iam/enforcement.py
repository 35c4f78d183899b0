"""Enforcement on the request path: each request judged before it is served, a denial answered as AWS.

The gateway calls `decide(access)` for every request it records and, for a denial, answers
`error(access, decision)`: the service's own code and status (iam.denials) with AWS's message
("User: <arn> is not authorized to perform: <action> on resource: <arn> because ..."). Credentials
the stand-in never issued get what AWS answers them (principals.UNRECOGNIZED), an unsigned request
what an anonymous one gets. Policies are read afresh for each request (a stack may have changed them
a moment ago); parsed policy texts are cached by text (iam.decisions._parsed).

Services inside the stand-in act as a principal too (a Glue run as its job's role, CodePipeline as
its service role, ...). What they do through a request to the gateway is enforced there; what they
do without one (CodePipeline invoking a function, SageMaker pulling an image) goes through
`authorize`, which records and judges it the same way.
"""
from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, Mapping

from mlops_local.access_log import Access, AccessLog
from mlops_local.iam.actions import authorization
from mlops_local.iam.decisions import DENIED, AccessDecision, Judge
from mlops_local.iam.denials import access_denied_error
from mlops_local.iam.principals import UNRECOGNIZED

if TYPE_CHECKING:
    from mlops_local.iam.principals import Principal

# AWS's texts for credentials it does not recognise (Common Errors of the IAM, Lambda and S3 API
# References) and for an unsigned request (API Gateway-fronted JSON services answer
# MissingAuthenticationTokenException; S3 evaluates it as the anonymous principal: AccessDenied).
_UNRECOGNIZED_TEXT = {"json": "The security token included in the request is invalid.",
                      "query": "The security token included in the request is invalid.",
                      "s3": "The AWS access key ID that you provided does not exist in our records."}


class AccessDenied(Exception):
    """A denial raised by a service acting inside the stand-in: code, status and AWS's message."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def decide(access: Access, account: str, region: str) -> AccessDecision:
    return Judge(account, region, verdict=DENIED).decide(access)


def error(access: Access, decision: AccessDecision) -> AccessDenied:
    """The answer to a denied request, in the terms of the service it was sent to."""
    service, principal = access.service, access.principal
    if principal.kind == "unknown":
        kind = "s3" if service == "s3" else _protocol(service)
        return AccessDenied(UNRECOGNIZED[kind], f"{_UNRECOGNIZED_TEXT[kind]} ({principal.reason})", 403)
    if principal.kind == "anonymous":
        if service == "s3":
            return AccessDenied("AccessDenied", "Access Denied", 403)
        return AccessDenied("MissingAuthenticationTokenException", "Missing Authentication Token", 403)
    code, status = access_denied_error(service) if service else ("AccessDenied", 403)
    return AccessDenied(code, decision.message or decision.decision, status)


def _protocol(service: str) -> str:
    try:
        code, _ = access_denied_error(service)
    except ValueError:
        return "json"
    return "query" if code == "AccessDenied" else "json"


def authorize(log: AccessLog, principal: Principal, service: str, operation: str, params: Mapping[str, Any],
              account: str, region: str, *, enforce: bool = True) -> AccessDecision:
    """Judge and record a call a service makes without a request to the gateway; raise AccessDenied
    when enforcing and it is denied. `operation`/`params` are as the API call would be (mapped by
    iam.actions), e.g. ("lambda", "Invoke", {"FunctionName": ...})."""
    mapped = authorization(service, operation, params, account, region)
    return record(log, Access(time.time(), principal, service, operation, mapped), account, region, enforce=enforce)


def record(log: AccessLog, access: Access, account: str, region: str, *, enforce: bool = True) -> AccessDecision:
    """Judge an access built by the caller (checks of its own, e.g. an image pull), record it, raise on denial."""
    decision = decide(access, account, region) if enforce else None
    log.add(dataclasses.replace(access, decided=decision))
    if decision is not None and decision.denied:
        raise error(access, decision)
    return decision or AccessDecision("not-enforced")
