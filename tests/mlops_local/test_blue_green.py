"""Blue/green UpdateEndpoint with canary traffic shifting and automatic rollback on a CloudWatch alarm, the alarm
evaluated from the invocation metrics the stand-in records."""
from __future__ import annotations

import json
import math
import threading
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from mlops_local.sagemaker import blue_green
from mlops_local.sagemaker.endpoint_metrics import ALARM, OK
from mlops_local.sagemaker.training_jobs import pack_model

from tests.mlops_local.endpoint_stand import BUCKET, IMAGE, ROLE, deploy, endpoint_stand, in_service, wait_for
from tests.training.model_files import BY_HAND, CSV_BODY, write_model_dir

# kernel_1 so large that real rows overflow (a 500 from the server: a non-finite prediction) while the
# warm-up row of zeros does not, so the server starts
OVERFLOWING = [[3e38], [5]]
GOOD_B = [[4], [5]]              # price = 4 hidden_0 + 5 hidden_1 + 100
BY_HAND_B = [206.0, 130.0, 240.0]


def canary(size_type: str = "INSTANCE_COUNT", value: int = 1, wait: int = 30, alarms: tuple[str, ...] = ("errors",),
           termination: int = 0) -> dict[str, Any]:
    config: dict[str, Any] = {"BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {"Type": "CANARY", "CanarySize": {"Type": size_type, "Value": value},
                                        "WaitIntervalInSeconds": wait},
        "TerminationWaitInSeconds": termination}}
    if alarms:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms]}
    return config


# -- the policy -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("config, instances, share", [
    (canary("INSTANCE_COUNT", 1), 4, 0.25),
    (canary("CAPACITY_PERCENT", 10), 1, 0.10),
    (canary("INSTANCE_COUNT", 2), 4, 0.5),
], ids=["one-of-four-instances", "ten-percent", "half"])
def test_the_canary_share_is_its_share_of_the_new_fleet(config, instances, share):
    deployment = blue_green.parse(config, instances)
    assert deployment is not None
    assert (deployment.routing, deployment.canary_share, deployment.wait_seconds) == ("CANARY", share, 30.0)
    assert deployment.alarms == ("errors",)


@pytest.mark.parametrize("config, instances, says", [
    (canary("INSTANCE_COUNT", 1), 1, "more than 50%"),
    (canary("CAPACITY_PERCENT", 60), 4, "more than 50%"),
    ({"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
        "Type": "LINEAR", "WaitIntervalInSeconds": 1, "LinearStepSize": {"Type": "INSTANCE_COUNT", "Value": 1}}}},
     4, "LINEAR"),
    ({"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "CANARY", "WaitIntervalInSeconds": 1}}},
     4, "CanarySize is required"),
], ids=["canary-is-the-whole-fleet", "canary-over-half", "linear-not-local", "canary-without-size"])
def test_deployments_the_stand_in_refuses(config, instances, says):
    with pytest.raises(blue_green.InvalidDeployment, match=says):
        blue_green.parse(config, instances)


def test_no_policy_is_no_blue_green():
    assert blue_green.parse(None, 1) is None
    assert blue_green.parse({}, 1) is None


@pytest.mark.parametrize("share", [0.25, 0.1, 0.5, 0.3])
def test_the_canary_gets_its_share_of_every_prefix_of_the_requests(share):
    routed = [blue_green.to_canary(n, share) for n in range(1, 101)]
    for count in range(1, 101):
        assert sum(routed[:count]) == math.floor(count * share)


def test_baking_stops_at_the_first_alarm():
    states = iter([OK, OK, ALARM])
    assert blue_green.bake(("a",), lambda name: next(states), 10.0, 0.01, threading.Event()) == "a"


def test_baking_passes_when_no_alarm_trips():
    asked: list[str] = []
    assert blue_green.bake(("a", "b"), lambda name: asked.append(name) or OK, 0.05, 0.01, threading.Event()) is None
    assert asked[:2] == ["a", "b"] and len(asked) >= 4   # evaluated during the period and at its end


def test_a_stop_ends_baking():
    stop = threading.Event()
    stop.set()
    assert blue_green.bake(("a",), lambda name: OK, 10.0, 1.0, stop) == ""


# -- on the stand-in ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stand(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("blue-green")
    with endpoint_stand(tmp, health_interval=None, capture_interval=None, metrics_interval=None) as local:
        aws, runtime, endpoints = local
        endpoints.alarm_interval = 0.1
        s3 = aws.client("s3")
        for name, kernel in (("overflowing", OVERFLOWING), ("b", GOOD_B)):
            tarball = pack_model(write_model_dir(tmp / name, kernel_1=kernel), tmp / f"{name}.tar.gz")
            s3.upload_file(str(tarball), BUCKET, f"{name}/model.tar.gz")
        yield local


@pytest.fixture(scope="module")
def sm(stand):
    return stand[0].client("sagemaker")


@pytest.fixture(scope="module")
def smr(stand):
    return stand[0].client("sagemaker-runtime", config=Config(retries={"total_max_attempts": 1}))


