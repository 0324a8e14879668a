# gigafactory: two commands to get going (see README "Quick start").
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo demo-twin demo-core test lint typecheck bench clean install

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Run the control plane demo on the embedded default (SQLite, local executor) at
## http://127.0.0.1:8000: prints ready-to-paste tokens and commands; Ctrl-C stops it.
demo: $(STAMP)
	$(BIN)/gigafactory serve --demo

## A short synthetic day on gigafactory-100k through the digital twin; prints the report path.
demo-twin: $(STAMP)
	$(BIN)/gigafactory simulate --facility gigafactory-100k \
	    --workload synthetic:jobs=20000,days=1,load=0.9,seed=1 --out runs/demo-day

## The scheduling core on dev-32, every decision explained (no server).
demo-core: $(STAMP)
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

## Every benchmark (about 10 minutes); figures go to bench/results/ and BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/python bench/cycle.py
	$(BIN)/python bench/twin.py --scenario philly
	$(BIN)/python bench/twin.py --scenario scaling
	for db in postgresql sqlite; do for n in 1 4 16; do \
	    $(BIN)/python bench/api.py --db $$db --clients $$n || exit 1; done; done

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
