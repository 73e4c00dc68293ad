# Entry points (see README):
#   make repro   set up the environment, fetch and verify the data, restore the trained models from the bundled DVC
#                remote (dvc pull), run the whole pipeline (dvc repro: only what is missing or stale)
#   make status  the stages whose recorded run differs from the code on main, with what changed and an estimate
#   make book    the offline HTML book (reports/book/index.html) from the committed reports, in about a minute
#   make test    set up the environment, run the tests (what .ci/run calls)
#   make smoke   every stage of dvc.yaml on tiny subsets of the real data, into .cache/smoke (reports/ untouched)
#   make paper   every stage at the paper's sizes (profiles.paper), into runs/paper (reports/ untouched; months on a CPU)
# All of them create and reuse a virtual environment in .venv (pip; torch 2.14.1 / torchvision 0.29.1).
VENV   ?= .venv
PYTHON ?= python3
# Offline mirror of the raw datasets; defaults to ../shared/datasets when it exists, else torchvision downloads.
DATA_MIRROR ?= $(or $(CAUSAL_DATA_MIRROR),$(wildcard ../shared/datasets))
# make data REPAIR=1: files whose checksum is wrong are renamed to <file>.corrupt and fetched again
REPAIR ?=

BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup data repro status push-models book test test-book smoke paper notebooks readme

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

setup: $(BIN)/.installed

data: setup
	$(BIN)/python -m causal_interp.data fetch --root data $(if $(DATA_MIRROR),--mirror $(DATA_MIRROR)) $(if $(REPAIR),--repair) \
	  || { echo "make data: the data could not be fetched$(if $(DATA_MIRROR),, (no mirror at ../shared/datasets and torchvision could not download)):" \
	       "give an offline mirror with DATA_MIRROR=DIR (or CAUSAL_DATA_MIRROR), or run with internet access;" \
	       "make data REPAIR=1 fetches files whose checksum is wrong again" >&2; exit 1; }

repro: data
	$(BIN)/python -m causal_interp.pipeline --check
	$(BIN)/dvc pull --allow-missing
	$(BIN)/dvc repro

# which stages are stale (their recorded dependencies differ from the files on main), since when, and their cost
status: setup
	$(BIN)/python -m causal_interp.staleness

# after a stage trained a model: copy it into the bundled remote (dvc-store/, committed with git)
push-models: setup
	$(BIN)/dvc push
	git add dvc-store

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not browser"

# the HTML book in headless Chromium (Debian's package; installed here when missing and run as root), and the
# documentation pages of docs/: in the book, every internal link resolving, every runnable code block run (smoke)
test-book: setup
	command -v chromium >/dev/null || { test "$$(id -u)" = 0 && apt-get install -y -q chromium; } || \
	  { echo "make test-book needs chromium: sudo apt-get install chromium"; exit 1; }
	$(BIN)/python -m pytest -q tests/test_book.py

smoke: data
	$(BIN)/python -m causal_interp.pipeline --all --profile smoke --root .cache/smoke

paper: data
	$(BIN)/python -m causal_interp.pipeline --all --profile paper --root runs/paper

# the offline HTML book (reports/book/, not in git) from the committed notebooks, with the stale stages marked
book: setup
	$(BIN)/python -m causal_interp.book

# the README's results block, from the committed reports' summary rows
readme: setup
	$(BIN)/python -m causal_interp.book --readme README.md

# notebooks/*.py (jupytext percent format) are the sources; the paired .ipynb are what papermill executes
notebooks: setup
	$(BIN)/jupytext --sync notebooks/*.py
