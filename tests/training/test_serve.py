"""The model server (training.serve) against the SageMaker inference contract.

A small model with known weights (tests/training/model_files.py) is written to a temporary model
directory, so the expected predictions are computable by hand; the server runs in a thread on
127.0.0.1, port 0.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from training.predictor import Predictor
from training.serve import (CSV, JSON, MAX_BODY_BYTES, ModelLoadError, ModelServer, build_server,
                            encode, load_model, make_server, negotiate, parse_settings,
                            request_media_type)
from training.serving_errors import NotAcceptable, PredictionFailed, UnsupportedMediaType

from tests.conftest import ROOT
from tests.training.model_files import BY_HAND, CSV_BODY, KERNEL_1, RECORDS, SPEC, write_model_dir

SRC = ROOT / "src"


@contextlib.contextmanager
def running(server: ModelServer) -> Iterator[ModelServer]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Predictor:
    return Predictor.load(model_dir)


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[ModelServer]:
    with running(make_server(model_dir, "127.0.0.1", 0)) as srv:
        yield srv


@pytest.fixture
def conn(server: ModelServer) -> Iterator[http.client.HTTPConnection]:
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    yield connection
    connection.close()


class Reply:
    def __init__(self, response: http.client.HTTPResponse):
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    @property
    def error(self) -> str:
        assert self.headers["Content-Type"] == JSON, self.body
        return json.loads(self.body)["error"]

    @property
    def predictions(self) -> list[float]:
        assert self.status == 200, self.body
        if self.headers["Content-Type"] == CSV:
            return [float(line) for line in self.body.decode().splitlines()]
        return json.loads(self.body)["predictions"]


def call(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    conn.request(method, path, body=body, headers=headers or {})
    reply = Reply(conn.getresponse())
    assert reply.headers["Content-Length"] == str(len(reply.body))
    return reply


def invoke(conn: http.client.HTTPConnection, body: bytes, content_type: str | None = CSV,
           accept: str | None = None) -> Reply:
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if accept is not None:
        headers["Accept"] = accept
    return call(conn, "POST", "/invocations", body, headers)


def assert_still_serving(server: ModelServer, conn: http.client.HTTPConnection | None = None) -> None:
    """A good request answers, on the connection given (kept alive) and on a fresh one."""
    fresh = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    try:
        for connection in ([conn] if conn else []) + [fresh]:
            assert invoke(connection, CSV_BODY).predictions == BY_HAND
    finally:
        fresh.close()


def raw_exchange(server: ModelServer, request: bytes) -> bytes:
    """Send bytes, half-close, read the answer: for requests http.client will not make."""
    with socket.create_connection(server.server_address[:2], timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- the happy path --------------------------------------------------------------------------
def test_ping(conn: http.client.HTTPConnection) -> None:
    reply = call(conn, "GET", "/ping")
    assert reply.status == 200
    assert reply.headers["Content-Length"] == "0"


OBJECTS = [dict(zip(SPEC.input_columns, r)) for r in RECORDS]
NUMBERS = [[float(r[0]), r[1], r[2], int(r[3])] for r in RECORDS]
HEADER = ",".join(SPEC.input_columns).encode()


@pytest.mark.parametrize("content_type, accept, body, answer_type", [
    pytest.param(CSV, None, CSV_BODY, CSV, id="csv-in-csv-out"),
    pytest.param(CSV, JSON, CSV_BODY, JSON, id="csv-in-json-out"),
    pytest.param(CSV, None, HEADER + b"\n" + CSV_BODY, CSV, id="csv-header-line-skipped"),
    pytest.param(CSV, None, CSV_BODY.replace(b"\n", b"\r\n") + b"\r\n", CSV, id="csv-crlf-blank-line"),
    pytest.param("text/csv; charset=utf-8", None, CSV_BODY, CSV, id="csv-charset-parameter"),
    pytest.param(JSON, None, json.dumps(RECORDS).encode(), JSON, id="json-list-of-lists"),
    pytest.param(JSON, None, json.dumps(NUMBERS).encode(), JSON, id="json-numbers-not-strings"),
    pytest.param(JSON, None, json.dumps(OBJECTS).encode(), JSON, id="json-objects"),
    pytest.param(JSON, None, json.dumps({"instances": RECORDS}).encode(), JSON, id="json-instances"),
    pytest.param(JSON, None, json.dumps({"instances": OBJECTS}).encode(), JSON, id="json-instances-objects"),
    pytest.param(JSON, CSV, json.dumps(RECORDS).encode(), CSV, id="json-in-csv-out"),
    pytest.param(CSV, "*/*", CSV_BODY, CSV, id="accept-any-csv"),
    pytest.param(JSON, "*/*", json.dumps(RECORDS).encode(), JSON, id="accept-any-json"),
    pytest.param(CSV, "application/xml, application/json;q=0.9", CSV_BODY, JSON, id="accept-list"),
])
def test_invocations(conn: http.client.HTTPConnection, predictor: Predictor, content_type: str,
                     accept: str | None, body: bytes, answer_type: str) -> None:
    reply = invoke(conn, body, content_type, accept)
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"] == answer_type
    assert reply.predictions == BY_HAND
    assert reply.predictions == predictor.predict_records(RECORDS).tolist()


def test_single_row_by_hand(conn: http.client.HTTPConnection) -> None:
    assert invoke(conn, b"1.5,Ideal,E,62").body == b"153.0\n"
    reply = invoke(conn, b'[{"carat": 1.5, "cut": "Ideal", "color": "E", "depth": 62}]', JSON)
    assert json.loads(reply.body) == {"predictions": [153.0]}


def test_unknown_category_is_all_zeros(conn: http.client.HTTPConnection, predictor: Predictor) -> None:
    # color "Z" was never seen: its one-hot block stays zero -> hidden 6.5, 0 -> 113
    reply = invoke(conn, b"1.5,Ideal,Z,62\n")
    assert reply.status == 200
    assert reply.predictions == [113.0] == predictor.predict_records([["1.5", "Ideal", "Z", "62"]]).tolist()


def test_keep_alive(server: ModelServer, conn: http.client.HTTPConnection) -> None:
    invoke(conn, CSV_BODY)
    sock = conn.sock
    for _ in range(20):
        reply = invoke(conn, b"1.5,Ideal,E,62\n")
        assert reply.predictions == [153.0]
        assert reply.headers.get("Connection") != "close"
    assert conn.sock is sock


# -- bad requests: a 4xx naming the row and column; the server keeps serving ------------------
@pytest.mark.parametrize("content_type, accept, body, status, message", [
    pytest.param(CSV, None, b"1.5,Ideal,E,62\n1.0,Good,E\n", 400,
                 "row 2: expected 4 values (carat, cut, color, depth), got 3", id="csv-too-few-columns"),
    pytest.param(CSV, None, b"1.5,Ideal,E,62,7\n", 400, "row 1: expected 4 values",
                 id="csv-too-many-columns"),
    pytest.param(CSV, None, CSV_BODY + b"abc,Ideal,E,62\n", 400,
                 "row 4, column 'carat': expected a number, got 'abc'", id="csv-not-a-number"),
    pytest.param(CSV, None, b"1.5,Ideal,E,\n", 400, "row 1, column 'depth': missing value",
                 id="csv-missing-value"),
    pytest.param(CSV, None, b"1.5,Superb,E,62\n", 400, "row 1, column 'cut': unknown value 'Superb'",
                 id="csv-unknown-ordinal-level"),
    pytest.param(CSV, None, b"1.5,Ideal,E,inf\n", 400, "row 1, column 'depth': expected a finite number",
                 id="csv-infinite"),
    pytest.param(CSV, None, b"", 400, "empty body", id="csv-empty-body"),
    pytest.param(CSV, None, b" \n\n", 400, "empty body", id="csv-blank-body"),
    pytest.param(CSV, None, HEADER + b"\n", 400, "no records", id="csv-header-only"),
    pytest.param(CSV, None, b"\xff1.5,Ideal,E,62\n", 400, "not UTF-8", id="csv-not-utf8"),
    pytest.param(JSON, None, b"", 400, "empty body", id="json-empty-body"),
    pytest.param(JSON, None, b"[[1.5, \"Ideal\",", 400, "invalid JSON", id="json-invalid"),
    pytest.param(JSON, None, b"[]", 400, "no records", id="json-empty-list"),
    pytest.param(JSON, None, b'{"rows": []}', 400, '{"instances": [records]}', id="json-wrong-shape"),
    pytest.param(JSON, None, b"[1.5, 62]", 400, "row 1: a record must be a list or an object, got float",
                 id="json-record-not-a-list"),
    pytest.param(JSON, None, json.dumps([OBJECTS[0], {"carat": 1, "cut": "Good", "color": "D"}]).encode(),
                 400, "row 2, column 'depth': missing", id="json-object-missing-column"),
    pytest.param(JSON, None, b'[[1.5, "Ideal", "E", null]]', 400, "row 1, column 'depth': missing value",
                 id="json-null-value"),
    pytest.param(JSON, None, b'[[true, "Ideal", "E", 62]]', 400, "row 1, column 'carat': expected a number",
                 id="json-boolean"),
    pytest.param(JSON, None, b'[[NaN, "Ideal", "E", 62]]', 400,
                 "row 1, column 'carat': expected a finite number", id="json-nan"),
    pytest.param(CSV, None, b"1e308,Ideal,E,62\n", 400,
                 "row 1, column 'carat': 1e+308 is out of the range the model can compute with",
                 id="csv-1e308-overflows-after-scaling"),
    pytest.param(CSV, None, b"1.5,Ideal,E,-1e308\n", 400,
                 "row 1, column 'depth': -1e+308 is out of the range", id="csv-minus-1e308"),
    pytest.param(CSV, None, b"1e39,Ideal,E,62\n", 400,
                 "row 1, column 'carat': 1e+39 is out of the range", id="csv-1e39-beyond-float32"),
    pytest.param(JSON, None, b'[[1e308, "Ideal", "E", 62]]', 400,
                 "row 1, column 'carat': 1e+308 is out of the range", id="json-1e308"),
    pytest.param(JSON, None, b'[[1' + b"0" * 400 + b', "Ideal", "E", 62]]', 400,
                 "row 1, column 'carat': expected a finite number, got 10000", id="json-integer-beyond-float64"),
    pytest.param(CSV, None, b"1e38,Ideal,E,62\n", 400,
                 "row 1, column 'carat': the prediction overflows for '1e38', 2e+38 standard deviations",
                 id="csv-prediction-overflows-for-an-extreme-input"),
    pytest.param(JSON, None, b'[{"carat": 1e38, "cut": "Ideal", "color": "E", "depth": 62}]', 400,
                 "row 1, column 'carat': the prediction overflows for 1e+38", id="json-object-extreme-input"),
    pytest.param("application/xml", None, b"<rows/>", 415, "'application/xml' is not supported",
                 id="unsupported-content-type"),
    pytest.param(None, None, CSV_BODY, 415, "Content-Type is required", id="missing-content-type"),
    pytest.param(CSV, "application/xml", CSV_BODY, 406, "cannot answer in 'application/xml'",
                 id="unsupported-accept"),
])
def test_bad_request(server: ModelServer, conn: http.client.HTTPConnection, content_type: str | None,
                     accept: str | None, body: bytes, status: int, message: str) -> None:
    reply = invoke(conn, body, content_type, accept)
    assert reply.status == status, reply.body
    assert message in reply.error
    assert reply.headers.get("Connection") != "close"  # the body was read: the connection lives on
    assert_still_serving(server, conn)


def test_body_over_6_mb_is_refused_before_reading(
        server: ModelServer, conn: http.client.HTTPConnection) -> None:
    conn.putrequest("POST", "/invocations")
    conn.putheader("Content-Type", CSV)
    conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
    conn.endheaders()  # no body sent: the answer must come from the header alone
    reply = Reply(conn.getresponse())
    assert reply.status == 413
    assert f"the body is {MAX_BODY_BYTES + 1} bytes" in reply.error
    assert reply.headers["Connection"] == "close"
    assert_still_serving(server)


def test_body_over_6_mb_sent_whole(server: ModelServer, conn: http.client.HTTPConnection) -> None:
    reply = invoke(conn, b"1" * (MAX_BODY_BYTES + 1))
    assert reply.status == 413
    assert "limit is 6291456 bytes" in reply.error
    assert_still_serving(server)


def test_missing_content_length(server: ModelServer, conn: http.client.HTTPConnection) -> None:
    conn.putrequest("POST", "/invocations")
    conn.putheader("Content-Type", CSV)
    conn.endheaders()
    reply = Reply(conn.getresponse())
    assert reply.status == 411
    assert "Content-Length is required" in reply.error
    assert_still_serving(server)


def test_chunked_body(server: ModelServer, conn: http.client.HTTPConnection) -> None:
    conn.request("POST", "/invocations", body=iter([CSV_BODY]), headers={"Content-Type": CSV},
                 encode_chunked=True)
    reply = Reply(conn.getresponse())
    assert reply.status == 411
    assert "chunked" in reply.error
    assert reply.headers["Connection"] == "close"
    assert_still_serving(server)


def test_invalid_content_length(server: ModelServer) -> None:
    answer = raw_exchange(server, b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                                  b"Content-Length: abc\r\n\r\n1.5,Ideal,E,62\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"invalid Content-Length 'abc'" in answer
    assert_still_serving(server)


def test_body_shorter_than_content_length(server: ModelServer) -> None:
    answer = raw_exchange(server, b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                                  b"Content-Length: 100\r\n\r\n1.5,Ideal,E,62\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"the body ended after 15 of the 100 bytes" in answer
    assert_still_serving(server)


def wait_until(condition: Callable[[], bool], seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


@pytest.mark.parametrize("send", [
    pytest.param([b"1.5,Ideal,E,62\n"], id="stalled"),
    pytest.param([b"1"] * 40, id="trickling"),  # one byte per 50 ms: each read is quick, the whole is not
])
def test_body_slower_than_the_timeout_frees_the_thread(predictor: Predictor, send: list[bytes]) -> None:
    others = set(threading.enumerate())  # other tests' keep-alive connections may hold threads

    def handlers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if "process_request" in t.name and t not in others]

    with running(build_server(predictor, "127.0.0.1", 0, body_timeout=0.5)) as srv:
        with socket.create_connection(srv.server_address[:2], timeout=10) as sock:
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                         b"Content-Length: 100\r\n\r\n")
            started = time.monotonic()
            assert wait_until(lambda: len(handlers()) == 1)  # this connection's thread
            with contextlib.suppress(OSError):  # the server may close while we still send
                for piece in send:
                    sock.sendall(piece)
                    time.sleep(0.05)
            chunks = []
            while chunk := sock.recv(65536):  # the server closes the connection: recv ends
                chunks.append(chunk)
            elapsed = time.monotonic() - started
        answer = b"".join(chunks)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"the body did not arrive within 0.5 s" in answer
        assert b"Connection: close" in answer
        assert elapsed < 3, elapsed
        assert wait_until(lambda: not handlers())
        assert_still_serving(srv)


@pytest.mark.parametrize("method, path, status, allow", [
    pytest.param("GET", "/nowhere", 404, None, id="unknown-path"),
    pytest.param("POST", "/invocations/extra", 404, None, id="unknown-subpath"),
    pytest.param("GET", "/invocations", 405, "POST", id="get-invocations"),
    pytest.param("PUT", "/invocations", 405, "POST", id="put-invocations"),
    pytest.param("POST", "/ping", 405, "GET", id="post-ping"),
    pytest.param("DELETE", "/ping", 405, "GET", id="delete-ping"),
])
def test_routes(server: ModelServer, conn: http.client.HTTPConnection, method: str, path: str,
                status: int, allow: str | None) -> None:
    reply = call(conn, method, path, b"1.5,Ideal,E,62\n" if method in ("POST", "PUT") else None,
                 {"Content-Type": CSV})
    assert reply.status == status
    assert path in reply.error
    assert reply.headers.get("Allow") == allow
    assert_still_serving(server, conn)


class ExplodingPredictor(Predictor):
    def predict_features(self, features: Any) -> np.ndarray:
        raise RuntimeError("secret internal detail")


def test_unexpected_error_is_500_logged_once(predictor: Predictor, caplog: pytest.LogCaptureFixture) -> None:
    broken = ExplodingPredictor(predictor.spec, predictor.kernels, predictor.biases, predictor.activations,
                                predictor.metadata)
    with running(build_server(broken, "127.0.0.1", 0)) as srv:
        connection = http.client.HTTPConnection(*srv.server_address[:2], timeout=10)
        with caplog.at_level(logging.ERROR, logger="training.serve"):
            reply = invoke(connection, CSV_BODY)
        assert reply.status == 500
        assert reply.error == "internal server error; the server log has the details"
        assert b"secret" not in reply.body
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and errors[0].exc_info is not None
        assert "secret internal detail" in caplog.text
        # still serving, on the same connection
        assert call(connection, "GET", "/ping").status == 200
        assert invoke(connection, CSV_BODY).status == 500
        connection.close()


# price = 1e37 hidden_0 + 100 in float32: rows 1 and 2 stay finite, row 3 (hidden_0 = 35) overflows.
OVERFLOWING_KERNEL_1 = [[1e37], [5]]


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the point of the model
def test_non_finite_prediction_is_500_naming_the_row(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    overflowing = write_model_dir(tmp_path / "model", kernel_1=OVERFLOWING_KERNEL_1)
    with running(make_server(overflowing, "127.0.0.1", 0)) as srv:
        connection = http.client.HTTPConnection(*srv.server_address[:2], timeout=10)
        with caplog.at_level(logging.ERROR, logger="training.serve"):
            for content_type in (CSV, JSON):
                body = CSV_BODY if content_type == CSV else json.dumps(RECORDS).encode()
                reply = invoke(connection, body, content_type)
                assert reply.status == 500, reply.body
                assert reply.error == "row 3: the model produced a non-finite prediction"
        assert "row 3: the model produced a non-finite prediction" in caplog.text
        # the server keeps serving, on the same connection: the first two rows are finite
        finite = invoke(connection, "".join(",".join(r) + "\n" for r in RECORDS[:2]).encode())
        assert finite.status == 200
        assert np.isfinite(finite.predictions).all() and len(finite.predictions) == 2
        connection.close()


# -- the steps as plain functions ---------------------------------------------------------------
@pytest.mark.parametrize("accept, content_type, expected", [
    pytest.param(None, CSV, CSV, id="none-csv"),
    pytest.param("", JSON, JSON, id="empty-json"),
    pytest.param("*/*", JSON, JSON, id="any"),
    pytest.param("text/*", JSON, CSV, id="text-any"),
    pytest.param("application/*", CSV, JSON, id="application-any"),
    pytest.param("Application/JSON; charset=utf-8", CSV, JSON, id="case-and-parameters"),
    pytest.param("image/png, text/csv", JSON, CSV, id="first-supported"),
])
def test_negotiate(accept: str | None, content_type: str, expected: str) -> None:
    assert negotiate(accept, content_type) == expected


def test_negotiate_refuses() -> None:
    with pytest.raises(NotAcceptable, match="image/png"):
        negotiate("image/png", CSV)


def test_request_media_type() -> None:
    assert request_media_type("TEXT/CSV; charset=utf-8") == CSV
    with pytest.raises(UnsupportedMediaType, match="text/csv or application/json"):
        request_media_type("application/x-npy")


def test_encode_refuses_non_finite_predictions() -> None:
    assert encode(np.array([1.5, 2.0]), CSV) == b"1.5\n2.0\n"
    assert encode(np.array([1.5]), JSON) == b'{"predictions": [1.5]}'
    with pytest.raises(PredictionFailed, match="row 2: the model produced a non-finite prediction"):
        encode(np.array([1.0, np.inf]), JSON)


@pytest.mark.parametrize("argv, environ, expected", [
    pytest.param([], {}, ("/opt/ml/model", "0.0.0.0", 8080), id="defaults"),
    pytest.param(["serve"], {"SM_MODEL_DIR": "/m", "SAGEMAKER_BIND_TO_PORT": "9000"},
                 ("/m", "0.0.0.0", 9000), id="sagemaker-env"),
    pytest.param(["--port", "0", "--host", "127.0.0.1", "--model-dir", "/x"],
                 {"SM_MODEL_DIR": "/m", "SAGEMAKER_BIND_TO_PORT": "9000"},
                 ("/x", "127.0.0.1", 0), id="flags-win"),
])
def test_parse_settings(argv: list[str], environ: dict[str, str], expected: tuple) -> None:
    settings = parse_settings(argv, environ)
    assert (str(settings.model_dir), settings.host, settings.port) == expected


def test_parse_settings_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings([], {"SAGEMAKER_BIND_TO_PORT": "http"})
    assert "SAGEMAKER_BIND_TO_PORT='http' is not a port number" in capsys.readouterr().err


@pytest.mark.parametrize("breakage, message", [
    pytest.param("no-dir", "does not exist", id="missing-directory"),
    pytest.param("no-weights", "lacks dense.npz", id="missing-file"),
    pytest.param("bad-shape", "cannot load the model", id="layer-shapes-disagree"),
    pytest.param("bad-json", "cannot load the model", id="corrupt-model-json"),
    pytest.param("inf-weight", "weights in dense.npz are not all finite", id="non-finite-weights"),
])
def test_load_model_fails_clearly(tmp_path: Path, breakage: str, message: str) -> None:
    path = tmp_path / "model"
    if breakage != "no-dir":
        kernel_1 = {"bad-shape": [[2], [5], [7]], "inf-weight": [[2], [float("inf")]]}.get(breakage, KERNEL_1)
        write_model_dir(path, kernel_1=kernel_1)
    if breakage == "no-weights":
        (path / "dense.npz").unlink()
    if breakage == "bad-json":
        (path / "model.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelLoadError, match=message) as caught:
        load_model(path)
    assert str(path) in str(caught.value)


# -- the program: python -m training.serve ------------------------------------------------------
def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "training.serve", *args]


def serve_env(model_dir: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "SM_MODEL_DIR": str(model_dir), "PYTHONPATH": path}


def test_program_serves_and_stops_on_sigterm(model_dir: Path) -> None:
    process = subprocess.Popen(serve_command("--port", "0", "--host", "127.0.0.1"), env=serve_env(model_dir),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        line = process.stdout.readline()  # the process either prints the line or exits
        match = re.fullmatch(r"serving on http://127\.0\.0\.1:(\d+)\n", line)
        assert match, f"unexpected first line {line!r}; stderr: {process.stderr.read() if not line else ''}"
        connection = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=10)
        assert call(connection, "GET", "/ping").status == 200
        assert invoke(connection, CSV_BODY, CSV, JSON).predictions == BY_HAND
        connection.close()
        process.terminate()
        assert process.wait(timeout=10) == 0
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_program_with_bad_model_dir_exits_nonzero(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    result = subprocess.run(serve_command("--port", "0", "--host", "127.0.0.1"), env=serve_env(missing),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"model directory {missing} does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
