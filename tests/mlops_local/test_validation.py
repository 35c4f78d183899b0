"""Requests checked as AWS checks them: max, pattern, enum, nested paths, documented limits, the gateway."""
from __future__ import annotations

import json

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from mlops_local import java_regex, limits, validation
from mlops_local.gateway import AwsError, Gateway, LocalAws
from tests.templates.cfn import PIPELINE, load, pipeline_resource, render, sample_values

ROLE = "arn:aws:iam::123456789012:role/mlops-pipeline"


def pipeline(configuration: dict | None = None, stages: int = 2, actions: int = 1) -> dict:
    def action(n: int) -> dict:
        return {"name": f"A{n}", "actionTypeId": {"category": "Invoke", "owner": "AWS", "provider": "Lambda",
                                                  "version": "1"},
                "configuration": configuration or {"FunctionName": "f"}}
    return {"pipeline": {"name": "p", "roleArn": ROLE, "artifactStore": {"type": "S3", "location": "artifact-bucket"},
                         "stages": [{"name": f"S{s}", "actions": [action(a) for a in range(actions)]}
                                    for s in range(stages)]}}


def rejected(service: str, operation: str, params: dict) -> AwsError:
    with pytest.raises(AwsError) as caught:
        validation.check(service, operation, params)
    return caught.value


@pytest.mark.parametrize("service, operation, params, code, text", [
    ("sagemaker", "DescribeTrainingJob", {"TrainingJobName": "a" * 64}, "ValidationException",
     "2 validation errors detected: Value '" + "a" * 64 + "' at 'trainingJobName' failed to satisfy constraint: "
     "Member must have length less than or equal to 63; Value '" + "a" * 64 + "' at 'trainingJobName' failed to "
     "satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"),
    ("sagemaker", "DescribeTrainingJob", {"TrainingJobName": "a_b"}, "ValidationException",
     "1 validation error detected: Value 'a_b' at 'trainingJobName' failed to satisfy constraint: "
     "Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"),
    ("sagemaker", "ListTrainingJobs", {"SortBy": "Size"}, "ValidationException",
     "Value 'Size' at 'sortBy' failed to satisfy constraint: Member must satisfy enum value set: "
     "[Name, CreationTime, Status]"),
    ("sagemaker", "ListTrainingJobs", {"MaxResults": 101}, "ValidationException",
     "Value '101' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 100"),
    ("codepipeline", "GetPipeline", {"name": "p", "version": 0}, "ValidationException",
     "Value '0' at 'version' failed to satisfy constraint: Member must have value greater than or equal to 1"),
    ("logs", "DescribeLogGroups", {"logGroupNamePrefix": "a b"}, "InvalidParameterException",
     "Value 'a b' at 'logGroupNamePrefix' failed to satisfy constraint: Member must satisfy regular expression "
     "pattern: [\\.\\-_/#A-Za-z0-9]+"),
    ("glue", "GetJobRun", {"JobName": "etl", "RunId": "r" * 256}, "InvalidInputException",
     "at 'runId' failed to satisfy constraint: Member must have length less than or equal to 255"),
    ("iam", "GetRole", {"RoleName": "a role"}, "ValidationError",
     "Value 'a role' at 'roleName' failed to satisfy constraint: Member must satisfy regular expression pattern: "
     "[\\w+=,.@-]+"),
    ("sts", "AssumeRole", {"RoleArn": ROLE, "RoleSessionName": "s" * 65}, "ValidationError",
     "at 'roleSessionName' failed to satisfy constraint: Member must have length less than or equal to 64"),
    ("ecr", "DescribeRepositories", {"repositoryNames": ["Upper"]}, "InvalidParameterException",
     "Invalid parameter at 'repositoryNames' failed to satisfy constraint: 'must satisfy constraint: ["),
], ids=["max-length", "pattern", "enum", "max-value", "min-value", "logs-code", "glue-code", "query-iam",
        "query-sts", "ecr-wording"])
def test_constraint_violations_answer_as_aws(service, operation, params, code, text):
    error = rejected(service, operation, params)
    assert (error.code, error.status) == (code, 400)
    assert text in error.message


