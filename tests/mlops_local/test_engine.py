"""The pipeline engine runs CodePipeline definitions stored in moto, observed through the public API.

The Lambda handlers and the `stand` fixture live in tests/mlops_local/engine_stand.py.
"""
from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROOT
from tests.mlops_local.engine_stand import (
    HERE, REPO, actions_of, create_function, create_pipeline, data_source, lambda_action, wait_done, wait_for)


# -- tests -------------------------------------------------------------------------------------
def test_variables_namespaces_artifacts_and_parallel_actions(stand, tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f'FROM public.ecr.aws/lambda/python:3.11\nCMD ["{HERE}.sleep_handler"]\n')
    image = f"{REPO}/engine-test:abc"
    stand.runtime.images.add(image, dockerfile)
    create_function(stand, "flow-submit", f"{HERE}.submit_handler", env={"GREETING": "hello"})
    create_function(stand, "flow-sleep", f"{HERE}.sleep_handler")
    create_function(stand, "flow-image", "", image=image)
    work = [
        lambda_action("Submit", "flow-submit", namespace="Job", inputArtifacts=[{"name": "RawData"}],
                      outputArtifacts=[{"name": "JobConfig"}],
                      params='{"execution_id": "#{codepipeline.PipelineExecutionId}", '
                             '"threshold": "#{variables.Threshold}", "etag": "#{Data.ETag}"}'),
        lambda_action("Check", "flow-sleep", run_order=2, namespace="Check", inputArtifacts=[{"name": "JobConfig"}],
                      params='{"value": "#{Job.JobName}", "seconds": 1.5}'),
        lambda_action("ImageCheck", "flow-image", run_order=2, namespace="ImageCheck",
                      params='{"value": "#{Job.Greeting}", "seconds": 1.5}')]
    create_pipeline(stand, "flow", [data_source(), {"name": "Work", "actions": work}],
                    variables=[{"name": "Threshold", "defaultValue": "600"}])
    cp = stand.aws.client("codepipeline")

    execution_id = cp.start_pipeline_execution(
        name="flow", variables=[{"name": "Threshold", "value": "450"}])["pipelineExecutionId"]
    execution = wait_done(stand, "flow", execution_id)

    assert execution["status"] == "Succeeded", execution.get("statusSummary")
    assert execution["variables"] == [{"name": "Threshold", "resolvedValue": "450"}]
    assert execution["artifactRevisions"][0]["name"] == "RawData"
    actions = actions_of(stand, "flow", execution_id)
    source = actions["DataSource"]["output"]
    etag = source["outputVariables"]["ETag"]
    assert source["outputVariables"]["VersionId"] not in ("", "null")
    submit = actions["Submit"]
    assert json.loads(submit["input"]["resolvedConfiguration"]["UserParameters"]) == {
        "execution_id": execution_id, "threshold": "450", "etag": etag}
    assert "#{variables.Threshold}" in submit["input"]["configuration"]["UserParameters"]
    job_id = submit["output"]["outputVariables"].pop("JobId")
    assert submit["output"]["outputVariables"] == {
        "JobName": f"job-{execution_id}", "Threshold": "450", "Etag": etag, "Greeting": "hello", "Stage": "Work",
        "Endpoint": stand.aws.url}
    details = cp.get_job_details(jobId=job_id)["jobDetails"]
    assert details["data"]["pipelineContext"]["pipelineExecutionId"] == execution_id
    assert details["data"]["encryptionKey"] == {"id": stand.key, "type": "KMS"}
    with pytest.raises(ClientError) as caught:  # a job reports once
        cp.put_job_success_result(jobId=job_id)
    assert caught.value.response["Error"]["Code"] == "InvalidJobStateException"
    assert submit["output"]["executionResult"]["externalExecutionId"] == "job-1"
    assert json.loads(actions["Check"]["input"]["resolvedConfiguration"]["UserParameters"])["value"] == \
        f"job-{execution_id}"
    assert actions["Check"]["output"]["outputVariables"]["Value"] == f"job-{execution_id}"
    assert actions["ImageCheck"]["output"]["outputVariables"]["Value"] == "hello"  # handler from the image CMD
    assert 50_000 < int(actions["Check"]["output"]["outputVariables"]["Remaining"]) <= 60_000

    # The source artifact wraps the object; the Lambda's output artifact is where the job said.
    s3 = stand.aws.client("s3")
    raw = source["outputArtifacts"][0]["s3location"]
    assert raw["key"].startswith("flow/RawData/")
    body = s3.get_object(Bucket=raw["bucket"], Key=raw["key"])["Body"].read()
    assert zipfile.ZipFile(io.BytesIO(body)).read("data.csv") == b"a,b\n1,2\n"
    config = submit["output"]["outputArtifacts"][0]["s3location"]
    written = s3.get_object(Bucket=config["bucket"], Key=config["key"])["Body"].read()
    assert json.loads(zipfile.ZipFile(io.BytesIO(written)).read("config.json")) == {"job": execution_id}

    # Same runOrder runs in parallel.
    check, image_check = actions["Check"], actions["ImageCheck"]
    assert check["startTime"] < image_check["lastUpdateTime"] and image_check["startTime"] < check["lastUpdateTime"]

    state = cp.get_pipeline_state(name="flow")
    work = next(s for s in state["stageStates"] if s["stageName"] == "Work")
    assert work["latestExecution"] == {"pipelineExecutionId": execution_id, "status": "Succeeded",
                                       "type": "STANDARD"}
    assert {a["actionName"]: a["latestExecution"]["status"] for a in work["actionStates"]} == {
        "Submit": "Succeeded", "Check": "Succeeded", "ImageCheck": "Succeeded"}
    assert state["stageStates"][0]["actionStates"][0]["currentRevision"]["revisionId"] == \
        source["outputVariables"]["VersionId"]
    summaries = cp.list_pipeline_executions(pipelineName="flow")["pipelineExecutionSummaries"]
    assert summaries[0]["pipelineExecutionId"] == execution_id and summaries[0]["sourceRevisions"][0][
        "actionName"] == "DataSource"


