# passthru: `make run` serves it, `make test` tests it. Only Python 3.11+ and make needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: run test lint unit postgres fuzz sdk-js bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "passthru needs Python 3.11 or newer (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet -e ./sdk
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/passthru dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The tests outside tests/e2e on every core (pytest-xdist; a test file stays on one process),
# then the end-to-end ones two files at a time: they start processes of their own and spend
# most of their time waiting on them, and each picks its own ports, Redis and database.
E2E_PROCESSES ?= 2
unit: $(STAMP)
	$(BIN)/pytest -n auto --dist loadfile -m "not e2e"
	$(BIN)/pytest -n $(E2E_PROCESSES) --dist loadfile -m e2e

# The database tests again, on Postgres. Skipped with a notice where none answers,
# except in CI, where a missing Postgres is a failure.
postgres: $(STAMP)
	@if $(BIN)/python -c "import psycopg; psycopg.connect('$(PG_TEST_URL)', connect_timeout=3).close()" 2>/dev/null; then \
		TEST_DATABASE_URL='$(PG_TEST_URL)' $(BIN)/pytest -n auto --dist loadfile -m "db and not e2e" && \
		TEST_DATABASE_URL='$(PG_TEST_URL)' $(BIN)/pytest -n $(E2E_PROCESSES) --dist loadfile -m "db and e2e"; \
	elif [ -n "$$CI" ]; then \
		echo "Postgres at $(PG_TEST_URL) does not answer (set PG_TEST_URL)"; exit 1; \
	else \
		echo "skipping the Postgres run: nothing answers at $(PG_TEST_URL) (set PG_TEST_URL)"; \
	fi

# schemathesis over the real API (its own Redis and SQLite, no worker: nothing leaves the
# machine), then explicit and hostile requests; fails on any 5xx, dropped connection, timeout
# or answer outside the error shape. Options: make fuzz FUZZ_ARGS="--max-examples 500 --seed 7"
fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz $(FUZZ_ARGS)

# The JavaScript SDK's own unit tests (node's test runner). Skipped with a notice where Node
# is missing, except in CI, where that is a failure (.ci/run installs it).
sdk-js:
	@if command -v npm >/dev/null 2>&1; then \
		cd sdk-js && npm ci --no-audit --no-fund && npm run build && npm test; \
	elif [ -n "$$CI" ]; then \
		echo "npm is missing: install Node.js 18+ and npm to test sdk-js"; exit 1; \
	else \
		echo "skipping sdk-js's unit tests: npm is missing (install Node.js 18+ and npm)"; \
	fi

test: lint sdk-js unit postgres fuzz

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
