"""Endpoint data capture: SageMaker's JSON Lines records, sampled, buffered, written as the model's role."""
from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
import time

import pytest
from botocore.config import Config

from mlops_local.sagemaker import data_capture
from mlops_local.sagemaker.data_capture import CaptureSettings, DataCapture

from tests.mlops_local.endpoint_stand import BUCKET, ROLE_NAME, deploy, endpoint_stand, in_service
from tests.mlops_local.sagemaker_requests import create_role, execution_statements
from tests.training.model_files import CSV_BODY

WHEN = dt.datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=dt.timezone.utc)
CAPTURE_PREFIX = "capture/run-1"
KEY = re.compile(r"^capture/run-1/(?P<endpoint>[^/]+)/AllTraffic/\d{4}/\d{2}/\d{2}/\d{2}/"
                 r"\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl$")


def capture_config(percentage: int, json_only: bool = False) -> dict:
    """templates/endpoint.yaml's DataCaptureConfig (`json_only`: CSV is not listed, so it is base64)."""
    header = {"JsonContentTypes": ["application/json"]}
    if not json_only:
        header["CsvContentTypes"] = ["text/csv"]
    return {"EnableCapture": True, "InitialSamplingPercentage": percentage,
            "DestinationS3Uri": f"s3://{BUCKET}/{CAPTURE_PREFIX}",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": header}


SETTINGS = data_capture.settings_from(capture_config(100))


# -- the format -------------------------------------------------------------------------------
@pytest.mark.parametrize("content_type, data, encoding", [
    ("text/csv", "1,2\n", "CSV"),
    ("text/csv; charset=utf-8", "1,2\n", "CSV"),
    ("application/json", "1,2\n", "JSON"),
    ("application/x-npy", base64.b64encode(b"1,2\n").decode(), "BASE64"),
], ids=["csv-listed", "csv-with-charset", "json-listed", "unlisted-is-base64"])
def test_a_body_is_text_when_its_content_type_is_listed_else_base64(content_type, data, encoding):
    assert data_capture.encoded(b"1,2\n", content_type, SETTINGS) == (data, encoding)


def test_a_record_has_sagemakers_shape():
    record = data_capture.record(SETTINGS, (b"1,2\n", "text/csv"), (b'{"p": 1}', "application/json"), WHEN, "inf-1")
    event_id = record["eventMetadata"].pop("eventId")
    assert re.fullmatch(r"[0-9a-f-]{36}", event_id)
    assert record == {
        "captureData": {
            "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": "1,2\n", "encoding": "CSV"},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT", "data": '{"p": 1}',
                               "encoding": "JSON"}},
        "eventMetadata": {"inferenceTime": "2026-03-04T05:06:07Z", "inferenceId": "inf-1"},
        "eventVersion": "0"}


@pytest.mark.parametrize("modes, keys", [
    (["Input"], {"endpointInput"}), (["Output"], {"endpointOutput"}),
    (["Input", "Output"], {"endpointInput", "endpointOutput"}),
    (["InputAndOutput"], {"endpointInput", "endpointOutput"}),
], ids=["input", "output", "both", "input-and-output"])
def test_capture_options_choose_what_is_captured(modes, keys):
    options = [{"CaptureMode": m} for m in modes]
    settings = data_capture.settings_from({**capture_config(100), "CaptureOptions": options})
    assert set(data_capture.record(settings, (b"x", "text/csv"), (b"y", "text/csv"), WHEN)["captureData"]) == keys


@pytest.mark.parametrize("config", [None, {**capture_config(100), "EnableCapture": False},
                                    {**capture_config(100), "EnableCapture": "false"}],
                         ids=["no-config", "disabled", "disabled-as-cloudformation-string"])
def test_no_capture_without_an_enabled_config(config):
    assert data_capture.settings_from(config) is None


