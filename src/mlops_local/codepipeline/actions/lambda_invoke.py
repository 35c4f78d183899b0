"""Invoke/Lambda: the function's handler runs in a warm worker, once per job, until it reports.

The handler gets the function's environment, the stand-in's endpoint and its execution role's
temporary credentials (as the Lambda runtime gives them), in a child interpreter kept per (function,
environment) by `runtime.lambda_workers`; the job ends when the handler reports
PutJobSuccessResult/PutJobFailureResult, and a continuation token invokes it again.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from botocore.exceptions import ClientError

from mlops_local import moto_access, processes
from mlops_local.codepipeline.actions.context import ActionAbandoned, ActionContext, ActionFailed, ActionResult
from mlops_local.lambda_logging import runtime_environment
from mlops_local.lambda_workers import WorkerKey
from mlops_local.runtime import RoleNotAssumable, Runtime

logger = logging.getLogger(__name__)

MIN_FUNCTION_SECONDS = 30.0  # a cold worker starts slower than a warm Lambda; never below this


def invoke_lambda(ctx: ActionContext) -> ActionResult:
    """Run the function once per job until it reports success without a continuation token.

    Each invocation goes to a warm worker (`runtime.lambda_workers`): a child interpreter of this one that
    serves only this function with this environment, as Lambda reuses a warm execution environment.
    The function's own environment (and nothing of another function's), killed at the function's
    timeout or on abandon, so parallel actions run truly in parallel and a hung or crashing handler
    cannot take the engine with it. A worker's start (interpreter, boto3, the handler's module: ~0.4 s) is
    paid before its first invocation when the scheduler prewarmed it (`prewarm`), else by that invocation;
    later ones (continuations, the next execution) reuse the worker and its imports.
    """
    name = ctx.require("FunctionName")
    ctx.authorize("lambda", "Invoke", {"FunctionName": name})  # CodePipeline invokes as the pipeline's role
    try:
        function = ctx.internal("lambda").get_function(FunctionName=name)  # the stand-in reads the code
    except ClientError as exc:
        raise ActionFailed(f"Lambda function {name}: {exc.response['Error'].get('Message', exc)}",
                           "ConfigurationError") from None
    config = function["Configuration"]
    handler, env = function_environment(ctx.runtime, function)
    function_seconds = max(float(config.get("Timeout", 3)), MIN_FUNCTION_SECONDS)

    token: str | None = None
    since = ctx.runtime.changes.version
    first, longest = ctx.poll_interval
    delay = first
    invocation = 0
    while True:
        ctx.check_time()
        invocation += 1
        job = ctx.new_job(token)
        log = ctx.workdir / f"invocation-{invocation}.log"
        try:
            error = _run_child(ctx, handler, job.event(), config, env, log, function_seconds)
        finally:
            ctx.end_job(job)
        result = job.result
        if result is None:
            reason = error or "the function ended without PutJobSuccessResult/PutJobFailureResult"
            raise ActionFailed(f"Lambda {name}: {reason}")
        if result["type"] == "failure":
            details = result["failureDetails"]
            ctx.progress(external_id=details.get("externalExecutionId"), external_url=log.as_uri())
            raise ActionFailed(details.get("message") or "the function reported a failure",
                               details.get("type", "JobFailed"))
        details = result.get("executionDetails") or {}
        ctx.progress(summary=details.get("summary"), percent=details.get("percentComplete"),
                     external_id=details.get("externalExecutionId"), external_url=log.as_uri())
        if not result.get("continuationToken"):
            return ActionResult(summary=details.get("summary") or f"Lambda {name} succeeded",
                                variables=dict(result.get("outputVariables") or {}),
                                external_id=details.get("externalExecutionId"), external_url=log.as_uri())
        token = result["continuationToken"]
        # Re-invoke as soon as a job or endpoint changed state; else after a short backoff.
        waited_until = time.monotonic() + delay
        changed = False
        while not changed and time.monotonic() < waited_until:
            ctx.check_time()
            version = ctx.runtime.changes.wait(since, timeout=min(0.5, max(0.0, waited_until - time.monotonic())))
            changed = version > since
            since = version
        delay = first if changed else min(delay * 2, longest)


def function_environment(runtime: Runtime, function: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The handler and the environment its worker runs with (GetFunction's answer in): the function's own
    variables, the stand-in's endpoint and the execution role's credentials. The environment is half the
    worker's key, so the prewarm and the invocation must build it the same way: here."""
    config = function["Configuration"]
    handler = _handler(runtime, function)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
    root = runtime.source_root
    path = [str(root / "src"), str(root), os.environ.get("PYTHONPATH")]  # the zip's lambdas/ and tests' handlers
    env.update({"PYTHONPATH": os.pathsep.join(filter(None, path)),
                "PYTHONUNBUFFERED": "1", "LAMBDA_TASK_ROOT": str(root / "src"), "_HANDLER": handler,
                "AWS_LAMBDA_FUNCTION_NAME": config["FunctionName"],
                "AWS_LAMBDA_FUNCTION_VERSION": config.get("Version", "$LATEST"),
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.get("MemorySize", 128))})
    # The log group, format and application level, as Lambda hands them to the runtime (lambda_logging).
    env.update(runtime_environment(config.get("LoggingConfig"), config["FunctionName"]))
    env.update((config.get("Environment") or {}).get("Variables") or {})
    env.update(runtime.aws.environment())  # boto3 in the handler reaches the stand-in
    env.update(_role_credentials(runtime, config))  # ... as the function's execution role, not as the user
    return handler, env


