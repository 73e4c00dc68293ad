# Two entry points (see README):
#   make repro   set up the environment, fetch the data, run the whole pipeline (dvc repro)
#   make test    set up the environment, run the tests
# Both create and reuse a virtual environment in .venv (pip; torch 2.14.1 / torchvision 0.29.1).
VENV   ?= .venv
PYTHON ?= python3
# Offline mirror of the raw datasets; defaults to ../shared/datasets when it exists, else torchvision downloads.
DATA_MIRROR ?= $(or $(CAUSAL_DATA_MIRROR),$(wildcard ../shared/datasets))

BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup data repro test smoke

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

setup: $(BIN)/.installed

data: setup
	$(BIN)/python -m causal_interp.data fetch --root data $(if $(DATA_MIRROR),--mirror $(DATA_MIRROR))

repro: data
	$(BIN)/dvc repro

test: setup
	$(BIN)/python -m pytest -q

# every stage on tiny subsets of the real data, into /tmp (does not touch reports/ or dvc.lock)
smoke: data
	for s in $$($(BIN)/python -c "import yaml; print(' '.join(yaml.safe_load(open('dvc.yaml'))['stages']))"); do \
	  nb=$$($(BIN)/python -c "import yaml,sys; print(yaml.safe_load(open('dvc.yaml'))['stages']['$$s']['cmd'].split()[4])"); \
	  $(BIN)/python -m causal_interp.pipeline $$s $$nb --profile smoke --reports /tmp/causal-smoke/reports \
	    --models /tmp/causal-smoke/models --checkpoints /tmp/causal-smoke/ckpt --quiet || exit 1; \
	done
