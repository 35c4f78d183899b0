"""What outlives what: served artifacts outlast the lifecycle rules, retained data keeps its key.

- S3: runs/ expires after RunRetentionDays; models/ (where RegisterModel copies what an Approved package
  references) never does.
- ECR: the training repository's lifecycle policy, evaluated with ECR's documented rule semantics over
  example repositories, never expires an image RegisterModel tagged approved-<execution>.
- IAM: the roles allow what the copy, the retag and the endpoint's model download ask (the stand-in's
  request-to-checks tables and policy evaluation), and no more than the prefixes they need.
- KMS: every resource a template retains that is encrypted with a key of the template has that key
  retained too; a fixed-name alias is not retained (a re-deployment would collide with it).
"""
from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lambdas.registry import EVALUATION_FILE, MODEL_FILE, MODELS_PREFIX, PROTECTED_TAG_PREFIX, protection_plan
from mlops_local.iam.actions import Check, Mapped, authorization, kms_via_service
from mlops_local.iam.evaluation import evaluate
from mlops_local.iam.policy import RequestContext, parse_policy
from tests.conftest import ROOT
from tests.templates.cfn import ALL_TEMPLATES, PIPELINE, load, render, resources, sample_values, walk

ACCOUNT, REGION = "123456789012", "us-east-1"
EXECUTION = "3f2c1a7e-5b4d-4c3e-9a1b-0d2e3f4a5b6c"


def props(name: str) -> dict:
    return load(PIPELINE)["Resources"][name]["Properties"]


# -- S3 lifecycle ---------------------------------------------------------------------------
def current_version_expiry(rules: list[dict], key: str) -> list[str]:
    """Ids of the enabled rules that expire the current version of `key` (S3 applies every rule whose
    filter matches; CloudFormation's Rule.Prefix is the filter's prefix, none means every object)."""
    return [rule["Id"] for rule in rules
            if rule["Status"] == "Enabled" and key.startswith(rule.get("Prefix", ""))
            and ("ExpirationInDays" in rule or "ExpirationDate" in rule)]


def registry_plan(bucket: str) -> Any:
    return protection_plan({
        "model_data_uri": f"s3://{bucket}/runs/{EXECUTION}/training/mlops-training-{EXECUTION}/output/model.tar.gz",
        "evaluation_uri": f"s3://{bucket}/runs/{EXECUTION}/evaluation/evaluation.json",
        "image_uri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mlops-training:c0ffee0",
        "model_package_group": "mlops-models", "execution_id": EXECUTION})


def test_run_outputs_expire_and_registered_copies_do_not():
    rules = props("DataBucket")["LifecycleConfiguration"]["Rules"]
    plan = registry_plan("mlops-databucket")
    (source, kept_model), (evaluation, kept_evaluation) = plan.copies
    for run_output in (source, evaluation):
        key = run_output.split("/", 3)[3]
        assert current_version_expiry(rules, key) == ["ExpireOldRunOutputs"], key
    assert [r["ExpirationInDays"] for r in rules if r["Id"] == "ExpireOldRunOutputs"] == [{"Ref": "RunRetentionDays"}]
    for kept in (kept_model, kept_evaluation):
        key = kept.split("/", 3)[3]
        assert key.startswith(MODELS_PREFIX) and key.endswith((MODEL_FILE, EVALUATION_FILE))
        assert current_version_expiry(rules, key) == [], f"{key} would expire under a live endpoint"


def test_every_expiring_rule_names_a_prefix_outside_models():
    """A rule without a prefix would expire models/ too; noncurrent versions may expire anywhere."""
    for rule in props("DataBucket")["LifecycleConfiguration"]["Rules"]:
        if "ExpirationInDays" in rule or "ExpirationDate" in rule:
            assert rule.get("Prefix") and not MODELS_PREFIX.startswith(rule["Prefix"]), rule["Id"]


