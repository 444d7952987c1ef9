# Two commands on a fresh machine (Python 3.11+ and Node 20):
#   make test   lint, type-check and run the whole suite on a real PostgreSQL
#               and the local Convex backend
#   make demo   a whole Convex -> PostgreSQL replication on embedded defaults
#   make bench  print the benchmark ratios
# Tests use MIGRATIONKIT_TEST_DATABASE_URL if set, else a Docker container if
# an engine answers, else an embedded PostgreSQL (no server needed).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := convex/node_modules/.installed
PYTEST_ARGS ?=

.PHONY: test demo lint typecheck node-test pytest bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "migrationkit needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The local Convex backend (Node 20), from the committed lockfile.
$(NODE_STAMP): convex/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node 20"; exit 1; }
	cd convex && npm ci --no-audit --no-fund
	@touch $(NODE_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests migrations benchmarks
	$(BIN)/ruff format --check src tests migrations benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy src

node-test: $(NODE_STAMP)
	cd convex && npm run -s typecheck && npm test

pytest: $(STAMP) $(NODE_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck node-test pytest

demo: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m migrationkit.demo

bench: $(STAMP) $(NODE_STAMP)
	cd benchmarks && ../$(BIN)/python repo_overhead.py
	cd benchmarks && ../$(BIN)/python convex_call_rate.py
	cd benchmarks && ../$(BIN)/python apply_throughput.py
	cd benchmarks && ../$(BIN)/python e2e_lag.py
	cd benchmarks && ../$(BIN)/python zip_import.py --docs 100000
	cd benchmarks && ../$(BIN)/python backfill.py --docs 100000
	cd benchmarks && ../$(BIN)/python verify.py --docs 100000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis convex/node_modules
