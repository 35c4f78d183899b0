"""moto CloudFormation models for the resource types moto drops, one small class per type.

moto finds CloudFormation models as the direct subclasses of its `CloudFormationModel`;
`install_models()` adds these (and fixes the `!Condition` short form), so moto's own CloudFormation
creates, updates and deletes them with its conditions, physical names, Ref/GetAtt and change sets.
Each model builds its API request (`mlops_local.cloudformation.stack_requests`) and creates the resource in moto's
backend of that service.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from mlops_local import moto_access
from mlops_local.moto_access import backend
from mlops_local.cloudformation.stack_requests import (
    alarm_request, bucket_policy_request, job_request, model_package_group_request, pipeline_request, project_request,
    repository_request, scalable_target_id, scalable_target_request, scaling_policy_request,
    security_configuration_request, target_key)
from mlops_local.gateway import AwsError

logger = logging.getLogger(__name__)


class Provided:
    """What the models share; each subclass says how to create, update and delete its type.

    `create` returns the resource's attributes (GetAtt names, plus what Ref returns under `REF`).
    """
    TYPE = ""
    NAME_PROPERTY = ""
    REF = "Name"
    ATTRIBUTES: tuple[str, ...] = ()
    logical_resource_id: str  # set by moto's parser (or by Stacks.apply), declared for type checks
    cf_resource_type: str

    def __init__(self, name: str, attributes: dict[str, Any], account_id: str, region_name: str) -> None:
        self.name, self.attributes = name, attributes
        self.account_id, self.region_name = account_id, region_name

    # CloudFormationModel's interface
    @classmethod
    def cloudformation_type(cls) -> str:
        return cls.TYPE

    @classmethod
    def cloudformation_name_type(cls) -> str:
        return cls.NAME_PROPERTY

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in cls.ATTRIBUTES

    @property
    def physical_resource_id(self) -> str:
        return self.attributes[self.REF]

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

        if attribute_name not in self.ATTRIBUTES:
            raise UnformattedGetAttTemplateException()
        return self.attributes[attribute_name]

    def is_created(self) -> bool:
        return True

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str, **kwargs: Any) -> "Provided":
        props = cloudformation_json.get("Properties", {})
        attributes = cls.create(resource_name, props, account_id, region_name)
        logger.info("stack %s: created %s %s", kwargs.get("StackId", "?"), cls.TYPE, resource_name)
        return cls(resource_name, attributes, account_id, region_name)

    @classmethod
    def update_from_cloudformation_json(cls, original_resource: "Provided", new_resource_name: str,
                                        cloudformation_json: dict[str, Any], account_id: str,
                                        region_name: str) -> "Provided":
        props = cloudformation_json.get("Properties", {})
        if new_resource_name != original_resource.name:  # a new name replaces the resource
            attributes = cls.create(new_resource_name, props, account_id, region_name)
            cls.remove(original_resource.name, original_resource.attributes, account_id, region_name)
        else:
            attributes = cls.update(original_resource, props, account_id, region_name)
        return cls(new_resource_name, attributes, account_id, region_name)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str) -> None:
        cls.remove(resource_name, {}, account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        type(self).remove(self.name, self.attributes, account_id, region_name)

    # what each type implements
    @classmethod
    def create(cls, name: str, props: dict[str, Any], account_id: str, region_name: str) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def update(cls, original: "Provided", props: dict[str, Any], account_id: str,
               region_name: str) -> dict[str, Any]:
        """Default: delete and create again (the type has no update API in moto)."""
        cls.remove(original.name, original.attributes, account_id, region_name)
        return cls.create(original.name, props, account_id, region_name)

    @classmethod
    def remove(cls, name: str, attributes: dict[str, Any], account_id: str, region_name: str) -> None:
        raise NotImplementedError

    @classmethod
    def exists(cls, name: str, account_id: str, region_name: str) -> bool:
        raise NotImplementedError

    @classmethod
    def found(cls, deployed: "Provided") -> bool:
        """Whether a deployed resource is still there (Stacks.apply creates it again when not); by name,
        unless the type's identity is in its attributes."""
        return cls.exists(deployed.name, deployed.account_id, deployed.region_name)


def arn(service: str, account_id: str, region_name: str, resource: str) -> str:
    from moto.utilities.utils import get_partition

    return f"arn:{get_partition(region_name)}:{service}:{region_name}:{account_id}:{resource}"