# -- ECR lifecycle: the documented semantics, as a small evaluator --------------------------
# Sources: ECR User Guide, "Lifecycle policy properties in Amazon ECR" (lifecycle_policy_parameters.html):
# rulePriority unique, lowest applied first; "A rule with a tagStatus value of any must have the highest
# value for rulePriority and be evaluated last"; tagged needs tagPatternList or tagPrefixList (not both),
# untagged and any neither; a pattern has at most four wildcards; with several patterns or prefixes only
# images with all of them are selected. "How lifecycle policies work" (LifecyclePolicies.html), evaluation
# rules: "An image is expired by exactly one or zero rules"; "An image that matches the tagging requirements
# of a higher priority rule cannot be expired by a rule with a lower priority"; "Rules can never mark images
# that are marked by higher priority rules, but can still identify them as if they haven't been expired";
# "Only one rule is allowed to select untagged images"; expiration is ordered by push time, oldest first.
@dataclass(frozen=True)
class Image:
    name: str
    tags: tuple[str, ...]
    age_days: int  # since pushed; smaller is newer


def check_policy(policy: dict) -> list[dict]:
    rules = sorted(policy["rules"], key=lambda r: r["rulePriority"])
    priorities = [r["rulePriority"] for r in rules]
    assert len(set(priorities)) == len(priorities), "rulePriority values must be unique"
    statuses = [r["selection"]["tagStatus"] for r in rules]
    assert statuses.count("untagged") <= 1, "only one rule may select untagged images"
    assert "any" not in statuses[:-1], "the tagStatus any rule must have the highest rulePriority"
    for rule in rules:
        selection = rule["selection"]
        lists = [k for k in ("tagPatternList", "tagPrefixList") if k in selection]
        assert len(lists) == (1 if selection["tagStatus"] == "tagged" else 0), rule
        assert all(p.count("*") <= 4 for p in selection.get("tagPatternList", [])), rule
        assert selection["countType"] in ("imageCountMoreThan", "sinceImagePushed"), rule
        assert rule["action"]["type"] == "expire", rule
    return rules


def selects(rule: dict, image: Image) -> bool:
    """Does the image meet the rule's tagging requirements?"""
    selection = rule["selection"]
    status = selection["tagStatus"]
    if status == "any":
        return True
    if status == "untagged":
        return not image.tags
    if not image.tags:
        return False
    if "tagPatternList" in selection:
        return all(any(fnmatch.fnmatchcase(tag, pattern) for tag in image.tags)
                   for pattern in selection["tagPatternList"])
    return all(any(tag.startswith(prefix) for tag in image.tags) for prefix in selection["tagPrefixList"])


def expired(policy: dict, images: list[Image]) -> set[str]:
    rules = check_policy(policy)
    gone: set[str] = set()
    for index, rule in enumerate(rules):
        selection = rule["selection"]
        selected = sorted((i for i in images if selects(rule, i)), key=lambda i: i.age_days)  # newest first
        if selection["countType"] == "imageCountMoreThan":
            identified = selected[selection["countNumber"]:]
        else:
            identified = [i for i in selected if i.age_days > selection["countNumber"]]
        for image in identified:
            if image.name not in gone and not any(selects(higher, image) for higher in rules[:index]):
                gone.add(image.name)
    return gone


def lifecycle(name: str) -> dict:
    return json.loads(props(name)["LifecyclePolicy"]["LifecyclePolicyText"])


APPROVED = PROTECTED_TAG_PREFIX + EXECUTION


def commits(count: int, start_age: int = 0) -> list[Image]:
    return [Image(f"commit-{n}", (f"{n:07x}",), start_age + n) for n in range(count)]


def names(prefix: str, numbers: range) -> set[str]:
    return {f"{prefix}-{n}" for n in numbers}


