"""Stacks on the stand-in: each resource's handler permissions checked as CloudFormation acts (the stack
role's session, or the caller), a denial failing that resource with CloudFormation's message, and the
stack ending as AWS ends it (ROLLBACK_COMPLETE, UPDATE_ROLLBACK_COMPLETE, DELETE_FAILED, ...)."""
from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mlops_local.cloudformation.stacks import Stacks
from mlops_local.gateway import LocalAws
from mlops_local.runtime import Runtime
from tests.conftest import ROOT

ACCOUNT = "123456789012"
CFN_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "cloudformation.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


# A topic that logs delivery status passes its feedback role: its handlers need iam:PassRole then, not otherwise.
FEEDBACK = [{"Protocol": "sqs", "SuccessFeedbackRoleArn": "arn:aws:iam::123456789012:role/perm-feedback",
             "FailureFeedbackRoleArn": "arn:aws:iam::123456789012:role/perm-feedback"}]


def template(*resources: str, display: str = "one", logged: bool = False) -> str:
    """A bucket (created first) and a topic; `resources` picks which."""
    topic = {"TopicName": "perm-test-topic", "DisplayName": display}
    known: dict[str, Any] = {
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "perm-test-bucket"}},
        "Topic": {"Type": "AWS::SNS::Topic", "DependsOn": "Bucket",
                  "Properties": {**topic, "DeliveryStatusLogging": FEEDBACK} if logged else topic},
        "Later": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "perm-test-later"}},
    }
    chosen = {name: known[name] for name in resources}
    if "Bucket" not in chosen:
        chosen.get("Topic", {}).pop("DependsOn", None)
    return json.dumps({"Resources": chosen})


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    with LocalAws() as local:
        runtime = Runtime(aws=local, workdir=tmp_path_factory.mktemp("perm"), source_root=ROOT)
        Stacks(runtime).register()
        yield runtime


@pytest.fixture
def aws(runtime):
    yield runtime.aws
    runtime.aws.gateway.enforce = True
    cfn, iam = runtime.aws.client("cloudformation"), runtime.aws.client("iam")
    for role in iam.list_roles()["Roles"]:  # a stack is deleted with its role: let it delete everything
        grant(runtime.aws, role["RoleName"], [])
    # newest first: a stack whose role another stack made cannot be deleted once that role is gone, as on AWS
    for stack in sorted(cfn.list_stacks()["StackSummaries"], key=lambda s: s["CreationTime"], reverse=True):
        if stack["StackStatus"] != "DELETE_COMPLETE":
            cfn.delete_stack(StackName=stack["StackId"])
    for role in iam.list_roles()["Roles"]:
        for name in iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]:
            iam.delete_role_policy(RoleName=role["RoleName"], PolicyName=name)
        iam.delete_role(RoleName=role["RoleName"])


def stack_role(aws: LocalAws, name: str, *, denied: list[str] | None = None, trust: dict | None = None) -> str:
    """A stack role allowed everything but `denied` (NotAction)."""
    iam = aws.client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust or CFN_TRUST))["Role"]["Arn"]
    grant(aws, name, denied or [])
    return arn


def grant(aws: LocalAws, role: str, denied: list[str]) -> None:
    statement = {"Sid": "AllButDenied", "Effect": "Allow", "Resource": "*",
                 **({"NotAction": denied} if denied else {"Action": "*"})}
    aws.client("iam").put_role_policy(RoleName=role, PolicyName="stack", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [statement]}))


def events(aws: LocalAws, stack: str) -> list[tuple[str, str, str]]:
    """(logical id, status, reason) oldest first."""
    found = aws.client("cloudformation").describe_stack_events(StackName=stack)["StackEvents"]
    return [(e["LogicalResourceId"], e["ResourceStatus"], e.get("ResourceStatusReason", "")) for e in reversed(found)]


def status(aws: LocalAws, stack: str) -> str:
    return aws.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]


def bucket_exists(aws: LocalAws, name: str) -> bool:
    return name in {b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]}


def topics(aws: LocalAws) -> list[str]:
    return [t["TopicArn"] for t in aws.client("sns").list_topics()["Topics"]]


