# Two commands on a fresh machine: `make run` (the main job, local) and `make test` (all tests).
# Both create .venv, and refresh it only when setup.cfg or pyproject.toml changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed
CHECKOV_VERSION := 3.3.30
CHECKOV_STAMP := .venv-checkov/.installed

.PHONY: run test bench lint checkov clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/mlops-local run --auto-approve $(ARGS)

test: $(STAMP) $(CHECKOV_STAMP)
	$(VENV)/bin/flake8 src tests
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# Benchmarks are not tests: medians of repeated runs, written to bench/results and bench/RESULTS.md.
bench: $(STAMP)
	$(VENV)/bin/python -m bench.run_all $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/flake8 src tests
	$(VENV)/bin/mypy
	$(VENV)/bin/cfn-lint
	$(VENV)/bin/shellcheck -x scripts/*.sh

# checkov pins an old boto3, so it lives in a virtualenv of its own; tests/templates runs it.
$(CHECKOV_STAMP):
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $(CHECKOV_STAMP)

checkov: $(CHECKOV_STAMP)
	.venv-checkov/bin/checkov --config-file templates/.checkov.yaml

clean:
	rm -rf $(VENV) .venv-checkov runs build *.egg-info src/*.egg-info
