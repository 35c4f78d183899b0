"""Warm Lambda workers: child interpreters that each serve one function's invocations.

The pool (`LambdaWorkers`) belongs to a `Runtime` and ends its workers on `Runtime.close()`.
Requests and answers are JSON lines: a request goes in on the worker's stdin, its answer comes back
on a pipe of its own, and the worker's stdout/stderr are the current invocation's log.
Each worker is one execution environment's CloudWatch Logs stream: after an invocation the parent puts its
output, between Lambda's START and END/REPORT lines, into the function's log group, signed as the
function's execution role (the credentials in the worker's environment), as Lambda does.
This module is also the worker's program (`LAMBDA_WORKER`), so it imports nothing heavy.
"""
from __future__ import annotations

import importlib
import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mlops_local import lambda_logging

IDLE_SECONDS = 600.0  # a worker unused this long is ended, as Lambda reclaims idle environments
MAX_IDLE_WORKERS = 24  # beyond this many idle workers the longest idle ones end (each holds ~60 MB)
LAMBDA_WORKER = "from mlops_local.lambda_workers import lambda_worker; lambda_worker()"

WorkerKey = tuple[str, str]
"""(function name, hash of its environment): which invocations one worker may serve. The environment
holds the execution role's session credentials, which the runtime keeps until shortly before they
expire (runtime.RoleSessions), so renewed credentials start a fresh worker, as Lambda's would."""


@dataclass
class _Invocation:
    """The invocation a worker serves, until its lines are in CloudWatch Logs."""
    request_id: str
    log: Path
    group: str
    start: float
    deadline: float


