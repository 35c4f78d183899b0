"""The lifecycle of the stand-in's child processes: Glue runs, SageMaker jobs, model servers.

A child starts in a process group of its own with its output in a log file, so a stop ends it and
everything it started (Spark's JVM, data loaders) and nothing else. Every group started here is
registered until it is known to be empty, so `stop_all` (the CLI's last step, also on SIGTERM or a
crash) leaves no process of the run behind, including one whose parent already ended (a JVM that
outlived its driver). `last_error` reads back the line of a log a person wants first.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Callable, Container, Iterable, Iterator, Mapping

STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL, as a container stop gives

_lock = threading.Lock()
_groups: dict[int, subprocess.Popen] = {}  # pgid -> the group's leader, for every group start() made
_stopped = 0  # groups a stop found alive and ended, for the CLI's closing line
_cleaning = 0  # > 0 while the main thread stops the run's processes: a stop signal must not cut that short


def start(argv: list[str], env: Mapping[str, str], log: Path, cwd: Path | None = None,
          errors: Path | None = None) -> subprocess.Popen:
    """The child in a session of its own (pgid == pid), stdout appended to `log`, stderr too unless
    `errors` names a file of its own."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out, (errors or log).open("ab") as err, _lock:  # registered before a signal
        process = subprocess.Popen(argv, stdout=out,                      # handler can run stop_all
                                   stderr=err if errors is not None else subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=dict(env), cwd=cwd, start_new_session=True)
        for pgid, leader in list(_groups.items()):  # forget groups that ended, before their ids are reused
            if leader.poll() is not None and not group_alive(pgid):
                del _groups[pgid]
        _groups[process.pid] = process
        return process


def stop(process: subprocess.Popen, grace: float = STOP_GRACE) -> None:
    """SIGTERM to the child's process group, SIGKILL after the grace; returns once the leader exited
    and nothing of its group is left (what it started outlives it when the leader exits first)."""
    global _stopped
    alive = process.poll() is None or group_alive(process.pid)
    if process.poll() is None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)  # the child leads its own session: pgid == pid
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        process.wait()
    # The leader is gone; what is left of its group gets no grace, as a container's remaining
    # processes do not. While a group has members Linux reuses neither its id nor its leader's pid.
    _signal_group(process.pid, signal.SIGKILL)
    with _lock:
        _groups.pop(process.pid, None)
        _stopped += alive


def reap(process: subprocess.Popen) -> bool:
    """After the leader exited by itself: SIGKILL what is left of its group (a JVM its Spark driver left,
    a data loader), as a container's remaining processes end with its main process, and forget the
    group; True when something was left."""
    if process.poll() is None:
        return False
    left = _signal_group(process.pid, signal.SIGKILL)
    with _lock:
        _groups.pop(process.pid, None)
    return left


def stop_all(grace: float = STOP_GRACE, spare: Container[int] = ()) -> int:
    """Stop every group start() made that still has a process, and the caller's own children (the
    Lambda workers, a script's shell), all at once, except the pids in `spare` (what was there
    before, when the caller is a library user with processes of its own); the number ended."""
    global _stopped
    with _lock:
        groups = [process for pgid, process in _groups.items() if pgid not in spare]
    before = _stopped
    children = _kill_children(spare)
    stoppers = [threading.Thread(target=stop, args=(process, grace), daemon=True) for process in groups]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join()
    with _lock:
        _stopped += children
        return _stopped - before


def existing() -> set[int]:
    """The registered groups and this process's children now: `spare` for a later stop_all."""
    with _lock:
        return set(_groups) | set(_children(os.getpid()))


@contextlib.contextmanager
def cleaning_up() -> Iterator[None]:
    """Around a cleanup: the CLI's signal handler notes a stop signal then instead of raising."""
    global _cleaning
    _cleaning += 1
    try:
        yield
    finally:
        _cleaning -= 1


def in_cleanup() -> bool:
    return _cleaning > 0


def stopped_count() -> int:
    """How many groups (and children) a stop has ended in this process so far."""
    return _stopped


def group_alive(pgid: int) -> bool:
    return _signal_group(pgid, 0)


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _kill_children(spare: Container[int]) -> int:
    """SIGKILL this process's living children other than the registered groups' leaders (stop()
    gives those their grace) and `spare`; the count. psutil when it is installed, else /proc."""
    me = os.getpid()
    with _lock:
        leaders = set(_groups)
    killed = 0
    for pid in _children(me):
        if pid in leaders or pid in spare:
            continue
        try:
            os.kill(pid, signal.SIGKILL)  # not reaped here: the Popen that started it may still wait()
            killed += 1
        except (ProcessLookupError, PermissionError):
            continue
    return killed


