"""DataAndFeatureEngineering: start a run of the Glue ETL job the stack defines, then watch it.

SubmitEtl starts one run per pipeline execution (a repeated invocation finds the run it started);
MonitorEtl polls that run with continuation tokens and, once it SUCCEEDED, exports the row counts
the ETL wrote to `<output_uri>data-quality.json`.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Mapping

from lambdas.errors import ConfigurationError, JobFailed, TimeBudgetExceeded
from lambdas.job import (
    AwsClient, Done, InProgress, JobEvent, Param, client, iso, parse_s3_uri, parse_user_parameters, run_job)

logger = logging.getLogger(__name__)

SUBMIT_SCHEMA = {
    "execution_id": Param(str),
    "glue_job_name": Param(str),
    "input_uri": Param(str),
    "dataset_config_uri": Param(str),
    "output_uri": Param(str),
}
MONITOR_SCHEMA = {
    "glue_job_name": Param(str),
    "job_run_id": Param(str),
    "output_uri": Param(str),
    "max_seconds": Param((int, float), required=False),
}

RUNNING = {"STARTING", "RUNNING", "STOPPING", "WAITING"}
FAILED = {"FAILED", "ERROR", "TIMEOUT", "STOPPED", "EXPIRED"}
QUALITY_FILE = "data-quality.json"
QUALITY_COUNTS = {"RowsIn": "rows_in", "RowsOut": "rows_out", "Quarantined": "quarantined",
                  "Duplicates": "duplicates"}


def submit_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return run_job(event, lambda job: submit(job))


def monitor_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return run_job(event, lambda job: monitor(job))


def logs(run_id: str, run: Mapping[str, Any] | None = None) -> str:
    # A job with a security configuration logs under its own group, which GetJobRun reports.
    group = (run or {}).get("LogGroupName") or "/aws-glue/jobs"
    return f"logs: CloudWatch log group {group.rstrip('/')}/error, stream {run_id}"


# -- submit ---------------------------------------------------------------------------------
def submit(job: JobEvent, *, glue: AwsClient = None) -> Done:
    params = parse_user_parameters(job.user_parameters, SUBMIT_SCHEMA)
    for key in ("input_uri", "dataset_config_uri", "output_uri"):
        parse_s3_uri(params[key], f"UserParameters '{key}'")
    glue = glue or client("glue")
    name, execution_id = params["glue_job_name"], params["execution_id"]

    run = find_run(glue, name, execution_id)
    if run is not None:
        run_id = run["Id"]
        logger.info("job %s: Glue job %s already has run %s (%s) for execution %s; not starting another",
                    job.job_id, name, run_id, run["JobRunState"], execution_id)
        summary = f"Glue job {name}: run {run_id} for this execution is already {run['JobRunState']}"
    else:
        run_id = glue.start_job_run(JobName=name, Arguments={
            "--input": params["input_uri"],
            "--dataset-config": params["dataset_config_uri"],
            "--output": params["output_uri"],
            "--execution-id": execution_id,
        })["JobRunId"]
        logger.info("job %s: started Glue job %s run %s for execution %s",
                    job.job_id, name, run_id, execution_id)
        summary = f"Glue job {name}: started run {run_id}"
    return Done(summary, {"JobRunId": run_id, "GlueJobName": name, "EtlOutputUri": params["output_uri"]})


def find_run(glue: AwsClient, name: str, execution_id: str) -> dict[str, Any] | None:
    """The run of this execution that has not failed, if one exists (a retried failure starts anew)."""
    run: dict[str, Any]
    try:
        for page in glue.get_paginator("get_job_runs").paginate(JobName=name):
            for run in page["JobRuns"]:
                if (run.get("Arguments", {}).get("--execution-id") == execution_id
                        and run["JobRunState"] not in FAILED):
                    return run
    except glue.exceptions.EntityNotFoundException:
        raise ConfigurationError(f"Glue job '{name}' does not exist; 'glue_job_name' must name the ETL job "
                                 "the stack defines") from None
    return None


# -- monitor --------------------------------------------------------------------------------
def monitor(job: JobEvent, *, glue: AwsClient = None, s3: AwsClient = None) -> Done | InProgress:
    params = parse_user_parameters(job.user_parameters, MONITOR_SCHEMA)
    parse_s3_uri(params["output_uri"], "UserParameters 'output_uri'")
    state = job.state() or {}
    name = state.get("glue_job_name", params["glue_job_name"])
    run_id = state.get("job_run_id", params["job_run_id"])
    glue = glue or client("glue")

    run = glue.get_job_run(JobName=name, RunId=run_id)["JobRun"]
    status = run["JobRunState"]
    logger.info("job %s: Glue job %s run %s is %s", job.job_id, name, run_id, status,
                extra={"jobId": job.job_id, "glueJob": name, "runId": run_id, "status": status})

    if status == "SUCCEEDED":
        counts = read_counts(s3 or client("s3"), name, run_id, params["output_uri"])
        summary = f"Glue job {name} run {run_id} SUCCEEDED: " + " ".join(
            f"{key}={value}" for key, value in counts.items())
        return Done(summary, counts)
    if status in FAILED:
        raise JobFailed(f"Glue job {name} run {run_id} {status}: "
                        f"{run.get('ErrorMessage') or 'Glue gave no error message'}; {logs(run_id, run)}")
    if status not in RUNNING:
        raise JobFailed(f"Glue job {name} run {run_id} is in a state this action does not know: {status}; "
                        f"{logs(run_id, run)}")

    budget, started = params["max_seconds"], run.get("StartedOn")
    seconds = time.time() - started.timestamp() if started else 0.0
    if budget is not None and seconds > budget and status != "STOPPING":
        result = glue.batch_stop_job_run(JobName=name, JobRunIds=[run_id])
        errors = "; ".join(e.get("ErrorDetail", {}).get("ErrorMessage", "") for e in result.get("Errors", []))
        note = f" (BatchStopJobRun reported: {errors})" if errors else ""
        logger.warning("job %s: Glue job %s run %s ran %.0fs, over max_seconds %g; stop requested%s",
                       job.job_id, name, run_id, seconds, budget, note)
        raise TimeBudgetExceeded(f"Glue job {name} run {run_id} ran past the action's max_seconds {budget:g} "
                                 f"(started {iso(started)}); stopped it{note}; {logs(run_id, run)}")
    return InProgress(f"Glue job {name} run {run_id} is {status}",
                      {"glue_job_name": name, "job_run_id": run_id})


def read_counts(s3: AwsClient, name: str, run_id: str, output_uri: str) -> dict[str, int]:
    bucket, prefix = parse_s3_uri(output_uri, "UserParameters 'output_uri'")
    key = f"{prefix.rstrip('/')}/{QUALITY_FILE}" if prefix.strip("/") else QUALITY_FILE
    where = f"s3://{bucket}/{key}"
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (s3.exceptions.NoSuchKey, s3.exceptions.NoSuchBucket):
        raise JobFailed(f"Glue job {name} run {run_id} SUCCEEDED but wrote no {QUALITY_FILE} at {where}; "
                        f"check the ETL's output argument; {logs(run_id)}") from None
    try:
        quality: Mapping[str, Any] = json.loads(body)
        counts = {variable: quality[field] for variable, field in QUALITY_COUNTS.items()}
    except (ValueError, TypeError, KeyError) as exc:
        raise JobFailed(f"Glue job {name} run {run_id}: {where} is not the data-quality report this action "
                        f"reads ({type(exc).__name__}: {exc}); "
                        f"expected keys {sorted(QUALITY_COUNTS.values())}") from None
    bad = [field for variable, field in QUALITY_COUNTS.items()
           if isinstance(counts[variable], bool) or not isinstance(counts[variable], int)]
    if bad:
        raise JobFailed(f"Glue job {name} run {run_id}: {where} has non-integer counts for {bad}")
    return counts
