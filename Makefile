# rewardfit: `make demo` sets up .venv and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo demo-pretrain test clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# Pin torch first: an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e '.[dev]' torch==$(TORCH_VERSION)
	# MOSES data ship in the molsets wheel; its own dependencies are obsolete, so --no-deps.
	$(PY) -m pip install --quiet --no-deps molsets==0.3.1
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) main.py fit --config configs/demo/era_logp_cpu.yaml

demo-pretrain: setup
	$(PY) main.py fit --config configs/demo/pretrain_moses_cpu.yaml

test: setup
	$(PY) -m pytest -q -n 2 --durations=15 tests

clean:
	rm -rf $(VENV) runs
