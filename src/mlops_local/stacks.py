"""The CloudFormation resource types moto drops, taught to moto's own CloudFormation.

Measured on moto 5.2.5 with templates/pipeline.yaml:
- moto has no CloudFormation model for AWS::CodePipeline::Pipeline, AWS::CodeBuild::Project,
  AWS::CodeCommit::Repository, AWS::Glue::Job, AWS::Glue::SecurityConfiguration,
  AWS::SageMaker::ModelPackageGroup, AWS::S3::BucketPolicy, AWS::CloudWatch::Alarm and
  AWS::ApplicationAutoScaling::* (the last two only in endpoint.yaml's prod stage; not provided here).
  KMS keys and aliases, S3 buckets, IAM roles, Lambda functions, ECR repositories, log groups and
  EventBridge rules are created with real physical ids, and moto resolves Ref/GetAtt/Sub/Join/
  Select/Split/If/conditions/GetAZs/ImportValue against them.
- A dropped resource is not silently skipped once anything refers to it: `Fn::GetAtt` on it (the
  pipeline role's `!GetAtt TrainingImageProject.Arn`, the `RepositoryName` output) makes CreateStack
  fail with `ValidationError: Template error: instance of Fn::GetAtt references undefined resource`,
  whatever CreateRepository says; `Ref`/`${...}` on it yields nothing (no `PipelineName` output,
  EventBridge targets ending in a literal `${Pipeline}`).
- ExecuteChangeSet (`aws cloudformation deploy`) creates or updates the resources but never
  recomputes the stack's outputs: a new stack has none, an updated one keeps the old values.
- A short-form `!Condition X` becomes `Fn::Condition`, which moto's condition parser does not know:
  `!Not [!Condition X]` is always true and `!And`/`!Or` over it are wrong (endpoint.yaml uses it).

So an after-hook that reads the template back and creates the dropped resources cannot work: moto
has refused the stack before any hook runs. Instead `Stacks.register()` adds moto CloudFormation
models for these types (moto finds models as the subclasses of its `CloudFormationModel`) and fixes
`!Condition`. moto then treats them like its own: conditions, DependsOn, physical names, Ref/GetAtt
from the rest of the stack and the outputs, DescribeStackResources, update (when the resource's
template or a parameter it references changed), DeletionPolicy Retain, change sets. One after-hook
recomputes the outputs after ExecuteChangeSet, so `aws cloudformation deploy` works.
Each model turns the resolved CloudFormation properties into the service's API request, checks it
against botocore's model of that API (so a mapping mistake fails loudly instead of storing a
malformed pipeline), and creates the resource in moto's backend of that service: what
`aws codepipeline get-pipeline` or `glue get-job` then return is what was deployed.

No resolver of our own: moto's already resolves with real physical ids; `render` returns its
result. cloud-radar (0.17, `Template.render`) was evaluated: it can be fed real ids through
`Metadata: {Cloud-Radar: {ref, attribute-values}}`, but it answers any other Ref/GetAtt with a
made-up "Logical.Attribute" string, downloads region data from GitHub for Fn::GetAZs, treats every
empty string as AWS::NoValue and removes it, keeps pseudo parameters in class attributes, and,
decisively, would still leave moto refusing the stack.
"""
from __future__ import annotations

import copy
import json
import logging
import threading
from typing import Any

logger = logging.getLogger(__name__)

ACCOUNT_AND_REGION_OF_STACK_ID = slice(3, 5)  # arn:aws:cloudformation:<region>:<account>:stack/...


# -- CloudFormation properties -> API requests --------------------------------------------------
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


_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()


