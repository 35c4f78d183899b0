"""The job workers' logs as Lambda delivers them: JSON at the function's ApplicationLogLevel, or dropped.

The root logger is set up as the Lambda Python runtime sets it up from the function's LoggingConfig
(mlops_local.lambda_logging.runtime_logging, the stand-in's copy of awslambdaric's `_setup_logging`).
"""
from __future__ import annotations

import ast
import io
import json
import logging

import pytest

from lambdas.errors import ConfigurationError
from lambdas.job import Done, InProgress, run_job
from mlops_local.lambda_logging import runtime_logging, set_request_id

from tests.conftest import ROOT, load_event
from tests.lambdas.pipeline_stubs import JOB_ID, expect_failure, expect_success, now_minus

LAMBDAS = ROOT / "src" / "lambdas"


@pytest.fixture
def lambda_log():
    """Configure logging as the runtime does in a fresh interpreter; yield a function doing it, give the output."""
    root = logging.getLogger()
    saved_level, added = root.level, []
    root.setLevel(logging.WARNING)  # a fresh interpreter's root logger; pytest's capture may have lowered it
    stream = io.StringIO()

    def configure(log_format: str, level: str | None) -> io.StringIO:
        added.append(runtime_logging(log_format, level, stream))
        set_request_id("request-1")
        return stream

    yield configure
    for handler in added:
        root.removeHandler(handler)
    root.setLevel(saved_level)
    set_request_id("")


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_boundary_info_line_is_a_json_record_with_the_job_and_its_outcome(codepipeline, lambda_log):
    client, stub = codepipeline
    stream = lambda_log("JSON", "INFO")
    expect_success(stub, outputVariables={"JobName": "j1"}, executionDetails={"summary": "done"})
    run_job(load_event(), lambda job: Done("done", {"JobName": "j1"}), client)
    started, succeeded = records(stream)
    assert started["message"] == f"job {JOB_ID}: starting" and started["continuation"] is False
    assert {k: succeeded[k] for k in ("level", "logger", "message", "requestId", "jobId", "outcome", "variables")} \
        == {"level": "INFO", "logger": "lambdas.job", "message": f"job {JOB_ID}: succeeded: done",
            "requestId": "request-1", "jobId": JOB_ID, "outcome": "succeeded", "variables": ["JobName"]}
    assert succeeded["timestamp"].endswith("Z") and "T" in succeeded["timestamp"]


def test_a_continuation_says_so_and_reports_its_progress(codepipeline, lambda_log):
    client, stub = codepipeline
    stream = lambda_log("JSON", "INFO")
    expect_success(stub, continuationToken='{"n":2}', executionDetails={"summary": "running", "percentComplete": 50})
    run_job(load_event(continuation_token={"n": 1}), lambda job: InProgress("running", {"n": 2}, 50), client)
    continuing, running = records(stream)
    assert (continuing["message"], continuing["continuation"]) == (f"job {JOB_ID}: continuing", True)
    assert (running["outcome"], running["percent"], running["level"]) == ("in progress", 50, "INFO")


@pytest.mark.parametrize("log_format, level, kept", [
    pytest.param("JSON", "INFO", ["INFO", "INFO", "ERROR"], id="json-info-keeps-the-boundary-lines"),
    pytest.param("JSON", "TRACE", ["INFO", "INFO", "ERROR"], id="json-trace-is-debug-in-python"),
    pytest.param("JSON", "WARN", ["ERROR"], id="json-warn-drops-info"),
    pytest.param("JSON", "FATAL", [], id="json-fatal-drops-errors-too"),
    pytest.param("Text", None, ["ERROR"], id="text-keeps-the-root-loggers-warning"),
])
def test_the_application_log_level_decides_which_lines_reach_the_log(codepipeline, lambda_log, log_format,
                                                                     level, kept):
    client, stub = codepipeline
    stream = lambda_log(log_format, level)
    expect_failure(stub, "ConfigurationError", "bad")

    def work(job):
        logging.getLogger("lambdas.glue").info("job %s: a worker's own line", job.job_id)
        raise ConfigurationError("bad")

    run_job(load_event(), work, client)
    lines = stream.getvalue().splitlines()
    if log_format == "JSON":
        # (at TRACE, botocore's DEBUG lines come too, as on AWS)
        assert [r["level"] for r in records(stream) if r["logger"].startswith("lambdas.")] == kept
    else:  # the runtime's Text line: [LEVEL]\t<time>Z\t<request id>\t<message>
        assert [line.split("\t")[0] for line in lines] == [f"[{k}]" for k in kept]
        assert lines[0].split("\t")[2:] == ["request-1", f"job {JOB_ID}: failed (ConfigurationError): bad"]


def test_a_failure_carries_its_type_as_a_field(codepipeline, lambda_log):
    client, stub = codepipeline
    stream = lambda_log("JSON", "INFO")
    expect_failure(stub, "ConfigurationError", "bad")
    run_job(load_event(), lambda job: (_ for _ in ()).throw(ConfigurationError("bad")), client)
    failed = records(stream)[-1]
    assert (failed["level"], failed["outcome"], failed["failureType"]) == ("ERROR", "failed", "ConfigurationError")


# -- the code ---------------------------------------------------------------------------------------------
def modules():
    return sorted(p for p in LAMBDAS.glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.name)
def test_workers_log_through_their_module_logger_and_never_print(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    assert not [c for c in calls if isinstance(c.func, ast.Name) and c.func.id == "print"], "print() in a worker"
    loggers = [c for c in calls if isinstance(c.func, ast.Attribute) and c.func.attr == "getLogger"]
    assert all(len(c.args) == 1 and isinstance(c.args[0], ast.Name) and c.args[0].id == "__name__"
               for c in loggers), "a logger not named after its module"
    configures = [c for c in calls if isinstance(c.func, ast.Attribute)
                  and c.func.attr in ("basicConfig", "setLevel", "addHandler")]
    assert not configures, "a worker configures logging; the function's LoggingConfig does"


def test_a_monitor_line_names_the_glue_run_and_its_state_as_fields(codepipeline, stubbed_glue, lambda_log):
    from lambdas import glue as etl

    client, stub = codepipeline
    glue, glue_stub = stubbed_glue
    stream = lambda_log("JSON", "INFO")
    run = {"Id": "jr_1", "JobName": "mlops-etl", "JobRunState": "RUNNING", "StartedOn": now_minus(60)}
    glue_stub.add_response("get_job_run", {"JobRun": run}, {"JobName": "mlops-etl", "RunId": "jr_1"})
    expect_success(stub, continuationToken='{"glue_job_name":"mlops-etl","job_run_id":"jr_1"}',
                   executionDetails={"summary": "Glue job mlops-etl run jr_1 is RUNNING"})
    params = {"glue_job_name": "mlops-etl", "job_run_id": "jr_1", "output_uri": "s3://mlops-data/runs/e1/etl/"}
    run_job(load_event(user_parameters=params), lambda job: etl.monitor(job, glue=glue), client)
    polled = next(r for r in records(stream) if r["logger"] == "lambdas.glue")
    assert {k: polled[k] for k in ("level", "jobId", "glueJob", "runId", "status")} == {
        "level": "INFO", "jobId": JOB_ID, "glueJob": "mlops-etl", "runId": "jr_1", "status": "RUNNING"}
