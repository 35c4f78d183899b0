from __future__ import annotations

import pytest

from tests.lambdas.pipeline_stubs import stubbed_codepipeline


@pytest.fixture
def codepipeline():
    """(client, stubber): every test states the one result call it expects, and gets no other."""
    client, stub = stubbed_codepipeline()
    with stub:
        yield client, stub
        stub.assert_no_pending_responses()
