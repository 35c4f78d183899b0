"""The image definitions: Dockerfiles lint clean, and every entry point they name runs from source.

No container engine runs here, so the images are not built; what they would run is.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCKERFILES = sorted(ROOT.glob("src/**/Dockerfile"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def test_both_images_are_defined():
    assert [p.relative_to(ROOT).as_posix() for p in DOCKERFILES] == [
        "src/lambdas/Dockerfile", "src/training/Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_passes(dockerfile):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_copied_sources_exist(dockerfile):
    sources = re.findall(r"^COPY\s+(\S+)\s+\S+\s*$", dockerfile.read_text(), flags=re.M)
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"{dockerfile.name} copies {source}, which does not exist"


def test_training_image_bases_on_the_tensorflow_dlc():
    text = (ROOT / "src/training/Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=\S+/tensorflow-training:2\.21-cpu-py312$", text, flags=re.M)
    assert "FROM ${BASE_IMAGE}" in text


@pytest.mark.parametrize("program, module", [("train", "training.train"), ("serve", "training.serve")])
def test_sagemaker_programs_run_from_source(program, module):
    script = ROOT / "src/training/bin" / program
    assert os.access(script, os.X_OK), f"{script} is not executable"
    assert f"python3 -m {module}" in script.read_text()
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                            env=ENV, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


def test_evaluation_entry_point_runs_from_source():
    result = subprocess.run([sys.executable, "-m", "training.evaluate", "--help"], capture_output=True,
                            text=True, env=ENV, timeout=120)
    assert result.returncode == 0, result.stderr


def test_lambda_image_handler_exists():
    text = (ROOT / "src/lambdas/Dockerfile").read_text()
    assert "FROM ${BASE_IMAGE}" in text and "public.ecr.aws/lambda/python:3.11" in text
    handler = re.search(r'^CMD \["([\w.]+)"\]', text, flags=re.M).group(1)
    module, _, function = handler.rpartition(".")
    result = subprocess.run(
        [sys.executable, "-c", f"import {module} as m; assert callable(m.{function})"],
        capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
