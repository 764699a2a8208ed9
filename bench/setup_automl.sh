#!/usr/bin/env bash
# Creates bench/.venv-automl: FLAML, AutoGluon (tabular, no torch) and the data packages the AutoML
# benchmark builds its tasks from. Idempotent: does nothing when the requirement files are unchanged.
#   bash bench/setup_automl.sh            (PYTHON=python3.11 by default)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3.11}"
VENV="$HERE/.venv-automl"
REQS=("$HERE/requirements-automl.txt" "$HERE/requirements-automl-nodeps.txt")
STAMP="$VENV/.installed"

want="$(cat "${REQS[@]}" | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    echo "bench/.venv-automl is up to date"
    exit 0
fi
started=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r "$HERE/requirements-automl.txt"
"$VENV/bin/python" -m pip install --quiet --no-deps -r "$HERE/requirements-automl-nodeps.txt"
# Fail here, not in the middle of a benchmark, if an import is broken.
"$VENV/bin/python" -c "import autogluon.tabular, flaml.automl, lightgbm, catboost, xgboost, ISLP, palmerpenguins, statsmodels.datasets, plotly.data"
echo "$want" > "$STAMP"
echo "bench/.venv-automl ready in $(( $(date +%s) - started )) s"
