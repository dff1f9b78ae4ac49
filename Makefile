# One command to install and run the demo, one to install and run the tests.
PYTHON ?= python3
VENV ?= .venv
# torch is pinned to the build known to work here; override on your machine, e.g.
#   make demo TORCH_SPEC="torch torchvision"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# Without a GPU (no nvidia-smi) torch comes from PyTorch's CPU wheel index: the same versions without the CUDA
# libraries and triton. When that index cannot be reached (or the install from it fails) pip's own indexes are
# used, as with a GPU. TORCH_INDEX= (empty) always uses pip's; HAS_GPU=yes (or HAS_GPU=) overrides the detection.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
HAS_GPU ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo yes)
BIN := $(VENV)/bin
# The tests run on the pinned build from pip's own indexes (the build their figures were checked on), never the
# CPU index's: a target-specific value, so the install they trigger uses it too.
test test-slow lint: TORCH_INDEX =
# The fast suite runs in parallel (pytest-xdist), one worker per core (auto) of one torch thread each unless
# OMP_NUM_THREADS says otherwise: 1.5x faster on 2 cores than one process of 2 threads. TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto

.PHONY: install demo test test-slow lint bench clean browser-deps

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if [ -z "$(HAS_GPU)" ] && [ -n "$(TORCH_INDEX)" ] \
	  && $(PYTHON) -c "import urllib.request as u; u.urlopen('$(TORCH_INDEX)/torch/', timeout=10)" 2>/dev/null; then \
	  echo "no GPU: $(TORCH_SPEC) from $(TORCH_INDEX) (CPU build, no CUDA libraries)"; \
	  $(BIN)/pip install -q --index-url $(TORCH_INDEX) $(TORCH_SPEC) \
	    || { echo "falling back to pip's own index"; $(BIN)/pip install -q $(TORCH_SPEC); }; \
	else echo "$(BIN)/pip install -q $(TORCH_SPEC)"; $(BIN)/pip install -q $(TORCH_SPEC); fi
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: install
	$(BIN)/classwise demo

test: install
	@# On CI (CI=true, root) bring Chromium for the report's browser test; elsewhere it skips without it.
	@if [ -n "$$CI" ] && ! command -v chromium >/dev/null; then $(MAKE) -s browser-deps >/dev/null 2>&1 \
	  || echo "chromium could not be installed: the browser test will skip"; fi
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -q -n $(TEST_WORKERS)

test-slow: install
	$(BIN)/python -m pytest -q -m slow

# The checks tests/test_lint.py runs, alone: ruff (lint) and mypy (types), configured in pyproject.toml.
lint: install
	$(BIN)/python -m ruff check src tests experiments benchmarks
	$(BIN)/python -m mypy src

# Optional: Chromium for tests/test_report_browser.py (it skips without /usr/bin/chromium). Debian/Ubuntu, root.
browser-deps:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
