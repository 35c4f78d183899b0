"""Endpoints served by local model-server processes, behind the gateway's SageMaker API.

One stand-in for the module: moto keeps the records, `Endpoints` runs the servers as the model's execution
role. Models are
small with known weights (tests/training/model_files.py), so predictions are checked by hand and
against training.predictor.Predictor.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import ANY

from lambdas.job import run_job
from mlops_local.sagemaker.endpoints import Endpoints
from mlops_local.sagemaker import execution_role
from mlops_local.gateway import LocalAws
from mlops_local.moto_access import backend
from mlops_local.runtime import Runtime
from mlops_local.sagemaker.training_jobs import pack_model
from training.predictor import Predictor

from tests.conftest import ROOT, load_event
from tests.lambdas.pipeline_stubs import expect_success, stubbed_codepipeline
from tests.mlops_local.sagemaker_requests import REPOSITORY_ARN, create_role, execution_statements, role_session_arn
from tests.training.model_files import BY_HAND, RECORDS, SPEC, write_model_dir

ACCOUNT = "123456789012"
IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/mlops-training:c0ffee0"
UNBUILT_IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/never-built:1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/mlops-sagemaker"
BUCKET = "endpoint-models"
CSV_BODY = "".join(",".join(r) + "\n" for r in RECORDS).encode()
KERNEL_1_B = [[4], [5]]          # price = 4 hidden_0 + 5 hidden_1 + 100
BY_HAND_B = [206.0, 130.0, 240.0]
SETTLED_WITHIN = 60.0


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    a = write_model_dir(root / "a")
    b = write_model_dir(root / "b", kernel_1=KERNEL_1_B)
    broken = write_model_dir(root / "broken")
    (broken / "dense.npz").unlink()
    return {"a": a, "b": b, "broken": broken}


@pytest.fixture(scope="module")
def local(tmp_path_factory, models):
    """(LocalAws, Runtime, Endpoints), with the model tarballs in S3; every server stops at the end."""
    with LocalAws() as aws:
        runtime = Runtime(aws, tmp_path_factory.mktemp("runtime"), source_root=ROOT)
        runtime.images.add(IMAGE, ROOT / "src" / "training" / "Dockerfile")
        endpoints = Endpoints(runtime, health_interval=None)  # health: test_endpoint_health.py
        endpoints.register()
        create_role(aws.client("iam"), ROLE.rsplit("/", 1)[1], execution_statements(BUCKET))
        try:
            s3 = aws.client("s3")
            s3.create_bucket(Bucket=BUCKET)
            for name, model_dir in models.items():
                tarball = pack_model(model_dir, model_dir.parent / f"{name}.tar.gz")
                s3.upload_file(str(tarball), BUCKET, f"{name}/model.tar.gz")
            yield aws, runtime, endpoints
        finally:
            processes = [endpoints.served(name).process for name in list(endpoints._endpoints)]
            endpoints.close()
            assert all(p.poll() is not None for p in processes if p is not None)


@pytest.fixture(scope="module")
def sm(local):
    return local[0].client("sagemaker")


@pytest.fixture(scope="module")
def smr(local):
    return local[0].client("sagemaker-runtime", config=Config(retries={"total_max_attempts": 1}))


def model_data(name: str) -> str:
    return f"s3://{BUCKET}/{name}/model.tar.gz"


def deploy(sm, name: str, data: str = "a", image: str = IMAGE, endpoint: str | None = None, role: str = ROLE) -> str:
    """Model + endpoint config named `name`; an endpoint too when `endpoint` is given."""
    sm.create_model(ModelName=name, ExecutionRoleArn=role,
                    PrimaryContainer={"Image": image, "ModelDataUrl": model_data(data)})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}])
    if endpoint:
        sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=name)
    return name


def settle(local, sm, name: str, timeout: float = SETTLED_WITHIN) -> dict:
    """DescribeEndpoint once the endpoint is neither Creating nor Updating (woken by runtime.changes)."""
    changes = local[1].changes
    deadline = time.monotonic() + timeout
    while True:
        seen = changes.version
        described = sm.describe_endpoint(EndpointName=name)
        if described["EndpointStatus"] not in ("Creating", "Updating"):
            return described
        left = deadline - time.monotonic()
        assert left > 0, f"{name} still {described['EndpointStatus']} after {timeout:.0f} s"
        changes.wait(seen, min(left, 1.0))


def predictions(smr, name: str, body: bytes = CSV_BODY, accept: str = "text/csv") -> list[float]:
    answer = smr.invoke_endpoint(EndpointName=name, Body=body, ContentType="text/csv", Accept=accept)
    text = answer["Body"].read().decode()
    if accept == "application/json":
        assert answer["ContentType"] == "application/json"
        return json.loads(text)["predictions"]
    assert answer["ContentType"] == "text/csv"
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    return [float(line) for line in text.splitlines()]


# -- create, invoke, errors --------------------------------------------------------------------
def test_create_endpoint_goes_creating_then_in_service_and_serves_the_model(local, sm, smr, models):
    deploy(sm, "ep-a-1", endpoint="ep-a")
    assert sm.describe_endpoint(EndpointName="ep-a")["EndpointStatus"] == "Creating"

    described = settle(local, sm, "ep-a")

    assert described["EndpointStatus"] == "InService" and "FailureReason" not in described
    assert described["EndpointConfigName"] == "ep-a-1"
    assert described["ProductionVariants"][0]["DeployedImages"][0]["SpecifiedImage"] == IMAGE
    expected = Predictor.load(models["a"]).predict_records(RECORDS).tolist()
    assert expected == pytest.approx(BY_HAND)
    assert predictions(smr, "ep-a") == pytest.approx(expected)
    assert predictions(smr, "ep-a", accept="application/json") == pytest.approx(BY_HAND)
    served = local[2].served("ep-a")
    assert served.process.poll() is None
    assert served.model_dir == local[1].workdir / "endpoints" / "ep-a" / "1" / "model"


def test_a_malformed_row_is_a_model_error_with_the_original_400(local, sm, smr):
    settle(local, sm, "ep-a")
    with pytest.raises(smr.exceptions.ModelError) as caught:
        smr.invoke_endpoint(EndpointName="ep-a", Body=b"not-a-record\n", ContentType="text/csv",
                            Accept="text/csv")
    response = caught.value.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == 400
    assert "row 1" in json.loads(response["OriginalMessage"])["error"]
    assert response["LogStreamArn"].endswith("/aws/sagemaker/Endpoints/ep-a")


def test_an_unsupported_content_type_is_a_model_error_with_the_original_415(local, sm, smr):
    settle(local, sm, "ep-a")
    with pytest.raises(smr.exceptions.ModelError) as caught:
        smr.invoke_endpoint(EndpointName="ep-a", Body=b"x", ContentType="application/x-npy")
    assert caught.value.response["OriginalStatusCode"] == 415


def test_an_unknown_endpoint_is_a_validation_error_not_canned_data(smr):
    with pytest.raises(ClientError) as caught:
        smr.invoke_endpoint(EndpointName="no-such-endpoint", Body=CSV_BODY, ContentType="text/csv")
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert error["Message"] == f"Endpoint no-such-endpoint of account {ACCOUNT} not found."
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_list_endpoints_overlays_the_real_status(local, sm):
    deploy(sm, "ep-unbuilt-1", image=UNBUILT_IMAGE, endpoint="ep-unbuilt")
    settle(local, sm, "ep-unbuilt")
    settle(local, sm, "ep-a")
    statuses = {e["EndpointName"]: e["EndpointStatus"] for e in sm.list_endpoints()["Endpoints"]}
    assert statuses["ep-a"] == "InService" and statuses["ep-unbuilt"] == "Failed"
    failed = [e["EndpointName"] for e in sm.list_endpoints(StatusEquals="Failed")["Endpoints"]]
    assert "ep-unbuilt" in failed and "ep-a" not in failed


@pytest.mark.parametrize("image, data, reason", [
    (UNBUILT_IMAGE, "a", f"image {UNBUILT_IMAGE} is not known here"),
    (IMAGE, "broken", "lacks dense.npz"),
    (IMAGE, "missing", f'Failed to download model data for container "container_1" from URL: '
                       f'"s3://{BUCKET}/missing/model.tar.gz". Please ensure'),
], ids=["unknown-image", "server-exits", "no-model-data"])
def test_an_endpoint_that_cannot_serve_fails_with_its_reason(local, sm, smr, image, data, reason):
    name = f"ep-fail-{data}-{'unbuilt' if image == UNBUILT_IMAGE else 'built'}"
    deploy(sm, f"{name}-1", data=data, image=image, endpoint=name)
    described = settle(local, sm, name)
    assert described["EndpointStatus"] == "Failed"
    assert reason in described["FailureReason"]
    assert local[2].served(name).process is None
    with pytest.raises(ClientError) as caught:
        smr.invoke_endpoint(EndpointName=name, Body=CSV_BODY, ContentType="text/csv")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert "is Failed, not InService" in caught.value.response["Error"]["Message"]


def test_create_endpoint_twice_is_refused(local, sm):
    with pytest.raises(ClientError) as caught:
        sm.create_endpoint(EndpointName="ep-a", EndpointConfigName="ep-a-1")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "Cannot create already existing endpoint" in caught.value.response["Error"]["Message"]


def test_a_server_that_died_is_a_model_error_without_an_original_status(local, sm, smr):
    deploy(sm, "ep-dies-1", endpoint="ep-dies")
    settle(local, sm, "ep-dies")
    process = local[2].served("ep-dies").process
    process.kill()
    process.wait()
    with pytest.raises(smr.exceptions.ModelError) as caught:
        smr.invoke_endpoint(EndpointName="ep-dies", Body=CSV_BODY, ContentType="text/csv")
    assert "OriginalStatusCode" not in caught.value.response
    assert "exited with status" in caught.value.response["Error"]["Message"]


# -- acting as the model's execution role ------------------------------------------------------------
def test_the_server_fetches_its_model_and_runs_as_the_execution_role(local, sm):
    mark = len(local[1].access_log)
    deploy(sm, "ep-role-1", endpoint="ep-role")
    assert settle(local, sm, "ep-role")["EndpointStatus"] == "InService"
    process = local[2].served("ep-role").process
    environ = dict(item.split("=", 1) for item in
                   Path(f"/proc/{process.pid}/environ").read_text().split("\0") if "=" in item)
    session = execution_role.session(local[1], ROLE)  # inference's session (aws:SourceArn arn:...:*)
    assert environ["AWS_ACCESS_KEY_ID"] == session.access_key_id != "testing"
    assert environ["AWS_SESSION_TOKEN"] == session.session_token
    acted = {(a.service, a.operation) for a in local[1].access_log.records(mark)
             if a.principal.arn == role_session_arn(ROLE.rsplit("/", 1)[1])}
    assert {("s3", "GetObject"), ("ecr", "BatchGetImage")} <= acted


@pytest.mark.parametrize("action, reason, resource", [
    ("s3:GetObject", f'Failed to download model data for container "container_1" from URL: '
                     f'"s3://{BUCKET}/a/model.tar.gz". Please ensure that there is an object located at the URL and '
                     "that the role passed to CreateModel has permissions to download the object.",
     f'"arn:aws:s3:::{BUCKET}/a/model.tar.gz"'),
    ("ecr:BatchGetImage", "The role '{role}' does not have BatchGetImage permission for the image: "
                          f"'{IMAGE}'.", REPOSITORY_ARN),
], ids=["lacks-get-object-on-model-data", "lacks-batch-get-image"])
def test_an_execution_role_that_lacks_an_action_fails_the_endpoint(local, sm, action, reason, resource):
    name = "ep-lacks-" + action.split(":")[1].lower()
    role = create_role(local[0].client("iam"), f"role-{name}", execution_statements(BUCKET, without=(action,)))
    deploy(sm, f"{name}-1", endpoint=name, role=role)
    described = settle(local, sm, name)
    assert described["EndpointStatus"] == "Failed"
    assert described["FailureReason"].startswith(reason.format(role=role))
    assert (f"User: {role_session_arn(f'role-{name}')} is not authorized to perform: {action} on resource: "
            f"{resource} because no identity-based policy allows the {action} action") in described["FailureReason"]
    assert local[2].served(name).process is None


@pytest.mark.parametrize("role_name", ["trusts-lambda", None], ids=["role-trusts-lambda", "role-does-not-exist"])
def test_create_model_refuses_a_role_sagemaker_cannot_assume(local, sm, role_name):
    role = f"arn:aws:iam::{ACCOUNT}:role/nobody"
    if role_name:
        role = create_role(local[0].client("iam"), role_name, [], service="lambda.amazonaws.com")
    with pytest.raises(ClientError) as caught:
        sm.create_model(ModelName=f"untrusted-{role_name}", ExecutionRoleArn=role,
                        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": model_data("a")})
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert caught.value.response["Error"]["Message"] == (
        f"Could not assume role {role}. Please ensure that the role exists and allows principal "
        "'sagemaker.amazonaws.com' to assume the role.")
    with pytest.raises(ClientError):
        sm.describe_model(ModelName=f"untrusted-{role_name}")


# -- update and delete ------------------------------------------------------------------------
def test_update_endpoint_swaps_to_the_new_model_and_stops_the_old_server(local, sm, smr):
    deploy(sm, "ep-up-1", data="a", endpoint="ep-up")
    settle(local, sm, "ep-up")
    old = local[2].served("ep-up").process
    deploy(sm, "ep-up-2", data="b")

    sm.update_endpoint(EndpointName="ep-up", EndpointConfigName="ep-up-2")
    updating = sm.describe_endpoint(EndpointName="ep-up")
    assert updating["EndpointStatus"] == "Updating"
    assert updating["EndpointConfigName"] == "ep-up-1"
    assert updating["PendingDeploymentSummary"]["EndpointConfigName"] == "ep-up-2"
    assert predictions(smr, "ep-up") == pytest.approx(BY_HAND)  # the old fleet serves meanwhile

    described = settle(local, sm, "ep-up")
    assert described["EndpointStatus"] == "InService" and described["EndpointConfigName"] == "ep-up-2"
    assert predictions(smr, "ep-up") == pytest.approx(BY_HAND_B)
    assert old.poll() is not None
    assert local[2].served("ep-up").process.poll() is None


def test_a_failed_update_keeps_the_old_model_in_service(local, sm, smr):
    deploy(sm, "ep-keep-1", data="a", endpoint="ep-keep")
    settle(local, sm, "ep-keep")
    deploy(sm, "ep-keep-2", image=UNBUILT_IMAGE)
    sm.update_endpoint(EndpointName="ep-keep", EndpointConfigName="ep-keep-2")
    described = settle(local, sm, "ep-keep")
    assert described["EndpointStatus"] == "InService" and described["EndpointConfigName"] == "ep-keep-1"
    assert described["FailureReason"].startswith("Update to endpoint configuration ep-keep-2 failed")
    assert UNBUILT_IMAGE in described["FailureReason"]
    assert predictions(smr, "ep-keep") == pytest.approx(BY_HAND)


@pytest.mark.parametrize("endpoint, config, message", [
    ("no-such-endpoint", "ep-a-1", "Could not find endpoint"),
    ("ep-a", "no-such-config", "Could not find endpoint configuration"),
    ("ep-unbuilt", "ep-a-1", "Cannot update failed endpoint"),
], ids=["missing-endpoint", "missing-config", "failed-endpoint"])
def test_update_endpoint_errors(local, sm, endpoint, config, message):
    settle(local, sm, "ep-a")
    with pytest.raises(ClientError) as caught:
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert message in caught.value.response["Error"]["Message"]


def test_delete_endpoint_stops_its_server(local, sm, smr):
    deploy(sm, "ep-del-1", endpoint="ep-del")
    settle(local, sm, "ep-del")
    process = local[2].served("ep-del").process

    sm.delete_endpoint(EndpointName="ep-del")

    assert process.poll() is not None and local[2].served("ep-del") is None
    with pytest.raises(ClientError) as caught:
        sm.describe_endpoint(EndpointName="ep-del")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as caught:
        smr.invoke_endpoint(EndpointName="ep-del", Body=CSV_BODY, ContentType="text/csv")
    assert caught.value.response["Error"]["Code"] == "ValidationError"


# -- model packages and CloudFormation --------------------------------------------------------
@pytest.fixture(scope="module")
def packages(sm):
    """Two approved packages of one group: model a and model b."""
    sm.create_model_package_group(ModelPackageGroupName="endpoint-tests")
    arns = {}
    for data in ("a", "b"):
        arns[data] = sm.create_model_package(
            ModelPackageGroupName="endpoint-tests", ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": model_data(data)}],
                                    "SupportedContentTypes": ["text/csv"],
                                    "SupportedResponseMIMETypes": ["text/csv"]})["ModelPackageArn"]
    return arns


def test_a_model_from_a_model_package_is_served(local, sm, smr, packages):
    sm.create_model(ModelName="ep-pkg-1", ExecutionRoleArn=ROLE,
                    Containers=[{"ModelPackageName": packages["b"]}])
    sm.create_endpoint_config(EndpointConfigName="ep-pkg-1", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "ep-pkg-1", "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName="ep-pkg", EndpointConfigName="ep-pkg-1")
    assert settle(local, sm, "ep-pkg")["EndpointStatus"] == "InService"
    assert predictions(smr, "ep-pkg") == pytest.approx(BY_HAND_B)


def endpoint_template(package_arn: str, short: str) -> str:
    """The shape of templates/endpoint.yaml that moto's CloudFormation creates (moto needs a
    PrimaryContainer, and names the resources itself)."""
    return json.dumps({
        "Resources": {
            "Model": {"Type": "AWS::SageMaker::Model", "Properties": {
                "ModelName": f"cfn-{short}", "ExecutionRoleArn": ROLE,
                "PrimaryContainer": {"ModelPackageName": package_arn}}},
            "EndpointConfig": {"Type": "AWS::SageMaker::EndpointConfig", "Properties": {
                "EndpointConfigName": f"cfn-{short}",
                "ProductionVariants": [{"VariantName": "AllTraffic",
                                        "ModelName": {"Fn::GetAtt": ["Model", "ModelName"]},
                                        "InstanceType": "ml.m5.large", "InitialInstanceCount": 1,
                                        "InitialVariantWeight": 1}]}},
            "Endpoint": {"Type": "AWS::SageMaker::Endpoint", "Properties": {
                "EndpointName": "cfn-endpoint",
                "EndpointConfigName": {"Fn::GetAtt": ["EndpointConfig", "EndpointConfigName"]}}},
        },
        "Outputs": {"EndpointName": {"Value": {"Fn::GetAtt": ["Endpoint", "EndpointName"]}}},
    })


def stack_endpoint(cfn, stack: str) -> str:
    outputs = cfn.describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
    return next(o["OutputValue"] for o in outputs if o["OutputKey"] == "EndpointName")


def test_endpoints_of_a_cloudformation_stack_are_served_swapped_and_stopped(local, sm, smr, packages):
    cfn = local[0].client("cloudformation")
    cfn.create_stack(StackName="endpoint-stack", TemplateBody=endpoint_template(packages["a"], "1"))
    name = stack_endpoint(cfn, "endpoint-stack")
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Creating"
    assert settle(local, sm, name)["EndpointStatus"] == "InService"
    assert predictions(smr, name) == pytest.approx(BY_HAND)
    first = local[2].served(name).process

    cfn.update_stack(StackName="endpoint-stack", TemplateBody=endpoint_template(packages["b"], "2"))
    assert stack_endpoint(cfn, "endpoint-stack") == name
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Updating"
    described = settle(local, sm, name)
    assert described["EndpointStatus"] == "InService"
    assert predictions(smr, name) == pytest.approx(BY_HAND_B)
    assert first.poll() is not None
    second = local[2].served(name).process

    cfn.delete_stack(StackName="endpoint-stack")
    assert second.poll() is not None and local[2].served(name) is None


def test_an_endpoint_nobody_reported_is_noticed_on_first_use(local, sm, smr):
    """An endpoint that reached moto around the gateway's hooks (a deployer that forgot to call
    reconcile) is served from its first DescribeEndpoint or InvokeEndpoint, not reported InService."""
    deploy(sm, "ep-quiet-1")
    backend("sagemaker", ACCOUNT, local[0].gateway.region).create_endpoint("ep-quiet", "ep-quiet-1", [])
    with pytest.raises(ClientError) as caught:
        smr.invoke_endpoint(EndpointName="ep-quiet", Body=CSV_BODY, ContentType="text/csv")
    assert "is Creating, not InService" in caught.value.response["Error"]["Message"]
    assert settle(local, sm, "ep-quiet")["EndpointStatus"] == "InService"
    assert predictions(smr, "ep-quiet") == pytest.approx(BY_HAND)


# -- the TestEndpoint worker against a served endpoint ----------------------------------------
def test_the_endpoint_test_worker_passes_against_a_served_endpoint(local, sm, models, tmp_path):
    from lambdas.endpoint_test import verify_endpoint

    aws = local[0]
    settle(local, sm, "ep-a")
    s3 = aws.client("s3")
    SPEC.save(tmp_path / "features.json")
    s3.upload_file(str(tmp_path / "features.json"), BUCKET, "runs/x/etl/features.json")
    rows = [",".join([*SPEC.input_columns, SPEC.target])] + [
        ",".join([*record, str(price)]) for record, price in zip(RECORDS, BY_HAND)]
    s3.put_object(Bucket=BUCKET, Key="runs/x/etl/endpoint-test/part-00000.csv",
                  Body=("\n".join(rows) + "\n").encode())
    params = {"endpoint_name": "ep-a", "test_data_uri": f"s3://{BUCKET}/runs/x/etl/endpoint-test/",
              "features_uri": f"s3://{BUCKET}/runs/x/etl/features.json", "evaluation_rmse": 1.0,
              "batch_size": 2}
    codepipeline, stub = stubbed_codepipeline()
    expect_success(stub, executionDetails=ANY, outputVariables=ANY)

    def work(job):
        return verify_endpoint(job, sagemaker=aws.client("sagemaker"), s3=s3,
                               runtime=aws.client("sagemaker-runtime"))

    with stub:
        reported = run_job(load_event(user_parameters=params), work, codepipeline)
    stub.assert_no_pending_responses()
    assert reported["result"] == "success", reported
    assert reported["variables"]["Rows"] == "3"
    assert float(reported["variables"]["SampleRmse"]) < 1e-3
