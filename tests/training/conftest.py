"""Fixtures for the training and evaluation contracts: split directories shaped like the ETL's output.

Two sources:
- ``write_synthetic_splits``: a tiny generated data set (hundreds of rows, two numeric and one
  ordinal column, log target) for fast tests;
- ``write_diamonds_splits``: the shipped diamonds data put through a pandas stand-in for the Glue
  job (rules -> quarantine, duplicates dropped, seeded 70/15/15 split, transform fitted on train).
  It exists so the model can be measured before the ETL lands; it is not the ETL.

Both write ``<root>/{train,validation,test}/part-00000.csv`` (header: target, then feature_names;
target in original units) and ``<root>/features.json``.
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

from training.features import FeatureSpec, safe_std

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


def write_diamonds_splits(root: Path) -> FeatureSpec:
    """Approximate the Glue ETL on data/diamonds.csv.gz with the dataset config's own settings."""
    import pandas as pd

    from training.dataset import load_config

    config = load_config(REPO / "data" / "diamonds.yaml")
    frame = pd.read_csv(REPO / "data" / "diamonds.csv.gz")
    config.check_header(list(frame.columns))
    keep = np.ones(len(frame), dtype=bool)
    for rule in config.rules:
        values = frame[rule.column]
        if rule.min is not None:
            keep &= values.to_numpy() >= rule.min
        if rule.max is not None:
            keep &= values.to_numpy() <= rule.max
        if rule.allowed is not None:
            keep &= values.astype(str).isin(rule.allowed).to_numpy()
    frame = frame[keep].drop(columns=list(config.drop)).drop_duplicates().reset_index(drop=True)

    order = np.random.default_rng(config.split.seed).permutation(len(frame))
    n_train = int(round(config.split.train * len(frame)))
    n_validation = int(round(config.split.validation * len(frame)))
    parts = {"train": order[:n_train], "validation": order[n_train:n_train + n_validation],
             "test": order[n_train + n_validation:]}
    train = frame.iloc[parts["train"]]
    spec = FeatureSpec(
        target=config.target, target_transform=config.target_transform,
        input_columns=config.feature_columns,
        numeric=tuple((c, float(train[c].mean()), safe_std(float(train[c].std()))) for c in config.numeric),
        ordinal=tuple(config.ordinal.items()),
        categorical=tuple((c, tuple(sorted(train[c].astype(str).unique()))) for c in config.categorical),
    )
    for split, index in parts.items():
        subset = frame.iloc[index]
        records = subset[list(config.feature_columns)].to_dict("records")
        write_split(root / split, spec, subset[config.target].to_numpy(dtype=np.float64),
                    spec.transform(records), parts=2)
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


@pytest.fixture(scope="session")
def diamonds_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("diamonds")
    write_diamonds_splits(root)
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
