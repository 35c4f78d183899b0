"""EventBridge on the stand-in: S3's events on a bucket with EventBridge enabled, matched against the
deployed rules, start the pipeline as the rule target's role (trigger CloudWatchEvent, the rule's ARN).

The stack below is deployed through the stand-in's CloudFormation, as templates/pipeline.yaml's
DataBucket, PipelineEventsRole and DataSourceRule are.
"""
from __future__ import annotations

import json
import time

import pytest

from mlops_local.events import s3_event
from mlops_local.gateway import now
from tests.mlops_local.engine_stand import HERE, create_function, create_pipeline, lambda_action, wait_done, wait_for

PIPELINE = "events-pipeline"
BUCKET, QUIET = "events-data-bucket", "events-quiet-bucket"
KEY = "raw/events.csv"
ARN = "arn:aws:codepipeline:us-east-1:123456789012:" + PIPELINE


def rule(bucket: str, key: str, role: str) -> dict:
    return {"Type": "AWS::Events::Rule", "Properties": {
        "State": "ENABLED",
        "EventPattern": {"source": ["aws.s3"], "detail-type": ["Object Created"],
                         "detail": {"bucket": {"name": [bucket]}, "object": {"key": [key]}}},
        "Targets": [{"Id": "pipeline", "Arn": ARN, "RoleArn": {"Fn::GetAtt": [role, "Arn"]}}]}}


def role(trusted: str, allowed: bool) -> dict:
    properties: dict = {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": trusted}, "Action": "sts:AssumeRole"}]}}
    if allowed:
        properties["Policies"] = [{"PolicyName": "start", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "codepipeline:StartPipelineExecution", "Resource": ARN}]}}]
    return {"Type": "AWS::IAM::Role", "Properties": properties}


TEMPLATE = {"AWSTemplateFormatVersion": "2010-09-09", "Resources": {
    "DataBucket": {"Type": "AWS::S3::Bucket", "Properties": {
        "BucketName": BUCKET,
        "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}}},
    "QuietBucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": QUIET}},  # no EventBridge: no events
    "EventsRole": role("events.amazonaws.com", allowed=True),
    "DeniedRole": role("events.amazonaws.com", allowed=False),
    "UntrustingRole": role("lambda.amazonaws.com", allowed=True),
    "DataRule": rule(BUCKET, KEY, "EventsRole"),
    "QuietRule": rule(QUIET, KEY, "EventsRole"),
    "DeniedRule": rule(BUCKET, "raw/denied.csv", "DeniedRole"),
    "UntrustedRule": rule(BUCKET, "raw/untrusted.csv", "UntrustingRole"),
    # templates/pipeline.yaml's SourceChangeRule: branch updates only
    "BranchRule": {"Type": "AWS::Events::Rule", "Properties": {"State": "ENABLED", "EventPattern": {
        "source": ["aws.codecommit"], "detail-type": ["CodeCommit Repository State Change"],
        "resources": ["arn:aws:codecommit:us-east-1:123456789012:events-repo"],
        "detail": {"event": ["referenceUpdated"], "referenceType": ["branch"], "referenceName": ["model"]}},
        "Targets": [{"Id": "pipeline", "Arn": ARN, "RoleArn": {"Fn::GetAtt": ["EventsRole", "Arn"]}}]}}}}


@pytest.fixture(scope="module")
def deployed(stand):
    stand.aws.client("cloudformation").create_stack(StackName="events", TemplateBody=json.dumps(TEMPLATE),
                                                    Capabilities=["CAPABILITY_IAM"])
    # moto's CloudFormation does not apply VersioningConfiguration; the S3 source reads object versions
    stand.aws.client("s3").put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    create_function(stand, "events-work", f"{HERE}.sleep_handler")
    create_pipeline(stand, PIPELINE, [
        {"name": "Source", "actions": [{
            "name": "DataSource", "actionTypeId": {"category": "Source", "owner": "AWS", "provider": "S3",
                                                   "version": "1"},
            "configuration": {"S3Bucket": BUCKET, "S3ObjectKey": KEY, "PollForSourceChanges": "false"},
            "outputArtifacts": [{"name": "RawData"}]}]},
        {"name": "Work", "actions": [lambda_action("Work", "events-work")]}], mode="PARALLEL")
    return stand


def executions(stand) -> list[dict]:
    return stand.aws.client("codepipeline").list_pipeline_executions(
        pipelineName=PIPELINE)["pipelineExecutionSummaries"]


def rule_arn(name: str) -> str:
    from moto.events.models import events_backends

    rules = events_backends["123456789012"]["us-east-1"].event_buses["default"].rules
    return next(r.arn for r in rules.values() if name in r.name)


