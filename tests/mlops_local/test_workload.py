"""The workload end to end on a small sample: real Spark ETL, Keras training, evaluation, server."""
from __future__ import annotations

import csv
import gzip
import json

import pytest

from mlops_local.cli import main

from tests.conftest import DATA, DATASET_CONFIG

pytestmark = pytest.mark.spark
FAST = ["-H", "epochs=8", "-H", "patience=3"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Every 12th row of the shipped data (~4,500 rows), the zero-size rows and a few duplicates kept."""
    path = tmp_path_factory.mktemp("data") / "sample.csv"
    with gzip.open(DATA, "rt", newline="") as src, path.open("w", newline="") as out:
        reader, writer = csv.reader(src), csv.writer(out)
        writer.writerow(next(reader))
        for i, row in enumerate(reader):
            if i % 12 == 0 or "0.0" in (row[7], row[8], row[9]):
                writer.writerow(row)
                if i % 1200 == 0:
                    writer.writerow(row)
    return path


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


def test_another_data_set_with_its_own_config(tmp_path):
    """Nothing outside a config names columns: a different CSV with one-hot columns runs through."""
    import random

    rng = random.Random(5)
    data = tmp_path / "houses.csv"
    with data.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["listing", "area_m2", "city", "condition", "rooms", "rent"])
        for i in range(1500):
            area, rooms = rng.uniform(20, 200), rng.randint(1, 6)
            city, condition = rng.choice("abc"), rng.choice(["poor", "fair", "good"])
            rent = 10 * area + 50 * rooms + {"a": 0, "b": 300, "c": 600}[city] \
                + {"poor": 0, "fair": 100, "good": 250}[condition] + rng.gauss(0, 40)
            writer.writerow([f"L{i}", f"{area:.1f}", city, condition, rooms, f"{rent:.0f}"])
        writer.writerow(["L-bad", "n/a", "a", "good", 2, "900"])  # quarantined, not lost
    config = tmp_path / "houses.yaml"
    config.write_text(
        "target: rent\nnumeric: [area_m2, rooms]\ncategorical: [city]\n"
        "ordinal: {condition: [poor, fair, good]}\ndrop: [listing]\n"
        "split: {train: 0.7, validation: 0.15, test: 0.15, seed: 1}\nquality_threshold: 400\n")
    runs = tmp_path / "runs"
    code = main(["workload", "--runs-dir", str(runs), "--json", "--data", str(data),
                 "--dataset-config", str(config), "-H", "epochs=40"])
    summary = json.loads(next(runs.glob("*/summary.json")).read_text())
    assert code == 0, summary
    assert summary["data_quality"]["quarantined"] == 1
    assert summary["metrics"]["rmse"] < 400 and summary["endpoint_test"]["passed"]
    features = json.loads(next(runs.glob("*/etl/features.json")).read_text())
    assert "city=a" in features["feature_names"] and "listing" in features["input_columns"]
