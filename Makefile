# Two entry points for a fresh machine (see README):
#   make demo   installs everything into .venv and runs the main job
#   make test   installs everything into .venv and runs the whole test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: demo test setup bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/ddsp-synth demo -o demo.wav --force

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/bench_core.py

clean:
	rm -rf $(VENV) build *.egg-info