def new_config(sm: Any, name: str, data: str, instances: int = 4) -> str:
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE,
                    PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/{data}/model.tar.gz"})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large",
        "InitialInstanceCount": instances, "InitialVariantWeight": 1.0}])
    return name


def error_alarm(cloudwatch: Any, name: str, endpoint: str) -> None:
    """An alarm as a prod template would set one: the variant's 5xx rate over a minute."""
    cloudwatch.put_metric_alarm(
        AlarmName=name, Namespace="AWS/SageMaker", MetricName="Invocation5XXErrors", Statistic="Average",
        Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}],
        Period=60, EvaluationPeriods=1, Threshold=0.05, ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching")


def invoke_until_settled(stand: Any, sm: Any, smr: Any, name: str) -> tuple[list[list[float]], int]:
    """Invoke the endpoint until its update ends: (the predictions answered, the requests that failed)."""
    answered: list[list[float]] = []
    failed = 0
    while True:
        try:
            body = smr.invoke_endpoint(EndpointName=name, Body=CSV_BODY, ContentType="text/csv")["Body"].read()
            answered.append([float(v) for v in body.decode().split()])
        except smr.exceptions.ModelError as exc:
            assert exc.response["OriginalStatusCode"] == 500
            failed += 1
        if sm.describe_endpoint(EndpointName=name)["EndpointStatus"] != "Updating":
            return answered, failed


def test_a_canary_whose_model_errors_rolls_back_while_the_old_model_serves(stand, sm, smr):
    aws, runtime, endpoints = stand
    deploy(sm, "bg-rollback")
    in_service(runtime, sm, "bg-rollback")
    error_alarm(aws.client("cloudwatch"), "bg-rollback-errors", "bg-rollback")
    new_config(sm, "bg-rollback-overflowing", "overflowing")
    deployment = canary(wait=60, alarms=("bg-rollback-errors",))
    sm.update_endpoint(EndpointName="bg-rollback", EndpointConfigName="bg-rollback-overflowing",
                       DeploymentConfig=deployment)

    answered, failed = invoke_until_settled(stand, sm, smr, "bg-rollback")

    assert failed >= 1                                     # the canary did serve
    assert failed <= (len(answered) + failed) * 0.25       # no more than the canary's share failed
    assert all(a == BY_HAND for a in answered)             # the rest: the old model
    described = sm.describe_endpoint(EndpointName="bg-rollback")
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == "bg-rollback"
    assert "bg-rollback-errors" in described["FailureReason"] and "rolled back" in described["FailureReason"]
    assert described["LastDeploymentConfig"] == deployment
    alarm = aws.client("cloudwatch").describe_alarms(AlarmNames=["bg-rollback-errors"])["MetricAlarms"][0]
    assert alarm["StateValue"] == "ALARM"
    for _ in range(8):                                      # after the rollback every request is the old model's
        body = smr.invoke_endpoint(EndpointName="bg-rollback", Body=CSV_BODY, ContentType="text/csv")["Body"]
        assert [float(v) for v in body.read().decode().split()] == BY_HAND
    assert endpoints.served("bg-rollback").config_name == "bg-rollback"


def test_a_healthy_canary_takes_all_traffic_after_baking(stand, sm, smr):
    aws, runtime, endpoints = stand
    deploy(sm, "bg-forward")
    in_service(runtime, sm, "bg-forward")
    blue = endpoints.served("bg-forward").process
    error_alarm(aws.client("cloudwatch"), "bg-forward-errors", "bg-forward")
    new_config(sm, "bg-forward-b", "b")
    sm.update_endpoint(EndpointName="bg-forward", EndpointConfigName="bg-forward-b",
                       DeploymentConfig=canary(wait=1, alarms=("bg-forward-errors",)))

    answered, failed = invoke_until_settled(stand, sm, smr, "bg-forward")

    assert failed == 0
    assert {tuple(a) for a in answered} <= {tuple(BY_HAND), tuple(BY_HAND_B)}
    described = sm.describe_endpoint(EndpointName="bg-forward")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "bg-forward-b")
    assert "FailureReason" not in described
    body = smr.invoke_endpoint(EndpointName="bg-forward", Body=CSV_BODY, ContentType="text/csv")["Body"]
    assert [float(v) for v in body.read().decode().split()] == BY_HAND_B
    assert endpoints.served("bg-forward").process is not blue
    wait_for(runtime, lambda: blue.poll() is not None, "the blue fleet to stop (TerminationWaitInSeconds 0)",
             timeout=10)


