# Fresh-machine entry points; see README.md.
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# The CPU-only install the tests also run in (the demo and the scan tests, marked cpu_install).
CPU_VENV ?= .venv-cpu
CPU_BIN  := $(CPU_VENV)/bin
# Test files whose imports need no torch (the other files import it, or the test extras).
CPU_TESTS := tests/cli/test_demo.py tests/cli/test_cpu_install.py tests/models/test_onnx_checkpoint.py

# Real readers the tests check analysts' files with: QGIS (headless) and Chromium.
SYSTEM_PACKAGES := python3-qgis qgis-providers gdal-bin chromium chromium-driver

.PHONY: setup system-deps demo test test-cpu lint clean

# `pip install minewatch`: the CPU install (the shipped ONNX networks on ONNX Runtime, no torch).
$(BIN)/minewatch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# What the tests need on top: the torch extra (training, the GPU, .pt checkpoints), the linters.
$(VENV)/.test-extras: $(BIN)/minewatch
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.test-extras

demo: $(BIN)/minewatch
	$(BIN)/minewatch demo

$(CPU_BIN)/minewatch: pyproject.toml
	$(PYTHON) -m venv $(CPU_VENV)
	$(CPU_BIN)/python -m pip install --quiet --upgrade pip
	$(CPU_BIN)/python -m pip install --quiet -e . 'pytest>=8.0'
	touch $@

# The demo and the scan tests again in an install without torch (proves `pip install minewatch`).
test-cpu: $(CPU_BIN)/minewatch
	@if $(CPU_BIN)/python -c "import torch" 2>/dev/null; then \
	    echo "$(CPU_VENV) has torch; it must not"; exit 1; fi
	HF_HUB_OFFLINE=1 $(CPU_BIN)/python -m pytest -m cpu_install -p no:cacheprovider $(CPU_TESTS)

system-deps:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && \
	    /usr/bin/python3 -c "import qgis.core" 2>/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	else \
	    echo "note: no root to install $(SYSTEM_PACKAGES); the QGIS and browser tests will skip"; \
	fi

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: system-deps lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest
	$(MAKE) test-cpu

clean:
	rm -rf $(VENV) $(CPU_VENV) minewatch-demo .pytest_cache .mypy_cache .ruff_cache