class Worker:
    """One warm execution environment: a child interpreter that serves one function's invocations.

    Requests go in on its stdin and answers come back on a pipe of their own, one JSON line each;
    its stdout and stderr are the current invocation's log (`lambda_worker`).
    """

    def __init__(self, env: dict[str, str], cwd: Path, log: Path, preload: Sequence[str] = ()) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        try:
            with open(log, "ab") as out:  # what the worker prints between invocations
                self.process = subprocess.Popen(
                    [sys.executable, "-c", LAMBDA_WORKER, str(write_fd), ",".join(preload)], stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=subprocess.STDOUT, env=env, cwd=str(cwd), pass_fds=(write_fd,))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._answers = read_fd
        self._buffer = b""
        self.invocations = 0
        self.idle_since = time.monotonic()
        self.env = env
        self.environment_id = uuid.uuid4().hex  # the execution environment's id in its stream name
        self.created = datetime.now(timezone.utc)
        self._invocation: _Invocation | None = None
        self._writers: dict[str, Any] = {}  # log group -> cloudwatch_logs.LogWriter

    def stream(self, group: str) -> str:
        """This execution environment's CloudWatch Logs stream in `group`."""
        return lambda_logging.log_stream_name(group, self.env.get("AWS_LAMBDA_FUNCTION_NAME", ""),
                                              self.env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                                              self.environment_id, self.created)

    def log_location(self, group: str | None = None) -> str:
        """How a failure message names where the invocation's output is (CloudWatch Logs group and stream)."""
        group = group or self.env.get("AWS_LAMBDA_LOG_GROUP_NAME") or ""
        return f"CloudWatch Logs group {group}, stream {self.stream(group)}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, payload: Mapping[str, Any]) -> bool:
        """False when the worker is gone. The context's log_stream_name becomes this environment's stream,
        as Lambda's context names it."""
        self.invocations += 1
        context = dict(payload.get("context") or {})
        group = str(context.get("log_group_name") or self.env.get("AWS_LAMBDA_LOG_GROUP_NAME") or "")
        if group:
            context["log_stream_name"] = self.stream(group)
            payload = {**payload, "context": context}
            self._invocation = _Invocation(str(context.get("aws_request_id", "")), Path(payload["log"]), group,
                                           time.time(), float(context.get("deadline_epoch") or 0))
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(payload).encode() + b"\n")
            self.process.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The answer, None if there is none yet; EOFError when the worker ended without one."""
        if self._answers < 0:
            raise EOFError
        if b"\n" not in self._buffer:
            readable, _, _ = select.select([self._answers], [], [], timeout)
            if not readable:
                return None
            chunk = os.read(self._answers, 65536)
            if not chunk:
                self.publish("error")
                raise EOFError
            self._buffer += chunk
            if b"\n" not in self._buffer:
                return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer = json.loads(line)
        self.publish("error" if answer.get("error") else "success")
        return answer

    def exit_code(self) -> int | None:
        try:
            return self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def publish(self, status: str) -> None:
        """The current invocation's output into CloudWatch Logs, between START and END/REPORT; once.
        A role without logs:CreateLogStream/PutLogEvents loses it silently, as on AWS (the writer records
        the denial; the access log has it)."""
        invocation, self._invocation = self._invocation, None
        if invocation is None:
            return
        end = time.time()
        log_format = self.env.get("AWS_LAMBDA_LOG_FORMAT")
        timeout = None
        if status != "success" and invocation.deadline and end >= invocation.deadline:
            status, timeout = "timeout", invocation.deadline - invocation.start
        try:
            output = invocation.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            output = []
        start_ms, end_ms = int(invocation.start * 1000), int(end * 1000)
        events = [(start_ms, lambda_logging.platform_start(log_format, invocation.request_id,
                                                           self.env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                                                           invocation.start))]
        events += [(end_ms, line) for line in output]
        events += [(end_ms, line) for line in lambda_logging.platform_end(
            log_format, invocation.request_id, invocation.start, end,
            int(self.env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 128), status, timeout)]
        try:
            self._writer(invocation.group).write(events)
        except Exception as exc:  # the function's outcome never depends on its logs
            print(f"lambda logs for {invocation.group} not written: {exc}", file=sys.stderr)

    def _writer(self, group: str) -> Any:
        if group not in self._writers:
            import boto3  # the parent's side only: the worker program stays light

            from mlops_local.cloudwatch_logs import LogWriter

            env = self.env
            client = boto3.client("logs", endpoint_url=env.get("AWS_ENDPOINT_URL"),
                                  region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
                                  aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                                  aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
                                  aws_session_token=env.get("AWS_SESSION_TOKEN"))
            self._writers[group] = LogWriter(client, group, self.stream(group))
        return self._writers[group]

    def kill(self) -> None:
        self.publish("error")  # an invocation cut short (timed out, abandoned) still shows in its stream
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        if self._answers >= 0:
            os.close(self._answers)
            self._answers = -1


class LambdaWorkers:
    """Idle warm workers by (function name, hash of its environment).

    A worker serves one invocation at a time: concurrent invocations of a function get workers of
    their own (as Lambda scales out). One that timed out, was abandoned or crashed is killed and
    never reused, so the next invocation starts a fresh one. `prewarm` starts a function's first worker
    ahead of its first invocation. Idle workers end after `idle_seconds`,
    beyond `max_idle` (longest idle first), on `close` (the runtime's) or when their stdin closes
    (this interpreter died).
    """

    def __init__(self, idle_seconds: float = IDLE_SECONDS, max_idle: int = MAX_IDLE_WORKERS) -> None:
        lambda_logging.install()  # functions keep their LoggingConfig, which the workers' logging follows
        self.idle_seconds = idle_seconds
        self.max_idle = max_idle
        self._idle: dict[WorkerKey, list[Worker]] = {}
        self._busy: dict[Worker, WorkerKey] = {}  # handed out by acquire, not yet released
        self._lock = threading.Lock()
        self._closed = False  # a late prewarm (a pipeline thread) starts nothing after close

    def prewarm(self, key: WorkerKey, env: dict[str, str], cwd: Path, log: Path,
                preload: Sequence[str] = ()) -> Worker | None:
        """Start an idle worker for `key` ahead of its first invocation (the pipeline knows its functions),
        so the interpreter and the handler's imports (`lambda_worker`'s INIT) are ready when it comes. Only
        when the function has no worker at all, idle or busy, and the pool has room for one more idle one:
        never a second environment a single invocation would not have made. `preload`: services whose SDK
        models the worker loads at INIT (`_init`). None when nothing was started."""
        with self._lock:  # held while the child starts (a fork, milliseconds): acquire cannot start a twin
            if self._closed:
                return None
            alive = [w for w in self._idle.get(key, []) if w.alive()]
            if alive or any(k == key and w.alive() for w, k in self._busy.items()):
                return None
            if sum(len(ws) for ws in self._idle.values()) >= self.max_idle:
                return None
            worker = Worker(env, cwd, log, preload)
            self._idle.setdefault(key, []).append(worker)
        return worker

    def workers(self, function: str) -> list[Worker]:
        """The function's live workers, idle and busy (what a test or a status line looks at)."""
        with self._lock:
            found = [w for (name, _), ws in self._idle.items() if name == function for w in ws]
            found += [w for w, (name, _) in self._busy.items() if name == function]
        return [w for w in found if w.alive()]

    def acquire(self, key: WorkerKey, env: dict[str, str], cwd: Path, log: Path,
                reuse: bool = True) -> Worker:
        stale: list[Worker] = []
        found = None
        with self._lock:
            now = time.monotonic()
            for other, workers in list(self._idle.items()):
                keep = [w for w in workers if w.alive() and now - w.idle_since <= self.idle_seconds]
                stale += [w for w in workers if w not in keep]
                if keep:
                    self._idle[other] = keep
                else:
                    del self._idle[other]
            if reuse and self._idle.get(key):
                found = self._idle[key].pop()
            self._busy = {w: k for w, k in self._busy.items() if w.alive()}  # killed by their caller
        for worker in stale:
            worker.kill()
        if found is None:
            found = Worker(env, cwd, log)
        with self._lock:
            self._busy[found] = key
        return found

    def release(self, key: WorkerKey, worker: Worker) -> None:
        with self._lock:
            self._busy.pop(worker, None)
        if not worker.alive():
            worker.kill()
            return
        worker.idle_since = time.monotonic()
        with self._lock:
            self._idle.setdefault(key, []).append(worker)
            idle = sorted(((w.idle_since, k, w) for k, ws in self._idle.items() for w in ws), key=lambda i: i[0])
            evicted = [(k, w) for _, k, w in idle[:max(0, len(idle) - self.max_idle)]]
            for k, w in evicted:
                self._idle[k].remove(w)
                if not self._idle[k]:
                    del self._idle[k]
        for _, w in evicted:
            w.kill()

    def close(self) -> None:
        """End every worker: idle ones and those serving an invocation (the runtime is going away)."""
        with self._lock:
            self._closed = True
            idle = [w for workers in self._idle.values() for w in workers]
            busy = list(self._busy)
            self._idle.clear()
            self._busy.clear()
        for worker in idle:
            worker.kill()
        for worker in busy:  # its invoker sees the end (EOFError) and releases the rest, as for a crash
            if worker.alive():
                worker.process.kill()


