"""Structure of the pipeline in templates/pipeline.yaml: stages, actions, artifacts, variables and
the job workers each Lambda action runs (docs/ARCHITECTURE.md section 1)."""
from __future__ import annotations

import json

import pytest

from lambdas.deploy_config import template_configuration
from lambdas.job import parse_user_parameters
from tests.templates.cfn import (
    CODECOMMIT_VARIABLES, CODEPIPELINE_VARIABLES, ENDPOINT, PIPELINE, ROOT, S3_SOURCE_VARIABLES, TEST_LAMBDA,
    VARIABLE, actions, buildspec, earlier, handler_function, lambda_function, load, module_exports,
    pipeline_resource, provider, render, resources, stages, sub_text, worker_schema)

# (stage, [(action, runOrder, provider)]) exactly, in order. DeployTestFunction is the one action
# beyond the architecture table: the endpoint-test function runs from the image built in this
# stage, so a CloudFormation action deploys templates/test-lambda.yaml with the new image URI.
EXPECTED = [
    ("Source", [("ModelSource", 1, "CodeCommit"), ("EtlSource", 1, "CodeCommit"),
                ("TestSource", 1, "CodeCommit"), ("DataSource", 1, "S3")]),
    ("Build", [("BuildTrainingImage", 1, "CodeBuild"), ("BuildTestImage", 1, "CodeBuild"),
               ("DeployTestFunction", 2, "CloudFormation")]),
    ("DataAndFeatureEngineering", [("SubmitEtl", 1, "Lambda"), ("MonitorEtl", 2, "Lambda")]),
    ("Training", [("SubmitTraining", 1, "Lambda"), ("MonitorTraining", 2, "Lambda")]),
    ("Evaluation", [("SubmitEvaluation", 1, "Lambda"), ("MonitorEvaluation", 2, "Lambda")]),
    ("Deployment", [("CreateDeployConfig", 1, "Lambda"), ("RegisterModel", 1, "Lambda"),
                    ("DeployEndpoint", 2, "CloudFormation"), ("TestEndpoint", 3, "Lambda")]),
    ("Approval", [("ApproveForProd", 1, "Manual")]),
    ("Production", [("PromoteModel", 1, "Lambda"), ("CreateProdDeployConfig", 1, "Lambda"),
                    ("DeployProdEndpoint", 2, "CloudFormation"),
                    ("TestProdEndpoint", 3, "Lambda")]),
]
LAMBDA_ACTIONS = [a for _, acts in EXPECTED for a, _, p in acts if p == "Lambda"]
ACTIONS = {action["Name"]: (index, action) for index, _, action in actions()}


def action(name: str) -> dict:
    return ACTIONS[name][1]


def test_stages_and_actions_in_order():
    got = [(stage["Name"], [(a["Name"], int(a["RunOrder"]), provider(a)) for a in stage["Actions"]])
           for stage in stages()]
    assert got == EXPECTED


def test_pipeline_is_v2_queued_with_the_threshold_and_hyperparameter_variables():
    pipeline = pipeline_resource()
    parameters = load(PIPELINE)["Parameters"]
    assert pipeline["PipelineType"] == "V2"
    assert pipeline["ExecutionMode"] in ("QUEUED", "SUPERSEDED")
    threshold, tolerance, hyperparameters = pipeline["Variables"]
    assert threshold["Name"] == "QualityThreshold"
    assert (tolerance["Name"], tolerance["DefaultValue"]) == ("ChallengerTolerancePercent", "0")  # not worse
    assert threshold["DefaultValue"] == {"Ref": "QualityThreshold"}
    float(parameters["QualityThreshold"]["Default"])
    assert hyperparameters["Name"] == "TrainingHyperparameters"
    assert hyperparameters["DefaultValue"] == {"Ref": "TrainingHyperparameters"}
    assert parameters["TrainingHyperparameters"]["MaxLength"] == 1000  # a variable's value is at most 1,000


