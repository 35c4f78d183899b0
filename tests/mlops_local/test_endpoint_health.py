"""A model server that dies while its endpoint is InService is noticed by the health checks and replaced from
the same model, as SageMaker replaces an unhealthy instance; meanwhile DescribeEndpoint says so and
InvokeEndpoint answers ServiceUnavailable."""
from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from mlops_local.sagemaker import endpoints as endpoints_module
from mlops_local.sagemaker.model_servers import LocalServer

from tests.mlops_local.endpoint_stand import BUCKET, deploy, endpoint_stand, in_service, wait_for
from tests.training.model_files import BY_HAND, CSV_BODY


@pytest.fixture(scope="module")
def stand(tmp_path_factory):
    with endpoint_stand(tmp_path_factory.mktemp("health"), health_interval=0.1, capture_interval=None) as local:
        yield local


@pytest.fixture(scope="module")
def sm(stand):
    return stand[0].client("sagemaker")


@pytest.fixture(scope="module")
def smr(stand):
    return stand[0].client("sagemaker-runtime", config=Config(retries={"total_max_attempts": 1}))


@pytest.fixture
def gate(monkeypatch):
    """Server starts wait until the test opens the gate, so the state while replacing can be observed."""
    opened = threading.Event()

    class Gated(LocalServer):
        @classmethod
        def start(cls, *args: Any, **kwargs: Any) -> LocalServer:
            assert opened.wait(60), "the test never opened the gate"
            return LocalServer.start(*args, **kwargs)

    monkeypatch.setattr(endpoints_module, "LocalServer", Gated)
    return opened


def predictions(smr, name: str) -> list[float]:
    answer = smr.invoke_endpoint(EndpointName=name, Body=CSV_BODY, ContentType="text/csv", Accept="text/csv")
    return [float(v) for v in answer["Body"].read().decode().split()]


def variant(sm, name: str) -> dict:
    return sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]


def replacing(sm, name: str) -> dict | None:
    described = sm.describe_endpoint(EndpointName=name)
    return described if "VariantStatus" in described["ProductionVariants"][0] else None


def kill(stand, name: str):
    process = stand[2].served(name).process
    process.kill()
    process.wait()
    return process


def test_a_killed_server_is_replaced_and_the_endpoint_says_so_meanwhile(stand, sm, smr, gate):
    gate.set()
    deploy(sm, "hl-kill")
    in_service(stand[1], sm, "hl-kill")
    gate.clear()
    first = kill(stand, "hl-kill")

    described = wait_for(stand[1], lambda: replacing(sm, "hl-kill"), "the health check to notice")
    assert described["EndpointStatus"] == "InService" and "FailureReason" not in described
    [status] = described["ProductionVariants"][0]["VariantStatus"]
    assert status["Status"] == "Creating"
    assert "Replacing an unhealthy instance: the model container exited with status 137" in status["StatusMessage"]
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 0
    assert described["ProductionVariants"][0]["DesiredInstanceCount"] == 1
    with pytest.raises(ClientError) as caught:
        predictions(smr, "hl-kill")
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503

    gate.set()
    wait_for(stand[1], lambda: not replacing(sm, "hl-kill"), "the replacement")
    assert variant(sm, "hl-kill")["CurrentInstanceCount"] == 1
    second = stand[2].served("hl-kill")
    assert second.status == "InService" and second.process.pid != first.pid and second.process.poll() is None
    assert predictions(smr, "hl-kill") == pytest.approx(BY_HAND)


def test_an_invocation_that_finds_the_server_dead_starts_the_replacement_at_once(stand, sm, smr, gate, monkeypatch):
    gate.set()
    deploy(sm, "hl-invoke")
    in_service(stand[1], sm, "hl-invoke")
    monkeypatch.setattr(stand[2], "check_health", lambda: None)  # no health pass: the invocation alone notices
    first = kill(stand, "hl-invoke")
    with pytest.raises(ClientError) as caught:
        predictions(smr, "hl-invoke")
    assert caught.value.response["Error"]["Code"] == "ModelError"  # the request in flight
    assert "exited with status 137" in caught.value.response["Error"]["Message"]
    wait_for(stand[1], lambda: not replacing(sm, "hl-invoke"), "the replacement")
    assert stand[2].served("hl-invoke").process.pid != first.pid
    assert predictions(smr, "hl-invoke") == pytest.approx(BY_HAND)


def test_a_replacement_that_fails_keeps_the_endpoint_in_service_and_is_retried(stand, sm, smr, gate):
    gate.set()
    deploy(sm, "hl-retry")
    in_service(stand[1], sm, "hl-retry")
    s3 = stand[0].client("s3")
    model = s3.get_object(Bucket=BUCKET, Key="model/model.tar.gz")["Body"].read()
    s3.delete_object(Bucket=BUCKET, Key="model/model.tar.gz")
    try:
        kill(stand, "hl-retry")
        described = wait_for(stand[1], lambda: (lambda d: d if d and "failed; retrying" in
                                                d["ProductionVariants"][0]["VariantStatus"][0]["StatusMessage"]
                                                else None)(replacing(sm, "hl-retry")), "a failed replacement")
        assert described["EndpointStatus"] == "InService"
        [status] = described["ProductionVariants"][0]["VariantStatus"]
        assert "Failed to download model data" in status["StatusMessage"]
    finally:
        s3.put_object(Bucket=BUCKET, Key="model/model.tar.gz", Body=model)
    wait_for(stand[1], lambda: not replacing(sm, "hl-retry"), "the retried replacement")
    assert predictions(smr, "hl-retry") == pytest.approx(BY_HAND)


def test_a_server_that_stops_answering_pings_is_replaced(stand, sm, smr, gate, monkeypatch):
    gate.set()
    monkeypatch.setattr(stand[2], "ping_timeout", 0.2)
    deploy(sm, "hl-hung")
    in_service(stand[1], sm, "hl-hung")
    hung = stand[2].served("hl-hung").process
    os.kill(hung.pid, signal.SIGSTOP)  # alive, but answers nothing
    try:
        described = wait_for(stand[1], lambda: replacing(sm, "hl-hung"), "the failed pings")
        message = described["ProductionVariants"][0]["VariantStatus"][0]["StatusMessage"]
        assert "did not answer GET /ping within 0.2 s" in message
        wait_for(stand[1], lambda: not replacing(sm, "hl-hung"), "the replacement")
        assert stand[2].served("hl-hung").process.pid != hung.pid
        assert predictions(smr, "hl-hung") == pytest.approx(BY_HAND)
    finally:
        os.kill(hung.pid, signal.SIGCONT)  # lets the stop's SIGTERM through
