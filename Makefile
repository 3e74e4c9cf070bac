# Lead webhooks. `make run` starts everything locally; `make test` runs the tests.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install run test test-shifted unit integration lint format bench soak clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

run: install  ## moto's SQS, worker, Flower, a sample subscriber and a demo; Ctrl-C stops them
	$(BIN)/python -m local.run

test: install  ## every test (needs MariaDB at 127.0.0.1:3306)
	$(BIN)/pytest

# The date guard (CI runs it after `make test`): the whole suite again, the project's clock 400 days ahead
# (webhooks/clock.py). A test that writes a fixed date where another test reads fails here the day it is written.
test-shifted: install  ## every test, at a date 400 days ahead
	CLOCK_SHIFT=400d $(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info webhooks.sqlite3 local-secrets.json

bench: install  ## CPU, rates and SQS requests of a delivery next to Celery's own (needs MariaDB); last line: JSON
	$(BIN)/python -m bench.run

soak: install  ## leads x 3 subscribers, 30 % failures, the worker SIGKILLed at random: prints lost=0
	$(BIN)/python -m bench.soak
