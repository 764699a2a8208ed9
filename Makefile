# Two commands for a fresh machine:  `make run`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO ?= demo_tasks/customer-churn

.PHONY: setup run test lint bench bench-quality bench-automl bench-mlebench clean browser

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed
	bash scripts/setup_sandbox.sh

# Sets up the environment and runs MLE-STAR on the bundled demo task with the offline brain.
run: setup
	$(PY) -m streamlit run app.py --server.port $${PORT:-8501} -- --demo customer-churn

# Sets up the environment and runs the whole test suite (what .ci/run calls).
test: setup browser
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n 2 --dist loadfile

# Debian's chromium for the real-browser test (idempotent, quiet).
browser:
	bash scripts/setup_browser.sh

bench: setup
	$(PY) bench/bench_executor.py
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_pages.py
	$(PY) bench/bench_brain.py
	$(PY) bench/bench_sandbox.py
	$(PY) bench/bench_dask.py
	$(PY) bench/bench_soak.py --minutes 3

# Held-out quality on the demo tasks vs default XGBoost (about 10 minutes).
bench-quality: setup
	$(PY) bench/bench_quality.py --budget 150

# Agent vs default XGBoost, random forest, FLAML and AutoGluon on 10 public tables, 120 s per task and
# contender (about 70 minutes; FLAML and AutoGluon live in bench/.venv-automl). Results: bench/results/.
bench-automl: setup
	bash bench/setup_automl.sh && $(PY) bench/bench_automl.py --budget 120

# Real tables as prepared MLE-bench competitions, run and graded, beside default models (about 7 minutes).
bench-mlebench: setup
	bash bench/setup_automl.sh && $(PY) bench/bench_mlebench.py --budget 120 \
		--tasks oj-purchase,penguins-species,auto-mpg

clean:
	rm -rf $(VENV) runs out .pytest_cache .ruff_cache