def test_continuation_reinvokes_on_a_change_signal(stand):
    create_function(stand, "monitor", f"{HERE}.monitor_handler")
    create_pipeline(stand, "monitoring", [data_source(), {"name": "Watch", "actions": [
        lambda_action("Monitor", "monitor", namespace="Monitor",
                      params={"bucket": "engine-data", "marker": "markers/monitoring"})]}])
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name="monitoring")["pipelineExecutionId"]

    def monitor_state():
        stage = cp.get_pipeline_state(name="monitoring")["stageStates"][1]
        latest = stage["actionStates"][0].get("latestExecution", {})
        return latest if latest.get("summary") == "waiting for the marker" else None

    latest = wait_for(monitor_state, what="the first in-progress report")
    assert latest["status"] == "InProgress" and latest["percentComplete"] == 50
    time.sleep(0.5)  # no change: no re-invocation (the fallback is 30 s here)
    stand.aws.client("s3").put_object(Bucket="engine-data", Key="markers/monitoring", Body=b"")
    signalled = time.monotonic()
    stand.runtime.changes.notify()
    execution = wait_done(stand, "monitoring", execution_id, timeout=20)
    assert time.monotonic() - signalled < 10
    assert execution["status"] == "Succeeded"
    assert actions_of(stand, "monitoring", execution_id)["Monitor"]["output"]["outputVariables"] == {
        "Invocations": "2"}


@pytest.mark.parametrize("handler, params, message", [
    ("reject_handler", "{}", "model REJECTED: rmse 700 > threshold 600"),
    ("silent_handler", "{}", "the function ended without PutJobSuccessResult/PutJobFailureResult"),
    ("raising_handler", "{}", "RuntimeError: boom in the handler"),
    ("sleep_handler", '{"value": "#{Missing.Value}"}', "cannot resolve #{Missing.Value}"),
    ("sleep_handler", '{"value": "#{Data.Nope}"}', "namespace 'Data' has no variable 'Nope'"),
], ids=["reports-failure", "never-reports", "raises", "unknown-namespace", "unknown-variable"])
def test_a_failed_action_fails_the_execution_and_stops_it(stand, request, handler, params, message):
    name = f"failing-{request.node.callspec.id}"
    create_function(stand, name, f"{HERE}.{handler}")
    create_function(stand, f"{name}-after", f"{HERE}.sleep_handler")
    create_pipeline(stand, name, [data_source(), {"name": "Judge", "actions": [
        lambda_action("Evaluate", name, params=params)]},
        {"name": "After", "actions": [lambda_action("Never", f"{name}-after")]}])
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    execution = wait_done(stand, name, execution_id)

    assert execution["status"] == "Failed"
    assert message in execution["statusSummary"]
    actions = actions_of(stand, name, execution_id)
    assert set(actions) == {"DataSource", "Evaluate"}  # the later stage never ran
    error = actions["Evaluate"]["output"]["executionResult"]["errorDetails"]
    assert message in error["message"] and actions["Evaluate"]["status"] == "Failed"
    state = cp.get_pipeline_state(name=name)
    judge = state["stageStates"][1]
    assert judge["latestExecution"]["status"] == "Failed"
    assert message in judge["actionStates"][0]["latestExecution"]["errorDetails"]["message"]
    assert "latestExecution" not in state["stageStates"][2]


def test_cloudformation_deploys_from_artifacts_with_configuration_and_overrides(stand):
    template = {"Parameters": {"Name": {"Type": "String"}, "Stage": {"Type": "String"},
                               "Threshold": {"Type": "String"}},
                "Resources": {"Bucket": {"Type": "AWS::S3::Bucket",
                                         "Properties": {"BucketName": {"Fn::Sub": "${Name}-${Stage}"}}}},
                "Outputs": {"BucketName": {"Value": {"Ref": "Bucket"}},
                            "Threshold": {"Value": {"Ref": "Threshold"}}}}
    config = {"Parameters": {"Name": "deployed", "Stage": "config", "Threshold": "1"}, "Tags": {"Project": "engine"}}
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("templates/stack.json", json.dumps(template))
        archive.writestr("stack-config.json", json.dumps(config))
    deploy = {
        "name": "DeployStack", "namespace": "Stack", "runOrder": 1,
        "actionTypeId": {"category": "Deploy", "owner": "AWS", "provider": "CloudFormation", "version": "1"},
        "inputArtifacts": [{"name": "RawData"}],
        "configuration": {"ActionMode": "CREATE_UPDATE", "StackName": "engine-deployed",
                          "TemplatePath": "RawData::templates/stack.json",
                          "TemplateConfiguration": "RawData::stack-config.json",
                          "Capabilities": "CAPABILITY_IAM,CAPABILITY_NAMED_IAM",
                          "ParameterOverrides": '{"Stage": "override", "Threshold": "#{variables.Threshold}"}'}}
    create_pipeline(stand, "deploying", [data_source("Bundle", "bundles/stack.zip"),
                                         {"name": "Deploy", "actions": [deploy]}],
                    variables=[{"name": "Threshold", "defaultValue": "600"}])
    # The bundle after the pipeline: the execution its creation starts fails at Source, as on a first deployment,
    # instead of racing the abandon to a deployment of its own.
    stand.aws.client("s3").put_object(Bucket="engine-data", Key="bundles/stack.zip", Body=bundle.getvalue())
    cp = stand.aws.client("codepipeline")
    for attempt in ("create", "update"):
        execution_id = cp.start_pipeline_execution(name="deploying")["pipelineExecutionId"]
        execution = wait_done(stand, "deploying", execution_id)
        assert execution["status"] == "Succeeded", (attempt, execution)

    stack = stand.aws.client("cloudformation").describe_stacks(StackName="engine-deployed")["Stacks"][0]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]} == {
        "Name": "deployed", "Stage": "override", "Threshold": "600"}
    assert {t["Key"]: t["Value"] for t in stack.get("Tags", [])} == {"Project": "engine"}
    deploy = actions_of(stand, "deploying", execution_id)["DeployStack"]
    assert deploy["output"]["outputVariables"] == {"BucketName": "deployed-override", "Threshold": "600"}
    assert deploy["output"]["executionResult"]["externalExecutionSummary"].startswith("Stack engine-deployed ")
    assert stand.applied == ["engine-deployed", "engine-deployed"]


