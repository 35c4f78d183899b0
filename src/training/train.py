"""SageMaker training contract: fit the MLP regressor on the ETL's splits, write the model artifact.

Runs as ``python -m training.train`` (the image's ``train`` program). Paths live under SM_BASE_DIR
(default ``/opt/ml``, so the job also runs outside a container); each one is overridden by the
standard SageMaker variable when that is set:

    input/config/hyperparameters.json  SM_HPS (JSON)           values may be strings; training.contract
    input/data/train/                  SM_CHANNEL_TRAIN        CSV part files: target (original units),
                                                               then one column per feature_names
    input/data/validation/             SM_CHANNEL_VALIDATION   same header; early stopping, val metrics
    input/data/features/               SM_CHANNEL_FEATURES     holds features.json (optional channel)
    model/                             SM_MODEL_DIR            SageMaker tars it into model.tar.gz
    output/data/                       SM_OUTPUT_DATA_DIR      metrics.json
    output/failure                                             why the job failed (-> FailureReason)

Where features.json comes from: the ``features`` channel when there is one (SM_CHANNEL_FEATURES is
set, or ``input/data/features/`` exists), else the top of the ``train`` channel. Nothing else is
searched, so a stale copy elsewhere is never picked up.

Model directory (see training.predictor): model.keras, features.json (copied: the transform
travels with the model), dense.npz + model.json (numpy forward pass for evaluation and serving).
Before finishing, the job loads the artifact with ``Predictor`` and holds it to Keras' predictions,
and the validation metrics it reports are the Predictor's.

Exit codes (training.errors): 0 success; 2 user error (missing channel, no rows, header does not
match features.json, bad hyperparameter); 1 internal error. Either failure writes output/failure.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from training.contract import Hyperparameters, format_epoch_line, format_final_line, parse_hyperparameters
from training.errors import EXIT_SUCCESS, UserError, report_failure
from training.features import FeatureSpec, read_csv_dir
from training.predictor import Predictor, export_dense

__all__ = ["Paths", "Split", "main", "run", "load_spec", "load_split",
           "read_hyperparameters", "build_model", "fit", "export_model", "regression_metrics"]

logger = logging.getLogger(__name__)
KerasModel = Any  # a keras.Model: keras ships no type hints

ENV_BASE_DIR = "SM_BASE_DIR"
ENV_CHANNEL_TRAIN = "SM_CHANNEL_TRAIN"
ENV_CHANNEL_VALIDATION = "SM_CHANNEL_VALIDATION"
ENV_CHANNEL_FEATURES = "SM_CHANNEL_FEATURES"
ENV_MODEL_DIR = "SM_MODEL_DIR"
ENV_OUTPUT_DATA_DIR = "SM_OUTPUT_DATA_DIR"
ENV_HPS = "SM_HPS"
DEFAULT_BASE_DIR = "/opt/ml"
FEATURES_FILE = "features.json"
PARITY_TOLERANCE = 1e-4  # relative: numpy Predictor vs Keras, in the target's units


@dataclass(frozen=True)
class Paths:
    base: Path
    train: Path
    validation: Path
    features: Path  # the directory holding features.json
    features_source: str  # "features channel" or "train channel", for messages
    model: Path
    output_data: Path
    hyperparameters: Path
    failure: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Paths":
        base = Path(env.get(ENV_BASE_DIR) or DEFAULT_BASE_DIR)
        data = base / "input" / "data"
        train = Path(env.get(ENV_CHANNEL_TRAIN) or data / "train")
        features_dir = env.get(ENV_CHANNEL_FEATURES) or (
            data / "features" if (data / "features").is_dir() else None)
        return cls(
            base=base,
            train=train,
            validation=Path(env.get(ENV_CHANNEL_VALIDATION) or data / "validation"),
            features=Path(features_dir) if features_dir else train,
            features_source="features channel" if features_dir else "train channel",
            model=Path(env.get(ENV_MODEL_DIR) or base / "model"),
            output_data=Path(env.get(ENV_OUTPUT_DATA_DIR) or base / "output" / "data"),
            hyperparameters=base / "input" / "config" / "hyperparameters.json",
            failure=base / "output" / "failure",
        )


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # float32 features, feature_names order
    y: np.ndarray  # float64 target, original units


# -- inputs -------------------------------------------------------------------------------------
def read_hyperparameters(paths: Paths, env: Mapping[str, str]) -> Hyperparameters:
    """SM_HPS when set, else hyperparameters.json, else the defaults."""
    if env.get(ENV_HPS):
        source, text = ENV_HPS, env[ENV_HPS]
    elif paths.hyperparameters.is_file():
        source, text = str(paths.hyperparameters), paths.hyperparameters.read_text(encoding="utf-8")
    else:
        return parse_hyperparameters({})
    try:
        raw = json.loads(text or "{}")
    except ValueError as exc:
        raise UserError(f"hyperparameters in {source} are not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise UserError(f"hyperparameters in {source} must be a JSON object, got {type(raw).__name__}")
    return parse_hyperparameters(raw)


def load_spec(directory: Path, source: str = "features channel") -> FeatureSpec:
    path = directory / FEATURES_FILE
    if not path.is_file():
        raise UserError(f"{FEATURES_FILE} not found: expected {path} ({source}); give the job a "
                        f"'features' channel holding the ETL's {FEATURES_FILE}, or put it at the top "
                        f"of the train channel")
    try:
        return FeatureSpec.load(path)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a valid feature spec: {type(exc).__name__}: {exc}") from None


def load_split(directory: Path, spec: FeatureSpec, channel: str) -> Split:
    """One channel's CSV part files, checked against features.json."""
    if not directory.is_dir():
        raise UserError(f"the '{channel}' channel is missing: {directory} does not exist")
    try:
        with warnings.catch_warnings():  # a header-only part file (an empty Spark partition) is normal
            warnings.filterwarnings("ignore", message=".*input contained no data", category=UserWarning)
            header, values = read_csv_dir(directory)
    except FileNotFoundError:
        raise UserError(f"the '{channel}' channel ({directory}) holds no CSV files") from None
    except ValueError as exc:
        raise UserError(f"the '{channel}' channel ({directory}) cannot be read as numeric CSV: "
                        f"{exc}") from None
    expected = [spec.target, *spec.feature_names]
    if header != expected:
        missing = [c for c in expected if c not in header]
        extra = [c for c in header if c not in expected]
        detail = (f"missing {missing}, unexpected {extra}" if missing or extra
                  else "same columns in a different order")
        raise UserError(f"the '{channel}' channel's header does not match features.json ({detail}): "
                        f"expected {expected}, got {header}")
    if len(values) == 0:
        raise UserError(f"the '{channel}' channel ({directory}) has a header but no rows")
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise UserError(f"the '{channel}' channel has {int(bad.sum())} row(s) with a missing or "
                        f"non-finite value, the first at data row {int(np.argmax(bad)) + 1}")
    y = values[:, 0]
    if spec.target_transform == "log" and (y <= 0).any():
        raise UserError(f"the '{channel}' channel has {int((y <= 0).sum())} row(s) with {spec.target} <= 0; "
                        f"target_transform 'log' needs positive values")
    return Split(x=values[:, 1:].astype(np.float32), y=y)


