"""Model server latency and throughput on loopback, against a Flask + Keras baseline in the same run.

Ours: `python -m training.serve` (stdlib ThreadingHTTPServer, numpy forward pass from dense.npz).
Baseline: bench/server_baseline.py (Flask on Werkzeug's threaded dev server, Keras `model.predict`
per request), loading model.keras from the same model directory.

Full size builds a real model directory: the Glue ETL on data/diamonds.csv.gz (local Spark), then
`python -m training.train` with the default network and a few epochs (latency depends on the
network's shape, not on how long it trained); payloads are the ETL's raw endpoint-test records.
Smoke size writes a tiny model directory instead (the baseline process builds the Keras model).

Both servers run as their own processes on 127.0.0.1 (checked with psutil) and are always
stopped. The load generator lives in this process: one keep-alive http.client connection per
worker thread, pre-encoded CSV bodies, a bounded request count and a time cap per cell. Python's
GIL limits the generator, and it shares the machine's cores with the server under test, so the
figures are a floor on what the servers can do; the generator's own CPU is in the details.
"""
from __future__ import annotations

import contextlib
import csv
import http.client
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from bench.common import ROOT, main, percentile, python, spread_of

NAME = "server"
TITLE = "Model server: latency and throughput against Flask + Keras"
PAYLOAD_ROWS = (1, 100)
# name -> how the table calls it. "ours-1-blas" is a diagnostic: ours with numpy's OpenBLAS held to one
# thread, measured on 100-row bodies only (one row never reaches OpenBLAS's threaded path).
LABELS = {"ours": "ours", "baseline": "Flask + Keras", "ours-1-blas": "ours with OPENBLAS_NUM_THREADS=1"}
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1"}
HEADERS = {"Content-Type": "text/csv", "Accept": "application/json"}
START_TIMEOUT = 120.0    # seconds for a server to print its `serving on` line
REQUEST_TIMEOUT = 30.0   # seconds, per request
RSS_SAMPLE_SECONDS = 0.1
P50_TARGET_MS = 1.0
RATIO_TARGET = 20.0
TRAIN_EPOCHS = 3  # serving cost depends on the network's shape, not on how well it fits


@dataclass(frozen=True)
class Plan:
    concurrency: tuple[int, ...]
    requests: dict[str, int]     # per cell (server, payload, concurrency) and repeat
    cell_seconds: dict[str, float]  # time cap per cell: whichever of count and time comes first
    repeats: int
    warmup: dict[str, int]       # untimed requests per server before the first cell


PLANS = {
    "full": Plan(concurrency=(1, 8, 32), requests={"ours": 2000, "ours-1-blas": 2000, "baseline": 300},
                 cell_seconds={"ours": 3.0, "ours-1-blas": 3.0, "baseline": 2.5}, repeats=3,
                 warmup={"ours": 50, "ours-1-blas": 50, "baseline": 10}),
    "smoke": Plan(concurrency=(1, 2), requests={"ours": 20, "ours-1-blas": 20, "baseline": 4},
                  cell_seconds={"ours": 5.0, "ours-1-blas": 5.0, "baseline": 5.0}, repeats=1,
                  warmup={"ours": 2, "ours-1-blas": 2, "baseline": 2}),
}
# Concurrency for the throughput ratio and the CPU figures.
HEADLINE_CONCURRENCY = 8

# The smoke model's transform: diamonds-like columns, statistics made up.
SMOKE_FEATURES = {
    "format_version": 1, "target": "price", "target_transform": "log",
    "input_columns": ["carat", "cut", "color", "depth"],
    "numeric": [{"column": "carat", "mean": 0.8, "std": 0.47}, {"column": "depth", "mean": 61.7, "std": 1.4}],
    "ordinal": [{"column": "cut", "levels": ["Fair", "Good", "Very Good", "Premium", "Ideal"]}],
    "categorical": [{"column": "color", "categories": ["D", "E", "F", "G", "H", "I", "J"]}],
}


