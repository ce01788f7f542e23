# Two entry points for a fresh machine (see README):
#   make demo   installs everything into .venv and runs the main job
#   make test   installs everything into .venv and runs the whole test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: demo test setup system browser bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	# torchlpc has no wheel: build its C++ extension against the pinned torch (no isolation)
	$(PY) -m pip install --quiet torch==2.13.0 numpy==2.4.6 numba==0.68.1
	$(PY) -m pip install --quiet --no-build-isolation torchlpc==0.7.2
	$(PY) -m pip install --quiet -e '.[dev,effects]'
	touch $@

setup: $(VENV)/.installed

# The web demo with the shipped instruments, on http://127.0.0.1:7860 (make demo PORT=7861)
demo: setup
	$(PY) app.py $(if $(PORT),--port $(PORT),)

# System programs some tests use: Debian's Chromium (the browser test), sox (the command-line
# device test), lv2file and the Calf plugins (an LV2 plugin as a device), jackd2 and
# libportaudio2 (the live tests: a JACK server with its dummy backend stands in for a sound
# card). Needs root, as on CI; without them those tests skip and say why.
SYSTEM_PACKAGES = chromium sox lv2file calf-plugins jackd2 libportaudio2
system:
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		$(SYSTEM_PACKAGES) >/dev/null) || \
		echo "warning: could not install $(SYSTEM_PACKAGES); the tests that need them will be skipped"; }

browser: system

test: setup system
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
