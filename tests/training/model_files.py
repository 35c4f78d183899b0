"""A small model with known weights, written as the model server reads it (training.predictor).

Shared by the model-server tests (tests/training/test_serve.py) and the local endpoints' tests
(tests/mlops_local/test_endpoints.py): predictions are computable by hand.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from training.features import FeatureSpec

# input order (the data set's): carat, cut, color, depth
# feature order (the model's):  carat, depth, cut, color=D, color=E, color=F
SPEC = FeatureSpec(
    target="price",
    target_transform="none",
    input_columns=("carat", "cut", "color", "depth"),
    numeric=(("carat", 1.0, 0.5), ("depth", 60.0, 2.0)),
    ordinal=(("cut", ("Fair", "Good", "Ideal")),),
    categorical=(("color", ("D", "E", "F")),),
)
# hidden_0 = relu(carat + 2 depth + 3 cut + 10 D + 20 E + 30 F + 0.5); hidden_1 = relu(-carat - 1)
# price = 2 hidden_0 + 5 hidden_1 + 100
KERNEL_0 = [[1, -1], [2, 0], [3, 0], [10, 0], [20, 0], [30, 0]]
BIAS_0 = [0.5, -1]
KERNEL_1 = [[2], [5]]
BIAS_1 = [100]

RECORDS = [
    ["1.5", "Ideal", "E", "62"],  # features 1, 1, 1, E -> hidden 26.5, 0 -> 153
    ["0.5", "Fair", "D", "58"],   # features -1, -1, 0, D -> hidden 7.5, 0 -> 115
    ["2.0", "Good", "F", "61"],   # features 2, 0.5, 0.5, F -> hidden 35, 0 -> 170
]
BY_HAND = [153.0, 115.0, 170.0]
CSV_BODY = "".join(",".join(r) + "\n" for r in RECORDS).encode()


def write_model_dir(path: Path, kernel_1: Any = KERNEL_1) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    SPEC.save(path / "features.json")
    np.savez(path / "dense.npz",
             kernel_0=np.asarray(KERNEL_0, np.float32), bias_0=np.asarray(BIAS_0, np.float32),
             kernel_1=np.asarray(kernel_1, np.float32), bias_1=np.asarray(BIAS_1, np.float32))
    meta = {"format_version": 1, "activations": ["relu", "linear"], "feature_names": SPEC.feature_names}
    (path / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    return path