# -- create ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("withheld", ["sns:CreateTopic", "sns:GetTopicAttributes", "iam:PassRole"],
                         ids=["create-handler", "read-handler", "unexcluded-passrole"])
def test_a_missing_handler_permission_fails_the_resource_and_rolls_the_create_back(aws, runtime, withheld):
    role = stack_role(aws, "perm-stack", denied=[withheld])
    body = template("Bucket", "Topic", logged=withheld == "iam:PassRole")
    aws.client("cloudformation").create_stack(StackName="perm", TemplateBody=body, RoleARN=role)
    assert status(aws, "perm") == "ROLLBACK_COMPLETE"
    found = events(aws, "perm")
    failed = [e for e in found if e[1] == "CREATE_FAILED"]
    assert [e[0] for e in failed] == ["Topic"]
    assert failed[0][2].startswith('Resource handler returned message: "User: arn:aws:sts::123456789012:'
                                   f'assumed-role/perm-stack/AWSCloudFormation is not authorized to perform: '
                                   f'{withheld}')
    assert failed[0][2].endswith("HandlerErrorCode: AccessDenied)")
    assert [(e[0], e[1]) for e in found if e[0] == "perm"] == [
        ("perm", "CREATE_IN_PROGRESS"), ("perm", "ROLLBACK_IN_PROGRESS"), ("perm", "ROLLBACK_COMPLETE")]
    assert ("perm", "ROLLBACK_IN_PROGRESS", "The following resource(s) failed to create: [Topic]. "
            "Rollback requested by user.") in found
    assert ("Bucket", "DELETE_COMPLETE") in [(e[0], e[1]) for e in found]
    assert not bucket_exists(aws, "perm-test-bucket") and topics(aws) == []
    resources = aws.client("cloudformation").describe_stack_resources(StackName="perm")["StackResources"]
    assert resources == []


def test_the_access_log_records_each_resource_operation_as_the_stack_role_session(aws, runtime):
    role = stack_role(aws, "perm-stack", denied=["sns:GetTopicAttributes"])
    since = len(runtime.access_log)
    aws.client("cloudformation").create_stack(StackName="perm", TemplateBody=template("Bucket", "Topic"),
                                              RoleARN=role)
    records = [r for r in runtime.access_log.records(since) if r.service == "cloudformation" and " " in r.operation]
    assert [(r.operation, r.decided.decision if r.decided else None) for r in records] == [
        ("AWS::S3::Bucket create", "allowed"), ("AWS::SNS::Topic create", "denied"),
        ("AWS::S3::Bucket delete", "allowed")]
    assert {r.principal.arn for r in records} == {f"arn:aws:sts::{ACCOUNT}:assumed-role/perm-stack/AWSCloudFormation"}
    actions = [check.action for check in records[0].authorization.checks]
    assert actions[:2] == ["s3:CreateBucket", "s3:PutBucketTagging"] and "s3:GetBucketAcl" in actions


def test_a_denied_rollback_delete_ends_rollback_failed_and_keeps_the_resource(aws):
    role = stack_role(aws, "perm-stack", denied=["sns:GetTopicAttributes", "s3:DeleteBucket"])
    aws.client("cloudformation").create_stack(StackName="perm", TemplateBody=template("Bucket", "Topic"),
                                              RoleARN=role)
    assert status(aws, "perm") == "ROLLBACK_FAILED"
    assert ("Bucket", "DELETE_FAILED") in [(e[0], e[1]) for e in events(aws, "perm")]
    assert bucket_exists(aws, "perm-test-bucket")
    described = aws.client("cloudformation").describe_stacks(StackName="perm")["Stacks"][0]
    assert described["StackStatusReason"] == "The following resource(s) failed to delete: [Bucket]. "