# -- the model directory and the payloads -------------------------------------------------------
def child_env() -> dict[str, str]:
    """This environment without SageMaker variables, with src importable and TensorFlow quiet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def checked(result: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed with exit status {result.returncode}:\n{result.stdout[-2000:]}\n"
                           f"{result.stderr[-2000:]}")
    return result


def build_real_model(work: Path) -> tuple[Path, list[list[str]], dict[str, Any]]:
    """ETL + training on the diamonds data; returns the model dir, raw records and timings."""
    etl = work / "etl"
    started = time.perf_counter()
    checked(python("src/glue_jobs/etl.py", "--JOB_NAME", "bench-server", "--input", "data/diamonds.csv.gz",
                   "--dataset-config", "data/diamonds.yaml", "--output", str(etl),
                   env={**child_env(), "SPARK_LOCAL_IP": "127.0.0.1"}), "the Glue ETL")
    etl_seconds = time.perf_counter() - started
    started = time.perf_counter()
    base = work / "job"
    model_dir = base / "model"
    checked(python("-m", "training.train", timeout=600, env={
        **child_env(), "SM_BASE_DIR": str(base), "SM_CHANNEL_TRAIN": str(etl / "train"),
        "SM_CHANNEL_VALIDATION": str(etl / "validation"), "SM_CHANNEL_FEATURES": str(etl),
        "SM_MODEL_DIR": str(model_dir), "SM_HPS": json.dumps({"epochs": TRAIN_EPOCHS})}), "training")
    train_seconds = time.perf_counter() - started
    columns = json.loads((model_dir / "features.json").read_text())["input_columns"]
    records = []
    for part in sorted((etl / "endpoint-test").glob("part-*.csv")):
        with part.open(newline="") as handle:
            records += [[row[c] for c in columns] for row in csv.DictReader(handle)]
    meta = json.loads((model_dir / "model.json").read_text())
    about = {"source": "Glue ETL on data/diamonds.csv.gz, then training.train",
             "etl_seconds": round(etl_seconds, 1), "train_seconds": round(train_seconds, 1),
             "hyperparameters": meta.get("hyperparameters"), "validation": meta.get("validation"),
             "payload_records": "the ETL's endpoint-test rows (raw test-split records)"}
    return model_dir, records, about


def write_smoke_features(work: Path) -> tuple[Path, list[list[str]], dict[str, Any]]:
    """features.json only: the baseline process adds a tiny Keras model (--tiny-model)."""
    model_dir = work / "model"
    model_dir.mkdir()
    (model_dir / "features.json").write_text(json.dumps(SMOKE_FEATURES))
    colors = SMOKE_FEATURES["categorical"][0]["categories"]
    cuts = SMOKE_FEATURES["ordinal"][0]["levels"]
    records = [[f"{0.3 + 0.01 * i:.2f}", cuts[i % len(cuts)], colors[i % len(colors)], f"{60 + i % 4}.5"]
               for i in range(max(PAYLOAD_ROWS))]
    return model_dir, records, {"source": "tiny random model (smoke)", "payload_records": "made up"}


def csv_body(records: Sequence[Sequence[str]], rows: int) -> bytes:
    chosen = [records[i % len(records)] for i in range(rows)]
    return "".join(",".join(record) + "\n" for record in chosen).encode()


# -- the server processes -----------------------------------------------------------------------
@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    startup_seconds: float
    listening: list[str]


@contextlib.contextmanager
def serving(name: str, args: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Start `python <args>`, wait for `serving on http://127.0.0.1:PORT`; always stop it."""
    import psutil

    started = time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env={**child_env(), **(env or {})},
                                   stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        watchdog = threading.Timer(START_TIMEOUT, process.kill)  # a hung start ends the readline below
        watchdog.start()
        try:
            line = process.stdout.readline()
        finally:
            watchdog.cancel()
        match = re.fullmatch(r"serving on http://127\.0\.0\.1:(\d+)\n", line)
        if not match:
            tail = log_path.read_text()[-2000:]
            raise RuntimeError(f"the {name} server did not start (first line {line!r}); its log ends:\n{tail}")
        startup = time.perf_counter() - started
        listening = sorted(f"{c.laddr.ip}:{c.laddr.port}" for c in psutil.Process(process.pid).net_connections("inet")
                           if c.status == psutil.CONN_LISTEN)
        if not listening or any(not address.startswith("127.0.0.1:") for address in listening):
            raise RuntimeError(f"the {name} server listens on {listening}; only 127.0.0.1 is allowed")
        yield Server(name, process, int(match.group(1)), startup, listening)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        process.stdout.close()


