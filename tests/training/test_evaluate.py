"""The SageMaker processing contract (training.evaluate), on a model whose answers are known by hand."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from training import evaluate
from training.errors import EXIT_USER_ERROR
from training.features import FeatureSpec
from training.predictor import MODEL_FORMAT_VERSION

# prediction = 2a - b + 0.5 (one linear Dense layer, no target transform)
SPEC = FeatureSpec(target="y", target_transform="none", input_columns=("a", "b"),
                   numeric=(("a", 0.0, 1.0), ("b", 0.0, 1.0)), ordinal=(), categorical=())
FEATURES = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float64)   # predictions 0.5 2.5 -0.5 1.5
ACTUAL = np.array([0.5, 2.5, -0.5, 3.5])                                  # errors      0   0    0   -2
# mse = 4/4 = 1, rmse = 1, mae = 2/4 = 0.5; mean(actual) = 1.5, SST = 1+1+4+4 = 10, r2 = 1 - 4/10 = 0.6
EXPECTED = {"mse": 1.0, "rmse": 1.0, "mae": 0.5, "r2": 0.6}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_model(directory: Path, bias: float = 0.5, spec: FeatureSpec = SPEC) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "dense.npz", kernel_0=np.array([[2.0], [-1.0]], dtype=np.float32),
             bias_0=np.array([bias], dtype=np.float32))
    (directory / "model.json").write_text(json.dumps(
        {"format_version": MODEL_FORMAT_VERSION, "activations": ["linear"], "feature_names": list(spec.feature_names)}))
    spec.save(directory / "features.json")
    return directory


def write_tarball(model_dir: Path, archive: Path, prefix: str = "") -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in model_dir.iterdir():
            tar.add(path, arcname=f"{prefix}{path.name}")
    return archive


@pytest.fixture
def split_dir(tmp_path, write_split_csv) -> Path:
    write_split_csv(tmp_path / "test", SPEC, ACTUAL, FEATURES, parts=2)
    return tmp_path / "test"


def test_report_has_the_model_quality_shape_and_hand_computed_values(tmp_path, split_dir):
    report = evaluate.run(write_model(tmp_path / "model"), split_dir, tmp_path / "evaluation")

    written = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    assert written == report
    assert set(written) == {"regression_metrics", "dataset", "standard_deviation_method"}
    metrics = written["regression_metrics"]
    assert set(metrics) == {"mse", "rmse", "mae", "r2"}
    for name, value in EXPECTED.items():
        assert set(metrics[name]) == {"value", "standard_deviation"}
        assert metrics[name]["value"] == pytest.approx(value, abs=1e-6), name
        assert metrics[name]["standard_deviation"] >= 0
    assert written["dataset"] == {"item_count": 4, "target": "y"}
    assert "bootstrap" in written["standard_deviation_method"]
    assert (tmp_path / "evaluation" / "evaluation.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("layout", ["extracted-dir", "tar-gz-file", "dir-holding-tar-gz",
                                    "tar-gz-with-subdir"])
def test_model_is_read_from_any_layout(tmp_path, split_dir, layout):
    model_dir = write_model(tmp_path / "built")
    model = {
        "extracted-dir": lambda: model_dir,
        "tar-gz-file": lambda: write_tarball(model_dir, tmp_path / "in" / "model.tar.gz"),
        "dir-holding-tar-gz": lambda: write_tarball(model_dir, tmp_path / "in" / "model.tar.gz").parent,
        "tar-gz-with-subdir": lambda: write_tarball(model_dir, tmp_path / "in" / "model.tar.gz", "model/"),
    }[layout]()
    report = evaluate.run(model, split_dir, tmp_path / "out")
    assert report["regression_metrics"]["rmse"]["value"] == pytest.approx(1.0)


def test_processing_job_layout_end_to_end(tmp_path, split_dir, run_python_module):
    """Default paths under SM_PROCESSING_BASE, as the processing job stages them."""
    base = tmp_path / "processing"
    write_tarball(write_model(tmp_path / "built"), base / "model" / "model.tar.gz")
    split_dir.rename(base / "test")
    env = {"SM_PROCESSING_BASE": str(base), "SM_BASE_DIR": str(tmp_path / "opt_ml")}
    result = run_python_module("training.evaluate", env)
    assert result.returncode == 0, result.stderr
    report = json.loads((base / "evaluation" / "evaluation.json").read_text())
    assert {k: v["value"] for k, v in report["regression_metrics"].items()} == pytest.approx(EXPECTED)
    assert (base / "evaluation" / "evaluation.png").read_bytes().startswith(PNG_MAGIC)
    assert not (tmp_path / "opt_ml" / "output" / "message").exists()


# A champion with bias 0 predicts 0 2 -1 1: errors -0.5 -0.5 -0.5 -2.5, mse = (3 * 0.25 + 6.25) / 4 = 1.75, mae = 1
CHAMPION = {"mse": 1.75, "rmse": math.sqrt(1.75), "mae": 1.0, "r2": 1 - 7 / 10}
CHAMPION_ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-models/3"


def test_challenger_and_champion_are_scored_on_the_same_split(tmp_path, split_dir):
    """The processing job's layout: champion/model.tar.gz beside model/, the package ARN as an argument."""
    base = tmp_path / "processing"
    write_tarball(write_model(tmp_path / "built"), base / "model" / "model.tar.gz")
    write_tarball(write_model(tmp_path / "served", bias=0.0), base / "champion" / "model.tar.gz")
    split_dir.rename(base / "test")
    env = {"SM_PROCESSING_BASE": str(base), "SM_BASE_DIR": str(tmp_path / "opt_ml")}
    code = evaluate.main(["--champion-package", CHAMPION_ARN], env=env)
    assert code == 0
    report = json.loads((base / "evaluation" / "evaluation.json").read_text())
    assert {k: v["value"] for k, v in report["regression_metrics"].items()} == pytest.approx(EXPECTED)
    champion = report["champion"]
    assert champion["model_package_arn"] == CHAMPION_ARN
    assert {k: v["value"] for k, v in champion["regression_metrics"].items()} == pytest.approx(CHAMPION)
    assert champion["dataset"] == report["dataset"] == {"item_count": 4, "target": "y"}