# (id, images, the approved ones, what the policy expires)
REPOSITORIES = [
    ("approved-image-older-than-30-commits",
     [*commits(40), Image("served", ("0c0ffee", APPROVED), 100)], {"served"}, names("commit", range(30, 40))),
    ("35-approved-images-among-60-commits",
     [*commits(60), *(Image(f"served-{n}", (f"{n:07x}a", f"approved-{n}"), 200 + n) for n in range(35))],
     names("served", range(35)), names("commit", range(30, 60))),
    ("approved-image-and-an-untagged-one",
     [*commits(5), Image("served", ("0c0ffee", APPROVED), 300), Image("dangling", (), 30)], {"served"}, {"dangling"}),
]


@pytest.mark.parametrize("images, served, gone", [c[1:] for c in REPOSITORIES], ids=[c[0] for c in REPOSITORIES])
def test_the_training_repository_never_expires_an_approved_image(images, served, gone):
    """Commit images beyond the 30 newest go, approved ones (counted among them) stay."""
    assert expired(lifecycle("TrainingImageRepository"), images) == gone
    assert not gone & served


def test_the_evaluator_catches_the_policy_that_expired_served_images():
    """The policy before approved tags: the served image (oldest) is beyond the 30 newest and goes."""
    before = {"rules": [
        {"rulePriority": 1, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                          "countUnit": "days", "countNumber": 7}, "action": {"type": "expire"}},
        {"rulePriority": 2, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 30},
         "action": {"type": "expire"}}]}
    assert "served" in expired(before, REPOSITORIES[0][1])


@pytest.mark.parametrize("repository", ["TrainingImageRepository", "EndpointTestImageRepository"])
def test_lifecycle_policies_follow_ecr_rules_and_keep_the_newest_images(repository):
    """The 30 newest images stay (untagged ones count), untagged ones older than 7 days go."""
    images = [*(Image(f"commit-{n}", (f"{n:07x}",), 2 * n) for n in range(45)),
              Image("fresh-dangling", (), 3), Image("dangling", (), 9)]
    assert expired(lifecycle(repository), images) == names("commit", range(28, 45)) | {"dangling"}


def test_the_tag_the_registry_gives_is_the_one_the_policy_protects():
    (rule, *_) = check_policy(lifecycle("TrainingImageRepository"))
    assert rule["selection"]["tagPatternList"] == [PROTECTED_TAG_PREFIX + "*"]
    tag = registry_plan("mlops-databucket").tag
    assert selects(rule, Image("served", ("0c0ffee", tag), 1)) and re.fullmatch(r"[\w][\w.-]{0,127}", tag)


