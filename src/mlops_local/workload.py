"""The ML workload end to end on this machine: ETL -> training -> evaluation -> served model -> test.

This is what the pipeline's job stages run on AWS (Glue, SageMaker training, processing, endpoint,
endpoint-test Lambda), here as local processes under the same contracts. It writes
runs/<run-id>/summary.json and report.md in the shape of docs/ARCHITECTURE.md section 4.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lambdas.endpoint_test import read_records, run_endpoint_test
from mlops_local.jobs import (
    JobFailed, LocalServer, http_invoker, module_path, pack_model, run_job, unpack_model)
from training.dataset import load_config

APPROVED, REJECTED = "APPROVED", "REJECTED"


@dataclass
class Action:
    name: str
    status: str = "Pending"
    seconds: float = 0.0
    message: str = ""


@dataclass
class Stage:
    name: str
    actions: list[Action] = field(default_factory=list)

    @property
    def status(self) -> str:
        states = {a.status for a in self.actions}
        for state in ("Failed", "InProgress", "Pending"):
            if state in states:
                return state
        return "Succeeded"


@dataclass
class WorkloadOptions:
    data: Path
    dataset_config: Path
    runs_dir: Path
    quality_threshold: float | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    keep_running: bool = False


class Workload:
    def __init__(self, options: WorkloadOptions, report: Callable[[str], None] = print):
        self.options = options
        self.report = report
        self.run_id = f"local-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.dir = (options.runs_dir / self.run_id).resolve()
        self.stages = [Stage("DataAndFeatureEngineering"), Stage("Training"),
                       Stage("Evaluation"), Stage("Deployment")]
        self.summary: dict[str, Any] = {}
        self.server: LocalServer | None = None

    # -- steps ----------------------------------------------------------------------------
    def etl(self) -> dict:
        out = self.dir / "etl"
        run_job("Glue ETL job", [
            sys.executable, str(module_path("glue_jobs.etl")),
            "--JOB_NAME", f"{self.run_id}-etl",
            "--input", str(self.options.data.resolve()),
            "--dataset-config", str(self.options.dataset_config.resolve()),
            "--output", str(out),
        ], self.dir / "logs" / "etl.log")
        return json.loads((out / "data-quality.json").read_text())

    def train(self) -> Path:
        base = self.dir / "training" / f"{self.run_id}-train"
        config = base / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        # SageMaker hands every hyperparameter over as a string.
        hps = {k: str(v) for k, v in self.options.hyperparameters.items()}
        (config / "hyperparameters.json").write_text(json.dumps(hps))
        etl = self.dir / "etl"
        run_job("SageMaker training job", [sys.executable, "-m", "training.train"],
                self.dir / "logs" / "training.log", env={
                    "SM_BASE_DIR": str(base),
                    "SM_CHANNEL_TRAIN": str(etl / "train"),
                    "SM_CHANNEL_VALIDATION": str(etl / "validation"),
                    "SM_CHANNEL_FEATURES": str(etl),
                    "SM_MODEL_DIR": str(base / "model"),
                    "SM_OUTPUT_DATA_DIR": str(base / "output" / "data"),
                }, failure_file=base / "output" / "failure")
        return pack_model(base / "model", base / "output" / "model.tar.gz")

    def evaluate(self, model_tarball: Path) -> dict:
        base = self.dir / "evaluation"
        (base / "model").mkdir(parents=True, exist_ok=True)
        shutil.copy(model_tarball, base / "model" / "model.tar.gz")
        shutil.copytree(self.dir / "etl" / "test", base / "test", dirs_exist_ok=True)
        run_job("SageMaker processing job (evaluation)", [sys.executable, "-m", "training.evaluate"],
                self.dir / "logs" / "evaluation.log", env={"SM_PROCESSING_BASE": str(base)})
        return json.loads((base / "evaluation" / "evaluation.json").read_text())

    def deploy(self, model_tarball: Path) -> LocalServer:
        model_dir = unpack_model(model_tarball, self.dir / "endpoint" / "model")
        return LocalServer.start([sys.executable, "-m", "training.serve"], model_dir,
                                 self.dir / "logs" / "endpoint.log", env={}, variant="local", timeout=60)

    def test_endpoint(self, server: LocalServer) -> dict:
        target = load_config(self.options.dataset_config).target
        sample = next((self.dir / "etl" / "endpoint-test").glob("*.csv"))
        _, rows, truth = read_records(sample.read_text(encoding="utf-8"), target)
        return run_endpoint_test(rows, truth, http_invoker(server)).as_dict()

    # -- orchestration --------------------------------------------------------------------
    def run(self) -> int:
        started = time.perf_counter()
        self.dir.mkdir(parents=True, exist_ok=True)
        threshold = self._threshold()
        decision = None
        code = 1
        results: dict[str, Any] = {}
        try:
            results["data_quality"] = self._step(0, "RunEtlJob", self.etl)
            tarball = self._step(1, "RunTrainingJob", self.train)
            evaluation = self._step(2, "RunEvaluationJob", lambda: self.evaluate(tarball))
            results["metrics"] = {k: evaluation["regression_metrics"][k]["value"]
                                  for k in ("rmse", "mae", "r2")}
            rmse = results["metrics"]["rmse"]
            decision = APPROVED if rmse <= threshold else REJECTED
            self._record(2, "Decide", "Succeeded" if decision == APPROVED else "Failed", 0.0,
                         f"Model {decision}: RMSE {rmse:.2f} {'<=' if decision == APPROVED else '>'} "
                         f"threshold {threshold:g}")
            if decision == REJECTED:
                code = 3
                return code
            self.server = self._step(3, "StartModelServer", lambda: self.deploy(tarball))
            results["endpoint"] = {"name": f"{self.run_id}-endpoint", "status": "InService",
                                   "url": f"http://127.0.0.1:{self.server.port}"}
            test = self._step(3, "TestEndpoint", lambda: self.test_endpoint(self.server))
            results["endpoint_test"] = test
            if not test["passed"]:
                self._fail_last(3, "; ".join(test["problems"][:3]) or "endpoint test failed")
                return code
            code = 0
            return code
        except JobFailed:
            return code
        finally:
            if self.server and not (self.options.keep_running and code == 0):
                self.server.stop()
            if "endpoint" in results:
                running = self.server is not None and self.server.process.poll() is None
                results["endpoint"]["running"] = running
            self.summary = self._summary(code, decision, threshold, results, started)
            self._write()

    def _threshold(self) -> float:
        if self.options.quality_threshold is not None:
            return self.options.quality_threshold
        configured = load_config(self.options.dataset_config).quality_threshold
        if configured is None:
            raise SystemExit("no quality threshold: pass --quality-threshold or set quality_threshold "
                             f"in {self.options.dataset_config}")
        return configured

    def _step(self, stage: int, name: str, work: Callable[[], Any]) -> Any:
        action = Action(name, "InProgress")
        self.stages[stage].actions.append(action)
        started = time.perf_counter()
        try:
            result = work()
        except Exception as exc:
            action.status, action.message = "Failed", str(exc)
            action.seconds = time.perf_counter() - started
            self.report(f"  {self.stages[stage].name}/{name}: Failed - {exc}")
            raise JobFailed(str(exc)) from exc
        action.status, action.seconds = "Succeeded", time.perf_counter() - started
        self.report(f"  {self.stages[stage].name}/{name}: Succeeded in {action.seconds:.1f} s")
        return result

    def _record(self, stage: int, name: str, status: str, seconds: float, message: str) -> None:
        self.stages[stage].actions.append(Action(name, status, seconds, message))
        self.report(f"  {self.stages[stage].name}/{name}: {message}")

    def _fail_last(self, stage: int, message: str) -> None:
        action = self.stages[stage].actions[-1]
        action.status, action.message = "Failed", message
        self.report(f"  {self.stages[stage].name}/{action.name}: Failed - {message}")

    def _summary(self, code: int, decision: str | None, threshold: float,
                 results: dict, started: float) -> dict:
        wall = time.perf_counter() - started
        job_seconds = sum(a.seconds for s in self.stages for a in s.actions)
        quality = results.get("data_quality") or {}
        return {
            "pipeline_execution_id": self.run_id,
            "mode": "local-workload",
            "status": "Succeeded" if code == 0 else "Failed",
            "decision": decision,
            "threshold": threshold,
            "metrics": results.get("metrics"),
            "stages": [{"name": s.name, "status": s.status if s.actions else "Skipped",
                        "seconds": round(sum(a.seconds for a in s.actions), 3),
                        "actions": [{"name": a.name, "status": a.status, "seconds": round(a.seconds, 3),
                                     "message": a.message} for a in s.actions]}
                       for s in self.stages],
            "model_package_arn": None,
            "endpoint": results.get("endpoint"),
            "endpoint_test": results.get("endpoint_test"),
            "data_quality": {k: quality.get(k) for k in ("rows_in", "rows_out", "quarantined", "duplicates")}
            if quality else None,
            "timings": {"wall_seconds": round(wall, 3), "job_seconds": round(job_seconds, 3),
                        "orchestration_seconds": round(max(wall - job_seconds, 0.0), 3)},
            "run_dir": str(self.dir),
        }

    def _write(self) -> None:
        (self.dir / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n")
        (self.dir / "report.md").write_text(render_report(self.summary))


def render_report(summary: dict) -> str:
    lines = [f"# Run {summary['pipeline_execution_id']}", "",
             f"- status: **{summary['status']}**, decision: **{summary['decision']}** "
             f"(threshold RMSE <= {summary['threshold']:g})"]
    metrics = summary.get("metrics")
    if metrics:
        lines.append(f"- test split: RMSE {metrics['rmse']:.2f}, MAE {metrics['mae']:.2f}, "
                     f"R2 {metrics['r2']:.4f}")
    quality = summary.get("data_quality")
    if quality:
        lines.append(f"- data: {quality['rows_in']} rows in, {quality['rows_out']} out, "
                     f"{quality['quarantined']} quarantined, {quality['duplicates']} duplicates")
    if summary.get("model_package_arn"):
        lines.append(f"- model package: {summary['model_package_arn']}")
    if summary.get("endpoint"):
        lines.append(f"- endpoint: {summary['endpoint']['name']} ({summary['endpoint']['status']})")
    test = summary.get("endpoint_test")
    if test:
        lines.append(f"- endpoint test: passed={test['passed']} on {test['rows']} records, "
                     f"RMSE {_num(test['rmse'])}, p50 {_num(test['p50_ms'])} ms, p99 {_num(test['p99_ms'])} ms")
    if summary.get("status_summary"):
        lines.append(f"- execution: {summary['status_summary']}")
    timings = summary["timings"]
    lines += [f"- wall {timings['wall_seconds']:.1f} s (jobs {timings['job_seconds']:.1f} s, orchestration "
              f"{timings['orchestration_seconds']:.1f} s)", "",
              "| stage | action | status | seconds | message |", "|---|---|---|---|---|"]
    for stage in summary["stages"]:
        for action in stage["actions"]:
            message = action["message"].replace("|", "\\|").replace("\n", " ")[:200]
            lines.append(f"| {stage['name']} | {action['name']} | {action['status']} | "
                         f"{action['seconds']:.1f} | {message} |")
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
