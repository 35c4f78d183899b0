"""Stacks: moto's CloudFormation creates, updates and deletes the types it used to drop."""
from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from mlops_local.gateway import LocalAws
from tests.conftest import ROOT
from mlops_local.runtime import Runtime
from mlops_local.cloudformation.stack_models import install_models
from mlops_local.cloudformation.stack_requests import (camel, conform, pipeline_request, project_request,
                                                       security_configuration_request)
from mlops_local.cloudformation.stacks import Stacks

PIPELINE_TEMPLATE = (ROOT / "templates" / "pipeline.yaml").read_text(encoding="utf-8")
ACCOUNT = "123456789012"
CODE_BUCKET = "stacks-test-code"
STAGES = ["Source", "Build", "DataAndFeatureEngineering", "Training", "Evaluation", "Deployment", "Approval",
          "Production"]
ACTIONS = {
    "Source": [("ModelSource", 1, "ModelSource"), ("EtlSource", 1, "EtlSource"),
               ("TestSource", 1, "TestSource"), ("DataSource", 1, "DataSource")],
    "Build": [("BuildTrainingImage", 1, "BuildTraining"), ("BuildTestImage", 1, "BuildTest"),
              ("DeployTestFunction", 2, "TestFunction")],
    "DataAndFeatureEngineering": [("SubmitEtl", 1, "EtlJob"), ("MonitorEtl", 2, "Etl")],
    "Training": [("SubmitTraining", 1, "TrainingJob"), ("MonitorTraining", 2, "Training")],
    "Evaluation": [("SubmitEvaluation", 1, "EvaluationJob"), ("MonitorEvaluation", 2, "Evaluation")],
    "Deployment": [("CreateDeployConfig", 1, "DeployConfig"), ("RegisterModel", 1, "Registry"),
                   ("DeployEndpoint", 2, "Endpoint"), ("TestEndpoint", 3, "EndpointTest")],
    "Approval": [("ApproveForProd", 1, "Approval")],
    "Production": [("PromoteModel", 1, "Promotion"), ("CreateProdDeployConfig", 1, "ProdDeployConfig"),
                   ("DeployProdEndpoint", 2, "ProdEndpoint"),
                   ("TestProdEndpoint", 3, "ProdEndpointTest")],
}


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    with LocalAws() as local:
        Stacks(Runtime(aws=local, workdir=tmp_path_factory.mktemp("stacks"), source_root=ROOT)).register()
        s3 = local.client("s3")
        s3.create_bucket(Bucket=CODE_BUCKET)
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("lambdas/__init__.py", "")
        s3.put_object(Bucket=CODE_BUCKET, Key="lambdas.zip", Body=archive.getvalue())
        yield local


@pytest.fixture(scope="module")
def stacks(aws, tmp_path_factory):
    return Stacks(Runtime(aws=aws, workdir=tmp_path_factory.mktemp("render"), source_root=ROOT))


def parameters(**values: str) -> list[dict]:
    values = {"LambdaCodeBucket": CODE_BUCKET, "LambdaCodeKey": "lambdas.zip", **values}
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


# -- CloudFormation properties -> API requests --------------------------------------------------
def _shape(service: str, operation: str, *path: str):
    from botocore.session import get_session

    shape = get_session().get_service_model(service).operation_model(operation).input_shape
    for name in path:
        while shape.type_name == "list":
            shape = shape.member
        shape = shape.members[name]
    return shape


@pytest.mark.parametrize("value, service, operation, path, expected", [
    ("2", "glue", "CreateJob", ("NumberOfWorkers",), 2),
    (False, "codepipeline", "CreatePipeline", ("pipeline", "stages", "actions", "configuration"), None),
    ("0.0625", "glue", "CreateJob", ("MaxCapacity",), 0.0625),
    ("TRUE", "codebuild", "CreateProject", ("environment", "privilegedMode"), True),
    (60, "codebuild", "CreateProject", ("description",), "60"),
    ({"Version": "2012-10-17"}, "s3", "PutBucketPolicy", ("Policy",), '{"Version": "2012-10-17"}'),
    ("kept", "glue", "CreateJob", ("Description",), "kept"),
], ids=["integer-from-number-parameter", "map-of-strings", "double", "boolean", "string-from-number",
        "json-document", "string-unchanged"])