# Called with a pipeline's name once a stack has created it: CodePipeline starts an execution of a new
# pipeline (trigger CreatePipeline), which the local engine does when it is registered (it sets this).
# One slot, as moto's records are per process; the engine checks its stand-in still serves.
pipeline_created: Callable[[str], None] | None = None


class PipelineModel(Provided):
    TYPE, NAME_PROPERTY, ATTRIBUTES = "AWS::CodePipeline::Pipeline", "Name", ("Name", "Version")

    @classmethod
    def create(cls, name: str, props: dict[str, Any], account_id: str, region_name: str) -> dict[str, Any]:
        request = pipeline_request(name, props)
        pipeline, _ = backend("codepipeline", account_id, region_name).create_pipeline(
            request["pipeline"], request.get("tags", []))
        if pipeline_created is not None:
            pipeline_created(name)
        return {"Name": name, "Version": str(pipeline["version"])}

    @classmethod
    def update(cls, original: Provided, props: dict[str, Any], account_id: str,
               region_name: str) -> dict[str, Any]:
        request = pipeline_request(original.name, props)
        pipeline = backend("codepipeline", account_id, region_name).update_pipeline(request["pipeline"])
        return {"Name": original.name, "Version": str(pipeline["version"])}

    @classmethod
    def remove(cls, name: str, attributes: dict[str, Any], account_id: str, region_name: str) -> None:
        backend("codepipeline", account_id, region_name).delete_pipeline(name)

    @classmethod
    def exists(cls, name: str, account_id: str, region_name: str) -> bool:
        return name in backend("codepipeline", account_id, region_name).pipelines


class ProjectModel(Provided):
    TYPE, NAME_PROPERTY, ATTRIBUTES = "AWS::CodeBuild::Project", "Name", ("Name", "Arn")

    @classmethod
    def create(cls, name: str, props: dict[str, Any], account_id: str, region_name: str) -> dict[str, Any]:
        r = project_request(name, props)
        backend("codebuild", account_id, region_name).create_project(
            project_name=name, description=r.get("description"), project_source=r["source"],
            artifacts=r["artifacts"], environment=r["environment"], service_role=r["serviceRole"],
            tags=r.get("tags"), cache=r.get("cache"), timeout=r.get("timeoutInMinutes"),
            queued_timeout=r.get("queuedTimeoutInMinutes"), source_version=r.get("sourceVersion"),
            logs_config=r.get("logsConfig"), vpc_config=r.get("vpcConfig"))
        return {"Name": name, "Arn": arn("codebuild", account_id, region_name, f"project/{name}")}

    @classmethod
    def remove(cls, name: str, attributes: dict[str, Any], account_id: str, region_name: str) -> None:
        backend("codebuild", account_id, region_name).delete_project(name)

    @classmethod
    def exists(cls, name: str, account_id: str, region_name: str) -> bool:
        return name in backend("codebuild", account_id, region_name).codebuild_projects


class RepositoryModel(Provided):
    TYPE, NAME_PROPERTY, REF = "AWS::CodeCommit::Repository", "RepositoryName", "Id"
    ATTRIBUTES = ("Id", "Name", "Arn", "CloneUrlHttp", "CloneUrlSsh", "KmsKeyId")

    @classmethod
    def create(cls, name: str, props: dict[str, Any], account_id: str, region_name: str) -> dict[str, Any]:
        r = repository_request(name, props)
        meta = backend("codecommit", account_id, region_name).create_repository(
            name, r.get("repositoryDescription", ""))
        return {"Id": meta["repositoryId"], "Name": name, "Arn": meta["Arn"],
                "CloneUrlHttp": meta["cloneUrlHttp"], "CloneUrlSsh": meta["cloneUrlSsh"],
                "KmsKeyId": r.get("kmsKeyId", "")}

    @classmethod
    def update(cls, original: Provided, props: dict[str, Any], account_id: str,
               region_name: str) -> dict[str, Any]:
        repository = backend("codecommit", account_id, region_name).repositories[original.name]
        repository.repository_metadata["repositoryDescription"] = props.get("RepositoryDescription", "")
        return original.attributes  # the id and ARN of a repository survive an update

    @classmethod
    def remove(cls, name: str, attributes: dict[str, Any], account_id: str, region_name: str) -> None:
        backend("codecommit", account_id, region_name).delete_repository(name)

    @classmethod
    def exists(cls, name: str, account_id: str, region_name: str) -> bool:
        return name in backend("codecommit", account_id, region_name).repositories