@pytest.mark.parametrize("champion", [
    pytest.param(lambda tmp: None, id="no-champion-input"),
    pytest.param(lambda tmp: (tmp / "champion").mkdir() or tmp / "champion", id="empty-champion-folder"),
])
def test_without_a_champion_the_report_has_no_champion(tmp_path, split_dir, champion):
    report = evaluate.run(write_model(tmp_path / "model"), split_dir, tmp_path / "out", champion(tmp_path))
    assert "champion" not in report
    assert "champion" not in json.loads((tmp_path / "out" / "evaluation.json").read_text())


OTHER_DATA_SET = FeatureSpec(target="y", target_transform="none", input_columns=("a", "c"),
                             numeric=(("a", 0.0, 1.0), ("c", 0.0, 1.0)), ordinal=(), categorical=())


@pytest.mark.parametrize("write_champion, reason", [
    pytest.param(lambda d: write_model(d, spec=OTHER_DATA_SET), "header does not match features.json",
                 id="other-data-set"),
    pytest.param(lambda d: (d.mkdir(), (d / "model.tar.gz").write_bytes(b"not a tarball")), "cannot be extracted",
                 id="corrupt-archive"),
])
def test_a_champion_that_cannot_be_scored_is_reported_not_fatal(tmp_path, split_dir, write_champion, reason):
    write_champion(tmp_path / "champion")
    report = evaluate.run(write_model(tmp_path / "model"), split_dir, tmp_path / "out", tmp_path / "champion",
                          CHAMPION_ARN)
    assert report["regression_metrics"]["rmse"]["value"] == pytest.approx(1.0)
    assert report["champion"]["model_package_arn"] == CHAMPION_ARN
    assert "regression_metrics" not in report["champion"]
    assert reason in report["champion"]["error"]


