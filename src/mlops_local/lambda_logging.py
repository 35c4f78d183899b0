"""Lambda's logging: each function's LoggingConfig (which moto drops) and the Python runtime's log setup.

AWS keeps a function's LoggingConfig and answers it in GetFunction: LogFormat Text by default, the
levels only with JSON (both INFO unless set), and "LogLevel is not supported when LogFormat is set to
Text" otherwise (Lambda Developer Guide, "Log-level filtering": "To use log-level filtering, your
function must be configured to use the JSON log format"; the default application log level is INFO).
`install()` makes moto's Lambda functions keep it, from CreateFunction and from CloudFormation.

Lambda hands the configuration to the runtime as AWS_LAMBDA_LOG_FORMAT and AWS_LAMBDA_LOG_LEVEL
(`runtime_environment`), and the Python runtime (awslambdaric bootstrap.py `_setup_logging`) puts one
handler on the root logger: with JSON it formats each record as a JSON object (`JsonFormatter`) and sets
the root logger's level from ApplicationLogLevel (TRACE as DEBUG); with Text it formats
"[LEVEL]\\t<time>\\t<request id>\\t<message>" and sets no level, so the root logger's default WARNING drops
INFO lines (Developer Guide, "Using Lambda advanced logging controls with Python"). `runtime_logging`
does the same in a warm worker. The worker program imports this module: standard library only at import.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, TextIO

JSON, TEXT = "JSON", "Text"
DEFAULT_LEVEL = "INFO"  # ApplicationLogLevel and SystemLogLevel when LogFormat is JSON and they are unset
TEXT_WITH_LEVEL = ('LogLevel is not supported when LogFormat is set to "Text". Remove LogLevel from your '
                   'request or change the LogFormat to "Json" and try again.')  # AWS's words (CloudFormation event)
TEXT_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
# LogRecord attributes the runtime's JSON leaves out; any other attribute (an `extra=` key) becomes a field.
RESERVED = frozenset({"name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module", "exc_info",
                      "exc_text", "stack_info", "lineno", "funcName", "created", "msecs", "relativeCreated",
                      "thread", "threadName", "processName", "process", "aws_request_id", "taskName", "message"})


# -- the function's configuration (the stand-in's Lambda API) ------------------------------------------
def logging_config(given: Mapping[str, Any] | None, function_name: str) -> dict[str, str]:
    """The LoggingConfig AWS stores and answers for a request's LoggingConfig (None: not given)."""
    from moto.awslambda.exceptions import InvalidParameterValueException

    given = dict(given or {})
    log_format = given.get("LogFormat") or TEXT
    if log_format != JSON and ("ApplicationLogLevel" in given or "SystemLogLevel" in given):
        raise InvalidParameterValueException(TEXT_WITH_LEVEL)
    config = {"LogFormat": log_format, "LogGroup": given.get("LogGroup") or f"/aws/lambda/{function_name}"}
    if log_format == JSON:
        config["ApplicationLogLevel"] = given.get("ApplicationLogLevel") or DEFAULT_LEVEL
        config["SystemLogLevel"] = given.get("SystemLogLevel") or DEFAULT_LEVEL
    return config


_install_lock = threading.Lock()
_installed: dict[str, Any] = {}  # moto's originals, once patched


def install() -> None:
    """Make moto's Lambda functions keep their LoggingConfig (once per process)."""
    from moto.awslambda.models import LambdaFunction

    with _install_lock:
        if _installed:
            return
        _installed.update(init=LambdaFunction.__init__, get_configuration=LambdaFunction.get_configuration,
                          update_configuration=LambdaFunction.update_configuration,
                          create_from_cfn=LambdaFunction.create_from_cloudformation_json,  # bound to the class
                          update_from_cfn=LambdaFunction.update_from_cloudformation_json)
        for name, replacement in (("__init__", _init), ("get_configuration", _get_configuration),
                                  ("update_configuration", _update_configuration),
                                  ("create_from_cloudformation_json", classmethod(_create_from_cfn)),
                                  ("update_from_cloudformation_json", classmethod(_update_from_cfn))):
            setattr(LambdaFunction, name, replacement)


