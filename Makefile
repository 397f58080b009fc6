# Three commands on a fresh machine:
#   make demo        create the environment if missing, run SISO end to end on the offline default
#                    (the 01_generate_lora notebook, headless, with papermill)
#   make test        create the environment if missing, run the whole test suite
#   make test-fast   the same without the slow tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.siso-installed

.PHONY: demo test test-fast env bench clean-outputs

env: $(STAMP)

# CI and the demo install the exact tested set (constraints.txt: torch 2.14.1 + torchvision 0.29.1
# and the rest); your own installs only need pyproject.toml's ranges.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[notebooks,dev,cluster]"
	touch $(STAMP)

# the notebook-driven workflow: notebooks/01_generate_lora.ipynb executed headless by papermill on
# the offline default (tiny random-weight models, data/cat.png); the executed notebook lands
# beside the LoRA, images and run.json in a fresh outputs/runs/<time>-demo/ folder
demo: $(STAMP)
	$(PY) -m siso_lib.cli.demo --notebook

test: $(STAMP)
	$(PY) -m pytest -q

# the quick loop: everything but the tests that start kernels, clusters, browsers, venvs or
# subprocesses, on every core (pytest-xdist; one torch thread per worker)
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "not slow" -n auto

bench: $(STAMP)
	$(PY) benchmarks/bench_step.py

clean-outputs:
	rm -rf outputs/runs outputs/test-assets