def worker_key(config: Mapping[str, Any], env: Mapping[str, str]) -> WorkerKey:
    return config["FunctionName"], hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()


def worker_log(runtime: Runtime, config: Mapping[str, Any]) -> Path:
    """What a function's workers print between invocations (INIT included)."""
    return Path(runtime.workdir) / "lambda-workers" / f"{config['FunctionName']}.log"


def prewarm(runtime: Runtime, actions: Iterable[Mapping[str, Any]]) -> int:
    """Start a worker for each function these Invoke/Lambda actions name that has none yet (LambdaWorkers.prewarm),
    off the actions' critical path: the first invocation then finds the interpreter started and the handler
    imported. Reads the function as the stand-in (moto's record, no request in the access log) and assumes its
    role as the invocation would; a name with variables, a missing function or a role Lambda cannot assume is
    skipped (its action reports it). Returns how many workers it started."""
    started = 0
    names = {str((a.get("configuration") or {}).get("FunctionName") or "") for a in actions
             if (a["actionTypeId"]["category"], a["actionTypeId"]["provider"]) == ("Invoke", "Lambda")}
    for name in sorted(n for n in names if n and "#{" not in n):
        try:
            function = _stored_function(runtime, name)
            handler, env = function_environment(runtime, function)
        except Exception as exc:  # the action itself fails with the reason, in AWS's words
            logger.debug("no prewarm for Lambda %s: %s", name, exc)
            continue
        config = function["Configuration"]
        cwd = Path(env["LAMBDA_TASK_ROOT"])  # Lambda's cwd; each invocation moves to its action's folder
        if runtime.lambda_workers.prewarm(worker_key(config, env), env, cwd, worker_log(runtime, config),
                                          _role_services(runtime, config.get("Role") or "")):
            started += 1
    return started


def _role_services(runtime: Runtime, role: str) -> list[str]:
    """The SDK services the execution role's policies allow actions of (`s3:GetObject` -> s3): the clients the
    handler can usefully make, whose models a prewarmed worker loads before its first invocation."""
    from mlops_local.iam.decisions import Judge
    from mlops_local.iam.policy import Effect

    policies = Judge(runtime.aws.account_id, runtime.aws.gateway.region).identity_policies(role)
    if isinstance(policies, str):
        return []
    prefixes = {action.split(":", 1)[0].lower() for policy in policies for statement in policy.statements
                if statement.effect is Effect.ALLOW and not statement.not_action for action in statement.actions}
    return sorted(prefixes & _sdk_services())


@functools.cache
def _sdk_services() -> frozenset[str]:
    from botocore.session import get_session

    return frozenset(get_session().get_available_services())


def _stored_function(runtime: Runtime, name: str) -> dict[str, Any]:
    """GetFunction's answer from moto's record (Version $LATEST, as GetFunction without a qualifier answers)."""
    record = moto_access.backend("lambda", runtime.aws.account_id, runtime.aws.gateway.region).get_function(name)
    function: dict[str, Any] = json.loads(json.dumps(record.get_code(), default=str))
    function["Configuration"]["Version"] = "$LATEST"
    return function


