"""Glue job runs through the stand-in: the ETL script runs under local Spark with S3 staged around it, as the
job's role."""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import signal
import time
import zipfile

import pytest
from botocore.exceptions import ClientError

from lambdas import glue as glue_worker
from mlops_local.gateway import Gateway, LocalAws
from mlops_local.glue_runs import GlueRuns
from tests.conftest import ROOT
from mlops_local.runtime import Runtime

from tests.lambdas.pipeline_stubs import invoke_worker as invoke

BUCKET = "glue-data"
JOB = "mlops-etl"
ROLE = "arn:aws:iam::123456789012:role/glue"
KEY_SCRIPT = (b"import os, pathlib, sys\n"
              b"out = sys.argv[sys.argv.index('--output') + 1]\n"
              b"pathlib.Path(out, 'key.txt').write_text(os.environ['AWS_ACCESS_KEY_ID'])\n")
ROWS = 2000
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED", "TIMEOUT", "ERROR"}


def sample_csv_gz(rows: int) -> bytes:
    """The first rows of the shipped data, gzipped as the raw object is."""
    with gzip.open(ROOT / "data" / "diamonds.csv.gz", "rt", encoding="utf-8", newline="") as source:
        reader = csv.reader(source)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for i, row in enumerate(reader):
            if i > rows:
                break
            writer.writerow(row)
    return gzip.compress(out.getvalue().encode("utf-8"))