def test_the_object_key_is_endpoint_variant_and_hour_of_the_first_record():
    key = data_capture.object_key("capture/run-1", "ep", "AllTraffic", WHEN)
    assert re.fullmatch(r"capture/run-1/ep/AllTraffic/2026/03/04/05/06-07-891-[0-9a-f-]{36}\.jsonl", key)
    assert data_capture.object_key("", "ep", "AllTraffic", WHEN).startswith("ep/AllTraffic/2026/03/04/05/")


# -- sampling, buffering, flushing -------------------------------------------------------------
def settings(percentage: int) -> CaptureSettings:
    return data_capture.settings_from(capture_config(percentage))


@pytest.mark.parametrize("percentage, low, high", [(0, 0, 0), (100, 400, 400), (30, 100, 140)],
                         ids=["none-at-0", "all-at-100", "about-30-seeded"])
def test_sampling_honours_the_percentage(percentage, low, high):
    counts = []
    for _ in range(2):
        capture = DataCapture(interval=None, seed=12)
        counts.append(sum(capture.sampled(settings(percentage)) for _ in range(400)))
    assert counts[0] == counts[1]  # seeded: the same draws each time
    assert low <= counts[0] <= high


def test_records_are_buffered_then_written_per_endpoint_variant_and_hour():
    written = []
    capture = DataCapture(interval=None)
    writer = lambda bucket, key, body, kms: written.append((bucket, key, body, kms))  # noqa: E731
    later = WHEN + dt.timedelta(hours=1)
    for when in (WHEN, WHEN, later):
        capture.add("ep", "AllTraffic", SETTINGS, writer, {"n": when.hour}, when)
    assert written == []
    capture.flush()
    assert sorted((b, k.split("/")[7], body.decode().count("\n")) for b, k, body, _ in written) == [
        (BUCKET, "05", 2), (BUCKET, "06", 1)]
    capture.flush()
    assert len(written) == 2  # nothing twice


def test_a_periodic_flush_writes_without_being_asked():
    written = []
    capture = DataCapture(interval=0.05)
    try:
        capture.add("ep", "AllTraffic", SETTINGS, lambda *args: written.append(args), {"n": 1}, WHEN)
        deadline = time.monotonic() + 5
        while not written and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(written) == 1
    finally:
        capture.close()


# -- served endpoints -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stand(tmp_path_factory):
    with endpoint_stand(tmp_path_factory.mktemp("capture"), health_interval=None, capture_interval=None,
                        capture_seed=3) as local:
        yield local


@pytest.fixture(scope="module")
def sm(stand):
    return stand[0].client("sagemaker")


@pytest.fixture(scope="module")
def smr(stand):
    return stand[0].client("sagemaker-runtime", config=Config(retries={"total_max_attempts": 1}))


def captured(stand, endpoint: str) -> list[tuple[str, dict]]:
    """(key, record) of every captured record of an endpoint in S3."""
    s3 = stand[0].client("s3")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{CAPTURE_PREFIX}/{endpoint}/").get("Contents", [])
    return [(o["Key"], json.loads(line)) for o in listed
            for line in s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read().decode().splitlines()]


def invoke(smr, name: str, times: int = 3) -> None:
    for _ in range(times):
        smr.invoke_endpoint(EndpointName=name, Body=CSV_BODY, ContentType="text/csv", Accept="text/csv")


def test_at_100_percent_every_invocation_is_captured_in_sagemakers_format(stand, sm, smr):
    deploy(sm, "cap-all", capture=capture_config(100))
    in_service(stand[1], sm, "cap-all")
    invoke(smr, "cap-all")
    assert captured(stand, "cap-all") == []  # buffered, as SageMaker writes files periodically
    stand[2].capture.flush()

    records = captured(stand, "cap-all")
    assert len(records) == 3
    for key, record in records:
        assert KEY.match(key).group("endpoint") == "cap-all"
        assert record["eventVersion"] == "0"
        assert record["captureData"]["endpointInput"] == {
            "observedContentType": "text/csv", "mode": "INPUT", "data": CSV_BODY.decode(), "encoding": "CSV"}
        output = record["captureData"]["endpointOutput"]
        assert output["mode"] == "OUTPUT" and output["encoding"] == "CSV"
        assert [float(v) for v in output["data"].split()] == pytest.approx([153.0, 115.0, 170.0])
        inference_time = dt.datetime.strptime(record["eventMetadata"]["inferenceTime"], "%Y-%m-%dT%H:%M:%SZ")
        assert key.split("/")[4:8] == inference_time.strftime("%Y/%m/%d/%H").split("/")
    assert len({r["eventMetadata"]["eventId"] for _, r in records}) == 3


