"""A scripted expert: deterministic, valid answers to every MLE-STAR role for `demo_tasks/breast-cancer`.

The answers follow the "Answer format" of each prompt template (prompts/*.md) exactly, and the
scripts really run (binary target `malignant`, id column `id`, 30 numeric measurements, ROC AUC)
under the engine's evaluation protocol (docs/protocol.md): they read `./input/folds.csv` (and
make the same kind of folds themselves when it is absent), fit everything per (repeat, fold),
write `oof.csv` (`repeat,row,0,1`), print the mean of the per-fold metric, and, unless
`MLESTAR_SUBMIT` is "0", write `test_pred.csv` and `submission.csv` from the mean of the fold
models. The seed, K, repeats, hold-out share, threads and the metric function are read from the
prompt's protocol section. Every script shares one shape, so any block body the expert writes
fits any script it wrote:

- `load` defines `train`, `test` (None when ./input/test.csv is absent), `feature_columns` and
  `folds` (the `repeat,row,fold` table);
- `preprocess` defines `make_preprocessor()` (an unfitted transformer);
- `features` defines `add_features(frame)` (row-wise, nothing fitted);
- `model` defines `model` (an unfitted classifier with `predict_proba`; an ensemble's is a soft
  vote or a stack of its solutions' models);
- `train` runs the fold loop: fits on each fold's fit rows, predicts its validated rows (and the
  test rows when submitting), writes oof.csv and prints the score; `predict` averages the fold
  models' test predictions into test_pred.csv and submission.csv.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlestar_core.evaluation import strategy_in
from mlestar_core.prompts import ROLES
from mlestar_core.script import ScriptError, block_names, fence, get_block

BLOCK_ORDER = ("load", "preprocess", "features", "model", "train", "predict")


@dataclass(frozen=True)
class _ModelSpec:
    name: str
    family: str
    why: str
    example: str


CATALOG: tuple[_ModelSpec, ...] = (
    _ModelSpec("Logistic regression (sklearn.linear_model.LogisticRegression)", "linear",
               "The 30 measurements are nearly linearly separable once scaled; a regularised linear model is a "
               "strong, stable baseline for ROC AUC.",
               "from sklearn.linear_model import LogisticRegression\n"
               "clf = LogisticRegression(max_iter=2000).fit(X_train, y_train)\n"
               "proba = clf.predict_proba(X_valid)[:, 1]"),
    _ModelSpec("Random forest (sklearn.ensemble.RandomForestClassifier)", "forest",
               "Bagged trees handle correlated measurements and non-linear thresholds without tuning.",
               "from sklearn.ensemble import RandomForestClassifier\n"
               "clf = RandomForestClassifier(n_estimators=50, random_state=42).fit(X_train, y_train)\n"
               "proba = clf.predict_proba(X_valid)[:, 1]"),
    _ModelSpec("Gradient boosting (sklearn.ensemble.GradientBoostingClassifier)", "gbdt",
               "Boosted shallow trees are the usual winners on small numeric tabular data.",
               "from sklearn.ensemble import GradientBoostingClassifier\n"
               "clf = GradientBoostingClassifier(random_state=42).fit(X_train, y_train)\n"
               "proba = clf.predict_proba(X_valid)[:, 1]"),
    _ModelSpec("Extra trees (sklearn.ensemble.ExtraTreesClassifier)", "forest",
               "Extremely randomised trees reduce variance further than a random forest on a few hundred rows.",
               "from sklearn.ensemble import ExtraTreesClassifier\n"
               "clf = ExtraTreesClassifier(n_estimators=50, random_state=42).fit(X_train, y_train)\n"
               "proba = clf.predict_proba(X_valid)[:, 1]"),
    _ModelSpec("Histogram gradient boosting (sklearn.ensemble.HistGradientBoostingClassifier)", "gbdt",
               "A fast boosting variant with native missing-value handling.",
               "from sklearn.ensemble import HistGradientBoostingClassifier\n"
               "clf = HistGradientBoostingClassifier(random_state=42).fit(X_train, y_train)\n"
               "proba = clf.predict_proba(X_valid)[:, 1]"),
)

MODEL_BODIES: dict[str, str] = {
    "logistic": "from sklearn.linear_model import LogisticRegression\n\n"
                "model = LogisticRegression(C=1.0, max_iter=2000, random_state=SEED)\n",
    "forest": "from sklearn.ensemble import RandomForestClassifier\n\n"
              "model = RandomForestClassifier(n_estimators=50, random_state=SEED, n_jobs=THREADS)\n",
    "extra": "from sklearn.ensemble import ExtraTreesClassifier\n\n"
             "model = ExtraTreesClassifier(n_estimators=50, random_state=SEED, n_jobs=THREADS)\n",
    "boosting": "from sklearn.ensemble import GradientBoostingClassifier\n\n"
                "model = GradientBoostingClassifier(n_estimators=50, max_depth=3, random_state=SEED)\n",
}

# The ensemble's members when the prompt holds no usable solution: a linear and a forest model.
DEFAULT_MEMBERS: tuple[tuple[str, str], ...] = (
    ("logistic regression", MODEL_BODIES["logistic"]),
    ("random forest", MODEL_BODIES["forest"]),
)

# Used when a prompt's protocol section carries no metric code (the code-writing roles' always does).
DEFAULT_METRIC = '''def compute_metric(y_true, y_pred):
    """ROC-AUC, higher is better: y_true class codes, y_pred P(class 1)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y_true, y_pred))
