"""The prod endpoint stack (templates/endpoint.yaml, Stage=prod) deployed by the CloudFormation deploy action:
the action waits as CloudFormation's endpoint handler does, an update SageMaker rolls back fails it, and an
update keeps the instance count Application Auto Scaling set (RetainAllVariantProperties)."""
from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from mlops_local.cloudformation.stacks import Stacks
from mlops_local.codepipeline.actions.cloudformation import deploy_cloudformation
from mlops_local.codepipeline.actions.context import ActionContext, ActionFailed, ArtifactRef
from mlops_local.sagemaker import variants
from mlops_local.sagemaker.training_jobs import pack_model

from tests.conftest import ROOT
from tests.mlops_local.endpoint_stand import ACCOUNT, BUCKET, IMAGE, ROLE, endpoint_stand, in_service, wait_for
from tests.training.model_files import BY_HAND, CSV_BODY, write_model_dir

OVERFLOWING = [[3e38], [5]]  # real rows overflow (the server answers 500); the warm-up row does not
GOOD_B = [[4], [5]]
BY_HAND_B = [206.0, 130.0, 240.0]
TEMPLATES = ArtifactRef("Templates", BUCKET, "artifacts/templates.zip")


@pytest.fixture(scope="module")
def stand(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("endpoint-stack")
    with endpoint_stand(tmp, health_interval=None, capture_interval=None, metrics_interval=None) as local:
        aws, runtime, endpoints = local
        endpoints.alarm_interval = 0.1
        endpoints.scale_seconds = 0.2
        Stacks(runtime).register()  # the alarm model, handler permissions
        s3, sm = aws.client("s3"), aws.client("sagemaker")
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("endpoint.yaml", (ROOT / "templates" / "endpoint.yaml").read_text())
        s3.put_object(Bucket=BUCKET, Key=TEMPLATES.key, Body=archive.getvalue())
        sm.create_model_package_group(ModelPackageGroupName="stack-models")
        packages = {}
        for name, kernel in (("a", None), ("b", GOOD_B), ("overflowing", OVERFLOWING)):
            tarball = pack_model(write_model_dir(tmp / name, **({"kernel_1": kernel} if kernel else {})),
                                 tmp / f"{name}.tar.gz")
            s3.upload_file(str(tarball), BUCKET, f"{name}/model.tar.gz")
            packages[name] = sm.create_model_package(
                ModelPackageGroupName="stack-models", ModelApprovalStatus="Approved",
                InferenceSpecification={"Containers": [{"Image": IMAGE,
                                                        "ModelDataUrl": f"s3://{BUCKET}/{name}/model.tar.gz"}],
                                        "SupportedContentTypes": ["text/csv"],
                                        "SupportedResponseMIMETypes": ["text/csv"]})["ModelPackageArn"]
        yield aws, runtime, endpoints, packages


def context(stand: Any, stack: str, parameters: dict[str, str], progress: list[str]) -> ActionContext:
    """The DeployProdEndpoint action's context, acting as the stand-in's administrator."""
    aws, runtime = stand[0], stand[1]
    return ActionContext(
        runtime=runtime, pipeline="p", pipeline_arn=f"arn:aws:codepipeline:us-east-1:{ACCOUNT}:p", execution_id="e",
        stage="Production", action="DeployProdEndpoint", action_execution_id="a",
        declaration={"actionTypeId": {"category": "Deploy", "owner": "AWS", "provider": "CloudFormation",
                                      "version": "1"}},
        configuration={"ActionMode": "CREATE_UPDATE", "StackName": stack, "TemplatePath": "Templates::endpoint.yaml",
                       "ParameterOverrides": json.dumps(parameters)},
        inputs=[TEMPLATES], outputs=[], encryption_key=None, account_id=ACCOUNT, region="us-east-1",
        workdir=runtime.workdir, deadline=time.monotonic() + 120, client=aws.client, internal=aws.client,
        session=None, sources=None, stack_applier=None, abandoned=lambda: False,
        progress=lambda **shown: progress.append(shown.get("summary", "")), new_job=lambda token: None,
        end_job=lambda job: None, poll_interval=(1.0, 1.0))


def prod(name: str, package: str, execution: str, **extra: str) -> dict[str, str]:
    """Parameters of the prod stack; each execution names a new model and endpoint config."""
    return {"EndpointName": name, "Stage": "prod", "ModelPackageArn": package, "ExecutionRoleArn": ROLE,
            "ExecutionId": f"{execution}-5b4d-4c3e", "DataCaptureUri": f"s3://{BUCKET}/capture",
            "CanaryWaitSeconds": "1", "TerminationWaitSeconds": "0", **extra}


def predictions(smr: Any, name: str) -> list[float]:
    body = smr.invoke_endpoint(EndpointName=name, Body=CSV_BODY, ContentType="text/csv")["Body"].read()
    return [float(v) for v in body.decode().split()]


def variant(sm: Any, name: str) -> dict[str, Any]:
    """The endpoint's one production variant, as DescribeEndpoint shows it."""
    (found,) = sm.describe_endpoint(EndpointName=name)["ProductionVariants"]
    return found


@pytest.fixture(scope="module")
def smr(stand):
    return stand[0].client("sagemaker-runtime", config=Config(retries={"total_max_attempts": 1}))


def test_an_update_keeps_the_instance_count_autoscaling_set_and_serves_the_new_model(stand, smr):
    aws, runtime, _, packages = stand
    sm, shown = aws.client("sagemaker"), []
    deploy_cloudformation(context(stand, "scaled", prod("scaled", packages["a"], "first"), shown))
    # The action returned once the endpoint was InService, as CloudFormation's create does.
    assert sm.describe_endpoint(EndpointName="scaled")["EndpointStatus"] == "InService"
    assert shown == ["Endpoint scaled is Creating; waiting as CloudFormation does"]
    assert variant(sm, "scaled")["CurrentInstanceCount"] == 1

    sm.update_endpoint_weights_and_capacities(EndpointName="scaled", DesiredWeightsAndCapacities=[
        {"VariantName": "AllTraffic", "DesiredInstanceCount": 3}])
    scaling = sm.describe_endpoint(EndpointName="scaled")
    assert scaling["EndpointStatus"] == "Updating"
    assert (scaling["ProductionVariants"][0]["CurrentInstanceCount"],
            scaling["ProductionVariants"][0]["DesiredInstanceCount"]) == (1, 3)
    in_service(runtime, sm, "scaled")
    assert (variant(sm, "scaled")["CurrentInstanceCount"], variant(sm, "scaled")["DesiredInstanceCount"]) == (3, 3)

    result = deploy_cloudformation(context(stand, "scaled", prod("scaled", packages["b"], "second"), []))

    described = sm.describe_endpoint(EndpointName="scaled")
    assert described["EndpointStatus"] == "InService"       # no wait here: the action waited
    assert described["EndpointConfigName"] == result.variables["EndpointConfigName"]
    assert (variant(sm, "scaled")["CurrentInstanceCount"], variant(sm, "scaled")["DesiredInstanceCount"]) == (3, 3)
    assert variant(sm, "scaled")["CurrentWeight"] == 1.0
    assert predictions(smr, "scaled") == BY_HAND_B


def test_a_rolled_back_update_fails_the_action_and_the_old_model_serves_on(stand, smr):
    aws, runtime, _, packages = stand
    sm, cfn = aws.client("sagemaker"), aws.client("cloudformation")
    first = deploy_cloudformation(context(stand, "rolled", prod("rolled", packages["a"], "first"), []))
    failed: list[ActionFailed] = []

    def deploy() -> None:
        try:
            parameters = prod("rolled", packages["overflowing"], "second", CanaryWaitSeconds="60")
            deploy_cloudformation(context(stand, "rolled", parameters, []))
        except ActionFailed as exc:
            failed.append(exc)

    action = threading.Thread(target=deploy)
    action.start()
    wait_for(runtime, lambda: sm.describe_endpoint(EndpointName="rolled")["EndpointStatus"] == "Updating",
             "the update to start")
    while action.is_alive():  # traffic: one request in ten goes to the canary, which answers 500
        try:
            predictions(smr, "rolled")
        except ClientError:
            pass
    action.join()

    (error,) = failed
    described = sm.describe_endpoint(EndpointName="rolled")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == (
        "InService", first.variables["EndpointConfigName"])
    assert str(error).startswith(f"stack rolled: endpoint rolled was rolled back: it serves endpoint config "
                                 f"{first.variables['EndpointConfigName']}, not the stack's ")
    assert "CloudWatch alarm rolled-invocation-5xx went into ALARM" in str(error)
    events = cfn.describe_stack_events(StackName="rolled")["StackEvents"]
    (event,) = [e for e in events if e["ResourceStatus"] == "UPDATE_FAILED"]
    assert (event["LogicalResourceId"], event["ResourceType"]) == ("Endpoint", "AWS::SageMaker::Endpoint")
    assert "rolled-invocation-5xx" in event["ResourceStatusReason"]
    assert predictions(smr, "rolled") == BY_HAND


def test_weights_and_capacities_are_refused_as_sagemaker_refuses_them(stand):
    aws, runtime, _, packages = stand
    sm = aws.client("sagemaker")
    deploy_cloudformation(context(stand, "refusing", prod("refusing", packages["a"], "first"), []))
    for wanted, says in (([{"VariantName": "Other", "DesiredInstanceCount": 2}], 'The variant name(s) "Other"'),
                         ([{"VariantName": "AllTraffic", "DesiredWeight": 1.0}] * 2, "non-unique")):
        with pytest.raises(ClientError) as caught:
            sm.update_endpoint_weights_and_capacities(EndpointName="refusing", DesiredWeightsAndCapacities=wanted)
        assert caught.value.response["Error"]["Code"] == "ValidationException"
        assert says in caught.value.response["Error"]["Message"]
    sm.update_endpoint_weights_and_capacities(EndpointName="refusing", DesiredWeightsAndCapacities=[
        {"VariantName": "AllTraffic", "DesiredInstanceCount": 2}])
    with pytest.raises(ClientError) as caught:  # Updating: a second change waits, as for UpdateEndpoint
        sm.update_endpoint_weights_and_capacities(EndpointName="refusing", DesiredWeightsAndCapacities=[
            {"VariantName": "AllTraffic", "DesiredInstanceCount": 3}])
    assert "Cannot update in-progress endpoint" in caught.value.response["Error"]["Message"]
    in_service(runtime, sm, "refusing")


# -- the rules, without servers -------------------------------------------------------------------------------
SCALED = [{"VariantName": "AllTraffic", "CurrentInstanceCount": 3, "DesiredInstanceCount": 3, "CurrentWeight": 0.5,
           "DesiredWeight": 0.5}]
NEW_CONFIG = [{"VariantName": "AllTraffic", "CurrentInstanceCount": 1, "DesiredInstanceCount": 1, "CurrentWeight": 1.0,
               "DesiredWeight": 1.0}]


@pytest.mark.parametrize("retain_all, excluded, count, weight", [
    (None, None, 1, 1.0),
    (True, None, 3, 0.5),
    ("true", None, 3, 0.5),                       # as CloudFormation may pass a Boolean
    (False, None, 1, 1.0),
    (True, [{"VariantPropertyType": "DesiredInstanceCount"}], 1, 0.5),
    (True, [{"VariantPropertyType": "DesiredWeight"}], 3, 1.0),
], ids=["default-new-config", "retain-all", "retain-all-string", "retain-false", "count-excluded", "weight-excluded"])
def test_an_update_keeps_what_it_retains(retain_all, excluded, count, weight):
    keep = variants.retained_properties(retain_all, excluded)
    (kept,) = variants.retain(SCALED, NEW_CONFIG, keep)
    assert (kept["CurrentInstanceCount"], kept["DesiredInstanceCount"]) == (count, count)
    assert (kept["CurrentWeight"], kept["DesiredWeight"]) == (weight, weight)


def test_a_new_variant_name_starts_from_its_config():
    (kept,) = variants.retain(SCALED, [{**NEW_CONFIG[0], "VariantName": "Blue"}], frozenset(variants.RETAINABLE))
    assert kept["DesiredInstanceCount"] == 1


def test_desired_values_are_current_once_reached():
    (wanted,) = variants.desired(NEW_CONFIG, [{"VariantName": "AllTraffic", "DesiredInstanceCount": 4}], "c")
    assert (wanted["CurrentInstanceCount"], wanted["DesiredInstanceCount"], wanted["DesiredWeight"]) == (1, 4, 1.0)
    (reached,) = variants.reached([wanted])
    assert (reached["CurrentInstanceCount"], reached["CurrentWeight"]) == (4, 1.0)
