"""Fixtures for the training and evaluation contracts: split directories shaped like the ETL's output.

``write_synthetic_splits``: a tiny generated data set (hundreds of rows, two numeric and one
ordinal column, log target) for fast tests. The model on the shipped data is measured on the Glue
job's own split (tests/glue_jobs/test_model_quality.py), not here. It writes
``<root>/{train,validation,test}/part-00000.csv`` (header: target, then feature_names; target in
original units) and ``<root>/features.json``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping

import numpy as np
import pytest

from training.features import FeatureSpec

from tests.conftest import ROOT

REPO = ROOT
SPLITS = ("train", "validation", "test")


def write_split(directory: Path, spec: FeatureSpec, y: np.ndarray, x: np.ndarray, parts: int = 1) -> None:
    """CSV part files as Spark writes them: one header per part, target first."""
    directory.mkdir(parents=True, exist_ok=True)
    header = ",".join([spec.target, *spec.feature_names])
    for i, rows in enumerate(np.array_split(np.column_stack([y, x]), parts)):
        lines = [header] + [",".join(repr(float(v)) for v in row) for row in rows]
        (directory / f"part-{i:05d}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def synthetic_spec() -> FeatureSpec:
    return FeatureSpec(
        target="value", target_transform="log", input_columns=("a", "b", "grade"),
        numeric=(("a", 0.0, 1.0), ("b", 0.0, 1.0)),
        ordinal=(("grade", ("lo", "mid", "hi")),), categorical=(),
    )


def write_synthetic_splits(root: Path, rows: Mapping[str, int] | None = None, seed: int = 0) -> FeatureSpec:
    """A smooth log-linear target with a little noise: easy enough to learn in a few epochs."""
    rows = dict(rows or {"train": 384, "validation": 96, "test": 96})
    spec = synthetic_spec()
    rng = np.random.default_rng(seed)
    for split in SPLITS:
        n = rows.get(split, 0)
        x = np.column_stack([rng.normal(size=n), rng.normal(size=n), rng.integers(0, 3, size=n) / 2])
        log_y = 3.0 + 0.5 * x[:, 0] - 0.3 * x[:, 1] + 0.4 * x[:, 2] + rng.normal(scale=0.05, size=n)
        write_split(root / split, spec, np.exp(log_y), x)
    spec.save(root / "features.json")
    return spec


def sagemaker_layout(base: Path, data: Path, hyperparameters: Mapping[str, str] | None = None,
                     channels: tuple[str, ...] = ("train", "validation"),
                     features_channel: bool = True) -> None:
    """Stage split dirs under <base>/input/data/<channel> and hyperparameters.json, as SageMaker does."""
    import shutil

    for channel in channels:
        shutil.copytree(data / channel, base / "input" / "data" / channel)
    if features_channel:
        (base / "input" / "data" / "features").mkdir(parents=True)
        shutil.copy(data / "features.json", base / "input" / "data" / "features" / "features.json")
    (base / "input" / "config").mkdir(parents=True, exist_ok=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps(dict(hyperparameters or {})), encoding="utf-8")


def run_module(module: str, env: Mapping[str, str], *args: str,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m <module>` as the container runs it, with src on the path and no SageMaker env leaking in."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
    clean.update(env)
    clean["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), clean.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    clean.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return subprocess.run([sys.executable, "-m", module, *args], env=clean, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_splits(root)
    return root


# Helpers reach tests as fixtures: importing `conftest` by name breaks once other test folders have one.
@pytest.fixture(scope="session")
def synthetic_feature_spec() -> FeatureSpec:
    return synthetic_spec()


@pytest.fixture(scope="session")
def make_synthetic_splits():
    return write_synthetic_splits


@pytest.fixture(scope="session")
def write_split_csv():
    return write_split


@pytest.fixture(scope="session")
def stage_training_job():
    return sagemaker_layout


@pytest.fixture(scope="session")
def run_python_module():
    return run_module
