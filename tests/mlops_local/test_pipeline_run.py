"""`mlops-local run` end to end: the real templates, scripts, handlers and jobs on the stand-in.

Small samples and few epochs keep each run to tens of seconds; the full data set is `make run`.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from mlops_local.cli import main
from mlops_local.pipeline_run import PipelineOptions, run_pipeline
from mlops_local.synthetic import write_sample
from training.dataset import load_config

from tests.conftest import DATA, DATASET_CONFIG, ROOT
from tests.glue_jobs.counting import count_rows
from tests.mlops_local.datasets import write_houses

pytestmark = pytest.mark.spark
FAST = {"epochs": "15", "patience": "5"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Every 20th row of the shipped data (~2,700 rows), the zero-size rows kept, ~30 rows twice."""
    return write_sample(DATA, DATASET_CONFIG, tmp_path_factory.mktemp("data") / "sample.csv", every=20,
                        duplicate_every=97)


def mean_predictor_rmse(data) -> float:
    """The RMSE of always predicting the mean price of the sample's valid rows: a threshold above it
    would approve a model that learned nothing."""
    import csv

    config = load_config(DATASET_CONFIG)
    with data.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    prices = np.array([float(r[config.target]) for r in rows
                       if all(float(r[rule.column]) >= rule.min for rule in config.rules if rule.min is not None)])
    return float(prices.std())


