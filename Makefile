# `make demo` and `make test` set everything up on a fresh machine: a .venv, the package
# and its test tools (torch pinned to its CPU build through constraints.txt), then run; `make test`
# adds the alfworld extra, whose tests it runs too.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ALFWORLD := $(VENV)/.alfworld-installed
DEMO_DIR ?= runs/demo

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# the alfworld extra (alfworld's text engine, TextWorld) so that ALFWorld's tests run, never skip
$(ALFWORLD): $(STAMP)
	@$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,alfworld]' > $(VENV)/alfworld-install.log 2>&1 || \
	  { echo "make test: the alfworld extra did not install here, so ALFWorld's tests cannot run (see $(VENV)/alfworld-install.log)"; exit 1; }
	touch $@

test: $(ALFWORLD)
	VLMRL_REQUIRE_ALFWORLD=1 $(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/vlmrl bench learn --env numberline --out $(DEMO_DIR) --overwrite

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
