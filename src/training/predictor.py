"""The served model: a dense network evaluated with numpy, from weights exported at training time.

Training saves the Keras model (model.keras) and, beside it, its dense layers as plain arrays
(dense.npz + model.json). Evaluation and the model server load only these, so they need numpy
and not TensorFlow: the server starts in milliseconds and answers a row in microseconds. A test
holds this forward pass to Keras' own predictions.

Model directory (the contents of model.tar.gz):
    model.keras     the trained Keras model
    dense.npz       kernel_0, bias_0, kernel_1, bias_1, ... (float32)
    model.json      {"format_version": 1, "activations": [...], "feature_names": [...], ...}
    features.json   the fitted feature transform (training.features.FeatureSpec)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from training.features import FeatureSpec

MODEL_FORMAT_VERSION = 1
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
}
ACTIVATIONS["swish"] = ACTIVATIONS["silu"]


@dataclass(frozen=True)
class Predictor:
    spec: FeatureSpec
    kernels: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    activations: tuple[str, ...]
    metadata: Mapping[str, Any]

    @classmethod
    def load(cls, model_dir: str | Path) -> "Predictor":
        model_dir = Path(model_dir)
        meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
        if meta.get("format_version") != MODEL_FORMAT_VERSION:
            raise ValueError(f"{model_dir}/model.json: format_version {meta.get('format_version')!r} "
                             f"is not {MODEL_FORMAT_VERSION}")
        spec = FeatureSpec.load(model_dir / "features.json")
        activations = tuple(meta["activations"])
        unknown = [a for a in activations if a not in ACTIVATIONS]
        if unknown:
            raise ValueError(f"{model_dir}/model.json: unsupported activation(s) {unknown}")
        with np.load(model_dir / "dense.npz") as arrays:
            kernels = tuple(arrays[f"kernel_{i}"] for i in range(len(activations)))
            biases = tuple(arrays[f"bias_{i}"] for i in range(len(activations)))
        if kernels[0].shape[0] != len(spec.feature_names):
            raise ValueError(f"{model_dir}: the model takes {kernels[0].shape[0]} features, "
                             f"features.json defines {len(spec.feature_names)}")
        return cls(spec, kernels, biases, activations, meta)

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Transformed features -> predictions in the target's own units."""
        h = np.asarray(features, dtype=np.float32)
        for kernel, bias, activation in zip(self.kernels, self.biases, self.activations):
            h = ACTIVATIONS[activation](h @ kernel + bias)
        return self.spec.decode_target(h[:, 0].astype(np.float64))

    def predict_records(self, records: Sequence[Sequence[Any]] | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Raw records in the data set's own schema -> predictions; RecordError names a bad row."""
        return self.predict_features(self.spec.transform(records))


def export_dense(model: Any, model_dir: str | Path, metadata: Mapping[str, Any]) -> None:
    """Write dense.npz and model.json for a Keras model made only of Dense layers."""
    arrays: dict[str, np.ndarray] = {}
    activations = []
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    others = [layer.name for layer in model.layers
              if layer.__class__.__name__ not in ("Dense", "InputLayer", "Dropout")]
    if others:
        raise ValueError(f"cannot export layers other than Dense/Dropout: {others}")
    for i, layer in enumerate(dense):
        kernel, bias = layer.get_weights()
        arrays[f"kernel_{i}"] = kernel.astype(np.float32)
        arrays[f"bias_{i}"] = bias.astype(np.float32)
        name = layer.get_config()["activation"]
        activations.append(name if isinstance(name, str) else str(name))
    model_dir = Path(model_dir)
    np.savez(model_dir / "dense.npz", **arrays)  # type: ignore[arg-type]  # numpy's stub: **kwds may be allow_pickle
    meta = {"format_version": MODEL_FORMAT_VERSION, "activations": activations, **metadata}
    (model_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