@pytest.mark.parametrize("mode, second", [
    ("CREATE_UPDATE", "is in ROLLBACK_COMPLETE state and can not be updated"),
    ("REPLACE_ON_FAILURE", "ended ROLLBACK_COMPLETE: Topic: "),
], ids=["create-update-refuses", "replace-on-failure-replaces"])
def test_a_stack_whose_create_rolled_back(stand, mode, second):
    """The first create fails (the stack role may not create the topic) and rolls back; CREATE_UPDATE then
    fails on the ROLLBACK_COMPLETE stack, as CloudFormation refuses to update it, while REPLACE_ON_FAILURE
    deletes it and creates it again (failing again here, for the same reason)."""
    iam = stand.aws.client("iam")
    role_name = f"no-sns-{mode.lower().replace('_', '-')}"
    role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "cloudformation.amazonaws.com"}}]}))
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("stack.json", json.dumps(template))
    key = f"bundles/{role_name}.zip"
    stack = f"engine-{role_name}"
    deploy = {"name": "DeployStack", "runOrder": 1, "inputArtifacts": [{"name": "RawData"}],
              "actionTypeId": {"category": "Deploy", "owner": "AWS", "provider": "CloudFormation", "version": "1"},
              "configuration": {"ActionMode": mode, "StackName": stack, "TemplatePath": "RawData::stack.json",
                                "RoleArn": role["Role"]["Arn"]}}
    create_pipeline(stand, stack, [data_source("Bundle", key), {"name": "Deploy", "actions": [deploy]}])
    stand.aws.client("s3").put_object(Bucket="engine-data", Key=key, Body=bundle.getvalue())  # after: no race
    cp = stand.aws.client("codepipeline")
    messages = []
    for _ in range(2):
        execution_id = cp.start_pipeline_execution(name=stack)["pipelineExecutionId"]
        assert wait_done(stand, stack, execution_id)["status"] == "Failed"
        result = actions_of(stand, stack, execution_id)["DeployStack"]["output"]["executionResult"]
        messages.append(result["errorDetails"]["message"])
    assert "ended ROLLBACK_COMPLETE: Topic: " in messages[0] and "sns:CreateTopic" in messages[0]
    assert second in messages[1]
    status = stand.aws.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    assert status == "ROLLBACK_COMPLETE"