def put(s3, key: str, body: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def copy(s3, key: str, body: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key="staging/copy.csv", Body=body)
    s3.copy_object(Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": "staging/copy.csv"})


def multipart(s3, key: str, body: bytes) -> None:
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    part = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=1, Body=body)
    s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})


@pytest.mark.parametrize("write", [put, copy, multipart], ids=["put-object", "copy-object", "multipart-upload"])
def test_a_new_data_object_starts_the_pipeline_through_the_rule(deployed, write):
    s3 = deployed.aws.client("s3")
    before = {e["pipelineExecutionId"] for e in executions(deployed)}
    write(s3, KEY, f"a,b\n1,{write.__name__}\n".encode())
    new = wait_for(lambda: [e for e in executions(deployed) if e["pipelineExecutionId"] not in before],
                   what="the execution the upload starts")
    assert len(new) == 1
    assert new[0]["trigger"] == {"triggerType": "CloudWatchEvent", "triggerDetail": rule_arn("DataRule")}
    execution = wait_done(deployed, PIPELINE, new[0]["pipelineExecutionId"])
    version = s3.head_object(Bucket=BUCKET, Key=KEY)["VersionId"]
    assert (execution["status"], execution["artifactRevisions"][0]["revisionId"]) == ("Succeeded", version)


@pytest.mark.parametrize("bucket, key, outcome", [
    (BUCKET, "raw/other.csv", None),               # no rule matches the key
    (QUIET, KEY, None),                            # the bucket sends no EventBridge events
    (BUCKET, "raw/denied.csv", "not authorized to perform: codepipeline:StartPipelineExecution"),
    (BUCKET, "raw/untrusted.csv", "events.amazonaws.com"),  # the role does not trust EventBridge
], ids=["other-key", "bucket-without-eventbridge", "role-not-allowed", "role-not-trusting-events"])
def test_no_execution_without_a_matching_rule_an_enabled_bucket_and_a_permitted_role(deployed, bucket, key, outcome):
    before = len(executions(deployed))
    delivered = len(deployed.engine.events.delivered)
    deployed.aws.client("s3").put_object(Bucket=bucket, Key=key, Body=b"a\n1\n")
    if outcome:
        failure = wait_for(lambda: deployed.engine.events.delivered[delivered:], what="the failed invocation")
        assert failure[0]["outcome"].startswith("failed") and outcome in failure[0]["outcome"], failure
    else:
        time.sleep(0.5)
        assert deployed.engine.events.delivered[delivered:] == []
    assert len(executions(deployed)) == before


def test_the_event_has_s3s_shape():
    event = s3_event("b", "us-east-1", "raw/x.csv", 5, '"abc"', "v1", "PutObject", "123456789012", now())
    assert {k: event[k] for k in ("version", "detail-type", "source", "resources")} == {
        "version": "0", "detail-type": "Object Created", "source": "aws.s3", "resources": ["arn:aws:s3:::b"]}
    assert event["time"].endswith("Z") and len(event["time"]) == 20
    assert event["detail"]["object"] | {"sequencer": ""} == {"key": "raw/x.csv", "size": 5, "etag": "abc",
                                                             "version-id": "v1", "sequencer": ""}
    assert event["detail"]["reason"] == "PutObject"


def codecommit_event(event: str, branch: str) -> dict:
    """A CodeCommit Repository State Change event (CodeCommit User Guide, "Monitoring CodeCommit events in
    Amazon EventBridge"); pushes do not reach the stand-in, so the test sends what CodeCommit would."""
    return {"version": "0", "id": "1", "detail-type": "CodeCommit Repository State Change",
            "source": "aws.codecommit", "account": "123456789012", "time": "2026-01-01T00:00:00Z",
            "region": "us-east-1", "resources": ["arn:aws:codecommit:us-east-1:123456789012:events-repo"],
            "detail": {"event": event, "repositoryName": "events-repo", "referenceType": "branch",
                       "referenceName": branch, "referenceFullName": f"refs/heads/{branch}", "commitId": "a" * 40}}


@pytest.mark.parametrize("event, branch, starts", [
    ("referenceUpdated", "model", True), ("referenceCreated", "model", False), ("referenceUpdated", "other", False),
], ids=["branch-updated", "branch-created", "other-branch"])
def test_the_source_change_rule_starts_on_branch_updates_only(deployed, event, branch, starts):
    before = len(executions(deployed))
    matched = deployed.engine.events.put(codecommit_event(event, branch))
    assert matched == ([rule_arn("BranchRule")] if starts else [])
    if starts:
        new = wait_for(lambda: executions(deployed)[0] if len(executions(deployed)) > before else None,
                       what="the execution the push starts")
        assert new["trigger"] == {"triggerType": "CloudWatchEvent", "triggerDetail": rule_arn("BranchRule")}
        wait_done(deployed, PIPELINE, new["pipelineExecutionId"])
    else:
        assert len(executions(deployed)) == before