def test_nested_paths_name_list_members_one_based_and_map_values_as_a_whole():
    request = pipeline()
    request["pipeline"]["stages"][0]["actions"][0]["configuration"]["UserParameters"] = "x" * 1001
    request["pipeline"]["stages"][1]["actions"][0]["name"] = "bad name"
    error = rejected("codepipeline", "CreatePipeline", request)
    assert error.message.startswith("2 validation errors detected: ")
    # AWS shows no value for an action configuration (terraform-provider-aws#41023)
    assert ("Value at 'pipeline.stages.1.member.actions.1.member.configuration' failed to satisfy constraint: "
            "Map value must satisfy constraint: [Member must have length less than or equal to 1000, "
            "Member must have length greater than or equal to 1]") in error.message
    assert ("Value 'bad name' at 'pipeline.stages.2.member.actions.1.member.name' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: [A-Za-z0-9.@\\-_]+") in error.message


@pytest.mark.parametrize("length, accepted", [(1000, True), (1001, False)], ids=["1000-chars", "1001-chars"])
def test_codepipeline_action_configuration_value_is_at_most_1000_characters(length, accepted):
    request = pipeline({"FunctionName": "f", "UserParameters": "é" * length})
    if accepted:
        validation.check("codepipeline", "CreatePipeline", request)
    else:
        assert "less than or equal to 1000" in rejected("codepipeline", "CreatePipeline", request).message


def test_map_values_and_required_members():
    hyper = {f"k{i}": "v" for i in range(101)}
    error = rejected("sagemaker", "CreateTrainingJob", {"TrainingJobName": "j", "HyperParameters": hyper})
    assert "at 'hyperParameters' failed to satisfy constraint: Member must have length less than or equal to 100" \
        in error.message
    assert "Value '{k0=v, k1=v," in error.message  # Java's Map.toString
    assert "Value null at 'roleArn' failed to satisfy constraint: Member must not be null" in error.message
    error = rejected("sagemaker", "CreateTrainingJob", {"HyperParameters": {"lr": "1" * 2501}})
    assert ("failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than "
            "or equal to 2500, Member must have length greater than or equal to 0, Member must satisfy regular "
            "expression pattern: .*]") in error.message


@pytest.mark.parametrize("service, operation, params, code, text", [
    ("codepipeline", "CreatePipeline", pipeline(stages=1), "ValidationException",
     "at 'pipeline.stages' failed to satisfy constraint: Member must have length greater than or equal to 2"),
    ("codepipeline", "CreatePipeline", pipeline(actions=51), "ValidationException",
     "at 'pipeline.stages.1.member.actions' failed to satisfy constraint: Member must have length less than or "
     "equal to 50"),
    ("codepipeline", "CreatePipeline",  # 609 characters (within 1,000), 1,209 bytes (over 1 KB)
     pipeline({"ActionMode": "CREATE_UPDATE", "ParameterOverrides": json.dumps({"P": "é" * 600}, ensure_ascii=False)}),
     "InvalidActionDeclarationException", "at most 1 kilobyte"),
    ("lambda", "CreateFunction",
     {"FunctionName": "f", "Role": ROLE, "Code": {}, "Environment": {"Variables": {"AB": "v" * 4100}}},
     "InvalidParameterValueException", "exceeded the 4KB limit"),
    ("cloudformation", "CreateStack", {"StackName": "s", "TemplateBody": " " * 51201}, "ValidationError",
     "at 'templateBody' failed to satisfy constraint: Member must have length less than or equal to 51200"),
    ("codepipeline", "PutJobSuccessResult", {"jobId": "3f2c1a7e-5b4d-4c3e-9a1b-0d2e3f4a5b6c",
                                             "outputVariables": {f"v{i}": "x" * 1000 for i in range(123)}},
     "OutputVariablesSizeExceededException", "122880 bytes"),
], ids=["one-stage", "51-actions", "parameter-overrides-1kb", "lambda-environment-4kb", "template-body-51200",
        "output-variables"])
def test_documented_limits_botocore_does_not_carry(service, operation, params, code, text):
    error = rejected(service, operation, params)
    assert error.code == code and text in error.message


