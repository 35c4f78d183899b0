"""`mlops-local`: run the project on this machine.

    mlops-local run [--data CSV] [--dataset-config YAML] [--quality-threshold X] [--keep-running] [--json]
    mlops-local workload [same options] [-H KEY=VALUE ...]   (the jobs alone, no pipeline)
    mlops-local synthetic --rows N --out CSV [--seed S]

Exit codes of `run`: 0 approved, deployed and tested; 3 model REJECTED; 1 any other failure.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT / "data" / "diamonds.csv.gz"
DEFAULT_CONFIG = ROOT / "data" / "diamonds.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mlops-local", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="deploy and run the real pipeline on the local stand-in for AWS")
    add_run_options(run, keep="keep the stand-in and the endpoint up until Ctrl-C")
    workload = commands.add_parser(
        "workload", help="run only the jobs (ETL, training, evaluation, server, test), without the pipeline")
    add_run_options(workload, keep="keep the model server up until Ctrl-C")

    synthetic = commands.add_parser("synthetic", help="write synthetic rows shaped like a data set")
    synthetic.add_argument("--rows", type=int, required=True)
    synthetic.add_argument("--out", type=Path, required=True)
    synthetic.add_argument("--data", type=Path, default=DEFAULT_DATA)
    synthetic.add_argument("--dataset-config", type=Path, default=DEFAULT_CONFIG)
    synthetic.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def add_run_options(parser: argparse.ArgumentParser, keep: str) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="raw CSV (default: shipped diamonds)")
    parser.add_argument("--dataset-config", type=Path, default=DEFAULT_CONFIG, help="dataset config YAML")
    parser.add_argument("--quality-threshold", type=float, help="approve when test RMSE <= this")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where runs/<id>/ is written")
    parser.add_argument("--keep-running", action="store_true", help=keep)
    parser.add_argument("--json", action="store_true", help="print summary.json instead of the report")
    parser.add_argument("--hyperparameter", "-H", action="append", default=[], metavar="KEY=VALUE",
                        help="training hyperparameter (repeatable)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "synthetic":
        from mlops_local.synthetic import write_synthetic

        write_synthetic(args.data, args.dataset_config, args.out, args.rows, seed=args.seed)
        print(f"wrote {args.rows} synthetic rows to {args.out}")
        return 0
    if args.command == "workload":
        return workload(args)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """The pipeline on the stand-in: deploy, upload, execute, summarise."""
    from mlops_local.pipeline_run import PipelineOptions, run_pipeline
    from mlops_local.workload import render_report
    from training.dataset import DatasetConfigError, load_config

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
    options = PipelineOptions(data=args.data.resolve(), dataset_config=args.dataset_config.resolve(),
                              runs_dir=args.runs_dir.resolve(), quality_threshold=threshold,
                              keep_running=args.keep_running, hyperparameters=hyperparameters)
    try:
        code, summary = run_pipeline(options, say)
    except Exception as exc:  # the stand-in could not deploy or run: say what and where
        print(f"mlops-local: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2, default=str) if args.json else render_report(summary))
    return code


def workload(args: argparse.Namespace) -> int:
    from mlops_local.workload import Workload, WorkloadOptions, render_report
    from training.dataset import DatasetConfigError, load_config

    for path, what in ((args.data, "--data"), (args.dataset_config, "--dataset-config")):
        if not path.is_file():
            print(f"mlops-local: {what} {path} does not exist", file=sys.stderr)
            return 1
    try:
        load_config(args.dataset_config)
        hyperparameters = dict(_key_value(item) for item in args.hyperparameter)
    except (DatasetConfigError, ValueError) as exc:
        print(f"mlops-local: {exc}", file=sys.stderr)
        return 1

    say = (lambda line: print(line, file=sys.stderr)) if args.json else print
    workload = Workload(WorkloadOptions(
        data=args.data, dataset_config=args.dataset_config, runs_dir=args.runs_dir,
        quality_threshold=args.quality_threshold, hyperparameters=hyperparameters,
        keep_running=args.keep_running), report=say)
    say(f"run {workload.run_id} -> {workload.dir}")
    code = workload.run()
    if args.json:
        print(json.dumps(workload.summary, indent=2))
    else:
        print(render_report(workload.summary))
    if code == 0 and args.keep_running and workload.server:
        say(f"model server on http://127.0.0.1:{workload.server.port} (Ctrl-C to stop)")
        try:
            while workload.server.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            workload.server.stop()
    return code


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--hyperparameter expects KEY=VALUE, got {item!r}")
    return key, value


if __name__ == "__main__":
    sys.exit(main())