def test_the_champion_gate_gets_its_group_and_tolerance_and_register_model_records_it():
    """SubmitEvaluation finds the champion in the group RegisterModel writes to; MonitorEvaluation judges with
    the tolerance variable; RegisterModel records every value the gate exported (lambdas.sagemaker_jobs)."""
    submit = sub_text(action("SubmitEvaluation")["Configuration"]["UserParameters"])
    monitor = sub_text(action("MonitorEvaluation")["Configuration"]["UserParameters"])
    register = sub_text(action("RegisterModel")["Configuration"]["UserParameters"])
    group = '"model_package_group": "${ProjectName}-models"'
    assert group in submit and group in monitor and group in register
    assert '"tolerance_percent": "#{variables.ChallengerTolerancePercent}"' in monitor
    for variable, key in (("Rmse", "Rmse"), ("Threshold", "Threshold"), ("TolerancePercent", "TolerancePercent"),
                          ("ChampionModelPackageArn", "ChampionModelPackageArn"), ("ChampionRmse", "ChampionRmse"),
                          ("Reason", "DecisionReason")):
        assert f'"{key}": "#{{Evaluation.{variable}}}"' in register


def test_hyperparameters_reach_submit_training_as_the_pipeline_variable():
    text = sub_text(action("SubmitTraining")["Configuration"]["UserParameters"])
    assert '"hyperparameters": #{variables.TrainingHyperparameters},' in text
    assert "${TrainingHyperparameters}" not in text  # the UserParameters text no longer grows with them


def test_artifact_store_is_kms_encrypted():
    store = pipeline_resource()["ArtifactStore"]
    assert store["Location"] == {"Ref": "ArtifactBucket"}
    assert store["EncryptionKey"]["Type"] == "KMS"


def test_every_action_has_a_unique_namespace():
    namespaces = [a.get("Namespace") for _, _, a in actions()]
    assert all(namespaces), "every action declares a Namespace"
    assert len(set(namespaces)) == len(namespaces)


def test_sources_are_started_by_eventbridge_not_polling():
    for name in ("ModelSource", "EtlSource", "TestSource", "DataSource"):
        assert action(name)["Configuration"]["PollForSourceChanges"] is False, name
    branches = {name: action(name)["Configuration"]["BranchName"]
                for name in ("ModelSource", "EtlSource", "TestSource")}
    assert branches == {"ModelSource": {"Ref": "ModelBranch"}, "EtlSource": {"Ref": "EtlBranch"},
                        "TestSource": {"Ref": "TestBranch"}}
    assert action("DataSource")["Configuration"]["S3ObjectKey"] == {"Ref": "DataObjectKey"}


def test_eventbridge_rules_start_the_pipeline_on_pushes_and_new_data():
    template = load(PIPELINE)
    rules = resources(template, "AWS::Events::Rule")
    by_source = {rule["Properties"]["EventPattern"]["source"][0]: rule["Properties"] for rule in rules.values()}
    assert set(by_source) == {"aws.codecommit", "aws.s3"}
    code = by_source["aws.codecommit"]["EventPattern"]["detail"]
    assert code["referenceType"] == ["branch"]
    assert sorted(r["Ref"] for r in code["referenceName"]) == ["EtlBranch", "ModelBranch", "TestBranch"]
    data = by_source["aws.s3"]["EventPattern"]
    assert data["detail-type"] == ["Object Created"]
    assert data["detail"]["bucket"]["name"] == [{"Ref": "DataBucket"}]
    assert {"Ref": "DataObjectKey"} in data["detail"]["object"]["key"]
    bucket = template["Resources"]["DataBucket"]["Properties"]
    assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    for rule in by_source.values():
        (target,) = rule["Targets"]
        assert "${Pipeline}" in sub_text(target["Arn"])
        assert target["RoleArn"] == {"Fn::GetAtt": ["PipelineEventsRole", "Arn"]}


