# MedAI Lab — the two commands:
#   make up     set up everything and start the embedded hub with the demo course
#   make test   set up everything and run the whole test suite
# Override PYTHON to pick another interpreter (3.11), VENV for another environment folder.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.medai-installed

.PHONY: setup up test site lint format bench clean

setup: $(STAMP) node_modules/.bin/configurable-http-proxy

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m pip install -q --no-deps sacroml==2.0.1
	touch $@

node_modules/.bin/configurable-http-proxy: package.json
	@command -v npm >/dev/null || { echo "error: npm not found; install Node.js (Debian: apt-get install nodejs npm)"; exit 1; }
	npm install --no-audit --no-fund --loglevel=error
	touch $@

up: setup
	$(BIN)/medai up --demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

site: setup
	$(BIN)/medai site build

lint:
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format:
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: setup
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .medai build artifacts
