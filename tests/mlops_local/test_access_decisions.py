"""The dry run of enforcement: each recorded request judged against its role's policies as deployed.

Records are judged when the access log is written (iam.decisions.Judge), never denied; the run's
summary lists the would-be denials per role (summary.access_summary, render_access).
"""
from __future__ import annotations

import json
import time

import pytest

from mlops_local.access_log import Access
from mlops_local.iam import principals
from mlops_local.iam.actions import Check, Mapped, Unmapped
from mlops_local.iam.decisions import Judge
from mlops_local.summary import access_summary, render_access
from tests.mlops_local.engine_stand import create_function, create_pipeline, data_source, lambda_action, wait_done


HERE = "tests.mlops_local.test_access_decisions"
ACCOUNT, REGION = "123456789012", "us-east-1"
JOB = f"arn:aws:glue:{REGION}:{ACCOUNT}:job/etl"
LAMBDA_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def document(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(sid: str, action: str, resource: str) -> dict:
    return {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource}


def make_role(stand, name: str, inline: dict[str, str] | None = None, managed: dict[str, str] | None = None) -> str:
    iam = stand.aws.client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    for policy, text in (inline or {}).items():
        iam.put_role_policy(RoleName=name, PolicyName=policy, PolicyDocument=text)
    for policy, text in (managed or {}).items():
        policy_arn = iam.create_policy(PolicyName=policy, PolicyDocument=text)["Policy"]["Arn"]
        iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn)
    return arn


def session(role: str, name: str = "worker") -> principals.Principal:
    arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role.rsplit('/', 1)[-1]}/{name}"
    return principals.Principal("assumed-role", arn, "ASIAEXAMPLE", role_arn=role, session_name=name)


def record(principal: principals.Principal, *checks: Check) -> Access:
    return Access(time.time(), principal, "glue", "Op", Mapped("glue", "Op", checks))


def decided(access: Access) -> dict:
    return access.as_dict(Judge(ACCOUNT, REGION).decide(access))


def no_identity_allow(role: str, action: str, resource: str) -> str:
    return (f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{role}/worker is not authorized to perform: {action} "
            f"on resource: {resource} because no identity-based policy allows the {action} action")


# -- identity policies -------------------------------------------------------------------------
def test_an_allowed_check_and_a_missing_permission(stand):
    role = make_role(stand, "etl-reader", inline={"read": document(allow("ReadJob", "glue:GetJob", JOB))})
    found = decided(record(session(role), Check("glue:GetJob", JOB), Check("glue:StartJobRun", JOB)))
    get_job, start = found["checks"]
    assert found["decision"] == "would-deny"
    assert get_job == {"action": "glue:GetJob", "resource": JOB, "decision": "allowed",
                       "reason": "allowed by an identity-based policy", "policy": "read", "sid": "ReadJob"}
    assert start["decision"] == "would-deny" and start["reason"] == "no identity-based policy allows"
    assert start["message"] == no_identity_allow("etl-reader", "glue:StartJobRun", JOB)


@pytest.mark.parametrize("inline, managed, decision, reason", [
    ({"run": document(allow("Run", "glue:*", "*"))}, {}, "allowed", "allowed by an identity-based policy"),
    ({}, {"run-managed": document(allow("Run", "glue:StartJobRun", JOB))}, "allowed",
     "allowed by an identity-based policy"),
    ({"run": document(allow("Run", "glue:*", "*"))},
     {"deny-etl": document({"Sid": "NoEtl", "Effect": "Deny", "Action": "glue:StartJobRun", "Resource": JOB})},
     "would-deny", "explicit deny in an identity-based policy"),
    ({"run": document(allow("Run", "glue:StartJobRun", f"arn:aws:glue:{REGION}:{ACCOUNT}:job/other-*"))}, {},
     "would-deny", "no identity-based policy allows"),
], ids=["inline-wildcard", "attached-managed", "explicit-deny-wins", "wrong-resource"])
def test_inline_and_managed_policies(stand, inline, managed, decision, reason):
    role = make_role(stand, f"role-{len(inline)}-{'-'.join(managed) or 'none'}-{decision}", inline, managed)
    found = decided(record(session(role), Check("glue:StartJobRun", JOB)))
    assert (found["decision"], found["checks"][0]["reason"]) == (decision, reason)
    if reason.startswith("explicit deny"):
        assert found["checks"][0]["message"] == (
            f"User: {session(role).arn} is not authorized to perform: glue:StartJobRun on resource: {JOB} with an "
            f"explicit deny in an identity-based policy: arn:aws:iam::{ACCOUNT}:policy/deny-etl")