'''

HEADER = """import os

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, train_test_split

SEED = int(os.environ.get("MLESTAR_SEED", {seed}))
SUBMIT = os.environ.get("MLESTAR_SUBMIT", "1") != "0"
THREADS = int(os.environ.get("MLESTAR_THREADS", {threads}))
TARGET = "malignant"
ID_COLUMN = "id"
PRED_COLUMNS = ["0", "1"]  # oof.csv / test_pred.csv columns: the labels of `malignant`, in class-code order
# The folds come from the engine's ./input/folds.csv; these settings only make the same kind of
# folds when the script runs on its own, without that file.
N_FOLDS = {n_folds}
N_REPEATS = {n_repeats}
VALID_FRACTION = {valid_fraction}  # the validated share of the rows when N_FOLDS == 1 (one hold-out split)
FOLD_SEED = {fold_seed}
"""

LOAD_BODY = '''train = pd.read_csv("./input/train.csv")
test = pd.read_csv("./input/test.csv") if os.path.exists("./input/test.csv") else None
feature_columns = [c for c in train.columns if c not in (ID_COLUMN, TARGET)]


def make_folds():
    """repeat,row,fold as the engine makes them: stratified K folds per repeat, or one hold-out split."""
    rows = np.flatnonzero(train[TARGET].notna().to_numpy())
    y = train[TARGET].to_numpy()[rows]
    if N_FOLDS <= 1:  # fold -1: rows that are only ever fitted on
        _, held = train_test_split(np.arange(len(rows)), test_size=VALID_FRACTION, random_state=FOLD_SEED,
                                   stratify=y)
        fold = np.full(len(rows), -1)
        fold[held] = 0
        return pd.DataFrame({"repeat": 0, "row": rows, "fold": fold})
    parts = []
    for r in range(N_REPEATS):
        fold = np.zeros(len(rows), dtype=int)
        splitter = StratifiedKFold(N_FOLDS, shuffle=True, random_state=FOLD_SEED + r)
        for k, (_, held) in enumerate(splitter.split(rows, y)):
            fold[held] = k
        parts.append(pd.DataFrame({"repeat": r, "row": rows, "fold": fold}))
    return pd.concat(parts, ignore_index=True)


