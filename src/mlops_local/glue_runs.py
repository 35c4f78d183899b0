"""Glue job runs that run: the job's script under local Spark, with S3 staged around it.

moto keeps the job definitions (CreateJob / GetJob pass through); moto's runs only walk a timer
through their states, so StartJobRun, GetJobRun, GetJobRuns and BatchStopJobRun are served here.

A run, in `<workdir>/glue/<run id>/`:
- STARTING: the script (Command.ScriptLocation), the `--extra-py-files` zips (put on PYTHONPATH)
  and every `s3://` argument are staged. An argument naming an existing object is an input and is
  downloaded to `input/<bucket>/<key>`; any other `s3://` value is an output prefix: an empty
  folder `output/<bucket>/<key>/` stands in for it.
- RUNNING: `python <script> --JOB_NAME <name> --key value ...` with local paths, this process's
  environment plus the stand-in's endpoint, stdout in `run.log` and stderr in `error.log`, copied as the
  run's role to CloudWatch Logs: /aws-glue/jobs/output and /aws-glue/jobs/error, stream = the JobRunId
  (Glue Developer Guide, "Logging for AWS Glue jobs"), or the groups the job's security configuration
  or arguments name (`log_groups`).
- SUCCEEDED once every output folder is uploaded to its prefix (keys relative to the folder);
  FAILED with the root cause (a killed driver, a corrupt input file, a Spark driver whose JVM died, else
  the log's last error line) and the log stream to read, as ErrorMessage; STOPPED after BatchStopJobRun;
  TIMEOUT after the job's Timeout (minutes). When the driver exits, what is left of its process group
  (Spark's JVM) is stopped.

A run acts as its job's Role, as Glue's does: the staging is signed as the role's session (assumed as
glue.amazonaws.com, which the trust policy must allow) and the script runs with its credentials. A
denial fails the run with AWS's denial text in ErrorMessage.
"""
from __future__ import annotations

import atexit
import datetime as dt
import gzip
import logging
import os
import secrets
import subprocess
import sys
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, TypeVar

from mlops_local import processes, s3_staging
from mlops_local.cloudwatch_logs import LogWriter, follow_file
from mlops_local.gateway import AwsError, now, paginate
from mlops_local.runtime import RoleCredentials, RoleNotAssumable, Runtime

logger = logging.getLogger(__name__)
T = TypeVar("T")

LOG_GROUP = "/aws-glue/jobs"
DEFAULT_TIMEOUT_MINUTES = 2880  # Glue's default for a job without Timeout
ACTIVE = ("STARTING", "RUNNING", "STOPPING", "WAITING")
EXTRA_PY_FILES = "--extra-py-files"
SERVICE = "glue.amazonaws.com"
SESSION_NAME = "GlueJobRunnerSession"  # the session name Glue's job runs assume their role with (CloudTrail)


class StagingDenied(Exception):
    """IAM denied the run's role a staging request; the message is the run's ErrorMessage."""


