"""Every Lambda function logs JSON at an explicit application level: with Text, Lambda's Python runtime
leaves the root logger at WARNING and the workers' INFO lines never reach CloudWatch."""
from __future__ import annotations

import boto3
import pytest

from tests.templates.cfn import ALL_TEMPLATES, load, resources

FUNCTIONS = [(path, name, resource) for path in ALL_TEMPLATES
             for name, resource in resources(load(path), "AWS::Lambda::Function").items()]


def lambda_enum(shape: str) -> list[str]:
    """The values Lambda's API accepts for a LoggingConfig member (botocore's model)."""
    model = boto3.session.Session().client("lambda", region_name="us-east-1").meta.service_model
    return list(model.shape_for(shape).enum)


def test_there_are_functions_to_check():
    assert {path.name for path, _, _ in FUNCTIONS} == {"pipeline.yaml", "test-lambda.yaml"}
    assert len(FUNCTIONS) >= 9


@pytest.mark.parametrize("path, name, resource", FUNCTIONS, ids=[f"{p.stem}-{n}" for p, n, _ in FUNCTIONS])
def test_every_function_logs_json_at_the_templates_level(path, name, resource):
    config = resource["Properties"]["LoggingConfig"]
    assert config["LogFormat"] == "JSON"
    assert config["ApplicationLogLevel"] == {"Ref": "LogLevel"}
    assert config["SystemLogLevel"] in lambda_enum("SystemLogLevel")
    assert "LogGroup" in config  # the stack's group, with its retention


@pytest.mark.parametrize("path", sorted({p for p, _, _ in FUNCTIONS}), ids=lambda p: p.name)
def test_the_log_level_parameter_takes_what_lambda_takes(path):
    parameter = load(path)["Parameters"]["LogLevel"]
    assert parameter["Default"] == "INFO"
    assert sorted(parameter["AllowedValues"]) == sorted(lambda_enum("ApplicationLogLevel"))