# -- update -----------------------------------------------------------------------------------------------------
def test_a_failed_update_rolls_back_to_the_previous_template(aws):
    role = stack_role(aws, "perm-stack")
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName="perm", TemplateBody=template("Topic"), RoleARN=role)
    assert status(aws, "perm") == "CREATE_COMPLETE"
    (topic,) = topics(aws)
    grant(aws, "perm-stack", ["sns:SetTopicAttributes"])
    cfn.update_stack(StackName="perm", TemplateBody=template("Later", "Topic", display="two"))  # the stack's role
    assert status(aws, "perm") == "UPDATE_ROLLBACK_COMPLETE"
    found = events(aws, "perm")
    assert ("Later", "CREATE_COMPLETE") in [(e[0], e[1]) for e in found]
    (failed,) = [e for e in found if e[1] == "UPDATE_FAILED"]
    assert failed[0] == "Topic" and "not authorized to perform: sns:SetTopicAttributes on resource: " \
        f"arn:aws:sns:us-east-1:{ACCOUNT}:perm-test-topic because no identity-based policy allows" in failed[2]
    assert ("perm", "UPDATE_ROLLBACK_IN_PROGRESS", "The following resource(s) failed to update: [Topic]. ") in found
    assert [e[1] for e in found if e[0] == "perm"][-2:] == [
        "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE"]
    # the previous resources, intact; what the update added, gone
    assert topics(aws) == [topic] and not bucket_exists(aws, "perm-test-later")
    body = cfn.get_template(StackName="perm")["TemplateBody"]  # botocore parses a JSON body
    assert (json.loads(body) if isinstance(body, str) else body) == json.loads(template("Topic"))
    listed = cfn.describe_stack_resources(StackName="perm")["StackResources"]
    assert [(r["LogicalResourceId"], r["PhysicalResourceId"]) for r in listed] == [("Topic", topic)]
    # a later update with the permission goes through
    grant(aws, "perm-stack", [])
    cfn.update_stack(StackName="perm", TemplateBody=template("Later", "Topic", display="two"))
    assert status(aws, "perm") == "UPDATE_COMPLETE" and bucket_exists(aws, "perm-test-later")


# -- delete -------------------------------------------------------------------------------------------------------
def test_a_denied_delete_fails_that_resource_and_the_stack_stays(aws):
    role = stack_role(aws, "perm-stack", denied=["sns:DeleteTopic"])
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName="perm", TemplateBody=template("Bucket", "Topic"), RoleARN=role)
    cfn.delete_stack(StackName="perm")
    assert status(aws, "perm") == "DELETE_FAILED"
    (failed,) = [e for e in events(aws, "perm") if e[1] == "DELETE_FAILED" and e[0] == "Topic"]
    assert "not authorized to perform: sns:DeleteTopic" in failed[2]
    assert len(topics(aws)) == 1 and not bucket_exists(aws, "perm-test-bucket")
    listed = cfn.describe_stack_resources(StackName="perm")["StackResources"]
    assert [r["LogicalResourceId"] for r in listed] == ["Topic"]
    grant(aws, "perm-stack", [])
    cfn.delete_stack(StackName="perm")  # a retry with the permission
    assert topics(aws) == []
    with pytest.raises(ClientError, match="does not exist"):
        status(aws, "perm")


# -- who acts ---------------------------------------------------------------------------------------------------
def test_a_role_cloudformation_cannot_assume_refuses_the_operation(aws):
    lambda_only = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    role = stack_role(aws, "perm-stack", trust=lambda_only)
    with pytest.raises(ClientError) as caught:
        aws.client("cloudformation").create_stack(StackName="perm", TemplateBody=template("Topic"), RoleARN=role)
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert caught.value.response["Error"]["Message"] == f"Role {role} is invalid or cannot be assumed"
    assert topics(aws) == []


def test_without_a_role_the_administrator_caller_creates_everything(aws, runtime):
    since = len(runtime.access_log)
    aws.client("cloudformation").create_stack(StackName="perm", TemplateBody=template("Bucket", "Topic"))
    assert status(aws, "perm") == "CREATE_COMPLETE"
    records = [r for r in runtime.access_log.records(since) if r.operation == "AWS::SNS::Topic create"]
    assert [(r.principal.arn, r.decided.decision) for r in records] == [
        (f"arn:aws:iam::{ACCOUNT}:user/mlops-local", "allowed (administrator)")]


