"""cfn-lint (errors and warnings), the root .cfnlintrc, and checkov when it is installed."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.templates.cfn import ALL_TEMPLATES, ROOT

BIN = Path(sys.executable).parent


def tool(name: str) -> str | None:
    candidate = BIN / name
    return str(candidate) if candidate.exists() else shutil.which(name)


def test_templates_exist():
    assert [p.name for p in ALL_TEMPLATES] == ["endpoint.yaml", "pipeline.yaml", "test-lambda.yaml"]


@pytest.mark.parametrize("path", ALL_TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_reports_nothing(path):
    result = subprocess.run([tool("cfn-lint"), str(path.relative_to(ROOT))], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_cfnlintrc_covers_every_template_and_explains_each_ignore():
    text = (ROOT / ".cfnlintrc").read_text()
    config = yaml.safe_load(text)
    globs = config["templates"]
    covered = {p for pattern in globs for p in ROOT.glob(pattern)}
    assert set(ALL_TEMPLATES) <= covered
    for check in config.get("ignore_checks", []):
        line = next(line for line in text.splitlines() if re.search(rf"-\s*{check}\b", line))
        assert "#" in line, f"{check} is ignored without a reason beside it"


def test_cfn_lint_reads_the_config():
    result = subprocess.run([tool("cfn-lint"), "--list-templates"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    listed = {Path(line.strip()).name for line in result.stdout.splitlines() if line.strip()}
    assert {p.name for p in ALL_TEMPLATES} <= listed, result.stdout + result.stderr


CHECKOV = next((str(p) for p in (ROOT / ".venv-checkov/bin/checkov", Path(shutil.which("checkov") or "/nonexistent"))
                if p.exists()), None)


@pytest.mark.skipif(CHECKOV is None, reason="checkov is not installed (.venv-checkov/bin/checkov)")
def test_checkov_passes_with_documented_skips():
    result = subprocess.run([CHECKOV, "--config-file", "templates/.checkov.yaml"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert "Failed checks: 0" in result.stdout


def test_checkov_skips_carry_reasons():
    text = (ROOT / "templates/.checkov.yaml").read_text()
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if re.match(r"\s*-\s*CKV", line):
            assert lines[index - 1].strip().startswith("#"), f"{line.strip()} has no reason above it"
    for path in ALL_TEMPLATES:
        for skip in re.findall(r"- id: (CKV\S+)\n\s+comment: (.+)", path.read_text()):
            assert len(skip[1]) > 20, skip