def test_every_input_artifact_is_produced_by_an_earlier_action():
    produced: dict[str, tuple[int, dict]] = {}
    for index, _, act in actions():
        for output in act.get("OutputArtifacts", []):
            assert output["Name"] not in produced, f"artifact {output['Name']} is produced twice"
            produced[output["Name"]] = (index, act)
    for index, _, act in actions():
        for artifact in act.get("InputArtifacts", []):
            assert artifact["Name"] in produced, f"{act['Name']}: no action produces {artifact['Name']}"
            assert earlier(produced[artifact["Name"]], (index, act)), \
                f"{act['Name']} reads {artifact['Name']} before it is produced"


def test_codebuild_actions_name_their_primary_source():
    for _, _, act in actions():
        if provider(act) == "CodeBuild" and len(act["InputArtifacts"]) > 1:
            names = [a["Name"] for a in act["InputArtifacts"]]
            assert act["Configuration"]["PrimarySource"] in names


@pytest.mark.parametrize("name", LAMBDA_ACTIONS)
def test_lambda_action_handler_is_importable(name):
    function, handler = lambda_function(action(name))
    assert handler.startswith("lambdas."), "the zip holds a lambdas/ package at its root"
    _, target = handler_function(handler)
    assert callable(target)
    if function["Properties"].get("PackageType") != "Image":
        assert function["Properties"]["Runtime"] == "python3.11"


@pytest.mark.parametrize("name", LAMBDA_ACTIONS)
def test_user_parameters_are_json_that_the_worker_accepts(name):
    act = action(name)
    _, handler = lambda_function(act)
    text = render(act["Configuration"]["UserParameters"], load(PIPELINE))
    data = json.loads(text)
    schema = worker_schema(handler)
    assert set(data) <= set(schema), f"unknown keys {set(data) - set(schema)}"
    parse_user_parameters(text, schema)  # raises ConfigurationError on a missing key or wrong type


def test_job_names_and_uris_derive_from_the_execution_id():
    for name in ("SubmitEtl", "SubmitTraining", "SubmitEvaluation", "MonitorEvaluation", "CreateDeployConfig",
                 "RegisterModel"):
        data = json.loads(render(action(name)["Configuration"]["UserParameters"], load(PIPELINE), variables=None))
        assert data["execution_id"] == "#{codepipeline.PipelineExecutionId}", name


def test_data_layout_per_execution():
    text = render(action("SubmitTraining")["Configuration"]["UserParameters"], load(PIPELINE), variables=None)
    data = json.loads(text)
    prefix = "s3://mlops-databucket/runs/#{codepipeline.PipelineExecutionId}/"
    assert data["train_uri"] == prefix + "etl/train/"
    assert data["validation_uri"] == prefix + "etl/validation/"
    assert data["features_uri"] == prefix + "etl/features.json"
    assert data["output_uri"] == prefix + "training/"
    etl = json.loads(render(action("SubmitEtl")["Configuration"]["UserParameters"], load(PIPELINE), None))
    assert etl["output_uri"] == prefix + "etl/"
    test = json.loads(render(action("TestEndpoint")["Configuration"]["UserParameters"], load(PIPELINE), None))
    assert test["test_data_uri"] == prefix + "etl/endpoint-test/"


def _namespaces() -> dict[str, tuple[int, dict]]:
    return {a["Namespace"]: (index, a) for index, _, a in actions()}


def _exported(producer: dict, variable: str) -> bool:
    kind = provider(producer)
    if kind == "CodeCommit":
        return variable in CODECOMMIT_VARIABLES
    if kind == "S3":
        return variable in S3_SOURCE_VARIABLES
    if kind == "CodeBuild":
        project = load(PIPELINE)["Resources"][producer["Configuration"]["ProjectName"]["Ref"]]
        return variable in buildspec(project["Properties"]["Source"]["BuildSpec"])["env"]["exported-variables"]
    if kind == "CloudFormation":
        template = ROOT / "templates" / producer["Configuration"]["TemplatePath"].split("::")[1].split("/")[-1]
        return variable in load(template).get("Outputs", {})
    if kind == "Lambda":
        return module_exports(lambda_function(producer)[1], variable)
    raise AssertionError(f"no rule for variables of {kind}")