@pytest.mark.parametrize("buildspec, repository, env, exported, image_check", [
    ("buildspecs/training-image.yml", "engine-training",
     {"TF_VERSION": "2.21", "TF_PY_VERSION": "py312", "GLUE_CODE_URI": "s3://engine-data/code/glue/"},
     {"IMAGE_URI", "IMAGE_TAG"}, lambda image: "train" in image.programs and "serve" in image.programs),
    ("buildspecs/test-image.yml", "engine-endpoint-test", {}, {"IMAGE_URI", "IMAGE_TAG"},
     lambda image: image.lambda_handler == "lambdas.endpoint_test.handler"),
], ids=["training-image", "test-image"])
def test_codebuild_is_skipped_honestly_and_exports_the_image(stand, buildspec, repository, env, exported,
                                                             image_check):
    project = f"{repository}-image"
    stand.aws.client("ecr").create_repository(repositoryName=repository, imageTagMutability="IMMUTABLE")
    variables = [{"name": "IMAGE_REPO_URI", "value": f"{REPO}/{repository}"}] + [
        {"name": k, "value": v} for k, v in env.items()]
    stand.aws.client("codebuild").create_project(
        name=project, source={"type": "CODEPIPELINE", "buildspec": buildspec, "location": "codepipeline"},
        artifacts={"type": "CODEPIPELINE", "location": "codepipeline"}, serviceRole=stand.role,
        environment={"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0",
                     "computeType": "BUILD_GENERAL1_SMALL", "environmentVariables": variables})
    codecommit = {"category": "Source", "owner": "AWS", "provider": "CodeCommit", "version": "1"}
    create_pipeline(stand, project, [{"name": "Source", "actions": [
        {"name": f"{kind}Source", "actionTypeId": codecommit, "namespace": f"{kind}Source",
         "configuration": {"RepositoryName": "mlops", "BranchName": kind.lower()},
         "outputArtifacts": [{"name": f"{kind}Code"}]} for kind in ("Model", "Etl")]},
        {"name": "Build", "actions": [{
            "name": "BuildImage", "namespace": "Build",
            "actionTypeId": {"category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"},
            "configuration": {"ProjectName": project, "PrimarySource": "ModelCode"},
            "inputArtifacts": [{"name": "ModelCode"}, {"name": "EtlCode"}]}]}])
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name=project)["pipelineExecutionId"]
    execution = wait_done(stand, project, execution_id)

    assert execution["status"] == "Succeeded", execution.get("statusSummary")
    actions = actions_of(stand, project, execution_id)
    commit = actions["ModelSource"]["output"]["outputVariables"]["CommitId"]
    assert len(commit) == 40 and actions["ModelSource"]["output"]["outputVariables"]["BranchName"] == "model"
    build = actions["BuildImage"]
    uri = f"{REPO}/{repository}:{commit}"
    assert set(build["output"]["outputVariables"]) == exported
    assert build["output"]["outputVariables"]["IMAGE_URI"] == uri
    dockerfile = "src/training/Dockerfile" if "training" in buildspec else "src/lambdas/Dockerfile"
    summary = f"SKIPPED: no container engine here; image {uri} runs from source {dockerfile}"
    assert build["output"]["executionResult"]["externalExecutionSummary"] == summary
    state = cp.get_pipeline_state(name=project)
    assert state["stageStates"][1]["actionStates"][0]["latestExecution"]["summary"] == summary
    assert image_check(stand.runtime.images.resolve(uri))
    (pushed,) = stand.aws.client("ecr").describe_images(repositoryName=repository)["imageDetails"]
    assert pushed["imageTags"] == [commit]  # as `docker push` leaves it, for DescribeImages and retagging
    if "training" in buildspec:  # the Glue code the next stage runs is published, as the build would
        s3 = stand.aws.client("s3")
        etl = s3.get_object(Bucket="engine-data", Key="code/glue/etl.py")["Body"].read()
        assert etl == (ROOT / "src/glue_jobs/etl.py").read_bytes()
        package = zipfile.ZipFile(io.BytesIO(s3.get_object(Bucket="engine-data",
                                                           Key="code/glue/training.zip")["Body"].read()))
        names = package.namelist()
        assert "training/features.py" in names and not any("__pycache__" in n or "/bin/" in n for n in names)


def test_queued_executions_run_one_after_the_other_with_their_own_variables(stand):
    create_function(stand, "queued-sleep", f"{HERE}.sleep_handler")
    sleep = lambda_action("Sleep", "queued-sleep", namespace="Work",
                          params='{"value": "#{variables.Tag}-#{codepipeline.PipelineExecutionId}", "seconds": 1}')
    create_pipeline(stand, "queued", [data_source(), {"name": "Work", "actions": [sleep]}],
                    variables=[{"name": "Tag", "defaultValue": "none"}])
    cp = stand.aws.client("codepipeline")
    first = cp.start_pipeline_execution(name="queued", variables=[{"name": "Tag", "value": "a"}])["pipelineExecutionId"]
    second = cp.start_pipeline_execution(name="queued", variables=[{"name": "Tag", "value": "b"}])[
        "pipelineExecutionId"]

    def second_waits():
        work = cp.get_pipeline_state(name="queued")["stageStates"][1]
        return [e["pipelineExecutionId"] for e in work.get("inboundExecutions", [])] == [second]

    wait_for(second_waits, what="the second execution to wait for the Work stage")
    assert wait_done(stand, "queued", first)["status"] == "Succeeded"
    assert wait_done(stand, "queued", second)["status"] == "Succeeded"
    one, two = actions_of(stand, "queued", first)["Sleep"], actions_of(stand, "queued", second)["Sleep"]
    assert one["lastUpdateTime"] <= two["startTime"]
    assert one["output"]["outputVariables"]["Value"] == f"a-{first}"
    assert two["output"]["outputVariables"]["Value"] == f"b-{second}"
    listed = cp.list_pipeline_executions(pipelineName="queued")["pipelineExecutionSummaries"]
    assert [s["pipelineExecutionId"] for s in listed][:2] == [second, first]  # newest first
    assert [s["trigger"]["triggerType"] for s in listed] == ["StartPipelineExecution"] * 2 + ["CreatePipeline"]


def test_stop_with_abandon_ends_the_execution_stopped(stand):
    create_function(stand, "stopping-monitor", f"{HERE}.monitor_handler")
    create_pipeline(stand, "stopping", [data_source(), {"name": "Watch", "actions": [
        lambda_action("Monitor", "stopping-monitor", params={"bucket": "engine-data", "marker": "markers/never"})]},
        {"name": "After", "actions": [lambda_action("Never", "stopping-monitor")]}])
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name="stopping")["pipelineExecutionId"]
    wait_for(lambda: cp.get_pipeline_state(name="stopping")["stageStates"][1]["actionStates"][0]
             .get("latestExecution", {}).get("percentComplete") == 50, what="the monitor to be in progress")

    cp.stop_pipeline_execution(pipelineName="stopping", pipelineExecutionId=execution_id, abandon=True,
                               reason="operator stop")
    execution = wait_done(stand, "stopping", execution_id, timeout=10)
    assert execution["status"] == "Stopped"
    assert actions_of(stand, "stopping", execution_id)["Monitor"]["status"] == "Abandoned"
    summary = cp.list_pipeline_executions(pipelineName="stopping")["pipelineExecutionSummaries"][0]
    assert summary["stopTrigger"] == {"reason": "operator stop"}
    with pytest.raises(ClientError) as caught:
        cp.stop_pipeline_execution(pipelineName="stopping", pipelineExecutionId=execution_id)
    assert caught.value.response["Error"]["Code"] == "PipelineExecutionNotStoppableException"