@dataclass
class GlueRun:
    id: str
    job_name: str
    arguments: dict[str, str]          # as StartJobRun gave them (what GetJobRun reports)
    merged: dict[str, str]             # DefaultArguments overridden by the run's
    job: dict[str, Any]                # GetJob's Job, as it was when the run started
    base: Path
    timeout_minutes: int
    state: str = "STARTING"
    started_on: dt.datetime = field(default_factory=now)
    last_modified_on: dt.datetime = field(default_factory=now)
    completed_on: dt.datetime | None = None
    running_since: dt.datetime | None = None
    error_message: str | None = None
    process: subprocess.Popen | None = None
    stop_requested: bool = False
    session: RoleCredentials | None = field(default=None, repr=False)  # the job's Role, once the run starts
    inputs: list[tuple[str, Path]] = field(default_factory=list)        # (s3:// URI, staged file)
    outputs: list[tuple[str, Path]] = field(default_factory=list)       # (s3:// prefix, local folder)

    @property
    def log(self) -> Path:
        """The driver's stdout."""
        return self.base / "run.log"

    @property
    def errors(self) -> Path:
        """The driver's stderr (Spark's own log lines, tracebacks)."""
        return self.base / "error.log"

    def log_groups(self) -> tuple[str, str]:
        """The (output, error) CloudWatch Logs groups of the run. Glue 5.0 writes /aws-glue/jobs/output and
        /aws-glue/jobs/error, `<prefix>/output` and `<prefix>/error` with --custom-logGroup-prefix (Glue
        Developer Guide, "Logging for AWS Glue jobs"); a job with a security configuration that encrypts its
        logs writes /aws-glue/jobs/<configuration>-role/<role name>/{output,error} (the groups the
        configuration's key encrypts; see templates/pipeline.yaml GlueSecurityConfiguration);
        --continuous-log-logGroup names the group of the driver's log (Glue 4.0 continuous logging)."""
        prefix = self.log_group_prefix()
        output, error = f"{prefix}/output", f"{prefix}/error"
        continuous = self.merged.get("--continuous-log-logGroup")
        return output, continuous or error

    def log_group_prefix(self) -> str:
        custom = self.merged.get("--custom-logGroup-prefix")
        if custom:
            return custom.rstrip("/")
        configuration = self.job.get("SecurityConfiguration")
        if configuration:
            role = str(self.job.get("Role") or "").rsplit("/", 1)[-1]
            return f"{LOG_GROUP}/{configuration}-role/{role}"
        return LOG_GROUP

    def describe(self) -> dict[str, Any]:
        end = self.completed_on or now()
        run: dict[str, Any] = {
            "Id": self.id, "Attempt": 0, "JobName": self.job_name, "JobRunState": self.state,
            "StartedOn": self.started_on, "LastModifiedOn": self.last_modified_on,
            "Arguments": dict(self.arguments), "PredecessorRuns": [],
            "ExecutionTime": int((end - self.running_since).total_seconds()) if self.running_since else 0,
            "Timeout": self.timeout_minutes, "LogGroupName": self.log_group_prefix(),
        }
        if self.completed_on is not None:
            run["CompletedOn"] = self.completed_on
        if self.error_message:
            run["ErrorMessage"] = self.error_message
        for key in ("GlueVersion", "WorkerType", "NumberOfWorkers", "MaxCapacity", "ExecutionClass"):
            if key in self.job:
                run[key] = self.job[key]
        return run


