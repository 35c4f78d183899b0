"""Model server: the SageMaker inference contract, on the standard library and numpy.

    python -m training.serve [serve] [--model-dir DIR] [--host HOST] [--port PORT]

The container's `serve` program. It loads the model directory once (SM_MODEL_DIR, default
/opt/ml/model; see training.predictor), fails fast with a clear message and exit status 1 when it
cannot, then answers on SAGEMAKER_BIND_TO_PORT (default 8080; --port wins, 0 picks a free port)
and prints `serving on http://HOST:PORT` on stdout once it accepts connections.

    GET  /ping         200 while the model is loaded (it is loaded before the server listens)
    POST /invocations  raw records in, predictions in the target's units out

Request bodies (at most 6 MB, SageMaker's own limit; Content-Length is required; the whole body
must arrive within 60 s, else 408 and the connection closes):
    text/csv          one record a line in features.json's input_columns order, no header
                      (a header line equal to input_columns is skipped)
    application/json  [record, ...] or {"instances": [record, ...]}; a record is a list in
                      input_columns order or an object keyed by column
Responses, chosen by Accept (default: the request's own type; */* allowed):
    text/csv          one prediction a line
    application/json  {"predictions": [...]}
Errors are `{"error": message}` with a 4xx status (5xx for the server's own failures); a bad
record's message names its row, counted from 1 among the records of the request, and column:
    row 3, column 'carat': expected a number, got 'abc'
A value the model cannot compute with (its standardised value beyond float32, e.g. 1e308) is such a
400, and so is a prediction that overflows for an input more than EXTREME_Z standard deviations from
the training mean. The dataset config's rules (min/max/allowed) are not enforced here: they keep
training data clean; an out-of-range input is served, and data capture is where drift is seen.

One function per step (load_model, decode, predict, encode); the HTTP handler only wires them
and maps errors to statuses in one place (error_response).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import signal
import socketserver
import sys
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, cast

# One request is a small matrix product: waking BLAS threads costs more than it saves, ~10x on a
# 100-row request on 2 cores (bench/bench_server.py). Set before numpy loads; a caller may override.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402 - after the thread setting above

from training.features import RecordError  # noqa: E402
from training.predictor import Predictor  # noqa: E402
from training.serving_errors import (  # noqa: E402
    BadRequest, LengthRequired, MethodNotAllowed, NotAcceptable,
    NotFound, PayloadTooLarge, PredictionFailed, RequestTimeout, ServingError, UnsupportedMediaType)

logger = logging.getLogger(__name__)

ENV_MODEL_DIR = "SM_MODEL_DIR"
ENV_PORT = "SAGEMAKER_BIND_TO_PORT"
DEFAULT_MODEL_DIR = "/opt/ml/model"
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 8080

CSV = "text/csv"
JSON = "application/json"
SUPPORTED = (CSV, JSON)
MAX_BODY_BYTES = 6 * 1024 * 1024
MODEL_FILES = ("model.json", "dense.npz", "features.json")
# An input this many standard deviations from the training mean is one the model never saw (by
# Chebyshev at most 1 in 10,000 training values lies beyond); a prediction that overflows for such
# an input is the input's fault (400), otherwise the model's (500).
EXTREME_Z = 100.0
# How long a request's body may take to arrive, in total (a per-read socket timeout would let a
# client trickling one byte at a time hold a thread for ever). SageMaker gives an invocation 60 s.
BODY_TIMEOUT_SECONDS = 60.0


class ModelLoadError(Exception):
    """The model directory cannot be served; the message says what is wrong with it."""


# -- settings -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    model_dir: Path
    host: str
    port: int


def parse_settings(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Settings:
    """Command line over environment over defaults."""
    parser = argparse.ArgumentParser(prog="python -m training.serve", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=["serve"],
                        help="ignored; SageMaker starts the container with `serve`")
    parser.add_argument("--model-dir", default=environ.get(ENV_MODEL_DIR, DEFAULT_MODEL_DIR),
                        help=f"model directory (default: ${ENV_MODEL_DIR} or {DEFAULT_MODEL_DIR})")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port to bind, 0 for a free one (default: ${ENV_PORT} or {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    port = args.port
    if port is None:
        raw = environ.get(ENV_PORT, "").strip() or str(DEFAULT_PORT)
        try:
            port = int(raw)
        except ValueError:
            parser.error(f"{ENV_PORT}={raw!r} is not a port number")
    if not 0 <= port <= 65535:
        parser.error(f"port {port} is out of range 0-65535")
    return Settings(Path(args.model_dir), args.host, port)


# -- the steps: load, decode, predict, encode ---------------------------------------------
def load_model(model_dir: str | Path) -> Predictor:
    """Load and warm up the model; ModelLoadError says what is missing or wrong."""
    path = Path(model_dir)
    if not path.is_dir():
        raise ModelLoadError(f"model directory {path} does not exist "
                             f"(set {ENV_MODEL_DIR} or --model-dir)")
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise ModelLoadError(f"model directory {path} lacks {', '.join(missing)} "
                             f"(a model directory holds {', '.join(MODEL_FILES)})")
    try:
        predictor = Predictor.load(path)
        if not all(np.isfinite(a).all() for a in predictor.kernels + predictor.biases):
            raise ValueError("the weights in dense.npz are not all finite")
        # One forward pass now: mismatched layer shapes fail here, not on the first request.
        predictor.predict_features(np.zeros((1, len(predictor.spec.feature_names)), dtype=np.float32))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ModelLoadError(f"cannot load the model in {path}: {type(exc).__name__}: {exc}") from exc
    return predictor


def request_media_type(content_type: str | None) -> str:
    """The request's media type (parameters such as charset dropped); 415 unless supported."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in SUPPORTED:
        shown = f"Content-Type {content_type!r} is not supported" if media else "Content-Type is required"
        raise UnsupportedMediaType(f"{shown}; send {' or '.join(SUPPORTED)}")
    return media


