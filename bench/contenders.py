"""One non-agent contender of the AutoML benchmark on one task folder: fit on train.csv, write a submission.

    python bench/contenders.py --task DIR --contender {xgboost,rf,flaml,autogluon} --budget 120 --out preds.csv
                               [--spec spec.json] [--seed 0]

bench/bench_automl.py runs this as a subprocess (one per contender and task, never two at once) and
measures its wall time and memory: FLAML and AutoGluon with bench/.venv-automl/bin/python, the fixed
baselines with the project's python. The submission has the task's format (the sample submission's
columns): a label, a value, P(positive class) or one probability column per class, whatever the
metric needs.

--spec is the task as mlestar_core.task.load_task reads it (target, id column, task type, metric,
submission format, classes, column kinds), written by bench_automl.py so every contender answers in the
same format the agent is graded in. Without --spec, the task is loaded here with this repository's
mlestar_core (it runs with pandas 2 or 3).

- xgboost: XGBClassifier / XGBRegressor with default hyper-parameters.
- rf: RandomForestClassifier / RandomForestRegressor, n_estimators=500, otherwise defaults.
  Both see the features as numbers: non-numeric columns ordinal-encoded (unseen test values and
  missing values become NaN), date columns as seconds since 1970; no tuning, no budget.
- flaml: flaml.AutoML.fit(time_budget=budget, metric=<the task metric in FLAML's name>).
- autogluon: TabularPredictor(eval_metric=<the task metric in AutoGluon's name>)
  .fit(time_limit=budget, presets="best_quality"), models in a temporary folder that is removed.
  FLAML and AutoGluon get the raw columns, with the task's date columns parsed as datetimes.

BENCH_AUTOML_VERBOSE=1 in the environment turns FLAML's and AutoGluon's own logging on (it lands in the
contender's log.txt under the benchmark's results folder).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CONTENDERS = ("xgboost", "rf", "flaml", "autogluon")
VERBOSE = os.environ.get("BENCH_AUTOML_VERBOSE") == "1"  # FLAML's / AutoGluon's own logs, for debugging

# Our metric name -> (FLAML's name, AutoGluon's name), binary/regression and multiclass.
# None: no built-in equivalent, a custom scorer built from the same formula is used.
FLAML_METRICS = {
    "roc_auc": ("roc_auc", "roc_auc_ovr"), "log_loss": ("log_loss", "log_loss"),
    "accuracy": ("accuracy", "accuracy"), "f1": ("f1", "macro_f1"), "rmse": ("rmse", "rmse"),
    "mae": ("mae", "mae"), "r2": ("r2", "r2"), "mape": ("mape", "mape"), "rmsle": (None, None),
}
AUTOGLUON_METRICS = {
    "roc_auc": ("roc_auc", "roc_auc_ovr_macro"), "log_loss": ("log_loss", "log_loss"),
    "accuracy": ("accuracy", "accuracy"), "f1": ("f1", "f1_macro"),
    "rmse": ("root_mean_squared_error", "root_mean_squared_error"),
    "mae": ("mean_absolute_error", "mean_absolute_error"), "r2": ("r2", "r2"),
    "mape": ("mean_absolute_percentage_error", "mean_absolute_percentage_error"), "rmsle": (None, None),
}


# ----------------------------------------------------------------------------------------------
# Task spec and data
# ----------------------------------------------------------------------------------------------


def spec_from_task(task_dir: Path) -> dict[str, Any]:
    """The submission contract of a task folder, as mlestar_core reads it (also used by bench_automl)."""
    sys.path.insert(0, str(ROOT))
    from mlestar_core.task import load_task

    return task_spec(load_task(task_dir))


def task_spec(task: Any) -> dict[str, Any]:
    return {
        "name": task.name, "target": task.target, "id_column": task.id_column, "task_type": task.task_type,
        "metric": task.metric, "higher_is_better": task.higher_is_better,
        "submission_kind": task.submission_kind, "submission_columns": list(task.submission_columns),
        "classes": list(task.classes), "positive_class": task.positive_class,
        "train_file": task.train_file, "test_file": task.test_file,
        "features": [{"name": c.name, "kind": c.kind} for c in task.columns if c.kind != "id"],
    }


def label_str(value: Any) -> str:
    """Same stringification as mlestar_core.task.label_str (1, 1.0 and "1" are all "1")."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    return str(value)


def sorted_classes(labels: list[str]) -> list[str]:
    """Same order as mlestar_core.task.sorted_classes: numeric labels numerically, else as strings."""
    unique = sorted(set(labels))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique


