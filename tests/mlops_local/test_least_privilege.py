"""Least privilege, enforced: the real pipeline on the stand-in fails at the action whose role lacks a
permission, with AWS's AccessDenied naming the IAM action and the resource.

One deployment of the real templates (scripts/deploy.sh, a small sample of the data) serves every
case: each case edits one role's inline policy as deployed (removes an action, narrows a resource,
adds a Deny, changes a condition), runs an execution, checks where and how it failed, and puts the
policy back. Cases that fail before the ETL take a few seconds each. A case whose stack create fails leaves the
stack in ROLLBACK_COMPLETE, as AWS does; the next execution replaces it (REPLACE_ON_FAILURE), so no case
deletes a stack after itself.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from mlops_local.pipeline_run import PROJECT, STACK, LocalPipeline, stack_output
from mlops_local.synthetic import write_sample
from tests.conftest import DATA, DATASET_CONFIG, ROOT

ACCOUNT, REGION = "123456789012", "us-east-1"
Document = dict[str, Any]


@dataclass
class Deployed:
    local: LocalPipeline
    pipeline: str

    def run(self) -> tuple[dict, dict[str, dict]]:
        """One execution to its end: (execution, action name -> its latest action execution)."""
        codepipeline = self.local.aws.client("codepipeline")
        execution_id = codepipeline.start_pipeline_execution(name=self.pipeline)["pipelineExecutionId"]
        self.local.engine.wait(self.pipeline, execution_id, timeout=600)
        execution = codepipeline.get_pipeline_execution(
            pipelineName=self.pipeline, pipelineExecutionId=execution_id)["pipelineExecution"]
        details = codepipeline.list_action_executions(
            pipelineName=self.pipeline, filter={"pipelineExecutionId": execution_id})["actionExecutionDetails"]
        return execution, {d["actionName"]: d for d in sorted(details, key=lambda d: d["startTime"])}

    def run_until_etl(self) -> tuple[dict, dict[str, dict]]:
        """One execution that passes the Source and Build stages and stops at SubmitEtl, whose role is denied
        glue:GetJobRuns on purpose for it."""
        iam = self.local.aws.client("iam")
        worker = role_policy(iam, "mlops-submit-etl-fn", "submit-etl")
        stop = {"Sid": "StopHere", "Effect": "Deny", "Action": "glue:GetJobRuns", "Resource": "*"}
        iam.put_role_policy(RoleName="mlops-submit-etl-fn", PolicyName="submit-etl",
                            PolicyDocument=json.dumps({**worker, "Statement": [*worker["Statement"], stop]}))
        try:
            return self.run()
        finally:
            iam.put_role_policy(RoleName="mlops-submit-etl-fn", PolicyName="submit-etl",
                                PolicyDocument=json.dumps(worker))

    def stack(self, name: str) -> dict | None:
        stacks = self.local.aws.client("cloudformation").list_stacks()["StackSummaries"]
        return next((s for s in stacks if s["StackName"] == name and s["StackStatus"] != "DELETE_COMPLETE"), None)

    def delete_stack(self, name: str) -> None:
        cloudformation = self.local.aws.client("cloudformation")
        if self.stack(name):
            cloudformation.delete_stack(StackName=name)
            cloudformation.get_waiter("stack_delete_complete").wait(
                StackName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("least-privilege")
    data = write_sample(DATA, DATASET_CONFIG, workdir / "sample.csv", every=20, duplicate_every=97)
    local = LocalPipeline(workdir / "stand-in", ROOT)
    try:
        log = workdir / "deploy.log"
        local.script("deploy.sh", "--project-name", PROJECT, f"DataObjectKey=raw/{data.name}",
                     'TrainingHyperparameters={"epochs": "3", "patience": "2"}', log=log)
        local.script("upload_data.sh", "--stack-name", STACK, "--data", str(data),
                     "--dataset-config", str(DATASET_CONFIG), log=log)
        yield Deployed(local, stack_output(local.aws.client("cloudformation"), STACK, "PipelineName"))
    finally:
        local.close()


def statement(document: Document, sid: str) -> Document:
    return next(s for s in document["Statement"] if s.get("Sid") == sid)


def without_action(sid: str, action: str) -> Callable[[Document], None]:
    def edit(document: Document) -> None:
        found = statement(document, sid)
        actions = [found["Action"]] if isinstance(found["Action"], str) else found["Action"]
        assert action in actions, f"{sid} does not grant {action}: the case no longer tests anything"
        remaining = [a for a in actions if a != action]
        if remaining:
            found["Action"] = remaining
        else:
            document["Statement"].remove(found)
    return edit


def with_resource(sid: str, old: str, new: str) -> Callable[[Document], None]:
    def edit(document: Document) -> None:
        found = statement(document, sid)
        resources = [found["Resource"]] if isinstance(found["Resource"], str) else found["Resource"]
        assert any(old in r for r in resources), f"{sid} has no resource with {old}"
        found["Resource"] = [r.replace(old, new) for r in resources]
    return edit


def with_deny(action: str, resource: str) -> Callable[[Document], None]:
    def edit(document: Document) -> None:
        document["Statement"].append({"Sid": "DenyOnPurpose", "Effect": "Deny", "Action": action,
                                      "Resource": resource})
    return edit


def with_condition(sid: str, operator: str, key: str, value: str) -> Callable[[Document], None]:
    def edit(document: Document) -> None:
        statement(document, sid)["Condition"] = {operator: {key: value}}
    return edit


JOB = f"arn:aws:glue:{REGION}:{ACCOUNT}:job/mlops-etl"
FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"
ROLE = f"arn:aws:iam::{ACCOUNT}:role"
DATA_BUCKET = f"mlops-data-{ACCOUNT}-{REGION}"


@dataclass(frozen=True)
class Case:
    role: str           # the role's name as the template names it
    policy: str         # its inline policy
    edit: Callable[[Document], None]
    action: str         # the pipeline action that must fail
    denied: str         # the IAM action its message must name
    resource: str       # ... and the resource (a prefix of the ARN is enough)
    why: str = "because no identity-based policy allows"
    siblings: tuple[str, ...] = ()  # actions of the same runOrder that fail for the same reason
    # a stack to delete first, so the action creates it (and its handlers run); the next execution replaces it
    fresh_stack: str | None = None


CASES = {
    "worker-role-lacks-glue-start": Case(
        "mlops-submit-etl-fn", "submit-etl", without_action("StartAndFindEtlRuns", "glue:StartJobRun"),
        "SubmitEtl", "glue:StartJobRun", JOB),
    "worker-role-explicit-deny-wins": Case(
        "mlops-submit-etl-fn", "submit-etl", with_deny("glue:StartJobRun", "*"),
        "SubmitEtl", "glue:StartJobRun", JOB, "with an explicit deny in an identity-based policy"),
    "pipeline-role-lacks-invoke": Case(
        "mlops-pipeline", "pipeline", with_resource("InvokeJobWorkers", "function:mlops-submit-etl",
                                                    "function:mlops-other"),
        "SubmitEtl", "lambda:InvokeFunction", f"{FUNCTION}:mlops-submit-etl"),
    "pipeline-role-wrong-prefix": Case(
        "mlops-pipeline", "pipeline", with_resource("ReadDataSource", "/raw/*", "/raw-archive/*"),
        "DataSource", "s3:GetObject", f'"arn:aws:s3:::{DATA_BUCKET}/raw/'),
    "pipeline-role-passrole-to-wrong-service": Case(
        "mlops-pipeline", "pipeline", with_condition("PassStackRolesToCloudFormation", "StringEquals",
                                                     "iam:PassedToService", "lambda.amazonaws.com"),
        "DeployTestFunction", "iam:PassRole", f"{ROLE}/mlops-test-function-stack"),
    "stack-role-lacks-create-function": Case(
        "mlops-test-function-stack", "test-function-stack",
        without_action("ManageEndpointTestFunction", "lambda:CreateFunction"),
        "DeployTestFunction", "lambda:CreateFunction", f"{FUNCTION}:mlops-endpoint-test",
        fresh_stack="mlops-endpoint-test-function"),
    "glue-role-reads-the-wrong-prefix": Case(
        "mlops-glue-etl", "etl", with_resource("ReadInputsAndCode", "/raw/*", "/raw-archive/*"),
        "MonitorEtl", "s3:GetObject", f'"arn:aws:s3:::{DATA_BUCKET}/raw/'),
    "sagemaker-role-lacks-model-upload": Case(
        "mlops-sagemaker-execution", "training-processing-serving",
        without_action("WriteModelEvaluationAndCapture", "s3:PutObject"),
        "MonitorTraining", "s3:PutObject", f'"arn:aws:s3:::{DATA_BUCKET}/runs/'),
    "pipeline-role-lacks-codebuild-start": Case(
        "mlops-pipeline", "pipeline", without_action("RunImageBuilds", "codebuild:StartBuild"),
        "BuildTrainingImage", "codebuild:StartBuild", f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/mlops-",
        siblings=("BuildTestImage",)),
}


def role_policy(iam, role: str, name: str) -> Document:
    """A role's inline policy as deployed. moto answers GetRolePolicy for a stack-made role with the
    document's Python repr rather than JSON (AWS answers URL-encoded JSON), hence literal_eval."""
    import ast

    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    return ast.literal_eval(document) if isinstance(document, str) else document


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_missing_permission_fails_the_action_that_needs_it(deployed, case):
    iam = deployed.local.aws.client("iam")
    if case.fresh_stack:
        deployed.delete_stack(case.fresh_stack)
    original = role_policy(iam, case.role, case.policy)
    edited = copy.deepcopy(original)
    case.edit(edited)
    iam.put_role_policy(RoleName=case.role, PolicyName=case.policy, PolicyDocument=json.dumps(edited))
    try:
        execution, actions = deployed.run()
    finally:
        iam.put_role_policy(RoleName=case.role, PolicyName=case.policy, PolicyDocument=json.dumps(original))

    assert execution["status"] == "Failed"
    failed = [name for name, detail in actions.items() if detail["status"] == "Failed"]
    assert sorted(failed) == sorted([case.action, *case.siblings]), {n: d["status"] for n, d in actions.items()}
    message = actions[case.action]["output"]["executionResult"]["errorDetails"]["message"]
    assert "AccessDenied" in message and f"is not authorized to perform: {case.denied} on resource: " in message
    assert f"on resource: {case.resource}" in message and case.why in message, message
    if case.fresh_stack:
        assert_the_next_execution_replaces_the_rolled_back_stack(deployed, case)


