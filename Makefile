# One command to install and run the demo, one to install and run the tests.
PYTHON ?= python3
VENV ?= .venv
# torch is pinned to the build known to work here; override on your machine, e.g.
#   make demo TORCH_SPEC="torch torchvision"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin

.PHONY: install demo test test-slow lint bench clean browser-deps

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: install
	$(BIN)/classwise demo

test: install
	@# On CI (CI=true, root) bring Chromium for the report's browser test; elsewhere it skips without it.
	@if [ -n "$$CI" ] && ! command -v chromium >/dev/null; then $(MAKE) -s browser-deps >/dev/null 2>&1 \
	  || echo "chromium could not be installed: the browser test will skip"; fi
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

# The checks tests/test_lint.py runs, alone: ruff (lint) and mypy (types), configured in pyproject.toml.
lint: install
	$(BIN)/python -m ruff check src tests
	$(BIN)/python -m mypy src

# Optional: Chromium for tests/test_report_browser.py (it skips without /usr/bin/chromium). Debian/Ubuntu, root.
browser-deps:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