def training_zip() -> bytes:
    """What the build uploads as --extra-py-files: the training package."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted((ROOT / "src" / "training").glob("*.py")):
            archive.write(path, f"training/{path.name}")
    return buffer.getvalue()


def create_role(iam, name: str, without: tuple[str, ...] = (), service: str = "glue.amazonaws.com") -> str:
    """A role `service` may assume, allowed to list, read and write the bucket but for the actions `without`."""
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    statements = [{"Sid": "List", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{BUCKET}"},
                  {"Sid": "ReadWrite", "Action": ["s3:GetObject", "s3:PutObject"],
                   "Resource": f"arn:aws:s3:::{BUCKET}/*"}]
    kept = [{**s, "Effect": "Allow", "Action": [a for a in s["Action"] if a not in without]} for s in statements]
    iam.put_role_policy(RoleName=name, PolicyName="access", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [s for s in kept if s["Action"]]}))
    return arn


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    with LocalAws(Gateway()) as aws:
        runtime = Runtime(aws=aws, workdir=tmp_path_factory.mktemp("glue-runtime"), source_root=ROOT)
        glue_runs = GlueRuns(runtime).register()
        s3, glue = aws.client("s3"), aws.client("glue")
        create_role(aws.client("iam"), "glue")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="raw/diamonds.csv.gz", Body=sample_csv_gz(ROWS))
        s3.put_object(Bucket=BUCKET, Key="config/diamonds.yaml",
                      Body=(ROOT / "data" / "diamonds.yaml").read_bytes())
        broken = (ROOT / "data" / "diamonds.yaml").read_text().replace(
            "numeric: [carat,", "numeric: [weight_grams, carat,")
        s3.put_object(Bucket=BUCKET, Key="config/broken.yaml", Body=broken.encode())
        s3.put_object(Bucket=BUCKET, Key="code/glue/etl.py", Body=(ROOT / "src/glue_jobs/etl.py").read_bytes())
        s3.put_object(Bucket=BUCKET, Key="code/glue/training.zip", Body=training_zip())
        s3.put_object(Bucket=BUCKET, Key="code/keys.py", Body=KEY_SCRIPT)
        glue.create_job(
            Name=JOB, Role=ROLE, GlueVersion="5.0",
            Command={"Name": "glueetl", "PythonVersion": "3", "ScriptLocation": f"s3://{BUCKET}/code/glue/etl.py"},
            ExecutionProperty={"MaxConcurrentRuns": 3},
            DefaultArguments={"--job-bookmark-option": "job-bookmark-disable",
                              "--extra-py-files": f"s3://{BUCKET}/code/glue/training.zip",
                              "--TempDir": f"s3://{BUCKET}/tmp/glue/",
                              "--endpoint-test-rows": "50"})
        glue.create_job(Name="no-script", Role="glue",  # a role name, as CreateJob also takes it
                        Command={"Name": "glueetl", "ScriptLocation": f"s3://{BUCKET}/code/missing.py"})
        yield aws, runtime
        glue_runs.close()  # runs a deselected test would have waited for


def start(glue, execution: str, config: str = "diamonds.yaml", job: str = JOB) -> str:
    return glue.start_job_run(JobName=job, Arguments={
        "--input": f"s3://{BUCKET}/raw/diamonds.csv.gz",
        "--dataset-config": f"s3://{BUCKET}/config/{config}",
        "--output": f"s3://{BUCKET}/runs/{execution}/etl/",
        "--execution-id": execution,
    })["JobRunId"]


def wait(runtime, glue, run_id: str, states=TERMINAL, job: str = JOB, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        version = runtime.changes.version
        run = glue.get_job_run(JobName=job, RunId=run_id)["JobRun"]
        if run["JobRunState"] in states:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['JobRunState']}"
        runtime.changes.wait(version, timeout=1.0)


def worker_submit(glue, execution: str) -> dict:
    return invoke(lambda job: glue_worker.submit(job, glue=glue), {
        "execution_id": execution, "glue_job_name": JOB, "input_uri": f"s3://{BUCKET}/raw/diamonds.csv.gz",
        "dataset_config_uri": f"s3://{BUCKET}/config/diamonds.yaml",
        "output_uri": f"s3://{BUCKET}/runs/{execution}/etl/"})


@pytest.fixture(scope="module")
def runs(stand_in):
    """The good run (started by the SubmitEtl worker, so with its exact request) and the broken run,
    started together so that their Spark start-ups overlap."""
    aws, runtime = stand_in
    glue = aws.client("glue")
    submitted = worker_submit(glue, "exec-good")
    assert submitted["result"] == "success", submitted
    return {"good": submitted["variables"]["JobRunId"], "broken": start(glue, "exec-broken", config="broken.yaml")}


@pytest.mark.spark
def test_the_job_workers_drive_a_run_through_the_stand_in(stand_in, runs):
    aws, runtime = stand_in
    glue, s3 = aws.client("glue"), aws.client("s3")
    again = worker_submit(glue, "exec-good")  # a retried SubmitEtl finds the run instead of starting one
    assert again["variables"]["JobRunId"] == runs["good"] and "already" in again["summary"]

    monitor = {"glue_job_name": JOB, "job_run_id": runs["good"], "output_uri": f"s3://{BUCKET}/runs/exec-good/etl/"}
    token, polls = None, 0
    deadline = time.monotonic() + 120
    while True:
        version = runtime.changes.version
        outcome = invoke(lambda job: glue_worker.monitor(job, glue=glue, s3=s3), monitor, token)
        polls += 1
        if outcome["result"] != "continue":
            break
        token = outcome["state"]
        assert time.monotonic() < deadline, outcome
        runtime.changes.wait(version, timeout=2.0)
    assert outcome["result"] == "success", outcome
    assert int(outcome["variables"]["RowsIn"]) == ROWS and polls > 1


@pytest.mark.spark
def test_a_run_stages_s3_runs_the_script_and_uploads_its_outputs(stand_in, runs):
    aws, runtime = stand_in
    glue, s3 = aws.client("glue"), aws.client("s3")
    run = wait(runtime, glue, runs["good"])
    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    assert run["Id"].startswith("jr_") and run["Attempt"] == 0 and run["JobName"] == JOB
    assert run["LogGroupName"] == "/aws-glue/jobs" and run["ExecutionTime"] >= 1
    assert run["StartedOn"] <= run["CompletedOn"] and run["LastModifiedOn"] == run["CompletedOn"]
    assert run["Arguments"]["--execution-id"] == "exec-good"  # the run's own arguments

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/exec-good/etl/")["Contents"]}
    prefix = "runs/exec-good/etl/"
    assert {prefix + "features.json", prefix + "data-quality.json"} <= keys
    for split in ("train", "validation", "test", "endpoint-test", "quarantine"):
        assert any(k.startswith(f"{prefix}{split}/part-") and k.endswith(".csv") for k in keys), split
    assert not any(k.endswith(".crc") for k in keys)
    quality = json.loads(s3.get_object(Bucket=BUCKET, Key=prefix + "data-quality.json")["Body"].read())
    assert quality["rows_in"] == ROWS and quality["endpoint_test"] == 50

    log = (runtime.workdir / "glue" / run["Id"] / "run.log").read_text()
    assert "--extra-py-files" in log and "training.zip" in log and "s3://" not in log.split("\n")[0]


@pytest.mark.spark
def test_a_bad_dataset_config_fails_naming_the_column(stand_in, runs):
    aws, runtime = stand_in
    run = wait(runtime, aws.client("glue"), runs["broken"])
    assert run["JobRunState"] == "FAILED"
    assert "DatasetConfigError" in run["ErrorMessage"] and "'weight_grams'" in run["ErrorMessage"]
    assert "CompletedOn" in run
    listed = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="runs/exec-broken/")
    assert listed["KeyCount"] == 0  # a failed run uploads nothing


@pytest.mark.spark
def test_batch_stop_job_run_stops_a_running_job(stand_in, runs):
    aws, runtime = stand_in
    glue = aws.client("glue")
    run_id = start(glue, "exec-stop")
    wait(runtime, glue, run_id, states={"RUNNING"} | TERMINAL)
    answer = glue.batch_stop_job_run(JobName=JOB, JobRunIds=[run_id, "jr_missing"])
    assert answer["SuccessfulSubmissions"] == [{"JobName": JOB, "JobRunId": run_id}]
    assert [e["ErrorDetail"]["ErrorCode"] for e in answer["Errors"]] == ["EntityNotFoundException"]
    assert glue.get_job_run(JobName=JOB, RunId=run_id)["JobRun"]["JobRunState"] in ("STOPPING", "STOPPED")
    run = wait(runtime, glue, run_id)
    assert run["JobRunState"] == "STOPPED" and "CompletedOn" in run
    again = glue.batch_stop_job_run(JobName=JOB, JobRunIds=[run_id])
    assert again["Errors"][0]["ErrorDetail"]["ErrorCode"] == "InvalidInputException"


@pytest.mark.spark
def test_get_job_runs_lists_newest_first_and_pages(stand_in, runs):
    aws, _ = stand_in
    glue = aws.client("glue")
    listed = [r for page in glue.get_paginator("get_job_runs").paginate(JobName=JOB, PaginationConfig={"PageSize": 1})
              for r in page["JobRuns"]]
    assert len(listed) >= 2 and {runs["good"], runs["broken"]} <= {r["Id"] for r in listed}
    started = [r["StartedOn"] for r in listed]
    assert started == sorted(started, reverse=True)


def test_a_missing_script_fails_the_run(stand_in):
    aws, runtime = stand_in
    glue = aws.client("glue")
    run_id = glue.start_job_run(JobName="no-script")["JobRunId"]
    run = wait(runtime, glue, run_id, job="no-script", timeout=20)
    assert run["JobRunState"] == "FAILED" and "code/missing.py does not exist" in run["ErrorMessage"]


@pytest.mark.parametrize("call, code", [
    (lambda g: g.start_job_run(JobName="nope"), "EntityNotFoundException"),
    (lambda g: g.get_job_runs(JobName="nope"), "EntityNotFoundException"),
    (lambda g: g.get_job_run(JobName=JOB, RunId="jr_unknown"), "EntityNotFoundException"),
    (lambda g: g.get_job_run(JobName="nope", RunId="jr_unknown"), "EntityNotFoundException"),
], ids=["start-unknown-job", "list-unknown-job", "unknown-run", "run-of-unknown-job"])
def test_unknown_jobs_and_runs(stand_in, call, code):
    aws, _ = stand_in
    with pytest.raises(ClientError) as caught:
        call(aws.client("glue"))
    assert caught.value.response["Error"]["Code"] == code


# -- acting as the job's role ------------------------------------------------------------------------
def key_job(aws, name: str, role: str) -> str:
    """A job whose script (no Spark) writes the access key it was given; returns a run's id."""
    glue = aws.client("glue")
    glue.create_job(Name=name, Role=role, GlueVersion="5.0",
                    Command={"Name": "glueetl", "PythonVersion": "3", "ScriptLocation": f"s3://{BUCKET}/code/keys.py"})
    return glue.start_job_run(JobName=name, Arguments={"--output": f"s3://{BUCKET}/runs/{name}/keys/"})["JobRunId"]


