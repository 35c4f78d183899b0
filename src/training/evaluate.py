"""SageMaker processing contract: score the trained model on the test split.

Runs as ``python -m training.evaluate [--model PATH] [--test DIR] [--output DIR]``, with numpy and
the same ``Predictor`` the model server uses (no TensorFlow). Paths, under SM_PROCESSING_BASE
(default ``/opt/ml/processing``), each overridable by its flag:

    model/        model.tar.gz of the training job (the challenger), or an already extracted model directory
    champion/     optional: model.tar.gz of the group's current Approved package (the champion), given by
                  SubmitEvaluation when the group has one; scored on the same test split
    test/         the ETL's test split: CSV part files, target (original units) then feature_names
    evaluation/   evaluation.json and evaluation.png (predicted vs actual)

evaluation.json has the shape of SageMaker's model-quality statistics for regression (what
ModelMetrics.ModelQuality.Statistics of a model package points to), every metric in the target's
original units::

    {"regression_metrics": {"mse":  {"value": ..., "standard_deviation": ...},
                            "rmse": {...}, "mae": {...}, "r2": {...}},
     "dataset": {"item_count": <test rows>, "target": "price"},
     "standard_deviation_method": "...",
     "champion": {"model_package_arn": "...", "regression_metrics": {...}}}   only with a champion

``champion`` holds the champion's metrics on the same rows, in the same shape; when its model cannot be
scored on this split (another data set's columns, an unreadable archive) it holds ``error`` instead, and
the gate (lambdas.evaluation) decides by the threshold alone, saying why. A champion that cannot be
scored never fails the job: it would block every later execution, e.g. after a change of data set.

``standard_deviation`` is the bootstrap standard error of each metric: the standard deviation of the
metric over BOOTSTRAP_RESAMPLES resamples (with replacement, fixed seed) of the test rows. r2 is
null when the test target is constant.

Failures: a message on stderr and exit code 2 (user error: missing or unreadable model or test
data, header mismatch) or 1 (internal error). The same text goes to ``output/message`` under
SM_BASE_DIR (default ``/opt/ml``), which SageMaker reports as the processing job's ExitMessage;
``--message-file`` overrides the path.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from training.errors import EXIT_SUCCESS, UserError, report_failure
from training.predictor import Predictor
from training.train import load_split, regression_metrics

logger = logging.getLogger(__name__)

ENV_PROCESSING_BASE = "SM_PROCESSING_BASE"
ENV_BASE_DIR = "SM_BASE_DIR"
DEFAULT_PROCESSING_BASE = "/opt/ml/processing"
DEFAULT_BASE_DIR = "/opt/ml"
MODEL_ARCHIVE = "model.tar.gz"
REPORT_FILE = "evaluation.json"
PLOT_FILE = "evaluation.png"
BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 0
METRICS = ("mse", "rmse", "mae", "r2")


# -- model --------------------------------------------------------------------------------------
def resolve_model_dir(path: Path, workdir: Path) -> Path:
    """A model directory from a model.tar.gz, a directory holding one, or an extracted directory."""
    if path.is_dir():
        if (path / "model.json").is_file():
            return path
        if (path / MODEL_ARCHIVE).is_file():
            path = path / MODEL_ARCHIVE
        else:
            raise UserError(f"no model at {path}: expected {MODEL_ARCHIVE} or an extracted model "
                            f"directory (model.json, dense.npz, features.json)")
    elif not path.is_file():
        raise UserError(f"no model at {path}: the path does not exist")
    try:
        with tarfile.open(path, "r:*") as archive:
            archive.extractall(workdir, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UserError(f"the model archive {path} cannot be extracted: {exc}") from None
    found = sorted(workdir.rglob("model.json"))
    if len(found) != 1:
        raise UserError(f"the model archive {path} holds {len(found)} model.json files, expected 1")
    return found[0].parent


def load_predictor(model_dir: Path) -> Predictor:
    try:
        return Predictor.load(model_dir)
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"the model in {model_dir} cannot be loaded: {type(exc).__name__}: {exc}") from None


# -- metrics ------------------------------------------------------------------------------------
def _metric_rows(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    scores = regression_metrics(actual, predicted)
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in scores.items()}


def bootstrap_std(actual: np.ndarray, predicted: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                  seed: int = BOOTSTRAP_SEED) -> dict[str, float | None]:
    """Standard deviation of each metric over resamples of the rows (the metric's standard error)."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in METRICS}
    n = len(actual)
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(resamples):
            index = rng.integers(0, n, size=n)
            for name, value in regression_metrics(actual[index], predicted[index]).items():
                draws[name].append(value)
    result: dict[str, float | None] = {}
    for name, values in draws.items():
        finite = np.asarray(values)[np.isfinite(values)]
        result[name] = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
    return result


def evaluation_report(actual: np.ndarray, predicted: np.ndarray, target: str,
                      resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """evaluation.json's content (SageMaker model-quality regression statistics)."""
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    values = _metric_rows(actual, predicted)
    spread = bootstrap_std(actual, predicted, resamples, seed)
    return {
        "regression_metrics": {name: {"value": values[name], "standard_deviation": spread[name]}
                               for name in METRICS},
        "dataset": {"item_count": int(len(actual)), "target": target},
        "standard_deviation_method": (f"bootstrap: standard deviation of the metric over {resamples} "
                                      f"resamples of the test rows with replacement (seed {seed})"),
    }


def plot(actual: np.ndarray, predicted: np.ndarray, report: Mapping[str, Any], path: Path) -> None:
    """Predicted vs actual (log axes when every value is positive) and the residuals' histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = report["regression_metrics"]
    target = report["dataset"]["target"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5))
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    left.scatter(actual, predicted, s=3, alpha=0.3, linewidths=0)
    left.plot([low, high], [low, high], color="black", linewidth=1, label="predicted = actual")
    if low > 0:
        left.set_xscale("log")
        left.set_yscale("log")
    left.set_xlabel(f"actual {target}")
    left.set_ylabel(f"predicted {target}")
    left.legend(loc="upper left")
    rmse, mae, r2 = (metrics[name]["value"] for name in ("rmse", "mae", "r2"))
    r2_text = "n/a" if r2 is None else f"{r2:.4f}"
    left.set_title(f"n={len(actual)}  RMSE={rmse:.1f}  MAE={mae:.1f}  R2={r2_text}")
    right.hist(predicted - actual, bins=60)
    right.set_xlabel(f"predicted - actual {target}")
    right.set_ylabel("rows")
    right.set_title("residuals")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- the job ------------------------------------------------------------------------------------
def has_model(path: Path) -> bool:
    """Whether a champion was given: SubmitEvaluation adds the champion input only when the group has one."""
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def score_champion(champion_path: Path, test_dir: Path, package_arn: str | None) -> dict[str, Any]:
    """The champion's metrics on the same test split, or why it could not be scored."""
    champion: dict[str, Any] = {"model_package_arn": package_arn}
    try:
        with tempfile.TemporaryDirectory(prefix="champion-") as workdir:
            predictor = load_predictor(resolve_model_dir(champion_path, Path(workdir)))
        test = load_split(test_dir, predictor.spec, "test")
        champion.update(evaluation_report(test.y, predictor.predict_features(test.x), predictor.spec.target))
    except UserError as exc:
        logger.warning("the champion %s cannot be scored on this test split: %s", package_arn, exc)
        champion["error"] = str(exc)
    return champion


def run(model_path: Path, test_dir: Path, output_dir: Path, champion_path: Path | None = None,
        champion_arn: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="model-") as workdir:
        predictor = load_predictor(resolve_model_dir(model_path, Path(workdir)))
    test = load_split(test_dir, predictor.spec, "test")
    predicted = predictor.predict_features(test.x)
    report = evaluation_report(test.y, predicted, predictor.spec.target)
    if champion_path is not None and has_model(champion_path):
        report["champion"] = score_champion(champion_path, test_dir, champion_arn)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(test.y, predicted, report, output_dir / PLOT_FILE)
    metrics = report["regression_metrics"]
    logger.info("test rows=%d rmse=%.4f mae=%.4f r2=%s -> %s", len(test.y), metrics["rmse"]["value"],
                metrics["mae"]["value"], metrics["r2"]["value"], output_dir / REPORT_FILE)
    champion = report.get("champion", {}).get("regression_metrics")
    if champion:
        logger.info("champion %s on the same rows: rmse=%s mae=%s r2=%s", report["champion"]["model_package_arn"],
                    champion["rmse"]["value"], champion["mae"]["value"], champion["r2"]["value"])
    return report


def parse_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> argparse.Namespace:
    base = Path(env.get(ENV_PROCESSING_BASE) or DEFAULT_PROCESSING_BASE)
    message = Path(env.get(ENV_BASE_DIR) or DEFAULT_BASE_DIR) / "output" / "message"
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=base / "model",
                        help="model.tar.gz, a directory holding it, or an extracted model directory")
    parser.add_argument("--champion", type=Path, default=base / "champion",
                        help="the champion's model (as --model); absent or empty: no champion")
    parser.add_argument("--champion-package", default=None,
                        help="the champion's model package ARN, recorded beside its metrics")
    parser.add_argument("--test", type=Path, default=base / "test", help="directory of test CSV part files")
    parser.add_argument("--output", type=Path, default=base / "evaluation",
                        help="where evaluation.json and evaluation.png go")
    parser.add_argument("--message-file", type=Path, default=message,
                        help="where a failure's reason goes (SageMaker's ExitMessage)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv, env)
    try:
        run(args.model, args.test, args.output, args.champion, args.champion_package)
    except Exception as exc:  # the boundary: a reason on stderr and in the message file, an exit code
        return report_failure(exc, args.message_file)
    return EXIT_SUCCESS


if __name__ == "__main__":
    sys.exit(main())