@pytest.mark.parametrize("call, code", [
    (lambda cp: cp.get_pipeline_execution(pipelineName="flow", pipelineExecutionId="00000000-0000-0000-0000-"
                                          "000000000000"), "PipelineExecutionNotFoundException"),
    (lambda cp: cp.get_pipeline_state(name="no-such-pipeline"), "PipelineNotFoundException"),
    (lambda cp: cp.start_pipeline_execution(name="no-such-pipeline"), "PipelineNotFoundException"),
    (lambda cp: cp.start_pipeline_execution(name="flow", variables=[{"name": "Undeclared", "value": "1"}]),
     "ValidationException"),
    (lambda cp: cp.put_job_success_result(jobId="00000000-0000-0000-0000-000000000000"), "JobNotFoundException"),
    (lambda cp: cp.put_job_failure_result(jobId="00000000-0000-0000-0000-000000000000",
                                          failureDetails={"type": "JobFailed", "message": "x"}),
     "JobNotFoundException"),
    (lambda cp: cp.get_job_details(jobId="00000000-0000-0000-0000-000000000000"), "JobNotFoundException"),
], ids=["unknown-execution", "unknown-pipeline-state", "unknown-pipeline-start", "undeclared-variable",
        "success-unknown-job", "failure-unknown-job", "details-unknown-job"])
def test_errors_in_aws_terms(stand, call, code):
    if "flow" not in {p["name"] for p in stand.aws.client("codepipeline").list_pipelines()["pipelines"]}:
        create_pipeline(stand, "flow", [data_source(), {"name": "Work", "actions": [lambda_action("Noop", "none")]}])
    with pytest.raises(ClientError) as caught:
        call(stand.aws.client("codepipeline"))
    assert caught.value.response["Error"]["Code"] == code


def test_stop_and_wait_lets_the_running_action_finish(stand):
    create_function(stand, "waiting-monitor", f"{HERE}.monitor_handler")
    create_pipeline(stand, "waiting", [data_source(), {"name": "Watch", "actions": [
        lambda_action("Monitor", "waiting-monitor", params={"bucket": "engine-data", "marker": "markers/waiting"})]},
        {"name": "After", "actions": [lambda_action("Never", "waiting-monitor")]}])
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name="waiting")["pipelineExecutionId"]
    wait_for(lambda: cp.get_pipeline_state(name="waiting")["stageStates"][1]["actionStates"][0]
             .get("latestExecution", {}).get("percentComplete") == 50, what="the monitor to be in progress")

    cp.stop_pipeline_execution(pipelineName="waiting", pipelineExecutionId=execution_id)
    assert cp.get_pipeline_execution(pipelineName="waiting", pipelineExecutionId=execution_id)[
        "pipelineExecution"]["status"] == "Stopping"
    with pytest.raises(ClientError) as caught:
        cp.stop_pipeline_execution(pipelineName="waiting", pipelineExecutionId=execution_id)
    assert caught.value.response["Error"]["Code"] == "DuplicatedStopRequestException"
    stand.aws.client("s3").put_object(Bucket="engine-data", Key="markers/waiting", Body=b"")
    stand.runtime.changes.notify()
    execution = wait_done(stand, "waiting", execution_id, timeout=20)

    assert execution["status"] == "Stopped"
    actions = actions_of(stand, "waiting", execution_id)
    assert set(actions) == {"DataSource", "Monitor"} and actions["Monitor"]["status"] == "Succeeded"


def test_a_warm_worker_serves_every_invocation_of_its_function(stand):
    create_function(stand, "warm-pid", f"{HERE}.pid_handler", env={"GREETING": "one"})
    create_function(stand, "warm-other", f"{HERE}.pid_handler", env={"GREETING": "two"})
    create_pipeline(stand, "warm", [data_source(), {"name": "Work", "actions": [
        lambda_action("First", "warm-pid", namespace="First"),
        lambda_action("Other", "warm-other", namespace="Other"),
        lambda_action("Second", "warm-pid", run_order=2, namespace="Second")]}])
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name="warm")["pipelineExecutionId"]
    assert wait_done(stand, "warm", execution_id)["status"] == "Succeeded"

    actions = actions_of(stand, "warm", execution_id)
    first, second, other = (actions[a]["output"]["outputVariables"] for a in ("First", "Second", "Other"))
    assert first["Pid"] == second["Pid"] != str(os.getpid())  # one process served both, not the engine
    assert (first["Calls"], second["Calls"]) == ("1", "2")  # the handler module was imported once
    assert other["Pid"] != first["Pid"] and other["Calls"] == "1"  # another function: its own worker
    assert (first["Greeting"], second["Greeting"], other["Greeting"]) == ("one", "one", "two")
    assert first["Cwd"] != second["Cwd"]  # each invocation runs in its own action's folder
    # Each invocation's output goes to its own log, not to the worker's earlier or later ones.
    logs = {a: actions[a]["output"]["executionResult"]["externalExecutionUrl"] for a in ("First", "Second")}
    assert all(url.startswith("file://") for url in logs.values())
    first_log, second_log = (Path(logs[a][len("file://"):]).read_text() for a in ("First", "Second"))
    assert f"pid handler call 1 in {first['Pid']}" in first_log and "call 2" not in first_log
    assert f"pid handler call 2 in {first['Pid']}" in second_log and "call 1" not in second_log