def test_conform_types_scalars_as_the_api_does(value, service, operation, path, expected):
    shape = _shape(service, operation, *path)
    if shape.type_name == "map":
        assert conform({"PollForSourceChanges": value, "N": 3300}, shape) == {
            "PollForSourceChanges": "false", "N": "3300"}
    else:
        assert conform(value, shape) == expected


def test_camel_keeps_configuration_keys_and_renames():
    assert camel({"ActionTypeId": {"Category": "Source"}, "Configuration": {"BranchName": "main"},
                  "InputArtifacts": [{"Name": "A"}]}, opaque=("Configuration",)) == {
        "actionTypeId": {"category": "Source"}, "configuration": {"BranchName": "main"},
        "inputArtifacts": [{"name": "A"}]}
    assert camel({"Source": {"BuildSpec": "b.yml"}}, rename={"BuildSpec": "buildspec"}) == {
        "source": {"buildspec": "b.yml"}}


def test_pipeline_request_is_the_api_shape():
    props = {
        "RoleArn": "arn:aws:iam::123456789012:role/r", "PipelineType": "V2", "ExecutionMode": "QUEUED",
        "RestartExecutionOnUpdate": True,
        "ArtifactStore": {"Type": "S3", "Location": "bucket", "EncryptionKey": {"Id": "k", "Type": "KMS"}},
        "Variables": [{"Name": "QualityThreshold", "DefaultValue": 600}],
        "Stages": [{"Name": "Source", "Actions": [{
            "Name": "Data", "RunOrder": "1", "Namespace": "DataSource",
            "ActionTypeId": {"Category": "Source", "Owner": "AWS", "Provider": "S3", "Version": 1},
            "Configuration": {"S3Bucket": "b", "PollForSourceChanges": False},
            "OutputArtifacts": [{"Name": "RawData"}]}]},
            {"Name": "Build", "Actions": [{  # a pipeline has at least two stages
                "Name": "Build", "ActionTypeId": {"Category": "Build", "Owner": "AWS", "Provider": "CodeBuild",
                                                  "Version": "1"},
                "Configuration": {"ProjectName": "p-build"}, "InputArtifacts": [{"Name": "RawData"}]}]}],
        "Tags": [{"Key": "Project", "Value": "p"}],
    }
    request = pipeline_request("p-pipeline", props)
    pipeline = request["pipeline"]
    assert request["tags"] == [{"key": "Project", "value": "p"}]
    assert pipeline["name"] == "p-pipeline" and "restartExecutionOnUpdate" not in pipeline
    assert pipeline["artifactStore"] == {"type": "S3", "location": "bucket",
                                         "encryptionKey": {"id": "k", "type": "KMS"}}
    assert pipeline["variables"] == [{"name": "QualityThreshold", "defaultValue": "600"}]
    action = pipeline["stages"][0]["actions"][0]
    assert action["runOrder"] == 1 and action["actionTypeId"]["version"] == "1"
    assert action["configuration"] == {"S3Bucket": "b", "PollForSourceChanges": "false"}


@pytest.mark.parametrize("build, props, field", [
    (pipeline_request, {"RoleArn": "r", "Stages": [], "Bogus": 1}, "bogus"),
    (project_request, {"Source": {"Type": "CODEPIPELINE"}, "Artifacts": {"Type": "CODEPIPELINE"},
                       "ServiceRole": "r"}, "environment"),
    (security_configuration_request, {"EncryptionConfiguration": {"S3Encryptions": [{"Mode": "x"}]}}, "Mode"),
], ids=["unknown-property", "missing-required", "wrong-nested-member"])
def test_a_mapping_mistake_fails_loudly(build, props, field):
    with pytest.raises(ParamValidationError, match=field):
        build("name", props)


def test_install_models_is_idempotent():
    first, second = install_models(), install_models()
    assert first == second and "AWS::CodePipeline::Pipeline" in first


SHORT_FORMS = """
Conditions:
  Wanted: !Not [!Condition Unwanted]
Resources:
  Topic:
    Type: AWS::SNS::Topic
    Properties:
      TopicName: !Sub "${AWS::StackName}-${Suffix}"
      Tags: [{Key: k, Value: !Select [0, !Split [",", !Ref Csv]]}, {Key: n, Value: !GetAtt Other.Arn}]
"""


