"""docs/FAULTS.md kept true: one scenario per row of its table (fault -> what the user sees), each on the
cheapest stand-in that shows it, asserting the quoted text (`…` for the variable parts), the status or exit
code, that no process of the fault survives and, where data is involved, that nothing is lost in S3.

A row without a scenario, or a scenario without a row, fails
`test_every_row_has_a_scenario_and_every_scenario_a_row`. Gaps it found are listed under the table, fixed.
"""
from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lambdas import evaluation as evaluation_worker
from lambdas import glue as glue_worker
from lambdas import training as training_worker
from mlops_local.gateway import Gateway, LocalAws
from mlops_local.glue_runs import GlueRuns
from mlops_local.runtime import LocalImage, Runtime
from mlops_local.sagemaker.processing_jobs import ProcessingJobs
from mlops_local.sagemaker.training_jobs import TrainingJobs

from tests.conftest import DATA, DATASET_CONFIG, ROOT
from tests.mlops_local import faults
from tests.mlops_local.faults import (Row, action_failure, assert_log_exists, assert_seen, descendants, survivors,
                                      wait_until)
from tests.mlops_local.sagemaker_requests import (
    BUCKET, EXECUTION, create_role, execution_statements, splits, training_request)

ROWS = faults.read_table()
SRC = ROOT / "src"
ACCOUNT = "123456789012"
# A training/processing image whose programs only wait: the fault is the kill, not the job's work.
WAITER = "import os, time; print('up', os.getpid(), flush=True); time.sleep(300)"
FAULT_IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/mlops-training:faults"
LOGS = {"Sid": "Logs", "Effect": "Allow",
        "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": [f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws-glue/*",
                     f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/sagemaker/*"]}


# -- the stand-in for job faults: Glue runs, training and processing jobs -----------------------------------
class Jobs:
    def __init__(self, aws: LocalAws, runtime: Runtime, glue_runs: GlueRuns, training: TrainingJobs,
                 processing: ProcessingJobs) -> None:
        self.aws, self.runtime = aws, runtime
        self.glue_runs, self.training, self.processing = glue_runs, training, processing
        self.glue, self.sagemaker, self.s3 = aws.client("glue"), aws.client("sagemaker"), aws.client("s3")

    def glue_run(self, name: str, script: str, arguments: dict[str, str] | None = None) -> str:
        """A Glue job running `script` (a stand-in for the Spark driver) as the Glue role; its run id."""
        self.s3.put_object(Bucket=BUCKET, Key=f"code/{name}.py", Body=script.encode())
        self.glue.create_job(Name=name, Role="fault-glue",
                             Command={"Name": "glueetl", "ScriptLocation": f"s3://{BUCKET}/code/{name}.py"})
        run_id: str = self.glue.start_job_run(JobName=name, Arguments=arguments or {})["JobRunId"]
        return run_id

    def glue_failed(self, name: str, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(GetJobRun's JobRun once ended, MonitorEtl's failure result)."""
        run = self.wait(lambda: (lambda r: r if r["JobRunState"] not in glue_worker.RUNNING else None)(
            self.glue.get_job_run(JobName=name, RunId=run_id)["JobRun"]), f"run {run_id} to end")
        action = action_failure(lambda job: glue_worker.monitor(job, glue=self.glue), {
            "glue_job_name": name, "job_run_id": run_id, "output_uri": f"s3://{BUCKET}/runs/{name}/etl/"})
        return run, action

    def wait(self, probe: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            seen = self.runtime.changes.version
            answer = probe()
            if answer:
                return answer
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.runtime.changes.wait(seen, timeout=0.5)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jobs]:
    with LocalAws(Gateway()) as aws:
        runtime = Runtime(aws=aws, workdir=tmp_path_factory.mktemp("fault-jobs"), source_root=ROOT)
        runtime.images.images[FAULT_IMAGE] = LocalImage(
            uri=FAULT_IMAGE, dockerfile=ROOT / "src/training/Dockerfile",
            programs={"train": [sys.executable, "-c", WAITER]}, code=SRC)
        stand = Jobs(aws, runtime, GlueRuns(runtime).register(), TrainingJobs(runtime).register(),
                     ProcessingJobs(runtime).register())
        iam = aws.client("iam")
        create_role(iam, "sagemaker", execution_statements() + [LOGS])
        create_role(iam, "fault-glue", [s for s in execution_statements() if s["Sid"] in ("List", "ReadWrite")]
                    + [LOGS], service="glue.amazonaws.com")
        stand.s3.create_bucket(Bucket=BUCKET)
        for key, body in splits().items():
            stand.s3.put_object(Bucket=BUCKET, Key=f"runs/{EXECUTION}/etl/{key}", Body=body)
        try:
            yield stand
        finally:
            stand.glue_runs.close()
            stand.training.close()
            stand.processing.close()


def driver_pids(jobs: Jobs, run_id: str) -> list[int]:
    """The pids a stand-in driver printed once up: itself and its JVM stand-in."""
    log = jobs.glue_runs.runs[run_id].log
    line = wait_until(lambda: next((text for text in (log.read_text() if log.exists() else "").splitlines()
                                    if text.startswith("driver up")), None), "the driver to start")
    return [int(pid) for pid in line.split()[2:]]


# Stand-ins for a Spark driver: it starts its JVM (in its process group) and logs to stderr, as log4j does.
KILLED_DRIVER = textwrap.dedent("""
    import os, subprocess, sys, time
    jvm = subprocess.Popen(["sleep", "300"])
    print("INFO SparkContext: Running Spark version 3.5.8", file=sys.stderr, flush=True)
    print("driver up", os.getpid(), jvm.pid, flush=True)
    time.sleep(300)
""")
JVM_DRIVER = textwrap.dedent("""
    import os, socket, subprocess, sys, time
    serve = "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(50); " \\
            "print(s.getsockname()[1], flush=True); time.sleep(300)"
    jvm = subprocess.Popen([sys.executable, "-c", serve], stdout=subprocess.PIPE, text=True)
    port = int(jvm.stdout.readline())
    print("INFO SparkContext: Running Spark version 3.5.8", file=sys.stderr, flush=True)
    print("driver up", os.getpid(), jvm.pid, flush=True)
    while True:  # py4j: each call of the driver is a connection to the JVM's gateway port
        socket.create_connection(("127.0.0.1", port)).close()
        time.sleep(0.05)
""")
READ_INPUT = "import gzip, sys\ngzip.open(sys.argv[sys.argv.index('--input') + 1]).read()\n"


def glue_driver_killed(row: Row, tmp_path: Path, jobs: Jobs) -> str:
    run_id = jobs.glue_run("fault-killed-driver", KILLED_DRIVER)
    driver, jvm = driver_pids(jobs, run_id)
    os.kill(driver, signal.SIGKILL)
    run, action = jobs.glue_failed("fault-killed-driver", run_id)
    assert_seen(row, [action["message"], run["JobRunState"], action["type"]])
    assert survivors([driver, jvm]) == []
    return str(action["message"])


def spark_jvm_died(row: Row, tmp_path: Path, jobs: Jobs) -> str:
    run_id = jobs.glue_run("fault-jvm-died", JVM_DRIVER)
    driver, jvm = driver_pids(jobs, run_id)
    os.kill(jvm, signal.SIGKILL)
    run, action = jobs.glue_failed("fault-jvm-died", run_id)
    assert_seen(row, [action["message"], run["JobRunState"], action["type"]])
    assert survivors([driver, jvm]) == []
    return str(action["message"])


def corrupt_input(row: Row, tmp_path: Path, jobs: Jobs) -> str:
    """A truncated .gz put as `aws s3 cp` puts it (upload_file), past preflight, read by the driver."""
    whole = DATA.read_bytes()
    (tmp_path / "diamonds.csv.gz").write_bytes(whole[: len(whole) // 2])
    jobs.s3.upload_file(str(tmp_path / "diamonds.csv.gz"), BUCKET, "raw/diamonds.csv.gz")
    before = faults.snapshot(jobs.s3, BUCKET)
    run_id = jobs.glue_run("fault-corrupt", READ_INPUT, {"--input": f"s3://{BUCKET}/raw/diamonds.csv.gz"})
    run, action = jobs.glue_failed("fault-corrupt", run_id)
    assert_seen(row, [action["message"], run["JobRunState"], action["type"]])
    faults.assert_nothing_lost(before, faults.snapshot(jobs.s3, BUCKET))
    return str(action["message"])


def training_job_killed(row: Row, tmp_path: Path, jobs: Jobs) -> str:
    name = "fault-killed-trainer"
    jobs.sagemaker.create_training_job(**training_request(name, image=FAULT_IMAGE))
    job = jobs.wait(lambda: (lambda j: j if j and j.process else None)(jobs.training.jobs.get(name)), "the trainer")
    wait_until(lambda: "\nup " in job.log.read_text(), "the trainer's first line")  # killed while it trains
    pids = [job.process.pid, *descendants(job.process.pid)]
    os.kill(job.process.pid, signal.SIGKILL)
    described = jobs.wait(lambda: (lambda d: d if d["TrainingJobStatus"] != "InProgress" else None)(
        jobs.sagemaker.describe_training_job(TrainingJobName=name)), "the job to end")
    action = action_failure(lambda job: training_worker.monitor(job, sagemaker=jobs.sagemaker),
                            {"training_job_name": name})
    assert_seen(row, [action["message"], described["TrainingJobStatus"], action["type"]])
    assert survivors(pids) == []
    return str(action["message"])


def processing_job_killed(row: Row, tmp_path: Path, jobs: Jobs) -> str:
    name = "fault-killed-evaluation"
    model = f"s3://{BUCKET}/runs/{EXECUTION}/etl/features.json"
    jobs.sagemaker.create_processing_job(
        ProcessingJobName=name, RoleArn=f"arn:aws:iam::{ACCOUNT}:role/sagemaker",
        AppSpecification={"ImageUri": FAULT_IMAGE, "ContainerEntrypoint": ["python3", "-c", WAITER]},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                               "VolumeSizeInGB": 10}})
    job = jobs.wait(lambda: (lambda j: j if j and j.process else None)(jobs.processing.jobs.get(name)), "the job")
    wait_until(lambda: "\nup " in job.log.read_text(), "the job's first line")
    pids = [job.process.pid, *descendants(job.process.pid)]
    os.kill(job.process.pid, signal.SIGKILL)
    described = jobs.wait(lambda: (lambda d: d if d["ProcessingJobStatus"] != "InProgress" else None)(
        jobs.sagemaker.describe_processing_job(ProcessingJobName=name)), "the job to end")
    action = action_failure(lambda job: evaluation_worker.monitor(job, sagemaker=jobs.sagemaker, s3=jobs.s3), {
        "processing_job_name": name, "evaluation_uri": f"s3://{BUCKET}/runs/{EXECUTION}/evaluation/evaluation.json",
        "threshold": 600.0, "model_package_group": "mlops-models", "image_uri": FAULT_IMAGE,
        "model_data_uri": model, "execution_id": EXECUTION})
    assert_seen(row, [action["message"], described["ProcessingJobStatus"], action["type"]])
    assert survivors(pids) == []
    return str(action["message"])


JOB_SCENARIOS: dict[str, Callable[[Row, Path, Jobs], str]] = {
    "glue-driver-killed": glue_driver_killed,
    "spark-jvm-died": spark_jvm_died,
    "corrupt-input": corrupt_input,
    "training-job-killed": training_job_killed,
    "processing-job-killed": processing_job_killed,
}


@pytest.mark.parametrize("row_id", list(JOB_SCENARIOS))
def test_job_fault(row_id: str, tmp_path: Path, jobs: Jobs) -> None:
    """The action's message and the job's status; the log the message names exists; nothing lost in S3."""
    before = faults.snapshot(jobs.s3, BUCKET)
    message = JOB_SCENARIOS[row_id](ROWS[row_id], tmp_path, jobs)
    assert_log_exists(jobs.aws.client("logs"), message)
    faults.assert_nothing_lost(before, faults.snapshot(jobs.s3, BUCKET))


# -- bad inputs refused before the run starts (preflight), each with --json: one JSON object --------------
HEADER = "carat,cut,color,clarity,depth,table,price,x,y,z"
ROW = "0.23,Ideal,E,SI2,61.5,55,326,3.95,3.98,2.43"


def truncated_gzip(folder: Path) -> Path:
    whole = gzip.compress((HEADER + "\n" + (ROW + "\n") * 2000).encode())
    (folder / "data.csv.gz").write_bytes(whole[: len(whole) // 2])
    return folder / "data.csv.gz"


def written(name: str, text: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        (folder / name).write_text(text, encoding="utf-8")
        return folder / name
    return write


# row id -> (the data file it writes, options, the dataset config's text: None for the shipped config)
PREFLIGHT: dict[str, tuple[Callable[[Path], Path], list[str], str | None]] = {
    "data-missing": (lambda folder: folder / "nowhere.csv", [], None),
    "data-empty": (written("data.csv", ""), [], None),
    "data-header-only": (written("data.csv", HEADER + "\n"), [], None),
    "data-truncated-gzip": (truncated_gzip, [], None),
    "data-header-mismatch": (written("data.csv", HEADER.replace("color", "colour") + f"\n{ROW}\n"), [], None),
    "dataset-config-not-a-mapping": (lambda folder: DATA, [], "- target\n"),
    "dataset-config-incomplete": (lambda folder: DATA, [], "target: price\n"),
    "threshold-not-positive": (lambda folder: DATA, ["--quality-threshold", "0"], None),
    "threshold-not-finite": (lambda folder: DATA, ["--quality-threshold", "nan"], None),
    "hyperparameter-unknown": (lambda folder: DATA, ["-H", "epoch=5"], None),
    "hyperparameter-invalid": (lambda folder: DATA, ["-H", "epochs=0", "-H", "dropout=1.5"], None),
}


@pytest.mark.parametrize("row_id", list(PREFLIGHT))
def test_bad_input_is_refused_before_the_run(row_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlops_local.cli import main

    make_data, options, config_text = PREFLIGHT[row_id]
    data, runs = make_data(tmp_path), tmp_path / "runs"
    config = DATASET_CONFIG if config_text is None else written("config.yaml", config_text)(tmp_path)
    before = set(descendants(os.getpid()))
    started = time.monotonic()
    code = main(["run", "--json", "--source-root", str(ROOT), "--runs-dir", str(runs), "--data", str(data),
                 "--dataset-config", str(config), *options])
    out, err = capsys.readouterr()
    answer = json.loads(out)  # stdout is exactly one JSON object
    assert answer == {"error": answer["error"], "exit_code": code}
    assert_seen(ROWS[row_id], [*err.strip().splitlines(), f"exit {code}", json.dumps(answer)])
    assert time.monotonic() - started < 5  # refused in seconds: nothing was deployed or started
    assert not runs.exists() and set(descendants(os.getpid())) <= before


def test_an_interrupted_json_run_is_one_json_object(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from mlops_local import cli

    def interrupted(args: Any, out: Any) -> int:
        os.kill(os.getpid(), signal.SIGTERM)  # the CLI's handler raises here, as during any stage
        raise AssertionError("the signal did not interrupt the run")

    monkeypatch.setattr(cli, "run", interrupted)
    code = cli.main(["run", "--json"])
    out, err = capsys.readouterr()
    answer = json.loads(out)
    assert_seen(ROWS["json-interrupted"], [err.strip(), f"exit {code}", json.dumps(answer)])


def test_a_crashed_json_run_is_still_one_json_object(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """--json's promise (cli.Output): one JSON object on stdout whatever happens, a crash included."""
    from mlops_local import cli

    def crashing(args: Any, out: Any) -> int:
        raise RuntimeError("the CLI crashed")

    monkeypatch.setattr(cli, "run", crashing)
    code = cli.main(["run", "--json"])
    out, err = capsys.readouterr()
    answer = json.loads(out)
    assert code == answer["exit_code"] == 1 and "internal error: RuntimeError: the CLI crashed" in answer["error"]
    assert "Traceback" not in err and "traceback in " in err


# -- the model server's bad requests: answered, and it keeps serving -----------------------------------------
@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from training.predictor import Predictor
    from training.serve import build_server

    from tests.training.model_files import write_model_dir

    # The body timeout is 60 s in the image; 0.5 s here so the stalled body answers quickly.
    server = build_server(Predictor.load(write_model_dir(tmp_path_factory.mktemp("model"))), "127.0.0.1", 0,
                          body_timeout=0.5)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def exchange(server: Any, request: bytes, half_close: bool) -> tuple[str, str]:
    """(status line, body) of one raw HTTP exchange; `half_close` ends the request's bytes there."""
    with socket.create_connection(server.server_address[:2], timeout=10) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        reader = sock.makefile("rb")
        status = reader.readline().decode().strip()
        headers = {}
        while line := reader.readline().strip():
            name, _, value = line.decode().partition(":")
            headers[name.lower()] = value.strip()
        body = reader.read(int(headers["content-length"]))
    return status, body.decode()


def still_serving(server: Any) -> None:
    from tests.training.model_files import BY_HAND, CSV_BODY

    status, body = exchange(server, b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                                    b"Content-Length: %d\r\n\r\n" % len(CSV_BODY) + CSV_BODY, half_close=False)
    assert status == "HTTP/1.1 200 OK" and [float(v) for v in body.split()] == BY_HAND


REQUESTS = {
    "request-body-stalled": (b"Content-Length: 100\r\n\r\n1.5,Ideal,E,62\n", False),
    "request-body-cut-short": (b"Content-Length: 100\r\n\r\n1.5,Ideal,E,62\n", True),
    "request-1e308": (b"Content-Length: 17\r\n\r\n1e308,Ideal,E,62\n", False),
}


@pytest.mark.parametrize("row_id", list(REQUESTS))
def test_a_bad_request_is_answered_and_the_server_keeps_serving(row_id: str, model_server: Any) -> None:
    tail, half_close = REQUESTS[row_id]
    status, body = exchange(model_server, b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                            + tail, half_close)
    assert_seen(ROWS[row_id], [body, status])
    still_serving(model_server)


# -- the ETL's refusals --------------------------------------------------------------------------------------
def test_a_categorical_column_over_the_limit_fails_the_etl_naming_it() -> None:
    from glue_jobs import etl
    from training.dataset import DatasetConfigError

    with pytest.raises(DatasetConfigError) as refused:
        etl.check_cardinality("zip_code", [str(10000 + i) for i in range(1001)], "s3://…/diamonds.yaml")
    assert_seen(ROWS["categorical-over-limit"], [str(refused.value), type(refused.value).__name__])


# -- a Lambda worker killed mid-invocation (the engine's stand-in) ---------------------------------------------
def test_a_lambda_worker_killed_mid_invocation_fails_the_action(stand: Any) -> None:
    from tests.mlops_local.engine_stand import (HERE, actions_of, create_function, create_pipeline, data_source,
                                                lambda_action, wait_done)

    create_function(stand, "fault-sleeper", f"{HERE}.sleep_handler")
    create_pipeline(stand, "fault-lambda", [data_source(), {"name": "Work", "actions": [
        lambda_action("Sleep", "fault-sleeper", params={"seconds": 120})]}])
    s3 = stand.aws.client("s3")
    before = faults.snapshot(s3, "engine-data")
    execution_id = stand.aws.client("codepipeline").start_pipeline_execution(name="fault-lambda")["pipelineExecutionId"]
    [worker] = wait_until(lambda: [pid for pid in descendants(os.getpid()) if "lambda_worker()" in cmdline(pid)],
                          "the function's worker")
    wait_until(lambda: actions_of(stand, "fault-lambda", execution_id).get("Sleep"), "the invocation")
    os.kill(worker, signal.SIGKILL)
    execution = wait_done(stand, "fault-lambda", execution_id)
    action = actions_of(stand, "fault-lambda", execution_id)["Sleep"]
    assert_seen(ROWS["lambda-worker-killed"], [action["output"]["executionResult"]["externalExecutionSummary"],
                                               action["status"], execution["status"]])
    assert_log_exists(stand.aws.client("logs"), action["output"]["executionResult"]["externalExecutionSummary"])
    assert survivors([worker]) == []
    faults.assert_nothing_lost(before, faults.snapshot(s3, "engine-data"))


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# -- a model server dying while its endpoint is InService --------------------------------------------------
@pytest.fixture(scope="module")
def dead_server(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Kill an InService endpoint's model server; what DescribeEndpoint and InvokeEndpoint answered meanwhile
    and once it was replaced."""
    from mlops_local.sagemaker import endpoints as endpoints_module
    from mlops_local.sagemaker.model_servers import LocalServer

    from tests.mlops_local.endpoint_stand import deploy, endpoint_stand, in_service
    from tests.training.model_files import CSV_BODY

    opened = threading.Event()  # replacements wait until the state meanwhile has been seen

    class Gated(LocalServer):
        @classmethod
        def start(cls, *args: Any, **kwargs: Any) -> LocalServer:
            assert opened.wait(60), "the test never opened the gate"
            return LocalServer.start(*args, **kwargs)

    tmp = tmp_path_factory.mktemp("dead-server")
    with pytest.MonkeyPatch.context() as patch, \
            endpoint_stand(tmp, health_interval=0.1, capture_interval=None) as (aws, runtime, endpoints):
        patch.setattr(endpoints_module, "LocalServer", Gated)
        sm = aws.client("sagemaker")
        smr = aws.client("sagemaker-runtime", config=Config(retries={"total_max_attempts": 1}))
        opened.set()
        deploy(sm, "fault-endpoint")
        in_service(runtime, sm, "fault-endpoint")
        opened.clear()
        first = endpoints.served("fault-endpoint")
        pids = [first.process.pid, *descendants(first.process.pid)]
        first.process.kill()

        def replacing() -> dict[str, Any] | None:
            described = sm.describe_endpoint(EndpointName="fault-endpoint")
            return described if "VariantStatus" in described["ProductionVariants"][0] else None

        meanwhile = wait_until(replacing, "the health check to notice")
        with pytest.raises(ClientError) as refused:
            smr.invoke_endpoint(EndpointName="fault-endpoint", Body=CSV_BODY, ContentType="text/csv")
        opened.set()
        wait_until(lambda: not replacing(), "the replacement")
        answer = smr.invoke_endpoint(EndpointName="fault-endpoint", Body=CSV_BODY, ContentType="text/csv")
        with pytest.raises(ClientError) as bad:  # a bad request, through the endpoint, to the new server
            smr.invoke_endpoint(EndpointName="fault-endpoint", Body=b"1e308,Ideal,E,62\n", ContentType="text/csv")
        return {"meanwhile": meanwhile, "refused": refused.value.response, "bad": bad.value.response,
                "answer": answer["Body"].read().decode(), "pids": pids, "workdir": str(tmp),
                "first": first.process.pid, "second": endpoints.served("fault-endpoint").process.pid}


def test_a_dead_model_server_is_replaced(dead_server: dict[str, Any]) -> None:
    from tests.training.model_files import BY_HAND

    [status] = dead_server["meanwhile"]["ProductionVariants"][0]["VariantStatus"]
    error = dead_server["refused"]
    assert_seen(ROWS["model-server-died"], [
        f"{status['Status']}: {status['StatusMessage']}", f"{error['Error']['Code']}: {error['Error']['Message']}",
        dead_server["meanwhile"]["EndpointStatus"], str(error["ResponseMetadata"]["HTTPStatusCode"])])
    assert [float(v) for v in dead_server["answer"].split()] == BY_HAND  # served again, by a new process
    assert dead_server["second"] != dead_server["first"]
    assert survivors(dead_server["pids"]) == []


def test_a_bad_request_through_the_endpoint_is_a_model_error(dead_server: dict[str, Any]) -> None:
    error = dead_server["bad"]
    assert_seen(ROWS["endpoint-bad-request"], [f"{error['Error']['Code']}: {error['Error']['Message']}",
                                               str(error["ResponseMetadata"]["HTTPStatusCode"])])


@pytest.mark.parametrize("message", ["replacing", "model-error"])
def test_an_endpoints_messages_name_its_cloudwatch_logs(dead_server: dict[str, Any], message: str) -> None:
    """As SageMaker's: a ModelError ends "See https://<region>.console.aws.amazon.com/cloudwatch/home?region=
    <region>#logEventViewer:group=/aws/sagemaker/Endpoints/<name> in account <account> for more information."
    (aws/amazon-sagemaker-examples#1881, #407)."""
    [status] = dead_server["meanwhile"]["ProductionVariants"][0]["VariantStatus"]
    text = status["StatusMessage"] if message == "replacing" else dead_server["bad"]["Error"]["Message"]
    assert dead_server["workdir"] not in text
    assert text.endswith("See https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1"
                         "#logEventViewer:group=/aws/sagemaker/Endpoints/fault-endpoint in account 123456789012 "
                         "for more information.")


# -- SIGINT / SIGTERM of mlops-local while each stage's job runs ---------------------------------------------
# A child stands in for the CLI, as in test_signals.py: cli.interruptible around the run's LocalPipeline (closed
# in a `finally`, as run_pipeline closes it) while the stage's work runs: deploy.sh (bash and the aws CLI), a
# Glue run (a driver and its JVM stand-in), a training or processing job (its process and a child), a model
# server (the endpoint stand-in, which closes its endpoints).
STAGE_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path

    from mlops_local.cli import interruptible
    from mlops_local.pipeline_run import LocalPipeline
    from mlops_local.runtime import LocalImage
    from tests.conftest import ROOT
    from tests.mlops_local.sagemaker_requests import (BUCKET, EXECUTION, create_role, execution_statements,
                                                      splits, training_request)

    out, stage = Path(sys.argv[1]), sys.argv[2]
    WAITER = "import os, subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
    IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-training:faults"

    def ready(*ports):
        (out / "ready.tmp").write_text(" ".join(map(str, ports)))
        (out / "ready.tmp").rename(out / "ready")

    def job_stage(local):
        aws, runtime = local.aws, local.runtime
        runtime.images.images[IMAGE] = LocalImage(uri=IMAGE, dockerfile=ROOT / "src/training/Dockerfile",
                                                  programs={"train": [sys.executable, "-c", WAITER]},
                                                  code=ROOT / "src")
        s3, iam = aws.client("s3"), aws.client("iam")
        s3.create_bucket(Bucket=BUCKET)
        for key, body in splits().items():
            s3.put_object(Bucket=BUCKET, Key=f"runs/{EXECUTION}/etl/{key}", Body=body)
        if stage == "etl":
            create_role(iam, "glue", execution_statements()[:2], service="glue.amazonaws.com")
            s3.put_object(Bucket=BUCKET, Key="code/driver.py", Body=f"exec({WAITER!r})".encode())
            aws.client("glue").create_job(Name="etl", Role="glue", Command={
                "Name": "glueetl", "ScriptLocation": f"s3://{BUCKET}/code/driver.py"})
            run_id = aws.client("glue").start_job_run(JobName="etl")["JobRunId"]
            running = lambda: local.glue.runs[run_id].process
        else:
            create_role(iam, "sagemaker", execution_statements())
            if stage == "training":
                aws.client("sagemaker").create_training_job(**training_request("job", image=IMAGE))
                running = lambda: local.training.jobs["job"].process
            else:
                aws.client("sagemaker").create_processing_job(
                    ProcessingJobName="job", RoleArn="arn:aws:iam::123456789012:role/sagemaker",
                    AppSpecification={"ImageUri": IMAGE, "ContainerEntrypoint": ["python3", "-c", WAITER]},
                    ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                                           "VolumeSizeInGB": 10}})
                running = lambda: local.processing.jobs["job"].process
        while running() is None:
            time.sleep(0.05)
        ready(aws.url.rsplit(":", 1)[1])
        while True:
            time.sleep(0.1)

    def serving_stage():
        from tests.mlops_local.endpoint_stand import deploy, endpoint_stand, in_service

        with endpoint_stand(out) as (aws, runtime, endpoints):
            deploy(aws.client("sagemaker"), "endpoint")
            in_service(runtime, aws.client("sagemaker"), "endpoint")
            ready(aws.url.rsplit(":", 1)[1], endpoints.served("endpoint").port)
            while True:
                time.sleep(0.1)

    def work():
        if stage == "serving":
            serving_stage()
        local = LocalPipeline(out / "work", ROOT)
        try:
            if stage == "deploy":
                ready(local.aws.url.rsplit(":", 1)[1])
                local.script("deploy.sh", "--project-name", "mlops", "DataObjectKey=raw/diamonds.csv.gz",
                             "QualityThreshold=600", "TrainingHyperparameters={}", log=out / "deploy.log")
                raise AssertionError("the deploy ended before the signal")
            job_stage(local)
        finally:
            local.close()

    sys.exit(interruptible(work))
""")
STAGES = {f"{name}-during-{stage}": (sig, stage) for stage in ("deploy", "etl", "training", "evaluation", "serving")
          for name, sig in (("sigint", signal.SIGINT), ("sigterm", signal.SIGTERM))}


@pytest.mark.parametrize("row_id", list(STAGES))
def test_a_signal_during_a_stage_leaves_nothing(row_id: str, tmp_path: Path) -> None:
    sig, stage = STAGES[row_id]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), str(ROOT),
                                                                     os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen([sys.executable, "-c", STAGE_CHILD, str(tmp_path), stage], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_until(lambda: (tmp_path / "ready").exists() or child.poll() is not None, "the stage's job", 60)
        assert child.poll() is None, child.communicate()[1]
        ports = [int(port) for port in (tmp_path / "ready").read_text().split()]
        least = 1 if stage == "serving" else 2  # a model server; a job's leader and what it started
        pids = wait_until(lambda: (lambda found: found if len(found) >= least else None)(descendants(child.pid)),
                          "the job's processes")
        assert all(faults.port_open(port) for port in ports)
        child.send_signal(sig)
        signalled = time.monotonic()
        _, stderr = child.communicate(timeout=30)
        stopped_within = time.monotonic() - signalled
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert_seen(ROWS[row_id], [stderr.strip(), f"exit {child.returncode}"])
    assert stopped_within < 5.0, f"the run took {stopped_within:.1f} s to stop"  # what it stops stops at once
    assert survivors(pids) == []
    assert not [port for port in ports if faults.port_open(port)]


@pytest.mark.spark
def test_non_utf8_rows_are_quarantined_and_counted(tmp_path: Path) -> None:
    """The ETL on 60 rows of the shipped data, two with Latin-1 bytes: quarantined by reason, counted."""
    from glue_jobs import etl
    from training.dataset import load_config

    lines = gzip.decompress(DATA.read_bytes()).split(b"\n")[:61]
    for level, latin1 in ((b",Ideal,", b",Id\xe9al,"), (b",Premium,", b",Pr\xe9mium,")):  # a Latin-1 byte in
        at = next(i for i, line in enumerate(lines) if level in line)                # a UTF-8 file
        lines[at] = lines[at].replace(level, latin1)
    (tmp_path / "data.csv").write_bytes(b"\n".join(lines) + b"\n")
    spark = etl.build_spark("fault-matrix")  # the session the ETL tests started, if they ran first
    quality = etl.run_etl(spark, load_config(DATASET_CONFIG), str(tmp_path / "data.csv"), str(tmp_path / "out"),
                          endpoint_rows=5)
    written = json.loads((tmp_path / "out" / "data-quality.json").read_text())
    assert written == quality and quality["rows_in"] == 60
    assert_seen(ROWS["non-utf8-rows"], [
        f'"quarantined_by_reason": {json.dumps(quality["quarantined_by_reason"])}',
        f'"invalid_utf8": {quality["invalid_utf8"]}', f'"rows_out": {quality["rows_out"]}'])


# Each row's id -> the test that holds it.
SCENARIOS: dict[str, str] = {
    **{row_id: "test_job_fault" for row_id in JOB_SCENARIOS},
    "lambda-worker-killed": "test_a_lambda_worker_killed_mid_invocation_fails_the_action",
    "model-server-died": "test_a_dead_model_server_is_replaced",
    "endpoint-bad-request": "test_a_bad_request_through_the_endpoint_is_a_model_error",
    "json-interrupted": "test_an_interrupted_json_run_is_one_json_object",
    **{row_id: "test_bad_input_is_refused_before_the_run" for row_id in PREFLIGHT},
    **{row_id: "test_a_bad_request_is_answered_and_the_server_keeps_serving" for row_id in REQUESTS},
    "categorical-over-limit": "test_a_categorical_column_over_the_limit_fails_the_etl_naming_it",
    "non-utf8-rows": "test_non_utf8_rows_are_quarantined_and_counted",
    **{row_id: "test_a_signal_during_a_stage_leaves_nothing" for row_id in STAGES},
}


def test_every_row_has_a_scenario_and_every_scenario_a_row() -> None:
    assert sorted(set(ROWS) - set(SCENARIOS)) == [], "rows of docs/FAULTS.md no scenario holds"
    assert sorted(set(SCENARIOS) - set(ROWS)) == [], "scenarios without a row in docs/FAULTS.md"
    assert all(name in globals() for name in SCENARIOS.values())


def test_the_table_parses_as_its_tests_read_it() -> None:
    """Each row quotes at least one text, and `…` patterns match as wildcards, not as literal dots."""
    assert all(row.sees for row in ROWS.values()), [row.id for row in ROWS.values() if not row.sees]
    assert faults.pattern("exit … (SIGTERM)").fullmatch("exit 143 (SIGTERM)")
    assert not faults.pattern("a.c").fullmatch("abc")