def post(connection: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    connection.request("POST", "/invocations", body, HEADERS)
    response = connection.getresponse()
    return response.status, response.read()


def predictions(port: int, body: bytes) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        status, answer = post(connection, body)
    finally:
        connection.close()
    if status != 200:
        raise RuntimeError(f"POST /invocations on port {port} answered {status}: {answer[:500]!r}")
    return json.loads(answer)["predictions"]


# -- the load generator ---------------------------------------------------------------------------
def run_cell(server: Server, body: bytes, concurrency: int, requests: int, seconds: float) -> dict[str, Any]:
    """`requests` POSTs (or `seconds`, whichever ends first) over `concurrency` keep-alive connections."""
    import psutil

    connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=REQUEST_TIMEOUT)
                   for _ in range(concurrency)]
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[list[str]] = [[] for _ in range(concurrency)]
    tickets = itertools.count()  # next() on it is atomic under the GIL
    start = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker(i: int) -> None:
        connection, mine, failed = connections[i], latencies[i], errors[i]
        clock = time.perf_counter
        start.wait()
        while next(tickets) < requests and clock() < deadline[0]:
            began = clock()
            try:
                status, answer = post(connection, body)
            except (OSError, http.client.HTTPException) as exc:
                failed.append(f"{type(exc).__name__}: {exc}")
                connection.close()  # the next request reconnects
                continue
            mine.append(clock() - began)
            if status != 200:
                failed.append(f"status {status}: {answer[:200]!r}")

    process = psutil.Process(server.process.pid)
    rss = [process.memory_info().rss]
    done = threading.Event()

    def sample_rss() -> None:
        while not done.wait(RSS_SAMPLE_SECONDS):
            rss.append(process.memory_info().rss)

    try:
        for connection in connections:  # connections open before the clock starts
            connection.connect()
        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
        for thread in threads:
            thread.start()
        sampler = threading.Thread(target=sample_rss, daemon=True)
        server_cpu, own_cpu = process.cpu_times(), time.process_time()
        began = time.perf_counter()
        deadline[0] = began + seconds
        start.wait()
        sampler.start()
        for thread in threads:
            thread.join(seconds + REQUEST_TIMEOUT + 10)
        wall = time.perf_counter() - began
        cpu_after, own_after = process.cpu_times(), time.process_time()
        done.set()
        sampler.join()
        rss.append(process.memory_info().rss)
    finally:
        done.set()
        start.abort()  # frees any worker still waiting when something above failed
        for connection in connections:
            connection.close()
    every = [x for mine in latencies for x in mine]
    failures = [x for failed in errors for x in failed]
    used = (cpu_after.user + cpu_after.system) - (server_cpu.user + server_cpu.system)
    return {"requests": len(every), "failed": len(failures), "first_failure": failures[0] if failures else None,
            "wall_s": wall, "p50_ms": percentile(every, 50) * 1e3, "p99_ms": percentile(every, 99) * 1e3,
            "mean_ms": statistics.fmean(every) * 1e3 if every else float("nan"),
            "requests_per_s": len(every) / wall, "server_cpu_percent": 100.0 * used / wall,
            "generator_cpu_percent": 100.0 * (own_after - own_cpu) / wall,
            "server_rss_peak_mb": max(rss) / 2**20}


def warm_up(server: Server, body: bytes, count: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=REQUEST_TIMEOUT)
    try:
        for _ in range(count):
            post(connection, body)
    finally:
        connection.close()


