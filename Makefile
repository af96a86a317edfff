# selfheal — every target sets up its own virtual environment first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN    ?= runs/latest

.DEFAULT_GOAL := help
.PHONY: help venv test test-fast test-slow test-kafka lint fmt demo experiment experiment-all robustness detectors encodings bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch downloads GBs of CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,parquet]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the project with its dev tools

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)  ## format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint  ## lint, then the default test suite (what CI runs)
	$(BIN)/pytest -m "not slow"

test-fast: $(STAMP)  ## the tests without lint
	$(BIN)/pytest -m "not slow" -q

test-slow: $(STAMP)  ## the slow tests only
	$(BIN)/pytest -m slow

test-kafka: $(STAMP)  ## the integration and e2e tests against an Apache Kafka container (needs a Docker engine)
	$(BIN)/pytest -m "not slow" --kafka container tests/integration tests/e2e

demo: $(STAMP)  ## the main job: the streaming stack on the embedded broker, a drift, a report
	$(BIN)/selfheal demo --out $(RUN)

experiment: $(STAMP)  ## offline: the seed protocol reproduced, and the covariate drift with late labels
	$(BIN)/selfheal experiment seed --protocol seed --out runs/seed-protocol
	$(BIN)/selfheal experiment covariate --out runs/covariate

experiment-all: $(STAMP)  ## every scenario with late labels, one table
	$(BIN)/selfheal experiment all --out runs/all

robustness: $(STAMP)  ## 200 drifts drawn from the family, labels 20,000 and 500 late: a table and a plot per delay (hours on 2 cores)
	$(BIN)/selfheal experiment robustness --n 200 --label-delay 20000 --out runs/robustness-20000
	$(BIN)/selfheal experiment robustness --n 200 --label-delay 500 --out runs/robustness-500

detectors: $(STAMP)  ## FIDI against River's ADWIN, PageHinkley and KSWIN per feature (about 2 min)
	$(BIN)/selfheal detectors --out runs/detectors

encodings: $(STAMP)  ## one-hot against embeddings for category fields, two tables, five seeds (about 2 min)
	$(BIN)/selfheal encodings --out runs/encodings

bench: $(STAMP)  ## throughput, latency, hot swap, loop timelines, healing, memory on the embedded broker: runs/bench.json (about 8 min)
	$(BIN)/selfheal bench --profile --out runs

clean:  ## remove the environment and outputs
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache
