"""Fixtures of the job-worker tests: stubbed clients (tests/lambdas/pipeline_stubs.py builds them)."""
from __future__ import annotations

import pytest

from tests.lambdas.pipeline_stubs import stubbed


@pytest.fixture
def codepipeline():
    """(client, stubber): every test states the one result call it expects, and gets no other."""
    yield from stubbed("codepipeline")


@pytest.fixture
def stubbed_sagemaker():
    """(client, stubber) for SageMaker states moto cannot produce (InProgress, Failed, ...)."""
    yield from stubbed("sagemaker")


@pytest.fixture
def stubbed_glue():
    """(client, stubber) for Glue run states moto cannot produce."""
    yield from stubbed("glue")
