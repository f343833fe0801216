# The README's commands. `make run` sets up and serves on embedded defaults; `make test` sets up and tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup run test lint ingest bench eval-stages clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	touch $@

ingest: setup
	$(VENV)/bin/journey ingest

run: ingest
	$(VENV)/bin/journey serve --host 127.0.0.1 --port 8000

lint: setup
	$(VENV)/bin/ruff check app tests bench

# Test files run on TEST_WORKERS pytest-xdist workers, a file's tests together in one (docs/testing.md).
TEST_WORKERS ?= 2

test: lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

eval-stages: ingest  # the four stage development sets (the held-out ones are measured once, by hand)
	$(VENV)/bin/journey eval-stages evals/stages_dev.jsonl
	$(VENV)/bin/journey eval-stages evals/stages_dev2.jsonl
	$(VENV)/bin/journey eval-stages evals/stages_real_dev.jsonl
	$(VENV)/bin/journey eval-stages evals/stages_conv_dev.jsonl

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
