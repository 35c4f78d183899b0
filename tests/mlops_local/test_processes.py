"""processes.py: what ended a process, in words a person can act on, and the group left by a leader that
exited by itself."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from mlops_local import processes

SPARK_CORRUPT = """\
26/12/02 13:00:01 ERROR Executor: Exception in task 0.0 in stage 1.0 (TID 1)
org.apache.spark.SparkException: Encountered error while reading file file:///w/glue/jr_1/input/b/raw/d.csv.gz. Details:
Caused by: java.io.EOFException: Unexpected end of input stream
py4j.protocol.Py4JJavaError: An error occurred while calling o57.csv.
"""
JVM_GONE = """\
Traceback (most recent call last):
  File "/usr/lib/python3/site-packages/py4j/clientserver.py", line 503, in send_command
ConnectionRefusedError: [Errno 111] Connection refused
py4j.protocol.Py4JNetworkError: Error while sending or receiving
"""
BANNER = "2026-12-02 13:00:00.000 I tensorflow/core/util/port.cc:113] oneDNN custom operations are on.\n"


@pytest.mark.parametrize("code, log, expected", [
    (-9, BANNER, "the trainer was killed by SIGKILL"),
    (-15, JVM_GONE, "the trainer was killed by SIGTERM"),  # a signal is the root cause, whatever the log says
    (137, BANNER, "the trainer was killed by SIGKILL"),   # a shell's 128+N
    (1, SPARK_CORRUPT, "corrupt input file s3://b/raw/d.csv.gz: Caused by: java.io.EOFException: "
                       "Unexpected end of input stream"),
    (1, JVM_GONE, "the Spark driver's JVM ended unexpectedly (the Python driver lost its connection to it: "
                  "ConnectionRefusedError: [Errno 111] Connection refused)"),
    (1, "starting\nValueError: bad threshold\nshutting down\n", "ValueError: bad threshold"),
], ids=["sigkill-not-the-banner", "signal-before-log", "shell-137", "corrupt-gz-named", "jvm-gone",
        "last-error-line"])
def test_root_cause(tmp_path: Path, code: int, log: str, expected: str) -> None:
    path = tmp_path / "job.log"
    path.write_text(log)
    staged = {"/w/glue/jr_1/input/b/raw/d.csv.gz": "s3://b/raw/d.csv.gz"}
    found = processes.root_cause(code, path, program="trainer",
                                 name_file=lambda p: staged.get(p.removeprefix("file://"), p))
    assert found == expected


@pytest.mark.parametrize("code, name", [(-9, "SIGKILL"), (143, "SIGTERM"), (1, None), (0, None), (255, None)])
def test_signal_name(code: int, name: str | None) -> None:
    assert processes.signal_name(code) == name


def test_reap_ends_what_the_leader_left_in_its_group(tmp_path: Path) -> None:
    # The leader starts a child in its group and exits, as a Spark driver leaves its JVM.
    leader = processes.start([sys.executable, "-c", "import subprocess; subprocess.Popen(['sleep', '60'])"],
                             {"PATH": "/usr/bin:/bin"}, tmp_path / "leader.log")
    leader.wait(timeout=30)
    assert processes.group_alive(leader.pid)
    assert processes.reap(leader) is True
    deadline = time.monotonic() + 5
    while processes.group_alive(leader.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes.group_alive(leader.pid)
    assert leader.pid not in processes.existing()


def test_start_keeps_stderr_apart_when_asked(tmp_path: Path) -> None:
    process = processes.start([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"],
                              {}, tmp_path / "out.log", errors=tmp_path / "err.log")
    process.wait(timeout=30)
    processes.reap(process)
    assert (tmp_path / "out.log").read_text() == "out\n" and (tmp_path / "err.log").read_text() == "err\n"
