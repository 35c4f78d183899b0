"""SIGINT, SIGTERM, SIGHUP or a crash of `mlops-local` leave no process of the run and no open port.

A small child program stands in for the CLI: `cli.interruptible` around work that starts, with
processes.py, a job whose group has two processes and listens on a port (a model server), a job
whose leader exits first and leaves a member behind (a JVM that outlived its Spark driver), and a
plain child of its own (a Lambda worker). The test signals it and checks what is left.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlops_local import processes
from tests.mlops_local.faults import alive, port_open, survivors

SRC = Path(__file__).resolve().parents[2] / "src"

CHILD = textwrap.dedent("""
    import os, subprocess, sys, time
    from pathlib import Path
    from mlops_local import processes
    from mlops_local.cli import interruptible

    out, mode = Path(sys.argv[1]), sys.argv[2]
    SERVER = "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); " \\
             "open('{out}/port','w').write(str(s.getsockname()[1])); time.sleep(300)"

    def work():
        serve = f"exec {sys.executable} -c \\"{SERVER.format(out=out)}\\""
        server = processes.start(["sh", "-c", f"sleep 300 & echo $! > {out}/member; {serve}"], os.environ,
                                 out / "job.log")
        leftover = processes.start(["sh", "-c", f"sleep 300 & echo $! > {out}/leftover; exit 0"], os.environ,
                                   out / "leftover.log")
        leftover.wait()
        worker = subprocess.Popen(["sleep", "300"])
        while not (out / "port").exists():
            time.sleep(0.02)
        pids = [server.pid, int((out / "member").read_text()), int((out / "leftover").read_text()), worker.pid]
        (out / "pids.tmp").write_text(" ".join(map(str, pids)))
        (out / "pids.tmp").rename(out / "pids")
        try:
            while not (out / "crash").exists():
                time.sleep(0.05)
            raise RuntimeError("the CLI crashed")
        finally:
            if mode == "slow-close":  # as LocalPipeline.close(): stops its job, taking its time
                with processes.cleaning_up():
                    (out / "closing").write_text("")
                    time.sleep(1.0)
                    processes.stop(server, grace=1.0)

    sys.exit(interruptible(work))
""")


def wait_for(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def start_child(tmp_path: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), mode], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


@pytest.mark.parametrize("sig, mode, code, line", [
    (signal.SIGTERM, "plain", 143, "mlops-local: interrupted (SIGTERM); stopped 3 processes"),
    (signal.SIGINT, "plain", 130, "mlops-local: interrupted (SIGINT); stopped 3 processes"),
    (signal.SIGHUP, "plain", 129, "mlops-local: interrupted (SIGHUP); stopped 3 processes"),
    (signal.SIGTERM, "slow-close", 143, "mlops-local: interrupted (SIGTERM); stopped 3 processes"),
    (None, "crash", 1, "RuntimeError: the CLI crashed"),
], ids=["sigterm", "sigint-ctrl-c", "sighup", "sigterm-then-sigint-during-close", "crash"])
def test_no_process_of_the_run_survives(tmp_path: Path, sig: signal.Signals | None, mode: str, code: int,
                                        line: str) -> None:
    child = start_child(tmp_path, mode)
    try:
        wait_for(tmp_path / "pids")
        pids = [int(pid) for pid in (tmp_path / "pids").read_text().split()]
        port = int((tmp_path / "port").read_text())
        assert all(alive(pid) for pid in pids) and port_open(port)
        if sig is None:
            (tmp_path / "crash").write_text("")
        else:
            child.send_signal(sig)
        if mode == "slow-close":  # a second signal while the run stops its jobs does not cut that short
            wait_for(tmp_path / "closing")
            child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == code, stderr
    assert survivors(pids) == []
    assert not port_open(port)
    if sig is None:
        assert stderr.strip().splitlines()[-1] == line
    else:  # one short line, no traceback
        assert stderr.strip() == line


def test_stop_ends_what_outlived_the_leader(tmp_path: Path) -> None:
    """The JVM case: the group's leader exited, a member it started is still there."""
    process = processes.start(["sh", "-c", f"sleep 300 & echo $! > {tmp_path}/member; exit 0"], os.environ,
                              tmp_path / "job.log")
    process.wait()
    member = int((tmp_path / "member").read_text())
    assert alive(member)
    processes.stop(process, grace=1.0)
    assert survivors([member]) == []