def test_an_execution_starts_its_functions_workers_before_their_actions(stand):
    """The scheduler prewarms the workers of the stages ahead; the first invocation reuses the prewarmed one."""
    create_function(stand, "prewarm-wait", f"{HERE}.sleep_handler")
    create_function(stand, "prewarm-pid", f"{HERE}.pid_handler")
    create_pipeline(stand, "prewarming", [
        data_source(),
        {"name": "Wait", "actions": [lambda_action("Wait", "prewarm-wait", params={"seconds": 1.5})]},
        {"name": "Work", "actions": [lambda_action("Pid", "prewarm-pid", namespace="Pid")]}])
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name="prewarming")["pipelineExecutionId"]
    assert wait_done(stand, "prewarming", execution_id)["status"] == "Succeeded"

    pid = actions_of(stand, "prewarming", execution_id)["Pid"]
    workers = stand.runtime.lambda_workers.workers("prewarm-pid")
    assert [str(w.process.pid) for w in workers] == [pid["output"]["outputVariables"]["Pid"]]  # one, reused
    assert pid["output"]["outputVariables"]["Calls"] == "1"
    assert workers[0].created < pid["startTime"]  # started while the Wait stage ran, not by the invocation


def test_a_prewarmed_worker_loads_the_sdk_models_of_the_services_its_role_allows(stand):
    from mlops_local.codepipeline.actions.lambda_invoke import _role_services

    services = _role_services(stand.runtime, stand.role)  # the stand's role: codepipeline:*, s3:*, ..., iam:PassRole
    assert {"codepipeline", "s3", "sagemaker", "glue", "iam", "logs"} <= set(services)
    assert _role_services(stand.runtime, stand.role.replace("engine-role", "no-such-role")) == []


def test_a_crashed_worker_is_replaced(stand):
    create_function(stand, "crashy", f"{HERE}.pid_handler")
    create_pipeline(stand, "crashing", [data_source(), {"name": "Work", "actions": [
        lambda_action("Pid", "crashy", namespace="Pid"),
        lambda_action("Crash", "crashy", params={"exit": 3}, run_order=2)]}])
    create_pipeline(stand, "recovering", [data_source(), {"name": "Work", "actions": [
        lambda_action("Pid", "crashy", namespace="Pid")]}])
    cp = stand.aws.client("codepipeline")
    crashing = cp.start_pipeline_execution(name="crashing")["pipelineExecutionId"]
    execution = wait_done(stand, "crashing", crashing)
    assert execution["status"] == "Failed"
    assert ("Lambda crashy: Runtime exited with error: exit status 3; see CloudWatch Logs group /aws/lambda/crashy, "
            "stream ") in execution["statusSummary"]
    crashed = actions_of(stand, "crashing", crashing)["Pid"]["output"]["outputVariables"]

    recovering = cp.start_pipeline_execution(name="recovering")["pipelineExecutionId"]
    assert wait_done(stand, "recovering", recovering)["status"] == "Succeeded"
    fresh = actions_of(stand, "recovering", recovering)["Pid"]["output"]["outputVariables"]
    assert fresh["Pid"] != crashed["Pid"] and fresh["Calls"] == "1"  # a new worker, a fresh import


def test_list_pipelines_tells_type_and_execution_mode(stand):
    work = {"name": "Work", "actions": [lambda_action("Noop", "none")]}
    create_pipeline(stand, "listed-parallel", [data_source(), work], mode="PARALLEL")
    create_pipeline(stand, "listed-queued", [data_source(), work], mode="QUEUED")
    listed = {p["name"]: p for p in stand.aws.client("codepipeline").list_pipelines()["pipelines"]}
    fields = {name: (listed[name]["pipelineType"], listed[name]["executionMode"], listed[name]["version"])
              for name in ("listed-parallel", "listed-queued")}
    assert fields == {"listed-parallel": ("V2", "PARALLEL", 1), "listed-queued": ("V2", "QUEUED", 1)}
    page = stand.aws.client("codepipeline").list_pipelines(maxResults=1)
    assert len(page["pipelines"]) == 1 and page["nextToken"]


def runs_of(stand, pipeline: str, execution_id: str) -> list[tuple[str, str]]:
    """(action, status) of every run of the execution, oldest first: a retry adds runs."""
    details = stand.aws.client("codepipeline").list_action_executions(
        pipelineName=pipeline, filter={"pipelineExecutionId": execution_id})["actionExecutionDetails"]
    return [(d["actionName"], d["status"]) for d in sorted(details, key=lambda d: d["startTime"])]


@pytest.mark.parametrize("mode, work_runs", [
    ("FAILED_ACTIONS", [("Flaky", "Failed"), ("Flaky", "Succeeded"), ("Steady", "Succeeded")]),
    ("ALL_ACTIONS", [("Flaky", "Failed"), ("Flaky", "Succeeded"), ("Steady", "Succeeded"), ("Steady", "Succeeded")]),
], ids=["failed-actions", "all-actions"])
def test_retrying_a_failed_stage_reruns_it_and_the_execution_goes_on(stand, mode, work_runs):
    name = f"retry-{mode.lower().replace('_', '-')}"
    marker = f"markers/{name}"
    create_function(stand, f"{name}-flaky", f"{HERE}.flaky_handler")
    create_function(stand, f"{name}-steady", f"{HERE}.sleep_handler")
    create_pipeline(stand, name, [data_source(), {"name": "Work", "actions": [
        lambda_action("Steady", f"{name}-steady"),
        lambda_action("Flaky", f"{name}-flaky", params={"bucket": "engine-data", "marker": marker})]},
        {"name": "After", "actions": [lambda_action("Later", f"{name}-steady")]}])
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    assert wait_done(stand, name, execution_id)["status"] == "Failed"
    stand.aws.client("s3").put_object(Bucket="engine-data", Key=marker, Body=b"fixed")

    answer = cp.retry_stage_execution(pipelineName=name, stageName="Work", pipelineExecutionId=execution_id,
                                      retryMode=mode)
    assert answer["pipelineExecutionId"] == execution_id
    execution = wait_done(stand, name, execution_id)
    assert (execution["status"], execution.get("statusSummary")) == ("Succeeded", None)
    runs = runs_of(stand, name, execution_id)
    assert sorted(r for r in runs if r[0] in ("Flaky", "Steady")) == work_runs
    assert [r for r in runs if r[0] in ("DataSource", "Later")] == [("DataSource", "Succeeded"), ("Later", "Succeeded")]
    state = cp.get_pipeline_state(name=name)["stageStates"]
    assert [s["latestExecution"]["status"] for s in state] == ["Succeeded"] * 3
    with pytest.raises(ClientError) as caught:  # nothing failed any more
        cp.retry_stage_execution(pipelineName=name, stageName="Work", pipelineExecutionId=execution_id,
                                 retryMode=mode)
    assert caught.value.response["Error"]["Code"] == "StageNotRetryableException"


