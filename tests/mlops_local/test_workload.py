"""The workload end to end on a small sample: real Spark ETL, Keras training, evaluation, server."""
from __future__ import annotations

import json

import pytest

from mlops_local.cli import main

from tests.conftest import DATASET_CONFIG
from tests.mlops_local.datasets import write_diamonds_sample

pytestmark = pytest.mark.spark
FAST = ["-H", "epochs=8", "-H", "patience=3"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Every 12th row of the shipped data (~4,500 rows), the zero-size rows and a few duplicates kept."""
    return write_diamonds_sample(tmp_path_factory.mktemp("data") / "sample.csv", 12, duplicate_every=1200)


def run(tmp_path, *args):
    code = main(["workload", "--runs-dir", str(tmp_path), "--json", *FAST, *args])
    summaries = list(tmp_path.glob("*/summary.json"))
    assert len(summaries) == 1
    return code, json.loads(summaries[0].read_text()), summaries[0].parent


def test_approved_served_and_tested(tmp_path, sample):
    code, summary, run_dir = run(tmp_path, "--data", str(sample), "--quality-threshold", "5000")
    assert code == 0, summary
    assert summary["status"] == "Succeeded" and summary["decision"] == "APPROVED"
    quality = summary["data_quality"]
    assert quality["rows_in"] == quality["rows_out"] + quality["quarantined"] + quality["duplicates"]
    assert quality["quarantined"] > 0 and quality["duplicates"] > 0
    assert 0 < summary["metrics"]["rmse"] <= 5000 and summary["metrics"]["r2"] > 0.5
    test = summary["endpoint_test"]
    assert test["passed"] and test["rows"] > 0 and test["p50_ms"] > 0
    assert [s["name"] for s in summary["stages"]] == [
        "DataAndFeatureEngineering", "Training", "Evaluation", "Deployment"]
    assert all(s["status"] == "Succeeded" for s in summary["stages"])
    timings = summary["timings"]
    assert timings["wall_seconds"] >= timings["job_seconds"] > 0
    assert (run_dir / "report.md").read_text().startswith(f"# Run {summary['pipeline_execution_id']}")
    assert (run_dir / "etl" / "features.json").exists()


def test_rejected_stops_before_deployment(tmp_path, sample):
    code, summary, _ = run(tmp_path, "--data", str(sample), "--quality-threshold", "1")
    assert code == 3
    assert summary["decision"] == "REJECTED" and summary["status"] == "Failed"
    assert summary["endpoint"] is None and summary["endpoint_test"] is None
    deployment = next(s for s in summary["stages"] if s["name"] == "Deployment")
    assert deployment["status"] == "Skipped"
    decide = summary["stages"][2]["actions"][-1]
    assert decide["status"] == "Failed" and "Model REJECTED: RMSE" in decide["message"]


def test_config_naming_a_missing_column_fails_at_etl(tmp_path, sample):
    config = tmp_path / "bad.yaml"
    config.write_text(DATASET_CONFIG.read_text().replace("numeric: [carat,", "numeric: [weight, carat,"))
    runs = tmp_path / "runs"
    runs.mkdir()
    code = main(["workload", "--runs-dir", str(runs), "--data", str(sample), "--dataset-config", str(config)])
    assert code == 1
    summary = json.loads(next(runs.glob("*/summary.json")).read_text())
    etl = summary["stages"][0]
    assert etl["status"] == "Failed" and "'weight'" in etl["actions"][0]["message"]
    assert all(s["status"] == "Skipped" for s in summary["stages"][1:])


@pytest.mark.parametrize("args, message", [
    (["--data", "/nonexistent.csv"], "--data /nonexistent.csv does not exist"),
    (["-H", "epochs"], "--hyperparameter expects KEY=VALUE"),
])
def test_bad_arguments_exit_1_with_a_message(tmp_path, capsys, args, message):
    assert main(["workload", "--runs-dir", str(tmp_path), *args]) == 1
    assert message in capsys.readouterr().err
