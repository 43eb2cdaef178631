# The README's two commands: `make run` and `make test`. Both need only python3 and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run lint test bench mutation clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[video]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

run: $(VENV)/.installed-run
	$(BIN)/normlab run

# Lint first (seconds), so a style or type error fails before the minutes of tests. The rules and
# the checked paths are in pyproject.toml ([tool.ruff], [tool.mypy]).
lint: $(VENV)/.installed-test
	$(BIN)/ruff check
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

$(VENV)/.installed-mutation: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[mutation]"
	touch $@

# Mutation testing of the core modules (slow: tens of minutes per module on 2 cores).
# `make mutation MODULES="norms store"` runs a subset; see the README's "Mutation score".
mutation: $(VENV)/.installed-mutation
	nice -n 10 $(BIN)/python tools/mutation.py $(MODULES)

bench: $(VENV)/.installed-test
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) runs build/mutation