def test_a_run_acts_as_its_role_in_its_staging_and_its_script(stand_in):
    aws, runtime = stand_in
    mark = len(runtime.access_log)
    run = wait(runtime, aws.client("glue"), key_job(aws, "keys-of-the-role", ROLE), job="keys-of-the-role", timeout=30)
    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    key = aws.client("s3").get_object(Bucket=BUCKET, Key="runs/keys-of-the-role/keys/key.txt")["Body"].read().decode()
    assert key != "testing" and key == runtime.session(ROLE, "GlueJobRunnerSession", "glue.amazonaws.com").access_key_id
    staged = {a.operation for a in runtime.access_log.records(mark) if a.service == "s3"
              and a.principal.arn == "arn:aws:sts::123456789012:assumed-role/glue/GlueJobRunnerSession"}
    assert {"HeadObject", "GetObject", "PutObject"} <= staged


@pytest.mark.parametrize("name, action, resource", [
    ("lacks-get", "s3:GetObject", f"arn:aws:s3:::{BUCKET}/code/keys.py"),
    ("lacks-put", "s3:PutObject", f"arn:aws:s3:::{BUCKET}/runs/lacks-put/keys/key.txt"),
], ids=["lacks-get-object-on-the-script", "lacks-put-object-on-the-output"])
def test_a_run_whose_role_lacks_an_action_fails_naming_it(stand_in, name, action, resource):
    aws, runtime = stand_in
    role = create_role(aws.client("iam"), f"glue-{name}", without=(action,))
    run = wait(runtime, aws.client("glue"), key_job(aws, name, role), job=name, timeout=30)
    assert run["JobRunState"] == "FAILED"
    assert (f"User: arn:aws:sts::123456789012:assumed-role/glue-{name}/GlueJobRunnerSession is not authorized to "
            f'perform: {action} on resource: "{resource}" because no identity-based policy allows the {action} '
            "action") in run["ErrorMessage"]
    assert "Status Code: 403; Error Code: AccessDenied" in run["ErrorMessage"]


