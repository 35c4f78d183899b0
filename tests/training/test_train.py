"""The SageMaker training contract (training.train, training.contract, training.errors)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from training import contract, train
from training.contract import Hyperparameters, parse_hyperparameters
from training.errors import EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, UserError
from training.features import FeatureSpec
from training.predictor import ACTIVATIONS, Predictor

# Small enough to train in a couple of seconds on the synthetic splits.
TINY = {"epochs": "6", "batch_size": "64", "hidden_units": "16,8", "learning_rate": "0.01"}
MODEL_FILES = {"model.keras", "features.json", "dense.npz", "model.json"}


# -- hyperparameters ----------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    pytest.param({}, {}, id="defaults"),
    pytest.param({"epochs": "5", "batch_size": "32", "patience": "3", "seed": "0"},
                 {"epochs": 5, "batch_size": 32, "patience": 3, "seed": 0}, id="int-strings"),
    pytest.param({"learning_rate": "1e-3", "dropout": "0.25"}, {"learning_rate": 0.001, "dropout": 0.25},
                 id="float-strings"),
    pytest.param({"hidden_units": "64, 32"}, {"hidden_units": (64, 32)}, id="units-string"),
    pytest.param({"hidden_units": "8"}, {"hidden_units": (8,)}, id="one-layer"),
    pytest.param({"hidden_units": '"64,32"', "activation": '"tanh"'},
                 {"hidden_units": (64, 32), "activation": "tanh"}, id="sdk-json-quoted"),
    pytest.param({"hidden_units": "[64, 32]", "dropout": "0"}, {"hidden_units": (64, 32)},
                 id="units-json-list"),
    pytest.param({"epochs": 7, "learning_rate": 0.5, "hidden_units": [4, 2]},
                 {"epochs": 7, "learning_rate": 0.5, "hidden_units": (4, 2)},
                 id="native-types-from-SM_HPS"),
    pytest.param({"activation": "ELU", "lr_schedule": "constant"},
                 {"activation": "elu", "lr_schedule": "constant"},
                 id="choices-case-insensitive"),
    pytest.param({"sagemaker_program": "train.py", "sagemaker_region": "eu-west-1"}, {},
                 id="sdk-keys-ignored"),
    pytest.param({"global_clipnorm": "2"}, {"global_clipnorm": 2.0}, id="clipnorm"),
    pytest.param({"global_clipnorm": "0"}, {"global_clipnorm": 0.0}, id="clipnorm-off"),
])
def test_hyperparameters_parse_to_declared_types(raw, expected):
    assert parse_hyperparameters(raw) == Hyperparameters(**expected)


@pytest.mark.parametrize("key, value", [
    pytest.param("epochs", "0", id="epochs-zero"),
    pytest.param("epochs", "ten", id="epochs-text"),
    pytest.param("epochs", "2.5", id="epochs-fraction"),
    pytest.param("epochs", True, id="epochs-bool"),
    pytest.param("batch_size", "", id="batch-empty"),
    pytest.param("learning_rate", "0", id="lr-zero"),
    pytest.param("learning_rate", "-0.1", id="lr-negative"),
    pytest.param("learning_rate", "nan", id="lr-nan"),
    pytest.param("dropout", "1", id="dropout-one"),
    pytest.param("hidden_units", "", id="units-empty"),
    pytest.param("hidden_units", "64,x", id="units-text"),
    pytest.param("hidden_units", "64,0", id="units-zero"),
    pytest.param("hidden_units", "[64,", id="units-broken-json"),
    pytest.param("activation", "gelu", id="activation-unservable"),
    pytest.param("lr_schedule", "step", id="schedule-unknown"),
    pytest.param("seed", "-1", id="seed-negative"),
    pytest.param("global_clipnorm", "-1", id="clipnorm-negative"),
    pytest.param("global_clipnorm", "inf", id="clipnorm-infinite"),
])
def test_bad_hyperparameter_value_is_a_user_error_naming_it(key, value):
    with pytest.raises(UserError) as caught:
        parse_hyperparameters({key: value})
    assert f"hyperparameter '{key}' must be" in str(caught.value)
    assert repr(value) in str(caught.value)


def test_unknown_hyperparameter_lists_the_allowed_ones():
    with pytest.raises(UserError) as caught:
        parse_hyperparameters({"epoch": "3", "layers": "2", "epochs": "3"})
    message = str(caught.value)
    assert message.startswith("unknown hyperparameter(s) 'epoch', 'layers'; allowed: ")
    for name in contract.HYPERPARAMETERS:
        assert name in message
    assert len(f"UserError: {message}") <= 1024  # all of it fits in FailureReason


def test_every_allowed_activation_is_served_by_the_numpy_predictor():
    assert set(contract.ACTIVATIONS) <= set(ACTIVATIONS)


# -- paths and inputs ---------------------------------------------------------------------------
def test_paths_derive_from_the_base_dir(tmp_path):
    paths = train.Paths.from_env({"SM_BASE_DIR": str(tmp_path)})
    data = tmp_path / "input" / "data"
    assert (paths.train, paths.validation, paths.model, paths.output_data, paths.failure) == (
        data / "train", data / "validation", tmp_path / "model", tmp_path / "output" / "data",
        tmp_path / "output" / "failure")
    assert (paths.features, paths.features_source) == (data / "train", "train channel")
    (data / "features").mkdir(parents=True)
    paths = train.Paths.from_env({"SM_BASE_DIR": str(tmp_path)})
    assert (paths.features, paths.features_source) == (data / "features", "features channel")


def test_standard_sagemaker_variables_win_over_the_base_dir(tmp_path):
    env = {"SM_BASE_DIR": str(tmp_path / "base"), "SM_CHANNEL_TRAIN": "/t", "SM_CHANNEL_VALIDATION": "/v",
           "SM_CHANNEL_FEATURES": "/f", "SM_MODEL_DIR": "/m", "SM_OUTPUT_DATA_DIR": "/o"}
    paths = train.Paths.from_env(env)
    assert (paths.train, paths.validation, paths.features, paths.model, paths.output_data) == (
        Path("/t"), Path("/v"), Path("/f"), Path("/m"), Path("/o"))
    assert paths.failure == tmp_path / "base" / "output" / "failure"


def test_hyperparameters_come_from_SM_HPS_before_the_file(tmp_path):
    paths = train.Paths.from_env({"SM_BASE_DIR": str(tmp_path)})
    assert train.read_hyperparameters(paths, {}) == Hyperparameters()
    paths.hyperparameters.parent.mkdir(parents=True)
    paths.hyperparameters.write_text('{"epochs": "3"}')
    assert train.read_hyperparameters(paths, {}).epochs == 3
    assert train.read_hyperparameters(paths, {"SM_HPS": '{"epochs": 4}'}).epochs == 4
    with pytest.raises(UserError, match="not valid JSON"):
        train.read_hyperparameters(paths, {"SM_HPS": "{epochs: 4"})


def _csv(text: str):
    def write(directory: Path, spec: FeatureSpec) -> None:
        directory.mkdir()
        (directory / "part-00000.csv").write_text(text)
    return write


def _header_only(directory: Path, spec: FeatureSpec) -> None:
    directory.mkdir(parents=True)
    (directory / "part-00000.csv").write_text(",".join([spec.target, *spec.feature_names]) + "\n")


@pytest.mark.parametrize("make, message", [
    pytest.param(lambda d, spec: None, "the 'train' channel is missing", id="missing-dir"),
    pytest.param(lambda d, spec: d.mkdir(), "holds no CSV files", id="no-csv"),
    pytest.param(_header_only, "has a header but no rows", id="header-only"),
    pytest.param(_csv("value,a,b,zzz\n1,2,3,4\n"),
                 "missing ['grade'], unexpected ['zzz']", id="header-mismatch"),
    pytest.param(_csv("value,b,a,grade\n1,2,3,4\n"),
                 "same columns in a different order", id="header-order"),
    pytest.param(_csv("value,a,b,grade\n1,2,3,4\n1,nan,3,4\n"),
                 "1 row(s) with a missing or non-finite value, the first at data row 2", id="non-finite"),
    pytest.param(_csv("value,a,b,grade\n1,2,,4\n"),
                 "cannot be read as numeric CSV", id="empty-field"),
    pytest.param(_csv("value,a,b,grade\n0,2,3,4\n"),
                 "1 row(s) with value <= 0; target_transform 'log' needs positive values", id="log-of-zero"),
])
def test_bad_channel_data_is_a_user_error(tmp_path, synthetic_feature_spec, make, message):
    spec = synthetic_feature_spec
    make(tmp_path / "train", spec)
    with pytest.raises(UserError) as caught:
        train.load_split(tmp_path / "train", spec, "train")
    assert message in str(caught.value)


# -- failures through the container's entry point ------------------------------------------------
def _drop_validation(base: Path) -> None:
    shutil.rmtree(base / "input" / "data" / "validation")


def _empty_train(base: Path) -> None:
    for part in (base / "input" / "data" / "train").glob("*.csv"):
        part.write_text(part.read_text().splitlines()[0] + "\n")


def _rename_a_column(base: Path) -> None:
    for part in (base / "input" / "data" / "validation").glob("*.csv"):
        part.write_text(part.read_text().replace(",grade", ",grade_v2", 1))


def _no_features(base: Path) -> None:
    shutil.rmtree(base / "input" / "data" / "features")


def _bad_hyperparameter(base: Path) -> None:
    (base / "input" / "config" / "hyperparameters.json").write_text('{"epochs": "many"}')


@pytest.mark.parametrize("break_job, reason", [
    pytest.param(_drop_validation, "UserError: the 'validation' channel is missing", id="missing-channel"),
    pytest.param(_empty_train, "UserError: the 'train' channel", id="empty-data"),
    pytest.param(_rename_a_column,
                 "UserError: the 'validation' channel's header does not match features.json "
                 "(missing ['grade'], unexpected ['grade_v2'])", id="header-mismatch"),
    pytest.param(_no_features, "UserError: features.json not found", id="no-features-json"),
    pytest.param(_bad_hyperparameter,
                 "UserError: hyperparameter 'epochs' must be an integer >= 1, got 'many'",
                 id="bad-hyperparameter"),
])
def test_user_errors_write_the_failure_file_and_exit_2(tmp_path, synthetic_data, stage_training_job,
                                                       run_python_module, break_job, reason):
    base = tmp_path / "opt_ml"
    stage_training_job(base, synthetic_data, TINY)
    break_job(base)
    result = run_python_module("training.train", {"SM_BASE_DIR": str(base)})
    assert result.returncode == EXIT_USER_ERROR, result.stdout + result.stderr
    failure = (base / "output" / "failure").read_text()
    assert failure.startswith(reason)
    assert "Traceback" not in failure  # a user error is a sentence, not a stack
    assert not (base / "model" / "model.json").exists()


def test_an_unexpected_failure_is_internal_exit_1_with_the_traceback(
        tmp_path, synthetic_data, stage_training_job, monkeypatch):
    base = tmp_path / "opt_ml"
    stage_training_job(base, synthetic_data, TINY)

    def broken_fit(*args, **kwargs):
        raise RuntimeError("graph exploded")

    monkeypatch.setattr(train, "fit", broken_fit)
    assert train.main({"SM_BASE_DIR": str(base)}) == EXIT_INTERNAL_ERROR
    failure = (base / "output" / "failure").read_text()
    assert failure.startswith("InternalError: RuntimeError: graph exploded\n")
    assert "Traceback" in failure and "broken_fit" in failure


# -- a real (tiny) training job -----------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_data, stage_training_job, run_python_module):
    """One run of `python -m training.train` on the synthetic splits, shared by the tests below."""
    base = tmp_path_factory.mktemp("job") / "opt_ml"
    stage_training_job(base, synthetic_data, TINY)
    result = run_python_module("training.train", {"SM_BASE_DIR": str(base)})
    assert result.returncode == 0, result.stdout + result.stderr
    return base, result.stdout


def test_the_model_dir_holds_the_whole_artifact(trained, synthetic_data):
    base, _ = trained
    assert {p.name for p in (base / "model").iterdir()} == MODEL_FILES
    assert json.loads((base / "model" / "features.json").read_text()) == \
        json.loads((synthetic_data / "features.json").read_text())
    assert not (base / "output" / "failure").exists()


def test_metadata_and_metrics_json_describe_the_run(trained):
    base, _ = trained
    meta = json.loads((base / "model" / "model.json").read_text())
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert meta["tensorflow_version"].startswith("2.")
    assert meta["hyperparameters"] == {**Hyperparameters().to_dict(), "epochs": 6, "batch_size": 64,
                                       "hidden_units": [16, 8], "learning_rate": 0.01}
    assert meta["feature_names"] == ["a", "b", "grade"]
    assert meta["activations"] == ["relu", "relu", "linear"]
    assert 1 <= meta["best_epoch"] <= meta["epochs_run"] <= 6
    assert meta["train_seconds"] > 0
    assert set(meta["validation"]) == {"loss", "mse", "rmse", "mae", "r2"}
    assert metrics["validation"] == meta["validation"]
    assert [row["epoch"] for row in metrics["history"]] == list(range(1, meta["epochs_run"] + 1))
    # the restored weights are the best epoch's: the served model scores what that epoch logged
    best = metrics["history"][meta["best_epoch"] - 1]
    assert best["val_loss"] == min(row["val_loss"] for row in metrics["history"])
    assert meta["validation"]["rmse"] == pytest.approx(best["val_rmse"], rel=1e-4)


def test_numpy_predictor_matches_keras(trained, synthetic_data):
    import keras

    from training.features import read_csv_dir

    base, _ = trained
    _, values = read_csv_dir(synthetic_data / "test")
    x = values[:, 1:].astype(np.float32)
    predictor = Predictor.load(base / "model")
    model = keras.saving.load_model(base / "model" / "model.keras")
    expected = predictor.spec.decode_target(model.predict(x, verbose=0)[:, 0].astype(np.float64))
    np.testing.assert_allclose(predictor.predict_features(x), expected, rtol=1e-4)


def test_logged_metric_lines_match_the_metric_definitions(trained):
    """Each epoch's and the final line are scraped by the definitions the job worker creates the job with."""
    # the model branch carries only src/training; the full suite has both packages
    definitions = pytest.importorskip("lambdas.sagemaker_jobs").METRIC_DEFINITIONS
    base, stdout = trained
    epochs_run = json.loads((base / "model" / "model.json").read_text())["epochs_run"]
    captured: dict[str, list[float]] = {}
    for line in stdout.splitlines():
        for definition in definitions:
            match = re.search(definition["Regex"], line)
            if match:
                captured.setdefault(definition["Name"], []).append(float(match.group(1)))
    for name in ("train:loss", "validation:loss", "validation:rmse", "validation:mae"):
        assert len(captured[name]) == epochs_run, name
    for name in ("final:validation:rmse", "final:validation:mae", "final:validation:r2"):
        assert len(captured[name]) == 1, name


