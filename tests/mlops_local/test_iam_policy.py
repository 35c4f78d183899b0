"""The IAM evaluator against AWS's documented evaluation cases (IAM User Guide, "Policy evaluation
logic", "IAM JSON policy elements reference", "Condition operators", "Troubleshoot access denied")."""
from __future__ import annotations

from typing import Any

import pytest

from mlops_local.iam.denials import access_denied_error
from mlops_local.iam.evaluation import Outcome, denial_message, evaluate
from mlops_local.iam.policy import PolicyError, RequestContext, parse_policy

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/service/mlops-glue"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/mlops-glue/run-1"
USER = f"arn:aws:iam::{ACCOUNT}:user/alice"
JOB = f"arn:aws:glue:us-east-1:{ACCOUNT}:job/mlops-etl"
BUCKET = "arn:aws:s3:::mlops-data"


def ctx(action: str = "glue:StartJobRun", resource: str = JOB, principal: str = SESSION,
        keys: dict[str, Any] | None = None) -> RequestContext:
    role = ROLE if ":assumed-role/" in principal else None
    return RequestContext(principal, action, resource, ACCOUNT, role_arn=role, keys=keys or {})


def policy(*statements: dict[str, Any], **extra: Any) -> Any:
    return parse_policy({"Version": "2012-10-17", "Statement": list(statements)}, **extra)


def allow(action: Any = "*", resource: Any = "*", **more: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **more}


def deny(action: Any = "*", resource: Any = "*", **more: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **more}


# --- the decision ------------------------------------------------------------------------------

