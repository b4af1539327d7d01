# Gears: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test lint bench bench-deps clean system-deps venv

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Gears needs Python 3.11 or newer (found %s)" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the packaging metadata changes.
$(VENV)/.installed-run: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,dev]'
	@touch $@ $(VENV)/.installed-run

venv: $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/marketplace init
	$(BIN)/marketplace seed-demo
	$(BIN)/marketplace serve --host $(HOST) --port $(PORT)

system-deps:
	@bash scripts/install-system-deps.sh

test: $(VENV)/.installed-test system-deps
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check gears_sdk marketplace tests example_gears bench
	$(BIN)/mypy

# Benchmark-only tools (wrk, Node.js for verdaccio); the test suite never needs them.
bench-deps:
	@bash scripts/install-bench-deps.sh

# The peers are installed by the benchmark itself into bench/.peers-venv and
# bench/.peers-node, never into $(VENV). BENCH_ARGS: --quick, --only SECTION.
bench: $(VENV)/.installed-test bench-deps
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache test-output
