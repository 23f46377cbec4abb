# Two commands do all the set-up on a fresh clone:
#   make demo   - run a small real pipeline twice on the embedded SQLite store
#   make test   - lint, type-check and run the whole test suite
# Both create (or reuse) .venv themselves.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cashet-installed

.PHONY: venv demo test pytest lint bench bench-peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/python examples/demo.py

lint: venv
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy

pytest: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint pytest

# joblib and diskcache (the `bench` extra) go into .venv for `make bench` only; cashet 0.5.0
# gets its own venv under .bench/, which bench/run.py creates on first use.
BENCH_STAMP := $(VENV)/.cashet-bench-installed

$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]' && touch $@ \
		|| echo "bench: could not install the bench extra; its peers will show as n/a" >&2

bench-peers: $(BENCH_STAMP)

bench: venv bench-peers
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .bench .pytest_cache .mypy_cache .ruff_cache build dist