def test_training_is_seeded_and_features_json_may_sit_in_the_train_channel(tmp_path, synthetic_data):
    """Same seed, same weights; the second job finds features.json at the top of the train channel."""
    hp = parse_hyperparameters({**TINY, "epochs": "3"})
    weights = []
    for run_id, features_channel in (("a", True), ("b", False)):
        base = tmp_path / run_id
        for channel in ("train", "validation"):
            shutil.copytree(synthetic_data / channel, base / "input" / "data" / channel)
        features_dir = base / "input" / "data" / ("features" if features_channel else "train")
        features_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(synthetic_data / "features.json", features_dir / "features.json")
        paths = train.Paths.from_env({"SM_BASE_DIR": str(base)})
        assert paths.features_source == ("features channel" if features_channel else "train channel")
        train.run(paths, hp, log=lambda line: None)
        with np.load(base / "model" / "dense.npz") as arrays:
            weights.append({k: arrays[k] for k in arrays.files})
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        np.testing.assert_array_equal(weights[0][key], weights[1][key])


# -- the training loop on a tiny model ----------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_splits(synthetic_data):
    spec = train.load_spec(synthetic_data)
    return spec, train.load_split(synthetic_data / "train", spec, "train"), \
        train.load_split(synthetic_data / "validation", spec, "validation")


