"""What every job-worker test needs: the event's job id, stubbed clients, request capture, and the
small builders (`without`, `now_minus`) the worker tests share."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Mapping

import boto3
from botocore.stub import ANY, Stubber

JOB_ID = "11111111-abcd-1111-abcd-111111abcdef"  # tests/events/codepipeline_job.json


def stubbed_codepipeline():
    """A real CodePipeline client whose result calls are checked against the service model."""
    client = boto3.client("codepipeline", region_name="us-east-1")
    return client, Stubber(client)


def stubbed(service: str) -> Iterator[tuple[Any, Stubber]]:
    """Fixture body: (client, stubber) of a real client; requests are checked against the service
    model, and a response the test queued but the worker never asked for fails the test."""
    client = boto3.client(service, region_name="us-east-1")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def without(params: Mapping[str, Any], key: str) -> dict[str, Any]:
    """UserParameters missing one key."""
    return {k: v for k, v in params.items() if k != key}


def now_minus(seconds: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(seconds=seconds)


def expect_success(stub, **params):
    stub.add_response("put_job_success_result", {}, {"jobId": JOB_ID, **params})


def expect_failure(stub, failure_type, message=ANY):
    stub.add_response("put_job_failure_result", {},
                      {"jobId": JOB_ID, "failureDetails": {"type": failure_type, "message": message}})


def record_requests(client) -> list[tuple[str, dict]]:
    """Every request the client sends, as (operation, parameters)."""
    sent: list[tuple[str, dict]] = []
    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(f"before-parameter-build.{service}.*",
                                lambda params, model, **_: sent.append((model.name, dict(params))))
    return sent


def invoke_worker(work, user_parameters: dict, token=None) -> dict:
    """One worker invocation as CodePipeline makes it, expected to succeed (or continue): the result
    call is checked against CodePipeline's model; a failure result is a stub error (its message is logged)."""
    from lambdas.job import run_job
    from tests.conftest import load_event

    codepipeline, stub = stubbed_codepipeline()
    stub.add_response("put_job_success_result", {})
    with stub:
        return run_job(load_event(user_parameters=user_parameters, continuation_token=token), work,
                       codepipeline=codepipeline)