class GlueJobModel(Provided):
    TYPE, NAME_PROPERTY, ATTRIBUTES = "AWS::Glue::Job", "Name", ("Name",)

    @classmethod
    def create(cls, name: str, props: dict[str, Any], account_id: str, region_name: str) -> dict[str, Any]:
        r = job_request(name, props)
        backend("glue", account_id, region_name).create_job(
            name=name, description=r.get("Description"), log_uri=r.get("LogUri"), role=r["Role"],
            execution_property=r.get("ExecutionProperty"), command=r["Command"],
            default_arguments=r.get("DefaultArguments"),
            non_overridable_arguments=r.get("NonOverridableArguments"), connections=r.get("Connections"),
            max_retries=r.get("MaxRetries"), allocated_capacity=r.get("AllocatedCapacity"),
            timeout=r.get("Timeout"), max_capacity=r.get("MaxCapacity"),
            security_configuration=r.get("SecurityConfiguration"), tags=r.get("Tags"),
            notification_property=r.get("NotificationProperty"), glue_version=r.get("GlueVersion"),
            number_of_workers=r.get("NumberOfWorkers"), worker_type=r.get("WorkerType"),
            code_gen_configuration_nodes=r.get("CodeGenConfigurationNodes"),
            execution_class=r.get("ExecutionClass"), source_control_details=r.get("SourceControlDetails"))
        return {"Name": name}

    @classmethod
    def remove(cls, name: str, attributes: dict[str, Any], account_id: str, region_name: str) -> None:
        backend("glue", account_id, region_name).delete_job(name)

    @classmethod
    def exists(cls, name: str, account_id: str, region_name: str) -> bool:
        return name in backend("glue", account_id, region_name).jobs


class GlueSecurityConfigurationModel(Provided):
    TYPE, NAME_PROPERTY, ATTRIBUTES = "AWS::Glue::SecurityConfiguration", "Name", ("Name",)

    @classmethod
    def create(cls, name: str, props: dict[str, Any], account_id: str, region_name: str) -> dict[str, Any]:
        r = security_configuration_request(name, props)
        backend("glue", account_id, region_name).create_security_configuration(
            name, r["EncryptionConfiguration"])
        return {"Name": name}

    @classmethod
    def remove(cls, name: str, attributes: dict[str, Any], account_id: str, region_name: str) -> None:
        glue = backend("glue", account_id, region_name)
        if name in glue.security_configurations:
            glue.delete_security_configuration(name)

    @classmethod
    def exists(cls, name: str, account_id: str, region_name: str) -> bool:
        return name in backend("glue", account_id, region_name).security_configurations


class ModelPackageGroupModel(Provided):
    TYPE, NAME_PROPERTY, REF = "AWS::SageMaker::ModelPackageGroup", "ModelPackageGroupName", "ModelPackageGroupArn"
    ATTRIBUTES = ("ModelPackageGroupArn", "ModelPackageGroupName", "ModelPackageGroupStatus", "CreationTime")

    @classmethod
    def create(cls, name: str, props: dict[str, Any], account_id: str, region_name: str) -> dict[str, Any]:
        r = model_package_group_request(name, props)
        group_arn = backend("sagemaker", account_id, region_name).create_model_package_group(
            name, r.get("ModelPackageGroupDescription"), r.get("Tags"))
        group = backend("sagemaker", account_id, region_name).model_package_groups[name]
        return {"ModelPackageGroupArn": group_arn, "ModelPackageGroupName": name,
                "ModelPackageGroupStatus": "Completed", "CreationTime": str(group.creation_time)}

    @classmethod
    def update(cls, original: Provided, props: dict[str, Any], account_id: str,
               region_name: str) -> dict[str, Any]:
        # Keep the group (and the versions registered in it); only the description can change here.
        group = backend("sagemaker", account_id, region_name).model_package_groups[original.name]
        group.model_package_group_description = props.get("ModelPackageGroupDescription")
        return original.attributes

    @classmethod
    def remove(cls, name: str, attributes: dict[str, Any], account_id: str, region_name: str) -> None:
        backend("sagemaker", account_id, region_name).model_package_groups.pop(name, None)

    @classmethod
    def exists(cls, name: str, account_id: str, region_name: str) -> bool:
        return name in backend("sagemaker", account_id, region_name).model_package_groups