def test_a_role_glue_cannot_assume_fails_the_run(stand_in):
    aws, runtime = stand_in
    role = create_role(aws.client("iam"), "trusts-sagemaker", service="sagemaker.amazonaws.com")
    run = wait(runtime, aws.client("glue"), key_job(aws, "untrusted", role), job="untrusted", timeout=30)
    assert run["JobRunState"] == "FAILED"
    assert run["ErrorMessage"].startswith(f"glue.amazonaws.com cannot assume the role {role}")


# -- logs and failures: tiny script jobs (no Spark) --------------------------------------------------------------
READ_GZ = (b"import gzip, sys\n"
           b"print('reading the input', flush=True)\n"
           b"data = gzip.open(sys.argv[sys.argv.index('--input') + 1]).read()\n")
QUOTES_PATHS = (b"import sys\n"
                b"arg = lambda name: sys.argv[sys.argv.index(name) + 1]\n"
                b"sys.exit(f'ValueError: no rows in {arg(\"--input\")}; nothing written to {arg(\"--out\")}')\n")
SLEEP_SCRIPT = b"import os, time\nprint('driver up', os.getpid(), flush=True)\ntime.sleep(120)\n"


def script_job(aws, name: str, script: bytes, role: str, arguments: dict | None = None, **job) -> str:
    """A job running `script` as `role` (allowed S3 and the /aws-glue/* logs, as GlueJobRole is); its run id."""
    aws.client("iam").put_role_policy(RoleName=role.rsplit("/", 1)[-1], PolicyName="logs", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:/aws-glue/*"}]}))
    aws.client("s3").put_object(Bucket=BUCKET, Key=f"code/{name}.py", Body=script)
    glue = aws.client("glue")
    glue.create_job(Name=name, Role=role, **job,
                    Command={"Name": "glueetl", "ScriptLocation": f"s3://{BUCKET}/code/{name}.py"})
    return glue.start_job_run(JobName=name, Arguments=arguments or {})["JobRunId"]


def messages(aws, group: str, stream: str) -> list[str]:
    """The stream's messages; none while the stream does not exist yet."""
    from mlops_local.cloudwatch_logs import stream_messages

    try:
        return stream_messages(aws.client("logs"), group, stream)
    except ClientError as error:
        assert error.response["Error"]["Code"] == "ResourceNotFoundException"
        return []


def test_a_corrupt_gz_input_fails_naming_the_file_and_the_logs_show_the_run(stand_in):
    aws, runtime = stand_in
    role = create_role(aws.client("iam"), "glue-logs-1")
    whole = sample_csv_gz(50)
    aws.client("s3").put_object(Bucket=BUCKET, Key="raw/truncated.csv.gz", Body=whole[:len(whole) // 2])
    run_id = script_job(aws, "reads-corrupt", READ_GZ, role, {"--input": f"s3://{BUCKET}/raw/truncated.csv.gz"})
    run = wait(runtime, aws.client("glue"), run_id, job="reads-corrupt", timeout=30)
    assert run["JobRunState"] == "FAILED"
    assert run["ErrorMessage"].startswith(f"corrupt input file s3://{BUCKET}/raw/truncated.csv.gz: EOFError: "
                                          "Compressed file ended before the end-of-stream marker was reached")
    assert run["ErrorMessage"].endswith("(exit code 1)")  # Glue's names no log; MonitorEtl adds it
    assert ".stand-in" not in run["ErrorMessage"] and str(runtime.workdir) not in run["ErrorMessage"]
    assert messages(aws, "/aws-glue/jobs/output", run_id) == ["reading the input"]
    assert any(m.startswith("EOFError: Compressed file ended") for m in messages(aws, "/aws-glue/jobs/error", run_id))


def test_a_failure_names_s3_uris_not_staged_copies(stand_in):
    aws, runtime = stand_in
    role = create_role(aws.client("iam"), "glue-logs-3")
    aws.client("s3").put_object(Bucket=BUCKET, Key="raw/quoted.csv", Body=b"a,b\n")
    run_id = script_job(aws, "quotes-paths", QUOTES_PATHS, role,
                        {"--input": f"s3://{BUCKET}/raw/quoted.csv", "--out": f"s3://{BUCKET}/quoted/out/"})
    run = wait(runtime, aws.client("glue"), run_id, job="quotes-paths", timeout=30)
    assert run["ErrorMessage"].startswith(f"ValueError: no rows in s3://{BUCKET}/raw/quoted.csv; nothing written to "
                                          f"s3://{BUCKET}/quoted/out/ (exit code 1)")
    assert str(runtime.workdir) not in run["ErrorMessage"]


def test_a_killed_driver_is_reported_as_killed(stand_in):
    aws, runtime = stand_in
    role = create_role(aws.client("iam"), "glue-logs-2")
    run_id = script_job(aws, "killed-driver", SLEEP_SCRIPT, role)
    glue = aws.client("glue")
    wait(runtime, glue, run_id, states={"RUNNING"} | TERMINAL, job="killed-driver", timeout=30)
    deadline = time.monotonic() + 30
    while not (up := [m for m in messages(aws, "/aws-glue/jobs/output", run_id) if m.startswith("driver up")]):
        assert time.monotonic() < deadline, "the driver's first line never reached its log stream"
        time.sleep(0.1)
    os.kill(int(up[0].split()[-1]), signal.SIGKILL)
    run = wait(runtime, glue, run_id, job="killed-driver", timeout=30)
    assert run["JobRunState"] == "FAILED"
    assert run["ErrorMessage"] == "the Spark driver was killed by SIGKILL (exit code 137)"


@pytest.mark.parametrize("name, job, arguments, groups", [
    ("groups-sec", {"SecurityConfiguration": "etl-sec"}, {},
     ("/aws-glue/jobs/etl-sec-role/groups-sec/output", "/aws-glue/jobs/etl-sec-role/groups-sec/error")),
    ("groups-prefix", {}, {"--custom-logGroup-prefix": "/aws-glue/custom"},
     ("/aws-glue/custom/output", "/aws-glue/custom/error")),
], ids=["security-configuration", "custom-prefix"])
def test_a_runs_log_groups_follow_its_job(stand_in, name, job, arguments, groups):
    aws, runtime = stand_in
    role = create_role(aws.client("iam"), name)
    run_id = script_job(aws, name, b"import sys\nprint('out')\nprint('err', file=sys.stderr)\n", role, arguments,
                        **job)
    run = wait(runtime, aws.client("glue"), run_id, job=name, timeout=30)
    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    assert run["LogGroupName"] == groups[0].rsplit("/", 1)[0]
    assert messages(aws, groups[0], run_id) == ["out"] and messages(aws, groups[1], run_id) == ["err"]