def test_every_limit_cites_its_source():
    assert all(limit.source and limit.rule for limit in limits.LIMITS)


def template(parameters: int = 0, mappings: int = 0, resources: int = 1, outputs: int = 0, yaml: bool = False) -> str:
    sections = {"Parameters": {f"P{i}": {"Type": "String"} for i in range(parameters)},
                "Mappings": {f"M{i}": {"K": {"A": "v"}} for i in range(mappings)},
                "Resources": {f"R{i}": {"Type": "AWS::SNS::Topic"} for i in range(resources)},
                "Outputs": {f"O{i}": {"Value": "v"} for i in range(outputs)}}
    if not yaml:
        return json.dumps({key: value for key, value in sections.items() if value})
    lines = []  # YAML with CloudFormation's short forms, as templates/*.yaml are written
    for section, entries in sections.items():
        if entries:
            lines.append(f"{section}:")
            lines += [f"  {name}:\n    Value: !Ref AWS::Region" for name in entries]
    return "\n".join(lines)


@pytest.mark.parametrize("body, text", [
    (template(resources=500), None),
    (template(resources=501), "Template format error: Number of resources, 501, is greater than maximum allowed, 500"),
    (template(resources=501, yaml=True),
     "Template format error: Number of resources, 501, is greater than maximum allowed, 500"),
    (template(parameters=200, outputs=200, mappings=200), None),
    (template(parameters=201), "Template format error: Parameter count 201 is greater than max allowed 200"),
    (template(outputs=201), "Template format error: Outputs count 201 is greater than max allowed 200"),
    (template(mappings=201), "Template format error: Mappings count 201 is greater than max allowed 200"),
    ("Resources: [unclosed", None),  # CloudFormation's parser answers a malformed template, not this check
], ids=["500-resources", "501-resources", "501-resources-yaml", "200-each", "201-parameters", "201-outputs",
        "201-mappings", "malformed"])
@pytest.mark.parametrize("operation", ["CreateStack", "UpdateStack", "CreateChangeSet", "ValidateTemplate"])
def test_cloudformation_template_counts(operation, body, text):
    params = {"TemplateBody": body, "StackName": "s", "ChangeSetName": "c"}
    if text is None:
        validation.check("cloudformation", operation, params)
    else:
        error = rejected("cloudformation", operation, params)
        assert (error.code, error.message, error.status) == ("ValidationError", text, 400)


@pytest.mark.parametrize("size, accepted", [(50000, True), (1024 * 1024, True), (1024 * 1024 + 1, False)],
                         ids=["small", "1mb", "over-1mb"])
def test_cloudformation_template_url_object_is_at_most_1_mb(aws, size, accepted):
    aws.client("s3").create_bucket(Bucket="templates")
    body = template(resources=1)
    aws.client("s3").put_object(Bucket="templates", Key="t.json", Body=body + " " * (size - len(body)))
    params = {"StackName": "s", "TemplateURL": "https://s3.amazonaws.com/templates/t.json"}
    if accepted:
        validation.check("cloudformation", "CreateStack", params)
    else:
        error = rejected("cloudformation", "CreateStack", params)
        assert (error.code, error.message) == ("ValidationError", "Template may not exceed 1048576 bytes in size.")


@pytest.mark.parametrize("url", ["https://s3.amazonaws.com/templates/big.json",
                                 "https://templates.s3.us-east-1.amazonaws.com/big.json",
                                 "http://127.0.0.1:4566/templates/big.json"], ids=["path", "virtual-host", "loopback"])
def test_cloudformation_counts_a_template_url_template(aws, url):
    aws.client("s3").create_bucket(Bucket="templates")
    aws.client("s3").put_object(Bucket="templates", Key="big.json", Body=template(resources=501))
    assert "Number of resources, 501" in rejected("cloudformation", "ValidateTemplate", {"TemplateURL": url}).message


def test_a_template_url_to_no_object_is_left_to_cloudformation(aws):
    validation.check("cloudformation", "CreateStack", {"StackName": "s",
                                                       "TemplateURL": "https://s3.amazonaws.com/nobucket/t.json"})


