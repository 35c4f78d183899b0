"""The warm Lambda worker pool: closing it ends every worker, busy ones included."""
from __future__ import annotations

import os
import time

from mlops_local.lambda_workers import LambdaWorkers


def test_close_ends_busy_workers_too(tmp_path):
    pool = LambdaWorkers()
    idle_key, busy_key = ("idle", "hash"), ("busy", "hash")
    idle = pool.acquire(idle_key, dict(os.environ), tmp_path, tmp_path / "idle.log")
    pool.release(idle_key, idle)
    busy = pool.acquire(busy_key, dict(os.environ), tmp_path, tmp_path / "busy.log")  # serving an invocation
    try:
        pool.close()
        deadline = time.monotonic() + 10
        while (idle.alive() or busy.alive()) and time.monotonic() < deadline:
            time.sleep(0.05)
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
