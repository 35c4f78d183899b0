"""CloudFormation properties -> the service's API request, checked against botocore's model.

Each resource type that `mlops_local.cloudformation.stack_models` provides is created through its service's API
request: the template's properties renamed and typed as the API wants them, then validated, so a
mapping mistake fails loudly instead of storing a malformed resource.
"""
from __future__ import annotations

import json
from typing import Any

from mlops_local import moto_access


def camel(value: Any, opaque: tuple[str, ...] = (), rename: dict[str, str] | None = None) -> Any:
    """PascalCase keys -> camelCase (CodePipeline, CodeBuild); maps under `opaque` keys keep theirs."""
    rename = rename or {}
    if isinstance(value, list):
        return [camel(item, opaque, rename) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        name = rename.get(key, key[:1].lower() + key[1:])
        out[name] = item if key in opaque else camel(item, opaque, rename)
    return out


def conform(value: Any, shape: Any) -> Any:
    """Scalars as the API's shape types them, as CloudFormation converts them.

    Templates pass "2" for an integer (a Number parameter), false or 3300 for a string
    (configuration values), a JSON object for a JSON-document string (policies).
    """
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {k: conform(v, shape.members[k]) if k in shape.members else v for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [conform(item, shape.member) for item in value]
    if kind == "map" and isinstance(value, dict):
        return {str(k): conform(v, shape.value) for k, v in value.items()}
    if kind == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
        if isinstance(value, (dict, list)):
            return json.dumps(value)
    if kind in ("integer", "long") and isinstance(value, str):
        return int(value)
    if kind in ("float", "double") and isinstance(value, str):
        return float(value)
    if kind == "boolean" and isinstance(value, str):
        return value.lower() == "true"
    return value


def api_request(service: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """`params` conformed to, and validated against, botocore's model of the operation."""
    shape = moto_access.service_model(service).operation_model(operation).input_shape
    return moto_access.validate(service, operation, conform(params, shape))


def without(props: dict[str, Any], *names: str) -> dict[str, Any]:
    """The properties but those named (CloudFormation-only ones, or the name passed apart)."""
    return {k: v for k, v in props.items() if k not in names}


def pipeline_request(name: str, props: dict[str, Any]) -> dict[str, Any]:
    # RestartExecutionOnUpdate and DisableInboundStageTransitions are CloudFormation's, not the API's.
    pipeline = camel(without(props, "Name", "Tags", "RestartExecutionOnUpdate",
                             "DisableInboundStageTransitions"), opaque=("Configuration",))
    return api_request("codepipeline", "CreatePipeline",
                       {"pipeline": {"name": name, **pipeline}, "tags": camel(props.get("Tags", []))})


def project_request(name: str, props: dict[str, Any]) -> dict[str, Any]:
    # Triggers (webhooks) and Visibility have their own APIs; not needed here.
    body = camel(without(props, "Name", "Triggers", "Visibility", "ResourceAccessRole"),
                 rename={"BuildSpec": "buildspec"})
    return api_request("codebuild", "CreateProject", {"name": name, **body})


def job_request(name: str, props: dict[str, Any]) -> dict[str, Any]:
    return api_request("glue", "CreateJob", {**without(props, "Name"), "Name": name})


def security_configuration_request(name: str, props: dict[str, Any]) -> dict[str, Any]:
    encryption = dict(props.get("EncryptionConfiguration", {}))
    if "S3Encryptions" in encryption:  # the API's member is S3Encryption
        encryption["S3Encryption"] = encryption.pop("S3Encryptions")
    return api_request("glue", "CreateSecurityConfiguration",
                       {"Name": name, "EncryptionConfiguration": encryption})


def repository_request(name: str, props: dict[str, Any]) -> dict[str, Any]:
    # Code (initial commit) and Triggers are not used by this project's templates.
    return api_request("codecommit", "CreateRepository",
                       {"repositoryName": name, **camel(without(props, "RepositoryName", "Code", "Triggers"))})


def model_package_group_request(name: str, props: dict[str, Any]) -> dict[str, Any]:
    return api_request("sagemaker", "CreateModelPackageGroup",
                       {**without(props, "ModelPackageGroupName", "ModelPackageGroupPolicy"),
                        "ModelPackageGroupName": name})


def bucket_policy_request(props: dict[str, Any]) -> dict[str, Any]:
    return api_request("s3", "PutBucketPolicy", {"Bucket": props["Bucket"], "Policy": props["PolicyDocument"]})


# Properties the registry schema of AWS::CloudWatch::Alarm has that moto's alarm cannot hold (it would drop them
# and the alarm would evaluate otherwise than on AWS): refused rather than ignored.
ALARM_PROPERTIES_NOT_MODELLED = ("EvaluationCriteria", "EvaluationInterval", "EvaluationWindow",
                                 "WarmUpConfiguration", "ActionConfiguration")


def alarm_request(name: str, props: dict[str, Any]) -> dict[str, Any]:
    # The properties are PutMetricAlarm's parameters by the same names and shapes (Dimensions, Metrics,
    # Tags as {Key, Value} lists; AWS::CloudWatch::Alarm registry schema), only AlarmName is passed apart.
    unmodelled = sorted(set(props) & set(ALARM_PROPERTIES_NOT_MODELLED))
    if unmodelled:
        raise ValueError(f"AWS::CloudWatch::Alarm {name}: {', '.join(unmodelled)} not modelled by the stand-in")
    return api_request("cloudwatch", "PutMetricAlarm", {**without(props, "AlarmName"), "AlarmName": name})


# -- Application Auto Scaling (registry schemas AWS::ApplicationAutoScaling::ScalableTarget / ::ScalingPolicy, as
# cfn-lint ships them). The properties are the API's parameters by the same names and shapes, but for the ones
# below: ScheduledActions are PutScheduledAction calls of their own and Tags a [{Key, Value}] list where the API
# takes a map; neither is used by this project's templates, so both are refused rather than dropped.
TARGET_PROPERTIES_NOT_MODELLED = ("ScheduledActions", "Tags")
SCALING = "application-autoscaling"


def scalable_target_request(props: dict[str, Any]) -> dict[str, Any]:
    """RegisterScalableTarget. MinCapacity and MaxCapacity are optional in the API (an update may leave them)
    but required by the schema ("required": ResourceId, ServiceNamespace, ScalableDimension, MinCapacity,
    MaxCapacity): a template without them fails as CloudFormation's validation fails it."""
    unmodelled = sorted(set(props) & set(TARGET_PROPERTIES_NOT_MODELLED))
    if unmodelled:
        raise ValueError(f"AWS::ApplicationAutoScaling::ScalableTarget: {', '.join(unmodelled)} not modelled by "
                         "the stand-in")
    missing = [name for name in ("MinCapacity", "MaxCapacity") if name not in props]
    if missing:
        raise ValueError(f"Properties validation failed for resource of type AWS::ApplicationAutoScaling::"
                         f"ScalableTarget: #: required key [{missing[0]}] not found")
    return api_request(SCALING, "RegisterScalableTarget", dict(props))


def target_key(request: dict[str, Any]) -> tuple[str, str, str]:
    """(ResourceId, ScalableDimension, ServiceNamespace): the target's primaryIdentifier in the registry schema."""
    return request["ResourceId"], request["ScalableDimension"], request["ServiceNamespace"]


def scalable_target_id(request: dict[str, Any]) -> str:
    """What Ref (and GetAtt Id) of a ScalableTarget returns: the CloudFormation-generated id, the primary
    identifier joined by "|" (CloudFormation Template Reference, AWS::ApplicationAutoScaling::ScalableTarget,
    Return values: "service/ecsStack-MyECSCluster-AB12CDE3F4GH/ecsStack-MyECSService-AB12CDE3F4GH|
    ecs:service:DesiredCount|ecs"). ScalingPolicy's ScalingTargetId takes this value."""
    return "|".join(target_key(request))


def scaling_policy_request(props: dict[str, Any]) -> dict[str, Any]:
    """PutScalingPolicy. The target is named by ScalingTargetId, or by ResourceId + ScalableDimension +
    ServiceNamespace, "but not both" (AWS::ApplicationAutoScaling::ScalingPolicy, ScalingTargetId; the schema's
    dependentRequired: ResourceId needs the other two)."""
    body = without(props, "ScalingTargetId")
    named = [name for name in ("ResourceId", "ScalableDimension", "ServiceNamespace") if name in props]
    if "ScalingTargetId" in props:
        if named:
            raise ValueError("AWS::ApplicationAutoScaling::ScalingPolicy: specify either ScalingTargetId or "
                             f"ResourceId, ScalableDimension and ServiceNamespace, not both ({', '.join(named)} given)")
        parts = str(props["ScalingTargetId"]).split("|")
        if len(parts) != 3:
            raise ValueError(f"AWS::ApplicationAutoScaling::ScalingPolicy: ScalingTargetId {props['ScalingTargetId']!r}"
                             " is not a scalable target's id (<ResourceId>|<ScalableDimension>|<ServiceNamespace>)")
        body.update(zip(("ResourceId", "ScalableDimension", "ServiceNamespace"), parts))
    elif len(named) != 3:
        raise ValueError("AWS::ApplicationAutoScaling::ScalingPolicy: specify either ScalingTargetId or all of "
                         "ResourceId, ScalableDimension and ServiceNamespace")
    return api_request(SCALING, "PutScalingPolicy", body)