# -- the benchmark ------------------------------------------------------------------------------
def run(size: str) -> dict[str, Any]:
    plan = PLANS[size]
    with tempfile.TemporaryDirectory(prefix="bench-server-") as scratch:
        work = Path(scratch)
        if size == "full":
            model_dir, records, model = build_real_model(work)
        else:
            model_dir, records, model = write_smoke_features(work)
        bodies = {rows: csv_body(records, rows) for rows in PAYLOAD_ROWS}
        tiny = ["--tiny-model"] if size == "smoke" else []
        with contextlib.ExitStack() as stack:
            # The baseline first: in a smoke run it writes the model that ours then serves.
            baseline = stack.enter_context(serving(
                "baseline", ["-m", "bench.server_baseline", "--model-dir", str(model_dir), *tiny],
                work / "baseline.log"))
            ours_args = ["-m", "training.serve", "--model-dir", str(model_dir), "--host", "127.0.0.1", "--port", "0"]
            ours = stack.enter_context(serving("ours", ours_args, work / "ours.log"))
            one_blas = stack.enter_context(serving("ours-1-blas", ours_args, work / "ours-1-blas.log",
                                                   ONE_BLAS_THREAD))
            servers = {"ours": ours, "baseline": baseline, "ours-1-blas": one_blas}
            parity = max_relative_difference(predictions(ours.port, bodies[100]),
                                             predictions(baseline.port, bodies[100]))
            for name, server in servers.items():
                warm_up(server, bodies[1], plan.warmup[name])
            cells: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
            load = {"before": os.getloadavg()[0]}
            for _ in range(plan.repeats):  # repeats interleave, so drift spreads over every cell
                for name, server in servers.items():
                    for rows, body in bodies.items():
                        if name == "ours-1-blas" and rows == 1:
                            continue
                        for concurrency in plan.concurrency:
                            cells.setdefault((name, rows, concurrency), []).append(run_cell(
                                server, body, concurrency, plan.requests[name], plan.cell_seconds[name]))
            load["after"] = os.getloadavg()[0]
            about_servers = {name: {"startup_s": round(s.startup_seconds, 3), "listening": s.listening,
                                    "log_bytes": None} for name, s in servers.items()}
        for name in servers:
            about_servers[name]["log_bytes"] = (work / f"{name}.log").stat().st_size
    return summarise(plan, cells, parity, model, about_servers, load)


def max_relative_difference(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) != len(b):
        raise RuntimeError(f"the servers answered {len(a)} and {len(b)} predictions for the same body")
    return max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b))


