# Two commands on a fresh machine: `make run` (the main job, local) and `make test` (all tests).
# Both create .venv, and refresh it only when setup.cfg or pyproject.toml changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test lint clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/mlops-local run $(ARGS)

test: $(STAMP)
	$(VENV)/bin/flake8 src tests
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/flake8 src tests

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
