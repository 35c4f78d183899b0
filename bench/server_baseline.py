"""The baseline for bench_server: the model server most users would write first.

    python -m bench.server_baseline --model-dir DIR [--host 127.0.0.1] [--port 0] [--tiny-model]

A Flask app that loads model.keras and features.json from the same model directory as
training.serve, applies the same FeatureSpec transform, and calls Keras `model.predict` per
request. It runs on Werkzeug's threaded development server (`werkzeug.serving.make_server(...,
threaded=True)`, which is what `app.run()` uses; a thread per connection, HTTP/1.1 keep-alive,
Werkzeug's default access log per request). It speaks the subset of the contract the benchmark
sends: POST /invocations with a text/csv body (one record a line, input_columns order),
answered with {"predictions": [...]}; GET /ping.

--tiny-model first writes a small model directory into --model-dir (features.json must already
be there): a Keras model built by training.train.build_model with random weights, saved with
training.train.export_model, so the smoke run needs only this one TensorFlow import.

Prints `serving on http://HOST:PORT` on stdout once it accepts connections.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from training.features import FeatureSpec, RecordError

TINY_HIDDEN_UNITS = (16, 8)


def write_tiny_model(model_dir: Path) -> None:
    """model.keras + dense.npz/model.json for the FeatureSpec already in model_dir (smoke runs)."""
    import keras

    from training.contract import Hyperparameters
    from training.train import build_model, export_model

    spec = FeatureSpec.load(model_dir / "features.json")
    keras.utils.set_random_seed(0)
    model = build_model(len(spec.feature_names), Hyperparameters(hidden_units=TINY_HIDDEN_UNITS), 1)
    with tempfile.TemporaryDirectory() as scratch:  # export_model copies features.json into the model dir
        features = Path(scratch) / "features.json"
        shutil.copyfile(model_dir / "features.json", features)
        export_model(model, model_dir, features, {"feature_names": spec.feature_names})


def create_app(model_dir: Path):
    """The Flask app: load once, then transform -> model.predict -> JSON per request."""
    import keras
    from flask import Flask, jsonify, request

    spec = FeatureSpec.load(model_dir / "features.json")
    model = keras.models.load_model(model_dir / "model.keras")
    model.predict(np.zeros((1, len(spec.feature_names)), dtype=np.float32), verbose=0)  # build predict_function
    app = Flask(__name__)

    @app.get("/ping")
    def ping():
        return "", 200

    @app.post("/invocations")
    def invocations():
        rows = [row for row in csv.reader(io.StringIO(request.get_data(as_text=True))) if row]
        try:
            features = spec.transform(rows)
        except RecordError as exc:
            return jsonify(error=str(exc)), 400
        encoded = model.predict(features, verbose=0)
        predictions = spec.decode_target(np.asarray(encoded, dtype=np.float64)[:, 0])
        return jsonify(predictions=predictions.tolist())

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server_baseline", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tiny-model", action="store_true",
                        help="first write a small random Keras model into --model-dir (smoke runs)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported
    from werkzeug.serving import make_server

    if args.tiny_model:
        write_tiny_model(args.model_dir)
    server = make_server(args.host, args.port, create_app(args.model_dir), threaded=True)
    host, port = server.server_address[:2]
    print(f"serving on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
