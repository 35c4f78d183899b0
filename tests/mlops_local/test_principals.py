"""Every request has a principal: the mlops-local user, a role session from the stand-in's STS, or unknown.

Requests go through the gateway, which records each (principal, operation, IAM checks) in its access
log without enforcing anything. Lambda job workers run as their function's execution role.
"""
from __future__ import annotations

import json
import os
import urllib.request

import pytest
from botocore.exceptions import ClientError

from mlops_local.gateway import Gateway, LocalAws
from mlops_local.iam import principals
from mlops_local.runtime import RoleNotAssumable, RoleSessions
from tests.mlops_local.engine_stand import actions_of, create_function, create_pipeline, data_source, lambda_action, \
    wait_done


HERE = "tests.mlops_local.test_principals"
ACCOUNT = "123456789012"
LAMBDA_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
PIPELINE_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "codepipeline.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
OTHER_ACCOUNT = "210987654321"
PROJECT_ARN = f"arn:aws:codebuild:us-east-1:{ACCOUNT}:project/mlops-training-image"
TRAINING_JOB = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:training-job/mlops-train-1"
INFERENCE = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:*"  # what SageMaker sends for a model (literal *)


def guarded_trust(service: str, condition: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole", "Condition": condition}]}


# Trust policies with a confused-deputy guard, as templates/pipeline.yaml writes them and as they go wrong.
GUARDED_ROLES = {
    "build-role": guarded_trust("codebuild.amazonaws.com", {
        "StringEquals": {"aws:SourceAccount": ACCOUNT}, "ArnLike": {"aws:SourceArn": PROJECT_ARN}}),
    "build-role-of-another-account": guarded_trust("codebuild.amazonaws.com", {
        "StringEquals": {"aws:SourceAccount": OTHER_ACCOUNT},
        "ArnLike": {"aws:SourceArn": PROJECT_ARN.replace(ACCOUNT, OTHER_ACCOUNT)}}),
    "build-role-of-another-project": guarded_trust("codebuild.amazonaws.com", {
        "StringEquals": {"aws:SourceAccount": ACCOUNT}, "ArnLike": {"aws:SourceArn": PROJECT_ARN + "-other"}}),
    "sagemaker-role": guarded_trust("sagemaker.amazonaws.com", {"ArnLike": {"aws:SourceArn": INFERENCE}}),
    "sagemaker-jobs-only": guarded_trust("sagemaker.amazonaws.com", {
        "ArnLike": {"aws:SourceArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:training-job/*"}}),
    "sagemaker-needs-account": guarded_trust("sagemaker.amazonaws.com", {
        "StringEquals": {"aws:SourceAccount": ACCOUNT}}),
    "lambda-needs-account": guarded_trust("lambda.amazonaws.com", {"StringEquals": {"aws:SourceAccount": ACCOUNT}}),
}


# -- Lambda handlers (run in the engine's child process) ---------------------------------------
def whoami_handler(event, context):
    """Reports the caller STS sees, the worker's pid and the key it was given."""
    import boto3

    arn = boto3.client("sts").get_caller_identity()["Arn"]
    boto3.client("codepipeline").put_job_success_result(
        jobId=event["CodePipeline.job"]["id"], executionDetails={"summary": "whoami"},
        outputVariables={"Arn": arn, "Pid": str(os.getpid()), "KeyId": os.environ["AWS_ACCESS_KEY_ID"]})


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aws():
    with LocalAws(Gateway()) as local:
        iam = local.client("iam")
        for name, trust in (("job-role", LAMBDA_TRUST), ("pipeline-role", PIPELINE_TRUST), *GUARDED_ROLES.items()):
            iam.create_role(RoleName=name, Path="/service/", AssumeRolePolicyDocument=json.dumps(trust))
        yield local


def role_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/service/{name}"


def assume(aws: LocalAws, name: str, session: str) -> dict:
    return aws.client("sts").assume_role(RoleArn=role_arn(name), RoleSessionName=session)["Credentials"]


def client_as(aws: LocalAws, service: str, credentials: dict):
    return aws.client(service, aws_access_key_id=credentials["AccessKeyId"],
                      aws_secret_access_key=credentials["SecretAccessKey"],
                      aws_session_token=credentials.get("SessionToken"))


# -- resolving access keys ---------------------------------------------------------------------
def test_the_fake_key_is_the_mlops_local_administrator():
    found = principals.resolve("testing", "testing", ACCOUNT, "us-east-1")
    assert found == principals.admin(ACCOUNT)
    assert (found.kind, found.arn) == ("user", f"arn:aws:iam::{ACCOUNT}:user/mlops-local")
    assert found.administrator and found.known
    assert principals.admin(ACCOUNT, "cn-north-1").arn.startswith("arn:aws-cn:iam::")


def test_an_assumed_role_session_from_the_stand_ins_sts(aws):
    credentials = assume(aws, "job-role", "my-session")
    found = principals.resolve(credentials["AccessKeyId"], credentials["SessionToken"], ACCOUNT, "us-east-1")
    assert found.kind == "assumed-role" and found.known and not found.administrator
    assert found.arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/job-role/my-session"
    assert (found.role_arn, found.session_name) == (role_arn("job-role"), "my-session")
    # STS itself agrees on who this is.
    assert client_as(aws, "sts", credentials).get_caller_identity()["Arn"] == found.arn


def test_an_iam_user_key(aws):
    iam = aws.client("iam")
    iam.create_user(UserName="alice")
    key = iam.create_access_key(UserName="alice")["AccessKey"]
    found = principals.resolve(key["AccessKeyId"], None, ACCOUNT, "us-east-1")
    assert (found.kind, found.arn) == ("user", f"arn:aws:iam::{ACCOUNT}:user/alice")
    iam.update_access_key(UserName="alice", AccessKeyId=key["AccessKeyId"], Status="Inactive")
    assert principals.resolve(key["AccessKeyId"], None, ACCOUNT, "us-east-1").kind == "unknown"


@pytest.mark.parametrize("key, token, reason", [
    ("AKIAIOSFODNN7EXAMPLE", None, "never issued"),
    ("session", "not-its-token", "does not match"),
    ("session", None, "does not match"),
], ids=["never-issued", "wrong-token", "session-key-without-token"])
def test_credentials_the_stand_in_did_not_issue_are_unknown(aws, key, token, reason):
    if key == "session":
        key = assume(aws, "job-role", "stolen")["AccessKeyId"]
    found = principals.resolve(key, token, ACCOUNT, "us-east-1")
    assert (found.kind, found.arn, found.known) == ("unknown", "", False)
    assert reason in found.reason and found.as_dict()["access_key_id"] == key


@pytest.mark.parametrize("authorization, token, query, expected", [
    ("AWS4-HMAC-SHA256 Credential=ASIAX/20260101/us-east-1/glue/aws4_request, SignedHeaders=host, Signature=ab",
     "tok", {}, ("ASIAX", "tok")),
    ("", None, {"X-Amz-Credential": "AKIAY/20260101/us-east-1/s3/aws4_request", "X-Amz-Security-Token": "t"},
     ("AKIAY", "t")),
    ("AWS AKIAV2:c2lnbmF0dXJl", "t", {}, ("AKIAV2", "t")),
    ("", None, {"AWSAccessKeyId": "ASIAV2", "Signature": "x", "x-amz-security-token": "t"}, ("ASIAV2", "t")),
    ("", None, {}, None),
], ids=["header", "presigned-url", "s3-sigv2-header", "s3-sigv2-presigned-url", "unsigned"])
def test_signed_credentials(authorization, token, query, expected):
    assert principals.signed_credentials(authorization, token, query) == expected


# -- trust policies ----------------------------------------------------------------------------
@pytest.mark.parametrize("role, service, allowed", [
    ("job-role", "lambda.amazonaws.com", True),
    ("job-role", "glue.amazonaws.com", False),
    ("pipeline-role", "lambda.amazonaws.com", False),
], ids=["trusted", "other-service", "role-of-another-service"])
def test_service_may_assume_follows_the_trust_policy(aws, role, service, allowed):
    decision = principals.service_may_assume(role_arn(role), service, ACCOUNT, "us-east-1")
    assert not isinstance(decision, str) and decision.allowed is allowed
    if not allowed:
        assert decision.message == (f"User: {service} is not authorized to perform: sts:AssumeRole on resource: "
                                    f"{role_arn(role)} because no resource-based policy allows the sts:AssumeRole "
                                    "action")


def test_a_missing_role_cannot_be_assumed(aws):
    assert principals.service_may_assume(role_arn("nope"), "lambda.amazonaws.com", ACCOUNT, "us-east-1") == \
        f"the role {role_arn('nope')} does not exist"


@pytest.mark.parametrize("role, service, source_arn, allowed", [
    ("build-role", "codebuild.amazonaws.com", PROJECT_ARN, True),
    ("build-role-of-another-account", "codebuild.amazonaws.com", PROJECT_ARN, False),
    ("build-role-of-another-project", "codebuild.amazonaws.com", PROJECT_ARN, False),
    ("sagemaker-role", "sagemaker.amazonaws.com", TRAINING_JOB, True),
    ("sagemaker-role", "sagemaker.amazonaws.com", INFERENCE, True),
    ("sagemaker-role", "sagemaker.amazonaws.com", TRAINING_JOB.replace(ACCOUNT, OTHER_ACCOUNT), False),
    ("sagemaker-jobs-only", "sagemaker.amazonaws.com", TRAINING_JOB, True),
    ("sagemaker-jobs-only", "sagemaker.amazonaws.com", INFERENCE, False),
    ("sagemaker-needs-account", "sagemaker.amazonaws.com", TRAINING_JOB, False),
    ("lambda-needs-account", "lambda.amazonaws.com", None, False),
    ("job-role", "lambda.amazonaws.com", None, True),
], ids=["codebuild-its-project", "codebuild-another-account", "codebuild-another-project",
        "sagemaker-training-job", "sagemaker-inference", "sagemaker-job-of-another-account",
        "jobs-only-guard-a-job", "jobs-only-guard-refuses-inference-literal-star",
        "sagemaker-sends-no-source-account", "lambda-sends-no-source-account", "lambda-unguarded"])
def test_service_may_assume_judges_the_confused_deputy_keys_the_service_sends(aws, role, service, source_arn,
                                                                              allowed):
    decision = principals.service_may_assume(role_arn(role), service, ACCOUNT, "us-east-1", source_arn)
    assert not isinstance(decision, str) and decision.allowed is allowed


@pytest.mark.parametrize("service, source_arn, keys", [
    ("codebuild.amazonaws.com", PROJECT_ARN, {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": PROJECT_ARN}),
    ("sagemaker.amazonaws.com", TRAINING_JOB, {"aws:SourceArn": TRAINING_JOB}),
    ("lambda.amazonaws.com", None, {}),
    ("codepipeline.amazonaws.com", "arn:aws:codepipeline:us-east-1:123456789012:mlops", {}),
], ids=["codebuild-both", "sagemaker-arn-only", "lambda-none", "codepipeline-none"])
def test_source_keys_are_what_each_service_documents(service, source_arn, keys):
    assert principals.source_keys(service, ACCOUNT, source_arn) == keys


def test_a_service_that_sends_source_arn_needs_the_resource():
    with pytest.raises(ValueError, match="codebuild.amazonaws.com sends aws:SourceArn"):
        principals.source_keys("codebuild.amazonaws.com", ACCOUNT, None)


def test_role_sessions_are_kept_per_source(aws):
    sessions = RoleSessions("us-east-1")
    first = sessions.credentials(role_arn("sagemaker-role"), "SageMaker", "sagemaker.amazonaws.com",
                                 source_arn=TRAINING_JOB)
    assert sessions.credentials(role_arn("sagemaker-role"), "SageMaker", "sagemaker.amazonaws.com",
                                source_arn=TRAINING_JOB) == first
    other_job = sessions.credentials(role_arn("sagemaker-role"), "SageMaker", "sagemaker.amazonaws.com",
                                     source_arn=TRAINING_JOB + "-2")
    assert other_job.access_key_id != first.access_key_id
    # the session of an allowed job is never handed to a source the trust policy refuses
    sessions.credentials(role_arn("sagemaker-jobs-only"), "SageMaker", "sagemaker.amazonaws.com",
                         source_arn=TRAINING_JOB)
    with pytest.raises(RoleNotAssumable, match="sagemaker.amazonaws.com cannot assume the role"):
        sessions.credentials(role_arn("sagemaker-jobs-only"), "SageMaker", "sagemaker.amazonaws.com",
                             source_arn=INFERENCE)
    # Lambda sends no source: a function's session (and its warm worker's environment) stays one
    fn = sessions.credentials(role_arn("job-role"), "fn", "lambda.amazonaws.com")
    assert sessions.credentials(role_arn("job-role"), "fn", "lambda.amazonaws.com",
                                source_arn="arn:aws:lambda:us-east-1:123456789012:function:fn") == fn


def test_role_sessions_are_cached_and_checked(aws):
    sessions = RoleSessions("us-east-1")
    first = sessions.credentials(role_arn("job-role"), "fn", "lambda.amazonaws.com")
    assert first.arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/job-role/fn"
    assert sessions.credentials(role_arn("job-role"), "fn", "lambda.amazonaws.com") == first
    other = sessions.credentials(role_arn("job-role"), "other-fn", "lambda.amazonaws.com")
    assert other.access_key_id != first.access_key_id
    assert "SecretAccessKey" not in repr(first) and first.secret_access_key not in repr(first)
    with pytest.raises(RoleNotAssumable, match=r"lambda.amazonaws.com cannot assume the role "
                                               r"arn:aws:iam::123456789012:role/service/pipeline-role"):
        sessions.credentials(role_arn("pipeline-role"), "fn", "lambda.amazonaws.com")


# -- the access log ----------------------------------------------------------------------------
def test_the_access_log_records_principal_operation_and_checks(aws, tmp_path):
    log = aws.gateway.access_log
    mark = len(log)
    credentials = assume(aws, "job-role", "logged")
    glue = client_as(aws, "glue", credentials)
    with pytest.raises(ClientError) as denied:
        glue.get_job(JobName="etl")  # the role has no policy: denied before moto sees it
    aws.client("sts").get_session_token()  # an operation the IAM tables do not map
    with pytest.raises(ClientError):
        client_as(aws, "glue", {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": "x"}).get_job(JobName="x")
    with urllib.request.urlopen(f"{aws.url}/moto-api/data.json", timeout=30) as answer:
        answer.read()  # moto's control API: not an AWS request, not logged
    records = [r.as_dict() for r in log.records(mark)]

    assume_role, get_job, unmapped, unknown = records
    assert assume_role["principal"] == {"kind": "user", "arn": f"arn:aws:iam::{ACCOUNT}:user/mlops-local"}
    assert assume_role["checks"] == [{"action": "sts:AssumeRole", "resource": role_arn("job-role"),
                                      "conditions": {"sts:RoleSessionName": ["logged"]}}]
    assert get_job["principal"] == {"kind": "assumed-role", "role": role_arn("job-role"), "session": "logged",
                                    "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/job-role/logged"}
    assert (get_job["service"], get_job["operation"], get_job["decision"]) == ("glue", "GetJob", "denied")
    job = f"arn:aws:glue:us-east-1:{ACCOUNT}:job/etl"
    message = (f"User: arn:aws:sts::{ACCOUNT}:assumed-role/job-role/logged is not authorized to perform: glue:GetJob "
               f"on resource: {job} because no identity-based policy allows the glue:GetJob action")
    assert get_job["checks"] == [{"action": "glue:GetJob", "resource": job, "decision": "denied",
                                  "reason": "no identity-based policy allows", "message": message}]
    assert denied.value.response["Error"] == {"Code": "AccessDeniedException", "Message": message}
    assert get_job["time"].endswith("Z") and get_job["time"] >= assume_role["time"]
    assert (unmapped["service"], unmapped["operation"]) == ("sts", "GetSessionToken") and "checks" not in unmapped
    assert unmapped["unmapped"] == "the operation has no IAM mapping in mlops_local.iam.actions"
    assert unknown["principal"]["kind"] == "unknown" and "never issued" in unknown["principal"]["reason"]

    assert len(log.write_jsonl(tmp_path / "runs" / "x" / "access.jsonl", mark)) == 4
    lines = (tmp_path / "runs" / "x" / "access.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == records


# -- Lambda job workers run as their execution role --------------------------------------------
def _role(stand, name: str, trust: dict) -> str:
    return stand.aws.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


def test_a_lambda_job_worker_runs_as_its_execution_role(stand):
    role = _role(stand, "whoami-role", LAMBDA_TRUST)
    stand.aws.client("iam").put_role_policy(RoleName="whoami-role", PolicyName="report", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
            "codepipeline:PutJobSuccessResult", "codepipeline:PutJobFailureResult"]}]}))
    create_function(stand, "whoami", f"{HERE}.whoami_handler")
    stand.aws.client("lambda").update_function_configuration(FunctionName="whoami", Role=role)
    create_pipeline(stand, "whoami", [data_source(), {"name": "Work", "actions": [
        lambda_action("WhoAmI", "whoami", namespace="WhoAmI")]}])
    cp = stand.aws.client("codepipeline")
    log = stand.runtime.access_log
    session_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/whoami-role/whoami"

    seen = []
    for _ in range(2):  # two executions: one warm worker, one session
        mark = len(log)
        execution_id = cp.start_pipeline_execution(name="whoami")["pipelineExecutionId"]
        assert wait_done(stand, "whoami", execution_id)["status"] == "Succeeded"
        seen.append(actions_of(stand, "whoami", execution_id)["WhoAmI"]["output"]["outputVariables"])
        reports = [r.as_dict() for r in log.records(mark) if r.operation == "PutJobSuccessResult"]
        assert len(reports) == 1 and reports[0]["principal"]["arn"] == session_arn
        assert reports[0]["principal"]["role"] == role
        assert reports[0]["checks"] == [{"action": "codepipeline:PutJobSuccessResult", "resource": "*",
                                         "decision": "allowed", "reason": "allowed by an identity-based policy",
                                         "policy": "report", "sid": None}]
    first, second = seen
    assert first["Arn"] == second["Arn"] == session_arn
    assert first["KeyId"] == second["KeyId"] and first["KeyId"].startswith("ASIA")
    assert first["Pid"] == second["Pid"]  # the same credentials kept the worker warm


def test_a_role_lambda_cannot_assume_fails_the_action_naming_it(stand):
    role = _role(stand, "not-for-lambda", PIPELINE_TRUST)
    create_function(stand, "untrusted", f"{HERE}.whoami_handler")
    stand.aws.client("lambda").update_function_configuration(FunctionName="untrusted", Role=role)
    create_pipeline(stand, "untrusted", [data_source(), {"name": "Work", "actions": [
        lambda_action("WhoAmI", "untrusted")]}])
    execution_id = stand.aws.client("codepipeline").start_pipeline_execution(name="untrusted")["pipelineExecutionId"]
    execution = wait_done(stand, "untrusted", execution_id)
    assert execution["status"] == "Failed"
    assert (f"Lambda untrusted: the role defined for the function cannot be assumed by Lambda: "
            f"lambda.amazonaws.com cannot assume the role {role}") in execution["statusSummary"]
