"""The Manual approval action on the local engine: it waits for PutApprovalResult, which goes on or stops
the execution as on AWS; its timeout fails it; the answer's errors are AWS's."""
from __future__ import annotations

import datetime
import json
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mlops_local.iam.actions import Mapped, authorization
from mlops_local.iam.principals import ADMIN_USER
from tests.mlops_local.engine_stand import (HERE, Stand, actions_of, create_function, create_pipeline, data_source,
                                            lambda_action, wait_done, wait_for)

APPROVAL = {"category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1"}


def approval_pipeline(stand: Stand, name: str, configuration: dict[str, str] | None = None,
                      mode: str = "QUEUED") -> None:
    create_function(stand, f"{name}-after", f"{HERE}.sleep_handler")
    create_pipeline(stand, name, [data_source(), {"name": "Approve", "actions": [{
        "name": "Review", "actionTypeId": APPROVAL, "runOrder": 1,
        "configuration": configuration if configuration is not None else {
            "CustomData": "rmse 512 (champion 530)", "ExternalEntityLink": "http://127.0.0.1/report"}}]},
        {"name": "Prod", "actions": [lambda_action("Deploy", f"{name}-after", params={"seconds": 0})]}], mode=mode)


def open_token(stand: Stand, name: str) -> str:
    """The token GetPipelineState shows for the waiting approval (what `aws codepipeline` users read)."""
    cp = stand.aws.client("codepipeline")

    def token() -> str | None:
        latest = cp.get_pipeline_state(name=name)["stageStates"][1]["actionStates"][0].get("latestExecution") or {}
        return latest.get("token") if latest.get("status") == "InProgress" else None
    return wait_for(token, what="the approval's token")


def answer(stand: Stand, name: str, token: str, status: str, summary: str = "", **names: str) -> dict[str, Any]:
    return stand.aws.client("codepipeline").put_approval_result(
        pipelineName=names.get("pipeline", name), stageName=names.get("stage", "Approve"),
        actionName=names.get("action", "Review"), result={"status": status, "summary": summary}, token=token)


def caller(stand: Stand) -> str:
    """The stand-in's administrator, whom the tests' clients sign as (mlops_local.iam.principals)."""
    return f"arn:aws:iam::{stand.aws.account_id}:user/{ADMIN_USER}"


def test_an_approved_action_succeeds_and_the_execution_goes_on(stand: Stand) -> None:
    approval_pipeline(stand, "approve-ok")
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name="approve-ok")["pipelineExecutionId"]
    token = open_token(stand, "approve-ok")
    assert str(uuid.UUID(token)) == token  # the API's pattern for an approval token
    time.sleep(0.3)  # the action keeps waiting: nothing has answered it
    assert cp.get_pipeline_execution(pipelineName="approve-ok", pipelineExecutionId=execution_id)[
        "pipelineExecution"]["status"] == "InProgress"
    assert "Deploy" not in actions_of(stand, "approve-ok", execution_id)

    answered = answer(stand, "approve-ok", token, "Approved", "metrics look right")
    assert isinstance(answered["approvedAt"], datetime.datetime)
    assert wait_done(stand, "approve-ok", execution_id)["status"] == "Succeeded"
    actions = actions_of(stand, "approve-ok", execution_id)
    assert actions["Review"]["status"] == "Succeeded"
    assert actions["Review"]["output"]["executionResult"]["externalExecutionSummary"] == "metrics look right"
    assert actions["Review"]["input"]["configuration"]["CustomData"] == "rmse 512 (champion 530)"
    assert actions["Deploy"]["status"] == "Succeeded"
    latest = cp.get_pipeline_state(name="approve-ok")["stageStates"][1]["actionStates"][0]["latestExecution"]
    assert (latest["token"], latest["lastUpdatedBy"]) == (token, caller(stand))