def negotiate(accept: str | None, content_type: str) -> str:
    """The response's media type: the first supported entry of Accept, in the order listed."""
    if not accept or not accept.strip():
        return content_type
    for entry in accept.split(","):
        media = entry.split(";", 1)[0].strip().lower()
        if media in SUPPORTED:
            return media
        if media == "*/*":
            return content_type
        if media in ("text/*", "application/*"):
            return CSV if media == "text/*" else JSON
    raise NotAcceptable(f"cannot answer in {accept!r}; accept {' or '.join(SUPPORTED)}")


def decode(body: bytes, content_type: str, input_columns: Sequence[str]) -> list[Any]:
    """Request body -> raw records (lists in input_columns order, or objects by column)."""
    if not body.strip():
        raise BadRequest("empty body: send at least one record")
    if content_type == CSV:
        records: list[Any] = _decode_csv(body, tuple(input_columns))
    elif content_type == JSON:
        records = _decode_json(body)
    else:
        raise UnsupportedMediaType(f"Content-Type {content_type!r} is not supported")
    if not records:
        raise BadRequest("no records in the body")
    return records


def _decode_csv(body: bytes, input_columns: tuple[str, ...]) -> list[list[str]]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the CSV body is not UTF-8: {exc}") from None
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as exc:
        raise BadRequest(f"invalid CSV: {exc}") from None
    if rows and tuple(value.strip() for value in rows[0]) == input_columns:
        del rows[0]
    return rows


def _decode_json(body: bytes) -> list[Any]:
    try:
        data = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise BadRequest(f"invalid JSON: {exc}") from None
    if isinstance(data, dict) and "instances" in data:
        data = data["instances"]
    if not isinstance(data, list):
        raise BadRequest('expected a JSON list of records or {"instances": [records]}, '
                         f"got {type(data).__name__}")
    return data


def predict(predictor: Predictor, records: Sequence[Any]) -> np.ndarray:
    """Raw records -> predictions in the target's units; a bad record is a 400 naming it."""
    try:
        features = predictor.spec.transform(records)
    except RecordError as exc:
        # RecordError counts rows from 0; a caller reads the request counting from 1.
        where = f"row {exc.row + 1}" + (f", column '{exc.column}'" if exc.column else "")
        raise BadRequest(f"{where}: {exc.problem}") from None
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked below, per row
        predictions = predictor.predict_features(features)
    overflowed = np.flatnonzero(~np.isfinite(predictions))
    if overflowed.size:
        _blame_input(predictor, records, features, int(overflowed[0]))
    return predictions