class BucketPolicyModel(Provided):
    """Checked and kept on the stack, not put on the bucket: moto enforces bucket policies, and the
    stand-in speaks plain HTTP, so the templates' DenyInsecureTransport would refuse every request."""
    TYPE, NAME_PROPERTY, REF, ATTRIBUTES = "AWS::S3::BucketPolicy", "", "Bucket", ()

    @classmethod
    def create(cls, name: str, props: dict[str, Any], account_id: str, region_name: str) -> dict[str, Any]:
        request = bucket_policy_request(props)
        return {"Bucket": request["Bucket"], "Policy": request["Policy"]}

    @classmethod
    def update(cls, original: Provided, props: dict[str, Any], account_id: str,
               region_name: str) -> dict[str, Any]:
        return cls.create(original.name, props, account_id, region_name)

    @classmethod
    def remove(cls, name: str, attributes: dict[str, Any], account_id: str, region_name: str) -> None:
        pass

    @classmethod
    def exists(cls, name: str, account_id: str, region_name: str) -> bool:
        return True


class AlarmModel(Provided):
    """A metric alarm in moto's CloudWatch; Ref is the name, GetAtt Arn the ARN (CloudFormation's
    AWS::CloudWatch::Alarm return values). Without AlarmName, CloudFormation names it
    <stack>-<logical id>-<suffix> (moto's generated name) and keeps that name across updates."""
    TYPE, NAME_PROPERTY, REF, ATTRIBUTES = "AWS::CloudWatch::Alarm", "AlarmName", "AlarmName", ("Arn",)

    @classmethod
    def create(cls, name: str, props: dict[str, Any], account_id: str, region_name: str) -> dict[str, Any]:
        r = alarm_request(name, props)
        alarm = _put_alarm(backend("cloudwatch", account_id, region_name), r, r.get("Tags"))
        return {"AlarmName": name, "Arn": alarm.alarm_arn, "Generated": "AlarmName" not in props}

    @classmethod
    def update_from_cloudformation_json(cls, original_resource: Provided, new_resource_name: str,
                                        cloudformation_json: dict[str, Any], account_id: str,
                                        region_name: str) -> Provided:
        # moto draws a new name on every update; a generated name stays while AlarmName stays absent.
        if original_resource.attributes.get("Generated") and \
                "AlarmName" not in cloudformation_json.get("Properties", {}):
            new_resource_name = original_resource.name
        return super().update_from_cloudformation_json(original_resource, new_resource_name, cloudformation_json,
                                                       account_id, region_name)

    @classmethod
    def update(cls, original: Provided, props: dict[str, Any], account_id: str,
               region_name: str) -> dict[str, Any]:
        # PutMetricAlarm on an existing alarm overwrites its configuration but leaves its state, and ignores
        # Tags (PutMetricAlarm API reference): the handler tags and untags (TagResource/UntagResource).
        r = alarm_request(original.name, props)
        cloudwatch = backend("cloudwatch", account_id, region_name)
        before = cloudwatch.alarms.get(original.name)
        alarm = _put_alarm(cloudwatch, r, None)
        if before is not None:
            for kept in ("state_value", "state_reason", "state_reason_data", "state_updated_timestamp", "history"):
                setattr(alarm, kept, getattr(before, kept))
        tags = {t["Key"]: t["Value"] for t in r.get("Tags", [])}
        old = cloudwatch.tagger.list_tags_for_resource(alarm.alarm_arn)["Tags"]
        cloudwatch.tagger.untag_resource_using_names(alarm.alarm_arn, [t["Key"] for t in old if t["Key"] not in tags])
        cloudwatch.tagger.tag_resource(alarm.alarm_arn, [{"Key": k, "Value": v} for k, v in tags.items()])
        return {**original.attributes, "Arn": alarm.alarm_arn}

    @classmethod
    def remove(cls, name: str, attributes: dict[str, Any], account_id: str, region_name: str) -> None:
        cloudwatch = backend("cloudwatch", account_id, region_name)
        alarm = cloudwatch.alarms.get(name)
        cloudwatch.delete_alarms([name])
        if alarm is not None:
            cloudwatch.tagger.delete_all_tags_for_resource(alarm.alarm_arn)

    @classmethod
    def exists(cls, name: str, account_id: str, region_name: str) -> bool:
        return name in backend("cloudwatch", account_id, region_name).alarms