# -- model --------------------------------------------------------------------------------------
def build_model(n_features: int, hp: Hyperparameters, steps_per_epoch: int) -> KerasModel:
    """Dense layers only (+ Dropout), so training.predictor can serve it with numpy.

    It trains on the standardized target (see fit) and outputs the encoded target once fit is done."""
    import keras

    layers: list[Any] = [keras.Input(shape=(n_features,), name="features")]
    for i, units in enumerate(hp.hidden_units):
        layers.append(keras.layers.Dense(units, activation=hp.activation, name=f"dense_{i}"))
        if hp.dropout > 0:
            layers.append(keras.layers.Dropout(hp.dropout, name=f"dropout_{i}"))
    layers.append(keras.layers.Dense(1, name="output"))
    model = keras.Sequential(layers, name="regressor")
    learning_rate: Any = hp.learning_rate
    if hp.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            hp.learning_rate, decay_steps=max(1, steps_per_epoch * hp.epochs), alpha=0.01)
    optimizer = keras.optimizers.Adam(learning_rate, global_clipnorm=hp.global_clipnorm or None)
    model.compile(optimizer=optimizer, loss="mse")  # fit() trains with this optimizer
    return model


@dataclass(frozen=True)
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int  # 1-based
    seconds: float


def epoch_function(model: KerasModel, x: np.ndarray, y: np.ndarray, batch_size: int) -> Callable[[np.ndarray], float]:
    """One compiled call per epoch: (row order) -> mean training loss, the MSE Keras' fit would minimise.

    The split sits in memory as two tensors and each batch is a gather of its rows: Keras' fit spent
    about twice the steps' own time per epoch building its tf.data pipeline and slicing batches in it."""
    import tensorflow as tf

    features = tf.constant(x, dtype=tf.float32)
    target = tf.constant(y, dtype=tf.float32)
    rows, batches = len(y), math.ceil(len(y) / batch_size)
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)

    def one_epoch(order: Any) -> Any:
        total = tf.constant(0.0)
        for i in tf.range(batches):
            batch = order[i * batch_size:(i + 1) * batch_size]
            with tf.GradientTape() as tape:
                predicted = model(tf.gather(features, batch), training=True)[:, 0]
                loss = tf.reduce_mean(tf.square(predicted - tf.gather(target, batch)))
            optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
            total += loss * tf.cast(tf.size(batch), tf.float32)
        return total / rows

    compiled = tf.function(one_epoch)
    return lambda order: float(compiled(tf.constant(order, dtype=tf.int32)))


