"""AWS::CloudWatch::Alarm on the stand-in: moto's CloudFormation drops the type; stack_models.AlarmModel
puts the alarm in moto's CloudWatch as PutMetricAlarm does, so DescribeAlarms shows what was declared."""
from __future__ import annotations

import json
from typing import Any

import pytest

from mlops_local.cloudformation.stack_requests import alarm_request
from mlops_local.cloudformation.stacks import Stacks
from mlops_local.gateway import LocalAws
from mlops_local.runtime import Runtime
from tests.conftest import ROOT

ACCOUNT, REGION = "123456789012", "us-east-1"
DIMENSIONS = [{"Name": "EndpointName", "Value": "demo-prod"}, {"Name": "VariantName", "Value": "AllTraffic"}]
ERRORS = {"AlarmName": "demo-prod-invocation-5xx", "AlarmDescription": "5xx errors", "Namespace": "AWS/SageMaker",
          "MetricName": "Invocation5XXErrors", "Dimensions": DIMENSIONS, "Statistic": "Sum", "Period": "60",
          "EvaluationPeriods": 2, "DatapointsToAlarm": "2", "Threshold": "1",
          "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching",
          "Tags": [{"Key": "team", "Value": "ml"}, {"Key": "stage", "Value": "prod"}]}
LATENCY = {"Namespace": "AWS/SageMaker", "MetricName": "ModelLatency", "Dimensions": DIMENSIONS,
           "ExtendedStatistic": "p99", "Unit": "Microseconds", "Period": 60, "EvaluationPeriods": 3,
           "Threshold": 500000, "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "missing"}


def template(errors: dict[str, Any], latency: dict[str, Any]) -> str:
    return json.dumps({
        "Resources": {"Errors": {"Type": "AWS::CloudWatch::Alarm", "Properties": errors},
                      "Latency": {"Type": "AWS::CloudWatch::Alarm", "Properties": latency}},
        "Outputs": {"ErrorsName": {"Value": {"Ref": "Errors"}},
                    "ErrorsArn": {"Value": {"Fn::GetAtt": ["Errors", "Arn"]}},
                    "LatencyName": {"Value": {"Ref": "Latency"}},
                    "LatencyArn": {"Value": {"Fn::GetAtt": ["Latency", "Arn"]}}}})


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    with LocalAws() as local:
        Stacks(Runtime(aws=local, workdir=tmp_path_factory.mktemp("alarms"), source_root=ROOT)).register()
        yield local


def outputs(aws, stack: str) -> dict[str, str]:
    described = aws.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    assert described["StackStatus"].endswith("_COMPLETE"), described["StackStatus"]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def alarm(aws, name: str) -> dict[str, Any]:
    (found,) = aws.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return found


def tags(aws, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in aws.client("cloudwatch").list_tags_for_resource(ResourceARN=arn)["Tags"]}


@pytest.fixture(scope="module")
def stack(aws):
    aws.client("cloudformation").create_stack(StackName="alarms", TemplateBody=template(ERRORS, LATENCY))
    return outputs(aws, "alarms")


def test_ref_is_the_name_and_getatt_arn_the_alarm_arn(stack):
    assert stack["ErrorsName"] == "demo-prod-invocation-5xx"
    assert stack["ErrorsArn"] == f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:demo-prod-invocation-5xx"
    assert stack["LatencyName"].startswith("alarms-Latency-") and len(stack["LatencyName"]) > len("alarms-Latency-")
    assert stack["LatencyArn"] == f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{stack['LatencyName']}"


@pytest.mark.parametrize("logical, declared", [("Errors", ERRORS), ("Latency", LATENCY)],
                         ids=["statistic", "extended-statistic"])
def test_describe_alarms_shows_the_alarm_as_declared(aws, stack, logical, declared):
    shown = alarm(aws, stack[f"{logical}Name"])
    for key, value in declared.items():
        if key in ("Tags", "AlarmName"):
            continue
        expected = float(value) if key == "Threshold" else int(value) if key in (
            "Period", "EvaluationPeriods", "DatapointsToAlarm") else value
        assert shown[key] == expected, key
    assert shown["AlarmArn"] == stack[f"{logical}Arn"] and shown["StateValue"]
    assert ("ExtendedStatistic" in shown) == (logical == "Latency") and ("Statistic" in shown) == (logical == "Errors")


def test_the_declared_tags_are_on_the_alarm(aws, stack):
    assert tags(aws, stack["ErrorsArn"]) == {"team": "ml", "stage": "prod"}
    assert tags(aws, stack["LatencyArn"]) == {}


def test_update_changes_the_alarm_keeps_its_name_state_and_retags(aws, stack):
    cloudwatch = aws.client("cloudwatch")
    cloudwatch.set_alarm_state(AlarmName=ERRORS["AlarmName"], StateValue="ALARM", StateReason="test")
    errors = {**ERRORS, "Threshold": 5, "Tags": [{"Key": "team", "Value": "ops"}]}
    latency = {**LATENCY, "ExtendedStatistic": "p90", "EvaluationPeriods": 5}
    aws.client("cloudformation").update_stack(StackName="alarms", TemplateBody=template(errors, latency))
    updated = outputs(aws, "alarms")
    assert updated == stack  # the generated name stays while AlarmName stays absent
    shown = alarm(aws, ERRORS["AlarmName"])
    assert shown["Threshold"] == 5.0 and shown["StateValue"] == "ALARM"  # an update leaves the state
    assert tags(aws, stack["ErrorsArn"]) == {"team": "ops"}
    latest = alarm(aws, stack["LatencyName"])
    assert latest["ExtendedStatistic"] == "p90" and latest["EvaluationPeriods"] == 5


def test_a_new_alarm_name_replaces_the_alarm(aws, stack):
    renamed = {**ERRORS, "AlarmName": "demo-prod-5xx", "Threshold": 5, "Tags": [{"Key": "team", "Value": "ops"}]}
    aws.client("cloudformation").update_stack(
        StackName="alarms", TemplateBody=template(renamed, {**LATENCY, "ExtendedStatistic": "p90",
                                                            "EvaluationPeriods": 5}))
    assert outputs(aws, "alarms")["ErrorsName"] == "demo-prod-5xx"
    names = {a["AlarmName"] for a in aws.client("cloudwatch").describe_alarms()["MetricAlarms"]}
    assert "demo-prod-5xx" in names and ERRORS["AlarmName"] not in names


def test_delete_stack_removes_the_alarms(aws, stack):
    aws.client("cloudformation").delete_stack(StackName="alarms")
    assert aws.client("cloudwatch").describe_alarms()["MetricAlarms"] == []


@pytest.mark.parametrize("props, problem", [
    ({**LATENCY, "EvaluationPeriod": 3}, "EvaluationPeriod"),
    ({**LATENCY, "Dimensions": [{"Name": "EndpointName"}]}, "Value"),
    ({**LATENCY, "WarmUpConfiguration": {}}, "WarmUpConfiguration"),
], ids=["misspelled-property", "dimension-without-value", "not-modelled"])
def test_a_malformed_alarm_fails_loudly(props, problem):
    with pytest.raises(Exception) as caught:
        alarm_request("x", props)
    assert problem in str(caught.value)


def test_a_stack_with_a_malformed_alarm_rolls_back(aws):
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName="bad-alarm", TemplateBody=template(ERRORS, {**LATENCY, "Stat": "p99"}))
    assert cfn.describe_stacks(StackName="bad-alarm")["Stacks"][0]["StackStatus"] == "ROLLBACK_COMPLETE"
    (failed,) = [e for e in cfn.describe_stack_events(StackName="bad-alarm")["StackEvents"]
                 if e["ResourceStatus"] == "CREATE_FAILED"]
    assert failed["LogicalResourceId"] == "Latency" and "Stat" in failed.get("ResourceStatusReason", ""), failed
    assert aws.client("cloudwatch").describe_alarms()["MetricAlarms"] == []  # the created one rolled back