def _put_alarm(cloudwatch: Any, r: dict[str, Any], tags: list[dict[str, str]] | None) -> Any:
    """moto's put_metric_alarm with a validated PutMetricAlarm request (its Metrics as moto's query objects)."""
    return cloudwatch.put_metric_alarm(
        name=r["AlarmName"], namespace=r.get("Namespace"), metric_name=r.get("MetricName"),
        comparison_operator=r["ComparisonOperator"], evaluation_periods=r["EvaluationPeriods"],
        period=r.get("Period"), threshold=r.get("Threshold"), statistic=r.get("Statistic"),
        description=r.get("AlarmDescription"), dimensions=r.get("Dimensions", []),
        alarm_actions=r.get("AlarmActions", []), metric_data_queries=[_query(m) for m in r.get("Metrics", [])] or None,
        datapoints_to_alarm=r.get("DatapointsToAlarm"), extended_statistic=r.get("ExtendedStatistic"),
        ok_actions=r.get("OKActions"), insufficient_data_actions=r.get("InsufficientDataActions"), unit=r.get("Unit"),
        actions_enabled=r.get("ActionsEnabled", True), treat_missing_data=r.get("TreatMissingData"),
        evaluate_low_sample_count_percentile=r.get("EvaluateLowSampleCountPercentile"),
        threshold_metric_id=r.get("ThresholdMetricId"), tags=tags)


def _query(metric: Any) -> Any:
    """One MetricDataQuery of the request as moto's PutMetricAlarm response handler builds it."""
    from moto.cloudwatch.models import Dimension, Metric, MetricDataQuery, MetricStat

    stat = metric.get("MetricStat")
    metric_stat = None
    if stat:
        watched = stat["Metric"]
        metric_stat = MetricStat(
            metric=Metric(metric_name=watched.get("MetricName"), namespace=watched.get("Namespace"),
                          dimensions=[Dimension(d["Name"], d["Value"]) for d in watched.get("Dimensions", [])]),
            period=stat["Period"], stat=stat["Stat"], unit=stat.get("Unit"))
    return MetricDataQuery(query_id=metric["Id"], label=metric.get("Label"), period=metric.get("Period"),
                           return_data=metric.get("ReturnData"), expression=metric.get("Expression"),
                           metric_stat=metric_stat)


class _ReplacedOnCreateOnly(Provided):
    """A type without a name property: moto draws a new generated name on every update, which Provided reads as
    a replacement. These are replaced only when a createOnlyProperties member of their registry schema changes."""
    CREATE_ONLY: tuple[str, ...] = ()

    @classmethod
    def update_from_cloudformation_json(cls, original_resource: Provided, new_resource_name: str,
                                        cloudformation_json: dict[str, Any], account_id: str,
                                        region_name: str) -> Provided:
        props = cloudformation_json.get("Properties", {})
        before = original_resource.attributes.get("Properties", {})
        if any(props.get(name) != before.get(name) for name in cls.CREATE_ONLY):
            attributes = cls.create(original_resource.name, props, account_id, region_name)  # new first, as AWS
            cls.remove(original_resource.name, original_resource.attributes, account_id, region_name)
        else:
            attributes = cls.update(original_resource, props, account_id, region_name)
        return cls(original_resource.name, attributes, account_id, region_name)


# What DescribeScalableTargets shows as RoleARN when RegisterScalableTarget names none: the service-linked role
# Application Auto Scaling creates for the namespace (Application Auto Scaling User Guide, "Service-linked roles").
SERVICE_LINKED_ROLES = {"sagemaker": "aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
                                     "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"}