def _blame_input(predictor: Predictor, records: Sequence[Any], features: np.ndarray, row: int) -> None:
    """A 400 naming the input that drove a row's prediction to overflow, when one lies far outside
    the training data; otherwise nothing, and encode() reports the model's own failure (500)."""
    numeric = predictor.spec.numeric
    if not numeric:
        return
    z = np.abs(features[row, :len(numeric)].astype(np.float64))
    j = int(np.argmax(z))
    if not z[j] > EXTREME_Z:
        return
    column = numeric[j][0]
    record = records[row]
    value = record[column] if isinstance(record, Mapping) else record[predictor.spec.input_columns.index(column)]
    raise BadRequest(f"row {row + 1}, column '{column}': the prediction overflows for {value!r}, "
                     f"{z[j]:.3g} standard deviations from the training mean")


def encode(predictions: np.ndarray, media_type: str) -> bytes:
    """Predictions -> response body in the negotiated media type."""
    finite = np.isfinite(predictions)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0]) + 1
        raise PredictionFailed(f"row {row}: the model produced a non-finite prediction")
    values = predictions.tolist()
    if media_type == CSV:
        return ("\n".join(map(repr, values)) + "\n").encode("ascii")
    return json.dumps({"predictions": values}).encode("ascii")


def error_response(exc: BaseException) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
    """The one place an exception becomes a status, a JSON body and extra headers."""
    if isinstance(exc, ServingError):
        status, message = exc.status, str(exc)
        if status >= 500:
            logger.error("%s", message)
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug("%d: %s", status, message)
    else:
        status, message = 500, "internal server error; the server log has the details"
        logger.error("unexpected error while serving a request", exc_info=exc)
    extra = (("Allow", exc.allow),) if isinstance(exc, MethodNotAllowed) else ()
    return status, json.dumps({"error": message}).encode("utf-8"), extra


# -- HTTP -------------------------------------------------------------------------------------
ROUTES: dict[str, dict[str, str]] = {
    "/ping": {"GET": "ping"},
    "/invocations": {"POST": "invocations"},
}


