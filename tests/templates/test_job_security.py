"""How the training and processing jobs are sealed: the submit functions' environment (the project key, the
user's VPC), the parameters a user passes a VPC with, and what the execution role gets for each."""
from __future__ import annotations

import re

import pytest

from lambdas.sagemaker_jobs import KMS_KEY_VARIABLE, SECURITY_GROUPS_VARIABLE, SUBNETS_VARIABLE
from tests.templates.cfn import ENDPOINT, PIPELINE, load

SUBMIT_FUNCTIONS = ("SubmitTrainingFunction", "SubmitEvaluationFunction")


def as_list(value):
    return value if isinstance(value, list) else [value]


def pipeline_resource(name: str) -> dict:
    return load(PIPELINE)["Resources"][name]


@pytest.mark.parametrize("function", SUBMIT_FUNCTIONS)
def test_submit_functions_get_the_project_key_and_the_vpc_parameters(function):
    variables = pipeline_resource(function)["Properties"]["Environment"]["Variables"]
    assert variables == {KMS_KEY_VARIABLE: {"Fn::GetAtt": ["ProjectKey", "Arn"]},
                         SUBNETS_VARIABLE: {"Ref": "JobSubnetIds"},
                         SECURITY_GROUPS_VARIABLE: {"Ref": "JobSecurityGroupIds"}}


@pytest.mark.parametrize("parameter, value, accepted", [
    ("JobSubnetIds", "", True),
    ("JobSubnetIds", "subnet-0a1b2c3d", True),
    ("JobSubnetIds", ",".join(f"subnet-0{n:x}" for n in range(16)), True),
    ("JobSubnetIds", ",".join(f"subnet-0{n:x}" for n in range(17)), False),  # VpcConfig.Subnets: 1-16
    ("JobSubnetIds", "subnet-0a1b2c3d, subnet-4e5f6a7b", False),
    ("JobSubnetIds", "sg-0a1b2c3d", False),
    ("JobSecurityGroupIds", "", True),
    ("JobSecurityGroupIds", "sg-0123abcd,sg-4567ef01", True),
    ("JobSecurityGroupIds", ",".join(f"sg-0{n}" for n in range(6)), False),  # SecurityGroupIds: 1-5
    ("JobSecurityGroupIds", "subnet-0a1b2c3d", False),
], ids=["no-subnets", "one-subnet", "16-subnets", "17-subnets", "subnets-with-a-space", "group-as-subnet",
        "no-groups", "two-groups", "6-groups", "subnet-as-group"])
def test_vpc_parameters_take_what_vpc_config_takes(parameter, value, accepted):
    declared = load(PIPELINE)["Parameters"][parameter]
    assert declared["Default"] == ""  # no VPC unless the user passes one
    assert bool(re.fullmatch(declared["AllowedPattern"], value)) is accepted


def test_jobs_are_in_a_vpc_only_when_subnets_are_given():
    assert load(PIPELINE)["Conditions"]["JobsInVpc"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "JobSubnetIds"}, ""]}]}


def test_the_execution_role_manages_network_interfaces_only_in_a_vpc():
    policy = pipeline_resource("SageMakerExecutionVpcPolicy")
    assert policy["Condition"] == "JobsInVpc"
    assert policy["Type"] == "AWS::IAM::RolePolicy"
    assert policy["Properties"]["RoleName"] == {"Ref": "SageMakerExecutionRole"}
    actions = {a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in s["Action"]}
    assert {"ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
            "ec2:DeleteNetworkInterfacePermission", "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs",
            "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"} == actions
    role = pipeline_resource("SageMakerExecutionRole")["Properties"]["Policies"]
    assert not [a for p in role for s in p["PolicyDocument"]["Statement"] for a in as_list(s["Action"])
                if a.startswith("ec2:")]


def test_the_execution_role_grants_the_project_key_only_to_aws_resources():
    """The volumes' grants (VolumeKmsKeyId, the endpoint config's KmsKeyId): kms:CreateGrant with
    kms:GrantIsForAWSResource, never a grant to a principal of its choosing."""
    statements = [s for p in pipeline_resource("SageMakerExecutionRole")["Properties"]["Policies"]
                  for s in p["PolicyDocument"]["Statement"]]
    granting = [s for s in statements if "kms:CreateGrant" in as_list(s["Action"])]
    assert granting == [{"Sid": "GrantProjectKeyToVolumes", "Effect": "Allow", "Action": "kms:CreateGrant",
                         "Resource": {"Fn::GetAtt": ["ProjectKey", "Arn"]},
                         "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}]


def test_the_served_model_is_isolated_and_in_the_vpc_only_on_instances():
    """Serverless Inference supports neither network isolation nor a VPC (its feature exclusions)."""
    endpoint = load(ENDPOINT)
    model = endpoint["Resources"]["Model"]["Properties"]
    assert model["EnableNetworkIsolation"] == {"Fn::If": ["OnInstances", True, {"Ref": "AWS::NoValue"}]}
    assert model["VpcConfig"] == {"Fn::If": ["InVpc", {
        "SecurityGroupIds": {"Fn::Split": [",", {"Ref": "SecurityGroupIds"}]},
        "Subnets": {"Fn::Split": [",", {"Ref": "SubnetIds"}]}}, {"Ref": "AWS::NoValue"}]}
    in_vpc = endpoint["Conditions"]["InVpc"]["Fn::And"]
    assert {"Condition": "OnInstances"} in in_vpc and len(in_vpc) == 3
    for name in ("SubnetIds", "SecurityGroupIds"):  # the same IDs the pipeline's jobs take
        job_parameter = load(PIPELINE)["Parameters"][f"Job{name}"]
        assert endpoint["Parameters"][name]["AllowedPattern"] == job_parameter["AllowedPattern"]
        assert endpoint["Parameters"][name]["Default"] == ""
