"""The security posture of every template: IAM least privilege, encryption, partitions, retention."""
from __future__ import annotations

import re

import pytest

from tests.templates.cfn import ALL_TEMPLATES, PIPELINE, load, resources, sub_text, walk

# Actions allowed on Resource "*": each has no resource-level permissions (Service Authorization
# Reference), so "*" is the only resource IAM accepts for it.
STAR_RESOURCE_ACTIONS = {
    "codepipeline:PutJobSuccessResult",  # job results: the job id is not an ARN
    "codepipeline:PutJobFailureResult",
    "ecr:GetAuthorizationToken",  # a registry-wide login token
    "cloudwatch:PutMetricData",  # metrics; narrowed by a cloudwatch:namespace condition instead
    "sagemaker:ListModelPackages",  # List* of SageMaker has no resource type
    "cloudformation:ValidateTemplate",  # validates a template body, not a stack
    "application-autoscaling:DescribeScalableTargets",  # Describe* of Application Auto Scaling
    "application-autoscaling:DescribeScalingPolicies",
    "application-autoscaling:DescribeScalingActivities",
    "application-autoscaling:DescribeScheduledActions",
    "cloudwatch:GetMetricData",  # reads metrics across namespaces; no resource type
    # EC2 Describe* have no resource-level permissions (SAR, Amazon EC2); a job in a VPC needs them.
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
}
POLICY_PROPERTIES = {
    "AWS::IAM::Role": ("AssumeRolePolicyDocument", "Policies"),
    "AWS::IAM::Policy": ("PolicyDocument",),
    "AWS::IAM::RolePolicy": ("PolicyDocument",),
    "AWS::IAM::ManagedPolicy": ("PolicyDocument",),
    "AWS::S3::BucketPolicy": ("PolicyDocument",),
    "AWS::KMS::Key": ("KeyPolicy",),
    "AWS::ECR::Repository": ("RepositoryPolicyText",),
}


def statements():
    """(template, resource, kind, statement) for every policy statement of every template."""
    for path in ALL_TEMPLATES:
        for name, resource in load(path)["Resources"].items():
            for prop in POLICY_PROPERTIES.get(resource["Type"], ()):
                value = resource.get("Properties", {}).get(prop)
                documents = [p["PolicyDocument"] for p in value] if prop == "Policies" and value else [value]
                for document in documents:
                    for statement in (document or {}).get("Statement", []):
                        yield path.name, name, resource["Type"], statement


def as_list(value):
    return value if isinstance(value, list) else [value]


STATEMENTS = list(statements())


def cases(selected):
    """Parametrize cases with readable ids, for the statements a check applies to."""
    return [pytest.param(*item, id=f"{item[0]}:{item[1]}:{item[3].get('Sid', '?')}") for item in selected]


def is_allow(statement) -> bool:
    return statement["Effect"] == "Allow"


def star_resources(kind, statement):
    """The statement's resources as text when it grants on "*" (else None). Trust and resource
    policies have no Resource; in a key policy "*" means the key itself."""
    if not is_allow(statement) or "Resource" not in statement or kind == "AWS::KMS::Key":
        return None
    texts = [r if isinstance(r, str) else sub_text(r) if "Fn::Sub" in r else None
             for r in as_list(statement["Resource"])]
    return texts if "*" in texts else None


def wildcard_arns(kind, statement):
    """The Sub ARNs of a role's Allow statement that end in a wildcard."""
    if not is_allow(statement) or kind != "AWS::IAM::Role":
        return []
    texts = [sub_text(r) for r in as_list(statement.get("Resource", [])) if isinstance(r, dict) and "Fn::Sub" in r]
    return [t for t in texts if t.startswith("arn:") and t.endswith("*")]


# Each check is generated only for the statements it applies to, so every case asserts something.
ALLOW = [s for s in STATEMENTS if is_allow(s[3])]
STAR = [s for s in STATEMENTS if star_resources(s[2], s[3]) is not None]
PASS_ROLE = [s for s in STATEMENTS if "iam:PassRole" in as_list(s[3].get("Action", []))]
WILDCARD_ARNS = [s for s in STATEMENTS if wildcard_arns(s[2], s[3])]


def test_there_are_policies_to_check():
    assert len(STATEMENTS) > 60
    # a selection that went empty would silently turn its check off
    assert len(ALLOW) > 60 and len(STAR) >= 10 and len(PASS_ROLE) >= 3 and len(WILDCARD_ARNS) >= 10


@pytest.mark.parametrize("template, resource, kind, statement", cases(STATEMENTS))
def test_statement_has_a_sid(template, resource, kind, statement):
    assert re.fullmatch(r"[A-Za-z0-9]+", statement.get("Sid", "")), statement