@pytest.mark.parametrize("value, accepted", [("x" * 100_000, True), ("x" * 102_400, False)],
                         ids=["within-100kb", "over-100kb"])
def test_resolved_action_configuration_is_at_most_100_kb(value, accepted):
    errors = limits.resolved_configuration_errors({"FunctionName": "f", "UserParameters": value})
    if accepted:
        assert errors == []
    else:
        assert [error.code for error in errors] == ["ConfigurationError"]
        assert "at most 100 KB (102400 bytes)" in errors[0].message


def test_the_run_time_limit_is_a_row_of_the_table_no_request_applies():
    rows = [limit for limit in limits.LIMITS if not limit.operations]
    assert [limit.service for limit in rows] == ["codepipeline"]
    assert rows[0].check({"UserParameters": "x" * 102_400})[0].code == "ConfigurationError"


@pytest.mark.parametrize("pattern, accepted, refused", [
    ("[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*", "héllo wörld_1", "a\tb"),
    ("[\\p{L}\\p{M}\\p{S}\\p{N}\\p{P}]+", "ça€1!", "a b"),
    ("arn:[\\p{Alnum}\\-]+:lambda:.*", "arn:aws:lambda:f", "arn:awś:lambda:f"),  # POSIX Alnum is ASCII
    ("[\\w-_]*", "a-b_c", "a b"),  # Java reads \w- as a class and a hyphen
    ("([\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@]*)${1,128}", "abc", "a!"),  # a quantified anchor
    ("[\\u0020-\\uD7FF\\uE000-\\uFFFD\\uD800\\uDC00-\\uDBFF\\uDFFF\\t]*", "a\U0001F600", "\x01"),  # surrogate pairs
    (".*", "a b", "a\nb"),  # Java's dot stops at line terminators
    ("[a-z]++[0-9]", "ab1", "ab"),  # possessive quantifiers (native since Python 3.11)
    ("([a-zA-Z0-9]([a-zA-Z0-9-]){0,62})(?<!-)", "ab-c", "ab-"),  # lookbehind
    ("[0-9]+", "12", "12a"),  # matched whole, as Java's matches()
], ids=["unicode-tag", "unicode-categories", "posix-alnum", "class-then-hyphen", "quantified-anchor",
        "surrogate-pairs", "dot", "possessive", "lookbehind", "whole-match"])
def test_java_patterns(pattern, accepted, refused):
    regex = java_regex.compiled(pattern)
    assert regex is not None
    assert regex.fullmatch(accepted) and not regex.fullmatch(refused)


def test_every_pattern_of_the_services_we_use_translates():
    from botocore.session import get_session

    session = get_session()
    untranslated = []
    for service in ("codepipeline", "sagemaker", "glue", "s3", "lambda", "cloudformation", "iam", "kms", "logs",
                    "events", "ecr", "sts"):
        model = session.get_service_model(service)
        for name in model.shape_names:
            pattern = model.shape_for(name).metadata.get("pattern")
            if pattern is not None and java_regex.compiled(pattern) is None:
                untranslated.append((service, name, pattern))
    assert untranslated == []


def test_query_form_becomes_the_nested_request():
    form = {"Action": "CreateStack", "StackName": "s", "Parameters.member.1.ParameterKey": "K",
            "Parameters.member.1.ParameterValue": "v", "Capabilities.member.1": "CAPABILITY_IAM",
            "TimeoutInMinutes": "5"}
    request = validation.query_request("cloudformation", "CreateStack", form)
    assert request == {"StackName": "s", "Parameters": [{"ParameterKey": "K", "ParameterValue": "v"}],
                       "Capabilities": ["CAPABILITY_IAM"], "TimeoutInMinutes": 5}


