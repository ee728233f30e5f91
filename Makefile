# `make demo` and `make test` set everything up on a fresh machine: a .venv, the package
# and its test tools (torch pinned to its CPU build through constraints.txt), then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/vlmrl bench learn --env numberline --out $(DEMO_DIR) --overwrite

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