# Every script of the run validates the same rows in the same folds: the engine's file wins.
folds = pd.read_csv("./input/folds.csv") if os.path.exists("./input/folds.csv") else make_folds()
'''

PREPROCESS_BODY = """from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def make_preprocessor():
    # Median imputation and standard scaling; fitted only on the rows passed to .fit() (a fold's fit rows).
    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
"""

FEATURES_BODY = """def add_features(frame):
    # The 30 measurements plus two row-wise shape features (nothing is fitted here).
    out = frame[feature_columns].astype(float).copy()
    out["worst_to_mean_radius"] = out["worst_radius"] / out["mean_radius"].replace(0, np.nan)
    out["worst_points_x_area"] = out["worst_concave_points"] * out["worst_area"]
    return out
"""

TRAIN_BODY = """X_all = add_features(train)
y_all = train[TARGET].to_numpy()  # class codes: 0 benign, 1 malignant (the order of PRED_COLUMNS)
X_test = add_features(test) if SUBMIT and test is not None else None
oof_parts, fold_scores, test_preds = [], [], []
for r in sorted(folds["repeat"].unique()):
    in_repeat = folds[folds["repeat"] == r]
    for k in sorted(in_repeat.loc[in_repeat["fold"] >= 0, "fold"].unique()):
        fit_rows = in_repeat.loc[in_repeat["fold"] != k, "row"].to_numpy()
        valid_rows = in_repeat.loc[in_repeat["fold"] == k, "row"].to_numpy()
        # Everything is fitted on this fold's fit rows only.
        preprocessor = make_preprocessor().fit(X_all.iloc[fit_rows])
        fitted_model = clone(model).fit(preprocessor.transform(X_all.iloc[fit_rows]), y_all[fit_rows].astype(int))
        valid_pred = fitted_model.predict_proba(preprocessor.transform(X_all.iloc[valid_rows]))
        fold_scores.append(compute_metric(y_all[valid_rows].astype(int), valid_pred[:, 1]))
        part = pd.DataFrame(valid_pred, columns=PRED_COLUMNS)
        part.insert(0, "row", valid_rows)
        part.insert(0, "repeat", r)
        oof_parts.append(part)
        if X_test is not None:
            test_preds.append(fitted_model.predict_proba(preprocessor.transform(X_test)))
pd.concat(oof_parts, ignore_index=True).to_csv("oof.csv", index=False)
score = float(np.mean(fold_scores))
print(f"Final Validation Performance: {score}")
"""

PREDICT_BODY = """if SUBMIT and test is not None:
    # The test prediction is the mean of the fold models' predictions (no refit on all rows).
    test_proba = np.mean(test_preds, axis=0)
    test_pred = pd.DataFrame(test_proba, columns=PRED_COLUMNS)
    test_pred.insert(0, "row", np.arange(len(test_pred)))
    test_pred.to_csv("test_pred.csv", index=False)
    submission = pd.DataFrame({ID_COLUMN: test[ID_COLUMN].to_numpy(), TARGET: test_proba[:, 1]})
    submission.to_csv("./submission.csv", index=False)
"""

# Simpler bodies for the ablation study; each keeps the names later blocks use.
ABLATIONS: dict[str, tuple[str, str]] = {
    "model": ("a single shallow decision tree (max_depth=2) instead of the current model",
              "from sklearn.tree import DecisionTreeClassifier\n\n"
              "model = DecisionTreeClassifier(max_depth=2, random_state=SEED)\n"),
    "preprocess": ("median imputation only, without standard scaling",
                   "from sklearn.impute import SimpleImputer\n\n\n"
                   "def make_preprocessor():\n"
                   "    return SimpleImputer(strategy=\"median\")\n"),
    "features": ("the 30 raw measurements only, without the engineered shape features",
                 "def add_features(frame):\n"
                 "    return frame[feature_columns].astype(float).copy()\n"),
}


@dataclass(frozen=True)
class _Refinement:
    key: str  # a phrase of the plan that names this setting
    plan: str
    body: str


REFINEMENTS: tuple[_Refinement, ...] = (
    _Refinement("shallow gradient boosting",
                "Replace the estimator with shallow gradient boosting (50 trees of depth 2, learning rate 0.1). "
                "Boosted trees capture interactions between the nuclear measurements that a single model misses. "
                "It is still fitted on each fold's fit rows only, so the out-of-fold ROC AUC stays honest.",
                "from sklearn.ensemble import GradientBoostingClassifier\n\n"
                "model = GradientBoostingClassifier(n_estimators=50, learning_rate=0.1, max_depth=2, "
                "random_state=SEED)\n"),
    _Refinement("random forest with min_samples_leaf=2",
                "Use a random forest with min_samples_leaf=2 (50 trees). Larger leaves smooth the predicted "
                "probabilities, which helps ROC AUC on a few hundred rows. The seed stays SEED.",
                "from sklearn.ensemble import RandomForestClassifier\n\n"
                "model = RandomForestClassifier(n_estimators=50, min_samples_leaf=2, random_state=SEED, "
                "n_jobs=THREADS)\n"),
    _Refinement("stronger L2 regularisation",
                "Use logistic regression with stronger L2 regularisation (C=0.3). The measurements are highly "
                "correlated, and shrinking the coefficients should rank unseen tumours more reliably.",
                "from sklearn.linear_model import LogisticRegression\n\n"
                "model = LogisticRegression(C=0.3, max_iter=2000, random_state=SEED)\n"),
    _Refinement("extra trees",
                "Switch to extra trees (50 extremely randomised trees). Random split thresholds lower the variance "
                "of the probability estimates on this small data set.",
                "from sklearn.ensemble import ExtraTreesClassifier\n\n"
                "model = ExtraTreesClassifier(n_estimators=50, random_state=SEED, n_jobs=THREADS)\n"),
    _Refinement("weaker L2 regularisation",
                "Use logistic regression with weaker L2 regularisation (C=3.0). The scaled measurements separate "
                "the classes well, so a less constrained linear boundary may rank tumours better.",
                "from sklearn.linear_model import LogisticRegression\n\n"
                "model = LogisticRegression(C=3.0, max_iter=2000, random_state=SEED)\n"),
    _Refinement("subsampled gradient boosting",
                "Use subsampled gradient boosting (50 trees of depth 3, learning rate 0.05, subsample 0.8). "
                "Row subsampling adds regularisation to the boosted trees and usually improves ROC AUC.",
                "from sklearn.ensemble import GradientBoostingClassifier\n\n"
                "model = GradientBoostingClassifier(n_estimators=50, learning_rate=0.05, max_depth=3, "
                "subsample=0.8, random_state=SEED)\n"),
)

# One plan per ensemble round, in turn. The first is free-form (no engine strategy: the pipeline has
# it implemented and runs the script); the others name an engine strategy, which the pipeline scores
# on the stored out-of-fold predictions and has implemented only when it wins.
ENSEMBLE_PLANS: tuple[str, ...] = (
    "Average the predicted probabilities of all the solutions' models with equal weights, soft-voting them "
    "inside one fold loop over ./input/folds.csv. Every model is fitted on each fold's fit rows only and equal "
    "weights need no tuning, so the out-of-fold ROC AUC stays honest. Averaging a linear and a tree model "
    "combines two different views of the measurements.",
    "Greedy ensemble selection with replacement over the solutions' out-of-fold predictions "
    "(strategy='caruana'). A member is added while it raises the fold-mean ROC AUC, with the weights chosen on "
    "the other folds, so the ensemble's own score stays out-of-fold.",
    "Optimise the ensemble weights on the simplex for ROC AUC, starting from the greedy selection "
    "(strategy='weights'). The weights are chosen on the other folds of each repeat, and the test predictions "
    "use the weights chosen on every out-of-fold row.",
)

_M = re.compile(r"List the (\d+) machine-learning models")
_SEED = re.compile(r"MLESTAR_SEED\", (\d+)\)")
_THREADS = re.compile(r"MLESTAR_THREADS\", (\d+)\)")
# The protocol section spells the hold-out share ("a single hold-out split, validating 0.2 of the
# rows") and, when the run's folds are known, K and the repeats.
_VALID = re.compile(r"validating ([0-9.]+) of the rows")
_FOLDS = re.compile(r"This run uses (?:K = (?P<k>\d+) folds|one hold-out split)[^:]*?"
                    r"(?:repeated (?P<r>\d+) times|one repetition)")
_PROTOCOL = "## Evaluation protocol"
_SOLUTION = re.compile(r"^### Solution (?P<label>.+?) \(validation score (?P<score>[^)\n]*)\)\n```python\n"
                       r"(?P<code>.*?)^```[ \t]*$", re.S | re.M)
_WEIGHTS = re.compile(r"weights\s*=\s*(\[[^\]]*\])")


def _fenced_after(prompt: str, marker: str) -> str | None:
    """The body of the first ```python fence after `marker` in the prompt (None if absent)."""
    at = prompt.find(marker)
    if at < 0:
        return None
    opening = prompt.find("```python\n", at)
    if opening < 0:
        return None
    start = opening + len("```python\n")
    closing = re.compile(r"^```[ \t]*$", re.M).search(prompt, start)
    if closing is None:
        return None
    return prompt[start:closing.start()]


def _section(prompt: str, heading: str) -> str:
    """The text under a `## heading` line, up to the next `## ` heading."""
    m = re.search(rf"^## {re.escape(heading)}[^\n]*\n(?P<text>.*?)(?=^## |\Z)", prompt, re.S | re.M)
    return m.group("text").strip() if m else ""


def _json_answer(value: Any) -> str:
    return "```json\n" + json.dumps(value, indent=2) + "\n```\n"


def _python_answer(code: str) -> str:
    return "```python\n" + code.rstrip("\n") + "\n```\n"


def _model_key(name: str) -> str:
    lowered = name.lower()
    if "logistic" in lowered:
        return "logistic"
    if "forest" in lowered:
        return "forest"
    if "extra" in lowered:
        return "extra"
    return "boosting"


def _blocks_of(code: str | None) -> list[str]:
    if not code:
        return []
    try:
        return block_names(code)
    except ScriptError:
        return []


def _defines_model(body: str) -> bool:
    """Whether a block body assigns `model` at its top level (the shape every expert script uses)."""
    try:
        tree = ast.parse(body)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "model"
                                                    for t in node.targets) for node in tree.body)


def _solution_models(prompt: str) -> list[tuple[str, str]]:
    """(label, model block body) of each solution in the prompt whose model block defines `model`."""
    members = []
    for m in _SOLUTION.finditer(_section(prompt, "The solutions")):
        code = m.group("code")
        if "model" not in _blocks_of(code):
            continue
        body = get_block(code, "model")
        if _defines_model(body):
            label = " ".join(m.group("label").split())
            members.append((f"solution {label} (validation score {m.group('score').strip()})", body))
    return members


def _plan_weights(plan: str, n: int) -> list[float] | None:
    """The weights of the plan's `Set: ... weights=[...]` line, when there are n valid ones."""
    m = _WEIGHTS.search(plan)
    if m is None:
        return None
    try:
        weights = ast.literal_eval(m.group(1))
    except (ValueError, SyntaxError):
        return None
    if (not isinstance(weights, list) or len(weights) != n
            or not all(isinstance(w, (int, float)) and w >= 0 for w in weights) or sum(weights) <= 0):
        return None
    return [round(float(w), 4) for w in weights]


def ensemble_model_body(members: list[tuple[str, str]], strategy: str | None = None,
                        weights: list[float] | None = None) -> str:
    """A `model` block combining the members' models (each a model block body defining `model`).

    stacking: a logistic regression over the members' predicted probabilities, cross-fitted inside
    the fold's fit rows (StackingClassifier); every other strategy, and a free-form plan: the soft
    vote of the members with the given weights (equal when none are given)."""
    funcs = []
    for i, (label, body) in enumerate(members, start=1):
        comment = f"# The model of {label}, unchanged.\n"
        inner = comment + body.rstrip("\n") + "\nreturn model\n"
        funcs.append(f"def solution_{i}_model():\n" + textwrap.indent(inner, "    ", lambda line: line.strip() != ""))
    listed = ", ".join(f'("solution_{i}", solution_{i}_model())' for i in range(1, len(members) + 1))
    if strategy == "stacking":
        head = ("from sklearn.ensemble import StackingClassifier\n"
                "from sklearn.linear_model import LogisticRegression\n\n"
                "# strategy='stacking': a logistic regression over the solutions' predicted probabilities, fitted\n"
                "# on inner out-of-fold predictions of each fold's fit rows (never on the validated fold).\n")
        tail = (f"MEMBERS = [{listed}]\n"
                "model = StackingClassifier(estimators=MEMBERS, final_estimator=LogisticRegression(C=1.0, "
                "max_iter=2000), stack_method=\"predict_proba\", cv=3)\n")
    else:
        if strategy in ("caruana", "weights") and weights is not None:
            why = f"the weights the engine chose out of fold (strategy={strategy!r})"
        elif strategy == "rank_mean":
            why = "equal weights (strategy='rank_mean', approximated by averaging the probabilities)"
        else:
            why = "equal weights"
        weights = weights if weights is not None else [1.0] * len(members)
        head = ("from sklearn.ensemble import VotingClassifier\n\n"
                f"# The soft vote of the solutions' models, with {why}.\n"
                "# Inside the fold loop every member is fitted on the fold's fit rows, and the weighted mean\n"
                "# of their predicted probabilities is the prediction.\n")
        tail = (f"MEMBERS = [{listed}]\n"
                f"WEIGHTS = {weights!r}\n"
                "model = VotingClassifier(estimators=MEMBERS, voting=\"soft\", weights=WEIGHTS)\n")
    return head + "\n\n" + "\n\n".join(funcs) + "\n\n" + tail


class ScriptedExpert:
    """Answers every role's prompt deterministically, in the format its template asks for."""

    def answer(self, role: str, prompt: str) -> str:
        if role not in ROLES:
            raise ValueError(f"the scripted expert has no answer for role {role!r}")
        handler: Callable[[str], str] = getattr(self, f"_{role}")
        return handler(prompt)

    # ------------------------------------------------------------------ scripts

    def script(self, model_name: str, **settings: Any) -> str:
        """The complete solution script for a model name (logistic / forest / extra / else boosting).

        `settings`: seed, n_folds, n_repeats, valid_fraction, threads, metric_code (see `_assemble`)."""
        return self._assemble(MODEL_BODIES[_model_key(model_name)], **settings)

    def ensemble_script(self, members: list[tuple[str, str]] | None = None, *, strategy: str | None = None,
                        weights: list[float] | None = None, **settings: Any) -> str:
        """The complete script combining the members' models ((label, model block body) pairs; a
        logistic regression and a random forest when there are none) in one fold loop."""
        members = list(members) if members else list(DEFAULT_MEMBERS)
        if weights is not None and len(weights) != len(members):
            weights = None
        return self._assemble(ensemble_model_body(members, strategy, weights), **settings)

    @staticmethod
    def _assemble(model_body: str, *, seed: int = 42, n_folds: int = 5, n_repeats: int = 1,
                  valid_fraction: float = 0.2, threads: int = 1, metric_code: str | None = None) -> str:
        bodies = {"load": LOAD_BODY, "preprocess": PREPROCESS_BODY, "features": FEATURES_BODY,
                  "model": model_body, "train": TRAIN_BODY, "predict": PREDICT_BODY}
        head = HEADER.format(seed=seed, threads=threads, n_folds=n_folds, n_repeats=n_repeats,
                             valid_fraction=valid_fraction, fold_seed=seed)
        metric = (metric_code or DEFAULT_METRIC).rstrip("\n") + "\n"
        return head + "\n\n" + metric + "".join("\n" + fence(name, bodies[name]) for name in BLOCK_ORDER)

    @staticmethod
    def _split_settings(prompt: str) -> dict[str, Any]:
        """The run's settings as the prompt's protocol section states them (defaults where it does not)."""
        at = prompt.find(_PROTOCOL)
        protocol = prompt[at:] if at >= 0 else prompt
        seed = _SEED.search(protocol) or _SEED.search(prompt)
        threads = _THREADS.search(protocol)
        valid = _VALID.search(protocol)
        folds = _FOLDS.search(protocol)
        n_folds, n_repeats = 5, 1
        if folds is not None:
            n_folds = int(folds.group("k")) if folds.group("k") else 1
            n_repeats = int(folds.group("r")) if folds.group("r") else 1
        return {"seed": int(seed.group(1)) if seed else 42,
                "valid_fraction": float(valid.group(1).rstrip(".")) if valid else 0.2,
                "n_folds": n_folds, "n_repeats": n_repeats,
                "threads": int(threads.group(1)) if threads else 1,
                "metric_code": _fenced_after(protocol, "### Metric:") if at >= 0 else None}

    # ------------------------------------------------------------------ roles

    def _retrieve_models(self, prompt: str) -> str:
        m = _M.search(prompt)
        count = int(m.group(1)) if m else 4
        models = []
        for i in range(count):
            spec = CATALOG[i % len(CATALOG)]
            name = spec.name if i < len(CATALOG) else f"{spec.name} (variant {i // len(CATALOG) + 1})"
            models.append({"model_name": name, "family": spec.family, "why": spec.why,
                           "example_code": spec.example,
                           "source": "https://www.kaggle.com/code/fake/tabular-classification"})
        return _json_answer(models)

    def _write_initial_solution(self, prompt: str) -> str:
        name = _section(prompt, "The model to use").split("\n\nExample code for it:")[0].strip()
        return _python_answer(self.script(name, **self._split_settings(prompt)))

    def _merge(self, prompt: str) -> str:
        base = _fenced_after(prompt, "## Base solution") or _fenced_after(prompt, "")
        if base is None:
            raise ValueError("the merge prompt holds no ```python base solution")
        return _python_answer(base)

    def _check_data_usage(self, prompt: str) -> str:
        return _json_answer({
            "all_used": "yes",
            "unused": [],
            "findings": ["All 30 measurement columns of train.csv are used as features.",
                         "The id column is intentionally unused: it identifies rows and carries no signal.",
                         "folds.csv gives the folds only; test.csv is used for the test predictions and "
                         "sample_submission.csv only shows the submission's layout."],
        })

    def _check_leakage(self, prompt: str) -> str:
        return _json_answer({
            "leakage": "no",
            "code_block": "",
            "findings": ["The imputer, the scaler and the model are fitted inside the fold loop, on each fold's "
                         "fit rows only.",
                         "The test predictions are the mean of the fold models; nothing is refitted on all rows."],
        })

    def _debug(self, prompt: str) -> str:
        return _python_answer(self.script("logistic regression", **self._split_settings(prompt)))

    def _write_ablation(self, prompt: str) -> str:
        names = _blocks_of(_fenced_after(prompt, "## The script"))
        variants = [{"block": block, "description": description, "code": body}
                    for block, (description, body) in ABLATIONS.items() if block in names]
        return _json_answer(variants)

    def _summarize_ablation(self, prompt: str) -> str:
        results = re.findall(r"^- block `([^`]+)`:.*delta ([-+]?[0-9.e+-]+|n/a)\)\s*$",
                             _section(prompt, "Ablation results"), re.M)
        scored = [(block, float(delta)) for block, delta in results if delta != "n/a"]
        if scored:
            top, top_delta = max(scored, key=lambda r: r[1])
            first = f"The `{top}` block contributes most: its simpler variant changes the score by {top_delta:+.4g}."
        else:
            first = "No ablation variant produced a usable score, so no block can be singled out."
        return (f"{first} The other blocks change the ROC AUC by less, and differences below 0.005 are within "
                "the fold-to-fold noise of a few hundred rows. The model block remains the most promising target "
                "for refinement.")

    def _extract_block(self, prompt: str) -> str:
        names = _blocks_of(_fenced_after(prompt, "## The current solution"))
        block = "model" if "model" in names or not names else names[0]
        plan = REFINEMENTS[0].plan if block == "model" else f"Simplify and tidy the `{block}` block."
        return _json_answer({"block": block, "plan": plan,
                             "reason": f"The ablation shows that the `{block}` block moves the ROC AUC most."})

    def _plan_refinement(self, prompt: str) -> str:
        block = re.search(r"## The block to improve: `([^`]+)`", prompt)
        name = block.group(1) if block else "model"
        attempts = len(re.findall(r"^\s+-> ", _section(prompt, "Earlier attempts on this block"), re.M))
        if name == "model":
            return REFINEMENTS[(attempts + 1) % len(REFINEMENTS)].plan
        return (f"Attempt {attempts + 1} on the `{name}` block: keep its approach and names, and make it more "
                "robust to missing values. Everything stays fitted on each fold's fit rows only.")

    def _implement_refinement(self, prompt: str) -> str:
        m = re.search(r"Rewrite the body of the `([^`]+)` block", prompt)
        block = m.group(1) if m else "model"
        current = _fenced_after(prompt, f"## The block to rewrite: `{block}`")
        if current is None:
            code = _fenced_after(prompt, "## The current solution")
            current = get_block(code, block) if code and block in _blocks_of(code) else ""
        if block != "model":
            return _python_answer(current)
        plan = _section(prompt, "The plan")
        start = next((i for i, r in enumerate(REFINEMENTS) if r.key in plan),
                     zlib.crc32(plan.encode("utf-8")) % len(REFINEMENTS))
        for i in range(len(REFINEMENTS)):  # a setting different from the current one
            body = REFINEMENTS[(start + i) % len(REFINEMENTS)].body
            if body.strip() != current.strip():
                return _python_answer(body)
        raise AssertionError("unreachable")  # pragma: no cover

    def _plan_ensemble(self, prompt: str) -> str:
        attempts = len(re.findall(r"^\s+-> score", _section(prompt, "Earlier ensemble attempts"), re.M))
        return ENSEMBLE_PLANS[attempts % len(ENSEMBLE_PLANS)]

    def _implement_ensemble(self, prompt: str) -> str:
        plan = _section(prompt, "The plan")
        members = _solution_models(prompt)
        weights = _plan_weights(plan, len(members)) if members else None
        return _python_answer(self.ensemble_script(members, strategy=strategy_in(plan), weights=weights,
                                                   **self._split_settings(prompt)))