class Data:
    def __init__(self, task_dir: Path, spec: dict[str, Any]):
        self.spec = spec
        train = pd.read_csv(task_dir / spec["train_file"])
        train = train[train[spec["target"]].notna()].reset_index(drop=True)
        self.test = pd.read_csv(task_dir / spec["test_file"])
        self.features = [f["name"] for f in spec["features"]]
        self.dates = [f["name"] for f in spec["features"] if f["kind"] == "datetime"]
        self.x = train[self.features].copy()
        self.xt = self.test[self.features].copy()
        self.regression = spec["task_type"] == "regression"
        if self.regression:
            self.y = train[spec["target"]].astype(float).reset_index(drop=True)
            self.order: list[str] = []
        else:
            labels = train[spec["target"]].map(label_str)
            self.order = sorted_classes(list(labels))  # encoded class i = self.order[i]
            self.y = labels.map({c: i for i, c in enumerate(self.order)}).astype(int).reset_index(drop=True)

    def numeric(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Features as floats for the fixed baselines: dates as epoch seconds, the rest ordinal-coded."""
        from sklearn.preprocessing import OrdinalEncoder

        x, xt = self.x.copy(), self.xt.copy()
        for c in self.dates:
            for frame in (x, xt):
                stamp = pd.to_datetime(frame[c], errors="coerce", format="mixed")
                frame[c] = (stamp - pd.Timestamp("1970-01-01")).dt.total_seconds()
        obj = [c for c in self.features if c not in self.dates and not pd.api.types.is_numeric_dtype(x[c])]
        if obj:
            enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                 encoded_missing_value=np.nan)
            x[obj] = enc.fit_transform(_as_strings(x[obj]))
            xt[obj] = enc.transform(_as_strings(xt[obj]))
        return x.astype(float), xt.astype(float)

    def raw(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Features as read, with the task's date columns parsed (what an AutoML user passes)."""
        x, xt = self.x.copy(), self.xt.copy()
        for c in self.dates:
            x[c] = pd.to_datetime(x[c], errors="coerce", format="mixed")
            xt[c] = pd.to_datetime(xt[c], errors="coerce", format="mixed")
        return x, xt


def _as_strings(frame: pd.DataFrame) -> np.ndarray:
    """An object array of str values with np.nan for missing ones (what OrdinalEncoder expects)."""
    return np.array([[v if isinstance(v, float) and np.isnan(v) else str(v) for v in row]
                     for row in frame.astype(object).where(frame.notna(), np.nan).itertuples(index=False)],
                    dtype=object).reshape(len(frame), frame.shape[1])


# ----------------------------------------------------------------------------------------------
# Predictions: ("value", array) for regression; ("proba", (n, k) in self.order) plus optional labels
# ----------------------------------------------------------------------------------------------


class Prediction:
    def __init__(self, values: np.ndarray | None = None, proba: np.ndarray | None = None,
                 labels: np.ndarray | None = None):
        self.values, self.proba, self.labels = values, proba, labels


def rmsle(y_true: Any, y_pred: Any) -> float:
    """Same formula as mlestar_core.metrics' rmsle (predictions below 0 clipped to 0)."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.clip(np.asarray(y_pred, dtype=float), 0, None)
    return float(np.sqrt(np.mean((np.log1p(y_true) - np.log1p(y_pred)) ** 2)))


def fit_xgboost(data: Data, budget: float, seed: int) -> Prediction:
    from xgboost import XGBClassifier, XGBRegressor

    x, xt = data.numeric()
    if data.regression:
        return Prediction(values=XGBRegressor(random_state=seed).fit(x, data.y).predict(xt))
    return Prediction(proba=XGBClassifier(random_state=seed).fit(x, data.y).predict_proba(xt))


def fit_rf(data: Data, budget: float, seed: int) -> Prediction:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    x, xt = data.numeric()
    if data.regression:
        model = RandomForestRegressor(n_estimators=500, n_jobs=-1, random_state=seed)
        return Prediction(values=model.fit(x, data.y).predict(xt))
    model = RandomForestClassifier(n_estimators=500, n_jobs=-1, random_state=seed)
    return Prediction(proba=model.fit(x, data.y).predict_proba(xt))


def _flaml_rmsle(x_val, y_val, estimator, labels, x_train, y_train, *args, **kwargs):  # noqa: ANN001
    loss = rmsle(y_val, estimator.predict(x_val))
    return loss, {"rmsle": loss}


def fit_flaml(data: Data, budget: float, seed: int) -> Prediction:
    from flaml import AutoML

    multi = data.spec["task_type"] == "multiclass"
    metric: Any = FLAML_METRICS[data.spec["metric"]][1 if multi else 0]
    if metric is None:
        metric = _flaml_rmsle
    x, xt = data.raw()
    automl = AutoML()
    automl.fit(X_train=x, y_train=data.y, task="regression" if data.regression else "classification",
               metric=metric, time_budget=budget, seed=seed, verbose=3 if VERBOSE else 0, log_file_name="")
    if data.regression:
        return Prediction(values=np.asarray(automl.predict(xt), dtype=float))
    proba = _reorder(np.asarray(automl.predict_proba(xt)), list(automl.classes_), len(data.order))
    labels = np.asarray(automl.predict(xt)).astype(int)
    return Prediction(proba=proba, labels=labels)


def fit_autogluon(data: Data, budget: float, seed: int) -> Prediction:
    from autogluon.core.metrics import make_scorer
    from autogluon.tabular import TabularPredictor

    logging.getLogger("autogluon").setLevel(logging.ERROR)
    multi = data.spec["task_type"] == "multiclass"
    metric: Any = AUTOGLUON_METRICS[data.spec["metric"]][1 if multi else 0]
    if metric is None:
        metric = make_scorer("rmsle", rmsle, optimum=0, greater_is_better=False)
    label = "__target__"
    x, xt = data.raw()
    train = x.assign(**{label: data.y.to_numpy()})
    problem = data.spec["task_type"]
    tmp = tempfile.mkdtemp(prefix="ag-bench-")
    started = time.monotonic()
    try:
        predictor = TabularPredictor(label=label, problem_type=problem, eval_metric=metric,
                                     path=os.path.join(tmp, "fit"), verbosity=2 if VERBOSE else 0)
        try:
            predictor.fit(train, time_limit=budget, presets="best_quality",
                          excluded_model_types=AUTOGLUON_EXCLUDED)
        except Exception as exc:  # noqa: BLE001 - AutoGluon's own failure; retried once as below
            # Without ray, a DyStack sub-fit that fits no model (too little time) leaves the learner
            # marked as fit and the main fit then fails ("Learner is already fit"). Retry once, in the
            # time that is left, without DyStack (stacking still on).
            left = budget - (time.monotonic() - started)
            print(f"autogluon: fit failed ({type(exc).__name__}: {exc}); retrying without dynamic stacking "
                  f"for the remaining {max(left, 10):.0f} s", file=sys.stderr)
            predictor = TabularPredictor(label=label, problem_type=problem, eval_metric=metric,
                                         path=os.path.join(tmp, "retry"), verbosity=2 if VERBOSE else 0)
            predictor.fit(train, time_limit=max(left, 10.0), presets="best_quality",
                          excluded_model_types=AUTOGLUON_EXCLUDED, dynamic_stacking=False)
        if data.regression:
            return Prediction(values=np.asarray(predictor.predict(xt), dtype=float))
        proba_df = predictor.predict_proba(xt)
        proba = _reorder(proba_df.to_numpy(), [int(c) for c in proba_df.columns], len(data.order))
        labels = np.asarray(predictor.predict(xt)).astype(int)  # with AutoGluon's decision threshold
        return Prediction(proba=proba, labels=labels)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# Model types whose code needs torch/fastai, which the benchmark environment leaves out: excluded so that
# AutoGluon does not spend its budget on failing imports (they would be skipped with an ImportError anyway).
AUTOGLUON_EXCLUDED = ["NN_TORCH", "FASTAI"]


def _reorder(proba: np.ndarray, classes: list[Any], k: int) -> np.ndarray:
    """Probability columns in encoded-class order 0..k-1 (a class the model never saw gets 0)."""
    out = np.zeros((proba.shape[0], k))
    for j, c in enumerate(classes):
        out[:, int(c)] = proba[:, j]
    return out


FIT = {"xgboost": fit_xgboost, "rf": fit_rf, "flaml": fit_flaml, "autogluon": fit_autogluon}


# ----------------------------------------------------------------------------------------------
# Submission
# ----------------------------------------------------------------------------------------------


def submission(data: Data, pred: Prediction) -> pd.DataFrame:
    spec = data.spec
    id_col = spec["id_column"]
    pred_cols = [c for c in spec["submission_columns"] if c != id_col]
    sub = pd.DataFrame({id_col: data.test[id_col]}) if id_col else pd.DataFrame(index=data.test.index)
    kind = spec["submission_kind"]
    if kind == "value":
        assert pred.values is not None
        sub[pred_cols[0]] = pred.values
        return sub
    assert pred.proba is not None
    index = {c: i for i, c in enumerate(data.order)}
    if kind == "label":
        labels = pred.labels if pred.labels is not None else pred.proba.argmax(axis=1)
        sub[pred_cols[0]] = [data.order[int(i)] for i in labels]
    elif kind == "proba_positive":
        sub[pred_cols[0]] = pred.proba[:, index[str(spec["positive_class"])]]
    else:  # proba_per_class: spec["classes"] is in submission-column order
        for col, cls in zip(pred_cols, spec["classes"], strict=True):
            sub[col] = pred.proba[:, index[cls]] if cls in index else 0.0
    return sub


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, help="task folder (MLE-bench layout)")
    parser.add_argument("--contender", required=True, choices=CONTENDERS)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds (FLAML, AutoGluon)")
    parser.add_argument("--out", required=True, help="submission CSV to write")
    parser.add_argument("--spec", default=None, help="task spec JSON from bench_automl.py")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    # The benchmark stops an overrunning contender with SIGTERM: exit through `finally` blocks, so that
    # AutoGluon's temporary model folder is still removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    warnings.filterwarnings("ignore")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    task_dir = Path(args.task)
    spec = json.loads(Path(args.spec).read_text()) if args.spec else spec_from_task(task_dir)
    data = Data(task_dir, spec)
    pred = FIT[args.contender](data, args.budget, args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    submission(data, pred).to_csv(out, index=False)
    print(f"{args.contender}: wrote {len(data.test)} rows to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