def test_without_a_role_a_role_session_caller_is_checked(aws, runtime):
    """moto creates the resources on the request's thread: the caller is the gateway's current principal."""
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]}
    role = stack_role(aws, "perm-deployer", denied=["sns:GetTopicAttributes"], trust=trust)
    session = aws.client("sts").assume_role(RoleArn=role, RoleSessionName="deployer")["Credentials"]
    cfn = aws.client("cloudformation", aws_access_key_id=session["AccessKeyId"],
                     aws_secret_access_key=session["SecretAccessKey"], aws_session_token=session["SessionToken"])
    cfn.create_stack(StackName="perm", TemplateBody=template("Topic"))
    assert status(aws, "perm") == "ROLLBACK_COMPLETE"
    (failed,) = [e for e in events(aws, "perm") if e[1] == "CREATE_FAILED"]
    assert f"User: arn:aws:sts::{ACCOUNT}:assumed-role/perm-deployer/deployer is not authorized to perform: " \
        "sns:GetTopicAttributes" in failed[2]


def test_with_enforcement_off_the_checks_are_recorded_and_nothing_fails(aws, runtime):
    runtime.aws.gateway.enforce = False
    role = stack_role(aws, "perm-stack", denied=["sns:CreateTopic"])
    since = len(runtime.access_log)
    aws.client("cloudformation").create_stack(StackName="perm", TemplateBody=template("Topic"), RoleARN=role)
    assert status(aws, "perm") == "CREATE_COMPLETE" and len(topics(aws)) == 1
    (record,) = [r for r in runtime.access_log.records(since) if r.operation == "AWS::SNS::Topic create"]
    assert record.decided is None and record.as_dict()["decision"] == "not-enforced"
    assert record.principal.role_arn == role


# -- types moto drops ---------------------------------------------------------------------------------------------
ALARM = json.dumps({"Resources": {
    "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "perm-test-bucket"}},
    "Alarm": {"Type": "AWS::CloudWatch::Alarm", "DependsOn": "Bucket", "Properties": {
        "AlarmName": "perm-alarm", "Namespace": "AWS/SageMaker", "MetricName": "Invocation5XXErrors",
        "ComparisonOperator": "GreaterThanThreshold", "EvaluationPeriods": 1, "Period": 60, "Statistic": "Sum",
        "Threshold": 1}}}})


def test_a_type_moto_drops_is_still_checked_on_create_and_delete(aws):
    """An AWS::CloudWatch::Alarm (stack_models.AlarmModel) is created and deleted only as the role allows."""
    role = stack_role(aws, "perm-stack", denied=["cloudwatch:PutMetricAlarm"])
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName="perm", TemplateBody=ALARM, RoleARN=role)
    assert status(aws, "perm") == "ROLLBACK_COMPLETE"
    assert [(e[0], e[1]) for e in events(aws, "perm") if e[0] == "Alarm"] == [
        ("Alarm", "CREATE_IN_PROGRESS"), ("Alarm", "CREATE_FAILED")]
    cfn.delete_stack(StackName="perm")
    grant(aws, "perm-stack", ["cloudwatch:DeleteAlarms"])
    cfn.create_stack(StackName="perm", TemplateBody=ALARM, RoleARN=role)
    assert status(aws, "perm") == "CREATE_COMPLETE"
    cfn.delete_stack(StackName="perm")
    assert status(aws, "perm") == "DELETE_FAILED" and not bucket_exists(aws, "perm-test-bucket")
    (failed,) = [e for e in events(aws, "perm") if e[1] == "DELETE_FAILED" and e[0] == "Alarm"]
    assert "not authorized to perform: cloudwatch:DeleteAlarms on resource: " \
        f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:perm-alarm" in failed[2]