def test_stop_kills_a_group_that_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    process = processes.start(["sh", "-c", f"trap '' TERM; sleep 300 & echo $! > {tmp_path}/member; echo ready; wait"],
                              os.environ, tmp_path / "job.log")
    wait_for_text(tmp_path / "job.log", "ready")
    started = time.monotonic()
    processes.stop(process, grace=0.3)
    assert process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5
    assert survivors([int((tmp_path / "member").read_text())]) == []


def wait_for_text(path: Path, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path.name}"
        time.sleep(0.02)


def test_what_was_there_before_is_spared(tmp_path: Path) -> None:
    """main() called as a library (as the pipeline tests do) ends only the processes of its own run."""
    from mlops_local.cli import interruptible

    earlier_group = processes.start(["sleep", "300"], os.environ, tmp_path / "earlier.log")
    earlier_child = subprocess.Popen(["sleep", "300"])
    started: list[subprocess.Popen] = []

    def work() -> int:
        started.append(processes.start(["sleep", "300"], os.environ, tmp_path / "job.log"))
        started.append(subprocess.Popen(["sleep", "300"]))
        return 0

    try:
        assert interruptible(work) == 0
        assert survivors([p.pid for p in started]) == []
        assert alive(earlier_group.pid) and alive(earlier_child.pid)
    finally:
        processes.stop(earlier_group, grace=1.0)
        earlier_child.kill()
        for process in (earlier_child, *started):
            process.wait()


@pytest.mark.spark
@pytest.mark.parametrize("stage, process_name", [
    ("DataAndFeatureEngineering", "java"),  # the Spark driver and its JVM
    ("Training", None),                     # the trainer
], ids=["sigterm-during-etl", "sigterm-during-training"])
def test_sigterm_of_a_real_run_leaves_nothing(tmp_path: Path, stage: str, process_name: str | None) -> None:
    """`mlops-local run` on a small sample, SIGTERM while a job runs: 143, one line, no process left."""
    psutil = pytest.importorskip("psutil")
    from mlops_local.synthetic import write_sample

    root = SRC.parent
    data = write_sample(root / "data" / "diamonds.csv.gz", root / "data" / "diamonds.yaml", tmp_path / "sample.csv",
                        every=40)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen([sys.executable, "-m", "mlops_local.cli", "run", "--source-root", str(root), "--data",
                              str(data), "--runs-dir", str(tmp_path / "runs"), "-H", "epochs=200", "-H",
                              "patience=200"], env=env, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert child.stdout is not None
        for line in child.stdout:  # the live view: "  <stage>/<action>: InProgress ..."
            if line.strip().startswith(f"{stage}/") and "InProgress" in line:
                break
        else:
            pytest.fail(f"{stage} never ran: {child.communicate()[1]}")
        deadline = time.monotonic() + 120
        while True:  # until the job's process (in a session of its own) is there
            tree = psutil.Process(child.pid).children(recursive=True)
            names = {p.name() for p in tree if p.is_running()}
            jobs = [p for p in tree if _session(p.pid) not in (None, os.getsid(child.pid))]
            if jobs and (process_name is None or process_name in names) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert jobs and (process_name is None or process_name in names), names
        ports = {c.laddr.port for p in tree for c in _connections(psutil, p) if c.status == "LISTEN"}
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1].startswith("mlops-local: interrupted (SIGTERM); stopped ")
    assert "Traceback" not in stderr
    assert survivors([p.pid for p in tree], timeout=10) == []
    assert not [port for port in ports if port_open(port)]


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except ProcessLookupError:
        return None


def _connections(psutil: object, process: object) -> list:
    try:
        return process.net_connections(kind="inet")  # type: ignore[attr-defined]
    except Exception:  # gone or not ours to inspect
        return []