def test_retry_refusals_in_aws_terms(stand):
    name = "retry-refused"
    create_function(stand, f"{name}-flaky", f"{HERE}.flaky_handler")
    create_pipeline(stand, name, [data_source(), {"name": "Work", "actions": [
        lambda_action("Flaky", f"{name}-flaky", params={"bucket": "engine-data", "marker": "markers/never"})]}])
    cp = stand.aws.client("codepipeline")
    older = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    assert wait_done(stand, name, older)["status"] == "Failed"
    newer = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    assert wait_done(stand, name, newer)["status"] == "Failed"

    def refused(stage: str, execution_id: str) -> str:
        with pytest.raises(ClientError) as caught:
            cp.retry_stage_execution(pipelineName=name, stageName=stage, pipelineExecutionId=execution_id,
                                     retryMode="FAILED_ACTIONS")
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        return caught.value.response["Error"]["Code"]

    assert {"older execution": refused("Work", older), "succeeded stage": refused("Source", newer),
            "unknown stage": refused("Nope", newer)} == {
        "older execution": "NotLatestPipelineExecutionException", "succeeded stage": "StageNotRetryableException",
        "unknown stage": "StageNotFoundException"}
    cp.retry_stage_execution(pipelineName=name, stageName="Work", pipelineExecutionId=newer, retryMode="ALL_ACTIONS")
    assert wait_done(stand, name, newer)["status"] == "Failed"  # the fault is still there: it fails again
    assert [r for r in runs_of(stand, name, newer) if r[0] == "Flaky"] == [("Flaky", "Failed")] * 2


def test_an_execution_waits_at_a_disabled_transition(stand):
    name = "transition"
    create_function(stand, f"{name}-sleep", f"{HERE}.sleep_handler")
    sleep = lambda_action("Sleep", f"{name}-sleep")
    create_pipeline(stand, name, [data_source(), {"name": "Work", "actions": [sleep]}])
    cp = stand.aws.client("codepipeline")
    cp.disable_stage_transition(pipelineName=name, stageName="Work", transitionType="Inbound", reason="change freeze")
    execution_id = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    wait_for(lambda: "DataSource" in actions_of(stand, name, execution_id)
             and actions_of(stand, name, execution_id)["DataSource"]["status"] == "Succeeded", what="the source")
    time.sleep(1.0)
    work = cp.get_pipeline_state(name=name)["stageStates"][1]
    assert work["inboundTransitionState"]["enabled"] is False
    assert work["inboundTransitionState"]["disabledReason"] == "change freeze"
    assert work["inboundTransitionState"]["lastChangedBy"].endswith(":user/mlops-local")
    assert set(actions_of(stand, name, execution_id)) == {"DataSource"}  # Work not entered
    assert cp.get_pipeline_execution(pipelineName=name, pipelineExecutionId=execution_id)[
        "pipelineExecution"]["status"] == "InProgress"

    cp.enable_stage_transition(pipelineName=name, stageName="Work", transitionType="Inbound")
    assert wait_done(stand, name, execution_id)["status"] == "Succeeded"
    assert cp.get_pipeline_state(name=name)["stageStates"][1]["inboundTransitionState"] == {"enabled": True}
    with pytest.raises(ClientError) as caught:
        cp.disable_stage_transition(pipelineName=name, stageName="Nope", transitionType="Inbound", reason="x")
    assert caught.value.response["Error"]["Code"] == "StageNotFoundException"