def assert_the_next_execution_replaces_the_rolled_back_stack(deployed: Deployed, case: Case) -> None:
    """With the permission back, the next execution deletes the ROLLBACK_COMPLETE stack and creates it again;
    under CREATE_UPDATE it would fail ("... is in ROLLBACK_COMPLETE state and can not be updated") until
    someone deleted the stack."""
    assert case.fresh_stack is not None
    rolled_back = deployed.stack(case.fresh_stack)
    assert rolled_back is not None and rolled_back["StackStatus"] == "ROLLBACK_COMPLETE"
    _, actions = deployed.run_until_etl()
    assert actions[case.action]["status"] == "Succeeded", actions[case.action].get("output")
    replaced = deployed.stack(case.fresh_stack)
    assert replaced is not None and replaced["StackStatus"] == "CREATE_COMPLETE"
    assert replaced["StackId"] != rolled_back["StackId"]  # a new stack, not an update of the old one


def test_with_every_policy_as_deployed_the_pipeline_passes_its_early_stages(deployed):
    """The control: the same deployment, nothing edited, gets past every action the cases fail."""
    execution, actions = deployed.run_until_etl()
    passed = {name for name, detail in actions.items() if detail["status"] == "Succeeded"}
    assert {"DataSource", "ModelSource", "BuildTrainingImage", "DeployTestFunction"} <= passed, {
        name: detail.get("output", {}).get("executionResult") for name, detail in actions.items()}
    assert execution["status"] == "Failed"  # at SubmitEtl's GetJobRuns, denied on purpose to stop early


def test_the_execution_a_new_pipeline_starts_was_abandoned_by_deploy_sh(deployed):
    """CodePipeline starts an execution of a pipeline it creates (trigger CreatePipeline); deploy.sh
    abandons it, so a first deployment ends in the one execution the data upload starts."""
    codepipeline = deployed.local.aws.client("codepipeline")
    listed = codepipeline.list_pipeline_executions(pipelineName=deployed.pipeline)["pipelineExecutionSummaries"]
    created = [e for e in listed if e["trigger"]["triggerType"] == "CreatePipeline"]
    assert len(created) == 1 and created[0]["status"] in ("Stopped", "Failed"), created
