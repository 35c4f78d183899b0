"""Deploy/CloudFormation: CREATE_UPDATE, REPLACE_ON_FAILURE and DELETE_ONLY through the stand-in.

The stack is created or updated in moto's CloudFormation and polled until it settles; then the
engine's stack applier creates the resources moto's CloudFormation drops, and the stack's endpoints are
waited for as CloudFormation's AWS::SageMaker::Endpoint handler stabilises them (_settle_endpoints).
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

from botocore.exceptions import ClientError

from mlops_local import moto_access
from mlops_local.codepipeline.actions.context import (ActionContext, ActionFailed, ActionResult, put_zip_artifact,
                                                      read_artifact_file)

logger = logging.getLogger(__name__)


# The states REPLACE_ON_FAILURE replaces (CodePipeline User Guide, "CloudFormation deploy action
# reference", ActionMode): UPDATE_ROLLBACK_COMPLETE is not one of them, such a stack is updated.
FAILED_STATES = ("CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED", "UPDATE_ROLLBACK_FAILED")
# EndpointStatus values an endpoint passes through on its way to InService or Failed (API_DescribeEndpoint)
ENDPOINT_BUSY = ("Creating", "Updating", "SystemUpdating", "RollingBack")


def deploy_cloudformation(ctx: ActionContext) -> ActionResult:
    mode, stack = ctx.require("ActionMode"), ctx.require("StackName")
    cfn = ctx.client("cloudformation")
    current = _stack(cfn, stack)
    if mode == "DELETE_ONLY":
        if current:
            _delete(ctx, cfn, stack)
        return ActionResult(summary=f"Stack {stack} deleted" if current else f"Stack {stack} did not exist")
    if mode not in ("CREATE_UPDATE", "REPLACE_ON_FAILURE"):
        raise ActionFailed(f"ActionMode {mode} is not supported locally (CREATE_UPDATE, REPLACE_ON_FAILURE, "
                           "DELETE_ONLY are)", "ConfigurationError")

    template = read_artifact_file(ctx, ctx.require("TemplatePath"), "TemplatePath").decode("utf-8")
    parameters: dict[str, str] = {}
    tags: dict[str, str] = {}
    if ctx.configuration.get("TemplateConfiguration"):
        raw = read_artifact_file(ctx, ctx.configuration["TemplateConfiguration"], "TemplateConfiguration")
        try:
            config = json.loads(raw)
            parameters.update({k: _param(v) for k, v in (config.get("Parameters") or {}).items()})
            tags.update({k: str(v) for k, v in (config.get("Tags") or {}).items()})
        except (ValueError, AttributeError) as exc:
            raise ActionFailed(f"TemplateConfiguration is not JSON {{\"Parameters\", \"Tags\"}}: {exc}",
                               "ConfigurationError") from None
    if ctx.configuration.get("ParameterOverrides"):
        try:
            overrides = json.loads(ctx.configuration["ParameterOverrides"])
            if not isinstance(overrides, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise ActionFailed(f"ParameterOverrides is not a JSON object: {exc}", "ConfigurationError") from None
        parameters.update({k: _param(v) for k, v in overrides.items()})  # overrides win
    capabilities = [c.strip() for c in ctx.configuration.get("Capabilities", "").split(",") if c.strip()]
    request: dict[str, Any] = {"StackName": stack, "TemplateBody": template,
                               "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
                               "Capabilities": capabilities, **_role(ctx)}
    if tags:
        request["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]

    # Only REPLACE_ON_FAILURE replaces a failed stack; CREATE_UPDATE updates whatever is there, and
    # CloudFormation refuses to update a ROLLBACK_COMPLETE stack (CodePipeline User Guide,
    # "CloudFormation deploy action reference", ActionMode).
    if current and mode == "REPLACE_ON_FAILURE" and current["StackStatus"] in FAILED_STATES:
        _delete(ctx, cfn, stack)
        current = None
    if current and mode == "CREATE_UPDATE" and current["StackStatus"] == "ROLLBACK_COMPLETE":
        raise ActionFailed(f"CloudFormation rejected stack {stack}: ValidationError: Stack:{current['StackId']} is "
                           "in ROLLBACK_COMPLETE state and can not be updated.")
    try:
        if current:
            try:
                cfn.update_stack(**request)
            except ClientError as exc:
                if "No updates are to be performed" not in str(exc):
                    raise
        else:
            cfn.create_stack(**request)
    except ClientError as exc:
        error = exc.response["Error"]
        raise ActionFailed(f"CloudFormation rejected stack {stack}: {error.get('Code')}: {error.get('Message', exc)}") \
            from None
    final = _wait_stack(ctx, cfn, stack)
    status = final["StackStatus"] if final else "DELETE_COMPLETE"
    if final is None or status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise ActionFailed(f"stack {stack} ended {status}: {_failure_reason(cfn, stack)}")
    if ctx.stack_applier is not None:
        try:
            ctx.stack_applier(stack)
        except Exception as exc:
            logger.exception("stack applier failed for %s", stack)
            raise ActionFailed(f"stack {stack}: creating the resources moto's CloudFormation drops failed: "
                               f"{exc}") from None
        final = _stack(cfn, stack) or final
    _settle_endpoints(ctx, final)
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in final.get("Outputs", [])}
    if ctx.configuration.get("OutputFileName") and ctx.outputs:
        put_zip_artifact(ctx, ctx.outputs[0], ctx.configuration["OutputFileName"], json.dumps(outputs, indent=2))
    return ActionResult(summary=f"Stack {stack} {status}", variables=outputs, external_id=final.get("StackId"))


def _settle_endpoints(ctx: ActionContext, stack: dict[str, Any]) -> None:
    """Wait, within the action's time, until each AWS::SageMaker::Endpoint of the stack leaves Creating/Updating,
    as CloudFormation's handler does before the resource is CREATE_/UPDATE_COMPLETE (moto completes the stack at
    once; the stand-in's endpoint then starts or deploys, blue/green with baking and alarms). An endpoint Failed,
    or InService on a config other than the stack's (SageMaker rolled the update back: it shows the previous
    config, InService, hashicorp/terraform-provider-aws#48997), fails the action with SageMaker's FailureReason,
    and the stack's events show the resource failed with it."""
    cfn, sagemaker = ctx.internal("cloudformation"), ctx.internal("sagemaker")
    resources = cfn.describe_stack_resources(StackName=stack["StackId"])["StackResources"]
    declared = [r["PhysicalResourceId"].rsplit("/", 1)[-1] for r in resources
                if r["ResourceType"] == "AWS::SageMaker::EndpointConfig" and r.get("PhysicalResourceId")]
    for resource in resources:
        if resource["ResourceType"] != "AWS::SageMaker::Endpoint" or not resource.get("PhysicalResourceId"):
            continue
        name = resource["PhysicalResourceId"].rsplit("/", 1)[-1]
        described = _settled_endpoint(ctx, sagemaker, name)
        status, serving = described["EndpointStatus"], described.get("EndpointConfigName", "")
        reason = described.get("FailureReason") or "SageMaker gave no FailureReason"
        if status != "InService":
            problem = f"endpoint {name} is {status}: {reason}"
        elif len(declared) == 1 and serving != declared[0]:
            problem = (f"endpoint {name} was rolled back: it serves endpoint config {serving}, not the stack's "
                       f"{declared[0]}: {reason}")
        else:
            continue
        _resource_failed(ctx, stack, resource, problem)
        raise ActionFailed(f"stack {stack['StackName']}: {problem}")


