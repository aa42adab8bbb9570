# Two commands on a fresh machine: `make run` and `make test`. Everything they need (Python
# packages, PostgreSQL, Kafka) is installed and started by the targets below.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .local/venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: help run test lint bench stack helm helm-start stop clean compose-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
# Line by line, no bars: a first start shows what it downloads, and logs get no escapes.
	$(BIN)/pip install --progress-bar off -e '.[dev]'
	touch $@

stack: helm-start $(INSTALLED) ## start the local PostgreSQL and Kafka (installs them, and Chromium for the browser tests, when missing)
	deploy/local/postgres.sh up
	deploy/local/kafka.sh up
	deploy/local/chromium.sh up
	$(BIN)/credits topics create

helm: ## build helm for the chart test (pinned; Go fetches it from the module proxy, once)
	deploy/local/helm.sh up

helm-start: # a first helm build runs in the background while the rest of the stack is set up
	deploy/local/helm.sh start

run: stack ## start the local stack, then every component in the foreground (Ctrl-C stops)
	$(BIN)/credits run all

lint: $(INSTALLED) compose-check ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

compose-check: ## validate compose.yaml where a compose client exists
	@if docker compose version >/dev/null 2>&1; then \
	  docker compose config -q && echo "compose.yaml: valid (docker compose)"; \
	elif command -v docker-compose >/dev/null 2>&1; then \
	  docker-compose config -q && echo "compose.yaml: valid (docker-compose)"; \
	else \
	  echo "compose.yaml: no compose client here; checked by tests/stack/test_compose.py only"; \
	fi

test: stack lint helm ## the whole suite against the real local stack (and the Helm chart)
	$(BIN)/python -m pytest

bench: stack ## throughput and latency on the local stack, beside the raw PostgreSQL ceiling
	$(BIN)/python -m bench

stop: ## stop PostgreSQL and Kafka
	deploy/local/kafka.sh down
	deploy/local/postgres.sh down

clean: stop ## stop, then remove all local state (.local/)
	rm -rf .local
