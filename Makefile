# The two commands of the README. `make demo` runs the main job, `make test` the tests;
# both set up .venv first (CPU torch pinned, never torchvision).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/polyground: pyproject.toml constraints-cpu.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints-cpu.txt -e '.[dev]'
	@touch $@

setup: $(BIN)/polyground

demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/polyground demo

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/pytest -x -q

.PHONY: setup demo test