def test_at_0_percent_nothing_is_captured(stand, sm, smr):
    deploy(sm, "cap-none", capture=capture_config(0))
    in_service(stand[1], sm, "cap-none")
    invoke(smr, "cap-none")
    stand[2].capture.flush()
    assert captured(stand, "cap-none") == []


def test_an_unlisted_content_type_is_captured_as_base64(stand, sm, smr):
    deploy(sm, "cap-b64", capture=capture_config(100, json_only=True))
    in_service(stand[1], sm, "cap-b64")
    invoke(smr, "cap-b64", times=1)
    stand[2].capture.flush()
    [(_, record)] = captured(stand, "cap-b64")
    assert record["captureData"]["endpointInput"]["encoding"] == "BASE64"
    assert base64.b64decode(record["captureData"]["endpointInput"]["data"]) == CSV_BODY


def test_deleting_the_endpoint_writes_what_was_buffered(stand, sm, smr):
    deploy(sm, "cap-del", capture=capture_config(100))
    in_service(stand[1], sm, "cap-del")
    invoke(smr, "cap-del", times=2)
    sm.delete_endpoint(EndpointName="cap-del")
    assert len(captured(stand, "cap-del")) == 2


def test_a_role_that_may_not_write_the_destination_loses_the_records_with_a_warning(stand, sm, smr, caplog):
    role = create_role(stand[0].client("iam"), f"{ROLE_NAME}-no-put",
                       execution_statements(BUCKET, without=("s3:PutObject",)))
    deploy(sm, "cap-denied", role=role, capture=capture_config(100))
    in_service(stand[1], sm, "cap-denied")
    lost = stand[2].capture.lost
    invoke(smr, "cap-denied", times=2)  # the invocations succeed: capture never fails a request
    with caplog.at_level(logging.WARNING, logger="mlops_local.sagemaker.data_capture"):
        stand[2].capture.flush()
    assert captured(stand, "cap-denied") == []
    assert stand[2].capture.lost == lost + 2
    assert "data capture of endpoint cap-denied lost 2 record(s)" in caplog.text
    assert "AccessDenied" in caplog.text


@pytest.mark.parametrize("key_actions, written", [(["kms:GenerateDataKey"], True), ([], False)],
                         ids=["role-may-use-the-key", "role-may-not-use-the-key"])
def test_captured_data_is_encrypted_with_the_configs_key_as_the_role(stand, sm, smr, key_actions, written):
    key_arn = stand[0].client("kms").create_key()["KeyMetadata"]["Arn"]
    name = f"cap-kms-{len(key_actions)}"
    grant = [{"Sid": "UseKey", "Effect": "Allow", "Action": key_actions, "Resource": key_arn}] if key_actions else []
    role = create_role(stand[0].client("iam"), f"{ROLE_NAME}-{name}", execution_statements(BUCKET) + grant)
    deploy(sm, name, role=role, capture={**capture_config(100), "KmsKeyId": key_arn})
    in_service(stand[1], sm, name)
    invoke(smr, name, times=1)
    stand[2].capture.flush()
    s3 = stand[0].client("s3")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{CAPTURE_PREFIX}/{name}/").get("Contents", [])
    assert len(listed) == written
    if written:
        head = s3.head_object(Bucket=BUCKET, Key=listed[0]["Key"])
        assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == key_arn