def test_a_changed_policy_is_read_again(stand):
    role = make_role(stand, "changing", inline={"p": document(allow("A", "glue:GetJob", JOB))})
    access = record(session(role), Check("glue:GetJob", JOB))
    assert decided(access)["decision"] == "allowed"
    iam = stand.aws.client("iam")
    iam.put_role_policy(RoleName="changing", PolicyName="p", PolicyDocument=document(allow("A", "glue:GetJobs", "*")))
    assert decided(access)["decision"] == "would-deny"


# -- who is judged -----------------------------------------------------------------------------
@pytest.mark.parametrize("principal, authorization, decision", [
    (principals.admin(ACCOUNT), Mapped("glue", "StartJobRun", (Check("glue:StartJobRun", JOB),)),
     "allowed (administrator)"),
    (principals.admin(ACCOUNT), Unmapped("sts", "GetSessionToken", "no mapping"), "allowed (administrator)"),
    (session(f"arn:aws:iam::{ACCOUNT}:role/etl-reader"), Unmapped("sts", "GetSessionToken", "no mapping"),
     "would-deny (unmapped: no mapping)"),
    (principals.Principal("unknown", "", "AKIAX", reason="the access key id was never issued by the stand-in"),
     Mapped("glue", "GetJob", (Check("glue:GetJob", JOB),)),
     "would-deny (unrecognized credentials: the access key id was never issued by the stand-in)"),
    (session(f"arn:aws:iam::{ACCOUNT}:role/gone"), Mapped("glue", "GetJob", (Check("glue:GetJob", JOB),)),
     f"would-deny (the role arn:aws:iam::{ACCOUNT}:role/gone no longer exists)"),
], ids=["administrator", "administrator-unmapped", "role-unmapped", "unknown-credentials", "role-gone"])
def test_principals_other_than_a_role_with_policies(stand, principal, authorization, decision):
    access = Access(time.time(), principal, authorization.service, authorization.operation, authorization)
    found = decided(access)
    assert found["decision"] == decision
    assert all("decision" not in check for check in found.get("checks", []))  # no per-check verdicts


