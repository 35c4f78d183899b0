"""A stack's AWS::S3::Bucket gets the properties moto's CloudFormation drops; the S3 source needs versioning."""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from mlops_local.cloudformation.bucket_properties import lifecycle_rule
from mlops_local.moto_access import backend
from tests.mlops_local.engine_stand import (HERE, actions_of, create_function, create_pipeline, data_source,
                                            lambda_action, wait_done)

ACCOUNT = "123456789012"
LIFECYCLE = {"Rules": [
    {"Id": "ExpireRuns", "Status": "Enabled", "Prefix": "runs/", "ExpirationInDays": {"Ref": "RetentionDays"},
     "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3}}]}


def template(**properties) -> str:
    return json.dumps({
        "Parameters": {"RetentionDays": {"Type": "Number", "Default": "30"}},
        "Resources": {"Data": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "props-data", **properties}}},
        "Outputs": {"Bucket": {"Value": {"Ref": "Data"}}}})


def event_bridge(stand) -> dict | None:
    """The bucket's EventBridgeConfiguration as moto keeps it (None: notifications to EventBridge off)."""
    bucket = backend("s3", ACCOUNT, stand.aws.gateway.region).buckets["props-data"]
    return bucket.notification_configuration.event_bridge if bucket.notification_configuration else None


@pytest.mark.parametrize("rule, expected", [
    pytest.param({"Status": "Enabled", "ExpirationInDays": 5},
                 {"Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": "5"}}, id="no-condition"),
    pytest.param({"Id": "r", "Status": "Disabled", "Prefix": "runs/", "ExpirationDate": "2030-01-01T00:00:00Z"},
                 {"ID": "r", "Status": "Disabled", "Filter": {"Prefix": "runs/"},
                  "Expiration": {"Date": "2030-01-01T00:00:00Z"}}, id="prefix-and-date"),
    pytest.param({"Status": "Enabled", "TagFilters": [{"Key": "k", "Value": "v"}], "ExpiredObjectDeleteMarker": True},
                 {"Status": "Enabled", "Filter": {"Tag": {"Key": "k", "Value": "v"}},
                  "Expiration": {"ExpiredObjectDeleteMarker": "true"}}, id="one-tag"),
    pytest.param({"Status": "Enabled", "Prefix": "p/", "ObjectSizeGreaterThan": 10,
                  "TagFilters": [{"Key": "k", "Value": "v"}], "NoncurrentVersionExpirationInDays": 4},
                 {"Status": "Enabled", "Filter": {"And": {"Prefix": "p/", "ObjectSizeGreaterThan": "10",
                                                          "Tag": [{"Key": "k", "Value": "v"}]}},
                  "NoncurrentVersionExpiration": {"NoncurrentDays": "4"}}, id="several-conditions-under-and"),
    pytest.param({"Status": "Enabled", "Transitions": [{"StorageClass": "GLACIER", "TransitionInDays": 30}],
                  "NoncurrentVersionTransition": {"StorageClass": "STANDARD_IA", "TransitionInDays": 31}},
                 {"Status": "Enabled", "Filter": {"Prefix": ""},
                  "Transition": [{"Days": "30", "StorageClass": "GLACIER"}],
                  "NoncurrentVersionTransition": [{"NoncurrentDays": "31", "StorageClass": "STANDARD_IA"}]},
                 id="transitions-plural-and-singular"),
])
def test_lifecycle_rule_takes_the_api_shape(rule, expected):
    assert lifecycle_rule(rule) == expected


def test_a_stack_bucket_has_the_template_properties_and_an_update_changes_them(stand):
    cfn, s3 = stand.aws.client("cloudformation"), stand.aws.client("s3")
    cfn.create_stack(StackName="props", TemplateBody=template(
        VersioningConfiguration={"Status": "Enabled"}, LifecycleConfiguration=LIFECYCLE,
        NotificationConfiguration={"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
        PublicAccessBlockConfiguration={"BlockPublicAcls": True, "BlockPublicPolicy": "true",
                                        "IgnorePublicAcls": True},
        OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}))
    assert cfn.describe_stacks(StackName="props")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"

    assert s3.get_bucket_versioning(Bucket="props-data")["Status"] == "Enabled"
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket="props-data")["Rules"]
    assert rule["ID"] == "ExpireRuns" and rule["Status"] == "Enabled" and rule["Filter"] == {"Prefix": "runs/"}
    assert rule["Expiration"]["Days"] == 30  # the parameter's value: moto resolved the Ref
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 7
    assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 3
    assert event_bridge(stand) == {}  # enabled (moto's GetBucketNotificationConfiguration leaves it out)
    assert s3.get_public_access_block(Bucket="props-data")["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": False}
    assert s3.get_bucket_ownership_controls(Bucket="props-data")["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]
    put = s3.put_object(Bucket="props-data", Key="runs/a.csv", Body=b"a")
    assert put["VersionId"] not in (None, "null")  # objects get versions, as the S3 source action reads them

    cfn.update_stack(StackName="props", TemplateBody=template(VersioningConfiguration={"Status": "Suspended"}))
    assert cfn.describe_stacks(StackName="props")["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"
    assert s3.get_bucket_versioning(Bucket="props-data")["Status"] == "Suspended"
    with pytest.raises(ClientError, match="NoSuchLifecycleConfiguration"):
        s3.get_bucket_lifecycle_configuration(Bucket="props-data")
    assert event_bridge(stand) is None
    with pytest.raises(ClientError, match="NoSuchPublicAccessBlockConfiguration"):
        s3.get_public_access_block(Bucket="props-data")
    cfn.delete_stack(StackName="props")


@pytest.mark.parametrize("versioning", ["never", "Suspended"])
def test_the_s3_source_action_fails_on_an_unversioned_bucket(stand, versioning):
    bucket = f"unversioned-{versioning.lower()}"
    s3, cp = stand.aws.client("s3"), stand.aws.client("codepipeline")
    s3.create_bucket(Bucket=bucket)
    if versioning != "never":
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": versioning})
    s3.put_object(Bucket=bucket, Key="raw/data.csv", Body=b"a,b\n1,2\n")
    source = data_source()
    source["actions"][0]["configuration"]["S3Bucket"] = bucket
    create_function(stand, f"after-{bucket}", f"{HERE}.sleep_handler")
    create_pipeline(stand, bucket, [source, {"name": "Work", "actions": [lambda_action("Never", f"after-{bucket}")]}])

    execution_id = cp.start_pipeline_execution(name=bucket)["pipelineExecutionId"]
    assert wait_done(stand, bucket, execution_id)["status"] == "Failed"
    actions = actions_of(stand, bucket, execution_id)
    message = actions["DataSource"]["output"]["executionResult"]["errorDetails"]["message"]
    assert f"source bucket {bucket} is not versioned" in message
    assert f"put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled" in message
    assert "Never" not in actions
