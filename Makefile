# The README's two commands: `make demo` and `make test`. Each creates .venv if missing and
# installs what it needs; torch is pinned first so no other requirement can pull a CUDA build.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo readme test test-slow lint bench figures reference setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]" "$(TORCH)"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .

demo: $(STAMP)
	$(VENV)/bin/scaling-demo

# The README's demo section from the last `make demo` (results/demo): copies fit.json, runs.csv
# and the figures into docs/ and rewrites the block between <!-- demo:begin --> and
# <!-- demo:end --> (tests/test_demo.py checks it against docs/demo/). Trains nothing.
readme: $(STAMP)
	$(VENV)/bin/scaling-demo --readme-only

bench: $(STAMP)
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_fit.py
	$(PY) benchmarks/bench_mup.py

figures: $(STAMP)
	$(VENV)/bin/scaling-plot results/demo

# The field's own data (data/reference/): fit and figures of the Chinchilla points (Besiroglu
# et al. 2024's replication) and the OLMo ladder (3B predicted from 190M-1B). The fit settings
# are the named configs conf/fit/chinchilla_reference.yaml and conf/fit/olmo_reference.yaml.
REFDATA ?= data/reference
reference: $(STAMP)
	$(VENV)/bin/scaling-fit $(REFDATA)/chinchilla_epoch_svg_extracted.csv \
	    --config chinchilla_reference --out results/reference/chinchilla
	$(VENV)/bin/scaling-plot results/reference/chinchilla
	$(VENV)/bin/scaling-fit $(REFDATA)/olmo_ladder/ladder_final_c4_summary.csv \
	    --config olmo_reference --curves '$(REFDATA)/olmo_ladder/*xC.csv' \
	    --out results/reference/olmo
	$(VENV)/bin/scaling-plot results/reference/olmo