def test_every_variable_comes_from_an_earlier_namespace_that_exports_it():
    namespaces = _namespaces()
    declared = {v["Name"] for v in pipeline_resource()["Variables"]}
    seen = 0
    for index, _, act in actions():
        for value in _strings(act["Configuration"]):
            for namespace, variable in VARIABLE.findall(value):
                seen += 1
                where = f"{act['Name']}: #{{{namespace}.{variable}}}"
                if namespace == "codepipeline":
                    assert variable in CODEPIPELINE_VARIABLES, where
                elif namespace == "variables":
                    assert variable in declared, where
                else:
                    assert namespace in namespaces, f"{where}: no action has this namespace"
                    assert earlier(namespaces[namespace], (index, act)), f"{where}: not set yet"
                    assert _exported(namespaces[namespace][1], variable), f"{where}: not exported"
    assert seen > 30


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        if "Fn::Sub" in node:
            yield sub_text(node)
        else:
            for value in node.values():
                yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def test_evaluation_threshold_comes_from_the_pipeline_variable():
    data = json.loads(render(action("MonitorEvaluation")["Configuration"]["UserParameters"], load(PIPELINE), None))
    assert data["threshold"] == "#{variables.QualityThreshold}"


# (deploy action, its config action, stage, stack, endpoint test action, the package it serves)
ENDPOINT_DEPLOYS = [("DeployEndpoint", "CreateDeployConfig", "dev", "${ProjectName}-endpoint-dev", "TestEndpoint",
                     "#{Registry.ModelPackageArn}"),
                    ("DeployProdEndpoint", "CreateProdDeployConfig", "prod", "${ProjectName}-endpoint-prod",
                     "TestProdEndpoint", "#{Promotion.ModelPackageArn}")]


@pytest.mark.parametrize("deploy_name, config_name, stage, stack, test_name, package", ENDPOINT_DEPLOYS,
                         ids=["dev", "prod"])
def test_deploy_endpoint_uses_the_config_artifact_and_the_registered_package(
        deploy_name, config_name, stage, stack, test_name, package):
    deploy = action(deploy_name)["Configuration"]
    inputs = {a["Name"] for a in action(deploy_name)["InputArtifacts"]}
    template_artifact, template_file = deploy["TemplatePath"].split("::")
    config_artifact, config_file = deploy["TemplateConfiguration"].split("::")
    assert {template_artifact, config_artifact} <= inputs
    assert template_file == "templates/endpoint.yaml" and config_file == "endpoint-config.json"
    assert [a["Name"] for a in action(config_name)["OutputArtifacts"]] == [config_artifact]
    overrides = json.loads(render(deploy["ParameterOverrides"], load(PIPELINE), variables=None))
    # dev: the package the gate APPROVED (registered PendingManualApproval); prod: the same package once
    # PromoteModel made it Approved, after the person's approval.
    assert overrides["ModelPackageArn"] == package
    assert action("RegisterModel")["Namespace"] == "Registry" and action("PromoteModel")["Namespace"] == "Promotion"
    promoted = json.loads(render(action("PromoteModel")["Configuration"]["UserParameters"], load(PIPELINE),
                                 variables=None))
    assert promoted["model_package_arn"] == "#{Registry.ModelPackageArn}"
    params = parse_user_parameters(render(action(config_name)["Configuration"]["UserParameters"], load(PIPELINE)),
                                   worker_schema("lambdas.deploy_config.handler"))
    assert template_configuration(params)["Parameters"]["Stage"] == stage
    assert sub_text(deploy["StackName"]) == stack
    tested = json.loads(render(action(test_name)["Configuration"]["UserParameters"], load(PIPELINE), variables=None))
    assert tested["endpoint_name"] == f"#{{{action(deploy_name)['Namespace']}.EndpointName}}"