def test_no_statement_uses_not_action():
    assert [(t, r, s.get("Sid")) for t, r, _, s in STATEMENTS if "NotAction" in s] == []


@pytest.mark.parametrize("template, resource, kind, statement", cases(ALLOW))
def test_no_wildcard_actions(template, resource, kind, statement):
    for action in as_list(statement["Action"]):
        assert action != "*" and not action.endswith(":*"), f"{resource}: {action}"


@pytest.mark.parametrize("template, resource, kind, statement", cases(STAR))
def test_star_resource_only_for_actions_without_resource_level_permissions(template, resource, kind, statement):
    assert star_resources(kind, statement) == ["*"], "a '*' statement holds nothing else"
    extra = set(as_list(statement["Action"])) - STAR_RESOURCE_ACTIONS
    assert not extra, f"{resource} {statement['Sid']}: {sorted(extra)} on '*'"


@pytest.mark.parametrize("template, resource, kind, statement", cases(PASS_ROLE))
def test_pass_role_has_a_passed_to_service_condition(template, resource, kind, statement):
    assert statement["Condition"]["StringEquals"]["iam:PassedToService"], statement
    assert statement["Resource"] != "*"


@pytest.mark.parametrize("template, resource, kind, statement", cases(WILDCARD_ARNS))
def test_scoped_resources_name_the_project(template, resource, kind, statement):
    """A Sub ARN that ends in a wildcard is scoped by the project prefix (or a bucket/key of the stack)."""
    for text in wildcard_arns(kind, statement):
        assert "${ProjectName}" in text or "Bucket" in text or text.endswith(
            ("/aws-glue/*", "/aws/sagemaker/TrainingJobs:*", "/aws/sagemaker/ProcessingJobs:*",
             "repository/tensorflow-training", "scalable-target/*")), f"{resource}: {text}"


def test_no_full_access_managed_policies():
    for path in ALL_TEMPLATES:
        for name, role in resources(load(path), "AWS::IAM::Role").items():
            for arn in role["Properties"].get("ManagedPolicyArns", []):
                assert "FullAccess" not in str(arn), f"{path.name}: {name}"


@pytest.mark.parametrize("path", ALL_TEMPLATES, ids=lambda p: p.name)
def test_partition_is_never_hard_coded(path):
    text = path.read_text()
    assert "arn:aws:" not in text
    assert "arn:${AWS::Partition}:" in text or path.name != "pipeline.yaml"


def test_one_role_per_principal_with_a_project_name():
    roles = resources(load(PIPELINE), "AWS::IAM::Role")
    for name, role in roles.items():
        assert sub_text(role["Properties"]["RoleName"]).startswith("${ProjectName}-"), name
    functions = resources(load(PIPELINE), "AWS::Lambda::Function")
    used = [f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions.values()]
    assert len(used) == len(set(used)), "each function has its own role"


@pytest.mark.parametrize("path", ALL_TEMPLATES, ids=lambda p: p.name)
def test_buckets_are_encrypted_versioned_private_and_tls_only(path):
    template = load(path)
    policies = {p["Properties"]["Bucket"]["Ref"]: p for p in resources(template, "AWS::S3::BucketPolicy").values()}
    for name, bucket in resources(template, "AWS::S3::Bucket").items():
        props = bucket["Properties"]
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        assert "KMSMasterKeyID" in rule["ServerSideEncryptionByDefault"]
        assert props["VersioningConfiguration"]["Status"] == "Enabled"
        assert all(props["PublicAccessBlockConfiguration"][k] is True for k in (
            "BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"))
        assert props["LifecycleConfiguration"]["Rules"]
        (deny,) = [s for s in policies[name]["Properties"]["PolicyDocument"]["Statement"]
                   if s["Effect"] == "Deny"]
        assert deny["Condition"]["Bool"]["aws:SecureTransport"] == "false"


def test_project_key_rotates():
    for path in ALL_TEMPLATES:
        for key in resources(load(path), "AWS::KMS::Key").values():
            assert key["Properties"]["EnableKeyRotation"] is True


@pytest.mark.parametrize("path", ALL_TEMPLATES, ids=lambda p: p.name)
def test_log_groups_have_retention(path):
    for name, group in resources(load(path), "AWS::Logs::LogGroup").items():
        assert group["Properties"]["RetentionInDays"], name


def test_image_repositories_scan_encrypt_and_expire():
    for name, repo in resources(load(PIPELINE), "AWS::ECR::Repository").items():
        props = repo["Properties"]
        assert props["ImageScanningConfiguration"]["ScanOnPush"] is True, name
        assert props["EncryptionConfiguration"]["EncryptionType"] in ("AES256", "KMS"), name
        assert props["ImageTagMutability"] == "IMMUTABLE", name
        assert props["LifecyclePolicy"]["LifecyclePolicyText"], name