def fit(model: KerasModel, train: Split, validation: Split, spec: FeatureSpec, hp: Hyperparameters,
        log: Callable[[str], None] = print) -> FitResult:
    """Train on the encoded target with early stopping; the model ends with its best epoch's weights.

    Early stopping as Keras' EarlyStopping(monitor="val_loss", restore_best_weights=True): stop after
    `patience` epochs without a lower validation loss, keep the best epoch's weights.

    The steps see the encoded target standardized (mean 0, std 1), so the learning rate and
    global_clipnorm mean the same on log prices (std ~1) as on rents in raw units (std ~560): with a
    fixed clip norm, every step of the rents was clipped and the model underfit (RMSE 457; now 44).
    Losses are reported in the encoded target's units and the scale is folded into the output layer
    at the end, so the artifact predicts the encoded target as before."""
    encoded_train = spec.encode_target(train.y)
    mean, std = float(np.mean(encoded_train)), float(np.std(encoded_train)) or 1.0
    run_epoch = epoch_function(model, train.x, (encoded_train - mean) / std, hp.batch_size)
    validation_encoded = spec.encode_target(validation.y)
    shuffle = np.random.default_rng(hp.seed)
    history: list[dict[str, float]] = []
    best_loss, best_weights, waited = math.inf, None, 0
    started = time.perf_counter()
    for epoch in range(1, hp.epochs + 1):
        train_loss = run_epoch(shuffle.permutation(len(train.y))) * std ** 2
        encoded = np.asarray(model(validation.x, training=False), dtype=np.float64)[:, 0] * std + mean
        errors = spec.decode_target(encoded) - validation.y
        row = {"epoch": epoch, "train_loss": train_loss,
               "val_loss": float(np.mean((encoded - validation_encoded) ** 2)),
               "val_rmse": float(np.sqrt(np.mean(errors ** 2))), "val_mae": float(np.mean(np.abs(errors)))}
        history.append(row)
        log(format_epoch_line(epoch, row["train_loss"], row["val_loss"], row["val_rmse"], row["val_mae"]))
        if row["val_loss"] < best_loss:
            best_loss, best_weights, waited = row["val_loss"], model.get_weights(), 0
        else:
            waited += 1
            if waited >= hp.patience:
                break
    if best_weights is not None:
        model.set_weights(best_weights)
    output = model.get_layer("output")
    kernel, bias = output.get_weights()
    output.set_weights([kernel * std, bias * std + mean])
    seconds = time.perf_counter() - started
    best = min(history, key=lambda row: row["val_loss"]) if history else {"epoch": 0}
    return FitResult(history=history, best_epoch=int(best["epoch"]), seconds=seconds)


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    errors = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    mse = float(np.mean(errors ** 2))
    total = float(np.sum((actual - np.mean(actual)) ** 2))
    r2 = 1.0 - float(np.sum(errors ** 2)) / total if total > 0 else math.nan
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(np.mean(np.abs(errors))), "r2": r2}