CLOUDFORMATION_ACTIONS = [a for _, _, a in actions() if provider(a) == "CloudFormation"]


@pytest.mark.parametrize("deploy", CLOUDFORMATION_ACTIONS, ids=[a["Name"] for a in CLOUDFORMATION_ACTIONS])
def test_only_the_prod_stack_is_deployed_without_replace_on_failure(deploy):
    """A failed first create leaves a stack in ROLLBACK_COMPLETE, which CREATE_UPDATE cannot update at any later
    execution; REPLACE_ON_FAILURE deletes and re-creates it. Not for prod: it also deletes a stack in
    UPDATE_ROLLBACK_FAILED or DELETE_FAILED, which still serves."""
    prod = sub_text(deploy["Configuration"]["StackName"]).endswith("-prod")
    assert deploy["Configuration"]["ActionMode"] == ("CREATE_UPDATE" if prod else "REPLACE_ON_FAILURE")


def test_prod_comes_after_the_dev_test_and_a_manual_approval():
    names = [stage["Name"] for stage in stages()]
    assert names[-3:] == ["Deployment", "Approval", "Production"]
    approval = action("ApproveForProd")
    assert not approval.get("InputArtifacts") and not approval.get("OutputArtifacts")
    custom = approval["Configuration"]["CustomData"]
    assert len(custom) <= 500  # CodePipeline's limit on CustomData
    for variable in ("#{Registry.ModelPackageArn}", "#{Evaluation.Rmse}", "#{Evaluation.ChampionRmse}",
                     "#{Evaluation.TolerancePercent}", "#{EndpointTest.Rows}", "#{EndpointTest.SampleRmse}"):
        assert variable in custom


def test_prod_deploys_canary_waits_from_the_pipeline_parameters():
    overrides = json.loads(render(action("DeployProdEndpoint")["Configuration"]["ParameterOverrides"],
                                  load(PIPELINE), variables=None))
    declared = load(ENDPOINT)["Parameters"]
    pipeline = load(PIPELINE)["Parameters"]
    for override, parameter in (("CanaryWaitSeconds", "ProdCanaryWaitSeconds"),
                                ("TerminationWaitSeconds", "ProdTerminationWaitSeconds")):
        assert overrides[override] == str(pipeline[parameter]["Default"])
        assert (pipeline[parameter]["MinValue"], pipeline[parameter]["MaxValue"]) == (
            declared[override]["MinValue"], declared[override]["MaxValue"])


@pytest.mark.parametrize("deploy_name, config_name", [d[:2] for d in ENDPOINT_DEPLOYS], ids=["dev", "prod"])
def test_endpoint_stack_receives_every_parameter_it_needs(deploy_name, config_name):
    """endpoint-config.json (as CreateDeployConfig writes it) + ParameterOverrides = the template's
    required parameters, and nothing the template does not declare."""
    pipeline = load(PIPELINE)
    params = parse_user_parameters(render(action(config_name)["Configuration"]["UserParameters"],
                                          pipeline), worker_schema("lambdas.deploy_config.handler"))
    from_config = set(template_configuration(params)["Parameters"])
    overrides = set(json.loads(render(action(deploy_name)["Configuration"]["ParameterOverrides"], pipeline)))
    declared = load(ENDPOINT)["Parameters"]
    required = {name for name, p in declared.items() if "Default" not in p}
    assert from_config | overrides <= set(declared)
    assert required <= from_config | overrides
    # with a model_package_arn the config file carries it too; still a declared parameter
    assert "ModelPackageArn" in declared


def test_test_function_stack_receives_every_parameter_it_needs():
    deploy = action("DeployTestFunction")["Configuration"]
    assert deploy["TemplatePath"] == "TestCode::templates/test-lambda.yaml"
    overrides = json.loads(render(deploy["ParameterOverrides"], load(PIPELINE), variables=None))
    declared = load(TEST_LAMBDA)["Parameters"]
    assert set(overrides) == set(declared)
    assert overrides["ImageUri"] == "#{BuildTest.IMAGE_URI}"