def test_all_at_once_rolls_back_to_the_old_fleet_when_an_alarm_trips_after_the_shift(stand, sm, smr):
    aws, runtime, endpoints = stand
    deploy(sm, "bg-all")
    in_service(runtime, sm, "bg-all")
    blue = endpoints.served("bg-all").process
    error_alarm(aws.client("cloudwatch"), "bg-all-errors", "bg-all")
    new_config(sm, "bg-all-overflowing", "overflowing", instances=1)
    sm.update_endpoint(EndpointName="bg-all", EndpointConfigName="bg-all-overflowing", DeploymentConfig={
        "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 60}},
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "bg-all-errors"}]}})

    answered, failed = invoke_until_settled(stand, sm, smr, "bg-all")

    assert failed >= 1 and all(a == BY_HAND for a in answered)
    described = sm.describe_endpoint(EndpointName="bg-all")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "bg-all")
    assert "bg-all-errors" in described["FailureReason"]
    assert endpoints.served("bg-all").process is blue and blue.poll() is None   # the old fleet, never stopped
    body = smr.invoke_endpoint(EndpointName="bg-all", Body=CSV_BODY, ContentType="text/csv")["Body"]
    assert [float(v) for v in body.read().decode().split()] == BY_HAND


@pytest.mark.parametrize("name, deployment, says", [
    ("bg-unknown-alarm", canary(alarms=("no-such-alarm",)), "no-such-alarm"),
    ("bg-canary-over-half", canary("CAPACITY_PERCENT", 75), "more than 50%"),
], ids=["unknown-alarm", "canary-over-half"])
def test_an_update_the_stand_in_cannot_honour_is_refused(stand, sm, name: str, deployment: dict[str, Any], says: str):
    deploy(sm, name)
    new_config(sm, f"{name}-b", "b")
    with pytest.raises(ClientError) as caught:
        sm.update_endpoint(EndpointName=name, EndpointConfigName=f"{name}-b", DeploymentConfig=deployment)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert says in caught.value.response["Error"]["Message"]


def stack_template(data: str, short: str) -> str:
    """templates/endpoint.yaml's shape for prod: the Endpoint's DeploymentConfig under a condition, its canary
    size a parameter, its alarm named (moto's CloudFormation has no AWS::CloudWatch::Alarm model)."""
    return json.dumps({
        "Parameters": {"Stage": {"Type": "String"}, "CanaryPercent": {"Type": "Number", "Default": 25},
                       "AlarmName": {"Type": "String"}},
        "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}},
        "Resources": {
            "Model": {"Type": "AWS::SageMaker::Model", "Properties": {
                "ModelName": f"bg-stack-{short}", "ExecutionRoleArn": ROLE,
                "PrimaryContainer": {"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/{data}/model.tar.gz"}}},
            "EndpointConfig": {"Type": "AWS::SageMaker::EndpointConfig", "Properties": {
                "EndpointConfigName": f"bg-stack-{short}",
                "ProductionVariants": [{"VariantName": "AllTraffic",
                                        "ModelName": {"Fn::GetAtt": ["Model", "ModelName"]},
                                        "InstanceType": "ml.m5.large", "InitialInstanceCount": 4,
                                        "InitialVariantWeight": 1}]}},
            "Endpoint": {"Type": "AWS::SageMaker::Endpoint", "Properties": {
                "EndpointName": "bg-stack",
                "EndpointConfigName": {"Fn::GetAtt": ["EndpointConfig", "EndpointConfigName"]},
                "DeploymentConfig": {"Fn::If": ["IsProd", {
                    "BlueGreenUpdatePolicy": {
                        "TrafficRoutingConfiguration": {
                            "Type": "CANARY", "WaitIntervalInSeconds": 60,
                            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": {"Ref": "CanaryPercent"}}},
                        "TerminationWaitInSeconds": 0},
                    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": {"Ref": "AlarmName"}}]}},
                    {"Ref": "AWS::NoValue"}]}}},
        },
        "Outputs": {"EndpointName": {"Value": {"Fn::GetAtt": ["Endpoint", "EndpointName"]}}},
    })


def test_a_stack_update_deploys_blue_green_as_its_endpoint_declares(stand, sm, smr):
    aws, runtime, endpoints = stand
    cfn = aws.client("cloudformation")
    parameters = [{"ParameterKey": "Stage", "ParameterValue": "prod"},
                  {"ParameterKey": "AlarmName", "ParameterValue": "bg-stack-errors"}]
    cfn.create_stack(StackName="bg-stack", TemplateBody=stack_template("model", "1"), Parameters=parameters)
    outputs = cfn.describe_stacks(StackName="bg-stack")["Stacks"][0]["Outputs"]
    name = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "EndpointName")
    assert name == "bg-stack"  # the EndpointName property, as CloudFormation names it (moto would not)
    error_alarm(aws.client("cloudwatch"), "bg-stack-errors", name)
    blue_config = in_service(runtime, sm, name)["EndpointConfigName"]
    cfn.update_stack(StackName="bg-stack", TemplateBody=stack_template("overflowing", "2"), Parameters=parameters)

    answered, failed = invoke_until_settled(stand, sm, smr, name)

    assert 1 <= failed <= (len(answered) + failed) * 0.25
    described = sm.describe_endpoint(EndpointName=name)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", blue_config)
    assert "bg-stack-errors" in described["FailureReason"]
    routing = described["LastDeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["CanarySize"] == {"Type": "CAPACITY_PERCENT", "Value": 25}