class GlueRuns:
    """StartJobRun / GetJobRun / GetJobRuns / BatchStopJobRun over real local runs."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.runs: dict[str, GlueRun] = {}
        self.lock = threading.RLock()  # _finish also runs inside a locked section

    def register(self) -> "GlueRuns":
        gateway = self.runtime.aws.gateway
        gateway.operation("AWSGlue.StartJobRun", self.start_job_run)
        gateway.operation("AWSGlue.GetJobRun", self.get_job_run)
        gateway.operation("AWSGlue.GetJobRuns", self.get_job_runs)
        gateway.operation("AWSGlue.BatchStopJobRun", self.batch_stop_job_run)
        atexit.register(self.close)  # a run's process leads its own session: it would outlive us
        return self

    def close(self) -> None:
        """Stop every active run's process (the stand-in is going away)."""
        with self.lock:
            active = [r for r in self.runs.values() if r.state in ACTIVE]
            for run in active:
                run.stop_requested = True
        for run in active:
            if run.process is not None:
                processes.stop(run.process, grace=5.0)

    # -- operations -------------------------------------------------------------------------------
    def start_job_run(self, params: dict[str, Any]) -> dict[str, Any]:
        name = required(params, "JobName")
        job = self._job(name)
        arguments = dict(params.get("Arguments") or {})
        limit = (job.get("ExecutionProperty") or {}).get("MaxConcurrentRuns") or 1
        with self.lock:
            active = sum(1 for r in self.runs.values() if r.job_name == name and r.state in ACTIVE)
            if active >= limit:
                raise AwsError("ConcurrentRunsExceededException",
                               f"Concurrent runs exceeded for {name}: {active} run(s) active, "
                               f"MaxConcurrentRuns is {limit}")
            run_id = "jr_" + secrets.token_hex(32)
            run = GlueRun(id=run_id, job_name=name, arguments=arguments,
                          merged={**(job.get("DefaultArguments") or {}), **arguments}, job=job,
                          base=self.runtime.workdir / "glue" / run_id,
                          timeout_minutes=int(params.get("Timeout") or job.get("Timeout")
                                              or DEFAULT_TIMEOUT_MINUTES))
            self.runs[run_id] = run
        logger.info("Glue job %s: run %s STARTING (%s)", name, run_id, run.base)
        self.runtime.changes.notify()
        threading.Thread(target=self._execute, args=(run,), name=f"glue-{run_id[:12]}", daemon=True).start()
        return {"JobRunId": run_id}

    def get_job_run(self, params: dict[str, Any]) -> dict[str, Any]:
        run = self._run(required(params, "JobName"), required(params, "RunId"))
        with self.lock:
            return {"JobRun": run.describe()}

    def get_job_runs(self, params: dict[str, Any]) -> dict[str, Any]:
        name = required(params, "JobName")
        self._job(name)
        with self.lock:
            runs = sorted((r for r in self.runs.values() if r.job_name == name),
                          key=lambda r: r.started_on, reverse=True)
            described = [r.describe() for r in runs]
        page, token = paginate(described, params, default_size=100)
        return {"JobRuns": page, **({"NextToken": token} if token else {})}

    def batch_stop_job_run(self, params: dict[str, Any]) -> dict[str, Any]:
        name = required(params, "JobName")
        stopped: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for run_id in params.get("JobRunIds") or []:
            run = self.runs.get(run_id)
            if run is None or run.job_name != name:
                errors.append(stop_error(name, run_id, "EntityNotFoundException",
                                         f"Job Run {run_id} of job {name} not found"))
                continue
            with self.lock:
                if run.state not in ("STARTING", "RUNNING", "WAITING"):
                    errors.append(stop_error(name, run_id, "InvalidInputException",
                                             f"Job Run {run_id} is {run.state} and cannot be stopped"))
                    continue
                run.stop_requested = True
                self._set(run, "STOPPING")
                process = run.process
            if process is not None:
                threading.Thread(target=processes.stop, args=(process,), daemon=True).start()
            stopped.append({"JobName": name, "JobRunId": run_id})
        return {"SuccessfulSubmissions": stopped, "Errors": errors}

    # -- the run ----------------------------------------------------------------------------------
    def _execute(self, run: GlueRun) -> None:
        try:
            run.session = self._session(run)
            argv, env, outputs = self._acting(run, "", lambda: self._stage(run))
            with self.lock:
                if run.stop_requested:
                    self._finish(run, "STOPPED")
                    return
                logs = self.runtime.client_as("logs", run.session)
                output, error = run.log_groups()
                followers = [follow_file(run.log, LogWriter(logs, output, run.id)),
                             follow_file(run.errors, LogWriter(logs, error, run.id))]
                try:
                    run.process = processes.start(argv, env, run.log, cwd=run.base, errors=run.errors)
                except BaseException:
                    for follower in followers:
                        follower.close()
                    raise
                run.running_since = now()
                self._set(run, "RUNNING")
            try:
                code = run.process.wait(timeout=run.timeout_minutes * 60)
            except subprocess.TimeoutExpired:
                processes.stop(run.process)
                self._finish(run, "TIMEOUT", f"Job run timed out after {run.timeout_minutes} minutes")
                return
            finally:
                if run.process.poll() is not None:  # the driver's JVM and helpers end with it
                    processes.reap(run.process)
                for follower in followers:
                    follower.close()
            if run.stop_requested:
                self._finish(run, "STOPPED")
            elif code != 0:
                # No log location, as Glue's ErrorMessage has none: MonitorEtl adds the group and stream.
                self._finish(run, "FAILED", f"{self._cause(run, code)} (exit code {processes.exit_status(code)})")
            else:
                s3 = self.runtime.client_as("s3", run.session)
                for uri, folder in outputs:
                    keys = self._acting(run, uri, lambda: s3_staging.upload_dir(s3, folder, uri))
                    logger.info("Glue job %s run %s: uploaded %d file(s) to %s", run.job_name, run.id,
                                len(keys), uri)
                self._finish(run, "SUCCEEDED")
        except (s3_staging.StagingError, StagingDenied, RoleNotAssumable) as exc:
            self._finish(run, "FAILED", str(exc))
        except Exception as exc:  # a bug here must end the run, not leave it RUNNING forever
            logger.exception("Glue job %s run %s: the local runtime failed", run.job_name, run.id)
            self._finish(run, "FAILED", f"local runtime error: {type(exc).__name__}: {exc}")

    def _cause(self, run: GlueRun, code: int) -> str:
        """The root cause of a failed driver: killed by a signal, a corrupt (truncated) .gz input named by its
        s3:// URI, the Spark driver's JVM gone, else the last error line (processes.root_cause)."""
        killed = processes.signal_name(code) if code < 0 else None
        if not killed:
            for uri, path in run.inputs:
                damage = gzip_damage(path)
                if damage:
                    return f"corrupt input file {uri}: {damage}"
        staged = {str(path): uri for uri, path in run.inputs}

        def name_file(path: str) -> str:
            local = path.removeprefix("file://").removeprefix("file:")
            return staged.get(local, path)

        cause = processes.root_cause(code, run.errors, run.log, program="Spark driver", name_file=name_file)
        # The driver's error lines quote the staged copies; the user knows them by their s3:// URIs.
        return processes.in_their_words(cause, [(str(path), uri.rstrip("/"))
                                                for uri, path in [*run.inputs, *run.outputs]])

    def _session(self, run: GlueRun) -> RoleCredentials:
        """The job's Role session (Role is a name or an ARN, as CreateJob takes it)."""
        role = str(run.job.get("Role") or "")
        if not role.startswith("arn:"):
            role = f"arn:aws:iam::{self.runtime.aws.account_id}:role/{role}"
        return self.runtime.session(role, SESSION_NAME, SERVICE)

    def _acting(self, run: GlueRun, uri: str, work: Callable[[], T]) -> T:
        """`work` as the run's role: an S3 request IAM denied becomes StagingDenied with AWS's text, in the
        shape the S3 client of a Glue job reports it ("... (Service: Amazon S3; Status Code: 403; Error Code:
        AccessDenied; ...)", aws-samples/dbt-glue#169). The text comes from the access log: S3 answers a
        denied HeadObject, the first request of a download, with no body."""
        from botocore.exceptions import ClientError

        assert run.session is not None
        since = len(self.runtime.access_log)
        try:
            return work()
        except (s3_staging.StagingError, ClientError) as exc:
            message = self.runtime.denial(run.session, since)
            if message is None:
                if isinstance(exc, ClientError):
                    raise s3_staging.StagingError(f"{uri or 'staging'}: {exc}") from None
                raise
            raise StagingDenied(f"{message} (Service: Amazon S3; Status Code: 403; Error Code: AccessDenied)") \
                from None

    def _stage(self, run: GlueRun) -> tuple[list[str], dict[str, str], list[tuple[str, Path]]]:
        """The command, environment and (s3 prefix, local folder) outputs of a run, staged as its role."""
        run.base.mkdir(parents=True, exist_ok=True)
        assert run.session is not None
        s3 = self.runtime.client_as("s3", run.session)
        script_uri = (run.job.get("Command") or {}).get("ScriptLocation", "")
        try:
            s3_staging.split_s3_uri(script_uri)
        except s3_staging.StagingError:
            raise s3_staging.StagingError(f"Command.ScriptLocation must be an s3:// URI, got {script_uri!r}") from None
        if not s3_staging.object_exists(s3, script_uri):
            raise s3_staging.StagingError(f"the job's script {script_uri} does not exist")
        script = s3_staging.download_object(s3, script_uri, run.base / "script" /
                                            PurePosixPath(script_uri).name)

        python_path: list[str] = []
        arguments: list[str] = []
        outputs: list[tuple[str, Path]] = []
        for key, value in run.merged.items():
            if key == EXTRA_PY_FILES:
                for uri in filter(None, (v.strip() for v in value.split(","))):
                    if not s3_staging.object_exists(s3, uri):
                        raise s3_staging.StagingError(f"{EXTRA_PY_FILES}: {uri} does not exist")
                    python_path.append(str(s3_staging.download_object(
                        s3, uri, run.base / "py" / PurePosixPath(uri).name)))
                arguments += [key, ",".join(python_path)]
            elif isinstance(value, str) and value.startswith("s3://"):
                bucket, object_key = s3_staging.split_s3_uri(value)
                if s3_staging.object_exists(s3, value):
                    local = s3_staging.download_object(s3, value, run.base / "input" / bucket / object_key)
                    run.inputs.append((value, local))
                    arguments += [key, str(local)]
                else:
                    folder = run.base.joinpath("output", bucket, *PurePosixPath(object_key).parts)
                    folder.mkdir(parents=True, exist_ok=True)
                    outputs.append((value, folder))
                    run.outputs.append((value, folder))
                    arguments += [key, str(folder) + ("/" if value.endswith("/") else "")]
            else:
                arguments += [key, value]

        env = {**os.environ, **self.runtime.aws.environment(), **run.session.environment()}
        env["PYTHONPATH"] = os.pathsep.join(python_path + [p for p in [env.get("PYTHONPATH")] if p])
        argv = [sys.executable, str(script), "--JOB_NAME", run.job_name, *arguments]
        with run.log.open("w", encoding="utf-8") as log:
            log.write(f"[local glue] {' '.join(argv)}\n")
        return argv, env, outputs

    # -- bookkeeping ------------------------------------------------------------------------------
    def _set(self, run: GlueRun, state: str, moment: dt.datetime | None = None) -> None:
        run.state, run.last_modified_on = state, moment or now()
        logger.info("Glue job %s: run %s %s", run.job_name, run.id, state)
        self.runtime.changes.notify()

    def _finish(self, run: GlueRun, state: str, error: str | None = None) -> None:
        with self.lock:
            if run.stop_requested and state == "FAILED":  # the stop cut the run's staging short
                state, error = "STOPPED", None
            run.completed_on = now()
            run.error_message = error
            self._set(run, state, run.completed_on)
        if error:
            logger.warning("Glue job %s: run %s %s: %s", run.job_name, run.id, state, error)

    def _job(self, name: str) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        try:
            return self.runtime.aws.client("glue").get_job(JobName=name)["Job"]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "EntityNotFoundException":
                raise AwsError("EntityNotFoundException", error.get("Message") or f"Job {name} not found.")
            raise

    def _run(self, name: str, run_id: str) -> GlueRun:
        run = self.runs.get(run_id)
        if run is None or run.job_name != name:
            self._job(name)  # an unknown job is reported as such
            raise AwsError("EntityNotFoundException", f"Job Run with id {run_id} not found for job {name}")
        return run


def gzip_damage(path: Path) -> str | None:
    """What is wrong with a .gz file (truncated, not gzip, bad CRC), None when it reads to the end or is not
    a .gz. Spark reports such a file as a bare java.io.EOFException / ZipException deep in its log."""
    if not path.name.endswith(".gz"):
        return None
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 20):
                pass
    except (EOFError, OSError, zlib.error) as exc:  # truncated; not gzip or a bad CRC; a damaged stream
        return f"{type(exc).__name__}: {exc}"
    return None


def required(params: dict[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise AwsError("InvalidInputException", f"{key} is required")
    return value


def stop_error(name: str, run_id: str, code: str, message: str) -> dict[str, Any]:
    return {"JobName": name, "JobRunId": run_id, "ErrorDetail": {"ErrorCode": code, "ErrorMessage": message}}
