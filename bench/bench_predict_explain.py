"""Predict and "what drives the model", measured on the bundled real public tables, side by side with what a
data scientist would do by hand in a notebook (scikit-learn in-process).

For each demo task (breast cancer, diabetes, wine, customer churn — real public data with held-back answers
in demo_tasks/_answers) an offline-brain run is made with small knobs, then:

- predict: the task's test rows through `predict_rows` with the kept fitted model, and again with `--refit`;
  wall time of each, whether the kept model's predictions equal the run's own submission, and the graded
  score of the predictions against the held-back answers (the engine's metric);
- the hand-made alternative: a HistGradientBoosting pipeline fitted in-process on the same search rows, saved
  with joblib and loaded back to predict the test rows (its time and graded score);
- importance: the run's stored permutation importance (computed by a sandboxed script on the locked hold-out
  rows) against sklearn's `permutation_importance` of the hand-made model on the same rows: top-5 of each,
  Spearman rank correlation over all features, and the time each took.

    .venv/bin/python bench/bench_predict_explain.py [--tasks breast-cancer diabetes-progression ...]

JSON goes to bench/results/predict-explain-<time>.json.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import joblib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor  # noqa: E402
from sklearn.inspection import permutation_importance  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OrdinalEncoder  # noqa: E402

from mlestar_core import grading  # noqa: E402
from mlestar_core.config import RunConfig  # noqa: E402
from mlestar_core.explain import load_explanation  # noqa: E402
from mlestar_core.pipeline import Pipeline, create_run  # noqa: E402
from mlestar_core.predict import predict_rows  # noqa: E402
from mlestar_core.rundata import load_run_data  # noqa: E402
from mlestar_core.store import Store  # noqa: E402
from mlestar_core.task import load_task  # noqa: E402

TASKS = ["breast-cancer", "diabetes-progression", "wine-cultivar", "customer-churn"]
KNOBS = dict(num_models=2, outer_steps=1, inner_steps=1, num_solutions=1, ensemble_rounds=0, workers=2,
             ablation_repeats=1)


def hand_made(task: Any, train: pd.DataFrame) -> Any:
    """What one would write by hand: ordinal-encode text columns, gradient boosting, default settings."""
    features = [c for c in train.columns if c not in (task.target, task.id_column)]
    text = [c for c in features if not pd.api.types.is_numeric_dtype(train[c])]
    encode = ColumnTransformer([("text", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), text)],
                               remainder="passthrough")
    model = (HistGradientBoostingClassifier(random_state=0) if task.task_type in ("binary", "multiclass")
             else HistGradientBoostingRegressor(random_state=0))
    return make_pipeline(encode, model).fit(train[features], train[task.target]), features


def grade(task: Any, sub: pd.DataFrame, answers: Path) -> float:
    return grading.score_submission(task, sub, pd.read_csv(answers))


def bench_task(name: str, root: Path) -> dict[str, Any]:
    task = load_task(ROOT / "demo_tasks" / name)
    store = Store(root / name / "store")
    started = time.monotonic()
    rid = create_run(store, task, RunConfig(**KNOBS), out_dir=root / name / "out")
    Pipeline(store, rid).run()
    run_seconds = time.monotonic() - started
    answers = ROOT / "demo_tasks" / "_answers" / f"{name}.csv"
    test = task.data_dir / (task.test_file or "test.csv")
    out: dict[str, Any] = {"task": name, "rows": task.n_train_rows, "run_seconds": round(run_seconds, 1)}

    kept = predict_rows(store, rid, test, root / name / "kept.csv")
    refit = predict_rows(store, rid, test, root / name / "refit.csv", refit=True)
    own = pd.read_csv(root / name / "out" / "submission.csv", dtype=str)
    out["predict"] = {
        "kept_mode": kept.mode, "kept_seconds": round(kept.seconds, 2), "refit_seconds": round(refit.seconds, 2),
        "kept_equals_run_submission": bool(kept.frame.reset_index(drop=True).equals(own.reset_index(drop=True))),
        "graded_kept": grade(task, pd.read_csv(root / name / "kept.csv"), answers),
        "graded_refit": grade(task, pd.read_csv(root / name / "refit.csv"), answers),
    }

    data = load_run_data(store.run_dir(rid))
    assert data is not None and data.holdout_dir is not None and data.holdout_answers is not None
    search = pd.read_csv(data.search_dir / data.train_file)
    t0 = time.monotonic()
    model, features = hand_made(task, search)
    fit_seconds = time.monotonic() - t0
    buf = io.BytesIO()
    joblib.dump(model, buf)
    t0 = time.monotonic()
    loaded = joblib.load(io.BytesIO(buf.getvalue()))
    test_rows = pd.read_csv(test)
    proba = task.metric in ("roc_auc", "log_loss")
    pred = loaded.predict_proba(test_rows[features]) if proba else loaded.predict(test_rows[features])
    predict_seconds = time.monotonic() - t0
    sub = pd.read_csv(task.data_dir / task.sample_submission_file) if task.sample_submission_file else None
    hand_graded = None
    if sub is not None:
        columns = [c for c in sub.columns if c != task.id_column]
        if proba and len(columns) > 1:  # one probability column per class, in the sample's order
            order = [list(map(str, loaded.classes_)).index(c.removeprefix("class_")) if c.removeprefix("class_")
                     in map(str, loaded.classes_) else i for i, c in enumerate(columns)]
            for c, k in zip(columns, order, strict=True):
                sub[c] = pred[:, k]
        else:
            sub[columns[0]] = pred[:, 1] if proba else pred
        hand_graded = grade(task, sub, answers)
    out["hand_made"] = {"fit_seconds": round(fit_seconds, 2), "predict_seconds": round(predict_seconds, 3),
                        "graded": hand_graded}

    explanation = load_explanation(store.run_dir(rid)) or {}
    hold_x = pd.read_csv(data.holdout_dir / data.holdout_test_file)
    hold_y = pd.read_csv(data.holdout_answers)[task.target]
    t0 = time.monotonic()
    scoring = {"roc_auc": "roc_auc", "rmse": "neg_root_mean_squared_error", "log_loss": "neg_log_loss",
               "mae": "neg_mean_absolute_error"}.get(task.metric, "accuracy")
    pi = permutation_importance(model, hold_x[features], hold_y, n_repeats=5, random_state=0, scoring=scoring)
    pi_seconds = time.monotonic() - t0
    theirs = dict(zip(features, pi.importances_mean, strict=True))
    ours = {f["name"]: f["importance_mean"] for f in explanation.get("features") or []}
    common = [f for f in features if f in ours]
    rho = float(spearmanr([ours[f] for f in common], [theirs[f] for f in common]).statistic) if common else None
    out["importance"] = {
        "status": explanation.get("status"), "rows": explanation.get("rows"),
        "ours_top5": sorted(ours, key=lambda f: -ours[f])[:5],
        "ours_top5_values": [f"{f['importance_mean']:.4f} ± {f['importance_std']:.4f}"
                             for f in (explanation.get("features") or [])[:5]],
        "metric": task.metric, "model": explanation.get("model"),
        "sklearn_top5": sorted(theirs, key=lambda f: -theirs[f])[:5],
        "spearman": None if rho is None or np.isnan(rho) else round(rho, 3),
        "sklearn_seconds": round(pi_seconds, 2),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="*", default=TASKS)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        for name in args.tasks:
            r = bench_task(name, Path(tmp))
            results.append(r)
            p, h, i = r["predict"], r["hand_made"], r["importance"]
            print(f"{name}: run {r['run_seconds']} s | predict kept {p['kept_seconds']} s ({p['kept_mode']}), "
                  f"refit {p['refit_seconds']} s, kept == run submission: {p['kept_equals_run_submission']}, "
                  f"graded {p['graded_kept']:.4f} (hand-made HGB {h['graded']:.4f}, its joblib predict "
                  f"{h['predict_seconds']} s)")
            print(f"    importance ({i['status']}, {i['rows']} hold-out rows, {i['metric']}): ours "
                  f"{list(zip(i['ours_top5'], i['ours_top5_values'], strict=False))}")
            print(f"    sklearn on the hand-made model: {i['sklearn_top5']}; Spearman {i['spearman']}")
    path = args.json or ROOT / "bench" / "results" / f"predict-explain-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
