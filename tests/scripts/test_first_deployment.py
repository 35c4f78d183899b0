"""A first deployment ends in one pipeline execution, and it has every source (issue #11, item 10).

CodePipeline starts an execution when it creates a pipeline (trigger CreatePipeline; CodePipeline User
Guide, "Start a pipeline in CodePipeline"): deploy.sh abandons it. The pushes that create the branches are
referenceCreated events, which SourceChangeRule does not match; the data upload that follows them is the
one event a rule matches. Here deploy.sh, push_sources.sh and upload_data.sh run against a fake `aws` and a
local git remote, and every event they cause is matched against the template's rules (moto's EventBridge
pattern matching).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.scripts.script_stubs import (
    DATA_BUCKET, GIT_IDENTITY, OUTPUTS, SAMPLES, ZERO, EventLog, FakeAws, codecommit_event, matching_rules,
    project_copy, recording_remote, run, s3_event)
from tests.templates.cfn import pipeline_resource

OLD, NEW = "1" * 40, "2" * 40
MODEL, ETL, TEST = (f"refs/heads/{SAMPLES[name]}" for name in ("ModelBranch", "EtlBranch", "TestBranch"))


@pytest.mark.parametrize("event, started_by", [
    (codecommit_event(ZERO, NEW, MODEL), []),
    (codecommit_event(ZERO, NEW, ETL), []),
    (codecommit_event(ZERO, NEW, TEST), []),
    (codecommit_event(OLD, NEW, MODEL), ["SourceChangeRule"]),
    (codecommit_event(OLD, NEW, ETL), ["SourceChangeRule"]),
    (codecommit_event(OLD, NEW, TEST), ["SourceChangeRule"]),
    (codecommit_event(OLD, ZERO, MODEL), []),
    (codecommit_event(OLD, NEW, "refs/heads/feature"), []),
    (codecommit_event(OLD, NEW, f"refs/tags/{SAMPLES['ModelBranch']}"), []),
    (s3_event(DATA_BUCKET, OUTPUTS["DataObjectKey"]), ["DataSourceRule"]),
    (s3_event(DATA_BUCKET, OUTPUTS["DatasetConfigKey"]), []),
    (s3_event(DATA_BUCKET, "code/glue/etl.py"), []),
    (s3_event("someone-elses-bucket", OUTPUTS["DataObjectKey"]), []),
], ids=["model-branch-created", "etl-branch-created", "test-branch-created", "model-branch-updated",
        "etl-branch-updated", "test-branch-updated", "model-branch-deleted", "other-branch-updated",
        "tag-named-like-a-branch", "data-object-created", "dataset-config-created", "glue-script-created",
        "data-key-in-another-bucket"])
def test_which_events_start_the_pipeline(event: dict[str, Any], started_by: list[str]) -> None:
    assert matching_rules(event) == started_by


def test_the_pipeline_resource_starts_nothing_on_update() -> None:
    properties = pipeline_resource()
    assert properties["RestartExecutionOnUpdate"] is False
    assert "DisableInboundStageTransitions" not in properties  # see the comment on the Pipeline resource


Deployment = tuple[FakeAws, Path, Path, dict[str, str], EventLog, dict[str, list[dict[str, Any]]]]


@pytest.fixture
def first_deployment(tmp_path: Path) -> Deployment:
    """deploy.sh, push_sources.sh, upload_data.sh as deploy.sh --help says, against a new fake stack.
    Yields the fake aws, the project copy, the remote, and each script's events."""
    aws, project = FakeAws(tmp_path), project_copy(tmp_path)
    remote, ref_log = recording_remote(tmp_path)
    env = {**aws.env, **GIT_IDENTITY, "HOME": str(tmp_path)}
    log = EventLog(aws, ref_log)
    events = {}
    for script, args in [("deploy.sh", []), ("push_sources.sh", ["--remote", str(remote)]), ("upload_data.sh", [])]:
        result = run(project / "scripts" / script, *args, env=env)
        assert result.returncode == 0, f"{script}: {result.stderr}"
        events[script] = log.since_last()
    return aws, project, remote, env, log, events