def test_codebuild_projects_are_encrypted_and_log_with_retention():
    template = load(PIPELINE)
    for name, project in resources(template, "AWS::CodeBuild::Project").items():
        props = project["Properties"]
        assert props["EncryptionKey"] == {"Fn::GetAtt": ["ProjectKey", "Arn"]}, name
        group = props["LogsConfig"]["CloudWatchLogs"]["GroupName"]["Ref"]
        assert template["Resources"][group]["Properties"]["RetentionInDays"]


def test_no_inline_secrets_or_public_principals():
    for path in ALL_TEMPLATES:
        for node in walk(load(path)):
            if isinstance(node, dict) and node.get("Effect") == "Allow":
                assert node.get("Principal") != "*" and node.get("Principal") != {"AWS": "*"}, path.name


# The confused-deputy guard each service principal supports in a role's trust policy: the condition the
# statement must carry (operator -> key -> Fn::Sub text), or {} where the service documents neither
# aws:SourceAccount nor aws:SourceArn, since a condition on a key the service does not send denies it.
# The keys must be those the stand-in's services send (principals.SOURCE_KEYS), so local runs judge them.
TRUST_GUARDS = {
    # CodeBuild User Guide, "Allow CodeBuild to interact with other AWS services"; ECR User Guide,
    # "Repository policy examples" (aws:SourceArn arn:...:codebuild:<region>:<account>:project/<name>)
    "codebuild.amazonaws.com": {
        "StringEquals": {"aws:SourceAccount": "${AWS::AccountId}"},
        "ArnLike": {"aws:SourceArn": "arn:${AWS::Partition}:codebuild:${AWS::Region}:${AWS::AccountId}:project/"
                                     "${ProjectName}-{project}"}},
    # SageMaker Developer Guide, "Cross-service confused deputy prevention": training and processing jobs
    # send their ARN; inference sends arn:...:<account>:* with a literal asterisk, never a model's ARN
    "sagemaker.amazonaws.com": {
        "ArnLike": {"aws:SourceArn": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:*"}},
    "lambda.amazonaws.com": {},  # Lambda Developer Guide, execution role: neither key documented
    "glue.amazonaws.com": {},  # AWS Glue Developer Guide, job role: neither key documented
    "cloudformation.amazonaws.com": {},  # CloudFormation User Guide, service role: neither key documented
    "codepipeline.amazonaws.com": {},  # CodePipeline User Guide, service role: neither key documented
    "events.amazonaws.com": {},  # EventBridge User Guide, target role: neither key documented
}


def trust_statements():
    """(role, service, statement, role resource) for every service statement of every role's trust policy."""
    for path in ALL_TEMPLATES:
        for name, role in resources(load(path), "AWS::IAM::Role").items():
            for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
                for service in as_list(statement.get("Principal", {}).get("Service", [])):
                    yield pytest.param(name, service, statement, role, id=f"{name}:{service}")


def guard_text(condition):
    """A trust statement's condition with each value as its Fn::Sub text (Ref AWS::AccountId as ${...})."""
    def text(value):
        return f"${{{value['Ref']}}}" if isinstance(value, dict) and "Ref" in value else sub_text(value)
    return {operator: {key: text(value) for key, value in keys.items()} for operator, keys in condition.items()}


def test_every_trusted_service_has_a_guard_decision():
    services = {p.values[1] for p in trust_statements()}
    assert services and services <= set(TRUST_GUARDS), services - set(TRUST_GUARDS)


def test_the_guards_are_the_keys_the_stand_in_sends():
    from mlops_local.iam.principals import SOURCE_KEYS

    sent = {service: sorted(k for keys in guard.values() for k in keys) for service, guard in TRUST_GUARDS.items()}
    assert {s: keys for s, keys in sent.items() if keys} == {s: sorted(k) for s, k in SOURCE_KEYS.items()}


@pytest.mark.parametrize("role, service, statement, resource", list(trust_statements()))
def test_trust_statement_carries_the_guard_its_service_supports(role, service, statement, resource):
    expected = TRUST_GUARDS[service]
    if service == "codebuild.amazonaws.com":  # the one project that uses the role, by name
        projects = [p["Properties"]["Name"] for p in resources(load(PIPELINE), "AWS::CodeBuild::Project").values()
                    if p["Properties"]["ServiceRole"] == {"Fn::GetAtt": [role, "Arn"]}]
        assert len(projects) == 1, projects
        project = sub_text(projects[0]).removeprefix("${ProjectName}-")
        expected = {op: {k: v.replace("{project}", project) for k, v in keys.items()} for op, keys in expected.items()}
    assert guard_text(statement.get("Condition", {})) == expected
