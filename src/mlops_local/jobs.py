"""Run the project's jobs as local processes under the contracts they have on AWS.

Each job runs in its own interpreter, as it would in its own Glue worker or SageMaker container:
the Glue script with its `--key value` arguments, training with the SM_* environment, evaluation
with the processing layout, the model server on a free loopback port.
"""
from __future__ import annotations

import http.client
import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from lambdas.endpoint_test import EndpointRejected


class JobFailed(RuntimeError):
    """A job exited non-zero; the message carries its reason and where its log is."""


def module_path(module: str) -> Path:
    """Source file of a module, found without importing it (the ETL must not import Spark here)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise JobFailed(f"cannot find module {module}")
    return Path(spec.origin)


def run_job(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None,
            failure_file: Path | None = None) -> float:
    """Run one job to completion; return its seconds. Raise JobFailed with its reason."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("wb") as out:
        code = subprocess.call(argv, stdout=out, stderr=subprocess.STDOUT,
                               env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - started
    if code != 0:
        reason = ""
        if failure_file is not None and failure_file.exists():
            reason = failure_file.read_text(encoding="utf-8", errors="replace")[:1024].strip()
        if not reason:
            reason = _last_error(log)
        raise JobFailed(f"{name} failed (exit {code}): {reason} [log: {log}]")
    return seconds


def _last_error(log: Path) -> str:
    lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line.strip()[:500]
    return lines[-1].strip()[:500] if lines else "no output"


def pack_model(model_dir: Path, tarball: Path) -> Path:
    """model.tar.gz as SageMaker uploads it: the model dir's files at the archive root."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)
    return tarball


def unpack_model(tarball: Path, model_dir: Path) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tar:
        tar.extractall(model_dir, filter="data")
    return model_dir


@dataclass
class ModelServer:
    """A local model server process, as an endpoint's container runs it."""
    process: subprocess.Popen
    port: int
    log: Path

    @classmethod
    def start(cls, model_dir: Path, log: Path, timeout: float = 60.0) -> "ModelServer":
        log.parent.mkdir(parents=True, exist_ok=True)
        out = log.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-u", "-m", "training.serve", "--host", "127.0.0.1", "--port", "0"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "SM_MODEL_DIR": str(model_dir)},
        )
        out.close()
        deadline = time.monotonic() + timeout
        pattern = re.compile(rb"serving on http://127\.0\.0\.1:(\d+)")
        while time.monotonic() < deadline:
            match = pattern.search(log.read_bytes())
            if match:
                return cls(process, int(match.group(1)), log)
            if process.poll() is not None:
                raise JobFailed(f"model server exited with {process.returncode}: {_last_error(log)} "
                                f"[log: {log}]")
            time.sleep(0.05)
        process.kill()
        raise JobFailed(f"model server did not start within {timeout:.0f} s [log: {log}]")

    def invoker(self):
        """An `invoke(body, content_type)` over one keep-alive connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

        def invoke(body: bytes, content_type: str) -> bytes:
            connection.request("POST", "/invocations", body=body,
                               headers={"Content-Type": content_type, "Accept": "text/csv"})
            response = connection.getresponse()
            payload = response.read()
            if 400 <= response.status < 500:
                raise EndpointRejected(f"HTTP {response.status}: {_error_text(payload)}")
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {_error_text(payload)}")
            return payload
        return invoke

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _error_text(payload: bytes) -> str:
    try:
        return str(json.loads(payload)["error"])
    except (ValueError, KeyError, TypeError):
        return payload[:200].decode("utf-8", errors="replace")
