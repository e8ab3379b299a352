# Two commands matter: `make run` and `make test`. Both set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test demo lint typecheck pytest install migrate load-policies clean bench contract

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/lethe db upgrade

load-policies: migrate
	$(BIN)/lethe policies load

## make run: install, migrate the embedded SQLite database, load DPR-EC-01488, serve on :8000
run: load-policies
	$(BIN)/lethe serve

## make demo: load a realistic DPR-EC-01488 data set (1,000 candidates by default)
CANDIDATES ?= 1000
demo: load-policies
	$(BIN)/lethe demo --candidates $(CANDIDATES)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy .

## make test: ruff, mypy --strict, pytest on SQLite (and PostgreSQL when LETHE_TEST_DATABASE_URL is set)
test: lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

## make contract: schemathesis over the served OpenAPI as every role (run by .ci/run)
contract: install
	BIN=$(BIN) bash tests/contract/run_schemathesis.sh

bench: install
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/purge.py
	$(BIN)/python bench/dsr.py
	$(BIN)/python bench/connectors.py 100000 --source postgresql
	$(BIN)/python bench/connectors.py 100000 --source mariadb

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
