"""`mlops-local`: run the project on this machine.

    mlops-local run [--source-root DIR] [--data CSV] [--dataset-config YAML] [--quality-threshold X]
                    [--keep-running] [--auto-approve] [--json] [-H KEY=VALUE ...]
    mlops-local summary EXECUTION_ID [--pipeline NAME] [--runs-dir DIR] [--json]
    mlops-local synthetic --rows N --out CSV [--seed S]

Exit codes of `run`: 0 approved, deployed to dev and prod and tested; 3 model REJECTED by the quality gate;
4 the production approval rejected (by a person, or expired unanswered); 1 any other failure;
130 interrupted by Ctrl-C (SIGINT), 143 by SIGTERM, 129 by SIGHUP (128 + the signal's number).
With --json stdout holds one JSON object in every case: the summary, or {"error", "exit_code"}.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import traceback
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator, NoReturn

from mlops_local import processes

DEFAULT_DATA = Path("data") / "diamonds.csv.gz"      # relative to --source-root
DEFAULT_CONFIG = Path("data") / "diamonds.yaml"
PROJECT_FILES = ("templates/pipeline.yaml", "scripts/deploy.sh", "src/training/Dockerfile")
DISTRIBUTION = "mlops-codepipeline"  # setup.cfg's name: --version reads its installed metadata
DEFAULT_PIPELINE_STACK = "mlops-pipeline"  # what `run` deploys (pipeline_run.STACK)

EXIT_CODES = """exit codes:
  0    approved, deployed and the endpoint tests passed, dev and prod (summary: the summary was written)
  1    any other failure: a bad argument, the deploy, a failed stage (summary.json says which)
  2    a usage error (argparse)
  3    the model was REJECTED by the quality gate
  4    the Manual approval for prod was rejected, or expired unanswered (summary.json's approval says by whom)
  129  SIGHUP, 130 Ctrl-C (SIGINT), 143 SIGTERM: stopped, no process of the run left (128 + signal)

with --json, stdout holds exactly one JSON object: the summary, or {"error": ..., "exit_code": ...}"""

EXAMPLES = """examples:
  mlops-local run                                   the shipped data set, from the checkout
  mlops-local run --quality-threshold 700 -H epochs=20 -H learning_rate=0.001
  mlops-local run --auto-approve                    unattended: the run approves prod itself
  mlops-local run --keep-running                    then, in another shell, with the printed endpoint:
      AWS_ENDPOINT_URL=http://127.0.0.1:PORT aws codepipeline list-pipeline-executions --pipeline-name NAME
      AWS_ENDPOINT_URL=http://127.0.0.1:PORT mlops-local summary EXECUTION_ID
  mlops-local run --json > summary.json             progress on stderr, the summary on stdout
  mlops-local summary EXECUTION_ID --pipeline NAME  any execution on AWS (default credentials)
  mlops-local approve EXECUTION_ID --summary "metrics reviewed"   answer its waiting Manual approval
  mlops-local reject EXECUTION_ID                   reject it: the execution stops there"""


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one JSON object on stdout when --json was asked for."""

    def error(self, message: str) -> NoReturn:
        if getattr(self, "json_requested", False):
            print(json.dumps({"error": f"{self.prog}: error: {message}", "exit_code": 2}))
        super().error(message)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog="mlops-local", description=__doc__.split("\n")[0], epilog=f"{EXIT_CODES}\n\n{EXAMPLES}",
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = commands.add_parser("run", help="deploy and run the real pipeline on the local stand-in for AWS",
                              description="Deploy the pipeline stack on a local stand-in for AWS, upload the "
                              "data, run one execution and write runs/<execution-id>/summary.json, report.md "
                              "and the plots.", epilog=f"{EXIT_CODES}\n\n{EXAMPLES}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(run, keep="keep the stand-in and the endpoint up until Ctrl-C")

    summary = commands.add_parser(
        "summary", help="write summary.json and report.md for any execution, from public API answers",
        description="Write runs/<execution-id>/summary.json and report.md for an execution however it started "
        "(mlops-local run, a trigger, the console), from the AWS APIs at AWS_ENDPOINT_URL (a running "
        "`mlops-local run --keep-running`) or AWS itself. The access section needs the stand-in's own log and "
        "is absent.", epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    summary.add_argument("execution_id", metavar="EXECUTION_ID")
    summary.add_argument("--pipeline", help="the pipeline's name (default: the one with that execution)")
    summary.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where runs/<id>/ is written")
    summary.add_argument("--json", action="store_true", help="print summary.json instead of the report")

    for verb, status in (("approve", "Approved"), ("reject", "Rejected")):
        answer = commands.add_parser(
            verb, help=f"answer an execution's waiting Manual approval action: {status}",
            description=f"PutApprovalResult ({status}) for the approval action the execution waits at, found with "
            "GetPipelineState, at AWS_ENDPOINT_URL (a running `mlops-local run --keep-running`) or AWS itself.",
            epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
        answer.add_argument("execution_id", metavar="EXECUTION_ID")
        answer.add_argument("--pipeline", help="the pipeline's name (default: the one with that execution)")
        answer.add_argument("--summary", default=f"{status.lower()} with mlops-local {verb}",
                            help="the approval's summary (at most 512 characters)")
        answer.add_argument("--json", action="store_true", help="print the answer as one JSON object")

    synthetic = commands.add_parser("synthetic", help="write synthetic rows shaped like a data set")
    synthetic.add_argument("--rows", type=int, required=True)
    synthetic.add_argument("--out", type=Path, required=True)
    synthetic.add_argument("--data", type=Path)
    synthetic.add_argument("--dataset-config", type=Path)
    synthetic.add_argument("--source-root", type=Path, default=Path.cwd(),
                           help="project checkout the default --data and --dataset-config are in (default: .)")
    synthetic.add_argument("--seed", type=int, default=0)
    if "--json" in (sys.argv[1:] if argv is None else argv):
        parser.json_requested = True  # type: ignore[attr-defined]
        for choice in commands.choices.values():
            choice.json_requested = True  # type: ignore[attr-defined]
    args = parser.parse_args(argv)
    if args.command in ("run", "synthetic"):
        args.data = args.data or args.source_root / DEFAULT_DATA
        args.dataset_config = args.dataset_config or args.source_root / DEFAULT_CONFIG
    return args


def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def add_run_options(parser: argparse.ArgumentParser, keep: str) -> None:
    parser.add_argument("--source-root", type=Path, default=Path.cwd(),
                        help="project checkout whose templates, scripts and code run (default: .)")
    parser.add_argument("--data", type=Path, help=f"raw CSV (default: <source root>/{DEFAULT_DATA})")
    parser.add_argument("--dataset-config", type=Path,
                        help=f"dataset config YAML (default: <source root>/{DEFAULT_CONFIG})")
    parser.add_argument("--quality-threshold", type=float, help="approve when test RMSE <= this")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where runs/<id>/ is written")
    parser.add_argument("--keep-running", action="store_true", help=keep)
    parser.add_argument("--auto-approve", action="store_true",
                        help="answer every Manual approval (the prod gate) with Approved, as the mlops-local user "
                             "(default: the run waits for `mlops-local approve|reject <execution-id>`)")
    parser.add_argument("--json", action="store_true",
                        help="print summary.json (or {error, exit_code}) on stdout; progress goes to stderr")
    parser.add_argument("--live", dest="live", action="store_true", default=None,
                        help="a live view of the stages (default: when the output is a terminal)")
    parser.add_argument("--no-live", dest="live", action="store_false", help="plain lines, one per status change")
    parser.add_argument("--hyperparameter", "-H", action="append", default=[], metavar="KEY=VALUE",
                        help="training hyperparameter (repeatable)")
    parser.add_argument("--no-enforce-iam", dest="enforce_iam", action="store_false",
                        help="debugging only: serve requests IAM would deny; access.jsonl and the report "
                             "then list them as would-be denials (local green no longer means AWS green)")


def main(argv: list[str] | None = None) -> int:
    """The command's exit code. Without `argv` main is the program (the `mlops-local` script, `python -m`):
    it reads sys.argv and ends the process itself (exit_process); with `argv` it returns, as a library."""
    code = _command(argv)
    if argv is None:
        exit_process(code)
    return code


def exit_process(code: int) -> NoReturn:
    """End the process as Python's exit does, in its order (threading's exit hooks and the join of every
    non-daemon thread, then the atexit handlers, then stdout and stderr flushed), but without the
    interpreter's teardown, which freed the stand-in's ~450,000 objects (moto's backends, botocore's
    models) one by one: 1-1.4 s after a run's last line, for nothing."""
    getattr(threading, "_shutdown")()  # what Py_FinalizeEx calls first (concurrent.futures stops its workers)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing left to say there
            stream.flush()
    os._exit(code)


def _command(argv: list[str] | None) -> int:
    args = parse_args(argv)
    if args.command == "synthetic":
        from mlops_local.synthetic import write_synthetic

        write_synthetic(args.data, args.dataset_config, args.out, args.rows, seed=args.seed)
        print(f"wrote {args.rows} synthetic rows to {args.out}")
        return 0
    out = Output(args.json)
    command = {"summary": summary, "approve": approve, "reject": approve}.get(args.command, run)
    try:
        code = interruptible(lambda: command(args, out), say=out.interrupted)
    except Exception as exc:  # a bug: one line (and with --json one JSON object); the traceback goes to a file
        trace = Path(tempfile.gettempdir()) / f"mlops-local-crash-{os.getpid()}.txt"
        trace.write_text(traceback.format_exc())
        code = out.fail(f"internal error: {type(exc).__name__}: {exc} (traceback in {trace}; please report it)")
    out.finish(code)
    return code


class Output:
    """stdout of a command: the report, or with --json exactly one JSON object whatever happens
    (the summary; else {"error", "exit_code"} for a failure before it or an interruption)."""

    def __init__(self, json_mode: bool) -> None:
        self.json = json_mode
        self.error: str | None = None
        self.done = False

    def fail(self, message: str) -> int:
        print(f"mlops-local: {message}", file=sys.stderr, flush=True)
        self.error = message
        return 1

    def interrupted(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        self.error = line.removeprefix("mlops-local: ")

    def result(self, summary: dict[str, Any], report: str) -> None:
        print(json.dumps(summary, indent=2, default=str) if self.json else report, flush=True)
        self.done = True

    def finish(self, code: int) -> None:
        if self.json and not self.done:
            print(json.dumps({"error": self.error or f"failed (exit {code})", "exit_code": code}), flush=True)
            self.done = True


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread so every `finally` stops what it started; not an
    Exception, so no `except Exception` on the way (botocore's retries, a component's) swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def interruptible(work: Callable[[], int], say: Callable[[str], None] | None = None) -> int:
    """`work()`'s exit code; on SIGINT, SIGTERM or SIGHUP its `finally` blocks run, then every
    process it started that is still there is stopped, one line says so, and the code is 128 + the
    signal. On a crash too nothing it started survives."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    received: list[int] = []
    stopped_before = [processes.stopped_count()]
    spare = processes.existing()  # not the run's: a caller's own (main() in a test)
    try:
        with _handling_signals(received, stopped_before):
            try:
                return work()
            finally:
                with processes.cleaning_up():
                    processes.stop_all(grace=5.0, spare=spare)  # the last resort: whatever close() did not reach
    except (KeyboardInterrupt, Terminated):
        signum = received[0] if received else signal.SIGINT
        stopped = processes.stopped_count() - stopped_before[0]
        say(f"mlops-local: interrupted ({signal.Signals(signum).name}); stopped {stopped} "
            f"process{'' if stopped == 1 else 'es'}")
        return 128 + signum


@contextlib.contextmanager
def _handling_signals(received: list[int], stopped_before: list[int]) -> Iterator[None]:
    """The first stop signal raises (KeyboardInterrupt for SIGINT, as Python does; Terminated for
    the others); later ones, and one during a cleanup, are noted and ignored, so a second Ctrl-C
    cannot cut the cleanup short."""
    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) > 1 or processes.in_cleanup():
            return
        stopped_before[0] = processes.stopped_count()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def run(args: argparse.Namespace, out: Output) -> int:
    """The pipeline on the stand-in: deploy, upload, execute, summarise."""
    from mlops_local import preflight
    from mlops_local.console import console_for
    from mlops_local.pipeline_run import PipelineOptions, run_pipeline
    from mlops_local.summary import render_report
    from training.dataset import DatasetConfigError, load_config

    missing = [name for name in PROJECT_FILES if not (args.source_root / name).is_file()]
    if missing:
        return out.fail(f"{args.source_root.resolve()} is not the project's checkout (no {', '.join(missing)}); "
                        "run from the checkout or pass --source-root")
    for path, what in ((args.data, "--data"), (args.dataset_config, "--dataset-config")):
        if not path.is_file():
            return out.fail(f"{what} {path} does not exist")
    try:
        config = load_config(args.dataset_config)
        hyperparameters = dict(_key_value(item) for item in args.hyperparameter)
    except (DatasetConfigError, ValueError) as exc:
        return out.fail(str(exc))
    threshold = args.quality_threshold if args.quality_threshold is not None else config.quality_threshold
    if threshold is None:
        return out.fail(f"no quality threshold: pass --quality-threshold or set quality_threshold in "
                        f"{args.dataset_config}")
    problems = preflight.check(args.data, args.dataset_config, threshold, hyperparameters)
    if problems:  # a doomed run fails in a second, before the stand-in starts
        return out.fail("cannot start the run:\n" + "\n".join(f"- {problem}" for problem in problems))
    say = console_for(sys.stderr if args.json else sys.stdout, live=args.live)
    options = PipelineOptions(source_root=args.source_root.resolve(), data=args.data.resolve(),
                              dataset_config=args.dataset_config.resolve(),
                              runs_dir=args.runs_dir.resolve(), quality_threshold=threshold,
                              keep_running=args.keep_running, hyperparameters=hyperparameters,
                              enforce_iam=args.enforce_iam, auto_approve=args.auto_approve)
    try:
        code, result = run_pipeline(options, say)
    except Exception as exc:  # the stand-in could not deploy or run: say what and where
        return out.fail(str(exc))
    finally:
        say.close()
    out.result(result, render_report(result))
    return code


def summary(args: argparse.Namespace, out: Output) -> int:
    """`mlops-local summary`: any execution's summary from the APIs AWS_ENDPOINT_URL (or AWS) answers."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from mlops_local.pipeline_run import results_line
    from mlops_local.summary import find_pipeline, render_report, summarise_execution

    session = boto3.session.Session()
    config = Config(retries={"mode": "standard"})

    def client(service: str) -> Any:
        return session.client(service, config=config)

    try:
        pipeline = args.pipeline or find_pipeline(client, args.execution_id)
        result, written = summarise_execution(client, pipeline, args.execution_id, args.runs_dir / args.execution_id)
    except (BotoCoreError, ClientError, LookupError) as exc:
        return out.fail(f"cannot summarise {args.execution_id}: {exc}")
    print(results_line(written), file=sys.stderr if args.json else sys.stdout, flush=True)
    out.result(result, render_report(result))
    return 0


def approve(args: argparse.Namespace, out: Output) -> int:
    """`mlops-local approve|reject`: PutApprovalResult for the execution's waiting approval action."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from mlops_local.approvals import NoOpenApproval, answer
    from mlops_local.summary import find_pipeline

    session = boto3.session.Session()

    def client(service: str) -> Any:
        return session.client(service, config=Config(retries={"mode": "standard"}))

    approved = args.command == "approve"
    try:
        pipeline = args.pipeline or find_pipeline(client, args.execution_id)
        answered = answer(client("codepipeline"), pipeline, args.execution_id, approved, args.summary)
    except (BotoCoreError, ClientError, NoOpenApproval, LookupError) as exc:
        return out.fail(f"cannot {args.command} {args.execution_id}: {exc}")
    status = "Approved" if approved else "Rejected"
    line = f"{status} {pipeline}/{answered.stage}/{answered.action} for execution {args.execution_id}"
    out.result({"pipeline": pipeline, "stage": answered.stage, "action": answered.action,
                "execution_id": args.execution_id, "status": status}, line)
    return 0


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--hyperparameter expects KEY=VALUE, got {item!r}")
    return key, value


if __name__ == "__main__":
    sys.exit(main())
