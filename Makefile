# Fresh-machine entry points; see README.md.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

# Real readers the tests check analysts' files with: QGIS (headless) and Chromium.
SYSTEM_PACKAGES := python3-qgis qgis-providers gdal-bin chromium chromium-driver

.PHONY: setup system-deps demo test lint clean

$(BIN)/minewatch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/minewatch

demo: setup
	$(BIN)/minewatch demo

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

clean:
	rm -rf $(VENV) minewatch-demo .pytest_cache .mypy_cache .ruff_cache