@pytest.mark.parametrize("template", [
    *(path.read_text(encoding="utf-8") for path in sorted((ROOT / "templates").glob("*.yaml"))),
    SHORT_FORMS,
    json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "t"}}}}),
], ids=[*(path.name for path in sorted((ROOT / "templates").glob("*.yaml"))), "short-forms", "json"])
def test_templates_parse_as_moto_parses_them(aws, template):
    """libyaml's parser (stacks.parse_template, installed on moto's Stack and ChangeSet) reads every template
    into the same dict as moto's pure-Python one, with the installed short forms (`!Condition` included)."""
    import yaml
    from moto.cloudformation import models
    from yaml.parser import ParserError
    from yaml.scanner import ScannerError

    from mlops_local.cloudformation.stacks import parse_template

    yaml.add_multi_constructor("", models.yaml_tag_constructor)
    try:
        expected = yaml.load(template, Loader=yaml.Loader)
    except (ParserError, ScannerError):
        expected = json.loads(template)
    assert parse_template(template) == expected
    assert models.Stack.parse_template(template) == expected  # what register() installed
    if template == SHORT_FORMS:
        assert expected["Conditions"]["Wanted"] == {"Fn::Not": [{"Condition": "Unwanted"}]}


# -- the resolver: moto's, with real physical ids (and ours for the types we provide) -------------
INTRINSICS = """
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Prefix: {Type: String, Default: intr}
  Flag: {Type: String, Default: "yes", AllowedValues: ["yes", "no"]}
  Csv: {Type: String, Default: "a,b,c"}
Conditions:
  IsYes: !Equals [!Ref Flag, "yes"]
  IsNo: !Not [!Condition IsYes]
  Both: !And [!Condition IsYes, !Equals [!Ref Prefix, intr]]
  Either: !Or [!Condition IsNo, !Condition IsYes]
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Properties: {BucketName: !Sub "${Prefix}-bucket-${AWS::AccountId}"}
  Role:
    Type: AWS::IAM::Role
    Properties:
      RoleName: !Sub ${Prefix}-role
      AssumeRolePolicyDocument:
        Statement: [{Effect: Allow, Principal: {Service: codebuild.amazonaws.com}, Action: sts:AssumeRole}]
  Project:
    Type: AWS::CodeBuild::Project
    Properties:
      Name: !Join ["-", [!Ref Prefix, project]]
      Description: !If [IsNo, unused, !Ref AWS::NoValue]
      ServiceRole: !GetAtt Role.Arn
      Source: {Type: NO_SOURCE, BuildSpec: "version: 0.2"}
      Artifacts: {Type: NO_ARTIFACTS}
      Environment: {Type: LINUX_CONTAINER, ComputeType: BUILD_GENERAL1_SMALL, Image: "aws/codebuild/standard:7.0"}
  Logs:
    Type: AWS::Logs::LogGroup
    Properties: {LogGroupName: !Sub "/aws/lambda/${Prefix}-fn"}
  SkippedGroup:
    Type: AWS::SageMaker::ModelPackageGroup
    Condition: IsNo
    Properties: {ModelPackageGroupName: !Sub "${Prefix}-skipped"}
Outputs:
  RefParameter: {Value: !Ref Prefix}
  Region: {Value: !Ref AWS::Region}
  AccountId: {Value: !Ref AWS::AccountId}
  Partition: {Value: !Ref AWS::Partition}
  StackName: {Value: !Ref AWS::StackName}
  UrlSuffix: {Value: !Ref AWS::URLSuffix}
  RefBucket: {Value: !Ref Bucket}
  GetAttRoleArn: {Value: !GetAtt Role.Arn}
  GetAttProvidedArn: {Value: !GetAtt Project.Arn}
  GetAttLogGroupArn: {Value: !GetAtt Logs.Arn}
  RefProvided: {Value: !Ref Project}
  SubString: {Value: !Sub "arn:${AWS::Partition}:s3:::${Bucket}/${Role.Arn}"}
  SubList: {Value: !Sub ["${A}-${B}", {A: !Ref Prefix, B: !Select [1, !Split [",", !Ref Csv]]}]}
  SubLiteral: {Value: !Sub "${!NotResolved}"}
  Join: {Value: !Join [":", [a, !Ref Prefix]]}
  SelectSplit: {Value: !Select [2, !Split [",", !Ref Csv]]}
  IfTrue: {Value: !If [IsYes, "on", "off"]}
  IfFalse: {Value: !If [IsNo, "on", "off"]}
  IfAnd: {Value: !If [Both, "on", "off"]}
  IfOr: {Value: !If [Either, "on", "off"]}
  GetAZs: {Value: !Select [0, !GetAZs ""]}
  Exported:
    Value: exported-value
    Export: {Name: !Sub "${AWS::StackName}-Exported"}
"""