class _LambdaContext:
    def __init__(self, deadline_epoch: float, **fields: Any) -> None:
        self.__dict__.update(fields)
        self._deadline = deadline_epoch

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def lambda_worker() -> None:
    """The worker side: serve invocations from stdin until it closes, answering on the fd in argv[1]."""
    answers = os.fdopen(int(sys.argv[1]), "wb", buffering=0)
    requests = os.fdopen(os.dup(0), "rb")
    nothing = os.open(os.devnull, os.O_RDONLY)  # a handler reading stdin must not read the requests
    os.dup2(nothing, 0)
    os.close(nothing)
    # The root logger as the Lambda Python runtime sets it up from the function's LoggingConfig: JSON at
    # ApplicationLogLevel, or Text at logging's default WARNING, so INFO lines are dropped as on AWS.
    lambda_logging.runtime_logging(os.environ.get("AWS_LAMBDA_LOG_FORMAT"), os.environ.get("AWS_LAMBDA_LOG_LEVEL"))
    handlers: dict[str, Callable[..., Any]] = {}
    _init(os.environ.get("_HANDLER"), handlers, [s for s in (sys.argv[2:3] or [""])[0].split(",") if s])
    try:
        for line in requests:
            answers.write(json.dumps(_serve(json.loads(line), handlers)).encode() + b"\n")
    except KeyboardInterrupt:  # Ctrl-C of the whole process group while idle
        pass


def _init(name: str | None, handlers: dict[str, Callable[..., Any]], preload: Sequence[str] = ()) -> None:
    """Lambda's INIT phase, before the first request arrives: the runtime's SDK and the function's handler
    module (_HANDLER) are imported. A prewarmed worker also loads the SDK models of `preload` (the services its
    role may call): a first boto3 client costs ~0.25 s (sagemaker's model), a later one of that service ~5 ms,
    and the handler's clients share the default session that keeps them. No request is made; credentials come
    from the environment only (with none there, nothing is loaded: botocore would look for instance metadata).
    Output goes to the worker's own log. A failed import is left for the invocation, which imports again and
    reports the error in its own log and answer (as Lambda reports an INIT error)."""
    try:
        import boto3  # the SDK the Python runtime ships; every job-worker handler uses it
    except ImportError:
        return
    if preload and os.environ.get("AWS_ACCESS_KEY_ID"):
        for service in preload:
            try:
                boto3.client(service)
            except Exception:  # an unknown name, a missing region: the handler meets it itself, if ever
                pass
    if not name:
        return
    module, _, function = name.rpartition(".")
    try:
        handlers[name] = getattr(importlib.import_module(module), function)
    except (Exception, SystemExit):
        pass


def _serve(payload: Mapping[str, Any], handlers: dict[str, Callable[..., Any]]) -> dict[str, Any]:
    """One invocation, its output in its own log: import the handler (once), call it, say how it ended."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log = os.open(payload["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    outcome: dict[str, Any] = {}
    lambda_logging.set_request_id(payload["context"].get("aws_request_id", ""))
    try:
        os.chdir(payload["cwd"])
        name = payload["handler"]
        if name not in handlers:  # a failed import is retried by the next invocation, as Lambda's init
            module, _, function = name.rpartition(".")
            handlers[name] = getattr(importlib.import_module(module), function)
        handlers[name](payload["event"], _LambdaContext(**payload["context"]))
    except BaseException as exc:  # the runtime reports any error of the handler, as Lambda does
        lambda_logging.log_unhandled(exc, os.environ.get("AWS_LAMBDA_LOG_FORMAT"), sys.stderr.write)
        outcome["error"] = f"the function raised {type(exc).__name__}: {exc}"
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
    return outcome