def export_model(model: KerasModel, model_dir: Path, features_json: Path, metadata: Mapping[str, Any]) -> None:
    """model.keras + features.json + dense.npz/model.json into the directory SageMaker uploads."""
    model_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # Keras 3.15's own np.array() call on a tensor, under numpy 2
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword",
                                category=DeprecationWarning)
        model.save(model_dir / "model.keras")
    shutil.copyfile(features_json, model_dir / FEATURES_FILE)
    export_dense(model, model_dir, metadata)


def check_parity(model: KerasModel, predictor: Predictor, x: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Predictions of the exported artifact, after holding them to Keras' own; returns the former."""
    served = predictor.predict_features(x)
    expected = spec.decode_target(np.asarray(model(x, training=False), dtype=np.float64)[:, 0])
    worst = float(np.max(np.abs(served - expected) / np.maximum(np.abs(expected), 1e-12)))
    if worst > PARITY_TOLERANCE:
        raise RuntimeError(f"the exported numpy model disagrees with Keras by up to {worst:.2e} "
                           f"(relative; tolerance {PARITY_TOLERANCE:g})")
    return served


# -- the job ------------------------------------------------------------------------------------
def run(paths: Paths, hp: Hyperparameters, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole job for given paths and hyperparameters; returns what metrics.json holds."""
    spec = load_spec(paths.features, paths.features_source)
    train = load_split(paths.train, spec, "train")
    validation = load_split(paths.validation, spec, "validation")
    log(f"train rows={len(train.y)} validation rows={len(validation.y)} features={len(spec.feature_names)} "
        f"hyperparameters={json.dumps(hp.to_dict())}")

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(hp.seed)
    tf.config.experimental.enable_op_determinism()  # cheap for a small dense model on CPU
    steps = math.ceil(len(train.y) / hp.batch_size)
    model = build_model(len(spec.feature_names), hp, steps)
    result = fit(model, train, validation, spec, hp, log=log)

    best = next(row for row in result.history if row["epoch"] == result.best_epoch)
    metadata = {
        "tensorflow_version": tf.__version__, "keras_version": keras.__version__,
        "hyperparameters": hp.to_dict(), "feature_names": spec.feature_names, "target": spec.target,
        "target_transform": spec.target_transform, "best_epoch": result.best_epoch,
        "epochs_run": len(result.history), "train_seconds": round(result.seconds, 3),
        "train_rows": len(train.y), "validation_rows": len(validation.y),
        "validation": {"loss": best["val_loss"]},
    }
    export_model(model, paths.model, paths.features / FEATURES_FILE, metadata)
    predictor = Predictor.load(paths.model)
    scores = regression_metrics(validation.y, check_parity(model, predictor, validation.x, spec))
    metadata["validation"].update(scores)
    export_dense(model, paths.model, metadata)  # again, now with the served model's own scores
    log(format_final_line(result.best_epoch, scores["rmse"], scores["mae"], scores["r2"]))

    metrics = {key: metadata[key] for key in ("best_epoch", "epochs_run", "train_seconds", "train_rows",
                                              "validation_rows", "validation", "hyperparameters")}
    metrics["history"] = result.history
    paths.output_data.mkdir(parents=True, exist_ok=True)
    (paths.output_data / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """SageMaker passes no arguments (`<image> train`); everything comes from SM_* and /opt/ml."""
    parser = argparse.ArgumentParser(
        prog="train", description="Train the regression model under the SageMaker training contract.",
        epilog="Inputs: SM_CHANNEL_TRAIN, SM_CHANNEL_VALIDATION, SM_CHANNEL_FEATURES, SM_HPS or "
               "<SM_BASE_DIR>/input/config/hyperparameters.json. Outputs: SM_MODEL_DIR, "
               "SM_OUTPUT_DATA_DIR, <SM_BASE_DIR>/output/failure on error. SM_BASE_DIR defaults to /opt/ml.")
    return parser.parse_args(argv)


def main(env: Mapping[str, str] | None = None, argv: Sequence[str] | None = None) -> int:
    parse_args(argv or [])
    env = os.environ if env is None else env
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(message)s")
    paths = Paths.from_env(env)
    paths.failure.unlink(missing_ok=True)  # a rerun in the same directory must not inherit a reason
    try:
        run(paths, read_hyperparameters(paths, env), log=logger.info)
    except Exception as exc:  # the boundary: every failure becomes a failure file and an exit code
        return report_failure(exc, paths.failure)
    return EXIT_SUCCESS


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported
    sys.exit(main(argv=sys.argv[1:]))
