# eventsource — every target is listed by `make help`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install lint fmt typecheck test test-unit chaos demo api bench docs docs-cli docs-serve kafka-up kafka-down kafka-status schemas clean

help: ## List every target with what it does
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,postgres]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install eventsource with its dev and postgres extras

lint: $(STAMP) ## ruff (lint + format check), mypy --strict, schema compatibility check
	$(BIN)/ruff check eventsource tests benchmarks examples
	$(BIN)/ruff format --check eventsource tests benchmarks examples
	$(BIN)/mypy --strict eventsource
	$(BIN)/eventsource schemas check

fmt: $(STAMP) ## Format and auto-fix with ruff
	$(BIN)/ruff format eventsource tests benchmarks examples
	$(BIN)/ruff check --fix eventsource tests benchmarks examples

test: $(STAMP) ## The one test command: lint, types, then the whole suite on a real broker and PostgreSQL
	$(MAKE) lint
	$(BIN)/python -m eventsource.testing.services run -- $(BIN)/pytest -p no:cacheprovider tests

test-unit: $(STAMP) ## Unit tests only (no I/O, seconds)
	$(BIN)/pytest tests/unit -q

chaos: $(STAMP) ## Every test marked slow: long reliability runs (20 SIGKILLs over 100k events), cluster failovers
	EVENTSOURCE_CHAOS=1 $(BIN)/python -m eventsource.testing.services run -- $(BIN)/pytest tests -m slow -q

demo: $(STAMP) ## The bank demo: broker, appends, projection into SQLite, balances, replay
	$(BIN)/python -m examples.bank.demo

API_PORT ?= 8000

api: $(STAMP) ## The bank HTTP example (examples/bank/api.py) on :8000 (API_PORT=...) with `eventsource run` beside it; Ctrl-C stops both
	@if [ -z "$$EVENTSOURCE_BOOTSTRAP_SERVERS" ]; then $(BIN)/eventsource dev kafka start; fi
	$(BIN)/eventsource topics create --aggregate examples.bank.domain:Account
	@trap 'kill $$projector 2>/dev/null; wait $$projector' EXIT; \
	$(BIN)/eventsource run examples.bank.projections:AccountBalances --log-format console --http-port 0 & projector=$$!; \
	$(BIN)/uvicorn --factory examples.bank.api:create_app --host 127.0.0.1 --port $(API_PORT)

bench: $(STAMP) ## Benchmarks against raw confluent-kafka baselines (ratios printed)
	$(BIN)/python -m eventsource.testing.services run -- bash -c '$(BIN)/python benchmarks/append.py && $(BIN)/python benchmarks/replay.py && $(BIN)/python benchmarks/takeover.py && $(BIN)/python benchmarks/aio.py && $(BIN)/python benchmarks/multiprocess.py'

docs-cli: $(STAMP) ## Regenerate docs/reference/cli.md from the Typer app
	$(BIN)/python docs/gen_cli_reference.py

docs: $(STAMP) ## Build the mkdocs site with --strict
	$(BIN)/mkdocs build --strict

docs-serve: $(STAMP) ## Serve the docs locally
	$(BIN)/mkdocs serve

kafka-up: $(STAMP) ## Start the local single-node Kafka broker (jars from Maven Central)
	$(BIN)/eventsource dev kafka start

kafka-down: $(STAMP) ## Stop the local broker, leaving no process behind
	$(BIN)/eventsource dev kafka stop

kafka-status: $(STAMP) ## Is the local broker running?
	$(BIN)/eventsource dev kafka status

clean: ## Remove the venv, caches and built docs
	rm -rf $(VENV) site .mypy_cache .ruff_cache .pytest_cache
