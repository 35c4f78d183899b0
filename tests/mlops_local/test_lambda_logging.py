"""Lambda logging on the stand-in: functions keep their LoggingConfig as AWS does, and a worker logs as the
Python runtime does with it (JSON at ApplicationLogLevel; Text at the root logger's WARNING)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from mlops_local.lambda_logging import TEXT_WITH_LEVEL, runtime_environment

from tests.mlops_local.engine_stand import actions_of, create_pipeline, data_source, lambda_action, wait_done

HERE = "tests.mlops_local.test_lambda_logging"
CODE = {"ZipFile": b"PK\x05\x06" + b"\x00" * 18}  # an empty zip: the worker imports the handler by name


# -- the handler (runs in the engine's worker) -------------------------------------------------------------
def logging_handler(event, context):
    import boto3

    job_id = event["CodePipeline.job"]["id"]
    log = logging.getLogger(__name__)
    log.info("job %s: an info line", job_id, extra={"jobId": job_id, "outcome": "succeeded"})
    log.warning("job %s: a warning line", job_id)
    boto3.client("codepipeline").put_job_success_result(jobId=job_id, executionDetails={"summary": "logged"})


def create_function(stand, name: str, logging_config: dict | None, handler: str = f"{HERE}.logging_handler"):
    extra = {"LoggingConfig": logging_config} if logging_config is not None else {}
    return stand.aws.client("lambda").create_function(
        FunctionName=name, Runtime="python3.11", Role=stand.role, Handler=handler, Timeout=60, Code=CODE, **extra)


# -- the function's configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize("given, stored", [
    pytest.param(None, {"LogFormat": "Text", "LogGroup": "/aws/lambda/{name}"}, id="unset-is-text"),
    pytest.param({"LogFormat": "JSON"}, {"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO",
                                         "LogGroup": "/aws/lambda/{name}"}, id="json-levels-default-to-info"),
    pytest.param({"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "WARN",
                  "LogGroup": "/aws/lambda/custom"},
                 {"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "WARN",
                  "LogGroup": "/aws/lambda/custom"}, id="json-as-given"),
])
def test_get_function_answers_the_logging_config_as_aws_stores_it(stand, request, given, stored):
    name = f"logcfg-{request.node.callspec.id}"
    created = create_function(stand, name, given)
    expected = {k: v.format(name=name) for k, v in stored.items()}
    assert created["LoggingConfig"] == expected
    assert stand.aws.client("lambda").get_function(FunctionName=name)["Configuration"]["LoggingConfig"] == expected


@pytest.mark.parametrize("given, code, message", [
    pytest.param({"LogFormat": "Text", "ApplicationLogLevel": "INFO"}, "InvalidParameterValueException",
                 TEXT_WITH_LEVEL, id="text-with-a-level"),
    pytest.param({"SystemLogLevel": "WARN"}, "InvalidParameterValueException", TEXT_WITH_LEVEL,
                 id="default-text-with-a-level"),
    pytest.param({"LogFormat": "JSON", "ApplicationLogLevel": "VERBOSE"}, "ValidationException",
                 "Member must satisfy enum value set", id="a-level-lambda-does-not-know"),
])
def test_a_logging_config_aws_refuses_is_refused(stand, given, code, message):
    with pytest.raises(ClientError) as caught:
        create_function(stand, "logcfg-refused", given)
    assert caught.value.response["Error"]["Code"] == code
    assert message in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError):  # nothing was created
        stand.aws.client("lambda").get_function(FunctionName="logcfg-refused")


def test_update_function_configuration_changes_it_and_refuses_a_level_on_text(stand):
    lam = stand.aws.client("lambda")
    create_function(stand, "logcfg-updated", None)
    lam.update_function_configuration(FunctionName="logcfg-updated",
                                      LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "ERROR"})
    expected = {"LogFormat": "JSON", "ApplicationLogLevel": "ERROR", "SystemLogLevel": "INFO",
                "LogGroup": "/aws/lambda/logcfg-updated"}
    assert lam.get_function(FunctionName="logcfg-updated")["Configuration"]["LoggingConfig"] == expected
    with pytest.raises(ClientError) as caught:
        lam.update_function_configuration(FunctionName="logcfg-updated",
                                          LoggingConfig={"LogFormat": "Text", "ApplicationLogLevel": "INFO"})
    assert caught.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert lam.get_function(FunctionName="logcfg-updated")["Configuration"]["LoggingConfig"] == expected


def stack_template(logging_config: dict) -> str:
    return json.dumps({
        "Parameters": {"LogLevel": {"Type": "String", "Default": "INFO"}, "Role": {"Type": "String"}},
        "Resources": {"Fn": {"Type": "AWS::Lambda::Function", "Properties": {
            "FunctionName": "logcfg-stack", "Runtime": "python3.11", "Handler": "index.handler",
            "Role": {"Ref": "Role"}, "Code": {"ZipFile": "def handler(event, context):\n    return None\n"},
            "LoggingConfig": logging_config}}}})


def test_a_stacks_function_keeps_its_logging_config(stand):
    cfn = stand.aws.client("cloudformation")
    config = {"LogFormat": "JSON", "ApplicationLogLevel": {"Ref": "LogLevel"}, "SystemLogLevel": "INFO"}
    cfn.create_stack(StackName="logcfg-json", TemplateBody=stack_template(config),
                     Parameters=[{"ParameterKey": "LogLevel", "ParameterValue": "WARN"},
                                 {"ParameterKey": "Role", "ParameterValue": stand.role}])
    assert cfn.describe_stacks(StackName="logcfg-json")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    stored = stand.aws.client("lambda").get_function(FunctionName="logcfg-stack")["Configuration"]["LoggingConfig"]
    assert stored == {"LogFormat": "JSON", "ApplicationLogLevel": "WARN", "SystemLogLevel": "INFO",
                      "LogGroup": "/aws/lambda/logcfg-stack"}
    cfn.delete_stack(StackName="logcfg-json")


def test_a_stack_with_a_level_on_text_logs_rolls_back(stand):
    cfn = stand.aws.client("cloudformation")
    cfn.create_stack(StackName="logcfg-text", TemplateBody=stack_template(
        {"LogFormat": "Text", "ApplicationLogLevel": "INFO"}), Parameters=[
        {"ParameterKey": "Role", "ParameterValue": stand.role}])
    assert cfn.describe_stacks(StackName="logcfg-text")["Stacks"][0]["StackStatus"] == "ROLLBACK_COMPLETE"
    events = cfn.describe_stack_events(StackName="logcfg-text")["StackEvents"]
    failed = [e for e in events if e["LogicalResourceId"] == "Fn" and e["ResourceStatus"] == "CREATE_FAILED"]
    assert failed and "LogLevel is not supported" in failed[0]["ResourceStatusReason"]
    cfn.delete_stack(StackName="logcfg-text")


@pytest.mark.parametrize("config, env", [
    pytest.param(None, {"AWS_LAMBDA_LOG_FORMAT": "Text", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/f"}, id="text"),
    pytest.param({"LogFormat": "JSON", "ApplicationLogLevel": "TRACE", "SystemLogLevel": "INFO", "LogGroup": "/g"},
                 {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "TRACE", "AWS_LAMBDA_LOG_GROUP_NAME": "/g"},
                 id="json"),
])
def test_the_runtime_is_told_the_format_and_level(config, env):
    assert runtime_environment(config, "f") == env


# -- the worker's log ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config, levels", [
    pytest.param({"LogFormat": "JSON", "ApplicationLogLevel": "INFO"}, ["INFO", "WARNING"], id="json-info"),
    pytest.param({"LogFormat": "JSON", "ApplicationLogLevel": "WARN"}, ["WARNING"], id="json-warn"),
    pytest.param(None, ["WARNING"], id="text-drops-info-as-aws-does"),
])
def test_a_worker_logs_as_the_runtime_does_with_the_functions_config(stand, config, levels):
    suffix = "-".join(v.lower() for v in (config or {"LogFormat": "text"}).values())
    name = f"logged-{suffix}"
    create_function(stand, name, config)
    create_pipeline(stand, name, [data_source(), {"name": "Work", "actions": [lambda_action("Log", name)]}])
    execution_id = stand.aws.client("codepipeline").start_pipeline_execution(name=name)["pipelineExecutionId"]
    assert wait_done(stand, name, execution_id)["status"] == "Succeeded"
    url = actions_of(stand, name, execution_id)["Log"]["output"]["executionResult"]["externalExecutionUrl"]
    lines = [line for line in Path(url[len("file://"):]).read_text().splitlines() if " line" in line]
    if config is None:  # the runtime's Text line: [LEVEL]\t<time>Z\t<request id>\t<message>
        assert [line.split("\t")[0] for line in lines] == [f"[{level}]" for level in levels]
        assert lines[0].split("\t")[3].endswith(": a warning line")
        return
    records = [json.loads(line) for line in lines]
    assert [r["level"] for r in records] == levels
    job_id = records[-1]["requestId"]  # the stand-in's request id is the job's id
    assert (records[-1]["logger"], records[-1]["message"]) == (HERE, f"job {job_id}: a warning line")
    if "INFO" in levels:
        assert (records[0]["message"], records[0]["jobId"], records[0]["outcome"]) == (
            f"job {job_id}: an info line", job_id, "succeeded")


# -- CloudWatch Logs: what Lambda writes to the function's log group --------------------------------------------
@pytest.mark.parametrize("config, group, stream", [
    pytest.param(None, "/aws/lambda/{name}", r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", id="text-default-group"),
    pytest.param({"LogFormat": "JSON", "LogGroup": "custom-{name}"}, "custom-{name}",
                 r"\d{4}/\d{2}/\d{2}/{name}\[\$LATEST\][0-9a-f]{32}", id="json-custom-group"),
])
def test_an_invocation_is_written_to_the_functions_log_group(stand, config, group, stream):
    import re

    from mlops_local.cloudwatch_logs import stream_messages

    name = f"cw-{'text' if config is None else 'json'}"
    group = group.format(name=name)
    if config is not None:
        config = {**config, "LogGroup": config["LogGroup"].format(name=name)}
    create_function(stand, name, config)
    create_pipeline(stand, name, [data_source(), {"name": "Work", "actions": [lambda_action("Log", name)]}])
    execution_id = stand.aws.client("codepipeline").start_pipeline_execution(name=name)["pipelineExecutionId"]
    assert wait_done(stand, name, execution_id)["status"] == "Succeeded"
    logs = stand.aws.client("logs")
    streams = [s["logStreamName"] for s in logs.describe_log_streams(logGroupName=group)["logStreams"]]
    assert len(streams) == 1 and re.fullmatch(stream.replace("{name}", name), streams[0]), streams
    messages = stream_messages(logs, group, streams[0])
    if config is None:  # START, the handler's lines, END, REPORT (Lambda's Text system lines)
        request_id = messages[0].split()[2]
        assert messages[0] == f"START RequestId: {request_id} Version: $LATEST"
        assert any(m.startswith("[WARNING]") and m.endswith(": a warning line") for m in messages[1:-2])
        assert messages[-2] == f"END RequestId: {request_id}"
        assert re.fullmatch(rf"REPORT RequestId: {request_id}\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\t"
                            r"Memory Size: 128 MB\tMax Memory Used: 128 MB", messages[-1])
    else:  # JSON: platform.start, the handler's JSON records, platform.report
        records = [json.loads(m) for m in messages]
        assert [r.get("type") for r in (records[0], records[-1])] == ["platform.start", "platform.report"]
        request_id = records[0]["record"]["requestId"]
        assert records[-1]["record"]["requestId"] == request_id and records[-1]["record"]["status"] == "success"
        assert [r["level"] for r in records[1:-1] if " line" in r.get("message", "")] == ["INFO", "WARNING"]
    filtered = logs.filter_log_events(logGroupName=group, filterPattern="warning")["events"]
    assert len(filtered) == 1
