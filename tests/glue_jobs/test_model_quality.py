"""README's quality claim on the pipeline's own data path: the Glue job's split of the full shipped
data (local Spark), then training and evaluation as their containers run them: test RMSE <= 600 USD."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = [pytest.mark.spark, pytest.mark.slow]
README_RMSE = 600.0  # README: "target RMSE <= 600"; data/diamonds.yaml's quality_threshold


def run_module(module: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_", "PYSPARK"))}
    clean.update(env, PYTHONPATH=str(ROOT / "src"), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", module, *args], env=clean, capture_output=True, text=True,
                          timeout=600, cwd=ROOT)


def stage_training_job(base: Path, etl_out: Path) -> None:
    """The ETL's outputs where SageMaker puts the channels, default hyperparameters."""
    for channel in ("train", "validation"):
        shutil.copytree(etl_out / channel, base / "input" / "data" / channel)
    (base / "input" / "data" / "features").mkdir(parents=True)
    shutil.copy(etl_out / "features.json", base / "input" / "data" / "features" / "features.json")
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text("{}", encoding="utf-8")


def test_model_on_the_etl_split_meets_the_readme_rmse(diamonds_run, diamonds_config, tmp_path):
    out, quality = diamonds_run
    assert diamonds_config.quality_threshold == README_RMSE
    assert README_RMSE == float(
        (ROOT / "README.md").read_text(encoding="utf-8").split("target RMSE <= ")[1].split(";")[0].split(")")[0])
    base = tmp_path / "opt_ml"
    stage_training_job(base, out)
    training = run_module("training.train", {"SM_BASE_DIR": str(base)})
    assert training.returncode == 0, training.stdout[-2000:] + training.stderr[-2000:]

    processing = tmp_path / "processing"
    evaluation = run_module("training.evaluate", {"SM_PROCESSING_BASE": str(processing)},
                            "--model", str(base / "model"), "--test", str(out / "test"))
    assert evaluation.returncode == 0, evaluation.stderr[-2000:]
    metrics = json.loads((processing / "evaluation" / "evaluation.json").read_text())["regression_metrics"]
    print(f"ETL split: test rows={quality['splits']['test']} rmse={metrics['rmse']['value']:.1f} "
          f"r2={metrics['r2']['value']:.4f}")
    assert metrics["rmse"]["value"] <= README_RMSE
    assert metrics["r2"]["value"] >= 0.97
