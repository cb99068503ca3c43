# tandem: `make run` runs the pipeline on embedded defaults, `make test` runs the test suite.
# Both create .venv (Python 3.10, the pinned stack in requirements.lock) when it is missing.

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tandem-installed
ROWS ?= 20000
DATA ?= data/listening
CONFIG ?= pipeline/configs/listening.yaml
PYTEST_ARGS ?=

export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: run pipeline test test-fast lint bench docs env clean system-packages

# Find a Python 3.10: on PATH, else under pyenv.
PYTHON310 := $(shell \
	for c in python3.10 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python3.10 2>/dev/null); do \
		if $$c -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then echo $$c; break; fi; \
	done)

env: $(STAMP)

$(STAMP): requirements.lock requirements-test.txt setup.py
	@if [ -z "$(PYTHON310)" ]; then \
		echo "tandem needs Python 3.10 (TFX 1.16 supports nothing newer). Install it, e.g. 'pyenv install 3.10', and retry." >&2; \
		exit 1; \
	fi
	@if [ ! -x $(BIN)/python ]; then \
		echo "creating $(VENV) with $(PYTHON310)"; \
		$(PYTHON310) -m venv $(VENV); \
	fi
	@echo "installing the pinned stack (requirements.lock) into $(VENV); the first time takes a few minutes"
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock -r requirements-test.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	@touch $(STAMP)

# Debian packages the tests use for real servers and tools: redis-server (the gateway's
# production feature source), promtool from prometheus (alert rules), chromium (reports).
# Installed with apt-get when running as root; otherwise one line with the exact command.
SYSTEM_PACKAGES := redis-server:redis-server prometheus:promtool chromium:chromium

system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
		pkg=$${pair%%:*}; tool=$${pair##*:}; \
		command -v $$tool >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing Debian packages the tests need:$$missing"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
		else \
			echo "the tests need Debian packages:$$missing; install them with: sudo apt-get install -y$$missing" >&2; \
			exit 1; \
		fi; \
	fi

# The whole loop on embedded defaults (pipeline/loop.py); the pipeline alone is
# `make pipeline` (tandem run --config listening).
run: $(STAMP)
	$(BIN)/tandem loop

pipeline: $(STAMP)
	@if [ ! -d $(DATA)/span-1 ]; then \
		$(BIN)/tandem data generate --rows $(ROWS) --out $(DATA); \
	fi
	$(BIN)/tandem run --config $(CONFIG)

# Two workers: the end-to-end runs are mostly single-threaded, and tests that share one
# session run carry the same xdist_group so that only one worker makes it. tests/conftest.py
# sends the longest work units out first.
TEST_WORKERS ?= 2

test: $(STAMP) system-packages
	$(BIN)/python -m pytest tests -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The edit-test loop: every test but those marked `pipeline` (TFX pipeline runs) or `slow`
# (Beam jobs, processes, training: over 4 s each). `make test` runs them all.
test-fast: $(STAMP) system-packages
	$(BIN)/python -m pytest tests -m "not pipeline and not slow" -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check tandem pipeline components schemas serving reports notebooks tests bench

bench: $(STAMP)
	$(BIN)/python bench/pipeline_scale.py

# The docs site (mkdocs.yml, docs/) into site/: strict, so a broken link or a page left out of
# the nav fails the build. Open site/index.html, or serve it with `$(BIN)/python -m mkdocs serve`.
docs: $(STAMP)
	$(BIN)/python -m tandem.pipeline.docs_reference --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

clean:
	rm -rf outputs data site
