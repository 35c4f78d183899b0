"""Endpoint data capture: sampled requests and responses written to S3 in SageMaker's JSON Lines format.

An endpoint config's DataCaptureConfig (API_DataCaptureConfig) says whether to capture, which share of the
requests (InitialSamplingPercentage), what (CaptureOptions: Input, Output) and where (DestinationS3Uri),
encrypted with KmsKeyId. Each captured invocation is one JSON line (SageMaker Developer Guide, "Capture
data from real-time endpoint", view captured data; the same shape in aws/amazon-sagemaker-examples' model
monitor notebooks):

    {"captureData": {"endpointInput": {"observedContentType", "mode": "INPUT", "data", "encoding"},
                     "endpointOutput": {... "mode": "OUTPUT" ...}},
     "eventMetadata": {"eventId", "inferenceTime", ["inferenceId"]}, "eventVersion": "0"}

`data` is the body as text when its content type is listed in CaptureContentTypeHeader (encoding CSV or
JSON), else base64 (BASE64: "If no headers are specified SageMaker AI will by default base64 encode").
Objects go under `<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm>-<ss>-<ms>-<uuid>.jsonl`
(the hour of the inference, UTC). SageMaker writes files periodically, not per request, so records are
buffered and flushed every `interval` seconds and on close (endpoint deleted, stand-in closed). The
objects are written as the model's execution role; a denied write loses the records silently on AWS
(InvokeEndpoint does not fail), so here it is one warning line in the stand-in's log (and the denial is
in the access log).
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import random
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 5.0


@dataclass(frozen=True)
class CaptureSettings:
    """What one endpoint config's DataCaptureConfig asks for."""
    percentage: int
    destination: str                        # s3://bucket/prefix (no trailing slash)
    capture_input: bool
    capture_output: bool
    csv_types: frozenset[str] = frozenset()
    json_types: frozenset[str] = frozenset()
    kms_key_id: str | None = None


def settings_from(config: dict[str, Any] | None) -> CaptureSettings | None:
    """None when the config captures nothing (absent, or EnableCapture false)."""
    if not config or str(config.get("EnableCapture", True)).lower() == "false":
        return None
    modes = {str(o.get("CaptureMode", "")) for o in config.get("CaptureOptions") or []}
    header = config.get("CaptureContentTypeHeader") or {}
    return CaptureSettings(
        percentage=int(config.get("InitialSamplingPercentage", 0)),
        destination=str(config.get("DestinationS3Uri", "")).rstrip("/"),
        capture_input=bool(modes & {"Input", "InputAndOutput"}),
        capture_output=bool(modes & {"Output", "InputAndOutput"}),
        csv_types=frozenset(media_type(t) for t in header.get("CsvContentTypes") or []),
        json_types=frozenset(media_type(t) for t in header.get("JsonContentTypes") or []),
        kms_key_id=config.get("KmsKeyId") or None)


def media_type(content_type: str) -> str:
    """`text/csv; charset=utf-8` -> `text/csv` (captured records show the parameters in
    observedContentType with encoding CSV)."""
    return content_type.split(";", 1)[0].strip().lower()


def encoded(body: bytes, content_type: str, settings: CaptureSettings) -> tuple[str, str]:
    """(data, encoding) of a body as SageMaker captures it."""
    kind = media_type(content_type)
    for types, encoding in ((settings.csv_types, "CSV"), (settings.json_types, "JSON")):
        if kind in types:
            try:
                return body.decode("utf-8"), encoding
            except UnicodeDecodeError:
                break
    return base64.b64encode(body).decode("ascii"), "BASE64"


def record(settings: CaptureSettings, request: tuple[bytes, str], response: tuple[bytes, str],
           when: dt.datetime, inference_id: str | None = None) -> dict[str, Any]:
    """One captured invocation: (body, content type) of the request and of the response."""
    capture: dict[str, Any] = {}
    for wanted, key, mode, (body, content_type) in (
            (settings.capture_input, "endpointInput", "INPUT", request),
            (settings.capture_output, "endpointOutput", "OUTPUT", response)):
        if wanted:
            data, encoding = encoded(body, content_type, settings)
            capture[key] = {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}
    metadata = {"eventId": str(uuid.uuid4()), "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if inference_id:
        metadata["inferenceId"] = inference_id
    return {"captureData": capture, "eventMetadata": metadata, "eventVersion": "0"}


def object_key(prefix: str, endpoint: str, variant: str, first: dt.datetime) -> str:
    """The key of a capture file whose first record is from `first` (UTC)."""
    name = f"{first:%M-%S}-{first.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
    return "/".join(p for p in (prefix, endpoint, variant, f"{first:%Y/%m/%d/%H}", name) if p)


# (bucket, key, body, kms key id) -> None; raises on failure. The endpoint binds it to its role's session.
Writer = Callable[[str, str, bytes, "str | None"], None]


@dataclass
class _Batch:
    settings: CaptureSettings
    writer: Writer
    first: dt.datetime
    lines: list[str] = field(default_factory=list)


class DataCapture:
    """Sampling, buffering and the periodic flush of every endpoint's captured records."""

    def __init__(self, interval: float | None = FLUSH_SECONDS, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._batches: dict[tuple[str, str, str, str], _Batch] = {}  # (destination, endpoint, variant, hour)
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._stop = threading.Event()
        self.lost = 0                      # records a failed write lost, for tests and the log
        self._thread: threading.Thread | None = None
        if interval:
            self._thread = threading.Thread(target=self._run, args=(interval,), name="data-capture", daemon=True)
            self._thread.start()

    def sampled(self, settings: CaptureSettings) -> bool:
        """Whether this invocation is captured (InitialSamplingPercentage of them)."""
        with self._lock:
            return self._random.random() * 100 < settings.percentage

    def add(self, endpoint: str, variant: str, settings: CaptureSettings, writer: Writer,
            captured: dict[str, Any], when: dt.datetime) -> None:
        key = (settings.destination, endpoint, variant, f"{when:%Y%m%d%H}")
        with self._lock:
            batch = self._batches.setdefault(key, _Batch(settings, writer, when))
            batch.lines.append(json.dumps(captured, separators=(",", ":")))

    def flush(self, endpoint: str | None = None) -> None:
        """Write what is buffered (of one endpoint, or all) as one object per endpoint/variant/hour."""
        with self._flushing:
            with self._lock:
                keys = [k for k in self._batches if endpoint is None or k[1] == endpoint]
                batches = [(k, self._batches.pop(k)) for k in keys]
            for (destination, name, variant, _), batch in batches:
                bucket, _, prefix = destination[len("s3://"):].partition("/")
                key = object_key(prefix, name, variant, batch.first)
                body = ("\n".join(batch.lines) + "\n").encode("utf-8")
                try:
                    batch.writer(bucket, key, body, batch.settings.kms_key_id)
                except Exception as exc:  # AWS loses them silently; say so here
                    self.lost += len(batch.lines)
                    logger.warning("data capture of endpoint %s lost %d record(s): writing s3://%s/%s failed: %s",
                                   name, len(batch.lines), bucket, key, exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.flush()