DECISIONS = [
    ("implicit deny: no statement", [], None, Outcome.NO_IDENTITY_ALLOW),
    ("allow", [allow("glue:StartJobRun", JOB, Sid="Run")], None, Outcome.ALLOWED_BY_IDENTITY),
    ("allow of another action", [allow("glue:GetJobRun", JOB)], None, Outcome.NO_IDENTITY_ALLOW),
    ("allow of another resource", [allow("glue:StartJobRun", JOB + "-2")], None, Outcome.NO_IDENTITY_ALLOW),
    ("explicit deny beats allow", [allow(), deny("glue:StartJobRun", JOB, Sid="No")], None,
     Outcome.EXPLICIT_DENY_IDENTITY),
    ("deny of another action leaves allow", [allow(), deny("glue:GetJobRun")], None, Outcome.ALLOWED_BY_IDENTITY),
    ("NotAction allow: listed action not allowed", [{"Effect": "Allow", "NotAction": "glue:*", "Resource": "*"}],
     None, Outcome.NO_IDENTITY_ALLOW),
    ("NotAction allow: other services allowed",
     [{"Effect": "Allow", "NotAction": ["iam:*", "s3:*"], "Resource": "*"}], None, Outcome.ALLOWED_BY_IDENTITY),
    ("NotAction deny: denies every other action", [allow(), {"Effect": "Deny", "NotAction": "s3:*", "Resource": "*"}],
     None, Outcome.EXPLICIT_DENY_IDENTITY),
    ("NotAction deny: spares the listed action", [allow(), {"Effect": "Deny", "NotAction": "glue:*", "Resource": "*"}],
     None, Outcome.ALLOWED_BY_IDENTITY),
    ("NotResource allow: other resource allowed",
     [{"Effect": "Allow", "Action": "glue:*", "NotResource": JOB + "-prod"}], None, Outcome.ALLOWED_BY_IDENTITY),
    ("NotResource allow: listed resource not allowed",
     [{"Effect": "Allow", "Action": "glue:*", "NotResource": [BUCKET, JOB]}], None, Outcome.NO_IDENTITY_ALLOW),
    ("NotResource deny", [allow(), {"Effect": "Deny", "Action": "*", "NotResource": BUCKET}], None,
     Outcome.EXPLICIT_DENY_IDENTITY),
    ("resource policy denies", [allow()], [deny(Principal="*")], Outcome.EXPLICIT_DENY_RESOURCE),
    ("resource policy deny naming the account covers its roles", [allow()],
     [deny(Principal={"AWS": ACCOUNT})], Outcome.EXPLICIT_DENY_RESOURCE),
    ("resource policy deny naming another principal", [allow()],
     [deny(Principal={"AWS": USER})], Outcome.ALLOWED_BY_IDENTITY),
    ("resource policy allows the role ARN", [], [allow(Principal={"AWS": ROLE})], Outcome.ALLOWED_BY_RESOURCE),
    ("resource policy allows the session ARN", [], [allow(Principal={"AWS": SESSION})], Outcome.ALLOWED_BY_RESOURCE),
    ("resource policy allows everyone", [], [allow(Principal="*")], Outcome.ALLOWED_BY_RESOURCE),
    ("resource policy allows another role", [],
     [allow(Principal={"AWS": f"arn:aws:iam::{ACCOUNT}:role/other"})], Outcome.NO_IDENTITY_ALLOW),
    ("resource policy naming the account only delegates to IAM", [],
     [allow(Principal={"AWS": f"arn:aws:iam::{ACCOUNT}:root"})], Outcome.NO_IDENTITY_ALLOW),
    ("identity allow without any resource policy grant", [allow()],
     [allow(Principal={"AWS": USER})], Outcome.ALLOWED_BY_IDENTITY),
    ("NotPrincipal deny spares session, role and account listed", [allow()],
     [{**deny(), "NotPrincipal": {"AWS": [SESSION, ROLE, ACCOUNT]}}], Outcome.ALLOWED_BY_IDENTITY),
    ("NotPrincipal deny listing only the role still denies the session", [allow()],
     [{**deny(), "NotPrincipal": {"AWS": [ROLE]}}], Outcome.EXPLICIT_DENY_RESOURCE),
    ("resource statement without Resource applies to the resource", [],
     [{"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "glue:StartJobRun"}], Outcome.ALLOWED_BY_RESOURCE),
]


@pytest.mark.parametrize("identity, resource, expected",
                         [case[1:] for case in DECISIONS], ids=[case[0] for case in DECISIONS])
def test_decision(identity: list[dict[str, Any]], resource: list[dict[str, Any]] | None, expected: Outcome) -> None:
    resource_policy = policy(*resource, name="job-policy") if resource is not None else None
    decision = evaluate(ctx(), [policy(*identity, name="inline")], resource_policy)
    assert decision.outcome is expected
    assert decision.allowed == (expected in (Outcome.ALLOWED_BY_IDENTITY, Outcome.ALLOWED_BY_RESOURCE))
    assert bool(decision.message) == decision.denied


def test_the_deciding_statement_is_named() -> None:
    allowed = evaluate(ctx(), [policy(allow("s3:*", Sid="S3")), policy(allow("glue:*", Sid="Glue"), name="glue")])
    denied = evaluate(ctx(), [policy(allow(), deny("glue:Start*", Sid="NoRuns"), name="guard")])
    assert (allowed.sid, allowed.policy) == ("Glue", "glue")
    assert (denied.sid, denied.policy) == ("NoRuns", "guard")


KEY_ROOT = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
            "Resource": "*"}
KEY_ROLE = {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:Decrypt", "Resource": "*"}
KMS_CASES = [
    ("key policy enables IAM, IAM allows", [KEY_ROOT], [allow("kms:Decrypt")], Outcome.ALLOWED_BY_IDENTITY),
    ("key policy enables IAM, IAM silent", [KEY_ROOT], [], Outcome.NO_IDENTITY_ALLOW),
    ("key policy silent, IAM allows", [{**KEY_ROOT, "Action": "kms:Encrypt"}], [allow("kms:Decrypt")],
     Outcome.NO_RESOURCE_ALLOW),
    ("key policy names the role", [KEY_ROLE], [], Outcome.ALLOWED_BY_RESOURCE),
]


@pytest.mark.parametrize("key_policy, identity, expected", [case[1:] for case in KMS_CASES],
                         ids=[case[0] for case in KMS_CASES])
def test_key_and_trust_policies_must_allow(key_policy: list[dict[str, Any]], identity: list[dict[str, Any]],
                                           expected: Outcome) -> None:
    request = ctx("kms:Decrypt", f"arn:aws:kms:us-east-1:{ACCOUNT}:key/k-1")
    decision = evaluate(request, [policy(*identity)], policy(*key_policy), resource_policy_required=True)
    assert decision.outcome is expected


def test_service_principal_needs_the_resource_policy() -> None:
    statement = {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                 "Action": ["ecr:BatchGetImage"], "Condition": {"StringLike": {
                     "aws:sourceArn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:mlops-*"}}}
    repository = policy(statement)
    image = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/mlops-endpoint-test"
    pull = ctx("ecr:BatchGetImage", image, "lambda.amazonaws.com",
               keys={"aws:SourceArn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:mlops-endpoint-test"})
    other = ctx("ecr:BatchGetImage", image, "lambda.amazonaws.com",
                keys={"aws:SourceArn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:other"})
    assert evaluate(pull, [], repository).outcome is Outcome.ALLOWED_BY_RESOURCE
    assert evaluate(other, [], repository).outcome is Outcome.NO_RESOURCE_ALLOW
    assert evaluate(pull, [policy(allow())], None).outcome is Outcome.NO_RESOURCE_ALLOW


SESSION_POLICY_CASES = {
    "session-allows": ([allow("glue:*")], [allow("glue:StartJobRun", JOB)], Outcome.ALLOWED_BY_IDENTITY),
    "session-narrower": ([allow("glue:*")], [allow("glue:GetJob", JOB)], Outcome.NO_SESSION_ALLOW),
    "session-denies": ([allow("glue:*")], [allow("*"), deny("glue:StartJobRun")], Outcome.EXPLICIT_DENY_SESSION),
    "identity-narrower": ([allow("glue:GetJob")], [allow("*")], Outcome.NO_IDENTITY_ALLOW),
}


@pytest.mark.parametrize("identity, session, expected", SESSION_POLICY_CASES.values(), ids=SESSION_POLICY_CASES.keys())
def test_a_session_policy_limits_the_session(identity: list[dict[str, Any]], session: list[dict[str, Any]],
                                             expected: Outcome) -> None:
    """The session's permissions are the intersection of the role's policies and the session policy
    (IAM User Guide, "Session policies")."""
    decision = evaluate(ctx(), [policy(*identity)], session_policy=policy(*session, name="session policy"))
    assert decision.outcome is expected
    if expected is Outcome.NO_SESSION_ALLOW:
        assert decision.message.endswith("because no session policy allows the glue:StartJobRun action")


def test_account_root_is_allowed_unless_denied() -> None:
    root = ctx(principal=f"arn:aws:iam::{ACCOUNT}:root")
    assert evaluate(root, []).outcome is Outcome.ALLOWED_AS_ROOT
    assert evaluate(root, [], policy(deny(Principal="*"))).outcome is Outcome.EXPLICIT_DENY_RESOURCE


# --- actions and resources ---------------------------------------------------------------------

ACTION_CASES = [
    ("exact", "glue:StartJobRun", "glue:StartJobRun", True),
    ("case-insensitive", "GLUE:startjobrun", "glue:StartJobRun", True),
    ("service wildcard", "glue:*", "glue:StartJobRun", True),
    ("prefix wildcard", "glue:Start*", "glue:StartJobRun", True),
    ("infix wildcard", "s3:*Object*", "s3:GetObjectVersion", True),
    ("single-character wildcard", "glue:GetJobRun?", "glue:GetJobRuns", True),
    ("single-character wildcard needs one", "glue:GetJobRun?", "glue:GetJobRun", False),
    ("other service", "glue:*", "sagemaker:StartJobRun", False),
    ("prefix is not a match", "glue:StartJob", "glue:StartJobRun", False),
    ("all actions", "*", "iam:PassRole", True),
]


@pytest.mark.parametrize("pattern, action, expected", [case[1:] for case in ACTION_CASES],
                         ids=[case[0] for case in ACTION_CASES])
def test_action_match(pattern: str, action: str, expected: bool) -> None:
    assert policy(allow(pattern)).statements[0].applies(ctx(action)) is expected


RESOURCE_CASES = [
    ("bucket objects", "arn:aws:s3:::mlops-data/*", "arn:aws:s3:::mlops-data/runs/e-1/etl/train/part-0", True),
    ("objects pattern is not the bucket", "arn:aws:s3:::mlops-data/*", "arn:aws:s3:::mlops-data", False),
    ("other bucket with the same prefix", "arn:aws:s3:::mlops-data/*", "arn:aws:s3:::mlops-data-2/x", False),
    ("wildcard inside a key", "arn:aws:s3:::mlops-data/runs/*/etl/*", "arn:aws:s3:::mlops-data/runs/e-1/etl/a",
     True),
    ("wildcard inside a key, wrong prefix", "arn:aws:s3:::mlops-data/runs/*/etl/*",
     "arn:aws:s3:::mlops-data/raw/e-1/etl/a", False),
    ("region and account wildcards", "arn:aws:glue:*:*:job/mlops-*", JOB, True),
    ("name prefix", "arn:aws:glue:*:*:job/mlops-*", f"arn:aws:glue:us-east-1:{ACCOUNT}:job/other-etl", False),
    ("resource type differs", "arn:aws:glue:*:*:job/mlops-*", f"arn:aws:glue:us-east-1:{ACCOUNT}:crawler/mlops-c",
     False),
    ("other service", "arn:aws:glue:*:*:*", f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:job/x", False),
    ("mid-segment wildcard stays in its segment", "arn:aws:glue:us*1:*:job/x",
     f"arn:aws:glue:us-east:1:{ACCOUNT}:job/x", False),
    ("mid-segment wildcard", "arn:aws:glue:us-*-1:*:job/x", f"arn:aws:glue:us-east-1:{ACCOUNT}:job/x", True),
    ("resource part spans colons", "arn:aws:logs:*:*:log-group:/aws/glue/*",
     f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/glue/jobs:log-stream:x", True),
    ("single-character wildcard", "arn:aws:s3:::mlops-data/run?", "arn:aws:s3:::mlops-data/runs", True),
    ("ARNs are case-sensitive", "arn:aws:s3:::MLOPS-data/*", "arn:aws:s3:::mlops-data/x", False),
    ("* matches an action without resource", "*", "*", True),
    ("an ARN does not match an action without resource", "arn:aws:s3:::*", "*", False),
]


@pytest.mark.parametrize("pattern, resource, expected", [case[1:] for case in RESOURCE_CASES],
                         ids=[case[0] for case in RESOURCE_CASES])
def test_resource_match(pattern: str, resource: str, expected: bool) -> None:
    assert policy(allow("*", pattern)).statements[0].applies(ctx("s3:GetObject", resource)) is expected


# --- policy variables --------------------------------------------------------------------------

VARIABLE_CASES = [
    ("username in resource", "arn:aws:s3:::home/${aws:username}/*", USER, "arn:aws:s3:::home/alice/x", True),
    ("username of someone else", "arn:aws:s3:::home/${aws:username}/*", USER, "arn:aws:s3:::home/bob/x", False),
    ("no username for a role session: statement does not match", "arn:aws:s3:::home/${aws:username}/*", SESSION,
     "arn:aws:s3:::home/${aws:username}/x", False),
    ("default value", "arn:aws:s3:::home/${aws:username, 'shared'}/*", SESSION, "arn:aws:s3:::home/shared/x", True),
    ("principal account", "arn:aws:s3:::b-${aws:PrincipalAccount}/*", SESSION, f"arn:aws:s3:::b-{ACCOUNT}/x", True),
    ("${*} is a literal star", "arn:aws:s3:::b/${*}", USER, "arn:aws:s3:::b/*", True),
    ("${*} is not a wildcard", "arn:aws:s3:::b/${*}", USER, "arn:aws:s3:::b/anything", False),
    ("${?} is a literal question mark", "arn:aws:s3:::b/a${?}", USER, "arn:aws:s3:::b/ax", False),
    ("${$} is a literal dollar", "arn:aws:s3:::b/${$}x", USER, "arn:aws:s3:::b/$x", True),
    ("variable value is literal, not a wildcard", "arn:aws:s3:::b/${aws:userid}", USER, "arn:aws:s3:::b/x", False),
]


@pytest.mark.parametrize("pattern, principal, resource, expected", [case[1:] for case in VARIABLE_CASES],
                         ids=[case[0] for case in VARIABLE_CASES])
def test_policy_variables(pattern: str, principal: str, resource: str, expected: bool) -> None:
    request = ctx("s3:GetObject", resource, principal, keys={"aws:userid": "*"})
    assert policy(allow("s3:GetObject", pattern)).statements[0].applies(request) is expected


def test_old_version_has_no_variables() -> None:
    old = parse_policy({"Version": "2008-10-17", "Statement": allow("s3:*", "arn:aws:s3:::b/${aws:username}")})
    assert old.statements[0].applies(ctx("s3:GetObject", "arn:aws:s3:::b/${aws:username}", USER))
    assert not old.statements[0].applies(ctx("s3:GetObject", "arn:aws:s3:::b/alice", USER))


def test_unresolvable_variable_in_a_deny_does_not_match() -> None:
    guard = policy(allow(), deny("s3:*", "arn:aws:s3:::b/${aws:username}/*"))
    assert evaluate(ctx("s3:GetObject", "arn:aws:s3:::b/x/y"), [guard]).allowed


def test_unresolvable_variable_in_not_resource_does_not_match() -> None:
    outside_home = {"Effect": "Deny", "Action": "s3:*", "NotResource": "arn:aws:s3:::b/${aws:username}/*"}
    assert evaluate(ctx("s3:GetObject", "arn:aws:s3:::b/x/y"), [policy(allow(), outside_home)]).allowed
    denied = evaluate(ctx("s3:GetObject", "arn:aws:s3:::b/bob/y", USER), [policy(allow(), outside_home)])
    assert denied.outcome is Outcome.EXPLICIT_DENY_IDENTITY


# --- conditions --------------------------------------------------------------------------------

LOG_GROUPS = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:*"
CONDITION_CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # the operators and keys the templates use
    ("iam:PassedToService equals", {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
     {"iam:PassedToService": "sagemaker.amazonaws.com"}, True),
    ("iam:PassedToService to another service", {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
     {"iam:PassedToService": "glue.amazonaws.com"}, False),
    ("iam:PassedToService missing", {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}, {}, False),
    ("StringEquals is case-sensitive", {"StringEquals": {"cloudwatch:namespace": "Glue"}},
     {"cloudwatch:namespace": "glue"}, False),
    ("key names are case-insensitive", {"StringEquals": {"CloudWatch:Namespace": "Glue"}},
     {"cloudwatch:namespace": "Glue"}, True),
    ("s3:prefix like", {"StringLike": {"s3:prefix": "runs/*"}}, {"s3:prefix": "runs/e-1/etl/"}, True),
    ("s3:prefix outside", {"StringLike": {"s3:prefix": "runs/*"}}, {"s3:prefix": "raw/"}, False),
    ("s3:prefix missing (a ListBucket without Prefix)", {"StringLike": {"s3:prefix": "runs/*"}}, {}, False),
    ("namespace like", {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
     {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}, True),
    ("aws:SecureTransport false", {"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": False}, True),
    ("aws:SecureTransport true", {"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": True}, False),
    ("aws:SecureTransport missing", {"Bool": {"aws:SecureTransport": "false"}}, {}, False),
    ("kms:GrantIsForAWSResource", {"Bool": {"kms:GrantIsForAWSResource": "true"}},
     {"kms:GrantIsForAWSResource": "true"}, True),
    ("kms:GrantIsForAWSResource missing", {"Bool": {"kms:GrantIsForAWSResource": "true"}}, {}, False),
    ("encryption context log group", {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": LOG_GROUPS}},
     {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/glue/x"}, True),
    ("encryption context of another account", {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": LOG_GROUPS}},
     {"kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:us-east-1:999999999999:log-group:/x"}, False),
    ("iam:AWSServiceName", {"StringEquals": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}},
     {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}, True),
    ("aws:SourceAccount", {"StringEquals": {"aws:SourceAccount": ACCOUNT}}, {"aws:SourceAccount": ACCOUNT}, True),
    ("kms:ViaService like", {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}},
     {"kms:ViaService": "s3.us-east-1.amazonaws.com"}, True),
    ("kms:ViaService of another service", {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}},
     {"kms:ViaService": "glue.us-east-1.amazonaws.com"}, False),
    # negated operators and missing keys
    ("StringNotEquals with another value", {"StringNotEquals": {"aws:SourceAccount": ACCOUNT}},
     {"aws:SourceAccount": "999999999999"}, True),
    ("StringNotEquals with the value", {"StringNotEquals": {"aws:SourceAccount": ACCOUNT}},
     {"aws:SourceAccount": ACCOUNT}, False),
    ("negated operator, missing key: true", {"StringNotEquals": {"aws:SourceAccount": ACCOUNT}}, {}, True),
    ("StringNotLike, missing key: true", {"StringNotLike": {"s3:prefix": "runs/*"}}, {}, True),
    ("ArnNotLike, missing key: true", {"ArnNotLike": {"aws:SourceArn": LOG_GROUPS}}, {}, True),
    ("ArnNotEquals with a matching ARN", {"ArnNotEquals": {"aws:SourceArn": LOG_GROUPS}},
     {"aws:SourceArn": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:g"}, False),
    ("IfExists, missing key: true", {"StringEqualsIfExists": {"iam:PassedToService": "glue.amazonaws.com"}}, {}, True),
    ("IfExists, present key still tested", {"StringEqualsIfExists": {"iam:PassedToService": "glue.amazonaws.com"}},
     {"iam:PassedToService": "sagemaker.amazonaws.com"}, False),
    ("StringEqualsIgnoreCase", {"StringEqualsIgnoreCase": {"aws:PrincipalTag/team": "ML"}},
     {"aws:PrincipalTag/team": "ml"}, True),
    ("values are ORed", {"StringEquals": {"iam:PassedToService": ["glue.amazonaws.com", "sagemaker.amazonaws.com"]}},
     {"iam:PassedToService": "sagemaker.amazonaws.com"}, True),
    ("keys are ANDed", {"StringEquals": {"aws:SourceAccount": ACCOUNT, "iam:PassedToService": "glue.amazonaws.com"}},
     {"aws:SourceAccount": ACCOUNT, "iam:PassedToService": "sagemaker.amazonaws.com"}, False),
    ("operators are ANDed", {"StringEquals": {"aws:SourceAccount": ACCOUNT}, "Bool": {"aws:SecureTransport": "true"}},
     {"aws:SourceAccount": ACCOUNT, "aws:SecureTransport": False}, False),
    ("Null true: key absent", {"Null": {"aws:SourceArn": "true"}}, {}, True),
    ("Null true: key present", {"Null": {"aws:SourceArn": "true"}}, {"aws:SourceArn": "arn:aws:s3:::b"}, False),
    ("Null false: key present", {"Null": {"aws:SourceArn": "false"}}, {"aws:SourceArn": "arn:aws:s3:::b"}, True),
    # numbers, dates, addresses
    ("NumericLessThanEquals", {"NumericLessThanEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"}, True),
    ("NumericLessThan at the bound", {"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": 10}, False),
    ("NumericGreaterThan", {"NumericGreaterThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "11"}, True),
    ("NumericGreaterThanEquals below", {"NumericGreaterThanEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "9"},
     False),
    ("NumericEquals compares numbers", {"NumericEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10.0"}, True),
    ("NumericNotEquals", {"NumericNotEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"}, False),
    ("Numeric against text", {"NumericEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "ten"}, False),
    ("DateLessThan", {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
     {"aws:CurrentTime": "2029-12-31T23:59:59Z"}, True),
    ("DateGreaterThan epoch", {"DateGreaterThan": {"aws:EpochTime": "1700000000"}},
     {"aws:EpochTime": "1600000000"}, False),
    ("IpAddress in range", {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, {"aws:SourceIp": "127.0.0.1"}, True),
    ("IpAddress outside", {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "127.0.0.1"}, False),
    ("NotIpAddress outside", {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "127.0.0.1"}, True),
    # set operators on multivalued keys
    ("ForAnyValue one matches", {"ForAnyValue:StringEquals": {"aws:TagKeys": ["team", "cost"]}},
     {"aws:TagKeys": ["owner", "team"]}, True),
    ("ForAnyValue none matches", {"ForAnyValue:StringEquals": {"aws:TagKeys": ["team"]}},
     {"aws:TagKeys": ["owner"]}, False),
    ("ForAnyValue empty set: false", {"ForAnyValue:StringEquals": {"aws:TagKeys": ["team"]}}, {"aws:TagKeys": []},
     False),
    ("ForAnyValue missing key: false", {"ForAnyValue:StringEquals": {"aws:TagKeys": ["team"]}}, {}, False),
    ("ForAllValues all match", {"ForAllValues:StringLike": {"aws:TagKeys": ["team", "cost*"]}},
     {"aws:TagKeys": ["team", "costcenter"]}, True),
    ("ForAllValues one outside", {"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}},
     {"aws:TagKeys": ["team", "owner"]}, False),
    ("ForAllValues empty set: true", {"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}}, {"aws:TagKeys": []},
     True),
    ("ForAllValues missing key: true", {"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}}, {}, True),
    ("ForAllValues negated", {"ForAllValues:StringNotEquals": {"aws:TagKeys": ["secret"]}},
     {"aws:TagKeys": ["team", "secret"]}, False),
    # policy variables in condition values
    ("variable in a value", {"StringEquals": {"s3:prefix": "home/${aws:username}/"}}, {"s3:prefix": "home/alice/"},
     True),
    ("variable in a like value stays literal", {"StringLike": {"s3:prefix": "home/${aws:userid}/*"}},
     {"s3:prefix": "home/alice/x", "aws:userid": "*"}, False),
    ("variable from the request keys", {"StringEquals": {"aws:SourceAccount": "${aws:PrincipalAccount}"}},
     {"aws:SourceAccount": ACCOUNT}, True),
    ("unresolvable variable: false", {"StringEquals": {"s3:prefix": "home/${aws:PrincipalTag/team}/"}},
     {"s3:prefix": "home//"}, False),
    ("unresolvable variable in a negated operator: false",
     {"StringNotEquals": {"s3:prefix": "home/${aws:PrincipalTag/team}/"}}, {"s3:prefix": "x"}, False),
]


@pytest.mark.parametrize("block, keys, expected", [case[1:] for case in CONDITION_CASES],
                         ids=[case[0] for case in CONDITION_CASES])
def test_condition(block: dict[str, Any], keys: dict[str, Any], expected: bool) -> None:
    statement = policy(allow(Condition=block)).statements[0]
    assert statement.applies(ctx("s3:ListBucket", BUCKET, USER, keys)) is expected


def test_passrole_to_the_wrong_service_is_denied() -> None:
    role_policy = policy(allow("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/mlops-sagemaker", Sid="PassExecutionRole",
                               Condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))
    role = f"arn:aws:iam::{ACCOUNT}:role/mlops-sagemaker"
    to_sagemaker = ctx("iam:PassRole", role, keys={"iam:PassedToService": "sagemaker.amazonaws.com"})
    to_glue = ctx("iam:PassRole", role, keys={"iam:PassedToService": "glue.amazonaws.com"})
    assert evaluate(to_sagemaker, [role_policy]).sid == "PassExecutionRole"
    assert evaluate(to_glue, [role_policy]).outcome is Outcome.NO_IDENTITY_ALLOW


def test_insecure_transport_deny_of_the_bucket_policy() -> None:
    bucket_policy = policy(deny("s3:*", [BUCKET, BUCKET + "/*"], Principal="*", Sid="DenyInsecureTransport",
                                Condition={"Bool": {"aws:SecureTransport": "false"}}))
    role_policy = policy(allow("s3:GetObject", BUCKET + "/*"))
    over_http = ctx("s3:GetObject", BUCKET + "/k", keys={"aws:SecureTransport": False})
    over_tls = ctx("s3:GetObject", BUCKET + "/k", keys={"aws:SecureTransport": True})
    assert evaluate(over_http, [role_policy], bucket_policy).outcome is Outcome.EXPLICIT_DENY_RESOURCE
    assert evaluate(over_tls, [role_policy], bucket_policy).outcome is Outcome.ALLOWED_BY_IDENTITY


def test_derived_principal_keys() -> None:
    session = ctx()
    assert session.value("aws:principalarn") == ROLE
    assert session.value("aws:principalaccount") == ACCOUNT
    assert session.value("aws:username") is None
    assert ctx(principal=USER).value("aws:username") == "alice"
    assert ctx(keys={"aws:PrincipalArn": "given"}).value("aws:principalarn") == "given"


def test_current_time_is_always_in_the_context() -> None:
    since_2020 = policy(allow(Condition={"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}))
    until_2020 = policy(allow(Condition={"DateLessThan": {"aws:EpochTime": "1577836800"}}))
    assert since_2020.statements[0].applies(ctx())
    assert not until_2020.statements[0].applies(ctx())


# --- documents ---------------------------------------------------------------------------------

def test_statement_may_be_a_single_mapping_or_json_text() -> None:
    single = parse_policy('{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*",'
                          ' "Resource": "*"}}')
    assert len(single.statements) == 1
    assert single.statements[0].applies(ctx("s3:GetObject", BUCKET))


INVALID = [
    ("no Statement", {"Version": "2012-10-17"}),
    ("bad effect", {"Statement": {"Effect": "allow", "Action": "*", "Resource": "*"}}),
    ("no action", {"Statement": {"Effect": "Allow", "Resource": "*"}}),
    ("Action and NotAction", {"Statement": {"Effect": "Allow", "Action": "*", "NotAction": "s3:*", "Resource": "*"}}),
    ("unknown operator", {"Statement": allow(Condition={"StringMatches": {"s3:prefix": "x"}})}),
    ("Null with IfExists", {"Statement": allow(Condition={"NullIfExists": {"s3:prefix": "true"}})}),
    ("bad address", {"Statement": allow(Condition={"IpAddress": {"aws:SourceIp": "not-an-ip"}})}),
    ("unknown principal type", {"Statement": allow(Principal={"Group": "x"})}),
]


@pytest.mark.parametrize("document", [case[1] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_documents_are_rejected(document: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):
        parse_policy(document)


# --- what a denial says ------------------------------------------------------------------------

def test_implicit_deny_message() -> None:
    decision = evaluate(ctx(), [policy(allow("s3:*"))])
    assert decision.message == (
        f"User: {SESSION} is not authorized to perform: glue:StartJobRun on resource: {JOB}"
        " because no identity-based policy allows the glue:StartJobRun action")


MESSAGES = [
    (Outcome.EXPLICIT_DENY_IDENTITY, None, " with an explicit deny in an identity-based policy"),
    (Outcome.EXPLICIT_DENY_IDENTITY, f"arn:aws:iam::{ACCOUNT}:policy/Guard",
     f" with an explicit deny in an identity-based policy: arn:aws:iam::{ACCOUNT}:policy/Guard"),
    (Outcome.EXPLICIT_DENY_RESOURCE, None, " with an explicit deny in a resource-based policy"),
    (Outcome.NO_RESOURCE_ALLOW, None, " because no resource-based policy allows the glue:StartJobRun action"),
]


@pytest.mark.parametrize("outcome, policy_arn, tail", MESSAGES, ids=lambda value: str(value)[:40])
def test_denial_messages(outcome: Outcome, policy_arn: str | None, tail: str) -> None:
    head = f"User: {SESSION} is not authorized to perform: glue:StartJobRun on resource: {JOB}"
    assert denial_message(ctx(), outcome, policy_arn) == head + tail


def test_explicit_deny_message_names_a_managed_policy() -> None:
    guard = policy(allow(), deny("glue:*"), name="Guard", arn=f"arn:aws:iam::{ACCOUNT}:policy/Guard")
    assert evaluate(ctx(), [guard]).message.endswith(f"identity-based policy: arn:aws:iam::{ACCOUNT}:policy/Guard")


def test_s3_quotes_the_resource() -> None:
    message = evaluate(ctx("s3:GetObject", BUCKET + "/k"), []).message
    assert f'on resource: "{BUCKET}/k" because no identity-based policy allows the s3:GetObject action' in message


def test_allow_has_no_message() -> None:
    with pytest.raises(ValueError):
        denial_message(ctx(), Outcome.ALLOWED_BY_IDENTITY)


ERRORS = [
    ("s3", ("AccessDenied", 403)),
    ("sts", ("AccessDenied", 403)),
    ("iam", ("AccessDenied", 403)),
    ("cloudformation", ("AccessDenied", 403)),
    ("glue", ("AccessDeniedException", 400)),
    ("sagemaker", ("AccessDeniedException", 400)),
    ("codepipeline", ("AccessDeniedException", 400)),
    ("kms", ("AccessDeniedException", 400)),
    ("logs", ("AccessDeniedException", 400)),
    ("lambda", ("AccessDeniedException", 403)),
    ("sagemaker-runtime", ("AccessDeniedException", 403)),
    ("ecs", ("AccessDeniedException", 400)),  # not in the table: a JSON service
    ("ec2", ("UnauthorizedOperation", 403)),  # not in the table: the EC2 protocol
]


@pytest.mark.parametrize("service, expected", ERRORS, ids=[case[0] for case in ERRORS])
def test_access_denied_error(service: str, expected: tuple[str, int]) -> None:
    assert access_denied_error(service) == expected


def test_unknown_service_has_no_error() -> None:
    with pytest.raises(ValueError):
        access_denied_error("no-such-service")
