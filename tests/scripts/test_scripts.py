"""scripts/*.sh: bash syntax, shellcheck, usage on bad arguments, and a clear message when the aws
CLI, the region or the credentials are missing. Nothing here reaches AWS: a stub `aws` stands in."""
from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import ROOT
from tests.scripts.script_stubs import path_without_aws, run, shellcheck, stub_aws

SCRIPTS = sorted((ROOT / "scripts").glob("[a-z]*.sh"))
LIBRARY = ROOT / "scripts" / "_common.sh"
IDS = [p.name for p in SCRIPTS]


def test_the_four_scripts_exist():
    assert IDS == ["deploy.sh", "push_sources.sh", "teardown.sh", "upload_data.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=IDS)
def test_header(script):
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert os.access(script, os.X_OK)


@pytest.mark.parametrize("script", SCRIPTS + [LIBRARY], ids=IDS + ["_common.sh"])
def test_bash_syntax(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_shellcheck_clean():
    result = subprocess.run([shellcheck(), "-x", *(str(p.relative_to(ROOT)) for p in SCRIPTS), "scripts/_common.sh"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=IDS)
@pytest.mark.parametrize("args", [["--no-such-option"], ["--stack-name"], ["stray-argument"]],
                         ids=["unknown-option", "missing-value", "stray-argument"])
def test_bad_arguments_print_usage_and_fail(script, args, tmp_path):
    if script.name == "deploy.sh" and args == ["stray-argument"]:
        args = ["not-a-key-value"]
    result = run(script, *args, env={"PATH": stub_aws(tmp_path, "exit 99")})
    assert result.returncode == 2, result.stderr
    assert "usage:" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("script", SCRIPTS, ids=IDS)
def test_help_prints_usage(script):
    result = run(script, "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage:")


@pytest.mark.parametrize("script", SCRIPTS, ids=IDS)
def test_missing_aws_cli_is_a_clear_error(script, tmp_path):
    result = run(script, env={"PATH": path_without_aws(tmp_path), "AWS_REGION": "us-east-1"})
    assert result.returncode == 1
    assert "the aws CLI is not on PATH" in result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=IDS)
def test_missing_region_is_a_clear_error(script, tmp_path):
    # `aws configure get region` finds nothing; any other call would be a bug here.
    path = stub_aws(tmp_path, '[[ "$1 $2" == "configure get" ]] && exit 1; echo "unexpected: $*" >&2; exit 99')
    result = run(script, env={"PATH": path, "HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "no AWS region" in result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=IDS)
def test_missing_credentials_is_a_clear_error(script, tmp_path):
    path = stub_aws(tmp_path, '[[ "$1" == "sts" ]] && { echo "Unable to locate credentials." >&2; exit 253; }\n'
                              'echo "unexpected: $*" >&2; exit 99')
    result = run(script, env={"PATH": path, "AWS_REGION": "eu-west-1"})
    assert result.returncode == 1
    assert "no usable AWS credentials" in result.stderr and "Unable to locate credentials" in result.stderr


def test_deploy_rejects_a_project_name_the_template_would_reject(tmp_path):
    result = run(ROOT / "scripts/deploy.sh", "--project-name", "Way-Too-Long-Project-Name",
                 env={"PATH": stub_aws(tmp_path, "exit 99")})
    assert result.returncode == 2 and "--project-name" in result.stderr


def test_deploy_builds_a_lambdas_package_zip(tmp_path):
    """Against a stub aws that accepts everything: the zip holds lambdas/*.py at its root."""
    import zipfile

    log = tmp_path / "aws.log"
    body = f'''echo "$*" >> {log}
case "$1 $2" in
  "sts get-caller-identity") echo 123456789012 ;;
  "cloudformation describe-stacks") printf 'GlueCodeUri\ts3://mlops-data/code/glue/\nPipelineName\tmlops\n' ;;
esac
exit 0'''
    result = run(ROOT / "scripts/deploy.sh", "QualityThreshold=550",
                 env={"PATH": stub_aws(tmp_path, body), "AWS_REGION": "eu-west-1"})
    assert result.returncode == 0, result.stderr
    names = zipfile.ZipFile(ROOT / "build/deploy/lambdas.zip").namelist()
    assert "lambdas/job.py" in names and "lambdas/registry.py" in names
    assert all(n.startswith("lambdas/") and n.endswith(".py") for n in names)
    calls = log.read_text()
    assert "CAPABILITY_NAMED_IAM" in calls and "QualityThreshold=550" in calls
    assert "LambdaCodeKey=mlops/lambdas/lambdas-" in calls


def test_teardown_refuses_without_a_terminal_or_yes(tmp_path):
    body = '''case "$1 $2" in
  "sts get-caller-identity") echo 123456789012 ;;
  "cloudformation list-stacks") echo "" ;;
  "cloudformation describe-stacks") echo value ;;
  *) echo "unexpected: $*" >&2; exit 99 ;;
esac'''
    result = run(ROOT / "scripts/teardown.sh", env={"PATH": stub_aws(tmp_path, body), "AWS_REGION": "eu-west-1"})
    assert result.returncode == 1
    assert "--yes" in result.stderr and "unexpected" not in result.stderr
