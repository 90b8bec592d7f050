# The two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := constraints/test.txt
STAMP := $(VENV)/.installed

.PHONY: demo test lint type docs gen build doctor bench clean lock

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml $(CONSTRAINTS)
	$(PIP) install --quiet -c $(CONSTRAINTS) torch==2.13.0
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".[dev,otlp,prometheus,plot]"
	touch $(STAMP)

## Run the main job: a tiny BERT trained offline under opentelemetry-instrument.
demo: $(STAMP)
	bash examples/run_demo.sh $(VENV)

## Install what the tests need and run them, with coverage.
test: $(STAMP)
	$(PY) -m pytest --cov=hf_eco2ai --cov-report=term --cov-fail-under=90 $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests tools examples benchmarks
	$(VENV)/bin/ruff format --check src tests tools examples benchmarks

type: $(STAMP)
	$(VENV)/bin/mypy --strict src

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

## Regenerate what is generated from the code: the tables in docs/configuration.md and
## docs/metrics.md, and src/hf_eco2ai/environment_variables.py (the tests check they are current).
gen: $(STAMP)
	$(PY) tools/docgen.py

build: $(STAMP)
	rm -rf dist
	$(PY) -m build --outdir dist
	$(PY) tools/check_wheel.py dist

doctor: $(STAMP)
	$(VENV)/bin/hf-eco2ai doctor

## Every benchmark at its quick size (a few minutes); docs/benchmarks.md has the full-size
## commands and numbers. The peers' venv (eco2ai, CodeCarbon) is built on first use; without
## it, benchmarks/overhead.py runs without the peers.
bench: $(STAMP)
	-bash benchmarks/setup_peers.sh
	$(PY) benchmarks/core.py
	$(PY) benchmarks/sampler.py --quick
	$(PY) benchmarks/idle_cost.py --quick
	$(PY) benchmarks/scale.py --quick
	$(PY) benchmarks/memory.py --quick
	$(PY) -m pytest tests/performance -q --benchmark-only --benchmark-sort=name \
		--benchmark-columns=min,median,iqr,mean,rounds
	$(PY) benchmarks/overhead.py --quick

## Refresh the lock of tested versions (constraints/test.txt) on purpose; see docs/contributing.md.
lock:
	bash tools/lock_constraints.sh

clean:
	rm -rf $(VENV) dist site .pytest_cache .coverage htmlcov