def test_test_endpoint_runs_the_function_deploy_test_function_creates():
    function, handler = lambda_function(action("TestEndpoint"))
    assert function["Properties"]["PackageType"] == "Image"
    assert handler == "lambdas.endpoint_test.handler"
    stack_role = load(PIPELINE)["Resources"]["TestFunctionStackRole"]
    arns = [sub_text(s["Resource"]) for p in stack_role["Properties"]["Policies"]
            for s in p["PolicyDocument"]["Statement"] if s["Sid"] == "ManageEndpointTestFunction"]
    assert arns == ["arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"
                    "${ProjectName}-endpoint-test"]


def test_job_worker_functions_share_the_zip_and_log_to_groups_with_retention():
    template = load(PIPELINE)
    groups = resources(template, "AWS::Logs::LogGroup")
    for name, function in resources(template, "AWS::Lambda::Function").items():
        props = function["Properties"]
        assert props["Code"] == {"S3Bucket": {"Ref": "LambdaCodeBucket"}, "S3Key": {"Ref": "LambdaCodeKey"}}, name
        group = props["LoggingConfig"]["LogGroup"]["Ref"]
        assert sub_text(groups[group]["Properties"]["LogGroupName"]) == "/aws/lambda/" + sub_text(props["FunctionName"])


def test_glue_job_is_defined_once_as_glue_5_with_auto_scaling():
    template = load(PIPELINE)
    (job,) = resources(template, "AWS::Glue::Job").values()
    props = job["Properties"]
    assert props["GlueVersion"] == "5.0" and props["Command"]["Name"] == "glueetl"
    arguments = props["DefaultArguments"]
    assert arguments["--enable-auto-scaling"] == "true"
    assert arguments["--job-bookmark-option"] == "job-bookmark-disable"
    assert sub_text(arguments["--extra-py-files"]).endswith("/training.zip")
    assert sub_text(props["Command"]["ScriptLocation"]).endswith("/etl.py")
    assert props["Timeout"] and props["MaxRetries"] == 0
    assert "SecurityConfiguration" in props
    submit = json.loads(render(action("SubmitEtl")["Configuration"]["UserParameters"], template))
    assert submit["glue_job_name"] == "mlops-etljob"  # ${EtlJob}: the job the stack defines


def test_project_name_fits_sagemaker_job_names():
    """<prefix>-evaluate-<execution id> must keep the whole prefix, or the IAM scoping misses it."""
    import re

    from lambdas.job import job_name

    pattern = load(PIPELINE)["Parameters"]["ProjectName"]["AllowedPattern"]
    longest = "a" * 17
    assert re.fullmatch(pattern, longest) and not re.fullmatch(pattern, longest + "a")
    for kind in ("train", "evaluate"):
        assert job_name(longest, kind, "3f2c1a7e-5b4d-4c3e-9a1b-0d2e3f4a5b6c").startswith(longest + "-")


def test_outputs_have_descriptions_and_exports():
    for path in (PIPELINE, ENDPOINT, TEST_LAMBDA):
        for name, output in load(path)["Outputs"].items():
            assert output.get("Description") and output.get("Export"), f"{path.name}: {name}"
    outputs = set(load(PIPELINE)["Outputs"])
    assert {"PipelineName", "ArtifactBucketName", "DataBucketName", "RepositoryCloneUrlHttp",
            "TrainingImageRepositoryUri", "EndpointTestImageRepositoryUri", "DataObjectKey",
            "DatasetConfigKey", "GlueCodeUri"} <= outputs


def test_parameters_are_constrained():
    for path in (PIPELINE, ENDPOINT, TEST_LAMBDA):
        for name, parameter in load(path)["Parameters"].items():
            constrained = {"AllowedPattern", "AllowedValues", "MinValue"} & set(parameter)
            assert constrained and parameter.get("ConstraintDescription"), f"{path.name}: {name}"