def test_a_rejection_fails_the_action_and_stops_the_execution(stand: Stand) -> None:
    approval_pipeline(stand, "approve-no")
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name="approve-no")["pipelineExecutionId"]
    answer(stand, "approve-no", open_token(stand, "approve-no"), "Rejected", "worse than the champion")

    execution = wait_done(stand, "approve-no", execution_id)
    message = f"Rejected by {caller(stand)}: worse than the champion"
    assert (execution["status"], execution["statusSummary"]) == ("Failed", message)
    actions = actions_of(stand, "approve-no", execution_id)
    assert actions["Review"]["status"] == "Failed"
    assert actions["Review"]["output"]["executionResult"]["errorDetails"]["message"] == message
    assert "Deploy" not in actions  # the next stage never ran


def test_the_approval_timeout_fails_the_action(stand: Stand, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stand.engine.scheduler, "approval_timeout", 0.5)  # AWS: seven days
    approval_pipeline(stand, "approve-late")
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name="approve-late")["pipelineExecutionId"]
    token = open_token(stand, "approve-late")

    execution = wait_done(stand, "approve-late", execution_id, timeout=10)
    assert execution["status"] == "Failed"
    assert execution["statusSummary"].startswith("Approval expired: no PutApprovalResult answer within 0 seconds")
    assert "Deploy" not in actions_of(stand, "approve-late", execution_id)
    with pytest.raises(ClientError) as caught:  # too late: the request has expired
        answer(stand, "approve-late", token, "Approved", "sorry, I was away")
    assert caught.value.response["Error"]["Code"] == "InvalidApprovalTokenException"


@pytest.mark.parametrize("change, code", [
    ({"token": str(uuid.uuid4())}, "InvalidApprovalTokenException"),
    ({"pipeline": "no-such-pipeline"}, "PipelineNotFoundException"),
    ({"stage": "NoSuchStage"}, "StageNotFoundException"),
    ({"action": "NoSuchAction"}, "ActionNotFoundException"),
    ({"stage": "Prod", "action": "Deploy"}, "InvalidApprovalTokenException"),  # the token is Review's
    ({"status": "Maybe"}, "ValidationException"),
], ids=["wrong-token", "unknown-pipeline", "unknown-stage", "unknown-action", "another-actions-token",
        "bad-status"])
def test_answers_refused_in_aws_terms(stand: Stand, change: dict[str, str], code: str) -> None:
    if "approve-err" not in {p["name"] for p in stand.aws.client("codepipeline").list_pipelines()["pipelines"]}:
        approval_pipeline(stand, "approve-err")
        stand.aws.client("codepipeline").start_pipeline_execution(name="approve-err")
    token = open_token(stand, "approve-err")
    with pytest.raises(ClientError) as caught:
        answer(stand, "approve-err", change.pop("token", token), change.pop("status", "Approved"), **change)
    assert caught.value.response["Error"]["Code"] == code
    assert open_token(stand, "approve-err") == token  # a refused answer leaves the request open


def test_answering_twice_is_refused(stand: Stand) -> None:
    approval_pipeline(stand, "approve-twice")
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name="approve-twice")["pipelineExecutionId"]
    token = open_token(stand, "approve-twice")
    answer(stand, "approve-twice", token, "Approved", "first")
    with pytest.raises(ClientError) as caught:
        answer(stand, "approve-twice", token, "Rejected", "second thoughts")
    assert caught.value.response["Error"]["Code"] == "ApprovalAlreadyCompletedException"
    assert wait_done(stand, "approve-twice", execution_id)["status"] == "Succeeded"  # the first answer holds


def test_a_parallel_pipeline_gives_the_token_as_the_external_execution_id(stand: Stand) -> None:
    """API Reference, PutApprovalResult: for PARALLEL, ListActionExecutions' externalExecutionId is the token."""
    approval_pipeline(stand, "approve-par", mode="PARALLEL")
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name="approve-par")["pipelineExecutionId"]
    review = wait_for(lambda: _running_external_id(stand), what="the approval's external id")
    assert actions_of(stand, "approve-par", execution_id)["Review"]["status"] == "InProgress"
    latest = cp.get_pipeline_state(name="approve-par")["stageStates"][1]["actionStates"][0]["latestExecution"]
    assert "token" not in latest
    answer(stand, "approve-par", review, "Approved", "ok")
    assert wait_done(stand, "approve-par", execution_id)["status"] == "Succeeded"


