# Two commands on a fresh machine:
#   make demo   create the environment if missing, run SISO end to end on the offline default
#   make test   create the environment if missing, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.siso-installed

.PHONY: demo test env bench clean-outputs

env: $(STAMP)

# CI and the demo install the exact tested set (constraints.txt: torch 2.14.1 + torchvision 0.29.1
# and the rest); your own installs only need pyproject.toml's ranges.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[notebooks,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/siso-demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_step.py

clean-outputs:
	rm -rf outputs/runs outputs/test-assets
