"""The access report: denials per principal in both vocabularies (enforced, dry run), and what each role
was granted but did not use in the run (iam.unused, after IAM Access Analyzer's unused access findings)."""
from __future__ import annotations

import json
from typing import Any

import pytest

from mlops_local.access_report import access_summary, enforcement, render_access
from mlops_local.iam.policy import parse_policy
from mlops_local.iam.unused import deployed_roles, unused_access

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/worker"
OTHER = f"arn:aws:iam::{ACCOUNT}:role/other"
JOB = f"arn:aws:glue:us-east-1:{ACCOUNT}:job/etl"
OTHER_JOB = f"arn:aws:glue:us-east-1:{ACCOUNT}:job/other"
BY_IDENTITY, BY_RESOURCE = "allowed by an identity-based policy", "allowed by a resource-based policy"


def allow(sid: str, action: str | list[str], resource: str | list[str], **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource, **extra}


def policy(*statements: dict[str, Any], name: str = "inline") -> Any:
    return parse_policy({"Version": "2012-10-17", "Statement": list(statements)}, name=name)


def check(action: str, resource: str, decision: str = "allowed", reason: str = BY_IDENTITY,
          **conditions: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {"action": action, "resource": resource, "decision": decision, "reason": reason}
    if conditions:
        found["conditions"] = {key.replace("__", ":"): value for key, value in conditions.items()}
    return found


def record(*checks: dict[str, Any], role: str = ROLE, decision: str = "allowed") -> dict[str, Any]:
    name = role.rsplit("/", 1)[-1]
    return {"principal": {"kind": "assumed-role", "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/fn",
                          "role": role, "session": "fn"},
            "service": "glue", "operation": "Op", "checks": list(checks), "decision": decision}


def label(entry: dict[str, Any]) -> str:
    if "not_action" in entry:
        return "all but " + ",".join(entry["not_action"])
    action = entry.get("action") or ",".join(entry["actions"])
    return f"{action} not on {','.join(entry['not_resources'])}" if "not_resources" in entry else action


def unused_of(statements: list[dict[str, Any]], *records: dict[str, Any]) -> list[tuple[str, str]]:
    """(sid, what) of each grant of ROLE the records did not use."""
    found = unused_access({ROLE: (policy(*statements),)}, list(records))
    assert found["roles"] == []
    entries = found["permissions"][0]["actions"] if found["permissions"] else []
    return [(entry["sid"], label(entry)) for entry in entries]


PASS_ROLE = allow("Pass", "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/job",
                  Condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})
PASSED = f"arn:aws:iam::{ACCOUNT}:role/job"
NOT_SECRET = {"Sid": "NotSecret", "Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::secret/*"}


