"""templates/endpoint.yaml under update: autoscaling keeps the prod instance count it owns, and an instance type
change has a way through that SageMaker accepts (the procedure in the template's ScalableTarget comment)."""
from __future__ import annotations

import json
from typing import Any, Mapping

import pytest

from lambdas.deploy_config import template_configuration
from lambdas.job import parse_user_parameters
from tests.templates.cfn import ENDPOINT, PIPELINE, actions, load, render, resources, worker_schema

TEMPLATE = load(ENDPOINT)
RESOURCES = TEMPLATE["Resources"]


def holds(condition: Any, parameters: Mapping[str, str]) -> bool:
    """A condition of endpoint.yaml evaluated with these parameters (defaults for the rest)."""
    if isinstance(condition, str):
        return holds(TEMPLATE["Conditions"][condition], parameters)
    (function, argument), = condition.items()
    if function == "Condition":
        return holds(argument, parameters)
    if function == "Fn::And":
        return all(holds(c, parameters) for c in argument)
    if function == "Fn::Not":
        return not holds(argument[0], parameters)
    assert function == "Fn::Equals", f"{function} is not evaluated here"
    return value_of(argument[0], parameters) == value_of(argument[1], parameters)


def value_of(node: Any, parameters: Mapping[str, str]) -> str:
    if isinstance(node, dict):
        name = node["Ref"]
        return str(parameters.get(name, TEMPLATE["Parameters"][name].get("Default")))
    return str(node)


def chosen(node: Any, parameters: Mapping[str, str]) -> Any:
    """A property value with its Fn::If decided; None for AWS::NoValue."""
    if isinstance(node, dict) and "Fn::If" in node:
        name, yes, no = node["Fn::If"]
        return chosen(yes if holds(name, parameters) else no, parameters)
    return None if node == {"Ref": "AWS::NoValue"} else node


def exists(name: str, parameters: Mapping[str, str]) -> bool:
    condition = RESOURCES[name].get("Condition")
    return condition is None or holds(condition, parameters)


# stage, AutoScaling -> does the endpoint retain its variant properties on update, is a scalable target registered
DEPLOYMENTS = {
    "dev": ({"Stage": "dev"}, False, False),
    "dev-autoscaling-disabled": ({"Stage": "dev", "AutoScaling": "disabled"}, False, False),
    "prod": ({"Stage": "prod"}, True, True),
    "prod-autoscaling-disabled": ({"Stage": "prod", "AutoScaling": "disabled"}, True, False),
}


@pytest.mark.parametrize("parameters, retains, scales", DEPLOYMENTS.values(), ids=DEPLOYMENTS.keys())
def test_prod_updates_keep_the_count_autoscaling_owns(parameters, retains, scales):
    endpoint = RESOURCES["Endpoint"]["Properties"]
    assert chosen(endpoint["RetainAllVariantProperties"], parameters) is (True if retains else None)
    assert exists("ScalableTarget", parameters) is scales
    assert exists("InvocationsScalingPolicy", parameters) is scales
    assert exists("Invocation5xxAlarm", parameters) is (parameters["Stage"] == "prod")  # rollback alarms stay


def test_no_variant_property_is_taken_back_from_the_new_config():
    """ExcludeRetainedVariantProperties with DesiredInstanceCount would reset the count again."""
    excluded = RESOURCES["Endpoint"]["Properties"].get("ExcludeRetainedVariantProperties", [])
    assert "DesiredInstanceCount" not in json.dumps(excluded)


def test_the_policy_is_attached_to_the_target_and_both_follow_one_condition():
    policy, target = RESOURCES["InvocationsScalingPolicy"], RESOURCES["ScalableTarget"]
    assert policy["Properties"]["ScalingTargetId"] == {"Ref": "ScalableTarget"}
    assert policy["Condition"] == target["Condition"]
    assert target["DependsOn"] == "Endpoint"  # registered once the variant exists


def test_autoscaling_is_on_unless_a_deployment_says_otherwise():
    parameter = TEMPLATE["Parameters"]["AutoScaling"]
    assert parameter["Default"] == "enabled" and parameter["AllowedValues"] == ["enabled", "disabled"]


def test_the_pipeline_never_passes_autoscaling_so_its_deployments_enable_it():
    """Step 2 of an instance type change relies on it: CodePipeline's CloudFormation action sends no value
    for a parameter it is not given, so CloudFormation takes the default, not the previous value."""
    (deploy,) = [a for _, _, a in actions() if a["Name"] == "DeployEndpoint"]
    (create,) = [a for _, _, a in actions() if a["Name"] == "CreateDeployConfig"]
    pipeline = load(PIPELINE)
    params = parse_user_parameters(render(create["Configuration"]["UserParameters"], pipeline),
                                   worker_schema("lambdas.deploy_config.handler"))
    passed = set(template_configuration(params)["Parameters"])
    passed |= set(json.loads(render(deploy["Configuration"]["ParameterOverrides"], pipeline)))
    assert "AutoScaling" not in passed and "InstanceType" in passed


def variant_names(parameters: Mapping[str, str]) -> list[str]:
    config = RESOURCES["EndpointConfig"]["Properties"]
    return [chosen(v, parameters)["VariantName"] for v in config["ProductionVariants"]]


VARIANT_CASES = {
    "prod": {"Stage": "prod", "InstanceType": "ml.m5.large"},
    "prod-other-type": {"Stage": "prod", "InstanceType": "ml.c5.xlarge"},
    "dev": {"Stage": "dev"},
    "dev-serverless": {"Stage": "dev", "ServerlessMemoryMB": "2048"},
}


@pytest.mark.parametrize("parameters", VARIANT_CASES.values(), ids=VARIANT_CASES.keys())
def test_one_variant_whose_name_never_changes(parameters):
    """Blue/green needs the new config's variant name to be the old one (SageMaker deployment guardrails,
    "Exclusions"), and the retained properties are matched by name; the alarms and the target name it too."""
    assert variant_names(parameters) == ["AllTraffic"]
    target = render(RESOURCES["ScalableTarget"]["Properties"]["ResourceId"], TEMPLATE)
    assert target.endswith("/variant/AllTraffic")
    for alarm in resources(TEMPLATE, "AWS::CloudWatch::Alarm").values():
        assert {"Name": "VariantName", "Value": "AllTraffic"} in alarm["Properties"]["Dimensions"]


def test_the_minimum_capacity_is_the_configured_count():
    """With the count retained, a raised InstanceCount reaches the endpoint through the target's minimum."""
    target = RESOURCES["ScalableTarget"]["Properties"]
    assert target["MinCapacity"] == {"Ref": "InstanceCount"}
    assert target["MaxCapacity"] == {"Ref": "MaxInstanceCount"}