def test_rolling_a_stage_back_runs_it_alone_with_the_target_executions_sources(stand):
    name = "rollback"
    key = "raw/rollback.csv"
    s3 = stand.aws.client("s3")
    create_function(stand, f"{name}-sleep", f"{HERE}.sleep_handler")
    work = {"name": "Work", "actions": [lambda_action("Use", f"{name}-sleep", params={"value": "#{Data.VersionId}"})]}
    create_pipeline(stand, name, [data_source(key=key), work])
    cp = stand.aws.client("codepipeline")
    versions, executions = [], []
    for body in (b"a\n1\n", b"a\n2\n"):
        versions.append(s3.put_object(Bucket="engine-data", Key=key, Body=body)["VersionId"])
        executions.append(cp.start_pipeline_execution(name=name)["pipelineExecutionId"])
        assert wait_done(stand, name, executions[-1])["status"] == "Succeeded"

    rollback_id = cp.rollback_stage(pipelineName=name, stageName="Work",
                                    targetPipelineExecutionId=executions[0])["pipelineExecutionId"]
    execution = wait_done(stand, name, rollback_id)
    assert (execution["status"], execution["executionType"], execution["rollbackMetadata"],
            execution["trigger"]["triggerType"]) == ("Succeeded", "ROLLBACK",
                                                     {"rollbackTargetPipelineExecutionId": executions[0]},
                                                     "ManualRollback")
    runs = actions_of(stand, name, rollback_id)
    assert set(runs) == {"Use"}  # the stage alone: no new source run
    assert runs["Use"]["output"]["outputVariables"]["Value"] == versions[0]  # the target's revision, not the latest
    summary = cp.list_pipeline_executions(pipelineName=name)["pipelineExecutionSummaries"][0]
    assert (summary["pipelineExecutionId"], summary["executionType"]) == (rollback_id, "ROLLBACK")
    assert cp.get_pipeline_state(name=name)["stageStates"][1]["latestExecution"]["type"] == "ROLLBACK"

    def refused(stage: str, target: str) -> str:
        with pytest.raises(ClientError) as caught:
            cp.rollback_stage(pipelineName=name, stageName=stage, targetPipelineExecutionId=target)
        return caught.value.response["Error"]["Code"]

    assert {"source stage": refused("Source", executions[0]), "rollback target": refused("Work", rollback_id),
            "unknown stage": refused("Nope", executions[0]),
            "unknown execution": refused("Work", "00000000-0000-0000-0000-000000000000")} == {
        "source stage": "UnableToRollbackStageException", "rollback target": "UnableToRollbackStageException",
        "unknown stage": "StageNotFoundException", "unknown execution": "PipelineExecutionNotFoundException"}


def test_a_rollback_target_must_have_succeeded_in_the_stage(stand):
    name = "rollback-failed-target"
    create_function(stand, f"{name}-flaky", f"{HERE}.flaky_handler")
    create_pipeline(stand, name, [data_source(), {"name": "Work", "actions": [
        lambda_action("Flaky", f"{name}-flaky", params={"bucket": "engine-data", "marker": "markers/never"})]}])
    cp = stand.aws.client("codepipeline")
    failed = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    assert wait_done(stand, name, failed)["status"] == "Failed"
    with pytest.raises(ClientError) as caught:
        cp.rollback_stage(pipelineName=name, stageName="Work", targetPipelineExecutionId=failed)
    assert caught.value.response["Error"]["Code"] == "UnableToRollbackStageException"
    assert len(cp.list_pipeline_executions(pipelineName=name)["pipelineExecutionSummaries"]) == 2  # none started


@pytest.mark.parametrize("params, code", [
    ({"pipelineName": "no-such-pipeline"}, "PipelineNotFoundException"),
    ({"pipelineName": "rules", "filter": {"pipelineExecutionId": "00000000-0000-0000-0000-000000000000"}},
     "PipelineExecutionNotFoundException"),
    ({"pipelineName": "rules", "nextToken": "forged"}, "InvalidNextTokenException"),
    ({"pipelineName": "rules", "maxResults": 101}, "ValidationException"),
], ids=["unknown-pipeline", "unknown-execution", "forged-token", "too-many-results"])
def test_list_rule_executions_refusals(stand, params, code):
    if "rules" not in {p["name"] for p in stand.aws.client("codepipeline").list_pipelines()["pipelines"]}:
        create_pipeline(stand, "rules", [data_source(), {"name": "Work", "actions": [lambda_action("Noop", "none")]}])
    with pytest.raises(ClientError) as caught:
        stand.aws.client("codepipeline").list_rule_executions(**params)
    assert caught.value.response["Error"]["Code"] == code


def test_a_pipeline_without_conditions_has_no_rule_executions(stand):
    create_pipeline(stand, "no-rules", [data_source(), {"name": "Work", "actions": [lambda_action("Noop", "none")]}])
    cp = stand.aws.client("codepipeline")
    created = cp.list_pipeline_executions(pipelineName="no-rules")["pipelineExecutionSummaries"][0]
    answer = cp.list_rule_executions(pipelineName="no-rules", maxResults=5,
                                     filter={"pipelineExecutionId": created["pipelineExecutionId"]})
    assert (answer["ruleExecutionDetails"], answer.get("nextToken")) == ([], None)


def test_codecommit_lists_repositories_sorted_and_paged_as_aws(stand):
    cc = stand.aws.client("codecommit")
    for name in ("list-b", "list-a", "list-c"):
        cc.create_repository(repositoryName=name)
        time.sleep(0.01)  # distinct lastModifiedDate

    def names(**params) -> list[str]:
        return [r["repositoryName"] for r in cc.list_repositories(**params)["repositories"]
                if r["repositoryName"].startswith("list-")]

    assert {"default": names(), "by-name-descending": names(order="descending"),
            "by-date": names(sortBy="lastModifiedDate"),
            "by-date-descending": names(sortBy="lastModifiedDate", order="descending")} == {
        "default": ["list-a", "list-b", "list-c"], "by-name-descending": ["list-c", "list-b", "list-a"],
        "by-date": ["list-b", "list-a", "list-c"], "by-date-descending": ["list-c", "list-a", "list-b"]}
    ids = {r["repositoryName"]: r["repositoryId"] for r in cc.list_repositories()["repositories"]}
    assert ids["list-a"] == cc.get_repository(repositoryName="list-a")["repositoryMetadata"]["repositoryId"]
    for params, code in (({"nextToken": "forged"}, "InvalidContinuationTokenException"),
                         ({"sortBy": "size"}, "InvalidSortByException"), ({"order": "up"}, "InvalidOrderException")):
        with pytest.raises(ClientError) as caught:
            cc.list_repositories(**params)
        assert caught.value.response["Error"]["Code"] == code, params