def tiny_model(spec, split, **overrides):
    import keras

    hp = Hyperparameters(**{"hidden_units": (16, 8), "batch_size": 64, "learning_rate": 0.01, **overrides})
    keras.utils.set_random_seed(hp.seed)
    model = train.build_model(len(spec.feature_names), hp, steps_per_epoch=-(-len(split.y) // hp.batch_size))
    return model, hp


@pytest.mark.parametrize("clipnorm, expected", [
    pytest.param(0.5, 0.5, id="default-clips-at-half"),
    pytest.param(0.25, 0.25, id="custom"),
    pytest.param(0.0, None, id="zero-turns-it-off"),
])
def test_global_clipnorm_reaches_the_optimizer(tiny_splits, clipnorm, expected):
    spec, split, _ = tiny_splits
    model, _ = tiny_model(spec, split, global_clipnorm=clipnorm)
    assert model.optimizer.global_clipnorm == expected


def test_fit_does_the_same_on_any_scale_of_the_target(tiny_splits):
    """A target in raw units (rents, std ~560) once had every step clipped and underfit; the steps see the
    standardized target, so a target 1000x larger gives a model whose predictions are 1000x larger."""
    import dataclasses

    spec, split, validation = tiny_splits
    raw = dataclasses.replace(spec, target_transform="none")
    predictions = []
    for factor in (1.0, 1000.0):
        model, hp = tiny_model(raw, split, epochs=3)
        scaled = [train.Split(x=s.x, y=s.y * factor) for s in (split, validation)]
        train.fit(model, *scaled, raw, hp, log=lambda line: None)
        predictions.append(np.asarray(model(validation.x, training=False), dtype=np.float64)[:, 0])
    np.testing.assert_allclose(predictions[1], predictions[0] * 1000.0, rtol=1e-3)


@pytest.mark.parametrize("schedule, final_fraction", [
    pytest.param("cosine", 0.01, id="cosine-ends-at-1-percent"),
    pytest.param("constant", 1.0, id="constant"),
])
def test_learning_rate_schedule_over_the_steps_fit_takes(tiny_splits, schedule, final_fraction):
    """One optimizer step per batch, the last batch partial: the cosine decay ends exactly at its floor."""
    spec, split, validation = tiny_splits
    model, hp = tiny_model(spec, split, epochs=3, lr_schedule=schedule)
    train.fit(model, split, validation, spec, hp, log=lambda line: None)
    assert int(model.optimizer.iterations) == 3 * -(-len(split.y) // 64)  # 384 rows: 6 batches an epoch
    assert float(model.optimizer.learning_rate) == pytest.approx(hp.learning_rate * final_fraction, rel=1e-5)


def test_an_epoch_sees_every_training_row_once(tiny_splits):
    """With a learning rate too small to move the weights, the epoch's loss is the MSE over all rows."""
    spec, split, _ = tiny_splits
    rows = 350  # not a multiple of the batch size: the last batch is partial and weighs its rows
    model, hp = tiny_model(spec, split, learning_rate=1e-30)
    target = spec.encode_target(split.y[:rows])
    expected = float(np.mean((np.asarray(model(split.x[:rows]))[:, 0] - target) ** 2))
    run_epoch = train.epoch_function(model, split.x[:rows], target, hp.batch_size)
    assert run_epoch(np.random.default_rng(0).permutation(rows)) == pytest.approx(expected, rel=1e-5)


def test_early_stopping_fires_and_keeps_the_best_epoch(tiny_splits):
    """A learning rate that overshoots: validation stops improving, fit stops `patience` epochs later."""
    spec, split, validation = tiny_splits
    model, hp = tiny_model(spec, split, epochs=40, patience=2, learning_rate=0.05, lr_schedule="constant",
                           global_clipnorm=0.0)
    result = train.fit(model, split, validation, spec, hp, log=lambda line: None)
    assert len(result.history) == result.best_epoch + hp.patience < hp.epochs
    best = result.history[result.best_epoch - 1]
    assert best["val_loss"] == min(row["val_loss"] for row in result.history)
    encoded = np.asarray(model(validation.x, training=False), dtype=np.float64)[:, 0]
    assert np.mean((encoded - spec.encode_target(validation.y)) ** 2) == pytest.approx(best["val_loss"])
