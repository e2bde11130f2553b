# Two commands do all the setup: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/evse-agent demo

lint: $(STAMP)
	$(BIN)/ruff check agent hal firmware_update hil tests
	$(BIN)/ruff format --check agent hal firmware_update hil tests

typecheck: $(STAMP)
	$(BIN)/mypy agent hal firmware_update

unit: $(STAMP)
	GPIOZERO_PIN_FACTORY=mock $(BIN)/python -m pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m hil.bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