@pytest.mark.parametrize("statements, checks, unused", [
    ([allow("Read", "glue:GetJob", JOB)], [check("glue:GetJob", JOB)], []),
    ([allow("Read", "glue:Get*", JOB)], [check("glue:GetJob", JOB)], []),
    ([allow("Read", "GLUE:getjob", JOB)], [check("glue:GetJob", JOB)], []),
    ([allow("Read", "glue:GetJob", f"arn:aws:glue:us-east-1:{ACCOUNT}:job/*")], [check("glue:GetJob", JOB)], []),
    ([allow("Read", "glue:GetJob", JOB)], [check("glue:GetJob", OTHER_JOB)], [("Read", "glue:GetJob")]),
    ([allow("Read", "glue:GetJob", [OTHER_JOB, JOB])], [check("glue:GetJob", JOB)], []),
    ([allow("Read", "glue:GetJob", JOB)], [check("glue:GetJobs", JOB)], [("Read", "glue:GetJob")]),
    ([allow("Read", "glue:GetJob", JOB)], [check("glue:GetJob", JOB, "denied", "explicit deny in a session policy")],
     [("Read", "glue:GetJob")]),
    ([allow("Read", "glue:GetJob", JOB)], [check("glue:GetJob", JOB, "would-deny", "no resource-based policy allows")],
     [("Read", "glue:GetJob")]),
    ([allow("Read", "glue:GetJob", JOB)], [check("glue:GetJob", JOB, reason=BY_RESOURCE)], [("Read", "glue:GetJob")]),
    ([allow("Run", ["glue:StartJobRun", "glue:GetJobRun"], JOB)], [check("glue:GetJobRun", JOB)],
     [("Run", "glue:StartJobRun")]),
    ([allow("Read", "glue:GetJob", JOB), allow("Also", "glue:*", "*")], [check("glue:GetJob", JOB)], []),
    ([PASS_ROLE], [check("iam:PassRole", PASSED, iam__PassedToService=["sagemaker.amazonaws.com"])], []),
    ([PASS_ROLE], [check("iam:PassRole", PASSED, iam__PassedToService=["glue.amazonaws.com"])],
     [("Pass", "iam:PassRole")]),
    ([{"Sid": "AllButIam", "Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}],
     [check("glue:GetJob", JOB)], []),
    ([{"Sid": "AllButIam", "Effect": "Allow", "NotAction": ["iam:*", "sts:*"], "Resource": "*"}],
     [check("iam:GetRole", PASSED)], [("AllButIam", "all but iam:*,sts:*")]),
    ([NOT_SECRET], [check("s3:GetObject", "arn:aws:s3:::public/key")], []),
    ([NOT_SECRET], [check("s3:GetObject", "arn:aws:s3:::secret/key")],
     [("NotSecret", "s3:GetObject not on arn:aws:s3:::secret/*")]),
    ([{"Sid": "NoDelete", "Effect": "Deny", "Action": "glue:DeleteJob", "Resource": "*"}],
     [check("glue:GetJob", JOB)], []),
], ids=["used exactly", "used via a wildcard action", "actions ignore case", "used via a wildcard resource",
        "a different resource does not count", "one of the resources used", "a longer action does not count",
        "a denied check does not count", "a would-be denial does not count",
        "allowed by a resource policy does not use the grant", "one action of two used",
        "every statement that applies counts", "condition holds", "condition fails does not count",
        "NotAction used", "NotAction unused is one entry", "NotResource used", "NotResource unused",
        "deny statements are not grants"])
def test_which_grants_a_run_used(statements, checks, unused):
    assert unused_of(statements, record(*checks)) == unused


def test_unused_roles_and_each_roles_own_sessions():
    read = (policy(allow("Read", "glue:GetJob", JOB), name="read"),)
    roles = {ROLE: read, OTHER: read, f"arn:aws:iam::{ACCOUNT}:role/idle": read}
    records = [record(check("glue:GetJob", JOB), role=OTHER),
               record(check("glue:GetJob", JOB, "denied", "no identity-based policy allows"), decision="denied")]

    found = unused_access(roles, records)

    assert found == {"roles": [f"arn:aws:iam::{ACCOUNT}:role/idle"],
                     "permissions": [{"role": ROLE, "actions": [{
                         "policy": "read", "sid": "Read", "service": "glue", "action": "glue:GetJob",
                         "resources": [JOB]}]}]}


def test_a_role_whose_policies_cannot_be_read_is_not_evaluated():
    found = unused_access({ROLE: "the policy p cannot be evaluated: bad"}, [record(check("glue:GetJob", JOB))])
    assert found == {"roles": [], "permissions": [],
                     "unevaluated": [{"role": ROLE, "reason": "the policy p cannot be evaluated: bad"}]}


# -- denials and enforcement ---------------------------------------------------------------------
@pytest.mark.parametrize("decisions, expected", [
    (["allowed", "denied"], "on"),
    (["allowed", "denied (unmapped: no mapping)"], "on"),
    (["allowed (administrator)", "would-deny"], "off"),
    (["would-deny (unrecognized credentials: expired)"], "off"),
    (["not-enforced"], "off"),
    (["allowed", "allowed (administrator)"], "unknown"),
], ids=["denied", "denied with a reason", "would-deny", "would-deny with a reason", "not judged", "nothing denied"])
def test_enforcement_is_read_from_the_decisions(decisions, expected):
    assert enforcement([{"decision": decision} for decision in decisions]) == expected


@pytest.mark.parametrize("verdict, heading, listed", [
    ("denied", "enforced:", "Denied:"),
    ("would-deny", "not enforced (a dry run)", "Would-be denials:"),
], ids=["enforced", "dry run"])
def test_denials_per_principal_in_both_vocabularies(verdict, heading, listed):
    put = record(check("s3:PutObject", "arn:aws:s3:::b/k", verdict, "no identity-based policy allows"),
                 decision=verdict)
    unmapped = {**record(), "service": "sts", "operation": "GetSessionToken", "checks": [], "unmapped": "no mapping",
                "decision": f"{verdict} (unmapped: no mapping)"}
    admin = {"principal": {"kind": "user", "arn": f"arn:aws:iam::{ACCOUNT}:user/mlops-local"}, "service": "s3",
             "operation": "ListBuckets", "checks": [], "decision": "allowed (administrator)"}

    access = access_summary([put, put, unmapped, admin])

    assert access == {
        "requests": 4, "enforcement": "on" if verdict == "denied" else "off",
        "principals": [{"principal": ROLE, "requests": 3, "denied": 3},
                       {"principal": f"arn:aws:iam::{ACCOUNT}:user/mlops-local", "requests": 1, "denied": 0}],
        "denied": [{"principal": ROLE, "action": "s3:PutObject", "resource": "arn:aws:s3:::b/k",
                    "reason": "no identity-based policy allows", "count": 2},
                   {"principal": ROLE, "action": "sts:GetSessionToken", "resource": "",
                    "reason": "unmapped: no mapping", "count": 1}]}
    section = render_access(access)
    assert section[0] == "## Access" and heading in section[2]
    assert listed in section
    assert f"- {ROLE}: sts:GetSessionToken on - (unmapped: no mapping) x1" in section
    assert "### Granted but not used" not in section  # no roles given


def test_the_report_lists_unused_roles_and_one_line_per_statement():
    roles = {ROLE: (policy(allow("Run", ["glue:StartJobRun", "glue:GetJobRun"], JOB), allow("Read", "glue:GetJob", JOB),
                           {"Sid": "AllButIam", "Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
                           name="worker-policy"),),
             f"arn:aws:iam::{ACCOUNT}:role/service-role/idle": ()}
    records = [record(check("glue:GetJob", JOB, reason=BY_RESOURCE)),
               record(check("iam:GetRole", PASSED))]

    access = access_summary(records, roles)
    section = render_access(access)

    assert access["unused"]["roles"] == [f"arn:aws:iam::{ACCOUNT}:role/service-role/idle"]
    unused = section[section.index("### Granted but not used"):]
    assert unused[4:] == [
        "- unused roles (no session made a request): idle",
        "- worker: 4 granted actions not used",
        f"  - worker-policy/Run: glue:StartJobRun, glue:GetJobRun on {JOB}",
        f"  - worker-policy/Read: glue:GetJob on {JOB}",
        "  - worker-policy/AllButIam: every action but iam:* on *"]


def test_nothing_unused_says_so():
    roles = {ROLE: (policy(allow("Read", "glue:GetJob", JOB)),)}
    section = render_access(access_summary([record(check("glue:GetJob", JOB))], roles))
    assert section[-1] == "Every role made requests and used every grant."


# -- the roles as deployed -----------------------------------------------------------------------
def test_deployed_roles_read_inline_and_managed_policies(stand):
    iam = stand.aws.client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    role = iam.create_role(RoleName="unused-report", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    idle = iam.create_role(RoleName="unused-report-idle", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.put_role_policy(RoleName="unused-report", PolicyName="jobs", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [allow("Read", "glue:GetJob", JOB), allow("Run", "glue:Start*", JOB)]}))
    managed = iam.create_policy(PolicyName="unused-report-logs", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [allow("Logs", "logs:PutLogEvents", "*")]}))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="unused-report", PolicyArn=managed)

    roles = deployed_roles(stand.aws.account_id, stand.aws.gateway.region)
    found = unused_access({arn: roles[arn] for arn in (role, idle)},
                          [record(check("glue:StartJobRun", JOB), role=role)])

    assert found == {"roles": [idle], "permissions": [{"role": role, "actions": [
        {"policy": "jobs", "sid": "Read", "service": "glue", "action": "glue:GetJob", "resources": [JOB]},
        {"policy": "unused-report-logs", "sid": "Logs", "service": "logs", "action": "logs:PutLogEvents",
         "resources": ["*"]}]}]}
