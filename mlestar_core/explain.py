"""What drives the model (issue 12): permutation importance and partial dependence of the final solution.

Which rows are honest: never rows the model was fitted on. The final solution's hold-out run fitted its
fold models on the search rows only, so none of them ever saw a row of the locked hold-out. The
explanation therefore predicts the **locked hold-out rows** (up to MAX_ROWS of them) with the model that
hold-out run kept (`model/holdout/`, see kept.py), i.e. exactly the predictor whose hold-out score the
report gives; the importance's baseline score is that hold-out score (on all rows when there are at
most MAX_ROWS). Without a kept hold-out model (a run from before models were kept, a solution that
keeps none) the solution is refitted on the same search rows, which reproduces that predictor. A run
without a hold-out (fewer than 50 labelled rows) has no honest rows left: it gets no explanation, and
says why. (Each fold model on its own validation rows would be honest too, but it needs a script to
predict with one fold model at a time, which the protocol does not ask of a script.)

How (all of it in one sandboxed job, like every script; the engine never loads a model):

- the engine stages the hold-out run's inputs, the rows, their targets, the kept state, the solution
  and a driver script (DRIVER_SOURCE) into a job;
- the driver calls sklearn's `permutation_importance` (n_repeats=5, the run's seed) twice with the same
  random state: the first pass records the permuted tables sklearn asks to have scored, those are
  predicted in one batch by running the solution (`MLESTAR_PREDICT_FROM`) on them as its test file, and
  the second pass hands sklearn the score of each table in turn. The result is exactly sklearn's (each
  feature's mean and spread over the repeats), at the cost of one prediction run instead of one per
  table. Scores use the run's own metric code (metrics.metric_source, embedded in the driver), signed so
  that higher is better: an importance is how much worse the metric gets, in metric units, when the
  feature's values are shuffled among the rows;
- partial dependence of the top TOP_FEATURES features: each is set to every value of a grid (quantiles
  of a numeric feature, the most frequent values of a categorical one) on PDP_ROWS of the rows, and the
  predictions are averaged (one more prediction run);
- the driver writes `explain_raw.json`; the engine validates it (every feature once, finite numbers,
  grids and curves of matching length) and stores it as `runs/<id>/explain/explain.json`.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import kept
from .executor import ExecResult, Job, LocalExecutor
from .metrics import get_metric, metric_source
from .model import Task
from .rundata import RunData
from .task import read_csv, sorted_classes

EXPLAIN_DIR = "explain"
RESULT_FILE = "explain.json"
RAW_FILE = "explain_raw.json"
N_REPEATS = 5
TOP_FEATURES = 3  # partial dependence of this many of the most important features
MAX_ROWS = 1000  # hold-out rows used at most (a seeded sample beyond)
MIN_ROWS = 50
MAX_STACKED_CELLS = 20_000_000  # rows x features x permuted tables predicted at once, at most
PDP_ROWS = 200
PDP_GRID = 15
MAX_RAW_BYTES = 20_000_000
PDP_KINDS = ("numeric", "datetime", "categorical")  # numeric grids are numbers, the others text
FORMAT = 1


class ExplainFailed(RuntimeError):
    """The explanation could not be computed; the message says why (and where the job's files are)."""


def explain_dir(run_dir: Path) -> Path:
    return Path(run_dir) / EXPLAIN_DIR


def load_explanation(run_dir: Path) -> dict[str, Any] | None:
    """The explanation the engine stored for the run (status "ok" or "unavailable"), or None."""
    try:
        data = json.loads((explain_dir(run_dir) / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def _store(run_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    folder = explain_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, allow_nan=False), encoding="utf-8")
    tmp.replace(folder / RESULT_FILE)
    return result


def unavailable(run_dir: Path, script_id: int | None, reason: str) -> dict[str, Any]:
    """Store (and return) an explanation that could not be made, with the reason for the report and the page."""
    return _store(run_dir, {"format": FORMAT, "status": "unavailable", "reason": reason, "script_id": script_id,
                            "created": time.time()})


# ------------------------------------------------------------------ the driver (runs in the sandbox)


DRIVER_SOURCE = r'''
"""Permutation importance and partial dependence of a solution, predicted by the solution itself (see the
engine's mlestar_core/explain.py). Reads ./input/, writes ./explain_raw.json."""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance

CONFIG = json.load(open("input/explain_config.json"))
TASK_TYPE, CLASSES = CONFIG["task_type"], CONFIG["classes"]

__METRIC_SOURCE__


def label_key(value):
    """Class labels as the engine compares them: 1, 1.0 and "1" are the same label."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


ROWS = pd.read_csv("input/explain_rows.csv", dtype=str, keep_default_na=False)
Y_TEXT = pd.read_csv("input/explain_y.csv", dtype=str, keep_default_na=False)["y"]
if TASK_TYPE == "regression":
    Y = Y_TEXT.astype(float).to_numpy()
else:
    Y = np.array([CLASSES.index(label_key(v)) for v in Y_TEXT], dtype=int)
FEATURES = CONFIG["features"]
STATE = {"predict_from": CONFIG["predict_from"], "calls": 0, "seconds": 0.0, "refitted": False, "note": ""}


def metric_value(pred):
    if TASK_TYPE == "regression":
        y_pred = pred
    elif CONFIG["metric_needs"] == "label":
        y_pred = pred.argmax(axis=1)
    elif TASK_TYPE == "binary":
        y_pred = pred[:, 1]
    else:
        y_pred = pred
    return float(compute_metric(Y, y_pred))


def signed(value):
    """Higher is better, whatever the metric: what sklearn's scorers return."""
    return value if CONFIG["higher_is_better"] else -value


def read_predictions(path, n):
    frame = pd.read_csv(path)
    if "row" not in frame.columns or sorted(frame["row"].tolist()) != list(range(n)):
        raise RuntimeError(f"test_pred.csv must have one line per row, numbered 0..{n - 1}")
    frame = frame.sort_values("row")
    if TASK_TYPE == "regression":
        values = pd.to_numeric(frame["prediction"], errors="coerce").to_numpy(dtype=float)
    else:
        by_label = {label_key(c): c for c in frame.columns if c != "row"}
        missing = [c for c in CLASSES if c not in by_label]
        if missing:
            raise RuntimeError(f"test_pred.csv lacks the class column(s) {missing}")
        values = frame[[by_label[c] for c in CLASSES]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        values = np.clip(values, 0.0, 1.0)
        values = values / np.where(values.sum(axis=1, keepdims=True) > 0, values.sum(axis=1, keepdims=True), 1.0)
    if not np.isfinite(values).all():
        raise RuntimeError("the predictions hold NaN or infinite values")
    return values


def run_solution(table, tag):
    """The solution's predictions for every row of `table` (its test file), in one run."""
    folder = os.path.abspath(f"predict_{tag}")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(os.path.join(folder, "input"))
    skip = {"explain_rows.csv", "explain_y.csv", "explain_config.json", "solution.py", "model",
            CONFIG["test_file"], CONFIG["sample_file"]}
    for name in os.listdir("input"):
        if name not in skip:
            os.symlink(os.path.abspath(os.path.join("input", name)), os.path.join(folder, "input", name))
    table.to_csv(os.path.join(folder, "input", CONFIG["test_file"]), index=False)
    sample = pd.DataFrame(index=range(len(table)))
    for col in CONFIG["submission_columns"]:
        sample[col] = table[col].to_numpy() if col == CONFIG["id_column"] else CONFIG["placeholders"].get(col, "")
    sample.to_csv(os.path.join(folder, "input", CONFIG["sample_file"]), index=False)
    shutil.copyfile("input/solution.py", os.path.join(folder, "solution.py"))
    env = {k: v for k, v in os.environ.items() if k not in ("MLESTAR_MODEL_DIR", "MLESTAR_PREDICT_FROM")}
    env["MLESTAR_SUBMIT"] = "1"
    if STATE["predict_from"]:
        env["MLESTAR_PREDICT_FROM"] = os.path.abspath("input/model")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "solution.py"], cwd=folder, env=env, capture_output=True, text=True)
    STATE["seconds"] += time.monotonic() - started
    STATE["calls"] += 1
    print(f"--- prediction run {tag}: {len(table)} rows, exit {proc.returncode}, "
          f"{time.monotonic() - started:.1f} s ---")
    print(proc.stdout[-1500:])
    if proc.returncode != 0:
        raise RuntimeError(f"the solution failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    if os.path.exists(os.path.join(folder, "oof.csv")):
        STATE["refitted"] = True  # it fitted on the training rows instead of loading the kept model
    values = read_predictions(os.path.join(folder, "test_pred.csv"), len(table))
    shutil.rmtree(folder, ignore_errors=True)
    return values


def predict_tables(tables, tag):
    """Predictions of each table, from one run of the solution on all of them stacked (fresh ids)."""
    big = pd.concat(tables, ignore_index=True)
    if CONFIG["id_column"] and CONFIG["id_column"] in big.columns:
        big[CONFIG["id_column"]] = [str(i) for i in range(len(big))]
    try:
        values = run_solution(big, tag)
    except Exception as exc:
        if not STATE["predict_from"]:
            raise
        print(f"the kept model could not predict ({exc}); refitting the solution instead")
        STATE["predict_from"] = False
        STATE["note"] = f"the kept model could not predict: {str(exc)[-300:]}"
        values = run_solution(big, tag + "_refit")
    bounds = np.cumsum([0] + [len(t) for t in tables])
    return [values[bounds[i]:bounds[i + 1]] for i in range(len(tables))]


class Predictor:
    """What sklearn's permutation_importance is given: the tables it permutes are scored by the callables below."""

    def fit(self, X, y):
        return self


RECORDED = []


def record(estimator, X, y):
    RECORDED.append(X.copy())
    return 0.0


def with_features(X):
    table = ROWS.copy()
    for col in FEATURES:
        table[col] = X[col].to_numpy()
    return table


def importance():
    X = ROWS[FEATURES]
    args = dict(n_repeats=CONFIG["n_repeats"], random_state=CONFIG["seed"], n_jobs=1)
    permutation_importance(Predictor(), X, Y, scoring=record, **args)  # pass 1: the tables to score
    preds = predict_tables([with_features(t) for t in RECORDED], "importance")
    scores = [signed(metric_value(p)) for p in preds]
    hashes = [int(pd.util.hash_pandas_object(t, index=False).sum()) for t in RECORDED]
    RECORDED.clear()
    calls = iter(range(len(scores)))

    def replay(estimator, X, y):
        i = next(calls)
        if int(pd.util.hash_pandas_object(X, index=False).sum()) != hashes[i]:
            raise RuntimeError("permutation_importance asked for other tables than it recorded")
        return scores[i]

    result = permutation_importance(Predictor(), X, Y, scoring=replay, **args)  # pass 2: sklearn's result
    return result, metric_value(preds[0])  # the first table sklearn scores is the unshuffled one


def grid_for(values):
    """(kind, grid, values written): quantiles of a numeric or date feature, the most frequent values of any
    other (categories, text)."""
    text = pd.Series(values, dtype=object).astype(str)
    filled = text[text.str.strip() != ""]
    quantiles = np.linspace(0.05, 0.95, CONFIG["pdp_grid"])
    numbers = pd.to_numeric(filled, errors="coerce")
    if len(filled) and numbers.notna().mean() >= 0.95 and numbers.nunique() > 2:
        points = np.unique(np.quantile(numbers.dropna().to_numpy(dtype=float), quantiles))
        if (numbers.dropna() % 1 == 0).all():
            points = np.unique(np.round(points))
            return "numeric", [float(p) for p in points], [str(int(p)) for p in points]
        return "numeric", [float(p) for p in points], [repr(float(p)) for p in points]
    if len(filled) and filled.str.contains(r"\d").mean() >= 0.95:
        try:
            stamps = pd.to_datetime(filled, errors="coerce", format="mixed", utc=True).dt.tz_localize(None)
        except (ValueError, TypeError):
            stamps = pd.Series([pd.NaT])
        if stamps.notna().mean() >= 0.95 and stamps.nunique() > 2:
            ns = stamps.dropna().to_numpy(dtype="datetime64[ns]").astype("int64").astype(float)
            points = pd.to_datetime(np.unique(np.quantile(ns, quantiles)).astype("int64"), unit="ns")
            daily = bool((stamps.dropna() == stamps.dropna().dt.normalize()).all())
            written = list(dict.fromkeys(p.strftime("%Y-%m-%d" if daily else "%Y-%m-%d %H:%M:%S") for p in points))
            return "datetime", written, written
    top = filled.value_counts().index[: CONFIG["pdp_grid"]].tolist()
    return "categorical", [str(v) for v in top], [str(v) for v in top]


def partial_dependence(features):
    rows = ROWS.iloc[: CONFIG["pdp_rows"]]
    plans, tables = [], []
    for feature in features:
        kind, grid, written = grid_for(rows[feature].tolist())
        if not grid:
            continue
        plans.append((feature, kind, grid, len(written)))
        for value in written:
            table = rows.copy()
            table[feature] = value
            tables.append(table)
    if not tables:
        return []
    preds = iter(predict_tables(tables, "pdp"))
    out = []
    for feature, kind, grid, n in plans:
        means = [np.asarray(next(preds), dtype=float).mean(axis=0) for _ in range(n)]
        if TASK_TYPE == "regression":
            curves = {"prediction": [float(m) for m in means]}
        elif TASK_TYPE == "binary":
            curves = {CLASSES[1]: [float(m[1]) for m in means]}
        else:
            curves = {c: [float(m[j]) for m in means] for j, c in enumerate(CLASSES)}
        out.append({"feature": feature, "kind": kind, "grid": grid, "values": curves, "rows": len(rows)})
    return out


started = time.monotonic()
result, baseline = importance()
features = [{"name": name, "importance_mean": float(result.importances_mean[i]),
             "importance_std": float(result.importances_std[i]),
             "importances": [float(v) for v in result.importances[i]]} for i, name in enumerate(FEATURES)]
features.sort(key=lambda f: (-f["importance_mean"], f["name"]))
top = [f["name"] for f in features[: CONFIG["top_k"]]]
pdp = partial_dependence(top)
raw = {"baseline_score": baseline, "features": features, "partial_dependence": pdp,
       "rows": len(ROWS), "n_repeats": CONFIG["n_repeats"], "refitted": STATE["refitted"] or not STATE["predict_from"],
       "note": STATE["note"], "prediction_runs": STATE["calls"], "prediction_seconds": STATE["seconds"],
       "seconds": time.monotonic() - started}
with open("explain_raw.json", "w") as f:
    json.dump(raw, f)
print("top features: " + ", ".join(f"{f['name']} {f['importance_mean']:.4g}" for f in features[:5]))
'''


def driver_script(task: Task) -> str:
    return DRIVER_SOURCE.replace("__METRIC_SOURCE__", metric_source(task.metric, task.task_type).rstrip())


# ------------------------------------------------------------------ the engine's side


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def validate_raw(raw: Any, features: list[str], classes: list[str], task_type: str, n_repeats: int) -> list[str]:
    """Everything wrong with the driver's output (empty: usable). The engine trusts nothing a job wrote."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        return ["explain_raw.json is not a JSON object"]
    if not _finite(raw.get("baseline_score")):
        problems.append("baseline_score is not a finite number")
    rows = raw.get("features")
    if not isinstance(rows, list):
        return problems + ["features is not a list"]
    names = [r.get("name") if isinstance(r, dict) else None for r in rows]
    if sorted(map(str, names)) != sorted(features) or len(set(map(str, names))) != len(names):
        problems.append(f"the features are not the {len(features)} columns explained, each once")
    for r in rows:
        if not isinstance(r, dict):
            continue
        if not (_finite(r.get("importance_mean")) and _finite(r.get("importance_std"))
                and float(r["importance_std"]) >= 0):
            problems.append(f"feature {r.get('name')!r}: importance mean/std are not finite numbers")
        imp = r.get("importances")
        if not (isinstance(imp, list) and len(imp) == n_repeats and all(_finite(v) for v in imp)):
            problems.append(f"feature {r.get('name')!r}: expected {n_repeats} finite importances")
    labels = ["prediction"] if task_type == "regression" else list(classes)
    pdp = raw.get("partial_dependence")
    if not isinstance(pdp, list) or len(pdp) > TOP_FEATURES:
        problems.append(f"partial_dependence is not a list of at most {TOP_FEATURES} curves")
        pdp = []
    for p in pdp:
        if not isinstance(p, dict) or p.get("feature") not in features or p.get("kind") not in PDP_KINDS:
            problems.append("a partial-dependence entry names no explained feature or kind")
            continue
        grid = p.get("grid")
        if not isinstance(grid, list) or not 1 <= len(grid) <= 50:
            problems.append(f"partial dependence of {p['feature']!r}: the grid has no or too many points")
            continue
        if p["kind"] == "numeric" and not all(_finite(g) for g in grid):
            problems.append(f"partial dependence of {p['feature']!r}: a numeric grid holds non-numbers")
        values = p.get("values")
        if not isinstance(values, dict) or not values or not set(values) <= set(labels):
            problems.append(f"partial dependence of {p['feature']!r}: curves are not named by {labels[:6]}")
            continue
        for label, curve in values.items():
            if not (isinstance(curve, list) and len(curve) == len(grid) and all(_finite(v) for v in curve)):
                problems.append(f"partial dependence of {p['feature']!r} ({label}): not one finite value per "
                                "grid point")
    return problems


def _rows_for(task: Task, data: RunData, seed: int, n_features: int, n_repeats: int
              ) -> tuple[pd.DataFrame, pd.Series, int]:
    """The hold-out rows to explain on (text, as written), their targets, and how many hold-out rows exist."""
    assert data.holdout_dir is not None and data.holdout_answers is not None
    rows = read_csv(data.holdout_dir / data.holdout_test_file, dtype=str, keep_default_na=False)
    answers = read_csv(data.holdout_answers, dtype=str, keep_default_na=False)
    if len(rows) != len(answers):
        raise ExplainFailed("the hold-out rows and their answers do not line up")
    y = answers[task.target]
    keep = (y.str.strip() != "").to_numpy()
    rows, y = rows[keep].reset_index(drop=True), y[keep].reset_index(drop=True)
    n_all = len(rows)
    # The permuted tables are predicted in one batch: fewer rows when there are many features.
    cap = max(MIN_ROWS, MAX_STACKED_CELLS // max(1, n_features * (1 + n_features * n_repeats)))
    n = min(n_all, MAX_ROWS, cap)
    if n < n_all:
        pick = np.sort(np.random.default_rng(seed).choice(n_all, n, replace=False))
        rows, y = rows.iloc[pick].reset_index(drop=True), y.iloc[pick].reset_index(drop=True)
    return rows, y, n_all


def explain_solution(run_dir: Path, task: Task, data: RunData, script_id: int, code: str,
                     executor: LocalExecutor, *, seed: int, timeout: float, holdout_score: float | None = None,
                     n_repeats: int = N_REPEATS) -> dict[str, Any]:
    """Compute, validate and store the explanation of script `script_id` (a finished run's final solution);
    returns it. A run without hold-out rows gets a stored "unavailable" explanation; a failure raises
    ExplainFailed (the job's files stay in runs/<id>/explain/job)."""
    run_dir = Path(run_dir)
    if data.holdout_dir is None or data.holdout_answers is None or data.n_holdout == 0:
        return unavailable(run_dir, script_id, "the run has no locked hold-out (fewer than 50 labelled rows), and "
                           "every other row was used to fit the model: no rows are left to explain it honestly")
    layout = [str(c) for c in read_csv(data.holdout_dir / data.holdout_test_file, nrows=0).columns]
    feature_names = {c.name for c in task.columns if c.name != task.id_column}
    features = [c for c in layout if c in feature_names]
    if not features:
        return unavailable(run_dir, script_id, "the task has no feature columns to explain")
    rows, y, n_all = _rows_for(task, data, seed, len(features), n_repeats)
    classes = [] if task.task_type == "regression" else sorted_classes(task.classes)
    model = kept.kept_model(run_dir, "holdout", script_id)

    folder = explain_dir(run_dir)
    inputs, workdir = folder / "input", folder / "job"
    for old in (inputs, workdir):
        shutil.rmtree(old, ignore_errors=True)
    kept.stage_files(data.holdout_dir, inputs, skip={data.holdout_test_file, data.holdout_sample_file})
    rows.to_csv(inputs / "explain_rows.csv", index=False)
    pd.DataFrame({"y": y}).to_csv(inputs / "explain_y.csv", index=False)
    (inputs / "solution.py").write_text(code, encoding="utf-8")
    if model is not None:
        kept.stage_files(model.folder, inputs / kept.MODEL_ROOT)
    placeholders: dict[str, str] = {}
    sample = data.holdout_dir / data.holdout_sample_file
    if sample.is_file():
        head = read_csv(sample, nrows=1, dtype=str, keep_default_na=False)
        placeholders = {str(c): str(head.iloc[0][c]) for c in head.columns} if len(head) else {}
    config = {
        "test_file": data.holdout_test_file, "sample_file": data.holdout_sample_file,
        "id_column": task.id_column if task.id_column in layout else None,
        "submission_columns": list(task.submission_columns), "placeholders": placeholders,
        "features": features, "task_type": task.task_type, "classes": classes,
        "metric_needs": get_metric(task.metric).needs, "higher_is_better": task.higher_is_better,
        "n_repeats": n_repeats, "seed": seed, "predict_from": model is not None, "top_k": TOP_FEATURES,
        "pdp_rows": PDP_ROWS, "pdp_grid": PDP_GRID,
    }
    (inputs / "explain_config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    job = Job(code=driver_script(task), workdir=workdir, inputs=inputs, env={}, timeout=timeout,
              script_name="explain.py", label=f"explain script #{script_id}")
    started = time.monotonic()
    res: ExecResult = executor.run(job)
    if res.exit_code != 0:
        raise ExplainFailed(f"the explanation job failed (its files are in {workdir}): {res.error_text(2500)}")
    raw_path = workdir / RAW_FILE
    if raw_path.is_symlink() or not raw_path.is_file() or raw_path.stat().st_size > MAX_RAW_BYTES:
        raise ExplainFailed(f"the explanation job wrote no usable {RAW_FILE} (its files are in {workdir})")
    try:
        raw = json.loads(raw_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ExplainFailed(f"{RAW_FILE} is not JSON: {exc}") from None
    problems = validate_raw(raw, features, classes, task.task_type, n_repeats)
    if problems:
        raise ExplainFailed(f"the engine refused the explanation: {'; '.join(problems[:5])}")
    metric = get_metric(task.metric)
    result = {
        "format": FORMAT, "status": "ok", "script_id": script_id, "created": time.time(),
        "metric": task.metric, "metric_title": metric.title, "higher_is_better": task.higher_is_better,
        "task_type": task.task_type,
        "rows": {"source": "locked hold-out", "used": len(rows), "available": n_all},
        "model": "refitted on the search rows" if raw.get("refitted") else "kept by the hold-out run",
        "note": str(raw.get("note") or "")[:500],
        "baseline_score": float(raw["baseline_score"]), "holdout_score": holdout_score,
        "n_repeats": n_repeats, "seed": seed,
        "features": [{"name": str(r["name"]), "importance_mean": float(r["importance_mean"]),
                      "importance_std": float(r["importance_std"]),
                      "importances": [float(v) for v in r["importances"]]}
                     for r in sorted(raw["features"], key=lambda r: (-float(r["importance_mean"]), str(r["name"])))],
        "partial_dependence": [{"feature": p["feature"], "kind": p["kind"],
                                "grid": [float(g) if p["kind"] == "numeric" else str(g) for g in p["grid"]],
                                "values": {str(k): [float(v) for v in c] for k, c in p["values"].items()},
                                "rows": int(p.get("rows") or 0)}
                               for p in raw["partial_dependence"]],
        "output": "prediction" if task.task_type == "regression" else "probability",
        "seconds": time.monotonic() - started,
    }
    shutil.rmtree(inputs, ignore_errors=True)  # hard links and copies of the run's data: not needed any more
    return _store(run_dir, result)


def explain_run(store: Any, run_id: str, *, executor: LocalExecutor | None = None,
                n_repeats: int = N_REPEATS) -> dict[str, Any]:
    """Explain a finished run's final solution on demand (CLI `explain`, the app); rewrites its report so the
    section "What drives the model" is there. Raises kept.RunNotUsable or ExplainFailed."""
    fr = kept.finished_run(store, run_id)
    own = executor is None
    ex = executor or LocalExecutor(workers=1, timeout=fr.config.script_timeout, memory_mb=fr.config.memory_mb)
    try:
        result = explain_solution(fr.run_dir, fr.task, fr.data, fr.script_id, fr.code, ex, seed=fr.config.seed,
                                  timeout=fr.config.script_timeout, holdout_score=fr.summary.get("holdout_score"),
                                  n_repeats=n_repeats)
    finally:
        if own:
            ex.close()
    _rewrite_report(store, run_id, fr.summary)
    return result


def _rewrite_report(store: Any, run_id: str, summary: dict[str, Any]) -> None:
    from .exports import output_dir
    from .report import write_report

    run = store.get_run(run_id) or {"id": run_id}
    out_dir = output_dir(store, run)
    if (out_dir / "report.md").exists() or not run.get("out_dir"):
        write_report(store, run_id, summary, out_dir)


def top_features(explanation: dict[str, Any] | None, n: int = 3) -> list[str]:
    """The names of the n most important features of a stored explanation ([] when there is none)."""
    if not explanation or explanation.get("status") != "ok":
        return []
    return [f["name"] for f in explanation["features"][:n]]


def explain_final(pipeline: Any, script_id: int, data: RunData, holdout_score: float | None) -> dict[str, Any]:
    """The explanation made at the end of a run (Pipeline._final), inside the time budget when there is one; it
    never fails the run: what went wrong is stored as the reason it is unavailable, and said in the event log."""
    run_dir = pipeline.run_dir
    row = pipeline.store.finished_execution(script_id, "holdout") or {}
    wall = float(row.get("wall_time") or 0.0)
    has_model = kept.kept_model(run_dir, "holdout", script_id) is not None
    # A prediction run with the kept model costs well under a fit; refitting costs a fit per prediction run.
    need = 8.0 + (0.6 if has_model else 2.2) * wall
    left = pipeline.time_left()
    later = f"compute it with `python -m mlestar_core explain {pipeline.run_id}`"
    if not pipeline.config.explain_at_end:
        result = unavailable(run_dir, script_id, f"not computed at the end of this run (switched off): {later}")
    elif left < need:
        result = unavailable(run_dir, script_id, f"the time budget had {max(0.0, left):.0f} s left, about {need:.0f} s "
                             f"are needed: {later}")
    else:
        try:
            result = explain_solution(run_dir, pipeline.task, data, script_id, pipeline._code(script_id),
                                      pipeline.executor, seed=pipeline.config.seed,
                                      timeout=min(pipeline.config.script_timeout, left),
                                      holdout_score=holdout_score)
        except ExplainFailed as exc:
            result = unavailable(run_dir, script_id, f"{exc} ({later} to try again)")
        except Exception as exc:  # noqa: BLE001 - an explanation is never worth failing the run over
            result = unavailable(run_dir, script_id, f"{type(exc).__name__}: {exc} ({later} to try again)")
    pipeline.emit("explained", {"status": result["status"], "top": top_features(result),
                                "reason": result.get("reason")})
    return result


# ------------------------------------------------------------------ the report's section


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


def pdp_sentence(p: dict[str, Any], output: str) -> str:
    """One line on a partial-dependence curve: where the average prediction is lowest and highest."""
    label, curve = next(iter(p["values"].items())) if len(p["values"]) == 1 else (None, None)
    if curve is None:  # multiclass: the class whose probability moves most
        label, curve = max(p["values"].items(), key=lambda kv: max(kv[1]) - min(kv[1]))
    what = "the average prediction" if output == "prediction" else f"the average probability of {label!r}"
    grid = p["grid"]
    lo, hi = int(np.argmin(curve)), int(np.argmax(curve))

    def at(i: int) -> str:
        g = grid[i]
        text = f"{g:.4g}" if isinstance(g, float) else str(g)
        return text if len(text) <= 40 else text[:39] + "…"

    if p["kind"] in ("numeric", "datetime"):
        return (f"**{p['feature']}**: {what} goes from {_num(curve[0])} at {at(0)} to {_num(curve[-1])} at "
                f"{at(len(grid) - 1)} (lowest {_num(curve[lo])} at {at(lo)}, highest {_num(curve[hi])} at {at(hi)})")
    return (f"**{p['feature']}**: {what} is highest for {at(hi)} ({_num(curve[hi])}) and lowest for {at(lo)} "
            f"({_num(curve[lo])}), over its {len(grid)} most frequent values")


def report_lines(run_dir: Path, run_id: str, top: int = 10) -> list[str]:
    """The report's "What drives the model" section (and how to predict new rows)."""
    ex = load_explanation(run_dir)
    lines = ["", "## What drives the model", ""]
    if ex is None:
        lines.append(f"Not computed yet: `python -m mlestar_core explain {run_id}`.")
    elif ex["status"] != "ok":
        lines.append(f"Not available: {ex['reason']}")
    else:
        rows = ex["rows"]
        direction = "higher" if ex["higher_is_better"] else "lower"
        lines += [
            f"Permutation importance (scikit-learn's `permutation_importance`) of the final solution, script "
            f"#{ex['script_id']}, on {rows['used']} of the {rows['available']} rows of the locked hold-out: none of "
            f"the models that predicted them was fitted on them (model {ex['model']}). Each feature's values were "
            f"shuffled among these rows {ex['n_repeats']} times; its importance is how much worse "
            f"{ex['metric_title']} ({direction} is better) gets, mean ± standard deviation over the shuffles. On the "
            f"rows as they are the score is {_num(ex['baseline_score'])}.",
            "",
            "| rank | feature | importance | ± |",
            "|---|---|---|---|",
        ]
        for i, f in enumerate(ex["features"][:top], start=1):
            lines.append(f"| {i} | {f['name']} | {f['importance_mean']:.4g} | {f['importance_std']:.2g} |")
        rest = ex["features"][top:]
        if rest:
            lines.append(f"| | … {len(rest)} more, none above {max(f['importance_mean'] for f in rest):.2g} | | |")
        if ex["partial_dependence"]:
            lines += ["", "Partial dependence of the top features (every row set to one value at a time, the "
                      "predictions averaged):", ""]
            lines += [f"- {pdp_sentence(p, ex['output'])}" for p in ex["partial_dependence"]]
        lines += ["", "An importance near 0 (or below) means shuffling the feature did not hurt: the model does not "
                  "rely on it, or another correlated feature carries the same information."]
    km = kept.kept_model(run_dir, "full")
    lines += ["", "## Predicting new rows", "",
              f"`python -m mlestar_core predict {run_id} --input new.csv --output predictions.csv` (the training "
              "columns, without the target) writes predictions in the submission format, "
              + ("with the fitted model this run kept (nothing is refitted)." if km is not None else
                 "refitting the final solution on the full training data (this run kept no fitted model).")]
    return lines
