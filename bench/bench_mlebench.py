"""MLE-bench folders in, graded: real public tables laid out as prepared MLE-bench competitions, run by the agent
through the CLI, and its graded score set beside the models a data scientist would fit first.

    bash bench/setup_automl.sh                 # once: bench/.venv-automl holds the tables' packages (ISLP, ...)
    .venv/bin/python bench/bench_mlebench.py --budget 120 --tasks oj-purchase,penguins-species

Each table (bench/automl_tasks.py) becomes COMP/prepared/public/ (train, test, sample submission, description) and
COMP/prepared/private/test.csv (the held-out answers, never shown to the agent), plus a leaderboard.csv in
MLE-bench's columns whose "teams" are the three baselines below fitted with 40 seeds each on bootstrap samples of
the training rows: a stand-in for a real leaderboard (the competitions are not Kaggle's), so the medal lines are
only as meaningful as that. The agent's grade comes from `competition.json` (the engine's grading); the baselines
are graded by the same `competition.grade_submission`, so the comparison is on one metric implementation.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

from mlestar_core.competition import grade_submission  # noqa: E402
from mlestar_core.task import load_task  # noqa: E402

AUTOML_PYTHON = BENCH / ".venv-automl" / "bin" / "python"


def build_competition(name: str, work: Path) -> Path:
    """The table as a prepared MLE-bench competition folder (without its leaderboard yet)."""
    out = subprocess.run([str(AUTOML_PYTHON), str(BENCH / "automl_tasks.py"), "--out", str(work), "--tasks", name],
                         capture_output=True, text=True, check=True)
    entry = json.loads(out.stdout)[0]
    comp = work / "competitions" / name
    public, private = comp / "prepared" / "public", comp / "prepared" / "private"
    shutil.copytree(entry["task_dir"], public)
    private.mkdir(parents=True)
    shutil.copy(entry["answers"], private / "test.csv")
    return comp


def baseline_predictions(comp: Path, model: str, seed: int, bootstrap: bool) -> Path:
    """A default model a data scientist would fit first, as a submission file."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier, XGBRegressor

    task = load_task(comp)
    public = comp / "prepared" / "public"
    train, test = pd.read_csv(public / "train.csv"), pd.read_csv(public / "test.csv")
    sample = pd.read_csv(public / "sample_submission.csv")
    if bootstrap:
        train = train.sample(frac=1.0, replace=True, random_state=seed)
    drop = [c for c in (task.id_column, task.target) if c]
    x = pd.get_dummies(train.drop(columns=drop), dummy_na=True).astype(float)
    xt = pd.get_dummies(test.drop(columns=[c for c in drop if c in test]), dummy_na=True).astype(float)
    xt = xt.reindex(columns=x.columns, fill_value=0.0)
    x, xt = x.fillna(x.median()), xt.fillna(x.median())
    y = train[task.target]
    regression = task.task_type == "regression"
    est = {"linear": make_pipeline(StandardScaler(), Ridge() if regression else LogisticRegression(max_iter=3000)),
           "hist-gbm": (HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier)(
               random_state=seed),
           "xgboost": (XGBRegressor if regression else XGBClassifier)(n_jobs=1, random_state=seed)}[model]
    sub = sample.copy()
    if regression:
        est.fit(x, y)
        sub[[c for c in sub.columns if c != task.id_column][0]] = est.predict(xt)
    else:
        classes = sorted(y.astype(str).unique())
        codes = y.astype(str).map({c: i for i, c in enumerate(classes)})
        est.fit(x, codes)
        proba = est.predict_proba(xt)
        pred_cols = [c for c in sub.columns if c != task.id_column]
        if len(pred_cols) > 1:  # one probability column per class
            for i, c in enumerate(classes):
                if c in sub.columns:
                    sub[c] = proba[:, i] if i < proba.shape[1] else 0.0
        elif task.metric in ("roc_auc", "log_loss", "pr_auc", "gini"):
            sub[pred_cols[0]] = proba[:, -1]
        else:
            sub[pred_cols[0]] = [classes[i] for i in proba.argmax(axis=1)]
    path = Path(tempfile.mkstemp(suffix=".csv")[1])
    sub.to_csv(path, index=False)
    return path


def grade(comp: Path, submission: Path) -> float:
    return float(grade_submission(load_task(comp), submission, comp / "prepared" / "private" / "test.csv"))


def write_leaderboard(comp: Path, scores: list[float]) -> None:
    n = len(scores)
    pd.DataFrame({"scoreNullable": np.round(scores, 5), "teamId": range(1, n + 1), "hasTeamName": True,
                  "submissionDate": "2026-11-30 00:00:00", "score": np.round(scores, 5),
                  "teamName": [f"baseline-{i}" for i in range(n)]}).to_csv(comp / "leaderboard.csv", index=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="oj-purchase,penguins-species")
    p.add_argument("--budget", type=float, default=120.0, help="agent seconds per competition")
    args = p.parse_args(argv)
    if not AUTOML_PYTHON.exists():
        print("bench/.venv-automl is missing: run `bash bench/setup_automl.sh` once", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-mlebench-"))
    rows = []
    for name in [t for t in args.tasks.split(",") if t]:
        comp = build_competition(name, work)
        firsts = {m: grade(comp, baseline_predictions(comp, m, 0, bootstrap=False))
                  for m in ("linear", "hist-gbm", "xgboost")}
        teams = [grade(comp, baseline_predictions(comp, m, s, bootstrap=True))
                 for m in ("linear", "hist-gbm", "xgboost") for s in range(40)]
        write_leaderboard(comp, teams)
        store, out = work / "store", work / "out" / name
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "mlestar_core", "--store", str(store), "run", "--task", str(comp),
                               "--out", str(out), "--time-budget", str(args.budget)], cwd=ROOT, capture_output=True,
                              text=True)
        wall = time.monotonic() - start
        line = next((ln.strip() for ln in proc.stdout.splitlines() if ln.strip().startswith("competition:")),
                    proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no output")
        run_dir = max((store / "runs").iterdir(), key=lambda d: d.stat().st_mtime)
        graded = json.loads((run_dir / "competition.json").read_text()) if (run_dir / "competition.json").exists() \
            else {}
        rows.append({"competition": name, "metric": load_task(comp).metric, "agent": graded.get("score"),
                     "medal": graded.get("medal"), "rank": graded.get("rank"), "teams": graded.get("n_teams"),
                     **{f"default {k}": round(v, 5) for k, v in firsts.items()}, "agent wall s": round(wall)})
        print(f"{name}: exit {proc.returncode}, {wall:.0f} s; {line}", flush=True)
    print()
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"\n(work folder: {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