class ScalableTargetModel(_ReplacedOnCreateOnly):
    """RegisterScalableTarget in moto's Application Auto Scaling. Ref and GetAtt Id are the generated id
    <ResourceId>|<ScalableDimension>|<ServiceNamespace> (stack_requests.scalable_target_id); an update registers
    again (RegisterScalableTarget on a registered target updates it: API reference); ResourceId,
    ScalableDimension and ServiceNamespace are createOnlyProperties (a change replaces the target); delete is
    DeregisterScalableTarget, which also deletes the target's scaling policies and scheduled actions
    (DeregisterScalableTarget API reference), and finds nothing to do once the target is gone."""
    TYPE, NAME_PROPERTY, REF, ATTRIBUTES = "AWS::ApplicationAutoScaling::ScalableTarget", "", "Id", ("Id",)
    CREATE_ONLY = ("ResourceId", "ScalableDimension", "ServiceNamespace")

    @classmethod
    def create(cls, name: str, props: dict[str, Any], account_id: str, region_name: str) -> dict[str, Any]:
        r = scalable_target_request(props)
        _check_target(r, account_id, region_name)
        resource_id, dimension, _ = target_key(r)
        if resource_id in backend("applicationautoscaling", account_id, region_name).targets.get(dimension, {}):
            # A create handler fails on a primary identifier that exists (CloudFormation's AlreadyExists).
            raise AwsError("AlreadyExists", f"Resource of type '{cls.TYPE}' with identifier "
                                            f"'{scalable_target_id(r)}' already exists.")
        _register(r, account_id, region_name)
        return {"Id": scalable_target_id(r), "Properties": props}

    @classmethod
    def update(cls, original: Provided, props: dict[str, Any], account_id: str,
               region_name: str) -> dict[str, Any]:
        r = scalable_target_request(props)
        _check_target(r, account_id, region_name)
        _register(r, account_id, region_name)
        return {"Id": scalable_target_id(r), "Properties": props}

    @classmethod
    def remove(cls, name: str, attributes: dict[str, Any], account_id: str, region_name: str) -> None:
        if "Id" not in attributes:
            logger.warning("%s %s: no id recorded, nothing deregistered", cls.TYPE, name)
            return
        resource_id, dimension, namespace = attributes["Id"].split("|")
        scaling = backend("applicationautoscaling", account_id, region_name)
        if resource_id not in scaling.targets.get(dimension, {}):
            return  # gone already: a delete handler's NotFound is a successful delete
        key = (resource_id, dimension, namespace)
        for policy in [p for p in scaling.policies.values()
                       if (p.resource_id, p.scalable_dimension, p.service_namespace) == key]:
            scaling.delete_scaling_policy(policy.policy_name, namespace, resource_id, dimension)
        scaling.scheduled_actions = [a for a in scaling.scheduled_actions if (
            a.resource_id, a.scalable_dimension, a.service_namespace) != (resource_id, dimension, namespace)]
        scaling.deregister_scalable_target(namespace, resource_id, dimension)

    @classmethod
    def exists(cls, name: str, account_id: str, region_name: str) -> bool:
        return False  # the generated name does not say which target: `found` looks by the recorded id

    @classmethod
    def found(cls, deployed: Provided) -> bool:
        if "Id" not in deployed.attributes:
            return False
        resource_id, dimension, _ = deployed.attributes["Id"].split("|")
        return resource_id in backend("applicationautoscaling", deployed.account_id,
                                      deployed.region_name).targets.get(dimension, {})


def _check_target(r: dict[str, Any], account_id: str, region_name: str) -> None:
    """What Application Auto Scaling checks of a RegisterScalableTarget request that moto does not."""
    resource_id, dimension, _ = target_key(r)
    low, high = r.get("MinCapacity"), r.get("MaxCapacity")
    if low is not None and high is not None and low > high:
        # Our wording (the service's exact text was not found); the rule is the API's: MinCapacity "must be
        # equal to or less than" MaxCapacity (SageMaker Developer Guide, "Register a model").
        raise AwsError("ValidationException", f"Minimum capacity {low} cannot be greater than maximum capacity "
                                              f"{high} for scalable target {resource_id}")
    if dimension == "sagemaker:variant:DesiredInstanceCount":
        _sagemaker_variant(resource_id, low, account_id, region_name)


def _register(r: dict[str, Any], account_id: str, region_name: str) -> None:
    """moto's register_scalable_target (RegisterScalableTarget on a registered target updates it)."""
    from moto.utilities.utils import get_partition

    resource_id, dimension, namespace = target_key(r)
    low, high = r.get("MinCapacity"), r.get("MaxCapacity")
    scaling = backend("applicationautoscaling", account_id, region_name)
    role = r.get("RoleARN") or (f"arn:{get_partition(region_name)}:iam::{account_id}:role/"
                                f"{SERVICE_LINKED_ROLES[namespace]}" if namespace in SERVICE_LINKED_ROLES else None)
    with moto_access.aws_errors():
        target = scaling.register_scalable_target(namespace, resource_id, dimension, low, high, role,
                                                  r.get("SuspendedState"))
    target.role_arn = role