# -- resource policies -------------------------------------------------------------------------
def test_a_bucket_policy_deny_wins_and_insecure_transport_does_not_match(stand):
    role = make_role(stand, "s3-user", inline={"s3": document(allow("All", "s3:*", "*"))})
    s3 = stand.aws.client("s3")
    s3.create_bucket(Bucket="guarded")
    s3.put_bucket_policy(Bucket="guarded", Policy=document(
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": ["arn:aws:s3:::guarded", "arn:aws:s3:::guarded/*"],
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Sid": "NoSecrets", "Effect": "Deny", "Principal": {"AWS": role}, "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::guarded/secret/*"}))
    found = decided(record(session(role), Check("s3:GetObject", "arn:aws:s3:::guarded/secret/a"),
                           Check("s3:GetObject", "arn:aws:s3:::guarded/public/a")))
    secret, public = found["checks"]
    assert (secret["decision"], secret["reason"]) == ("would-deny", "explicit deny in a resource-based policy")
    assert secret["message"] == (f'User: {session(role).arn} is not authorized to perform: s3:GetObject on resource: '
                                 f'"arn:aws:s3:::guarded/secret/a" with an explicit deny in a resource-based policy')
    assert public["decision"] == "allowed"  # DenyInsecureTransport: aws:SecureTransport is true


@pytest.mark.parametrize("granted, decision, reason", [
    (True, "allowed", "allowed by a resource-based policy"),
    (False, "would-deny", "no identity-based policy allows"),
], ids=["function-policy-names-the-role", "function-policy-names-another"])
def test_a_lambda_function_policy_allows_by_itself(stand, granted, decision, reason):
    """A function's resource policy (AddPermission) that names the caller allows without an identity
    grant (IAM User Guide, "Policy evaluation for requests within a single account")."""
    role = make_role(stand, f"invoker-{granted}", inline={"none": document(allow("Other", "glue:GetJob", JOB))})
    create_function(stand, f"guarded-fn-{granted}", f"{HERE}.glue_reader_handler")
    stand.aws.client("lambda").add_permission(
        FunctionName=f"guarded-fn-{granted}", StatementId="Invoke", Action="lambda:InvokeFunction",
        Principal=role if granted else f"arn:aws:iam::{ACCOUNT}:role/someone-else")
    function = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:guarded-fn-{granted}"
    found = decided(record(session(role), Check("lambda:InvokeFunction", function)))
    assert (found["decision"], found["checks"][0]["reason"]) == (decision, reason)


@pytest.mark.parametrize("key_policy, decision, reason", [
    (None, "allowed", "allowed by an identity-based policy"),  # moto's default: the account delegates to IAM
    (document({"Sid": "OnlyAdmin", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/admin"},
               "Action": "kms:*", "Resource": "*"}), "would-deny", "no resource-based policy allows"),
], ids=["default-key-policy", "key-policy-names-someone-else"])
def test_a_kms_key_policy_must_allow(stand, key_policy, decision, reason):
    role = make_role(stand, f"kms-user-{decision}", inline={"kms": document(allow("Use", "kms:Decrypt", "*"))})
    kms = stand.aws.client("kms")
    key = kms.create_key(**({"Policy": key_policy} if key_policy else {}))["KeyMetadata"]["Arn"]
    found = decided(record(session(role), Check("kms:Decrypt", key)))
    assert (found["decision"], found["checks"][0]["reason"]) == (decision, reason)


# -- an engine-run job worker's access.jsonl ---------------------------------------------------
def glue_reader_handler(event, context):
    """Reads a Glue job its role may read, starts one it may not, and reports success."""
    import boto3

    glue = boto3.client("glue")
    for call in (lambda: glue.get_job(JobName="etl"), lambda: glue.start_job_run(JobName="etl")):
        try:
            call()
        except Exception:  # GetJob: moto answers (no such job); StartJobRun: denied
            pass
    boto3.client("codepipeline").put_job_success_result(jobId=event["CodePipeline.job"]["id"])


def test_a_job_workers_access_log_carries_decisions(stand, tmp_path):
    role = make_role(stand, "glue-reader", inline={"worker": document(
        allow("ReadJob", "glue:GetJob", JOB), allow("Report", "codepipeline:PutJob*Result", "*"),
        allow("WriteLogs", "logs:*", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/glue-reader*"))})
    create_function(stand, "glue-reader", f"{HERE}.glue_reader_handler")
    stand.aws.client("lambda").update_function_configuration(FunctionName="glue-reader", Role=role)
    create_pipeline(stand, "glue-reader", [data_source(), {"name": "Work", "actions": [
        lambda_action("Read", "glue-reader")]}])
    log = stand.runtime.access_log
    mark = len(log)
    execution_id = stand.aws.client("codepipeline").start_pipeline_execution(name="glue-reader")["pipelineExecutionId"]
    assert wait_done(stand, "glue-reader", execution_id)["status"] == "Succeeded"  # the handler swallows its denial

    path = tmp_path / "access.jsonl"
    log.write_jsonl(path, mark, decide=Judge(ACCOUNT, REGION).decide)  # decided on the request path already
    records = [json.loads(line) for line in path.read_text().splitlines()]
    worker = {r["operation"]: r for r in records if r["principal"].get("role") == role}
    # The worker's own calls, and the runtime writing its log as the function's role, as Lambda does
    # (the group first: the function was created by the API, not with a log group of its own).
    assert set(worker) == {"GetJob", "StartJobRun", "PutJobSuccessResult", "CreateLogGroup", "CreateLogStream",
                           "PutLogEvents"}
    assert worker["PutLogEvents"]["decision"] == "allowed"
    assert worker["GetJob"]["decision"] == "allowed" and worker["GetJob"]["checks"][0]["sid"] == "ReadJob"
    assert worker["PutJobSuccessResult"]["decision"] == "allowed"
    assert worker["StartJobRun"]["decision"] == "denied"
    assert worker["StartJobRun"]["checks"][0]["message"] == no_identity_allow(
        "glue-reader", "glue:StartJobRun", JOB).replace("/worker ", "/glue-reader ")
    assert {r["decision"] for r in records if r["principal"]["kind"] == "user"} == {"allowed (administrator)"}

    access = access_summary(records)
    assert access["requests"] == len(records)
    assert access["enforcement"] == "on"
    assert access["denied"] == [{"principal": role, "action": "glue:StartJobRun", "resource": JOB,
                                 "reason": "no identity-based policy allows", "count": 1}]
    requests = sum(r["principal"].get("role") == role for r in records)
    assert {"principal": role, "requests": requests, "denied": 1} in access["principals"]
    section = "\n".join(render_access(access))
    assert section.startswith("## Access") and "enforced" in section
    assert f"- {role}: glue:StartJobRun on {JOB} (no identity-based policy allows) x1" in section