def _init(self: Any, account_id: str, spec: dict[str, Any], *args: Any, **kwargs: Any) -> None:
    config = logging_config(spec.get("LoggingConfig"), spec.get("FunctionName", ""))  # refused before it exists
    _installed["init"](self, account_id, spec, *args, **kwargs)
    self.logging_config = config


def _get_configuration(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    config: dict[str, Any] = _installed["get_configuration"](self, *args, **kwargs)
    config["LoggingConfig"] = dict(getattr(self, "logging_config", None)
                                   or logging_config(None, self.function_name))
    return config


def _update_configuration(self: Any, config_updates: dict[str, Any]) -> dict[str, Any]:
    if "LoggingConfig" in config_updates:  # checked before anything changes
        self.logging_config = logging_config(config_updates["LoggingConfig"], self.function_name)
    updated: dict[str, Any] = _installed["update_configuration"](self, config_updates)
    return updated


def _checked_cfn(name: str, properties: Mapping[str, Any]) -> dict[str, str]:
    """The resource's LoggingConfig, checked as the Lambda API checks it (members, enums, Text with a level)."""
    from mlops_local import moto_access

    given = properties.get("LoggingConfig")
    if given is not None:
        moto_access.validate("lambda", "CreateFunction", {
            "FunctionName": name, "Role": properties.get("Role", ""), "Code": {}, "LoggingConfig": given})
    return logging_config(given, name)


def _create_from_cfn(cls: Any, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
                     region_name: str, **kwargs: Any) -> Any:
    config = _checked_cfn(resource_name, cloudformation_json["Properties"])  # moto's spec leaves it out
    function = _installed["create_from_cfn"](resource_name, cloudformation_json, account_id, region_name, **kwargs)
    function.logging_config = config
    return function


def _update_from_cfn(cls: Any, original_resource: Any, new_resource_name: str, cloudformation_json: dict[str, Any],
                     account_id: str, region_name: str) -> Any:
    # The template states the whole property: one left out is back to AWS's default.
    config = _checked_cfn(original_resource.function_name, cloudformation_json["Properties"])
    function = _installed["update_from_cfn"](original_resource, new_resource_name, cloudformation_json,
                                             account_id, region_name)
    function.logging_config = config
    return function


def runtime_environment(config: Mapping[str, Any] | None, function_name: str) -> dict[str, str]:
    """What Lambda tells the runtime about the function's logging (AWS_LAMBDA_LOG_FORMAT/_LEVEL, log group)."""
    config = config or logging_config(None, function_name)
    env = {"AWS_LAMBDA_LOG_FORMAT": config.get("LogFormat") or TEXT,
           "AWS_LAMBDA_LOG_GROUP_NAME": config.get("LogGroup") or f"/aws/lambda/{function_name}"}
    if env["AWS_LAMBDA_LOG_FORMAT"] == JSON:
        env["AWS_LAMBDA_LOG_LEVEL"] = config.get("ApplicationLogLevel") or DEFAULT_LEVEL
    return env


# -- the runtime's side (the warm worker) ---------------------------------------------------------------
class _Request:
    """The current invocation's request id, which every record carries (the runtime's LambdaLoggerFilter)."""

    id = ""


def set_request_id(request_id: str) -> None:
    _Request.id = request_id


class JsonFormatter(logging.Formatter):
    """The runtime's JSON record: timestamp, level, message, logger, requestId, the exception, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        level = logging.getLevelName(min(50, max(0, record.levelno)) // 10 * 10)
        created = datetime.fromtimestamp(record.created, tz=timezone.utc)
        entry: dict[str, Any] = {
            "timestamp": created.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": level, "message": record.getMessage(), "logger": record.name,
            "requestId": getattr(record, "aws_request_id", None)}
        if record.exc_info and record.exc_info[0] is not None:
            entry.update(stackTrace=traceback.format_tb(record.exc_info[2]), errorType=record.exc_info[0].__name__,
                         errorMessage=str(record.exc_info[1]),
                         location=f"{record.pathname}:{record.funcName}:{record.lineno}")
        entry.update((k, v) for k, v in record.__dict__.items() if k not in RESERVED and k not in entry)
        return json.dumps({k: v for k, v in entry.items() if v is not None}, ensure_ascii=False, default=str) + "\n"


class _Handler(logging.Handler):
    """Writes each formatted record as it is (the format ends the line), flushed, to the current stdout."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__()
        self._stream = stream
        self.addFilter(self._with_request_id)

    @staticmethod
    def _with_request_id(record: logging.LogRecord) -> bool:
        record.aws_request_id = _Request.id
        return True

    def emit(self, record: logging.LogRecord) -> None:
        stream = self._stream or sys.stdout
        try:
            stream.write(self.format(record))
            stream.flush()
        except Exception:  # as logging's own handlers do: a broken log never breaks the handler
            self.handleError(record)


def runtime_logging(log_format: str | None, log_level: str | None, stream: TextIO | None = None) -> logging.Handler:
    """Set up the root logger as the Lambda Python runtime does; returns the handler it added."""
    handler = _Handler(stream)
    if log_format == JSON:
        handler.setFormatter(JsonFormatter())
    else:
        text = logging.Formatter(TEXT_FORMAT, "%Y-%m-%dT%H:%M:%S")
        text.converter = time.gmtime
        handler.setFormatter(text)
    root = logging.getLogger()
    level = {"TRACE": "DEBUG"}.get((log_level or "").upper(), (log_level or "").upper())
    if level and level in logging.getLevelNamesMapping():  # FATAL and WARN are names logging knows
        root.setLevel(level)
    root.addHandler(handler)
    return handler


def log_unhandled(exc: BaseException, log_format: str | None, write: Callable[[str], Any]) -> None:
    """An error the handler raised, as the runtime logs it: one JSON object with JSON, a traceback with Text."""
    if log_format != JSON:
        write("".join(traceback.format_exception(exc)))
        return
    write(json.dumps({"timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), "level": "ERROR",
                      "errorMessage": str(exc), "errorType": type(exc).__name__, "requestId": _Request.id,
                      "stackTrace": traceback.format_tb(exc.__traceback__)}) + "\n")


# -- the platform's side (what Lambda itself writes to the log stream) ------------------------------------
def log_stream_name(group: str, function_name: str, version: str, environment_id: str, day: datetime) -> str:
    """An execution environment's stream: `YYYY/MM/DD/[<version>]<environment id>` in the default
    /aws/lambda/<function> group, `YYYY/MM/DD/<function>[<version>]<environment id>` in a custom one (Lambda
    Developer Guide, "Configuring CloudWatch log groups"; Operator Guide, "How CloudWatch structures logs")."""
    prefix = "" if group == f"/aws/lambda/{function_name}" else function_name
    return f"{day:%Y/%m/%d}/{prefix}[{version}]{environment_id}"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def platform_start(log_format: str | None, request_id: str, version: str, epoch: float) -> str:
    """The START line Lambda writes before an invocation's output (JSON: a platform.start record)."""
    if log_format == JSON:
        return json.dumps({"time": _iso(epoch), "type": "platform.start",
                           "record": {"requestId": request_id, "version": version}})
    return f"START RequestId: {request_id} Version: {version}"


def platform_end(log_format: str | None, request_id: str, start: float, end: float, memory_mb: int,
                 status: str, timeout_seconds: float | None = None) -> list[str]:
    """What Lambda writes after an invocation: "Task timed out" (a timeout), END and REPORT (Text), or the
    platform.report record (JSON; status success | error | timeout). Max Memory Used is not measured here:
    the limit is reported."""
    duration = max(0.0, (end - start) * 1000)
    billed = int(-(-duration // 1))
    if log_format == JSON:
        return [json.dumps({"time": _iso(end), "type": "platform.report", "record": {
            "requestId": request_id, "status": status, "metrics": {
                "durationMs": round(duration, 2), "billedDurationMs": billed, "memorySizeMB": memory_mb,
                "maxMemoryUsedMB": memory_mb}}})]
    lines = []
    if status == "timeout" and timeout_seconds is not None:
        lines.append(f"{_iso(end)} {request_id} Task timed out after {timeout_seconds:.2f} seconds")
    lines += [f"END RequestId: {request_id}",
              f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\tBilled Duration: {billed} ms\t"
              f"Memory Size: {memory_mb} MB\tMax Memory Used: {memory_mb} MB"]
    return lines
