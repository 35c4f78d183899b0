"""Approval/Manual: the action waits until PutApprovalResult answers it or its timeout passes.

CodePipeline User Guide, "Approve or reject an approval action in CodePipeline": the execution stops at
the action and does not resume unless someone approves it; a rejection, or no answer within seven days,
makes the action (and so the execution) Failed. The token of the open request is in GetPipelineState's
actionStates[].latestExecution.token (for a PARALLEL pipeline, ListActionExecutions' externalExecutionId:
API Reference, PutApprovalResult). The configuration is CustomData, ExternalEntityLink and NotificationArn
(User Guide, "Add a manual approval action"); approval actions take no artifacts (0 in, 0 out).

With NotificationArn, CodePipeline publishes a JSON message to that topic when the execution stops at the
action (User Guide, "JSON data format for manual approval notifications": region, consoleLink, approval
{pipelineName, stageName, actionName, token, expires, externalEntityLink, approvalReviewLink, customData}),
as the pipeline's service role, which needs sns:Publish on the topic (User Guide, "Grant Amazon SNS
permissions to a CodePipeline service role"). On a topic encrypted with a KMS key the publisher also needs
kms:GenerateDataKey* and kms:Decrypt on the key (Amazon SNS Developer Guide, "Key management",
"Configuring AWS KMS permissions").
"""
from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.exceptions import ClientError

from mlops_local.codepipeline.actions.context import (ActionAbandoned, ActionContext, ActionFailed, ActionResult,
                                                      Approval)
from mlops_local.iam.actions import Check, kms_via_service
from mlops_local.iam.enforcement import AccessDenied

CONFIGURATION = {"CustomData", "ExternalEntityLink", "NotificationArn"}
TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}")
WAIT = 0.2  # how often the wait looks at its deadline and at StopPipelineExecution's abandon


def timeout_message(seconds: float) -> str:
    # AWS's wording for an expired approval is not in its documentation; this says what happened.
    return f"Approval expired: no PutApprovalResult answer within {_duration(seconds)} (the approval action's timeout)"


def manual_approval(ctx: ActionContext) -> ActionResult:
    unknown = sorted(set(ctx.configuration) - CONFIGURATION)
    if unknown:
        raise ActionFailed(f"configuration {unknown} is not valid for Approval/Manual (valid: {sorted(CONFIGURATION)})",
                           "ConfigurationError")
    if ctx.inputs or ctx.outputs:
        raise ActionFailed("an Approval/Manual action takes no input or output artifacts", "ConfigurationError")
    topic = ctx.configuration.get("NotificationArn")
    if topic and not TOPIC_ARN.fullmatch(topic):
        raise ActionFailed(f"NotificationArn {topic!r} is not an SNS topic ARN", "ConfigurationError")
    if ctx.open_approval is None:
        raise ActionFailed("internal error: the engine opened no approval request", "JobFailed")
    started = time.monotonic()
    approval = ctx.open_approval()
    if topic:
        try:
            notify(ctx, topic, notification(ctx, approval, datetime.now(timezone.utc) + timedelta(
                seconds=ctx.deadline - started)))
        except ActionFailed:
            approval.expire()  # the token dies with the action, as an expired request's does
            raise
    # CustomData and ExternalEntityLink are for the reviewer: the notification carries them, and
    # ListActionExecutions shows them in the action's configuration.
    while not approval.answered.wait(WAIT):
        if ctx.abandoned() and approval.expire():
            raise ActionAbandoned()
        if time.monotonic() > ctx.deadline and approval.expire():
            raise ActionFailed(timeout_message(ctx.deadline - started), "JobFailed")
    summary = approval.summary or ""
    if approval.state == "Rejected":
        raise ActionFailed(f"Rejected by {approval.by}" + (f": {summary}" if summary else ""), "JobFailed")
    return ActionResult(summary=summary)


def notification(ctx: ActionContext, approval: Approval, expires: datetime) -> dict[str, Any]:
    """The message CodePipeline publishes (User Guide, "JSON data format for manual approval notifications";
    `expires` at minute precision, as its example "2016-07-07T20:22Z"). A link or CustomData the action
    does not configure is left out: the guide's example shows both and says nothing of their absence."""
    console = f"https://console.aws.amazon.com/codepipeline/home?region={ctx.region}#/view/{ctx.pipeline}"
    details: dict[str, str] = {
        "pipelineName": ctx.pipeline, "stageName": ctx.stage, "actionName": ctx.action, "token": approval.token,
        "expires": expires.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")}
    if ctx.configuration.get("ExternalEntityLink"):
        details["externalEntityLink"] = ctx.configuration["ExternalEntityLink"]
    details["approvalReviewLink"] = f"{console}/{ctx.stage}/{ctx.action}/approve/{approval.token}"
    if ctx.configuration.get("CustomData"):
        details["customData"] = ctx.configuration["CustomData"]
    return {"region": ctx.region, "consoleLink": console, "approval": details}


def notify(ctx: ActionContext, topic: str, message: dict[str, Any]) -> None:
    """Publish as the pipeline's role. AWS does not document how the action reports a failed publish;
    here it fails with the service's error (code: message), as other actions fail with a denial."""
    _check_topic_key(ctx, topic)
    # The Subject is ours (SNS: under 100 ASCII characters); the message body is CodePipeline's JSON.
    subject = f"APPROVAL NEEDED: {ctx.pipeline} {ctx.stage}/{ctx.action}"[:99]
    try:
        ctx.client("sns").publish(TopicArn=topic, Subject=subject, Message=json.dumps(message, indent=2))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ActionFailed(f"cannot publish the approval notification to {topic}: "
                           f"{error.get('Code')}: {error.get('Message')}", "JobFailed") from None


def _check_topic_key(ctx: ActionContext, topic: str) -> None:
    """SNS encrypts a message to an encrypted topic with the publisher's permissions: kms:GenerateDataKey and
    kms:Decrypt on the topic's key, through SNS (kms:ViaService) and with the topic ARN as encryption context
    (SNS Developer Guide, "Key management"); a denial answers Publish with KMSAccessDenied (botocore's sns
    model, KMSAccessDeniedException). Judged here, before the request, because the stand-in's SNS (moto)
    encrypts nothing; with both denied AWS would name sns:Publish first, this names the key."""
    try:
        key = ctx.internal("sns").get_topic_attributes(TopicArn=topic)["Attributes"].get("KmsMasterKeyId")
    except ClientError:
        return  # no such topic: the publish itself answers NotFound as AWS does
    if not key:
        return
    try:
        key_arn = ctx.internal("kms").describe_key(KeyId=key)["KeyMetadata"]["Arn"]
    except ClientError as exc:
        raise ActionFailed(f"cannot publish the approval notification to {topic}: KMSNotFound: "
                           f"{exc.response.get('Error', {}).get('Message')}", "JobFailed") from None
    for action in ("GenerateDataKey", "Decrypt"):
        via = kms_via_service(f"kms:{action}", key_arn, "sns", ctx.region, ctx.account_id)
        check = Check(via.action, via.resource, {**via.conditions, "kms:EncryptionContext:aws:sns:topicArn": (topic,)})
        try:
            ctx.runtime.authorize_checks(ctx.session, "kms", action, [check])
        except AccessDenied as exc:
            raise ActionFailed(f"cannot publish the approval notification to {topic}: KMSAccessDenied: "
                               f"{exc.message}", "JobFailed") from None


def _duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 < 1:
        return f"{round(seconds / 86400)} days"
    if seconds >= 60:
        return f"{round(seconds / 60)} minutes"
    return f"{seconds:.0f} seconds"
