"""`mlops-local`: run the project on this machine.

    mlops-local run [--source-root DIR] [--data CSV] [--dataset-config YAML] [--quality-threshold X]
                    [--keep-running] [--json] [-H KEY=VALUE ...]
    mlops-local synthetic --rows N --out CSV [--seed S]

Exit codes of `run`: 0 approved, deployed and tested; 3 model REJECTED; 1 any other failure;
130 interrupted by Ctrl-C (SIGINT), 143 by SIGTERM, 129 by SIGHUP (128 + the signal's number).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Callable, Iterator

from mlops_local import processes

DEFAULT_DATA = Path("data") / "diamonds.csv.gz"      # relative to --source-root
DEFAULT_CONFIG = Path("data") / "diamonds.yaml"
PROJECT_FILES = ("templates/pipeline.yaml", "scripts/deploy.sh", "src/training/Dockerfile")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mlops-local", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="deploy and run the real pipeline on the local stand-in for AWS")
    add_run_options(run, keep="keep the stand-in and the endpoint up until Ctrl-C")

    synthetic = commands.add_parser("synthetic", help="write synthetic rows shaped like a data set")
    synthetic.add_argument("--rows", type=int, required=True)
    synthetic.add_argument("--out", type=Path, required=True)
    synthetic.add_argument("--data", type=Path)
    synthetic.add_argument("--dataset-config", type=Path)
    synthetic.add_argument("--source-root", type=Path, default=Path.cwd(),
                           help="project checkout the default --data and --dataset-config are in (default: .)")
    synthetic.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.data = args.data or args.source_root / DEFAULT_DATA
    args.dataset_config = args.dataset_config or args.source_root / DEFAULT_CONFIG
    return args


def add_run_options(parser: argparse.ArgumentParser, keep: str) -> None:
    parser.add_argument("--source-root", type=Path, default=Path.cwd(),
                        help="project checkout whose templates, scripts and code run (default: .)")
    parser.add_argument("--data", type=Path, help=f"raw CSV (default: <source root>/{DEFAULT_DATA})")
    parser.add_argument("--dataset-config", type=Path,
                        help=f"dataset config YAML (default: <source root>/{DEFAULT_CONFIG})")
    parser.add_argument("--quality-threshold", type=float, help="approve when test RMSE <= this")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where runs/<id>/ is written")
    parser.add_argument("--keep-running", action="store_true", help=keep)
    parser.add_argument("--json", action="store_true", help="print summary.json instead of the report")
    parser.add_argument("--hyperparameter", "-H", action="append", default=[], metavar="KEY=VALUE",
                        help="training hyperparameter (repeatable)")
    parser.add_argument("--no-enforce-iam", dest="enforce_iam", action="store_false",
                        help="debugging only: serve requests IAM would deny; access.jsonl and the report "
                             "then list them as would-be denials (local green no longer means AWS green)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "synthetic":
        from mlops_local.synthetic import write_synthetic

        write_synthetic(args.data, args.dataset_config, args.out, args.rows, seed=args.seed)
        print(f"wrote {args.rows} synthetic rows to {args.out}")
        return 0
    return interruptible(lambda: run(args))


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


def run(args: argparse.Namespace) -> int:
    """The pipeline on the stand-in: deploy, upload, execute, summarise."""
    from mlops_local.pipeline_run import PipelineOptions, run_pipeline
    from mlops_local.summary import render_report
    from training.dataset import DatasetConfigError, load_config

    missing = [name for name in PROJECT_FILES if not (args.source_root / name).is_file()]
    if missing:
        print(f"mlops-local: {args.source_root.resolve()} is not the project's checkout (no {', '.join(missing)}); "
              "run from the checkout or pass --source-root", file=sys.stderr)
        return 1
    for path, what in ((args.data, "--data"), (args.dataset_config, "--dataset-config")):
        if not path.is_file():
            print(f"mlops-local: {what} {path} does not exist", file=sys.stderr)
            return 1
    try:
        config = load_config(args.dataset_config)
        hyperparameters = dict(_key_value(item) for item in args.hyperparameter)
    except (DatasetConfigError, ValueError) as exc:
        print(f"mlops-local: {exc}", file=sys.stderr)
        return 1
    threshold = args.quality_threshold if args.quality_threshold is not None else config.quality_threshold
    if threshold is None:
        print("mlops-local: no quality threshold: pass --quality-threshold or set quality_threshold in "
              f"{args.dataset_config}", file=sys.stderr)
        return 1
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else \
        (lambda line: print(line, flush=True))
    options = PipelineOptions(source_root=args.source_root.resolve(), data=args.data.resolve(),
                              dataset_config=args.dataset_config.resolve(),
                              runs_dir=args.runs_dir.resolve(), quality_threshold=threshold,
                              keep_running=args.keep_running, hyperparameters=hyperparameters,
                              enforce_iam=args.enforce_iam)
    try:
        code, summary = run_pipeline(options, say)
    except Exception as exc:  # the stand-in could not deploy or run: say what and where
        print(f"mlops-local: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2, default=str) if args.json else render_report(summary))
    return code


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--hyperparameter expects KEY=VALUE, got {item!r}")
    return key, value


if __name__ == "__main__":
    sys.exit(main())
