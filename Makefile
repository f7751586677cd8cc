# One task list for people and CI. `make help` lists the tasks.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
RUN := $(UV) run --frozen
# `nextbest bento` (and its test) calls uv by name: keep the pip --user install of uv reachable
export PATH := $(HOME)/.local/bin:$(PATH)

.DEFAULT_GOAL := help
.PHONY: help uv install browser demo test test-fast lint format bench clean notebooks

help: ## list the tasks
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

uv: ## make sure uv is installed (pip --user on a fresh machine)
	@command -v uv >/dev/null 2>&1 || test -x "$(UV)" || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv

install: uv ## create .venv from the lock file (CPU xgboost, dev tools)
	$(UV) sync --frozen --compile-bytecode

demo: install ## run the main job end to end on the embedded defaults
	$(RUN) nextbest demo

browser: ## Debian's Chromium for the browser tests (Playwright drives it; nothing is downloaded by Playwright)
	@command -v chromium >/dev/null 2>&1 || (apt-get install -y chromium >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y chromium >/dev/null)) || echo "chromium missing: the browser tests will be skipped"

test: install browser ## run the whole test suite (PostgreSQL and Redis tests need the local servers)
	$(RUN) pytest

test-fast: install ## tests without the slow end-to-end ones
	$(RUN) pytest -m "not slow"

lint: install ## ruff lint + format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: install ## apply ruff formatting and autofixes
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

bench: install ## every benchmark, full sizes (long: 1M customers, 1M-row drift report); BENCH=--quick for small
	@command -v wrk >/dev/null 2>&1 || (apt-get install -y wrk >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y wrk >/dev/null)) || echo "wrk missing: serving load levels will be skipped"
	$(RUN) python -m benchmarks.run $(BENCH)

clean: ## delete all generated state (.nextbest/)
	rm -rf .nextbest