def api_request(service: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """`params` conformed to, and validated against, botocore's model of the operation."""
    from botocore.session import get_session
    from botocore.validate import validate_parameters

    with _MODELS_LOCK:
        if service not in _MODELS:
            _MODELS[service] = get_session().get_service_model(service)
    shape = _MODELS[service].operation_model(operation).input_shape
    request = conform(params, shape)
    validate_parameters(request, shape)  # ParamValidationError names the bad field
    return request


def without(props: dict[str, Any], *names: str) -> dict[str, Any]:
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


# -- moto models ---------------------------------------------------------------------------------
def backend(service: str, account_id: str, region_name: str) -> Any:
    from moto.backends import get_backend
    from moto.utilities.utils import get_partition

    key = get_partition(region_name) if service == "s3" else region_name
    return get_backend(service)[account_id][key]  # type: ignore[index]


class Provided:
    """What the models share; each subclass says how to create, update and delete its type.

    `create` returns the resource's attributes (GetAtt names, plus what Ref returns under `REF`).
    """
    TYPE = ""
    NAME_PROPERTY = ""
    REF = "Name"
    ATTRIBUTES: tuple[str, ...] = ()

    def __init__(self, name: str, attributes: dict[str, Any], account_id: str, region_name: str):
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


def arn(service: str, account_id: str, region_name: str, resource: str) -> str:
    from moto.utilities.utils import get_partition

    return f"arn:{get_partition(region_name)}:{service}:{region_name}:{account_id}:{resource}"


class PipelineModel(Provided):
    TYPE, NAME_PROPERTY, ATTRIBUTES = "AWS::CodePipeline::Pipeline", "Name", ("Name", "Version")

    @classmethod
    def create(cls, name, props, account_id, region_name):
        request = pipeline_request(name, props)
        pipeline, _ = backend("codepipeline", account_id, region_name).create_pipeline(
            request["pipeline"], request.get("tags", []))
        return {"Name": name, "Version": str(pipeline["version"])}

    @classmethod
    def update(cls, original, props, account_id, region_name):
        request = pipeline_request(original.name, props)
        pipeline = backend("codepipeline", account_id, region_name).update_pipeline(request["pipeline"])
        return {"Name": original.name, "Version": str(pipeline["version"])}

    @classmethod
    def remove(cls, name, attributes, account_id, region_name):
        backend("codepipeline", account_id, region_name).delete_pipeline(name)

    @classmethod
    def exists(cls, name, account_id, region_name):
        return name in backend("codepipeline", account_id, region_name).pipelines


class ProjectModel(Provided):
    TYPE, NAME_PROPERTY, ATTRIBUTES = "AWS::CodeBuild::Project", "Name", ("Name", "Arn")

    @classmethod
    def create(cls, name, props, account_id, region_name):
        r = project_request(name, props)
        backend("codebuild", account_id, region_name).create_project(
            project_name=name, description=r.get("description"), project_source=r["source"],
            artifacts=r["artifacts"], environment=r["environment"], service_role=r["serviceRole"],
            tags=r.get("tags"), cache=r.get("cache"), timeout=r.get("timeoutInMinutes"),
            queued_timeout=r.get("queuedTimeoutInMinutes"), source_version=r.get("sourceVersion"),
            logs_config=r.get("logsConfig"), vpc_config=r.get("vpcConfig"))
        return {"Name": name, "Arn": arn("codebuild", account_id, region_name, f"project/{name}")}

    @classmethod
    def remove(cls, name, attributes, account_id, region_name):
        backend("codebuild", account_id, region_name).delete_project(name)

    @classmethod
    def exists(cls, name, account_id, region_name):
        return name in backend("codebuild", account_id, region_name).codebuild_projects


class RepositoryModel(Provided):
    TYPE, NAME_PROPERTY, REF = "AWS::CodeCommit::Repository", "RepositoryName", "Id"
    ATTRIBUTES = ("Id", "Name", "Arn", "CloneUrlHttp", "CloneUrlSsh", "KmsKeyId")

    @classmethod
    def create(cls, name, props, account_id, region_name):
        r = repository_request(name, props)
        meta = backend("codecommit", account_id, region_name).create_repository(
            name, r.get("repositoryDescription", ""))
        return {"Id": meta["repositoryId"], "Name": name, "Arn": meta["Arn"],
                "CloneUrlHttp": meta["cloneUrlHttp"], "CloneUrlSsh": meta["cloneUrlSsh"],
                "KmsKeyId": r.get("kmsKeyId", "")}

    @classmethod
    def update(cls, original, props, account_id, region_name):
        repository = backend("codecommit", account_id, region_name).repositories[original.name]
        repository.repository_metadata["repositoryDescription"] = props.get("RepositoryDescription", "")
        return original.attributes  # the id and ARN of a repository survive an update

    @classmethod
    def remove(cls, name, attributes, account_id, region_name):
        backend("codecommit", account_id, region_name).delete_repository(name)

    @classmethod
    def exists(cls, name, account_id, region_name):
        return name in backend("codecommit", account_id, region_name).repositories


class GlueJobModel(Provided):
    TYPE, NAME_PROPERTY, ATTRIBUTES = "AWS::Glue::Job", "Name", ("Name",)

    @classmethod
    def create(cls, name, props, account_id, region_name):
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
    def remove(cls, name, attributes, account_id, region_name):
        backend("glue", account_id, region_name).delete_job(name)

    @classmethod
    def exists(cls, name, account_id, region_name):
        return name in backend("glue", account_id, region_name).jobs


class GlueSecurityConfigurationModel(Provided):
    TYPE, NAME_PROPERTY, ATTRIBUTES = "AWS::Glue::SecurityConfiguration", "Name", ("Name",)

    @classmethod
    def create(cls, name, props, account_id, region_name):
        r = security_configuration_request(name, props)
        backend("glue", account_id, region_name).create_security_configuration(
            name, r["EncryptionConfiguration"])
        return {"Name": name}

    @classmethod
    def remove(cls, name, attributes, account_id, region_name):
        glue = backend("glue", account_id, region_name)
        if name in glue.security_configurations:
            glue.delete_security_configuration(name)

    @classmethod
    def exists(cls, name, account_id, region_name):
        return name in backend("glue", account_id, region_name).security_configurations


class ModelPackageGroupModel(Provided):
    TYPE, NAME_PROPERTY, REF = "AWS::SageMaker::ModelPackageGroup", "ModelPackageGroupName", "ModelPackageGroupArn"
    ATTRIBUTES = ("ModelPackageGroupArn", "ModelPackageGroupName", "ModelPackageGroupStatus", "CreationTime")

    @classmethod
    def create(cls, name, props, account_id, region_name):
        r = model_package_group_request(name, props)
        group_arn = backend("sagemaker", account_id, region_name).create_model_package_group(
            name, r.get("ModelPackageGroupDescription"), r.get("Tags"))
        group = backend("sagemaker", account_id, region_name).model_package_groups[name]
        return {"ModelPackageGroupArn": group_arn, "ModelPackageGroupName": name,
                "ModelPackageGroupStatus": "Completed", "CreationTime": str(group.creation_time)}

    @classmethod
    def update(cls, original, props, account_id, region_name):
        # Keep the group (and the versions registered in it); only the description can change here.
        group = backend("sagemaker", account_id, region_name).model_package_groups[original.name]
        group.model_package_group_description = props.get("ModelPackageGroupDescription")
        return original.attributes

    @classmethod
    def remove(cls, name, attributes, account_id, region_name):
        backend("sagemaker", account_id, region_name).model_package_groups.pop(name, None)

    @classmethod
    def exists(cls, name, account_id, region_name):
        return name in backend("sagemaker", account_id, region_name).model_package_groups


class BucketPolicyModel(Provided):
    """Checked and kept on the stack, not put on the bucket: moto enforces bucket policies, and the
    stand-in speaks plain HTTP, so the templates' DenyInsecureTransport would refuse every request."""
    TYPE, NAME_PROPERTY, REF, ATTRIBUTES = "AWS::S3::BucketPolicy", "", "Bucket", ()

    @classmethod
    def create(cls, name, props, account_id, region_name):
        request = bucket_policy_request(props)
        return {"Bucket": request["Bucket"], "Policy": request["Policy"]}

    @classmethod
    def update(cls, original, props, account_id, region_name):
        return cls.create(original.name, props, account_id, region_name)

    @classmethod
    def remove(cls, name, attributes, account_id, region_name):
        pass

    @classmethod
    def exists(cls, name, account_id, region_name):
        return True


PROVIDED: tuple[type[Provided], ...] = (PipelineModel, ProjectModel, RepositoryModel, GlueJobModel,
                                        GlueSecurityConfigurationModel, ModelPackageGroupModel,
                                        BucketPolicyModel)
_installed: dict[str, type] = {}


def yaml_tag_constructor(loader: Any, tag: str, node: Any) -> Any:
    """moto's YAML short forms, but `!Condition X` as `{"Condition": X}` (moto makes it Fn::Condition,
    which its condition parser does not know, so `!Not [!Condition X]` was always true)."""
    from moto.cloudformation import utils

    if tag == "!Condition":
        return {"Condition": loader.construct_scalar(node)}
    return utils.yaml_tag_constructor(loader, tag, node)


def install_models() -> dict[str, type]:
    """Make moto's CloudFormation parse the types above (once per process, like moto's backends)."""
    from moto.cloudformation import models, parsing, responses
    from moto.core.common_models import CloudFormationModel

    with _MODELS_LOCK:
        if not _installed:
            for provided in PROVIDED:
                # moto lists models as the *direct* subclasses of CloudFormationModel.
                _installed[provided.TYPE] = type(provided.__name__, (provided, CloudFormationModel), {})
            models.yaml_tag_constructor = responses.yaml_tag_constructor = yaml_tag_constructor
            for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
                cached.cache_clear()  # moto caches the lists on first use
    return dict(_installed)


# -- the component -------------------------------------------------------------------------------
class Stacks:
    """Registers the models; `render` and `apply` look at one deployed stack."""

    def __init__(self, runtime: Any):
        self.runtime = runtime

    def register(self) -> None:
        install_models()
        self.runtime.aws.gateway.after("cloudformation", "ExecuteChangeSet", self.after_execute_change_set)

    def after_execute_change_set(self, params: dict[str, Any], status: int, body: bytes) -> None:
        """moto applies a change set's resources but keeps the stack's old outputs (none, for a
        CREATE change set: `aws cloudformation deploy` then finds no outputs); compute them again."""
        if status != 200:
            return
        change_set_id = params.get("ChangeSetName", "")
        if change_set_id.startswith("arn:"):
            region, account_id = change_set_id.split(":")[ACCOUNT_AND_REGION_OF_STACK_ID]
            cloudformation = backend("cloudformation", account_id, region)
            stack = cloudformation.stacks[cloudformation.change_sets[change_set_id].stack_id]
        else:
            stack = self._stack(params["StackName"])
        stack._parse_template()
        stack.output_map = stack._create_output_map()

    def _stack(self, stack_name: str) -> Any:
        described = self.runtime.aws.client("cloudformation").describe_stacks(StackName=stack_name)
        region, account_id = described["Stacks"][0]["StackId"].split(":")[ACCOUNT_AND_REGION_OF_STACK_ID]
        return backend("cloudformation", account_id, region).get_stack(described["Stacks"][0]["StackId"])

    def render(self, stack_name: str) -> dict[str, Any]:
        """The deployed template with parameters, conditions and intrinsics resolved by moto.

        Resources whose Condition is false are left out; `Properties` are as the resource received
        them (physical ids of the stack's resources, AWS::NoValue removed).
        """
        from moto.cloudformation.parsing import clean_json

        stack = self._stack(stack_name)
        resource_map = stack.resource_map
        resources = {}
        for logical_id, resource in stack.template_dict.get("Resources", {}).items():
            condition = resource.get("Condition")
            if condition and not resource_map.lazy_condition_map[condition]:
                continue
            rendered = copy.deepcopy(resource)
            rendered["Properties"] = clean_json(copy.deepcopy(resource.get("Properties", {})), resource_map)
            resources[logical_id] = rendered
        return {"Parameters": dict(resource_map.resolved_parameters), "Resources": resources,
                "Outputs": {o.key: o.value for o in stack.output_map.values()}}

    def apply(self, stack_name: str) -> dict[str, str]:
        """Create again what this module provides for the stack and is missing (deleted out of band).

        moto's CloudFormation creates, updates and deletes these resources itself once `register`
        ran; `apply` is the idempotent check the pipeline engine and the CLI call after a deploy.
        Returns logical id -> physical id of every provided resource of the stack.
        """
        stack = self._stack(stack_name)
        applied = {}
        for logical_id, resource in self.render(stack_name)["Resources"].items():
            model = _installed.get(resource["Type"])
            if model is None:
                continue
            deployed = stack.resource_map._parsed_resources.get(logical_id)
            name = deployed.name if deployed is not None else None
            if name is None or not model.exists(name, stack.account_id, stack.region_name):
                created = model.create_from_cloudformation_json(
                    name or f"{stack.name}-{logical_id}", resource, stack.account_id, stack.region_name,
                    StackId=stack.stack_id)
                created.logical_resource_id, created.cf_resource_type = logical_id, resource["Type"]
                stack.resource_map._parsed_resources[logical_id] = created
                deployed = created
                logger.info("stack %s: %s %s was missing; created it again", stack_name, logical_id, created.name)
            applied[logical_id] = deployed.physical_resource_id
        return applied