def test_a_first_deployment_ends_in_one_execution_with_every_source(first_deployment: Deployment) -> None:
    aws, _, _, _, _, events = first_deployment
    # CodePipeline's own execution from creating the pipeline: abandoned by deploy.sh.
    (creation,) = aws.state["executions"]
    assert creation["trigger"]["triggerType"] == "CreatePipeline" and creation["status"] == "Stopped"
    (stop,) = aws.calls("codepipeline stop-pipeline-execution")
    assert "--abandon" in stop and creation["pipelineExecutionId"] in stop
    # The three branches were created, and no event before the data upload starts an execution.
    assert sorted(e["detail"]["referenceName"] for e in events["push_sources.sh"]) == \
        sorted(SAMPLES[name] for name in ("ModelBranch", "EtlBranch", "TestBranch"))
    assert {e["detail"]["event"] for e in events["push_sources.sh"]} == {"referenceCreated"}
    ordered = events["deploy.sh"] + events["push_sources.sh"] + events["upload_data.sh"]
    started = [(index, event) for index, event in enumerate(ordered) if matching_rules(event)]
    # Exactly one: the data object, the last event, so every branch and the data exist when it starts.
    assert [(i, e["detail"]["object"]["key"]) for i, e in started] == [(len(ordered) - 1, OUTPUTS["DataObjectKey"])]
    assert aws.calls("codepipeline start-pipeline-execution") == []


def test_later_pushes_and_uploads_each_start_one_execution(first_deployment: Deployment) -> None:
    aws, project, remote, env, log, _ = first_deployment
    (project / "src" / "training" / "train.py").write_text("# a change to the model code\n")
    assert run(project / "scripts" / "push_sources.sh", "--remote", str(remote), env=env).returncode == 0
    pushed = log.since_last()
    assert [(e["detail"]["referenceName"], e["detail"]["event"]) for e in pushed] == \
        [(SAMPLES["ModelBranch"], "referenceUpdated")]  # only the changed branch is pushed
    assert matching_rules(pushed[0]) == ["SourceChangeRule"]
    assert run(project / "scripts" / "upload_data.sh", env=env).returncode == 0
    assert [matching_rules(e) for e in log.since_last()] == [[], ["DataSourceRule"]]  # config, then data


@pytest.mark.parametrize("stack_created, executions, stopped", [
    (False, [], "created"),
    (True, [{"pipelineExecutionId": "e-1", "status": "Failed", "trigger": {"triggerType": "CreatePipeline"}}], None),
    (True, [{"pipelineExecutionId": "e-1", "status": "InProgress",
             "trigger": {"triggerType": "CloudWatchEvent"}}], None),
    (True, [{"pipelineExecutionId": "e-1", "status": "InProgress",
             "trigger": {"triggerType": "StartPipelineExecution"}}], None),
    (True, [{"pipelineExecutionId": "e-2", "status": "InProgress", "trigger": {"triggerType": "CloudWatchEvent"}},
            {"pipelineExecutionId": "e-1", "status": "InProgress", "trigger": {"triggerType": "CreatePipeline"}}],
     "e-1"),
], ids=["new-stack", "creation-run-already-failed", "push-run-in-progress", "explicit-run-in-progress",
        "creation-run-behind-a-push-run"])