# -- IAM: the roles allow the copy, the retag and the download ------------------------------
def role_policies(role: str) -> list:
    """The role's inline policies with intrinsics filled from sample values (cfn.sample_values)."""
    template = load(PIPELINE)
    values = sample_values(template)
    for name, resource in resources(template, "AWS::ECR::Repository").items():
        repo = render(resource["Properties"]["RepositoryName"], template)
        values[f"{name}.Arn"] = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{repo}"
    for name in resources(template, "AWS::Logs::LogGroup"):
        values[f"{name}.Arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            if "Fn::Sub" in node:
                return render(node, template, variables=None)
            if "Fn::GetAtt" in node:
                return values[".".join(node["Fn::GetAtt"])]
            if "Ref" in node:
                return values[node["Ref"]]
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        return node

    return [parse_policy(fill(p["PolicyDocument"]), name=p["PolicyName"])
            for p in template["Resources"][role]["Properties"]["Policies"]]


def allowed(role: str, checks: tuple[Check, ...] | list[Check]) -> dict[str, bool]:
    policies = role_policies(role)
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/session"
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/{role}"
    return {f"{c.action} {c.resource}": evaluate(RequestContext(
        session, c.action, c.resource, ACCOUNT, role_arn=role_arn,
        keys={"aws:SecureTransport": True, **c.conditions}), policies).allowed for c in checks}


def request_checks(service: str, operation: str, params: dict) -> tuple[Check, ...]:
    found = authorization(service, operation, params, ACCOUNT, REGION)
    assert isinstance(found, Mapped), found
    return found.checks


KEY = sample_values(load(PIPELINE))["ProjectKey.Arn"]


def registry_requests() -> list[Check]:
    """What RegisterModel's copy and retag ask of IAM, with the KMS calls S3 makes for it (the data bucket
    and its objects are SSE-KMS with the project key: Decrypt the source, GenerateDataKey the copy)."""
    plan = registry_plan("mlops-databucket")
    checks: list[Check] = []
    for source, target in plan.copies:
        source_bucket, source_key = source[5:].split("/", 1)
        bucket, key = target[5:].split("/", 1)
        copy = {"Bucket": bucket, "Key": key, "CopySource": f"{source_bucket}/{source_key}"}
        checks += request_checks("s3", "CopyObject", copy)
    checks += [kms_via_service(action, KEY, "s3", REGION, ACCOUNT) for action in ("kms:Decrypt", "kms:GenerateDataKey")]
    image = {"registryId": ACCOUNT, "repositoryName": "mlops-training"}
    checks += request_checks("ecr", "BatchGetImage", {**image, "imageIds": [{"imageTag": "c0ffee0"}]})
    checks += request_checks("ecr", "PutImage", {**image, "imageTag": plan.tag, "imageManifest": "{}"})
    checks += request_checks("ecr", "DescribeImages", {**image, "imageIds": [{"imageTag": plan.tag}]})
    return checks


def test_the_register_model_role_allows_the_copy_and_the_retag():
    decisions = allowed("RegisterModelFunctionRole", registry_requests())
    assert len(decisions) >= 8 and all(decisions.values()), [k for k, v in decisions.items() if not v]


NOT_FOR_REGISTER_MODEL = [
    ("overwrite-a-run-output", Check("s3:PutObject", "arn:aws:s3:::mlops-databucket/runs/x/training/model.tar.gz")),
    ("read-raw-data", Check("s3:GetObject", "arn:aws:s3:::mlops-databucket/raw/data.csv")),
    ("delete-a-kept-model", Check("s3:DeleteObject", "arn:aws:s3:::mlops-databucket/models/g/x/model.tar.gz")),
    ("push-to-the-test-repository",
     Check("ecr:PutImage", f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/mlops-endpoint-test")),
    ("decrypt-outside-s3", Check("kms:Decrypt", KEY, {"kms:ViaService": (f"logs.{REGION}.amazonaws.com",)})),
]


@pytest.mark.parametrize("check", [c[1] for c in NOT_FOR_REGISTER_MODEL], ids=[c[0] for c in NOT_FOR_REGISTER_MODEL])
def test_the_register_model_role_allows_no_more(check):
    assert allowed("RegisterModelFunctionRole", [check]) == {f"{check.action} {check.resource}": False}


def test_the_endpoint_role_reads_the_registered_model():
    kept_model = registry_plan("mlops-databucket").copies[0][1]
    bucket, key = kept_model[5:].split("/", 1)
    checks = [*request_checks("s3", "GetObject", {"Bucket": bucket, "Key": key}),
              kms_via_service("kms:Decrypt", KEY, "s3", REGION, ACCOUNT)]
    assert all(allowed("SageMakerExecutionRole", checks).values())
    write = Check("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}")
    assert allowed("SageMakerExecutionRole", [write]) == {f"s3:PutObject arn:aws:s3:::{bucket}/{key}": False}


# -- KMS keys of retained resources ---------------------------------------------------------
def keys_used(resource: dict, keys: set[str]) -> set[str]:
    """The template's KMS keys a resource names (Ref, GetAtt, or ${Key} / ${Key.Arn} in a Sub)."""
    found = set()
    for node in walk(resource.get("Properties", {})):
        if isinstance(node, dict):
            if node.get("Ref") in keys:
                found.add(node["Ref"])
            if isinstance(node.get("Fn::GetAtt"), list) and node["Fn::GetAtt"][0] in keys:
                found.add(node["Fn::GetAtt"][0])
        elif isinstance(node, str):
            found |= {name for name in keys if re.search(r"\$\{" + name + r"(\.Arn)?\}", node)}
    return found


def retained(resource: dict) -> bool:
    return resource.get("DeletionPolicy") == "Retain"


@pytest.mark.parametrize("path", ALL_TEMPLATES, ids=lambda p: p.name)
def test_a_retained_resource_keeps_its_key(path):
    template = load(path)
    keys = set(resources(template, "AWS::KMS::Key"))
    for name, resource in template["Resources"].items():
        if retained(resource) or resource.get("UpdateReplacePolicy") == "Retain":
            for key in keys_used(resource, keys):
                key_resource = template["Resources"][key]
                assert (key_resource.get("DeletionPolicy"), key_resource.get("UpdateReplacePolicy")) == (
                    "Retain", "Retain"), f"{name} is retained but its key {key} would be deleted with the stack"


def test_the_check_covers_the_retained_repository():
    template = load(PIPELINE)
    assert retained(template["Resources"]["Repository"])
    assert keys_used(template["Resources"]["Repository"], set(resources(template, "AWS::KMS::Key"))) == {"ProjectKey"}


@pytest.mark.parametrize("path", ALL_TEMPLATES, ids=lambda p: p.name)
def test_fixed_name_aliases_are_not_retained(path):
    """A retained alias keeps its name after the stack is gone: re-deploying the same project could not
    create it again (alias names are unique per account and Region)."""
    for name, alias in resources(load(path), "AWS::KMS::Alias").items():
        assert not retained(alias) and alias.get("UpdateReplacePolicy") != "Retain", name


# -- teardown.sh says what it keeps, and deletes the key only when nothing retained needs it ---
def teardown(tmp_path: Path, *args: str, created_repository: str = "true") -> tuple[str, str]:
    """teardown.sh --yes against a fake `aws` that answers for one stack and logs every call."""
    log = tmp_path / "calls.log"
    outputs = {"ProjectKeyArn": KEY, "RepositoryName": "mlops", "ModelPackageGroupName": "None",
               "ArtifactBucketName": "None", "DataBucketName": "None"}
    cases = "\n".join(f"    *\"OutputKey=='{k}'\"*) echo '{v}' ;;" for k, v in outputs.items())
    fake = tmp_path / "bin" / "aws"
    fake.parent.mkdir()
    fake.write_text(f'''#!/usr/bin/env bash
echo "$*" >> {log}
case "$*" in
    "sts get-caller-identity"*) echo {ACCOUNT} ;;
    *"ParameterKey=='CreateRepository'"*) echo {created_repository} ;;
    *"ParameterKey=="*) echo mlops ;;
{cases}
    *) ;;
esac
''')
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "AWS_REGION": REGION, "HOME": str(tmp_path)}
    result = subprocess.run([str(ROOT / "scripts/teardown.sh"), "--yes", *args], capture_output=True, text=True,
                            env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return result.stderr, log.read_text()


TEARDOWNS = [
    ("repository-kept", (), "true", False, f"KMS key {KEY}: kept (the retained repository mlops"),
    ("repository-deleted", ("--delete-repository",), "true", True, f"KMS key {KEY}: deletion scheduled"),
    ("repository-not-the-stacks", (), "false", True, f"KMS key {KEY}: deletion scheduled"),
]


@pytest.mark.parametrize("args, created, deletes_key, plan", [c[1:] for c in TEARDOWNS], ids=[c[0] for c in TEARDOWNS])
def test_teardown_keeps_the_key_while_the_retained_repository_needs_it(tmp_path, args, created, deletes_key, plan):
    said, calls = teardown(tmp_path, *args, created_repository=created)
    assert plan in said
    scheduled = f"kms schedule-key-deletion --key-id {KEY} --pending-window-in-days 30"
    assert (scheduled in calls) is deletes_key
    assert "kms cancel-key-deletion" in said if deletes_key else "update-repository-encryption-key" in said