def _corrupt_archive(base: Path) -> None:
    (base / "model" / "model.tar.gz").write_bytes(b"not a tarball")


def _no_model(base: Path) -> None:
    (base / "model" / "model.tar.gz").unlink()


def _no_test(base: Path) -> None:
    for part in (base / "test").iterdir():
        part.unlink()
    (base / "test").rmdir()


def _wrong_header(base: Path) -> None:
    for part in (base / "test").iterdir():
        part.write_text(part.read_text().replace("y,a,b", "y,a,c", 1))


@pytest.mark.parametrize("break_job, reason", [
    pytest.param(_no_model, "UserError: no model at", id="missing-model"),
    pytest.param(_corrupt_archive, "cannot be extracted", id="corrupt-archive"),
    pytest.param(_no_test, "UserError: the 'test' channel is missing", id="missing-test-data"),
    pytest.param(_wrong_header, "header does not match features.json (missing ['b'], unexpected ['c'])",
                 id="header-mismatch"),
])
def test_bad_inputs_exit_2_with_the_reason_on_stderr_and_in_the_exit_message(
        tmp_path, split_dir, run_python_module, break_job, reason):
    base = tmp_path / "processing"
    write_tarball(write_model(tmp_path / "built"), base / "model" / "model.tar.gz")
    split_dir.rename(base / "test")
    break_job(base)
    env = {"SM_PROCESSING_BASE": str(base), "SM_BASE_DIR": str(tmp_path / "opt_ml")}
    result = run_python_module("training.evaluate", env)
    assert result.returncode == EXIT_USER_ERROR
    assert reason in result.stderr
    assert reason in (tmp_path / "opt_ml" / "output" / "message").read_text()
    assert not (base / "evaluation" / "evaluation.json").exists()


def test_cli_flags_override_the_base_paths(tmp_path, split_dir):
    model = write_model(tmp_path / "elsewhere")
    code = evaluate.main(["--model", str(model), "--test", str(split_dir), "--output", str(tmp_path / "o"),
                          "--message-file", str(tmp_path / "message")],
                         env={"SM_PROCESSING_BASE": str(tmp_path / "nowhere")})
    assert code == 0
    assert (tmp_path / "o" / "evaluation.json").is_file()


# -- the metric computation ----------------------------------------------------------------------
def test_bootstrap_std_is_zero_when_every_error_is_the_same():
    actual = np.linspace(1, 10, 50)
    spread = evaluate.bootstrap_std(actual, actual + 3.0)
    assert spread["mae"] == pytest.approx(0.0, abs=1e-12)
    assert spread["rmse"] == pytest.approx(0.0, abs=1e-12)
    assert spread["r2"] > 0  # the spread of the target still varies between resamples


def test_bootstrap_std_is_the_standard_error_of_the_metric():
    rng = np.random.default_rng(7)
    actual = rng.normal(100, 20, size=4000)
    errors = rng.normal(0, 5, size=4000)
    spread = evaluate.bootstrap_std(actual, actual + errors)
    assert spread["mae"] == pytest.approx(np.std(np.abs(errors)) / math.sqrt(4000), rel=0.2)
    assert spread["mse"] == pytest.approx(np.std(errors ** 2) / math.sqrt(4000), rel=0.2)
    assert evaluate.bootstrap_std(actual, actual + errors) == spread  # seeded: same numbers every run


def test_r2_of_a_constant_target_is_null_and_the_report_is_strict_json():
    report = evaluate.evaluation_report(np.full(5, 2.0), np.array([1.0, 2.0, 3.0, 2.0, 2.0]), "y")
    assert report["regression_metrics"]["r2"] == {"value": None, "standard_deviation": None}
    json.loads(json.dumps(report, allow_nan=False))


def test_evaluate_does_not_import_tensorflow():
    code = "import sys, training.evaluate; sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)"
    src = str(Path(__file__).resolve().parents[2] / "src")
    assert subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": src}).returncode == 0
