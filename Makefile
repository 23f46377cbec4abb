# Two commands do all the set-up on a fresh clone:
#   make demo   - run a small real pipeline twice on the embedded SQLite store
#   make test   - lint, type-check and run the whole test suite
# Both create (or reuse) .venv themselves, from the lock (requirements/dev.lock), so a fresh
# clone gets exactly the packages CI got. pyproject.toml keeps ranges for library users.
#
#   make lock         - re-resolve the locks after editing pyproject.toml or requirements/*.in
#                       (keeps existing pins; LOCK_ARGS=--upgrade takes the newest of everything)
#   make test-latest  - the whole suite in a throwaway venv with the newest releases, unlocked
#   make test-oldest  - the whole suite on the oldest releases pyproject.toml's bounds admit
#   make compat       - the published cashet's own public-API tests, run against this project

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cashet-installed
LOCK   := requirements/dev.lock
OLDEST := $(VENV)/oldest
OLDEST_STAMP := $(OLDEST)/.installed
PYTEST_ARGS ?=

.PHONY: venv browser demo test pytest pytest-oldest-deps lint bench lock test-latest test-oldest compat clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Every package comes from the lock, verified by hash; the project itself is installed
# editable without build isolation, so even its build backend is the locked one.
$(STAMP): $(LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# The web UI's browser tests (tests/test_ui_browser.py) drive Debian's headless Chromium,
# never a browser Playwright downloads: installed here when missing (as root).
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian's chromium for the browser tests"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "warning: $(CHROMIUM) is missing: the browser tests will be skipped"; fi; }

demo: venv
	$(BIN)/python examples/demo.py

lint: venv
	$(BIN)/ruff check src tests bench examples compat
	$(BIN)/mypy

pytest: venv browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The oldest runtime releases the lower bounds admit (requirements/oldest.lock), laid over
# .venv by PYTHONPATH: cheap to set up, and exactly those versions are imported (the test
# run checks it: CASHET_TEST_EXPECT_VERSIONS).
$(OLDEST_STAMP): requirements/oldest.lock | $(STAMP)
	rm -rf $(OLDEST)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps --target $(OLDEST) \
		-r requirements/oldest.lock
	touch $@

# Both ends of the supported range: the Redis stores and the store contract on the oldest
# releases (the rest of the suite ran on the locked, newest ones above).
pytest-oldest-deps: $(OLDEST_STAMP)
	PYTHONPATH=$(OLDEST) CASHET_TEST_EXPECT_VERSIONS=requirements/oldest.lock \
		$(BIN)/python -m pytest -p no:cacheprovider -m "redis or contract" $(PYTEST_ARGS)

test: lint pytest pytest-oldest-deps

test-oldest: $(OLDEST_STAMP) browser
	PYTHONPATH=$(OLDEST) CASHET_TEST_EXPECT_VERSIONS=requirements/oldest.lock \
		$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/run.py $(BENCH_ARGS)

UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 \
	--custom-compile-command "make lock" $(LOCK_ARGS)

lock: venv
	$(UV_COMPILE) pyproject.toml requirements/build.in --extra dev --extra bench -o $(LOCK)
	$(UV_COMPILE) pyproject.toml --extra all --resolution lowest-direct -o requirements/oldest.lock
	$(UV_COMPILE) requirements/cashet050.in -o requirements/cashet050.lock
	$(UV_COMPILE) pyproject.toml requirements/build.in requirements/compat.in --extra dev \
		-o requirements/compat.lock

# The published cashet's own public-API tests (from its sdist, fetched into a temp folder)
# run against this project, in a throwaway venv: compat/published_tests.py says which files
# run and which fail. COMPAT_VERSION picks the published release.
COMPAT_VERSION ?= 0.5.0
compat:
	@set -e; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	$(PYTHON) -m venv "$$dir/venv"; py="$$dir/venv/bin/python"; \
	$$py -m pip install --quiet --disable-pip-version-check --require-hashes \
		-r requirements/compat.lock; \
	$$py -m pip install --quiet --no-deps --no-build-isolation -e .; \
	$$py compat/published_tests.py --version $(COMPAT_VERSION)

# Unlocked: pip takes today's newest release of everything (build backend included), in a
# venv that is removed afterwards. A failure here is the early warning of a release that
# breaks us; the locked `make test` stays green until the lock is refreshed.
test-latest:
	@set -e; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	$(PYTHON) -m venv "$$dir/venv"; py="$$dir/venv/bin/python"; \
	$$py -m pip install --quiet --disable-pip-version-check --upgrade pip; \
	$$py -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev,bench]'; \
	$$py -c "from importlib.metadata import version as v; \
	print('test-latest:', ', '.join(p + ' ' + v(p) for p in ('redis', 'starlette', \
	'uvicorn', 'click', 'rich', 'blake3', 'zstandard', 'dill', 'pytest', 'numpy', 'pandas')))"; \
	"$$dir/venv/bin/ruff" check src tests bench examples compat; \
	"$$dir/venv/bin/mypy"; \
	$$py -m pytest -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .bench .pytest_cache .mypy_cache .ruff_cache build dist