def _running_external_id(stand: Stand) -> str | None:
    latest = stand.aws.client("codepipeline").get_pipeline_state(name="approve-par")["stageStates"][1][
        "actionStates"][0].get("latestExecution") or {}
    return latest.get("externalExecutionId")


@pytest.mark.parametrize("name, configuration, message", [
    ("approve-key", {"Comments": "x"}, "configuration ['Comments'] is not valid for Approval/Manual"),
    ("approve-topic", {"NotificationArn": "arn:aws:s3:::bucket"},
     "NotificationArn 'arn:aws:s3:::bucket' is not an SNS topic ARN"),
], ids=["unknown-key", "not-a-topic"])
def test_a_wrong_configuration_fails_the_action(stand: Stand, name: str, configuration: dict[str, str],
                                                message: str) -> None:
    approval_pipeline(stand, name, configuration)
    execution_id = stand.aws.client("codepipeline").start_pipeline_execution(name=name)["pipelineExecutionId"]
    execution = wait_done(stand, name, execution_id)
    assert execution["status"] == "Failed" and execution["statusSummary"].startswith(message)
    assert actions_of(stand, name, execution_id)["Review"]["output"]["executionResult"]["errorDetails"][
        "code"] == "ConfigurationError"


def test_put_approval_result_is_authorized_on_the_action_arn() -> None:
    """Service Authorization Reference: PutApprovalResult on the "action" resource
    arn:${Partition}:codepipeline:${Region}:${Account}:${PipelineName}/${StageName}/${ActionName}."""
    result = authorization("codepipeline", "PutApprovalResult", {
        "pipelineName": "p", "stageName": "Approve", "actionName": "Review", "token": str(uuid.uuid4()),
        "result": {"status": "Approved", "summary": "ok"}}, "123456789012", "us-east-1")
    assert isinstance(result, Mapped)
    assert [(c.action, c.resource) for c in result.checks] == [
        ("codepipeline:PutApprovalResult", "arn:aws:codepipeline:us-east-1:123456789012:p/Approve/Review")]


def test_stopping_with_abandon_abandons_the_waiting_approval(stand: Stand) -> None:
    approval_pipeline(stand, "approve-stop")
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name="approve-stop")["pipelineExecutionId"]
    token = open_token(stand, "approve-stop")
    cp.stop_pipeline_execution(pipelineName="approve-stop", pipelineExecutionId=execution_id, abandon=True,
                               reason="not today")
    assert wait_done(stand, "approve-stop", execution_id, timeout=10)["status"] == "Stopped"
    assert actions_of(stand, "approve-stop", execution_id)["Review"]["status"] == "Abandoned"
    with pytest.raises(ClientError) as caught:
        answer(stand, "approve-stop", token, "Approved", "too late")
    assert caught.value.response["Error"]["Code"] == "InvalidApprovalTokenException"


# -- the notification (NotificationArn) --------------------------------------------------------------
NOTIFIED = "approvals"           # the pipeline role may publish here
UNGRANTED = "approvals-ungranted"  # ... not here
KEY_DENIED = "approvals-key-denied"  # ... here, but not use its key


