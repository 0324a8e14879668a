# gigafactory: two commands to get going (see README "Quick start").
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean install

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Run the demonstration on the embedded default (SQLite, local executor).
demo: $(STAMP)
	$(BIN)/gigafactory demo

## Install and run the whole test suite (lint, types, tests on SQLite and PostgreSQL).
test: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy
	bash scripts/ensure-postgres.sh
	bash scripts/pytest.sh $(BIN)/python

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/cycle.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