def aws_cli(local, *args):
    done = subprocess.run(["aws", *args, "--output", "json"], env=local.environment(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_approved_registered_deployed_and_tested(tmp_path, sample):
    seen = {}

    def inspect(local, summary):
        pipeline = "mlops-pipeline"
        state = aws_cli(local, "codepipeline", "get-pipeline-state", "--name", pipeline)
        seen["stages"] = {s["stageName"]: s["latestExecution"]["status"] for s in state["stageStates"]}
        seen["served"] = {stage: endpoint_package(local, stage) for stage in ("dev", "prod")}
        seen["prod"] = aws_cli(local, "sagemaker", "describe-endpoint", "--endpoint-name", "mlops-prod")
        packages = aws_cli(local, "sagemaker", "list-model-packages", "--model-package-group-name", "mlops-models")
        seen["packages"] = [(p["ModelPackageArn"], p["ModelApprovalStatus"])
                            for p in packages["ModelPackageSummaryList"]]
        listing = subprocess.run(["aws", "s3", "ls", "--recursive",
                                  f"s3://mlops-data-123456789012-us-east-1/runs/{summary['pipeline_execution_id']}/"],
                                 env=local.environment(), capture_output=True, text=True, timeout=60)
        seen["keys"] = listing.stdout
        if summary.get("model_package_arn"):
            seen["package"] = aws_cli(local, "sagemaker", "describe-model-package", "--model-package-name",
                                      summary["model_package_arn"])
            seen["images"] = aws_cli(local, "ecr", "describe-images", "--repository-name", "mlops-training")

    # Half the mean predictor's RMSE (~3,900 USD on this sample): the model (~1,000 USD after 15 epochs)
    # must have learned something to be approved.
    threshold = round(mean_predictor_rmse(sample) / 2)
    options = PipelineOptions(source_root=ROOT, data=sample, dataset_config=DATASET_CONFIG, runs_dir=tmp_path,
                              quality_threshold=threshold, hyperparameters=FAST)
    code, summary = run_pipeline(options, say=lambda line: None, before_close=inspect)
    assert code == 0, json.dumps(summary, indent=2)
    assert summary["status"] == "Succeeded" and summary["decision"] == "APPROVED"
    assert summary["metrics"]["rmse"] <= threshold
    assert summary["model_package_arn"] and summary["endpoint"]["status"] == "InService"
    test = summary["endpoint_test"]
    assert test["passed"] and test["rows"] > 0 and test["p50_ms"] > 0
    quality = summary["data_quality"]
    assert quality["rows_in"] == quality["rows_out"] + quality["quarantined"] + quality["duplicates"]
    counted = count_rows(sample, load_config(DATASET_CONFIG))  # without the job: not true by construction
    assert (quality["rows_in"], quality["quarantined"], quality["duplicates"]) == (
        counted["rows_in"], counted["quarantined"], counted["duplicates"])
    assert counted["duplicates"] > 0 and counted["quarantined"] > 0
    assert [s["name"] for s in summary["stages"]] == [
        "Source", "Build", "DataAndFeatureEngineering", "Training", "Evaluation", "Deployment", "Approval",
        "Production"]
    build = next(s for s in summary["stages"] if s["name"] == "Build")
    assert all(a["message"].startswith("SKIPPED: no container engine")
               for a in build["actions"] if a["name"].startswith("Build"))
    timings = summary["timings"]
    assert timings["wall_seconds"] >= timings["job_seconds"] > 0
    assert set(timings["jobs"]) == {"glue", "training", "processing"}
    assert sum(timings["jobs"].values()) == pytest.approx(timings["job_seconds"], abs=0.01)
    # What the aws CLI says about the stand-in matches the run.
    assert set(seen["stages"].values()) == {"Succeeded"} and len(seen["stages"]) == 8
    # dev and prod serve the one package the gate and the (automatic) approval let through.
    assert seen["served"] == {"dev": summary["model_package_arn"], "prod": summary["model_package_arn"]}
    assert seen["prod"]["EndpointStatus"] == "InService"
    assert seen["prod"]["DataCaptureConfig"]["CurrentSamplingPercentage"] == 20
    assert seen["packages"] == [(summary["model_package_arn"], "Approved")]
    for key in ("etl/features.json", "etl/data-quality.json", "evaluation/evaluation.json", "model.tar.gz"):
        assert key in seen["keys"]
    # The package serves copies that outlive the run's prefix, and an image tag the lifecycle keeps.
    execution = summary["pipeline_execution_id"]
    kept = f"s3://mlops-data-123456789012-us-east-1/models/mlops-models/{execution}/"
    container = seen["package"]["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == kept + "model.tar.gz"
    assert seen["package"]["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == kept + "evaluation.json"
    tags = [set(image.get("imageTags", [])) for image in seen["images"]["imageDetails"]]
    served = container["Image"].rsplit(":", 1)[-1]
    assert any({served, f"approved-{execution}"} <= image for image in tags), tags
    run_dir = tmp_path / summary["pipeline_execution_id"]
    assert json.loads((run_dir / "summary.json").read_text())["decision"] == "APPROVED"
    assert (run_dir / "report.md").exists() and (run_dir / "stand-in").is_dir()
    # The access log: the deploy as the mlops-local user, each job worker as its own role's session.
    access = [json.loads(line) for line in (run_dir / "access.jsonl").read_text().splitlines()]
    callers = {(a["principal"]["arn"], a["operation"]) for a in access}
    assert ("arn:aws:iam::123456789012:user/mlops-local", "CreateChangeSet") in callers
    worker = next(a for a in access if a["operation"] == "StartJobRun")
    assert worker["principal"]["arn"].startswith("arn:aws:sts::123456789012:assumed-role/")
    assert worker["checks"][0]["action"] == "glue:StartJobRun"
    assert worker["checks"][0]["resource"] == "arn:aws:glue:us-east-1:123456789012:job/mlops-etl"


def test_rejected_model_stops_at_evaluation_and_is_recorded(tmp_path, sample):
    seen = {}

    def inspect(local, summary):
        packages = local.aws.client("sagemaker").list_model_packages(ModelPackageGroupName="mlops-models")
        seen["statuses"] = [p["ModelApprovalStatus"] for p in packages["ModelPackageSummaryList"]]
        seen["endpoints"] = local.aws.client("sagemaker").list_endpoints()["Endpoints"]

    options = PipelineOptions(source_root=ROOT, data=sample, dataset_config=DATASET_CONFIG, runs_dir=tmp_path,
                              quality_threshold=1, hyperparameters=FAST)
    code, summary = run_pipeline(options, say=lambda line: None, before_close=inspect)
    assert code == 3
    assert summary["decision"] == "REJECTED" and summary["status"] == "Failed"
    assert summary["endpoint"] is None and summary["model_package_arn"] is None
    assert next(s for s in summary["stages"] if s["name"] == "Deployment")["status"] == "Skipped"
    assert summary["status_summary"].startswith("Model REJECTED: RMSE")
    assert seen == {"statuses": ["Rejected"], "endpoints": []}


def test_a_person_rejecting_the_prod_approval_stops_the_execution_before_prod(tmp_path, sample):
    """Without --auto-approve the execution waits at ApproveForProd and the run says how to answer it; the
    command it prints, run in another process, rejects it: the execution fails there, prod is never
    deployed, dev keeps serving the model its test passed, and the run exits 4."""
    said: list[str] = []
    answered: dict = {}

    def reject(exports: str, command: str) -> None:
        env = {**os.environ, **dict(pair.split("=", 1) for pair in exports.split()),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        argv = shlex.split(command.replace('"why"', '"the bias review is not done"'))
        answered["done"] = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)

    def say(line) -> None:
        said.append(str(line))
        if str(line).strip().startswith("mlops-local reject "):
            exports = next(s for s in reversed(said) if s.strip().startswith("export ")).strip()[len("export "):]
            threading.Thread(target=reject, args=(exports, str(line).strip()), daemon=True).start()

    def inspect(local, summary):
        seen["served"] = endpoint_package(local, "dev")
        seen["prod"] = [e["EndpointName"] for e in local.aws.client("sagemaker").list_endpoints()["Endpoints"]
                        if e["EndpointName"] == "mlops-prod"]
        seen["status"] = local.aws.client("sagemaker").describe_model_package(
            ModelPackageName=summary["model_package_arn"])["ModelApprovalStatus"]

    seen: dict = {}
    options = PipelineOptions(source_root=ROOT, data=sample, dataset_config=DATASET_CONFIG, runs_dir=tmp_path,
                              quality_threshold=5000, hyperparameters=FAST, auto_approve=False)
    code, summary = run_pipeline(options, say=say, before_close=inspect)
    assert answered["done"].returncode == 0, answered["done"].stderr
    assert answered["done"].stdout.startswith("Rejected mlops-pipeline/Approval/ApproveForProd")
    assert code == 4, json.dumps(summary, indent=2)
    assert summary["approval"]["status"] == "Rejected"
    assert summary["approval"]["summary"].endswith("the bias review is not done")
    assert summary["approval"]["by"] == "arn:aws:iam::123456789012:user/mlops-local"
    stages = {s["name"]: s["status"] for s in summary["stages"]}
    assert (stages["Deployment"], stages["Approval"], stages["Production"]) == ("Succeeded", "Failed", "Skipped")
    assert summary["endpoint_test"]["passed"] and summary["endpoints"]["prod"] is None
    # Never promoted: the package stays PendingManualApproval, so it cannot become the next champion.
    assert seen == {"served": summary["model_package_arn"], "prod": [], "status": "PendingManualApproval"}
    custom = summary["approval"]["custom_data"]
    assert custom.startswith(f"Promote {summary['model_package_arn']} to prod? RMSE ")
    assert "#{" not in custom and "Dev endpoint test passed: " in custom


def test_config_naming_a_missing_column_fails_at_the_etl(tmp_path, sample):
    """The ETL's own check, as on AWS where no preflight runs (the CLI's is in test_preflight.py)."""
    config = tmp_path / "bad.yaml"
    config.write_text(DATASET_CONFIG.read_text().replace("numeric: [carat,", "numeric: [weight, carat,"))
    code, _ = run_pipeline(PipelineOptions(source_root=ROOT, data=sample, dataset_config=config, runs_dir=tmp_path,
                                           quality_threshold=1000.0, hyperparameters=FAST), say=lambda line: None)
    assert code == 1
    summary = json.loads(next(tmp_path.glob("*/summary.json")).read_text())
    etl = next(s for s in summary["stages"] if s["name"] == "DataAndFeatureEngineering")
    assert etl["status"] == "Failed" and "'weight'" in etl["actions"][-1]["message"]
    later = [s for s in summary["stages"] if s["name"] in ("Training", "Evaluation", "Deployment", "Approval",
                                                           "Production")]
    assert all(s["status"] == "Skipped" for s in later)


def test_bad_arguments_exit_1(tmp_path, capsys):
    assert main(["run", "--runs-dir", str(tmp_path), "--data", "/nonexistent.csv"]) == 1
    assert "--data /nonexistent.csv does not exist" in capsys.readouterr().err


def test_another_data_set_runs_through_the_pipeline(tmp_path):
    data, config = write_houses(tmp_path)
    code = main(["run", "--auto-approve", "--runs-dir", str(tmp_path / "runs"), "--json", "--data", str(data),
                 "--dataset-config", str(config), "-H", "epochs=40"])
    summary = json.loads(next((tmp_path / "runs").glob("*/summary.json")).read_text())
    assert code == 0, json.dumps(summary, indent=2)
    assert summary["data_quality"]["quarantined"] == 1 and summary["endpoint_test"]["passed"]
    assert summary["metrics"]["rmse"] < 400


def test_two_executions_started_together_keep_their_data_apart(tmp_path, sample):
    """...and a worse challenger after them is rejected by the champion gate, the endpoint left on the champion."""
    seen = {}

    def inspect(local, summary):
        codepipeline, s3 = local.aws.client("codepipeline"), local.aws.client("s3")
        ids = [codepipeline.start_pipeline_execution(
            name="mlops-pipeline", variables=[{"name": "QualityThreshold", "value": threshold}])
            ["pipelineExecutionId"] for threshold in ("5000", "4000")]
        statuses = [local.engine.wait("mlops-pipeline", i, timeout=600) for i in ids]
        seen["statuses"] = statuses
        bucket = "mlops-data-123456789012-us-east-1"
        for execution_id in ids:
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"runs/{execution_id}/")
                    .get("Contents", [])]
            details = codepipeline.list_action_executions(
                pipelineName="mlops-pipeline", filter={"pipelineExecutionId": execution_id})
            training = next(d for d in details["actionExecutionDetails"] if d["actionName"] == "SubmitTraining")
            evaluation = next(d for d in details["actionExecutionDetails"]
                              if d["actionName"] == "MonitorEvaluation")
            seen[execution_id] = {
                "etl": f"runs/{execution_id}/etl/features.json" in keys,
                "evaluation": f"runs/{execution_id}/evaluation/evaluation.json" in keys,
                "job": training["output"]["outputVariables"]["TrainingJobName"],
                "threshold": json.loads(evaluation["input"]["resolvedConfiguration"]["UserParameters"])
                ["threshold"],
            }
        seen["ids"] = ids
        # A worse challenger (one epoch) within the threshold: the champion gate rejects it, and the endpoint
        # keeps serving the champion, the package of the execution before it.
        served = {stage: endpoint_package(local, stage) for stage in ("dev", "prod")}
        worse = codepipeline.start_pipeline_execution(name="mlops-pipeline", variables=[
            {"name": "QualityThreshold", "value": "5000"},
            {"name": "TrainingHyperparameters", "value": json.dumps({**FAST, "epochs": "1"})}])["pipelineExecutionId"]
        seen["worse"] = local.engine.wait("mlops-pipeline", worse, timeout=600)
        details = codepipeline.list_action_executions(pipelineName="mlops-pipeline",
                                                      filter={"pipelineExecutionId": worse})["actionExecutionDetails"]
        gate = next(d for d in details if d["actionName"] == "MonitorEvaluation")
        seen["gate"] = gate["output"]["executionResult"]["errorDetails"]["message"]
        seen["deployed"] = sorted(d["actionName"] for d in details
                                  if d["stageName"] in ("Deployment", "Approval", "Production"))
        seen["served"] = (served, {stage: endpoint_package(local, stage) for stage in ("dev", "prod")})
        packages = local.aws.client("sagemaker").list_model_packages(
            ModelPackageGroupName="mlops-models", SortBy="CreationTime", SortOrder="Descending")
        seen["newest"] = packages["ModelPackageSummaryList"][0]["ModelApprovalStatus"]

    options = PipelineOptions(source_root=ROOT, data=sample, dataset_config=DATASET_CONFIG, runs_dir=tmp_path,
                              quality_threshold=5000, hyperparameters=FAST)
    code, _ = run_pipeline(options, say=lambda line: None, before_close=inspect)
    assert code == 0
    assert seen["worse"] == "Failed" and seen["gate"].startswith("Model REJECTED: RMSE ")
    assert "champion" in seen["gate"] and seen["deployed"] == [] and seen["newest"] == "Rejected"
    # Both endpoints stay on the champion: the package of the last approved execution, in dev and in prod.
    assert seen["served"][0] == seen["served"][1]
    assert seen["served"][0]["dev"] == seen["served"][0]["prod"]
    assert seen["served"][0]["prod"].startswith("arn:aws:sagemaker:")
    first, second = (seen[i] for i in seen["ids"])
    assert seen["statuses"] == ["Succeeded", "Succeeded"]
    assert first["etl"] and first["evaluation"] and second["etl"] and second["evaluation"]
    assert first["job"] != second["job"] and seen["ids"][0] in first["job"] and seen["ids"][1] in second["job"]
    assert (first["threshold"], second["threshold"]) == ("5000", "4000")


def endpoint_package(local, stage: str) -> str:
    """The model package the stage's endpoint serves: its config in service -> the model -> the package, which
    is also what its stack was last deployed with (a rolled-back update would leave the two apart)."""
    sagemaker = local.aws.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=f"mlops-{stage}")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    stack = local.aws.client("cloudformation").describe_stacks(StackName=f"mlops-endpoint-{stage}")["Stacks"][0]
    declared = next(p["ParameterValue"] for p in stack["Parameters"] if p["ParameterKey"] == "ModelPackageArn")
    assert model["PrimaryContainer"]["ModelPackageName"] == declared, (stage, endpoint["EndpointConfigName"])
    return declared
