"""Local model servers: what an endpoint config serves, its model data, and the server process.

`find_container` resolves an endpoint config to the container SageMaker would run (and the model's
execution role, which SageMaker pulls the image and fetches the model data with), `fetch_model`
stages its model.tar.gz, and `LocalServer` runs the image's `serve` program on a free loopback
port and forwards requests to it over keep-alive connections.
"""
from __future__ import annotations

import http.client
import os
import re
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mlops_local import processes
from mlops_local.s3_staging import S3Client, StagingError, split_s3_uri

SERVING_LINE = re.compile(rb"serving on http://127\.0\.0\.1:(\d+)")
# A ping must answer within 2 seconds (AWS Knowledge Center, "Troubleshoot SageMaker endpoint creation or
# update failures": "The health check request must receive a response within two seconds").
PING_TIMEOUT = 2.0


class StartFailed(Exception):
    """A server could not be started; the message is the endpoint's FailureReason."""


class ModelDataFailed(StartFailed):
    """The model data could not be downloaded (the message says why, after SageMaker's text)."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"{model_data_failure(url)} ({detail})")
        self.url = url


def model_data_failure(url: str) -> str:
    """SageMaker's FailureReason for model data it cannot download (aws-samples/cvat-on-aws-china#3,
    aws-solutions-library-samples/fraud-detection-using-machine-learning#9)."""
    return (f'Failed to download model data for container "container_1" from URL: "{url}". Please ensure '
            "that there is an object located at the URL and that the role passed to CreateModel has "
            "permissions to download the object.")


@dataclass(frozen=True)
class Container:
    """The first production variant's container, as SageMaker would run it."""
    model_name: str
    variant: str
    image: str
    model_data_url: str
    environment: dict[str, str]
    execution_role: str = ""                # the model's ExecutionRoleArn


def find_container(sagemaker: Any, config_name: str) -> tuple[Container, list[dict[str, Any]]]:
    """Config -> first variant's model -> its container's image, model data and environment; also
    the ProductionVariants that DescribeEndpoint reports for the config."""
    from botocore.exceptions import ClientError

    try:
        config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
        variant = config["ProductionVariants"][0]
        model = sagemaker.describe_model(ModelName=variant["ModelName"])
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        environment = dict(container.get("Environment") or {})
        if container.get("ModelPackageName"):
            package = sagemaker.describe_model_package(ModelPackageName=container["ModelPackageName"])
            containers = package.get("InferenceSpecification", {}).get("Containers") or [{}]
            environment = {**(containers[0].get("Environment") or {}), **environment}
            container = containers[0]
    except ClientError as exc:
        raise StartFailed(f"endpoint configuration {config_name}: {exc.response['Error']['Message']}") from None
    model_name = variant["ModelName"]
    if not container.get("Image"):
        raise StartFailed(f"model {model_name} has no container image")
    if not container.get("ModelDataUrl"):
        raise StartFailed(f"model {model_name} has no ModelDataUrl; the model server needs model data")
    variants = [variant_summary(v) for v in config["ProductionVariants"]]
    for summary in variants[:1]:
        summary["DeployedImages"] = [{"SpecifiedImage": container["Image"], "ResolvedImage": container["Image"]}]
    return Container(model_name, variant["VariantName"], container["Image"], container["ModelDataUrl"],
                     {str(k): str(v) for k, v in environment.items()}, str(model.get("ExecutionRoleArn") or "")
                     ), variants


def variant_summary(variant: dict[str, Any]) -> dict[str, Any]:
    """A config's ProductionVariant as DescribeEndpoint reports it once deployed."""
    summary: dict[str, Any] = {"VariantName": variant["VariantName"]}
    if "InitialVariantWeight" in variant:
        summary["CurrentWeight"] = summary["DesiredWeight"] = variant["InitialVariantWeight"]
    if "InitialInstanceCount" in variant:
        summary["CurrentInstanceCount"] = summary["DesiredInstanceCount"] = variant["InitialInstanceCount"]
    if "ServerlessConfig" in variant:
        summary["CurrentServerlessConfig"] = variant["ServerlessConfig"]
    return summary


def fetch_model(s3: S3Client, container: Container, folder: Path) -> Path:
    """Download and unpack the container's model.tar.gz into `folder/model`; return that folder."""
    url = container.model_data_url
    try:
        bucket, key = split_s3_uri(url)
    except StagingError:
        key = ""
    if not key:
        raise StartFailed(f"model {container.model_name}: ModelDataUrl {url!r} is not an s3:// object URL")
    folder.mkdir(parents=True, exist_ok=True)
    tarball = folder / "model.tar.gz"
    try:
        s3.download_file(bucket, key, str(tarball))
    except Exception as exc:
        raise ModelDataFailed(url, f"model {container.model_name}: {exc}") from None
    try:
        return unpack_model(tarball, folder / "model")
    except Exception as exc:
        raise StartFailed(f"model data at {url} is not a readable model.tar.gz: {exc}") from None