def notification_topics(stand: Stand) -> dict[str, str]:
    """Topics and an SQS queue subscribed to the granted one; the pipeline role (the stand's) may publish to
    NOTIFIED and KEY_DENIED only, and is denied the key KEY_DENIED is encrypted with."""
    sns, sqs, iam = stand.aws.client("sns"), stand.aws.client("sqs"), stand.aws.client("iam")
    denied_key = stand.aws.client("kms").create_key()["KeyMetadata"]["Arn"]
    topics = {NOTIFIED: sns.create_topic(Name=NOTIFIED, Attributes={"KmsMasterKeyId": stand.key})["TopicArn"],
              UNGRANTED: sns.create_topic(Name=UNGRANTED)["TopicArn"],
              KEY_DENIED: sns.create_topic(Name=KEY_DENIED, Attributes={"KmsMasterKeyId": denied_key})["TopicArn"]}
    queue = sqs.create_queue(QueueName="approval-mail")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topics[NOTIFIED], Protocol="sqs", Endpoint=queue_arn)
    iam.put_role_policy(RoleName="engine-role", PolicyName="approval-notifications", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "sns:Publish", "Resource": [topics[NOTIFIED], topics[KEY_DENIED]]},
            {"Effect": "Deny", "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": denied_key}]}))
    return {**topics, "queue": queue}


def test_the_notification_carries_the_token_put_approval_result_accepts(stand: Stand) -> None:
    topics = notification_topics(stand)
    approval_pipeline(stand, "approve-mail", {"NotificationArn": topics[NOTIFIED], "CustomData": "rmse 512",
                                              "ExternalEntityLink": "http://127.0.0.1/report"})
    cp = stand.aws.client("codepipeline")
    execution_id = cp.start_pipeline_execution(name="approve-mail")["pipelineExecutionId"]
    token = open_token(stand, "approve-mail")
    sqs = stand.aws.client("sqs")
    messages = wait_for(lambda: sqs.receive_message(QueueUrl=topics["queue"], WaitTimeSeconds=1).get("Messages"),
                        what="the approval notification")
    envelope = json.loads(messages[0]["Body"])
    assert envelope["TopicArn"] == topics[NOTIFIED]
    message = json.loads(envelope["Message"])
    console = "https://console.aws.amazon.com/codepipeline/home?region=us-east-1#/view/approve-mail"
    approval = message.pop("approval")
    assert message == {"region": "us-east-1", "consoleLink": console}
    expires = datetime.datetime.strptime(approval.pop("expires"), "%Y-%m-%dT%H:%MZ").replace(
        tzinfo=datetime.timezone.utc)
    in_seven_days = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=7)
    assert abs((expires - in_seven_days).total_seconds()) < 120  # AWS: seven days to answer
    assert approval == {
        "pipelineName": "approve-mail", "stageName": "Approve", "actionName": "Review", "token": token,
        "externalEntityLink": "http://127.0.0.1/report", "customData": "rmse 512",
        "approvalReviewLink": f"{console}/Approve/Review/approve/{token}"}

    answer(stand, "approve-mail", approval["token"], "Approved", "read the mail")
    assert wait_done(stand, "approve-mail", execution_id)["status"] == "Succeeded"


@pytest.mark.parametrize("topic, error", [
    (UNGRANTED, "AuthorizationError: User: arn:aws:sts::123456789012:assumed-role/engine-role/"),
    (KEY_DENIED, "KMSAccessDenied: User: arn:aws:sts::123456789012:assumed-role/engine-role/"),
], ids=["no-sns-publish", "topic-key-denied"])
def test_a_denied_publish_fails_the_action_with_the_denial(stand: Stand, topic: str, error: str) -> None:
    if "approvals" not in {t["TopicArn"].rsplit(":", 1)[1] for t in stand.aws.client("sns").list_topics()["Topics"]}:
        notification_topics(stand)
    arn = f"arn:aws:sns:us-east-1:123456789012:{topic}"
    name = f"approve-{topic}"
    approval_pipeline(stand, name, {"NotificationArn": arn})
    execution_id = stand.aws.client("codepipeline").start_pipeline_execution(name=name)["pipelineExecutionId"]
    execution = wait_done(stand, name, execution_id)
    assert execution["status"] == "Failed"
    assert execution["statusSummary"].startswith(f"cannot publish the approval notification to {arn}: {error}")
    denied = "sns:Publish" if topic == UNGRANTED else "kms:GenerateDataKey"
    assert f"not authorized to perform: {denied} on resource" in execution["statusSummary"]
    assert "Deploy" not in actions_of(stand, name, execution_id)
