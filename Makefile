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

# Headless Chromium for the preview screenshot test: installed with apt where missing
# and possible (root on Debian/Ubuntu); otherwise that one test skips and says why,
# except in CI (CI=true), where a missing Chromium fails the run.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  { [ "$$CI" = true ] && echo "chromium could not be installed and CI=true: the preview test must run" && exit 1; } || \
	  echo "chromium not installed; the preview screenshot test will skip"

test: setup chromium
	HF_HUB_OFFLINE=1 $(BIN)/pytest -x  # -q comes from pyproject.toml; twice would hide the summary line

.PHONY: setup chromium demo test