def _sagemaker_variant(resource_id: str, low: int | None, account_id: str, region_name: str) -> None:
    """Application Auto Scaling refuses a SageMaker variant that does not exist, and a minimum below 1 for an
    endpoint variant ("This value must be set to at least 1": SageMaker Developer Guide, "Register a model");
    moto checks neither. The messages are ours: the service's exact texts were not found."""
    parts = resource_id.split("/")
    if len(parts) != 4 or parts[0] != "endpoint" or parts[2] != "variant":
        raise AwsError("ValidationException", f"Unsupported resource ID {resource_id}: a SageMaker endpoint variant "
                                              "is endpoint/<endpoint name>/variant/<variant name>")
    endpoint = backend("sagemaker", account_id, region_name).endpoints.get(parts[1])
    variants = [v.get("VariantName") for v in getattr(endpoint, "production_variants", None) or []]
    if parts[3] not in variants:
        raise AwsError("ValidationException", f"The SageMaker endpoint variant {resource_id} does not exist")
    if low is not None and low < 1:
        raise AwsError("ValidationException", f"Minimum capacity {low} of {resource_id} must be at least 1")


class ScalingPolicyModel(_ReplacedOnCreateOnly):
    """PutScalingPolicy in moto's Application Auto Scaling. Ref and GetAtt Arn are the policy's ARN
    (AWS::ApplicationAutoScaling::ScalingPolicy return values; the schema's primaryIdentifier is Arn with
    ScalableDimension); an update puts it again and keeps its ARN (moto draws a new one); PolicyName and the
    target are createOnlyProperties. Target tracking's own alarms are what moto makes: none for SageMaker."""
    TYPE, NAME_PROPERTY, REF, ATTRIBUTES = "AWS::ApplicationAutoScaling::ScalingPolicy", "", "Arn", ("Arn",)
    CREATE_ONLY = ("PolicyName", "ServiceNamespace", "ResourceId", "ScalableDimension", "ScalingTargetId")

    @classmethod
    def create(cls, name: str, props: dict[str, Any], account_id: str, region_name: str) -> dict[str, Any]:
        r = scaling_policy_request(props)
        policy = _put_policy(r, account_id, region_name)
        return {"Arn": policy.policy_arn, "Properties": props, "Key": [r["PolicyName"], *target_key(r)]}

    @classmethod
    def update(cls, original: Provided, props: dict[str, Any], account_id: str,
               region_name: str) -> dict[str, Any]:
        r = scaling_policy_request(props)
        policy = _put_policy(r, account_id, region_name)
        policy.policy_arn = original.attributes["Arn"]
        return {**original.attributes, "Properties": props}

    @classmethod
    def remove(cls, name: str, attributes: dict[str, Any], account_id: str, region_name: str) -> None:
        if "Key" not in attributes:
            logger.warning("%s %s: no key recorded, nothing deleted", cls.TYPE, name)
            return
        policy_name, resource_id, dimension, namespace = attributes["Key"]
        scaling = backend("applicationautoscaling", account_id, region_name)
        key = "\t".join((namespace, resource_id, dimension, policy_name))  # moto's policy key
        if key in scaling.policies:  # else gone with its target (DeregisterScalableTarget): deleted already
            scaling.delete_scaling_policy(policy_name, namespace, resource_id, dimension)

    @classmethod
    def exists(cls, name: str, account_id: str, region_name: str) -> bool:
        return False  # as ScalableTargetModel: `found` looks by the recorded key

    @classmethod
    def found(cls, deployed: Provided) -> bool:
        if "Key" not in deployed.attributes:
            return False
        policy_name, resource_id, dimension, namespace = deployed.attributes["Key"]
        scaling = backend("applicationautoscaling", deployed.account_id, deployed.region_name)
        return "\t".join((namespace, resource_id, dimension, policy_name)) in scaling.policies


def _put_policy(r: dict[str, Any], account_id: str, region_name: str) -> Any:
    """PutScalingPolicy on a registered target (moto puts it on any): ObjectNotFoundException as the service
    answers ("No scalable target registered for service namespace: rds, resource ID: cluster:test-cluster, scalable
    dimension: rds:cluster:ReadReplicaCount", quoted from the AWS CLI's output)."""
    resource_id, dimension, namespace = target_key(r)
    scaling = backend("applicationautoscaling", account_id, region_name)
    if resource_id not in scaling.targets.get(dimension, {}):
        raise AwsError("ObjectNotFoundException", f"No scalable target registered for service namespace: {namespace}, "
                                                  f"resource ID: {resource_id}, scalable dimension: {dimension}")
    body = r.get("TargetTrackingScalingPolicyConfiguration") or r.get("StepScalingPolicyConfiguration") or {}
    if r.get("PredictiveScalingPolicyConfiguration"):
        raise ValueError(f"{ScalingPolicyModel.TYPE}: PredictiveScalingPolicyConfiguration not modelled by the "
                         "stand-in")
    with moto_access.aws_errors():
        return scaling.put_scaling_policy(r["PolicyName"], namespace, resource_id, dimension, body,
                                          r.get("PolicyType"))


