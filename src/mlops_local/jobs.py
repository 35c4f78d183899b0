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
import tarfile
import time
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lambdas.endpoint_test import EndpointRejected
from mlops_local import s3_staging


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
            reason = s3_staging.last_error(log, 500)
        raise JobFailed(f"{name} failed (exit {code}): {reason} [log: {log}]")
    return seconds


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


SERVING_LINE = re.compile(rb"serving on http://127\.0\.0\.1:(\d+)")


class StartFailed(Exception):
    """A server could not be started; the message is the endpoint's FailureReason."""


# -- one local model server -------------------------------------------------------------------
@dataclass
class LocalServer:
    """A model-server process on 127.0.0.1, with a small pool of keep-alive connections."""
    process: subprocess.Popen
    port: int
    log: Path
    model_dir: Path
    _idle: list[http.client.HTTPConnection] = field(default_factory=list, repr=False)
    _busy: int = field(default=0, repr=False)
    _lock: threading.Condition = field(default_factory=threading.Condition, repr=False)

    @classmethod
    def start(cls, argv: list[str], model_dir: Path, log: Path, env: dict[str, str], variant: str,
              timeout: float, spawned: Callable[[subprocess.Popen], None] = lambda process: None
              ) -> "LocalServer":
        """Run `argv --host 127.0.0.1 --port 0`, wait for its `serving on` line, then /ping."""
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*argv, "--host", "127.0.0.1", "--port", "0"], stdout=out, stderr=subprocess.STDOUT,
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
                                  f"{s3_staging.last_error(log, 500)} [log: {log}]")
            if time.monotonic() > deadline:
                stop_process(process)
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
        stop_process(self.process)


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def http_invoker(server: "LocalServer"):
    """An `invoke(body, content_type)` for the endpoint test, over the server's pooled connections."""
    def invoke(body: bytes, content_type: str) -> bytes:
        status, payload, _ = server.request("POST", "/invocations", body,
                                            {"Content-Type": content_type, "Accept": "text/csv"})
        if 400 <= status < 500:
            raise EndpointRejected(f"HTTP {status}: {_error_text(payload)}")
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {_error_text(payload)}")
        return payload
    return invoke


def _error_text(payload: bytes) -> str:
    try:
        return str(json.loads(payload)["error"])
    except (ValueError, KeyError, TypeError):
        return payload[:200].decode("utf-8", errors="replace")