IMPORTER = """
Resources:
  Group:
    Type: AWS::SageMaker::ModelPackageGroup
    Properties:
      ModelPackageGroupName: !Join ["-", [!ImportValue intrinsics-Exported, group]]
      ModelPackageGroupDescription: imported
Outputs:
  Imported: {Value: !ImportValue intrinsics-Exported}
  GroupArn: {Value: !Ref Group}
"""


@pytest.fixture(scope="module")
def rendered(aws, stacks):
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName="intrinsics", TemplateBody=INTRINSICS, Capabilities=["CAPABILITY_NAMED_IAM"])
    cfn.create_stack(StackName="importer", TemplateBody=IMPORTER)
    return {"intrinsics": stacks.render("intrinsics"), "importer": stacks.render("importer")}


@pytest.mark.parametrize("stack, output, expected", [
    ("intrinsics", "RefParameter", "intr"),
    ("intrinsics", "Region", "us-east-1"),
    ("intrinsics", "AccountId", ACCOUNT),
    ("intrinsics", "Partition", "aws"),
    ("intrinsics", "StackName", "intrinsics"),
    ("intrinsics", "UrlSuffix", "amazonaws.com"),
    ("intrinsics", "RefBucket", f"intr-bucket-{ACCOUNT}"),
    ("intrinsics", "GetAttRoleArn", f"arn:aws:iam::{ACCOUNT}:role/intr-role"),
    ("intrinsics", "GetAttProvidedArn", f"arn:aws:codebuild:us-east-1:{ACCOUNT}:project/intr-project"),
    # CloudFormation's LogGroup Arn ends in :* (so a policy on it covers the streams); moto's does not.
    ("intrinsics", "GetAttLogGroupArn", f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/lambda/intr-fn:*"),
    ("intrinsics", "RefProvided", "intr-project"),
    ("intrinsics", "SubString", f"arn:aws:s3:::intr-bucket-{ACCOUNT}/arn:aws:iam::{ACCOUNT}:role/intr-role"),
    ("intrinsics", "SubList", "intr-b"),
    ("intrinsics", "SubLiteral", "${NotResolved}"),
    ("intrinsics", "Join", "a:intr"),
    ("intrinsics", "SelectSplit", "c"),
    ("intrinsics", "IfTrue", "on"),
    ("intrinsics", "IfFalse", "off"),
    ("intrinsics", "IfAnd", "on"),
    ("intrinsics", "IfOr", "on"),
    ("intrinsics", "GetAZs", "us-east-1a"),
    ("importer", "Imported", "exported-value"),
    ("importer", "GroupArn", f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package-group/exported-value-group"),
], ids=lambda value: value if isinstance(value, str) and len(value) < 20 else None)
def test_intrinsics_resolve_to_real_values(rendered, aws, stack, output, expected):
    assert rendered[stack]["Outputs"][output] == expected
    described = aws.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
    assert {o["OutputKey"]: o["OutputValue"] for o in described}[output] == expected


def test_render_resolves_properties_and_skips_false_conditions(rendered, aws):
    resources = rendered["intrinsics"]["Resources"]
    assert "SkippedGroup" not in resources
    assert "Description" not in resources["Project"]["Properties"]  # AWS::NoValue
    assert resources["Project"]["Properties"]["ServiceRole"] == f"arn:aws:iam::{ACCOUNT}:role/intr-role"
    assert rendered["intrinsics"]["Parameters"]["Flag"] == "yes"
    with pytest.raises(ClientError) as caught:
        aws.client("sagemaker").describe_model_package_group(ModelPackageGroupName="intr-skipped")
    assert caught.value.response["Error"]["Code"] == "ValidationException"


# -- the pipeline stack -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline_template_url(aws):
    """The pipeline template is over CloudFormation's 51,200-byte TemplateBody limit: from S3, as
    `aws cloudformation deploy --s3-bucket` (scripts/deploy.sh) sends it."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="templates-bucket")
    s3.put_object(Bucket="templates-bucket", Key="pipeline.yaml", Body=PIPELINE_TEMPLATE.encode())
    return "https://s3.amazonaws.com/templates-bucket/pipeline.yaml"


@pytest.fixture(scope="module")
def pipeline_stack(aws, pipeline_template_url):
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName="demo-pipeline", TemplateURL=pipeline_template_url,
                     Parameters=parameters(ProjectName="demo", RepositoryName="demo-code"),
                     Capabilities=["CAPABILITY_NAMED_IAM"])
    return cfn.describe_stacks(StackName="demo-pipeline")["Stacks"][0]


def test_pipeline_stack_completes_with_every_resource(aws, pipeline_stack):
    assert pipeline_stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in pipeline_stack["Outputs"]}
    assert outputs["PipelineName"] == "demo-pipeline" and outputs["EtlJobName"] == "demo-etl"
    assert outputs["RepositoryName"] == "demo-code"
    resources = aws.client("cloudformation").describe_stack_resources(StackName="demo-pipeline")["StackResources"]
    by_id = {r["LogicalResourceId"]: r for r in resources}
    assert by_id["Pipeline"]["PhysicalResourceId"] == "demo-pipeline"
    assert by_id["ModelPackageGroup"]["PhysicalResourceId"].endswith(":model-package-group/demo-models")
    assert {r["ResourceStatus"] for r in resources} == {"CREATE_COMPLETE"}
    # The events rules target the pipeline by name, not by a literal ${Pipeline}.
    targets = aws.client("events").list_targets_by_rule(Rule="demo-data-change")["Targets"]
    assert targets[0]["Arn"] == f"arn:aws:codepipeline:us-east-1:{ACCOUNT}:demo-pipeline"


def test_get_pipeline_shows_the_deployed_definition(aws, pipeline_stack):
    pipeline = aws.client("codepipeline").get_pipeline(name="demo-pipeline")["pipeline"]
    assert pipeline["pipelineType"] == "V2" and pipeline["executionMode"] == "QUEUED"
    assert pipeline["roleArn"] == f"arn:aws:iam::{ACCOUNT}:role/demo-pipeline"
    assert pipeline["artifactStore"]["location"] == f"demo-artifacts-{ACCOUNT}-us-east-1"
    assert pipeline["artifactStore"]["encryptionKey"]["type"] == "KMS"
    assert pipeline["variables"][0]["name"] == "QualityThreshold"
    assert pipeline["variables"][0]["defaultValue"] == "600"
    assert [s["name"] for s in pipeline["stages"]] == STAGES
    for stage in pipeline["stages"]:
        declared = [(a["name"], a["runOrder"], a["namespace"]) for a in stage["actions"]]
        assert declared == ACTIONS[stage["name"]]
        for action in stage["actions"]:
            assert all(isinstance(v, str) for v in action["configuration"].values()), action["name"]
    actions = {a["name"]: a for s in pipeline["stages"] for a in s["actions"]}
    assert actions["ModelSource"]["configuration"] == {
        "RepositoryName": "demo-code", "BranchName": "model", "PollForSourceChanges": "false",
        "OutputArtifactFormat": "CODE_ZIP"}
    assert actions["BuildTrainingImage"]["configuration"]["ProjectName"] == "demo-training-image"
    assert [a["name"] for a in actions["BuildTrainingImage"]["inputArtifacts"]] == ["ModelCode", "EtlCode"]
    submit = json.loads(actions["SubmitEtl"]["configuration"]["UserParameters"])
    assert submit["glue_job_name"] == "demo-etl"
    assert submit["input_uri"] == f"s3://demo-data-{ACCOUNT}-us-east-1/raw/diamonds.csv.gz"
    assert submit["execution_id"] == "#{codepipeline.PipelineExecutionId}"
    monitor = json.loads(actions["MonitorEvaluation"]["configuration"]["UserParameters"])
    assert monitor["threshold"] == "#{variables.QualityThreshold}"
    deploy_config = json.loads(actions["CreateDeployConfig"]["configuration"]["UserParameters"])
    assert deploy_config["instance_count"] == 1
    overrides = json.loads(actions["DeployEndpoint"]["configuration"]["ParameterOverrides"])
    assert overrides["ExecutionRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/demo-sagemaker-execution"
    assert actions["DeployEndpoint"]["actionTypeId"] == {
        "category": "Deploy", "owner": "AWS", "provider": "CloudFormation", "version": "1"}


def test_glue_codebuild_registry_and_repository_exist(aws, pipeline_stack):
    job = aws.client("glue").get_job(JobName="demo-etl")["Job"]
    assert job["Command"] == {"Name": "glueetl", "PythonVersion": "3",
                              "ScriptLocation": f"s3://demo-data-{ACCOUNT}-us-east-1/code/glue/etl.py"}
    assert job["DefaultArguments"]["--extra-py-files"] == f"s3://demo-data-{ACCOUNT}-us-east-1/code/glue/training.zip"
    assert job["NumberOfWorkers"] == 2 and job["WorkerType"] == "G.1X" and job["GlueVersion"] == "5.0"
    assert job["SecurityConfiguration"] == "demo-etl" and job["Role"].endswith(":role/demo-glue-etl")
    security = aws.client("glue").get_security_configuration(Name="demo-etl")["SecurityConfiguration"]
    assert security["EncryptionConfiguration"]["S3Encryption"][0]["S3EncryptionMode"] == "SSE-KMS"
    group = aws.client("sagemaker").describe_model_package_group(ModelPackageGroupName="demo-models")
    assert group["ModelPackageGroupDescription"].startswith("demo candidates")
    projects = aws.client("codebuild").batch_get_projects(
        names=["demo-training-image", "demo-endpoint-test-image"])["projects"]
    assert [p["name"] for p in projects] == ["demo-training-image", "demo-endpoint-test-image"]
    assert projects[0]["source"]["buildspec"] == "buildspecs/training-image.yml"
    variables = {v["name"]: v["value"] for v in projects[0]["environment"]["environmentVariables"]}
    assert variables["TF_VERSION"] == "2.21"
    assert variables["IMAGE_REPO_URI"] == f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/demo-training"
    repository = aws.client("codecommit").get_repository(repositoryName="demo-code")["repositoryMetadata"]
    assert repository["repositoryName"] == "demo-code"
    # The bucket policy is not enforced: its DenyInsecureTransport would refuse the stand-in's plain HTTP.
    aws.client("s3").put_object(Bucket=f"demo-data-{ACCOUNT}-us-east-1", Key="raw/x.csv", Body=b"a\n")


def test_the_project_key_and_the_encrypted_approval_topic_answer_as_kms_and_sns_do(aws, pipeline_stack):
    """The key policy is kept as KMS keeps it, JSON text: moto's CloudFormation kept the template's object, and
    DescribeKey (which the approval notification's key check and CloudFormation's handlers call) failed."""
    kms, sns = aws.client("kms"), aws.client("sns")
    topic = next(t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(":demo-approvals"))
    key = sns.get_topic_attributes(TopicArn=topic)["Attributes"]["KmsMasterKeyId"]
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["Arn"] == key
    policy = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    assert policy["Statement"]


@pytest.mark.parametrize("logical_id, bucket", [("ArtifactBucket", "artifacts"), ("DataBucket", "data")])
def test_the_template_bucket_properties_are_on_the_buckets(aws, pipeline_stack, logical_id, bucket):
    # moto's CloudFormation drops them; cloudformation.bucket_properties puts them on (the S3 source needs versions)
    from cfnlint.decode import cfn_yaml

    rules = cfn_yaml.loads(PIPELINE_TEMPLATE)["Resources"][logical_id]["Properties"]["LifecycleConfiguration"]["Rules"]
    s3, name = aws.client("s3"), f"demo-{bucket}-{ACCOUNT}-us-east-1"
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    assert [r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]] == [r["Id"] for r in rules]
    assert all(s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"].values())
    assert s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]


def test_apply_finds_everything_and_recreates_what_went_missing(aws, stacks, pipeline_stack):
    aws.client("glue").delete_job(JobName="demo-etl")
    applied = stacks.apply("demo-pipeline")
    assert applied["EtlJob"] == "demo-etl" and applied["Pipeline"] == "demo-pipeline"
    assert aws.client("glue").get_job(JobName="demo-etl")["Job"]["Name"] == "demo-etl"
    assert stacks.apply("demo-pipeline") == applied


def test_update_stack_updates_the_pipeline(aws, pipeline_stack, pipeline_template_url):
    cfn = aws.client("cloudformation")
    # Explicit values: moto 5.2.5 answers 500 (KeyError) to UsePreviousValue for a parameter
    # that took its default when the stack was created.
    cfn.update_stack(StackName="demo-pipeline", TemplateURL=pipeline_template_url,
                     Capabilities=["CAPABILITY_NAMED_IAM"],
                     Parameters=parameters(ProjectName="demo", RepositoryName="demo-code", QualityThreshold="550"))
    assert cfn.describe_stacks(StackName="demo-pipeline")["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"
    pipeline = aws.client("codepipeline").get_pipeline(name="demo-pipeline")["pipeline"]
    assert pipeline["variables"][0]["defaultValue"] == "550" and pipeline["version"] == 2


def test_a_false_condition_skips_the_repository(aws, pipeline_template_url):
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName="norepo-pipeline", TemplateURL=pipeline_template_url,
                     Capabilities=["CAPABILITY_NAMED_IAM"],
                     Parameters=parameters(ProjectName="norepo", CreateRepository="false", RepositoryName="existing"))
    resources = cfn.describe_stack_resources(StackName="norepo-pipeline")["StackResources"]
    # moto 5.2.5 lists a skipped resource as an entry without LogicalResourceId.
    assert "Repository" not in {r.get("LogicalResourceId") for r in resources}
    with pytest.raises(ClientError) as caught:
        aws.client("codecommit").get_repository(repositoryName="existing")
    assert caught.value.response["Error"]["Code"] == "RepositoryDoesNotExistException"
    pipeline = aws.client("codepipeline").get_pipeline(name="norepo-pipeline")["pipeline"]
    assert pipeline["stages"][0]["actions"][0]["configuration"]["RepositoryName"] == "existing"
    cfn.delete_stack(StackName="norepo-pipeline")


def test_delete_stack_removes_them_and_retains_the_repository(aws, pipeline_stack):
    aws.client("cloudformation").delete_stack(StackName="demo-pipeline")
    gone = [
        (lambda: aws.client("codepipeline").get_pipeline(name="demo-pipeline"), "PipelineNotFoundException"),
        (lambda: aws.client("glue").get_job(JobName="demo-etl"), "EntityNotFoundException"),
        (lambda: aws.client("glue").get_security_configuration(Name="demo-etl"), "EntityNotFoundException"),
        (lambda: aws.client("sagemaker").describe_model_package_group(ModelPackageGroupName="demo-models"),
         "ValidationException"),
    ]
    for call, code in gone:
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["Error"]["Code"] == code
    assert aws.client("codebuild").batch_get_projects(names=["demo-training-image"])["projects"] == []
    # DeletionPolicy: Retain
    assert aws.client("codecommit").get_repository(repositoryName="demo-code")["repositoryMetadata"]


# -- scripts/deploy.sh, unchanged, against the stand-in -----------------------------------------
def test_deploy_script_creates_the_pipeline(aws):
    bin_dir = Path(os.sys.executable).parent  # the awscli package installs `aws` here
    # The gateway rewrites the TemplateURL that `aws cloudformation deploy` points at itself.
    env = {**os.environ, **aws.environment(), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "deploy.sh"), "--project-name", "mlops"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    pipeline = aws.client("codepipeline").get_pipeline(name="mlops-pipeline")["pipeline"]
    assert [s["name"] for s in pipeline["stages"]] == STAGES
    stack = aws.client("cloudformation").describe_stacks(StackName="mlops-pipeline")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    data_bucket = f"mlops-data-{ACCOUNT}-us-east-1"
    keys = {o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=data_bucket, Prefix="code/glue/")["Contents"]}
    assert keys == {"code/glue/etl.py", "code/glue/training.zip"}
