"""Images run from source, the change signal the pipeline engine waits on, and what the runtime closes."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from tests.conftest import ROOT
from mlops_local.gateway import LocalAws
from mlops_local.runtime import Changes, ImageMap, Runtime, python_command

TRAINING = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-training:c0ffee"
TEST_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-endpoint-test:c0ffee"


def test_training_image_programs_come_from_its_dockerfile():
    image = ImageMap(ROOT).add(TRAINING, ROOT / "src/training/Dockerfile")
    assert image.command("train") == [sys.executable, "-m", "training.train"]
    assert image.command("serve") == [sys.executable, "-m", "training.serve"]
    assert image.lambda_handler is None
    with pytest.raises(KeyError, match="has no program 'evaluate'"):
        image.command("evaluate")


def test_lambda_image_handler_comes_from_its_cmd():
    image = ImageMap(ROOT).add(TEST_IMAGE, ROOT / "src/lambdas/Dockerfile")
    assert image.lambda_handler == "lambdas.endpoint_test.handler" and image.programs == {}


def test_an_image_runs_the_code_of_its_source_root_not_an_installed_copy(tmp_path):
    """Another checkout's `training` package wins over the one this interpreter has installed."""
    (tmp_path / "src/training/bin").mkdir(parents=True)
    (tmp_path / "src/training/__init__.py").write_text("")
    (tmp_path / "src/training/train.py").write_text("print('from the other checkout')\n")
    (tmp_path / "src/training/bin/train").write_text('#!/bin/sh\nexec python3 -m training.train "$@"\n')
    dockerfile = tmp_path / "src/training/Dockerfile"
    dockerfile.write_text("FROM base\nCOPY src/training/bin/ /opt/program/bin/\n")
    image = ImageMap(tmp_path).add(TRAINING, dockerfile)
    assert image.environment() == {"PYTHONPATH": str(tmp_path / "src")}
    done = subprocess.run(image.command("train"), env={**os.environ, **image.environment()}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout == "from the other checkout\n", done.stderr


def test_resolve_by_repository_when_the_tag_differs():
    images = ImageMap(ROOT)
    images.add(TRAINING, ROOT / "src/training/Dockerfile")
    assert images.resolve(TRAINING.replace("c0ffee", "beef")).uri == TRAINING
    with pytest.raises(KeyError, match="is not known here"):
        images.resolve("123456789012.dkr.ecr.us-east-1.amazonaws.com/other:1")


@pytest.mark.parametrize("argv, expected", [
    (["python3", "-m", "training.evaluate"], [sys.executable, "-m", "training.evaluate"]),
    (["/usr/bin/python3.12", "x.py"], [sys.executable, "x.py"]),
    (["bash", "-c", "true"], ["bash", "-c", "true"]),
])
def test_python_command(argv, expected):
    assert python_command(argv) == expected


def test_changes_wake_a_waiter():
    changes = Changes()
    start = changes.version
    timer = threading.Timer(0.05, changes.notify)
    timer.start()
    assert changes.wait(start, timeout=5) == start + 1
    assert changes.wait(start + 1, timeout=0.01) == start + 1  # nothing new: times out


def test_close_ends_the_idle_lambda_workers(tmp_path):
    runtime = Runtime(aws=LocalAws(), workdir=tmp_path, source_root=ROOT)  # not started: no server needed
    other = Runtime(aws=runtime.aws, workdir=tmp_path, source_root=ROOT)
    assert runtime.lambda_workers is not other.lambda_workers  # each runtime owns its pool
    key = ("function", "environment-hash")
    worker = runtime.lambda_workers.acquire(key, dict(os.environ), tmp_path, tmp_path / "worker.log")
    runtime.lambda_workers.release(key, worker)
    assert worker.alive()
    try:
        runtime.close()
        assert not worker.alive()
        fresh = runtime.lambda_workers.acquire(key, dict(os.environ), tmp_path, tmp_path / "worker.log")
        fresh.kill()
        assert fresh is not worker
    finally:
        worker.kill()
        runtime.aws.server.server_close()
