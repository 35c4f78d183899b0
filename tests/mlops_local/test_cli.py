"""`mlops-local`'s own surface: --help (exit codes, examples), --version, and --json's promise that stdout
is one JSON object whatever happens (a usage error, a failure before the execution, an interruption)."""
from __future__ import annotations

import json
import os
import signal
from importlib import metadata

import pytest

from mlops_local import cli
from mlops_local.cli import main
from tests.conftest import ROOT


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]], ids=["top", "run"])
def test_help_tells_exit_codes_and_examples(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)

    out = capsys.readouterr().out
    assert exited.value.code == 0
    for line in ("  3    the model was REJECTED by the quality gate", "  129  SIGHUP, 130 Ctrl-C (SIGINT), 143 SIGTERM",
                 "examples:", "mlops-local summary EXECUTION_ID", "mlops-local run --auto-approve",
                 "  4    the Manual approval for prod was rejected, or expired unanswered"):
        assert line in out
    assert ("  --auto-approve  " in out) is (argv[0] == "run")  # the option is run's


@pytest.mark.parametrize("extra, auto", [([], False), (["--auto-approve"], True)], ids=["default-waits", "flag"])
def test_run_answers_approvals_only_when_asked(extra, auto, monkeypatch, capsys):
    """The CLI waits for a person by default; PipelineOptions (programmatic runs, tests) defaults to unattended."""
    from mlops_local import pipeline_run

    seen: list[pipeline_run.PipelineOptions] = []

    def fake_run(options, say):
        seen.append(options)
        return pipeline_run.EXIT_APPROVAL_REJECTED, {"error": "stub"}
    monkeypatch.setattr(pipeline_run, "run_pipeline", fake_run)
    monkeypatch.setattr("mlops_local.summary.render_report", lambda summary: "report")

    code = main(["run", "--source-root", str(ROOT), "--no-live", *extra])

    assert code == 4 == pipeline_run.EXIT_APPROVAL_REJECTED
    assert [options.auto_approve for options in seen] == [auto]
    assert pipeline_run.PipelineOptions(ROOT, ROOT, ROOT, ROOT, 1.0).auto_approve is True


def test_version_is_the_installed_distributions(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"mlops-local {metadata.version('mlops-codepipeline')}"


@pytest.mark.parametrize("argv, code, error", [
    (["run", "--json", "--data", "/nonexistent.csv"], 1, "--data /nonexistent.csv does not exist"),
    (["run", "--json", "-H", "epochs"], 1, "--hyperparameter expects KEY=VALUE, got 'epochs'"),
    (["run", "--json", "--source-root", "/"], 1, "/ is not the project's checkout"),
    (["run", "--json", "--bogus"], 2, "mlops-local: error: unrecognized arguments: --bogus"),
    (["run", "--json", "--quality-threshold", "many"], 2, "argument --quality-threshold: invalid float value"),
    (["run", "--json", "--quality-threshold", "-1", "-H", "epoch=5"], 1,
     "cannot start the run:\n- quality threshold"),
    (["run", "--json", "-H", "epoch=5"], 1, "- --hyperparameter: unknown hyperparameter(s) 'epoch'"),
], ids=["missing-data", "bad-hyperparameter", "not-a-checkout", "unknown-option", "bad-threshold",
        "preflight-lists-every-problem", "preflight-unknown-hyperparameter"])
def test_json_failures_before_the_execution_are_one_json_object(argv, code, error, capsys, tmp_path):
    argv = [*argv, "--runs-dir", str(tmp_path)] + ([] if "--source-root" in argv else ["--source-root", str(ROOT)])
    try:
        returned = main(argv)
    except SystemExit as exited:  # argparse's usage errors
        returned = exited.code

    out, err = capsys.readouterr()
    answer = json.loads(out)
    assert returned == code == answer["exit_code"]
    assert error in answer["error"] and error in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["sigterm", "sigint"])
def test_an_interrupted_json_run_answers_a_json_error(signum, code, monkeypatch, capsys):
    def interrupted_run(args, out):
        os.kill(os.getpid(), signum)  # the CLI's handler raises in this thread
        raise AssertionError("the signal did not interrupt the run")

    monkeypatch.setattr(cli, "run", interrupted_run)

    assert main(["run", "--json"]) == code

    out, err = capsys.readouterr()
    assert json.loads(out) == {"error": f"interrupted ({signal.Signals(signum).name}); stopped 0 processes",
                               "exit_code": code}
    assert f"mlops-local: interrupted ({signal.Signals(signum).name})" in err


def test_without_json_an_interruption_prints_no_json(monkeypatch, capsys):
    monkeypatch.setattr(cli, "run", lambda args, out: os.kill(os.getpid(), signal.SIGTERM) or 0)

    assert main(["run"]) == 143
    assert capsys.readouterr().out == ""


EXITING = """
import atexit, concurrent.futures, sys, threading, time
from mlops_local.cli import exit_process
pool = concurrent.futures.ThreadPoolExecutor(2)
pool.submit(print, "pool: idle worker left", flush=True).result()  # joined only after threading's exit hook
threading.Thread(target=lambda: (time.sleep(0.3), print("thread: done", flush=True))).start()
atexit.register(print, "atexit: ran", flush=True)
sys.stdout.write("stdout: unflushed")
exit_process(CODE)
"""


@pytest.mark.parametrize("code", [0, 3, 143], ids=["approved", "rejected", "sigterm"])
def test_exit_process_ends_as_python_does_without_the_teardown(code):
    """exit_process: the code; non-daemon threads joined (an idle pool's too), atexit run, stdout flushed."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", EXITING.replace("CODE", str(code))], capture_output=True,
                            text=True, timeout=30, cwd=ROOT)
    assert result.returncode == code, result.stderr
    assert result.stdout.splitlines() == ["pool: idle worker left", "stdout: unflushedthread: done", "atexit: ran"]


def test_main_without_argv_is_the_program(tmp_path):
    """`python -m mlops_local.cli` (and the `mlops-local` script) read sys.argv and end the process themselves."""
    import subprocess
    import sys

    out = tmp_path / "rows.csv"
    result = subprocess.run([sys.executable, "-m", "mlops_local.cli", "synthetic", "--rows", "5", "--out", str(out)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote 5 synthetic rows to {out}\n" and len(out.read_text().splitlines()) == 6
