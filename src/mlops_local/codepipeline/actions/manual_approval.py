"""Approval/Manual: the action waits until PutApprovalResult answers it or its timeout passes.

CodePipeline User Guide, "Approve or reject an approval action in CodePipeline": the execution stops at
the action and does not resume unless someone approves it; a rejection, or no answer within seven days,
makes the action (and so the execution) Failed. The token of the open request is in GetPipelineState's
actionStates[].latestExecution.token (for a PARALLEL pipeline, ListActionExecutions' externalExecutionId:
API Reference, PutApprovalResult). The configuration is CustomData, ExternalEntityLink and NotificationArn
(User Guide, "Add a manual approval action"); approval actions take no artifacts (0 in, 0 out).
"""
from __future__ import annotations

import re
import time

from mlops_local.codepipeline.actions.context import ActionAbandoned, ActionContext, ActionFailed, ActionResult

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
    # The notification CodePipeline would publish to NotificationArn (as the pipeline's role, sns:Publish)
    # is not sent: the stand-in maps no SNS operation to IAM, so it could not be judged as AWS would.
    # CustomData and ExternalEntityLink are for the reviewer: ListActionExecutions shows them in the
    # action's configuration (a notification and the console's review dialog show them on AWS).
    while not approval.answered.wait(WAIT):
        if ctx.abandoned() and approval.expire():
            raise ActionAbandoned()
        if time.monotonic() > ctx.deadline and approval.expire():
            raise ActionFailed(timeout_message(ctx.deadline - started), "JobFailed")
    summary = approval.summary or ""
    if approval.state == "Rejected":
        raise ActionFailed(f"Rejected by {approval.by}" + (f": {summary}" if summary else ""), "JobFailed")
    return ActionResult(summary=summary)


def _duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 < 1:
        return f"{round(seconds / 86400)} days"
    if seconds >= 60:
        return f"{round(seconds / 60)} minutes"
    return f"{seconds:.0f} seconds"