def _role_credentials(runtime: Runtime, config: Mapping[str, Any]) -> dict[str, str]:
    """AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN of the execution role's session.

    Lambda assumes the function's Role as lambda.amazonaws.com, with the function name as the session
    name (the caller is arn:aws:sts::<account>:assumed-role/<role>/<function>; Lambda Developer Guide,
    "Defining Lambda function permissions with an execution role"). Sessions are cached by the runtime,
    so the worker's environment, and with it the warm worker, stays the same across invocations.
    """
    role = config.get("Role") or ""
    try:
        session = runtime.role_sessions.credentials(role, config["FunctionName"], "lambda.amazonaws.com")
    except RoleNotAssumable as exc:
        # AWS checks this when the function is created ("The role defined for the function cannot be
        # assumed by Lambda.", InvalidParameterValueException) and again when it runs.
        raise ActionFailed(f"Lambda {config['FunctionName']}: the role defined for the function cannot be "
                           f"assumed by Lambda: {exc}", "ConfigurationError") from None
    return session.environment()


def _handler(runtime: Runtime, function: Mapping[str, Any]) -> str:
    config = function["Configuration"]
    uri = (function.get("Code") or {}).get("ImageUri", "")
    # moto's CloudFormation creates image functions with PackageType Zip; the image URI tells.
    if config.get("PackageType") != "Image" and not uri:
        if not config.get("Handler"):
            raise ActionFailed(f"Lambda {config['FunctionName']} has no Handler", "ConfigurationError")
        return config["Handler"]
    try:
        image = runtime.images.resolve(uri)
    except KeyError as exc:
        raise ActionFailed(f"Lambda {config['FunctionName']}: {exc.args[0]}", "ConfigurationError") from None
    command = ((config.get("ImageConfigResponse") or {}).get("ImageConfig") or {}).get("Command") or []
    handler = command[0] if command else image.lambda_handler
    if not handler:
        raise ActionFailed(f"Lambda {config['FunctionName']}: image {uri} ({image.dockerfile}) has no handler CMD",
                           "ConfigurationError")
    return handler


# How Lambda's runtime (Go's os/exec) words a signal in "Runtime exited with error: signal: killed".
SIGNAL_WORDS = {"SIGKILL": "killed", "SIGTERM": "terminated", "SIGSEGV": "segmentation fault", "SIGABRT": "aborted"}


def _runtime_exit(code: int | None) -> str:
    """Lambda's words for a runtime that died mid-invocation (errorType Runtime.ExitError)."""
    killed = processes.signal_name(code) if code is not None and code < 0 else None
    if killed:
        return f"Runtime exited with error: signal: {SIGNAL_WORDS.get(killed, killed)}"
    return f"Runtime exited with error: exit status {code}"


def _run_child(ctx: ActionContext, handler: str, event: dict[str, Any], config: Mapping[str, Any],
               env: dict[str, str], log: Path, seconds: float) -> str | None:
    """Run the handler in a warm worker; return why it failed, or None when it returned."""
    deadline = min(time.monotonic() + seconds, ctx.deadline)
    payload = {"handler": handler, "event": event, "log": str(log), "cwd": str(ctx.workdir),
               "context": {"function_name": config["FunctionName"],
                           "function_version": config.get("Version", "$LATEST"),
                           "invoked_function_arn": config.get("FunctionArn", ""),
                           "memory_limit_in_mb": int(config.get("MemorySize", 128)),
                           "aws_request_id": event["CodePipeline.job"]["id"],
                           "log_group_name": env["AWS_LAMBDA_LOG_GROUP_NAME"],
                           "log_stream_name": str(log), "deadline_epoch": time.time() + (deadline - time.monotonic())}}
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")  # this invocation's own log; the worker appends to it while it serves the invocation
    key = worker_key(config, env)
    workers = ctx.runtime.lambda_workers
    worker = workers.acquire(key, env, ctx.workdir, worker_log(ctx.runtime, config))
    if not worker.send(payload) and worker.invocations > 1:
        worker.kill()  # it died while idle: a fresh one takes the invocation, as Lambda would
        worker = workers.acquire(key, env, ctx.workdir, worker_log(ctx.runtime, config), reuse=False)
        worker.send(payload)
    answered = False
    try:
        while True:
            if ctx.abandoned():
                raise ActionAbandoned()
            if time.monotonic() > deadline:
                return f"Task timed out after {seconds:.2f} seconds; see {worker.log_location()}"
            try:
                outcome = worker.receive(timeout=0.05)
            except EOFError:
                return f"{_runtime_exit(worker.exit_code())}; see {worker.log_location()}"
            if outcome is not None:
                answered = True
                error = outcome.get("error")
                return f"{error}; see {worker.log_location()}" if error else None
    finally:
        if answered:
            workers.release(key, worker)
        else:  # timed out, abandoned or crashed: this environment is not reused
            worker.kill()