def test_deploy_abandons_only_the_execution_pipeline_creation_started(
        tmp_path: Path, stack_created: bool, executions: list[dict[str, Any]], stopped: str | None) -> None:
    aws, project = FakeAws(tmp_path, stack_created=stack_created, executions=executions), project_copy(tmp_path)
    result = run(project / "scripts" / "deploy.sh", env=aws.env)
    assert result.returncode == 0, result.stderr
    if stopped == "created":
        stopped = next(e["pipelineExecutionId"] for e in aws.state["executions"]
                       if e["trigger"]["triggerType"] == "CreatePipeline")
    stop_calls = aws.calls("codepipeline stop-pipeline-execution")
    assert [call[call.index("--pipeline-execution-id") + 1] for call in stop_calls] == ([stopped] if stopped else [])
    assert all("--abandon" in call for call in stop_calls)
    others = [e for e in aws.state["executions"] if e["pipelineExecutionId"] != stopped]
    assert [e["status"] for e in others] == [e["status"] for e in executions if e["pipelineExecutionId"] != stopped]


def test_deploy_succeeds_when_the_creation_run_ended_before_the_stop(tmp_path: Path) -> None:
    aws, project = FakeAws(tmp_path, stop_fails=True), project_copy(tmp_path)
    result = run(project / "scripts" / "deploy.sh", env=aws.env)
    assert result.returncode == 0, result.stderr
    assert "could not stop execution" in result.stderr and "PipelineExecutionNotStoppableException" in result.stderr


# Every `aws` call is a process start (~0.3 s of the CLI's imports): each script makes the calls it needs, once.
@pytest.mark.parametrize("script, commands", [
    ("deploy.sh", ["sts get-caller-identity", "s3api head-bucket", "s3 cp", "cloudformation deploy",
                   "cloudformation describe-stacks", "s3 ls", "s3 cp", "codepipeline list-pipeline-executions",
                   "codepipeline stop-pipeline-execution"]),
    ("upload_data.sh", ["sts get-caller-identity", "cloudformation describe-stacks", "s3 cp", "s3 cp"]),
], ids=["deploy-new-stack", "upload-data"])
def test_each_script_calls_aws_once_per_need(tmp_path: Path, script: str, commands: list[str]) -> None:
    aws, project = FakeAws(tmp_path, stack_created=script != "deploy.sh"), project_copy(tmp_path)
    result = run(project / "scripts" / script, env=aws.env)
    assert result.returncode == 0, result.stderr
    assert [" ".join(call[:2]) for call in aws.state["calls"]] == commands


def test_deploy_uploads_the_glue_code_as_one_folder(first_deployment: Deployment) -> None:
    _, project, _, _, _, events = first_deployment
    keys = [event["detail"]["object"]["key"] for event in events["deploy.sh"]]
    assert keys[1:] == [f"code/glue/{name}" for name in ("etl.py", "training.zip")]  # after the Lambda zip
    assert (project / "build/deploy/glue-code/etl.py").read_text() == "# src/glue_jobs/etl.py\n"


def test_deploy_prints_every_output_once(tmp_path: Path) -> None:
    aws, project = FakeAws(tmp_path), project_copy(tmp_path)
    result = run(project / "scripts" / "deploy.sh", env=aws.env)
    assert result.returncode == 0, result.stderr
    assert [line.split() for line in result.stdout.splitlines() if line.split()[0] in OUTPUTS] == \
        [[key, value] for key, value in OUTPUTS.items()]


@pytest.mark.parametrize("outputs, message", [
    (None, "stack 'mlops-pipeline' not found"),
    ({k: v for k, v in OUTPUTS.items() if k != "DatasetConfigKey"}, "has no DatasetConfigKey output"),
], ids=["no-stack", "output-missing"])
def test_upload_data_says_what_the_stack_lacks(tmp_path: Path, outputs: dict[str, str] | None,
                                               message: str) -> None:
    aws, project = FakeAws(tmp_path, stack_created=outputs is not None), project_copy(tmp_path)
    if outputs is not None:
        aws.state_file.write_text(json.dumps({**aws.state, "outputs": outputs}))
    result = run(project / "scripts" / "upload_data.sh", env=aws.env)
    assert result.returncode == 1 and message in result.stderr
    assert aws.calls("s3 cp") == []