PROVIDED: tuple[type[Provided], ...] = (PipelineModel, ProjectModel, RepositoryModel, GlueJobModel,
                                        GlueSecurityConfigurationModel, ModelPackageGroupModel,
                                        BucketPolicyModel, AlarmModel, ScalableTargetModel, ScalingPolicyModel)
_installed: dict[str, type[Provided]] = {}
_installed_lock = threading.Lock()


def yaml_tag_constructor(loader: Any, tag: str, node: Any) -> Any:
    """moto's YAML short forms, but `!Condition X` as `{"Condition": X}` (moto makes it Fn::Condition,
    which its condition parser does not know, so `!Not [!Condition X]` was always true)."""
    from moto.cloudformation import utils

    if tag == "!Condition":
        return {"Condition": loader.construct_scalar(node)}
    return utils.yaml_tag_constructor(loader, tag, node)


def install_models() -> dict[str, type[Provided]]:
    """Make moto's CloudFormation parse the types above (once per process, like moto's backends)."""
    from moto.cloudformation import models, parsing, responses
    from moto.core.common_models import CloudFormationModel

    with _installed_lock:
        if not _installed:
            for provided in PROVIDED:
                # moto lists models as the *direct* subclasses of CloudFormationModel.
                _installed[provided.TYPE] = type(provided.__name__, (provided, CloudFormationModel), {})
            models.yaml_tag_constructor = responses.yaml_tag_constructor = yaml_tag_constructor
            # A resource whose Condition is false is never created (AWS lists nothing for it); moto keeps
            # it as None in the stack's map and DescribeStackResources answers it as an empty member.
            models.Stack.stack_resources = property(  # type: ignore[method-assign,assignment]
                lambda stack: [r for r in stack.resource_map.values() if r is not None])
            _log_group_arn_as_cloudformation_returns()
            _key_policy_as_json_text()
            _endpoint_named_by_its_property()
            for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
                cached.cache_clear()  # moto caches the lists on first use
    return dict(_installed)


def _log_group_arn_as_cloudformation_returns() -> None:
    """AWS::Logs::LogGroup's GetAtt Arn is the group's ARN with `:*` ("arn:aws:logs:...:log-group:<name>:*",
    CloudFormation's AWS::Logs::LogGroup return values; DescribeLogGroups' `arn` is the same), so a policy on it
    covers the group's streams; moto answers the bare ARN, which would grant CreateLogStream/PutLogEvents on
    nothing."""
    from moto.logs.models import LogGroup

    bare = LogGroup.get_cfn_attribute

    def get_cfn_attribute(self: Any, attribute_name: str) -> Any:
        value = bare(self, attribute_name)
        return f"{value}:*" if attribute_name == "Arn" else value

    LogGroup.get_cfn_attribute = get_cfn_attribute  # type: ignore[method-assign]


def _endpoint_named_by_its_property() -> None:
    """moto's CloudFormation names every SageMaker endpoint itself (<stack>-Endpoint-<random>); CloudFormation uses
    the EndpointName property when given (Template Reference, AWS::SageMaker::Endpoint), and a scalable target names
    the endpoint by it (endpoint/<EndpointName>/variant/<variant>). sagemaker.endpoints sets the same when its
    component registers; here stacks get it without local endpoints too."""
    from moto.sagemaker.models import FakeEndpoint

    FakeEndpoint.cloudformation_name_type = staticmethod(lambda: "EndpointName")  # type: ignore[method-assign]


def _key_policy_as_json_text() -> None:
    """AWS::KMS::Key's KeyPolicy is a JSON object in a template, and KMS keeps a policy as its JSON text
    (GetKeyPolicy answers a string); moto's CloudFormation stores the object as it is, and moto's own KMS
    then fails on every request that reads it (DescribeKey: json.loads of a dict, a TypeError)."""
    import json

    from moto.kms.models import Key

    create = Key.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create_from_cloudformation_json(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str,
                                        region_name: str, **kwargs: Any) -> Any:
        key = create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        if not isinstance(key.policy, str):
            key.policy = json.dumps(key.policy)
        return key

    Key.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)  # type: ignore[assignment]
