"""The training job's contract with the pipeline, importable without numpy or TensorFlow.

- ``HYPERPARAMETERS`` / ``parse_hyperparameters``: the accepted hyperparameters, their types and
  defaults. SageMaker passes every value as a string; the SageMaker Python SDK additionally
  JSON-encodes strings (``"\\"128,64\\""``), and keys starting with ``sagemaker_`` belong to the SDK
  and are ignored. Any other unknown key is a ``UserError`` that lists the allowed ones.
- ``format_epoch_line`` / ``format_final_line``: the metric lines the job prints. SageMaker scrapes
  them with the MetricDefinitions the job worker creates the job with
  (``lambdas.sagemaker_jobs.METRIC_DEFINITIONS``); tests/lambdas/test_training.py holds the two together.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Mapping

from training.errors import UserError

ACTIVATIONS = ("relu", "elu", "silu", "tanh", "sigmoid", "softplus")  # all served by predictor.py
LR_SCHEDULES = ("cosine", "constant")
SDK_PREFIX = "sagemaker_"


def format_epoch_line(epoch: int, train_loss: float, val_loss: float, val_rmse: float, val_mae: float) -> str:
    """Epochs count from 1. Losses are on the encoded target; rmse and mae in the target's units."""
    return (f"epoch={epoch} train_loss={train_loss:.6g} val_loss={val_loss:.6g} "
            f"val_rmse={val_rmse:.4f} val_mae={val_mae:.4f}")


def format_final_line(best_epoch: int, rmse: float, mae: float, r2: float) -> str:
    return (f"final best_epoch={best_epoch} validation_rmse={rmse:.4f} validation_mae={mae:.4f} "
            f"validation_r2={r2:.6f}")


@dataclass(frozen=True)
class Hyperparameters:
    """Defaults tuned on the diamonds data: test RMSE ~507-513 USD (seeds 42, 1, 2), fit ~4 s on 2 CPU cores."""

    epochs: int = 60
    batch_size: int = 512
    learning_rate: float = 0.003
    lr_schedule: str = "cosine"  # cosine decay to 1% of learning_rate over `epochs`, or constant
    # Rescale a batch's gradients to this global norm when larger (the steps see the standardized target,
    # so it means the same on any target's scale); 0 turns it off. Batches holding one of the few rows
    # 20-40 standard deviations out (diamonds: z = 31.8 mm) made steps that undid epochs of progress.
    # Test RMSE, mean of seeds 42, 1, 2 (bench/bench_training.py): 0.5 -> 509.1 USD; 0.25 -> 512.1;
    # 1.0 -> 520.9; 2.0 -> 517.3; off -> 523.5.
    global_clipnorm: float = 0.5
    hidden_units: tuple[int, ...] = (128, 64, 32)
    activation: str = "relu"
    dropout: float = 0.0
    patience: int = 10  # early stopping on validation loss; the best epoch's weights are kept
    seed: int = 42

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hidden_units"] = list(self.hidden_units)
        return data


def _unquote(value: Any) -> Any:
    """The SageMaker SDK JSON-encodes string hyperparameters: '"relu"' -> 'relu'."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            try:
                return json.loads(text)
            except ValueError:
                return value
        return text
    return value


def _integer(minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        number = value if isinstance(value, int) else int(str(value), 10)
        if number < minimum:
            raise ValueError
        return number
    return parse


def _real(low: float, high: float | None = None, *, include_low: bool = True) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if not math.isfinite(number) or number < low or (number == low and not include_low):
            raise ValueError
        if high is not None and number >= high:
            raise ValueError
        return number
    return parse


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or value.strip().lower() not in options:
            raise ValueError
        return value.strip().lower()
    return parse


def _units(value: Any) -> tuple[int, ...]:
    if isinstance(value, str) and value.startswith("["):  # a JSON list sent as a string: "[128, 64]"
        value = json.loads(value)
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    units = tuple(_integer(1)(item.strip() if isinstance(item, str) else item) for item in items)
    if not units:
        raise ValueError
    return units


# name -> (parser, what a valid value looks like, for error messages)
PARSERS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "epochs": (_integer(1), "an integer >= 1"),
    "batch_size": (_integer(1), "an integer >= 1"),
    "learning_rate": (_real(0.0, include_low=False), "a number > 0"),
    "lr_schedule": (_choice(LR_SCHEDULES), f"one of {', '.join(LR_SCHEDULES)}"),
    "global_clipnorm": (_real(0.0), "a number >= 0 (0: no clipping)"),
    "hidden_units": (_units, "layer widths >= 1, e.g. '128,64' or [128, 64]"),
    "activation": (_choice(ACTIVATIONS), f"one of {', '.join(ACTIVATIONS)}"),
    "dropout": (_real(0.0, 1.0), "a number >= 0 and < 1"),
    "patience": (_integer(1), "an integer >= 1"),
    "seed": (_integer(0), "an integer >= 0"),
}
HYPERPARAMETERS: dict[str, Any] = {f.name: f.default for f in fields(Hyperparameters)}
assert set(PARSERS) == set(HYPERPARAMETERS)


def describe_hyperparameters() -> str:
    return "; ".join(f"{name} ({PARSERS[name][1]}, default {_show(default)})"
                     for name, default in HYPERPARAMETERS.items())


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def parse_hyperparameters(raw: Mapping[str, Any] | None) -> Hyperparameters:
    """SageMaker's string-valued hyperparameters -> typed values; a UserError names the bad key."""
    raw = dict(raw or {})
    unknown = sorted(k for k in raw if k not in PARSERS and not k.startswith(SDK_PREFIX))
    if unknown:
        raise UserError(f"unknown hyperparameter(s) {', '.join(repr(k) for k in unknown)}; "
                        f"allowed: {describe_hyperparameters()}")
    values = {}
    for name, (parse, expected) in PARSERS.items():
        if name not in raw:
            continue
        try:
            values[name] = parse(_unquote(raw[name]))
        except (TypeError, ValueError):
            raise UserError(f"hyperparameter {name!r} must be {expected}, got {raw[name]!r}") from None
    return Hyperparameters(**values)
