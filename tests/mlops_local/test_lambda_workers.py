"""The warm Lambda worker pool: closing it ends every worker, busy ones included; a prewarm starts a
function's first worker ahead of its first invocation and never a second one."""
from __future__ import annotations

import json
import os
import time

import pytest

from mlops_local.lambda_workers import LambdaWorkers


def wait_ended(*workers, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while any(w.alive() for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_close_ends_busy_workers_too(tmp_path):
    pool = LambdaWorkers()
    idle_key, busy_key = ("idle", "hash"), ("busy", "hash")
    idle = pool.acquire(idle_key, dict(os.environ), tmp_path, tmp_path / "idle.log")
    pool.release(idle_key, idle)
    busy = pool.acquire(busy_key, dict(os.environ), tmp_path, tmp_path / "busy.log")  # serving an invocation
    try:
        pool.close()
        wait_ended(idle, busy)
        assert not idle.alive() and not busy.alive()
    finally:
        idle.kill()
        busy.kill()


def test_a_released_worker_is_no_longer_busy(tmp_path):
    pool = LambdaWorkers()
    key = ("function", "hash")
    worker = pool.acquire(key, dict(os.environ), tmp_path, tmp_path / "worker.log")
    pool.release(key, worker)
    again = pool.acquire(key, dict(os.environ), tmp_path, tmp_path / "worker.log")
    try:
        assert again is worker  # reused: the pool kept it idle, not busy
    finally:
        pool.close()
        worker.kill()


def test_the_first_invocation_reuses_the_prewarmed_worker(tmp_path):
    pool = LambdaWorkers()
    key = ("function", "hash")
    try:
        warm = pool.prewarm(key, dict(os.environ), tmp_path, tmp_path / "worker.log")
        assert warm is not None and warm.alive() and pool.workers("function") == [warm]
        assert pool.acquire(key, dict(os.environ), tmp_path, tmp_path / "worker.log") is warm
        assert warm.invocations == 0
    finally:
        pool.close()


def _idle_twin(pool, key, tmp_path):
    pool.release(key, pool.acquire(key, dict(os.environ), tmp_path, tmp_path / "twin.log"))


def _busy_twin(pool, key, tmp_path):
    pool.acquire(key, dict(os.environ), tmp_path, tmp_path / "twin.log")


def _prewarmed_twin(pool, key, tmp_path):
    pool.prewarm(key, dict(os.environ), tmp_path, tmp_path / "twin.log")


def _full_pool(pool, key, tmp_path):
    other = ("other", "hash")
    pool.release(other, pool.acquire(other, dict(os.environ), tmp_path, tmp_path / "other.log"))


def _closed_pool(pool, key, tmp_path):
    pool.close()


@pytest.mark.parametrize("before", [_idle_twin, _busy_twin, _prewarmed_twin, _full_pool, _closed_pool],
                         ids=["an-idle-worker", "a-busy-worker", "a-prewarmed-worker", "the-pool-is-full",
                              "the-pool-is-closed"])
def test_a_prewarm_starts_no_worker_beyond_what_the_pool_allows(tmp_path, before):
    pool = LambdaWorkers(max_idle=1)
    key = ("function", "hash")
    try:
        before(pool, key, tmp_path)
        existing = pool.workers("function")
        assert pool.prewarm(key, dict(os.environ), tmp_path, tmp_path / "worker.log") is None
        assert pool.workers("function") == existing
    finally:
        pool.close()


def test_close_ends_prewarmed_workers(tmp_path):
    pool = LambdaWorkers()
    warm = [pool.prewarm((name, "hash"), dict(os.environ), tmp_path, tmp_path / f"{name}.log") for name in "ab"]
    pool.close()
    wait_ended(*warm)
    assert not any(w.alive() for w in warm)
    assert pool.workers("a") == pool.workers("b") == []


def test_the_worker_imports_its_handler_before_the_first_request(tmp_path):
    """Lambda's INIT: the handler's module is imported when the worker starts, not at the first invocation,
    and a prewarmed worker has loaded the SDK models of the services it was given."""
    (tmp_path / "init_probe.py").write_text(
        "import pathlib, time\n"
        f"pathlib.Path({str(tmp_path / 'imported')!r}).write_text(str(time.time()))\n"
        "def handler(event, context):\n"
        "    import boto3\n"
        f"    pathlib.Path({str(tmp_path / 'session')!r}).write_text(str(boto3.DEFAULT_SESSION is not None))\n")
    env = {**os.environ, "_HANDLER": "init_probe.handler", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
           "AWS_SECRET_ACCESS_KEY": "secret", "AWS_DEFAULT_REGION": "us-east-1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    pool = LambdaWorkers()
    try:
        warm = pool.prewarm(("probe", "hash"), env, tmp_path, tmp_path / "worker.log", preload=["s3"])
        assert warm is not None
        deadline = time.monotonic() + 20
        while not (tmp_path / "imported").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "imported").exists(), (tmp_path / "worker.log").read_text()
        assert warm.invocations == 0
        # ... and the first invocation uses that import: the module's top level does not run again.
        imported = (tmp_path / "imported").read_text()
        assert warm.send({"handler": "init_probe.handler", "event": {}, "log": str(tmp_path / "call.log"),
                          "cwd": str(tmp_path), "context": {"deadline_epoch": time.time() + 30}})
        answer = None
        while answer is None and time.monotonic() < deadline:
            answer = warm.receive(timeout=0.1)
        assert answer == {}, json.dumps(answer)
        assert (tmp_path / "imported").read_text() == imported
        # The preloaded service's client made the SDK's default session, which the handler's clients share.
        assert (tmp_path / "session").read_text() == "True"
    finally:
        pool.close()
