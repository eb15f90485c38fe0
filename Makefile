# One command per task. CI (.ci/run) calls these targets unchanged.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test test-unit test-integration lint check-deploy bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

## setup: virtualenv with the package and test tools, plus the Kafka broker and Schema Registry
## (Apicurio, for the Confluent wire-format tests) via Maven
setup: $(STAMP)
	$(BIN)/python -m publisher.localkafka fetch
	$(BIN)/python -m publisher.localregistry fetch

## demo: the main job on the embedded default: local Kafka + simulator + publisher
demo: setup
	$(BIN)/dataconnect-publisher demo

## test: every test, unit and integration (starts a real broker unless KAFKA_BOOTSTRAP_SERVERS is set)
test: setup
	$(BIN)/python -m pytest

test-unit: setup
	$(BIN)/python -m pytest tests/unit

test-integration: setup
	$(BIN)/python -m pytest tests/integration

## lint: ruff (lint + format) and mypy strict
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: throughput, memory and latency figures; writes docs/BENCHMARKS.md
bench: setup
	$(BIN)/python -m bench

## soak: the long form of the fault suite (crashes, broker restarts, DataConnect faults)
soak: setup
	SOAK=1 $(BIN)/python -m pytest -m faults -o timeout=3600

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
