# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test bench lint install browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

# Debian's Chromium for the browser tests (a test tool's own browser download cannot work here).
browser:
	@bash .ci/ensure-tool chromium chromium "the browser tests"


# Upgrade the embedded SQLite database, load the demo once, start the whole loop.
run: install
	$(BIN)/resistry db upgrade
	$(BIN)/resistry demo load
	$(BIN)/resistry up --host 127.0.0.1 --port 8000

test: install browser
	$(BIN)/python -m pytest

# wrk drives the landing benchmark (a Python load generator would compete for the 2 cores).
bench: install
	@bash .ci/ensure-tool wrk wrk "the landing benchmark"
	$(BIN)/python bench/run_all.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) instance/*.sqlite3* bench/results
