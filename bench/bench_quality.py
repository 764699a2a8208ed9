"""Quality on held-out answers: the real pipeline (offline brain) vs XGBoost with default settings.

For each demo task, runs `python -m mlestar_core run` semantics in-process with a time budget,
then grades its submission.csv on demo_tasks/_answers/<task>.csv, next to a default
XGBClassifier/XGBRegressor on ordinal-encoded features graded the same way.

    .venv/bin/python bench/bench_quality.py [--budget SECONDS] [task ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlestar_core import grading  # noqa: E402
from mlestar_core.config import RunConfig  # noqa: E402
from mlestar_core.model import Task  # noqa: E402
from mlestar_core.pipeline import Pipeline, create_run  # noqa: E402
from mlestar_core.store import Store  # noqa: E402
from mlestar_core.task import label_str, load_task, sorted_classes  # noqa: E402

DEMOS = ROOT / "demo_tasks"


def default_xgboost(task: Task) -> pd.DataFrame:
    """The reference a data scientist would try first: XGBoost, defaults, categories ordinal-coded."""
    from sklearn.preprocessing import OrdinalEncoder
    from xgboost import XGBClassifier, XGBRegressor

    train = pd.read_csv(task.data_dir / task.train_file)
    train = train[train[task.target].notna()]
    test = pd.read_csv(task.data_dir / str(task.test_file))
    feats = [c.name for c in task.columns if c.kind != "id"]
    x, xt = train[feats].copy(), test[feats].copy()
    obj = [c for c in feats if not pd.api.types.is_numeric_dtype(x[c])]
    if obj:
        enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                             encoded_missing_value=np.nan)
        x[obj] = enc.fit_transform(x[obj].astype(str))
        xt[obj] = enc.transform(xt[obj].astype(str))
    sub = pd.DataFrame({task.id_column: test[task.id_column]}) if task.id_column else pd.DataFrame(index=test.index)
    pred_cols = [c for c in task.submission_columns if c != task.id_column]
    if task.task_type == "regression":
        sub[pred_cols[0]] = XGBRegressor().fit(x.astype(float), train[task.target]).predict(xt.astype(float))
        return sub
    labels = train[task.target].map(label_str)
    classes = sorted_classes(labels)
    proba = XGBClassifier().fit(x.astype(float), labels.map({c: i for i, c in enumerate(classes)})) \
        .predict_proba(xt.astype(float))
    if task.submission_kind == "label":
        sub[pred_cols[0]] = [classes[i] for i in proba.argmax(1)]
    elif task.submission_kind == "proba_positive":
        sub[pred_cols[0]] = proba[:, classes.index(str(task.positive_class))]
    else:
        for col, cls in zip(pred_cols, task.classes, strict=False):
            sub[col] = proba[:, classes.index(cls)]
    return sub


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("tasks", nargs="*", default=["breast-cancer", "diabetes-progression", "wine-cultivar",
                                                     "customer-churn"])
    args = parser.parse_args()
    print(f"{'task':<22} {'metric':<9} {'best initial':>12} {'final valid':>12} {'final test':>11} "
          f"{'xgb test':>9} {'wall':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store")
        for name in args.tasks:
            task = load_task(DEMOS / name)
            answers = pd.read_csv(DEMOS / "_answers" / f"{name}.csv")
            out = Path(tmp) / name
            run_id = create_run(store, task, RunConfig(time_budget=args.budget), out_dir=out)
            started = time.monotonic()
            summary = Pipeline(store, run_id).run()
            wall = time.monotonic() - started
            scripts = {s["id"]: s["role"] for s in store.table("scripts", run_id)}
            initial = [e["score"] for e in store.table("executions", run_id)
                       if scripts[e["script_id"]] == "initial" and e["score"] is not None]
            best_initial = max(initial) if task.higher_is_better else min(initial)
            ours = grading.score_submission(task, pd.read_csv(out / "submission.csv"), answers)
            xgb = grading.score_submission(task, default_xgboost(task), answers)
            print(f"{name:<22} {task.metric:<9} {best_initial:>12.4f} {summary['validation_score']:>12.4f} "
                  f"{ours:>11.4f} {xgb:>9.4f} {wall:>5.0f}s", flush=True)


if __name__ == "__main__":
    main()
