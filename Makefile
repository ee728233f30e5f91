# `make demo` and `make test` set everything up on a fresh machine: a .venv, the package
# and its test tools (torch pinned to its CPU build through constraints.txt), then run; `make test`
# adds the alfworld and deepspeed extras, whose tests it runs too.
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

# the optional extras, so that their tests run, never skip: alfworld (its text engine, TextWorld)
# and deepspeed (ZeRO-2; DS_BUILD_OPS=0: its CPU kernels compile on first use, once per machine)
$(ALFWORLD): $(STAMP)
	@DS_BUILD_OPS=0 $(BIN)/pip install --quiet -c constraints.txt -e '.[dev,alfworld,deepspeed]' > $(VENV)/extras-install.log 2>&1 || \
	  { echo "make test: the alfworld and deepspeed extras did not install here, so their tests cannot run (see $(VENV)/extras-install.log)"; exit 1; }
	touch $@

test: $(ALFWORLD)
	VLMRL_REQUIRE_ALFWORLD=1 VLMRL_REQUIRE_DEEPSPEED=1 $(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/vlmrl bench learn --env numberline --out $(DEMO_DIR) --overwrite

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