def summarise(plan: Plan, cells: dict[tuple[str, int, int], list[dict[str, Any]]], parity: float,
              model: dict[str, Any], servers: dict[str, Any], load: dict[str, float]) -> dict[str, Any]:
    def median(name: str, rows: int, concurrency: int, key: str) -> float:
        return statistics.median(cell[key] for cell in cells[(name, rows, concurrency)])

    def spread(name: str, rows: int, concurrency: int, key: str) -> dict[str, Any]:
        """The repeats behind median(...): the row's noise for the regression guard."""
        return {"spread": spread_of([cell[key] for cell in cells[(name, rows, concurrency)]])}

    label = LABELS
    table = []
    for name in ("ours", "baseline"):
        for rows in PAYLOAD_ROWS:
            for concurrency in plan.concurrency:
                where = f"{label[name]}, {rows} row{'s' if rows > 1 else ''}, concurrency {concurrency}"
                table += [
                    {"metric": f"p50 latency, {where}", "value": median(name, rows, concurrency, "p50_ms"),
                     "unit": "ms", **spread(name, rows, concurrency, "p50_ms")},
                    {"metric": f"p99 latency, {where}", "value": median(name, rows, concurrency, "p99_ms"),
                     "unit": "ms", **spread(name, rows, concurrency, "p99_ms")},
                    {"metric": f"throughput, {where}",
                     "value": median(name, rows, concurrency, "requests_per_s"), "unit": "req/s",
                     **spread(name, rows, concurrency, "requests_per_s")},
                ]
    c = HEADLINE_CONCURRENCY if HEADLINE_CONCURRENCY in plan.concurrency else max(plan.concurrency)
    p50 = median("ours", 1, 1, "p50_ms")
    ratio = median("ours", 1, c, "requests_per_s") / median("baseline", 1, c, "requests_per_s")
    failed = sum(cell["failed"] for runs in cells.values() for cell in runs)
    # Repeats interleave, so repeat i of ours pairs with repeat i of the baseline.
    ours_runs, baseline_runs = cells[("ours", 1, c)], cells[("baseline", 1, c)]
    ratios = ([o["requests_per_s"] / b["requests_per_s"] for o, b in zip(ours_runs, baseline_runs)]
              if len(ours_runs) == len(baseline_runs) else [])
    table += [
        {"metric": "single-row p50 latency, ours, concurrency 1", "value": p50, "unit": "ms",
         "target": f"<= {P50_TARGET_MS:g} ms", "met": p50 <= P50_TARGET_MS,
         "note": "client-measured round trip on loopback, including the generator's own overhead",
         **spread("ours", 1, 1, "p50_ms")},
        {"metric": f"throughput ratio ours / Flask + Keras, 1 row, concurrency {c}", "value": ratio, "unit": "x",
         "target": f">= {RATIO_TARGET:g}x", "met": ratio >= RATIO_TARGET,
         **({"spread": spread_of(ratios)} if ratios else {})},
        {"metric": "failed requests, every cell", "value": failed, "unit": "", "target": "0", "met": failed == 0},
    ]
    for concurrency in plan.concurrency:  # the diagnostic: same server, one BLAS thread, 100-row bodies
        where = f"{label['ours-1-blas']}, 100 rows, concurrency {concurrency}"
        table += [
            {"metric": f"p50 latency, {where}", "value": median("ours-1-blas", 100, concurrency, "p50_ms"),
             "unit": "ms", "note": "diagnostic, not the shipped configuration",
             **spread("ours-1-blas", 100, concurrency, "p50_ms")},
            {"metric": f"throughput, {where}", "value": median("ours-1-blas", 100, concurrency, "requests_per_s"),
             "unit": "req/s", "note": "diagnostic, not the shipped configuration",
             **spread("ours-1-blas", 100, concurrency, "requests_per_s")},
        ]
    for name in ("ours", "baseline"):
        table.append({"metric": f"server CPU, {label[name]}, 1 row, concurrency {c}",
                      "value": median(name, 1, c, "server_cpu_percent"), "unit": "%",
                      "note": "process CPU time / wall time; 100% = one core",
                      **spread(name, 1, c, "server_cpu_percent")})
    for name in ("ours", "baseline"):
        peak = max(cell["server_rss_peak_mb"] for (n, _, _), runs in cells.items() if n == name for cell in runs)
        # Each repeat's own peak over this server's cells (repeat i is index i of every cell): peak is their max.
        mine = [runs for (n, _, _), runs in cells.items() if n == name]
        peaks = [max(runs[i]["server_rss_peak_mb"] for runs in mine) for i in range(min(len(runs) for runs in mine))]
        table.append({"metric": f"server RSS, {label[name]}, peak under load", "value": peak, "unit": "MB",
                      "spread": spread_of(peaks)})

    details = {
        "plan": {"concurrency": list(plan.concurrency), "payload_rows": list(PAYLOAD_ROWS),
                 "requests_per_cell": plan.requests, "time_cap_per_cell_s": plan.cell_seconds,
                 "repeats": plan.repeats, "warmup_requests": plan.warmup,
                 "statistic": "median over repeats of each cell's own p50/p99/throughput; a cell's p99 "
                              "over fewer than 100 requests (the baseline's, see cells) is near its maximum"},
        "servers": {
            "ours": {"command": "python -m training.serve --host 127.0.0.1 --port 0",
                     "stack": "stdlib ThreadingHTTPServer, numpy forward pass from dense.npz", **servers["ours"]},
            "baseline": {"command": "python -m bench.server_baseline",
                         "stack": "Flask app on Werkzeug's threaded dev server (werkzeug.serving.make_server, "
                                  "threaded=True, as app.run() does; default per-request access log), "
                                  "keras.models.load_model(model.keras) and model.predict per request, "
                                  "same FeatureSpec transform",
                         **servers["baseline"]},
            "ours-1-blas": {"command": "OPENBLAS_NUM_THREADS=1 python -m training.serve --host 127.0.0.1 --port 0",
                            "why": "numpy's OpenBLAS starts threads for a 100-row matmul; on a shared 2-core "
                                   "machine waking them costs more than the product itself",
                            **servers["ours-1-blas"]}},
        "request": {"method": "POST /invocations", "headers": HEADERS,
                    "parity_max_relative_difference_100_rows": parity},
        "generator": ("this process: one thread and one keep-alive http.client connection per concurrent "
                      "worker, pre-encoded bodies, latency = request sent to response read. Python's GIL "
                      "serialises the workers, and the generator shares the cores with the server under "
                      "test, so high-concurrency latencies include queueing in the generator itself"),
        "model": model,
        "load_average_1m": {**load, "note": "the machine's 1-minute load average around the load phase; "
                                            "above the core count, other work shared the CPU"},
        "cells": [{"server": name, "payload_rows": rows, "concurrency": concurrency, "runs": runs}
                  for (name, rows, concurrency), runs in cells.items()],
    }
    return {"title": TITLE, "rows": table, "details": details}


if __name__ == "__main__":
    sys.exit(main(NAME, run))