class Handler(BaseHTTPRequestHandler):
    """One instance per connection; keep-alive, every response has a Content-Length."""

    protocol_version = "HTTP/1.1"
    server_version = "training-serve"
    disable_nagle_algorithm = True  # small responses go out at once, no delayed-ACK stalls
    timeout = 120                   # an idle or stalled connection frees its thread
    server: "ModelServer"

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    # -- routes ---------------------------------------------------------------------------
    def ping(self) -> tuple[int, bytes, str]:
        return 200, b"", "text/plain"

    def invocations(self) -> tuple[int, bytes, str]:
        body = self._read_body()
        content_type = request_media_type(self.headers.get("Content-Type"))
        accept = negotiate(self.headers.get("Accept"), content_type)
        records = decode(body, content_type, self.server.input_columns)
        return 200, encode(predict(self.server.predictor, records), accept), accept

    # -- plumbing -------------------------------------------------------------------------
    def _dispatch(self) -> None:
        self._unread = self._announced_length()
        extra: tuple[tuple[str, str], ...] = ()
        try:
            status, body, content_type = self._route()()
        except Exception as exc:
            status, body, extra = error_response(exc)
            content_type = JSON
        if self._unread:  # a body we did not read would be taken for the next request
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        if self._unread > 0:
            self._discard(self._unread)
        elif self._unread < 0:  # unusable framing: drain what arrives briefly, then close
            self._discard(MAX_BODY_BYTES, seconds=0.5)

    def _route(self) -> Callable[[], tuple[int, bytes, str]]:
        path = self.path.split("?", 1)[0]
        methods = ROUTES.get(path)
        if methods is None:
            raise NotFound(f"no such path {path!r}; the server answers GET /ping and POST /invocations")
        name = methods.get(self.command)
        if name is None:
            allow = ", ".join(methods)
            raise MethodNotAllowed(f"{self.command} is not allowed on {path}; use {allow}", allow)
        route: Callable[[], tuple[int, bytes, str]] = getattr(self, name)
        return route

    def _announced_length(self) -> int:
        """Body bytes the client will send: 0 for none, -1 when the framing is unusable."""
        if self.headers.get("Transfer-Encoding"):
            return -1
        raw = self.headers.get("Content-Length")
        if raw is None:
            return 0
        try:
            length = int(raw)
        except ValueError:
            return -1
        return length if length >= 0 else -1

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise LengthRequired("chunked transfer encoding is not supported; send a Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise LengthRequired("Content-Length is required")
        if self._unread < 0:
            raise BadRequest(f"invalid Content-Length {raw!r}")
        length = self._unread
        if length > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"the body is {length} bytes; the limit is {MAX_BODY_BYTES} bytes (6 MB)")
        body = self._read_within(length, self.server.body_timeout)
        self._unread = 0
        if len(body) < length:
            self.close_connection = True
            raise BadRequest(f"the body ended after {len(body)} of the {length} bytes in Content-Length")
        return body

    def _read_within(self, length: int, seconds: float) -> bytes:
        """Up to `length` bytes, fewer if the client closes; RequestTimeout once `seconds` have
        passed in total, so a stalled or trickling client cannot hold the thread."""
        deadline = time.monotonic() + seconds
        chunks: list[bytes] = []
        got = 0
        try:
            while got < length:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self.connection.settimeout(remaining)
                chunk = self.rfile.read1(min(length - got, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        except TimeoutError:
            self._unread = 0  # nothing more to drain from a client that stopped sending
            self.close_connection = True
            raise RequestTimeout(f"the body did not arrive within {seconds:g} s: got {got} of the "
                                 f"{length} bytes in Content-Length") from None
        finally:
            self.connection.settimeout(self.timeout)
        return b"".join(chunks)

    def _discard(self, length: int, seconds: float = 2.0) -> None:
        """Read and drop a refused body for a while, so the client gets to read our answer
        instead of a connection reset; the connection closes afterwards."""
        deadline = time.monotonic() + seconds
        try:
            self.connection.settimeout(seconds)
            while length > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(length, 1 << 16))
                if not chunk:
                    break
                length -= len(chunk)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's signature
        """No line per request: the request path stays lean; errors are logged where they occur."""

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
        # The base class reports malformed requests and idle keep-alive timeouts here.
        level = logging.DEBUG if format.startswith("Request timed out") else logging.WARNING
        logger.log(level, "%s: " + format, self.address_string(), *args)


class ModelServer(ThreadingHTTPServer):
    """A threading HTTP server holding the loaded model; a thread per connection."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], predictor: Predictor,
                 body_timeout: float = BODY_TIMEOUT_SECONDS):
        self.predictor = predictor
        self.body_timeout = body_timeout
        self.input_columns = predictor.spec.input_columns
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.address

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            logger.debug("connection from %s ended: %r", client_address, exc)
        else:
            logger.error("error on the connection from %s", client_address, exc_info=exc)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port): an AF_INET server's address (typeshed allows any socket family's)."""
        return cast(tuple[str, int], self.server_address[:2])

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"


def build_server(predictor: Predictor, host: str, port: int,
                 body_timeout: float = BODY_TIMEOUT_SECONDS) -> ModelServer:
    return ModelServer((host, port), predictor, body_timeout)


def make_server(model_dir: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> ModelServer:
    """Load the model and bind; call serve_forever() (in a thread, in tests) to answer."""
    return build_server(load_model(model_dir), host, port)


def _stop(signum: int, frame: Any) -> None:
    raise SystemExit(0)  # SageMaker and the local runtime stop the server with SIGTERM


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = parse_settings(argv, os.environ)
    try:
        server = make_server(settings.model_dir, settings.host, settings.port)
    except ModelLoadError as exc:
        logger.error("cannot start the model server: %s", exc)
        return 1
    except OSError as exc:
        logger.error("cannot start the model server on %s:%s: %s", settings.host, settings.port, exc)
        return 1
    signal.signal(signal.SIGTERM, _stop)
    with server:
        print(f"serving on {server.url}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
