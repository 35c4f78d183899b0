"""SubmitEtl / MonitorEtl: one Glue run per execution, every run state reported exactly once."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import ANY
from moto import mock_aws

from lambdas import glue as etl
from lambdas.job import run_job

from tests.lambdas.pipeline_stubs import JOB_ID, expect_failure, expect_success, now_minus, record_requests, without
from tests.conftest import SECRETS, load_event

EXECUTION = "2d6b0c50-6f3a-4d8e-9f1a-1234567890ab"
GLUE_JOB = "mlops-etl"
OUTPUT = f"s3://mlops-data/runs/{EXECUTION}/etl/"
RAW, CONFIG = "s3://mlops-data/raw/diamonds.csv", "s3://mlops-data/config/diamonds.yaml"
SUBMIT = {"execution_id": EXECUTION, "glue_job_name": GLUE_JOB, "input_uri": RAW,
          "dataset_config_uri": CONFIG, "output_uri": OUTPUT}
ARGUMENTS = {"--input": RAW, "--dataset-config": CONFIG, "--output": OUTPUT, "--execution-id": EXECUTION}
SUBMITTED = {"GlueJobName": GLUE_JOB, "EtlOutputUri": OUTPUT}
MONITOR = {"glue_job_name": GLUE_JOB, "job_run_id": "jr_1", "output_uri": OUTPUT}
QUALITY = {"rows_in": 100, "rows_out": 95, "quarantined": 3, "duplicates": 2,
           "quarantined_by_reason": {"carat out of range": 3},
           "splits": {"train": 70, "validation": 15, "test": 10}}
QUALITY_KEY = f"runs/{EXECUTION}/etl/data-quality.json"
LOGS = "logs: CloudWatch log group /aws-glue/jobs/error, stream jr_1"
OLD = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def aws():
    """moto Glue with the ETL job the stack defines, and the data bucket."""
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_job(Name=GLUE_JOB, Role="arn:aws:iam::123456789012:role/mlops-glue",
                        Command={"Name": "glueetl", "ScriptLocation": "s3://mlops-data/code/etl.py"})
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="mlops-data")
        yield glue, s3


def glue_run(state, execution=EXECUTION, run_id="jr_1", **extra):
    return {"Id": run_id, "JobName": GLUE_JOB, "JobRunState": state, "StartedOn": OLD,
            "Arguments": {**ARGUMENTS, "--execution-id": execution}, **extra}


# -- submit ---------------------------------------------------------------------------------
def test_submit_starts_one_run_and_a_repeat_finds_it(aws, codepipeline):
    glue, _ = aws
    client, stub = codepipeline
    sent = record_requests(glue)
    for _ in range(2):
        expect_success(stub, outputVariables={"JobRunId": ANY, **SUBMITTED},
                       executionDetails={"summary": ANY})
    first = run_job(load_event(user_parameters=SUBMIT), lambda job: etl.submit(job, glue=glue), client)
    second = run_job(load_event(user_parameters=SUBMIT), lambda job: etl.submit(job, glue=glue), client)
    assert [operation for operation, _ in sent] == ["GetJobRuns", "StartJobRun", "GetJobRuns"]
    assert sent[1][1] == {"JobName": GLUE_JOB, "Arguments": ARGUMENTS}

    runs = glue.get_job_runs(JobName=GLUE_JOB)["JobRuns"]
    assert [run["Arguments"] for run in runs] == [ARGUMENTS]
    run_id = runs[0]["Id"]
    assert first == {"result": "success", "summary": f"Glue job {GLUE_JOB}: started run {run_id}",
                     "variables": {"JobRunId": run_id, "GlueJobName": GLUE_JOB, "EtlOutputUri": OUTPUT}}
    assert second["variables"] == first["variables"]
    assert second["summary"] == f"Glue job {GLUE_JOB}: run {run_id} for this execution is already SUCCEEDED"


def test_submit_to_a_job_the_stack_did_not_define(aws, codepipeline):
    glue, _ = aws
    client, stub = codepipeline
    expect_failure(stub, "ConfigurationError",
                   "Glue job 'nope' does not exist; 'glue_job_name' must name the ETL job the stack defines")
    run_job(load_event(user_parameters={**SUBMIT, "glue_job_name": "nope"}),
            lambda job: etl.submit(job, glue=glue), client)


@pytest.mark.parametrize("existing, starts", [
    ([glue_run("RUNNING")], False),
    ([glue_run("STARTING")], False),
    ([glue_run("SUCCEEDED")], False),
    ([glue_run("FAILED")], True),
    ([glue_run("STOPPED"), glue_run("TIMEOUT", run_id="jr_0")], True),
    ([glue_run("RUNNING", execution="another-execution")], True),
    ([], True),
], ids=["running-reused", "starting-reused", "succeeded-reused", "failed-restarted",
        "stopped-and-timed-out-restarted", "other-execution-ignored", "new"])
def test_submit_reuses_a_live_run_of_the_same_execution(stubbed_glue, codepipeline, existing, starts):
    glue, glue_stub = stubbed_glue
    client, stub = codepipeline
    glue_stub.add_response("get_job_runs", {"JobRuns": existing}, {"JobName": GLUE_JOB})
    if starts:
        glue_stub.add_response("start_job_run", {"JobRunId": "jr_2"},
                               {"JobName": GLUE_JOB, "Arguments": ARGUMENTS})
        run_id, summary = "jr_2", f"Glue job {GLUE_JOB}: started run jr_2"
    else:
        run_id = "jr_1"
        summary = f"Glue job {GLUE_JOB}: run jr_1 for this execution is already {existing[0]['JobRunState']}"
    expect_success(stub, outputVariables={"JobRunId": run_id, **SUBMITTED},
                   executionDetails={"summary": summary})
    run_job(load_event(user_parameters=SUBMIT), lambda job: etl.submit(job, glue=glue), client)


BAD_SUBMIT = [
    (without(SUBMIT, "output_uri"), "UserParameters is missing required key 'output_uri'"),
    ({**SUBMIT, "job_name": "x"},
     "UserParameters has unknown key(s) ['job_name']; allowed: "
     "['dataset_config_uri', 'execution_id', 'glue_job_name', 'input_uri', 'output_uri']"),
    ({**SUBMIT, "glue_job_name": 7}, "UserParameters 'glue_job_name' must be str, got int"),
    ({**SUBMIT, "execution_id": "#{codepipeline.PipelineExecutionId}"},
     "UserParameters 'execution_id' holds an unresolved variable #{codepipeline.PipelineExecutionId}; "
     "check the namespace and variable name"),
    ({**SUBMIT, "input_uri": "mlops-data/raw/diamonds.csv"},
     "UserParameters 'input_uri' must be an s3:// URI, got 'mlops-data/raw/diamonds.csv'"),
]
BAD_MONITOR = [
    (without(MONITOR, "job_run_id"), "UserParameters is missing required key 'job_run_id'"),
    ({**MONITOR, "timeout": 5}, "UserParameters has unknown key(s) ['timeout']; allowed: ['glue_job_name', "
                                "'job_run_id', 'max_seconds', 'output_uri']"),
    ({**MONITOR, "max_seconds": "soon"}, "UserParameters 'max_seconds' must be a number, got 'soon'"),
    ({**MONITOR, "job_run_id": "#{Etl.JobRunId}"},
     "UserParameters 'job_run_id' holds an unresolved variable #{Etl.JobRunId}; check the namespace and "
     "variable name"),
]


@pytest.mark.parametrize("action, params, message",
                         [("submit", p, m) for p, m in BAD_SUBMIT]
                         + [("monitor", p, m) for p, m in BAD_MONITOR],
                         ids=["submit-missing", "submit-unknown", "submit-wrong-type", "submit-unresolved",
                              "submit-not-s3", "monitor-missing", "monitor-unknown", "monitor-not-number",
                              "monitor-unresolved"])
def test_bad_user_parameters_are_configuration_errors(stubbed_glue, codepipeline, action, params, message):
    glue, _ = stubbed_glue  # no request may reach Glue
    client, stub = codepipeline
    expect_failure(stub, "ConfigurationError", message)
    run_job(load_event(user_parameters=params), lambda job: getattr(etl, action)(job, glue=glue), client)


# -- monitor --------------------------------------------------------------------------------
def test_monitor_exports_the_counts_of_a_succeeded_run(aws, codepipeline):
    glue, s3 = aws
    client, stub = codepipeline
    run_id = glue.start_job_run(JobName=GLUE_JOB, Arguments=ARGUMENTS)["JobRunId"]  # moto: SUCCEEDED at once
    s3.put_object(Bucket="mlops-data", Key=QUALITY_KEY, Body=json.dumps(QUALITY))
    counts = {"RowsIn": "100", "RowsOut": "95", "Quarantined": "3", "Duplicates": "2"}
    expect_success(stub, outputVariables=counts, executionDetails={
        "summary": f"Glue job {GLUE_JOB} run {run_id} SUCCEEDED: RowsIn=100 RowsOut=95 Quarantined=3 "
                   "Duplicates=2"})
    run_job(load_event(user_parameters={**MONITOR, "job_run_id": run_id}),
            lambda job: etl.monitor(job, glue=glue, s3=s3), client)


@pytest.mark.parametrize("body, message", [
    (None, f"Glue job {GLUE_JOB} run {{run}} SUCCEEDED but wrote no data-quality.json at "
           f"{OUTPUT}data-quality.json; check the ETL's output argument; "
           "logs: CloudWatch log group /aws-glue/jobs/error, stream {run}"),
    ('{"rows_in": 1}', f"Glue job {GLUE_JOB} run {{run}}: {OUTPUT}data-quality.json is not the data-quality "
                       "report this action reads (KeyError: 'rows_out'); expected keys ['duplicates', "
                       "'quarantined', 'rows_in', 'rows_out']"),
    ('{"rows_in": 1, "rows_out": "1", "quarantined": 0, "duplicates": 0}',
     f"Glue job {GLUE_JOB} run {{run}}: {OUTPUT}data-quality.json has non-integer counts for ['rows_out']"),
], ids=["missing", "incomplete", "not-integer"])
def test_monitor_fails_a_succeeded_run_without_a_usable_report(aws, codepipeline, body, message):
    glue, s3 = aws
    client, stub = codepipeline
    run_id = glue.start_job_run(JobName=GLUE_JOB, Arguments=ARGUMENTS)["JobRunId"]
    if body is not None:
        s3.put_object(Bucket="mlops-data", Key=QUALITY_KEY, Body=body)
    expect_failure(stub, "JobFailed", message.format(run=run_id))
    run_job(load_event(user_parameters={**MONITOR, "job_run_id": run_id}),
            lambda job: etl.monitor(job, glue=glue, s3=s3), client)


TOKEN = '{"glue_job_name":"mlops-etl","job_run_id":"jr_1"}'


@pytest.mark.parametrize("run, params, outcome", [
    (glue_run("STARTING"), {}, ("continue", "Glue job mlops-etl run jr_1 is STARTING")),
    (glue_run("RUNNING"), {}, ("continue", "Glue job mlops-etl run jr_1 is RUNNING")),
    (glue_run("WAITING"), {}, ("continue", "Glue job mlops-etl run jr_1 is WAITING")),
    (glue_run("RUNNING", StartedOn=now_minus(60)), {"max_seconds": 3600},
     ("continue", "Glue job mlops-etl run jr_1 is RUNNING")),
    (glue_run("STOPPING"), {"max_seconds": 60}, ("continue", "Glue job mlops-etl run jr_1 is STOPPING")),
    (glue_run("FAILED", ErrorMessage="AnalysisException: Path does not exist: s3://mlops-data/raw/x.csv"), {},
     ("JobFailed", "Glue job mlops-etl run jr_1 FAILED: AnalysisException: Path does not exist: "
                   f"s3://mlops-data/raw/x.csv; {LOGS}")),
    (glue_run("ERROR", ErrorMessage="Resource unavailable"), {},
     ("JobFailed", f"Glue job mlops-etl run jr_1 ERROR: Resource unavailable; {LOGS}")),
    (glue_run("TIMEOUT", ErrorMessage="Job run timed out"), {},
     ("JobFailed", f"Glue job mlops-etl run jr_1 TIMEOUT: Job run timed out; {LOGS}")),
    (glue_run("STOPPED"), {},
     ("JobFailed", f"Glue job mlops-etl run jr_1 STOPPED: Glue gave no error message; {LOGS}")),
    (glue_run("RUNNING"), {"max_seconds": "3600"},
     ("JobFailed", "Glue job mlops-etl run jr_1 ran past the action's max_seconds 3600 "
                   f"(started 2024-05-01T10:00:00Z); stopped it; {LOGS}")),
    (glue_run("FAILED", ErrorMessage="boom", LogGroupName="/aws-glue/jobs/mlops-glue-role/mlops-etl-role/"), {},
     ("JobFailed", "Glue job mlops-etl run jr_1 FAILED: boom; logs: CloudWatch log group "
                   "/aws-glue/jobs/mlops-glue-role/mlops-etl-role/error, stream jr_1")),
], ids=["starting", "running", "waiting", "running-within-budget", "stopping-over-budget-not-stopped-twice",
        "failed", "error", "timeout", "stopped", "running-over-budget", "failed-security-configuration-logs"])
def test_monitor_reports_every_run_state(stubbed_glue, codepipeline, run, params, outcome):
    glue, glue_stub = stubbed_glue
    client, stub = codepipeline
    glue_stub.add_response("get_job_run", {"JobRun": run}, {"JobName": GLUE_JOB, "RunId": "jr_1"})
    kind, text = outcome
    if kind == "continue":
        expect_success(stub, continuationToken=TOKEN, executionDetails={"summary": text})
    else:
        if "max_seconds" in text:
            glue_stub.add_response("batch_stop_job_run", {"SuccessfulSubmissions": [{"JobName": GLUE_JOB,
                                                                                    "JobRunId": "jr_1"}]},
                                   {"JobName": GLUE_JOB, "JobRunIds": ["jr_1"]})
        expect_failure(stub, kind, text)
    run_job(load_event(user_parameters={**MONITOR, **params}), lambda job: etl.monitor(job, glue=glue),
            client)


def test_monitor_follows_the_run_in_its_continuation_token(stubbed_glue, codepipeline):
    glue, glue_stub = stubbed_glue
    client, stub = codepipeline
    glue_stub.add_response("get_job_run", {"JobRun": glue_run("RUNNING", run_id="jr_9")},
                           {"JobName": GLUE_JOB, "RunId": "jr_9"})
    token = {"glue_job_name": GLUE_JOB, "job_run_id": "jr_9"}
    expect_success(stub, continuationToken=json.dumps(token, separators=(",", ":")),
                   executionDetails={"summary": "Glue job mlops-etl run jr_9 is RUNNING"})
    run_job(load_event(user_parameters=MONITOR, continuation_token=token),
            lambda job: etl.monitor(job, glue=glue), client)


def test_logs_name_the_job_and_never_the_credentials(aws, codepipeline, caplog):
    glue, s3 = aws
    client, stub = codepipeline
    caplog.set_level(logging.DEBUG)
    expect_success(stub, outputVariables=ANY, executionDetails=ANY)
    result = run_job(load_event(user_parameters=SUBMIT), lambda job: etl.submit(job, glue=glue), client)
    run_id = result["variables"]["JobRunId"]
    s3.put_object(Bucket="mlops-data", Key=QUALITY_KEY, Body=json.dumps(QUALITY))
    expect_success(stub, outputVariables=ANY, executionDetails=ANY)
    run_job(load_event(user_parameters={**MONITOR, "job_run_id": run_id}),
            lambda job: etl.monitor(job, glue=glue, s3=s3), client)
    expect_failure(stub, "ConfigurationError", ANY)
    run_job(load_event(user_parameters={**MONITOR, "oops": 1}), lambda job: etl.monitor(job, glue=glue),
            client)

    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert not any(secret in logged for secret in SECRETS)
    ours = [r.getMessage() for r in caplog.records if r.name == "lambdas.glue"]
    assert ours and all(JOB_ID in line and GLUE_JOB in line and run_id in line for line in ours)
    assert JOB_ID in logged


def test_handler_builds_its_client_only_when_called(monkeypatch, stubbed_glue, codepipeline):
    glue, glue_stub = stubbed_glue
    client, stub = codepipeline
    built = []
    monkeypatch.setattr(etl, "client", lambda service: built.append(service) or glue)
    monkeypatch.setattr(etl, "run_job", lambda event, work: run_job(event, work, client))
    assert built == []
    glue_stub.add_response("get_job_runs", {"JobRuns": [glue_run("RUNNING")]}, {"JobName": GLUE_JOB})
    expect_success(stub, outputVariables={"JobRunId": "jr_1", **SUBMITTED},
                   executionDetails={"summary": f"Glue job {GLUE_JOB}: run jr_1 for this execution is "
                                                "already RUNNING"})
    etl.submit_handler(load_event(user_parameters=SUBMIT), None)
    assert built == ["glue"]