# -- the pipeline definition --------------------------------------------------------------------
def rendered_pipeline(hyperparameters: dict[str, str]) -> dict:
    """templates/pipeline.yaml's pipeline as CreatePipeline takes it, with `hyperparameters` as the stack
    parameter TrainingHyperparameters (what `mlops-local run -H` passes to deploy.sh)."""
    from mlops_local.cloudformation.stack_requests import conform
    from mlops_local.moto_access import service_model

    template = load(PIPELINE)
    template["Parameters"]["TrainingHyperparameters"]["Default"] = json.dumps(hyperparameters)
    values = sample_values(template)

    def resolve(node):
        if isinstance(node, dict) and len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return values[arg]
            if key == "Fn::GetAtt":
                name = ".".join(arg) if isinstance(arg, list) else arg
                return values.get(name, f"sample-{name.lower()}")
            if key == "Fn::Sub":
                return render(node, template, variables=None, splice=False)
            if key == "Fn::If":
                return resolve(arg[1])
        if isinstance(node, dict):
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    def api_names(node, shape):  # CloudFormation's PascalCase properties as the API's member names
        if shape.type_name == "structure" and isinstance(node, dict):
            named = {key[:1].lower() + key[1:]: value for key, value in node.items()}
            return {key: api_names(value, shape.members[key]) for key, value in named.items()
                    if key in shape.members}
        if shape.type_name == "list" and isinstance(node, list):
            return [api_names(item, shape.member) for item in node]
        return node

    shape = service_model("codepipeline").operation_model("CreatePipeline").input_shape
    request = api_names({"Pipeline": resolve(pipeline_resource())}, shape)
    return conform(request, shape)


def longest_hyperparameters() -> dict[str, str]:
    """Every hyperparameter the training contract accepts, each with a long value, as long as the
    TrainingHyperparameters stack parameter lets the JSON be."""
    from training.contract import HYPERPARAMETERS

    limit = load(PIPELINE)["Parameters"]["TrainingHyperparameters"]["MaxLength"]
    values = {name: "" for name in HYPERPARAMETERS}
    while len(json.dumps(values)) < limit:
        name = min(values, key=lambda key: len(values[key]))
        values[name] += "9"
    name = max(values, key=lambda key: len(values[key]))
    values[name] = values[name][:len(values[name]) - (len(json.dumps(values)) - limit)]
    assert len(json.dumps(values)) == limit
    return values


@pytest.mark.parametrize("hyperparameters", [{}, {"epochs": "40"}, "longest"], ids=["defaults", "one", "longest"])
def test_the_pipeline_definition_stays_within_every_limit(hyperparameters):
    values = longest_hyperparameters() if hyperparameters == "longest" else hyperparameters
    validation.check("codepipeline", "CreatePipeline", rendered_pipeline(values))


# -- through the gateway ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aws():
    with LocalAws(Gateway()) as local:
        yield local


@pytest.mark.parametrize("service, call, code", [
    ("sagemaker", lambda c: c.describe_training_job(TrainingJobName="bad_name"), "ValidationException"),
    ("glue", lambda c: c.get_job_run(JobName="etl", RunId="r" * 256), "InvalidInputException"),
    ("codepipeline", lambda c: c.create_pipeline(**pipeline({"FunctionName": "f", "UserParameters": "x" * 1001})),
     "ValidationException"),
    ("iam", lambda c: c.get_role(RoleName="a role"), "ValidationError"),
    ("cloudformation", lambda c: c.create_stack(StackName="s", TemplateBody=" " * 51201), "ValidationError"),
], ids=["sagemaker-override", "glue-override", "codepipeline-moto", "iam-query", "cloudformation-query"])
def test_the_gateway_answers_the_aws_error_before_moto_or_an_override(aws, service, call, code):
    client = aws.client(service, config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(ClientError) as caught:
        call(client)
    response = caught.value.response
    assert response["Error"]["Code"] == code
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "failed to satisfy constraint" in response["Error"]["Message"]


def test_the_gateway_passes_a_valid_request(aws):
    aws.client("iam").create_role(RoleName="valid-role", AssumeRolePolicyDocument="{}")
    assert aws.client("iam").get_role(RoleName="valid-role")["Role"]["RoleName"] == "valid-role"


def test_a_query_operation_without_input_has_nothing_to_check():
    """iam GenerateCredentialReport has no input shape: its form reads as no parameters."""
    assert validation.query_request("iam", "GenerateCredentialReport",
                                    {"Action": "GenerateCredentialReport", "Version": "2010-05-08"}) == {}