# -- the real stack roles ---------------------------------------------------------------------------------------
def test_the_endpoint_stack_role_deploys_the_prod_endpoint_stack(aws, runtime):
    """templates/pipeline.yaml's EndpointStackRole, as deployed, holds every handler permission of the prod
    endpoint stack (alarms and scaling included: moto drops those types, their handlers are checked still)."""
    import io
    import zipfile

    s3, cfn = aws.client("s3"), aws.client("cloudformation")
    s3.create_bucket(Bucket="perm-code")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("lambdas/__init__.py", "")
    s3.put_object(Bucket="perm-code", Key="lambdas.zip", Body=archive.getvalue())
    s3.put_object(Bucket="perm-code", Key="pipeline.yaml", Body=(ROOT / "templates" / "pipeline.yaml").read_bytes())
    cfn.create_stack(StackName="perm-pipeline", TemplateURL="https://s3.amazonaws.com/perm-code/pipeline.yaml",
                     Capabilities=["CAPABILITY_NAMED_IAM"], Parameters=[
                         {"ParameterKey": k, "ParameterValue": v} for k, v in
                         {"ProjectName": "mlops", "LambdaCodeBucket": "perm-code",
                          "LambdaCodeKey": "lambdas.zip"}.items()])
    assert status(aws, "perm-pipeline") == "CREATE_COMPLETE"
    package = aws.client("sagemaker").create_model_package(
        ModelPackageGroupName="mlops-models", ModelApprovalStatus="Approved",
        InferenceSpecification={"Containers": [{"Image": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/mlops:1",
                                                "ModelDataUrl": "s3://perm-code/model.tar.gz"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]})
    key = aws.client("kms").list_keys()["Keys"][0]["KeyArn"]
    parameters = {"EndpointName": "mlops-prod", "Stage": "prod", "DataCaptureUri": "s3://perm-code/capture",
                  "ExecutionId": "3f2c1a7e-5b4d-4c3e-9a1b-0d2e3f4a5b6c", "ModelPackageArn": package["ModelPackageArn"],
                  "ExecutionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/mlops-sagemaker-execution", "KmsKeyArn": key}
    since = len(runtime.access_log)
    cfn.create_stack(StackName="perm-endpoint", TemplateBody=(ROOT / "templates" / "endpoint.yaml").read_text(),
                     RoleARN=f"arn:aws:iam::{ACCOUNT}:role/mlops-endpoint-stack",
                     Tags=[{"Key": "Stage", "Value": "prod"}],
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])
    failures = [e for e in events(aws, "perm-endpoint") if e[1].endswith("FAILED")]
    assert status(aws, "perm-endpoint") == "CREATE_COMPLETE", failures
    checked = {r.operation: r.decided.decision for r in runtime.access_log.records(since) if " create" in r.operation}
    assert checked == {f"AWS::{t} create": "allowed" for t in (
        "SageMaker::Model", "SageMaker::EndpointConfig", "SageMaker::Endpoint", "CloudWatch::Alarm",
        "ApplicationAutoScaling::ScalableTarget", "ApplicationAutoScaling::ScalingPolicy")}
    # The prod alarms exist (stack_models.AlarmModel).
    alarms = aws.client("cloudwatch").describe_alarms(AlarmNamePrefix="mlops-prod-")["MetricAlarms"]
    assert {(a["AlarmName"], a.get("Statistic") or a["ExtendedStatistic"]) for a in alarms} == {
        ("mlops-prod-invocation-5xx", "Sum"), ("mlops-prod-model-latency", "p99")}


@pytest.mark.parametrize("change_set_type", ["CREATE", "UPDATE"])
def test_a_change_set_whose_resource_is_denied_rolls_back(aws, change_set_type):
    """What `aws cloudformation deploy` does: CreateChangeSet, then ExecuteChangeSet."""
    role = stack_role(aws, "perm-stack")
    cfn = aws.client("cloudformation")
    if change_set_type == "UPDATE":
        cfn.create_stack(StackName="perm", TemplateBody=template("Topic"), RoleARN=role)
    grant(aws, "perm-stack", ["s3:CreateBucket"])
    change_set = cfn.create_change_set(StackName="perm", ChangeSetName="deploy", ChangeSetType=change_set_type,
                                       TemplateBody=template("Later", "Topic"), RoleARN=role)["Id"]
    cfn.execute_change_set(ChangeSetName=change_set)
    assert status(aws, "perm") == {"CREATE": "ROLLBACK_COMPLETE", "UPDATE": "UPDATE_ROLLBACK_COMPLETE"}[change_set_type]
    (failed,) = [e for e in events(aws, "perm") if e[1] == "CREATE_FAILED"]
    assert failed[0] == "Later" and "not authorized to perform: s3:CreateBucket" in failed[2]
    assert cfn.describe_change_set(ChangeSetName=change_set)["ExecutionStatus"] == "EXECUTE_FAILED"
    assert len(topics(aws)) == (1 if change_set_type == "UPDATE" else 0)
    assert "Outputs" not in cfn.describe_stacks(StackName="perm")["Stacks"][0]
