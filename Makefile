# Every target that needs Python creates .venv first, so each works as the
# first command on a fresh machine that has only python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
MANIFEST ?= agents.example.yaml

.PHONY: up test lint bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

up: $(VENV)/.installed
	$(BIN)/dropsited up -c $(MANIFEST) --demo

test: $(VENV)/.installed-test
	$(BIN)/pytest -q -m "not soak"

soak: $(VENV)/.installed-test
	$(BIN)/pytest -q -m soak

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

bench: $(VENV)/.installed-test
	$(BIN)/python bench/drain.py

clean:
	rm -rf $(VENV) .pytest_cache demo-workspace