def _settled_endpoint(ctx: ActionContext, sagemaker: Any, name: str) -> dict[str, Any]:
    """DescribeEndpoint once the endpoint is no longer busy."""
    shown = False
    while True:
        seen = ctx.runtime.changes.version
        try:
            described: dict[str, Any] = sagemaker.describe_endpoint(EndpointName=name)
        except ClientError as exc:  # deleted out of band meanwhile
            raise ActionFailed(f"endpoint {name} of the stack: {exc.response['Error'].get('Message', exc)}") \
                from None
        if described["EndpointStatus"] not in ENDPOINT_BUSY:
            return described
        if not shown:
            ctx.progress(summary=f"Endpoint {name} is {described['EndpointStatus']}; waiting as CloudFormation does")
            shown = True
        ctx.check_time()
        ctx.runtime.changes.wait(seen, 0.5)


def _resource_failed(ctx: ActionContext, stack: dict[str, Any], resource: dict[str, Any], reason: str) -> None:
    """The resource's UPDATE_FAILED (CREATE_FAILED) event with the reason, in moto's record of the stack.
    The stack's status is left as moto set it: CloudFormation would go on to roll the stack back
    (UPDATE_ROLLBACK_COMPLETE), which moto cannot do after the fact."""
    from moto.cloudformation.models import Event

    verb = "CREATE" if stack["StackStatus"].startswith("CREATE") else "UPDATE"
    try:
        record = moto_access.backend("cloudformation", ctx.account_id, ctx.region).get_stack(stack["StackId"])
        record.events.append(Event(
            stack_id=record.stack_id, stack_name=record.name, logical_resource_id=resource["LogicalResourceId"],
            physical_resource_id=resource["PhysicalResourceId"], resource_type=resource["ResourceType"],
            resource_status=f"{verb}_FAILED", resource_status_reason=reason, resource_properties=None))
    except Exception:  # the event is a courtesy; the action fails with the reason anyway
        logger.exception("stack %s: recording the failure of %s", stack["StackName"], resource["LogicalResourceId"])


def _delete(ctx: ActionContext, cfn: Any, stack: str) -> None:
    """Delete the stack and wait; a delete that does not complete fails the action with its reason."""
    try:
        cfn.delete_stack(StackName=stack, **_role(ctx))
    except ClientError as exc:
        error = exc.response["Error"]
        raise ActionFailed(f"CloudFormation rejected deleting stack {stack}: {error.get('Code')}: "
                           f"{error.get('Message', exc)}") from None
    final = _wait_stack(ctx, cfn, stack)
    if final is not None:
        raise ActionFailed(f"stack {stack} ended {final['StackStatus']}: {_failure_reason(cfn, stack)}")


def _param(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _role(ctx: ActionContext) -> dict[str, str]:
    return {"RoleARN": ctx.configuration["RoleArn"]} if ctx.configuration.get("RoleArn") else {}


def _stack(cfn: Any, name: str) -> dict[str, Any] | None:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    live = [s for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"]
    return live[0] if live else None


def _wait_stack(ctx: ActionContext, cfn: Any, name: str) -> dict[str, Any] | None:
    while True:
        stack = _stack(cfn, name)
        if stack is None or not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return stack
        ctx.check_time()
        time.sleep(0.2)


def _failure_reason(cfn: Any, stack: str) -> str:
    try:
        events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
    except Exception:
        return "see the stack's events"
    reasons = [f"{e['LogicalResourceId']}: {e['ResourceStatusReason']}" for e in events
               if e.get("ResourceStatus", "").endswith("FAILED") and e.get("ResourceStatusReason")]
    return "; ".join(reasons[:3]) or "see the stack's events"