def _children(parent: int) -> list[int]:
    try:
        import psutil
    except ImportError:
        return [pid for pid, ppid in _proc_parents() if ppid == parent]
    try:
        children = psutil.Process(parent).children()
    except psutil.Error:
        return []
    found = []
    for child in children:  # one ending meanwhile (a group being stopped) must not hide the others
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def _proc_parents() -> list[tuple[int, int]]:
    """(pid, parent pid) of every living non-zombie process /proc lists; empty where there is no /proc."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            found.append((int(entry.parent.name), int(fields[1])))
    return found


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*:")


def last_error(log: Path, limit: int = 1024) -> str:
    """The last Python exception line of the log, else the last line that mentions an error, else
    the last line."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "no log"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if EXCEPTION_LINE.match(line):
            return line[:limit]
    for line in reversed(lines):
        if "error" in line.lower():
            return line[:limit]
    return lines[-1][:limit] if lines else "no output"


# -- what ended a process, in words a person can act on -------------------------------------------------------
# A Spark read of a damaged file: Java's and Python's decompressors' complaints.
CORRUPT = re.compile(r"java\.io\.EOFException|Unexpected end of (ZLIB )?input stream|Not in GZIP format|"
                     r"java\.util\.zip\.ZipException|CRC mismatch|Compressed file ended before the end-of-stream|"
                     r"BadGzipFile|zlib\.error|invalid (block type|distance|stored block lengths|code lengths set)|"
                     r"incorrect header check")
# The file Spark names ("Encountered error while reading file <path>. Details:", FileScanRDD; FAILED_READ_FILE
# in Spark 4).
READING = re.compile(r"reading file\s+['\"]?(\S+?)['\"]?[.,;:]?(?:\s|$)")
# Py4J losing the JVM: the Python driver's side of a JVM that died (killed, out of memory, crashed).
JVM_GONE = re.compile(r"Py4JNetworkError|ConnectionRefusedError|Answer from Java side is empty|"
                      r"Error while receiving|Error while sending|java\.lang\.OutOfMemoryError|"
                      r"A fatal error has been detected by the Java Runtime Environment")


def exit_status(code: int) -> int:
    """A return code as a container or shell reports it: 128+N for a process killed by signal N."""
    return 128 - code if code < 0 else code


def signal_name(code: int) -> str | None:
    """The signal that ended a process from its return code: -N (Popen) or 128+N (a shell's), else None."""
    number = -code if code < 0 else code - 128 if 128 < code < 128 + 65 else 0
    if not number:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return None


def in_their_words(text: str, paths: Iterable[tuple[str, str]]) -> str:
    """`text` with each local path replaced by what the user knows it as (an s3:// URI, a container path);
    the longest path first, so a folder's name does not break a longer path inside it."""
    for local, known in sorted(paths, key=lambda pair: len(pair[0]), reverse=True):
        text = text.replace(f"file://{local}", known).replace(local, known)
    return text


def root_cause(code: int, *logs: Path, program: str = "process",
               name_file: Callable[[str], str] = lambda path: path) -> str:
    """Why a process ended with `code`, from its return code and its logs, root cause first: killed by a
    signal; a corrupt input file (named with `name_file`, e.g. the s3:// URI it was staged from); the
    Spark driver's JVM gone; else the log's last error line (last_error)."""
    text = "\n".join(_read(log) for log in logs)
    killed = signal_name(code)
    if killed and code < 0:
        return f"the {program} was killed by {killed}"
    corrupt = CORRUPT.search(text)
    if corrupt:
        line = _line_of(text, corrupt.start())
        where = READING.search(text)
        named = f" {name_file(where.group(1))}" if where else ""
        return f"corrupt input file{named}: {line}"[:1024]
    gone = JVM_GONE.search(text)
    if gone:
        return (f"the Spark driver's JVM ended unexpectedly (the Python driver lost its connection to it: "
                f"{_line_of(text, gone.start())})")[:1024]
    if killed:
        return f"the {program} was killed by {killed}"
    for log in logs:
        found = last_error(log)
        if found not in ("no log", "no output"):
            return found
    return "no output"


def _read(log: Path) -> str:
    try:
        return log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _line_of(text: str, at: int) -> str:
    start = text.rfind("\n", 0, at) + 1
    end = text.find("\n", at)
    return text[start:end if end >= 0 else len(text)].strip()[:500]
