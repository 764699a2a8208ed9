# Two commands for a fresh machine:  `make run`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO ?= demo_tasks/customer-churn

.PHONY: setup run test lint bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

# Sets up the environment and runs MLE-STAR on the bundled demo task with the offline brain.
run: setup
	$(PY) -m mlestar_core run --task $(DEMO) --out out/demo --time-budget 300

# Sets up the environment and runs the whole test suite (what .ci/run calls).
test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/bench_executor.py
	$(PY) bench/bench_pipeline.py

clean:
	rm -rf $(VENV) runs out .pytest_cache .ruff_cache