def unpack_model(tarball: Path, model_dir: Path) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tar:
        tar.extractall(model_dir, filter="data")
    return model_dir


@dataclass
class LocalServer:
    """A model-server process on 127.0.0.1, with a small pool of keep-alive connections."""
    process: subprocess.Popen
    port: int
    log: Path
    model_dir: Path
    follower: Any = field(default=None, repr=False)   # cloudwatch_logs.FileFollower copying the log, if any
    _idle: list[http.client.HTTPConnection] = field(default_factory=list, repr=False)
    _busy: int = field(default=0, repr=False)
    _lock: threading.Condition = field(default_factory=threading.Condition, repr=False)

    @classmethod
    def start(cls, argv: list[str], model_dir: Path, log: Path, env: dict[str, str], variant: str,
              timeout: float, spawned: Callable[[subprocess.Popen], None] = lambda process: None
              ) -> "LocalServer":
        """Run `argv --host 127.0.0.1 --port 0`, wait for its `serving on` line, then /ping."""
        process = processes.start(
            [*argv, "--host", "127.0.0.1", "--port", "0"], log=log,
            env={**os.environ, **env, "SM_MODEL_DIR": str(model_dir), "PYTHONUNBUFFERED": "1"})
        spawned(process)
        deadline = time.monotonic() + timeout
        while True:
            match = SERVING_LINE.search(log.read_bytes())
            if match:
                server = cls(process, int(match.group(1)), log, model_dir)
                break
            if process.poll() is not None:
                raise StartFailed(f"The primary container for production variant {variant} exited with "
                                  f"status {process.returncode} before it answered /ping: "
                                  f"{processes.last_error(log, 500)} [log: {log}]")
            if time.monotonic() > deadline:
                processes.stop(process)
                raise StartFailed(f"The primary container for production variant {variant} did not start "
                                  f"serving within {timeout:.0f} s [log: {log}]")
            time.sleep(0.02)
        problem = server.ping()
        if problem:
            server.stop()
            raise StartFailed(f"The primary container for production variant {variant} did not pass the "
                              f"ping health check: {problem} [log: {log}]")
        return server

    def ping(self) -> str | None:
        """None when GET /ping answers 200, else what went wrong."""
        try:
            status, _, _ = self.request("GET", "/ping", b"", {})
        except (OSError, http.client.HTTPException) as exc:
            return f"GET /ping failed: {exc}"
        return None if status == 200 else f"GET /ping answered HTTP {status}"

    def health(self, timeout: float = PING_TIMEOUT) -> tuple[str, bool] | None:
        """None when healthy, else (what is wrong, whether it is final: the process exited). A health
        check's ping has its own connection and a short timeout, as SageMaker's does, so a request in
        flight neither delays nor hides it."""
        code = self.process.poll()
        if code is not None:
            return f"exited with status {processes.exit_status(code)}", True  # a container's: 137 for SIGKILL
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", "/ping")
            status = connection.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            return f"did not answer GET /ping within {timeout:g} s: {exc}", False
        finally:
            connection.close()
        return None if status == 200 else (f"answered GET /ping with HTTP {status}", False)

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]
                ) -> tuple[int, bytes, dict[str, str]]:
        """One request over a pooled connection; a stale keep-alive connection is retried once."""
        with self._lock:
            self._busy += 1
        try:
            return self._request(method, path, body, headers)
        finally:
            with self._lock:
                self._busy -= 1
                self._lock.notify_all()

    def _request(self, method: str, path: str, body: bytes, headers: dict[str, str]
                 ) -> tuple[int, bytes, dict[str, str]]:
        for attempt in (1, 2):
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            fresh = connection is None
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except (ConnectionError, http.client.HTTPException, OSError):
                connection.close()
                if fresh or attempt == 2:
                    raise
                continue
            if response.will_close:
                connection.close()
            else:
                with self._lock:
                    self._idle.append(connection)
            return response.status, payload, {k.lower(): v for k, v in response.getheaders()}
        raise AssertionError("unreachable")

    def stop(self, drain: float = 5.0) -> None:
        """Let requests in flight finish (up to `drain` seconds), then stop the process."""
        with self._lock:
            self._lock.wait_for(lambda: self._busy == 0, timeout=drain)
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        processes.stop(self.process)
        if self.follower is not None:  # the last lines too
            self.follower.close()
