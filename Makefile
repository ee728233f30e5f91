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
	$(BIN)/vlmrl eval --env all --agent expert,random --episodes 300 --seed 1000
	$(BIN)/vlmrl play --env points24 --agent expert --seed 12 --out $(DEMO_DIR)/points24-expert.gif
	$(BIN)/vlmrl play --env blackjack --agent expert --seed 11 --out $(DEMO_DIR)/blackjack-expert.gif
	$(BIN)/vlmrl train --env numberline total_steps=256 eval_every=2 out=$(DEMO_DIR)/numberline-ppo

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
