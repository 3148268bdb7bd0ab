# calibd: set up, demo, test. Everything runs from the project's own virtual environment (.venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LIBRARY ?= ./library

.PHONY: setup demo test lint typecheck pytest bench clean

setup: $(STAMP)

# pyindi-client's wheel bundles its own INDI client library; its dbus-python dependency is
# not needed and does not build without system headers, so it is installed with --no-deps.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev,alpaca,zwo,fast]'
	$(BIN)/python -m pip install --quiet --no-deps 'pyindi-client==2.3.0'
	touch $(STAMP)

# Runs the demo plan on the built-in simulated camera: real FITS files in $(LIBRARY).
demo: $(STAMP)
	$(BIN)/calibd run plans/demo.yaml --library $(LIBRARY)
	$(BIN)/calibd library status --library $(LIBRARY)

lint: $(STAMP)
	$(BIN)/ruff check calibd capture drivers simulators tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

# The test command the README gives and CI runs: lint, type check, the whole suite.
test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/capture_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
