"""A scripted expert: deterministic, valid answers to every MLE-STAR role for `demo_tasks/breast-cancer`.

The answers follow the "Answer format" of each prompt template (prompts/*.md) exactly, and the
scripts really run (binary target `malignant`, id column `id`, 30 numeric measurements, ROC AUC).
Every script shares one shape, so any block body the expert writes fits any script it wrote:

- `load` defines `train`, `test` (None when ./input/test.csv is absent) and `feature_columns`;
- `preprocess` defines `make_preprocessor()` (an unfitted transformer);
- `features` defines `add_features(frame)` (row-wise, nothing fitted);
- `model` defines `model` (an unfitted classifier with `predict_proba`);
- `train` splits, fits on the training part and prints the score; `predict` refits on all rows
  and writes ./submission.csv unless `MLESTAR_SUBMIT` is "0".
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
               "clf = RandomForestClassifier(n_estimators=100, random_state=42).fit(X_train, y_train)\n"
               "proba = clf.predict_proba(X_valid)[:, 1]"),
    _ModelSpec("Gradient boosting (sklearn.ensemble.GradientBoostingClassifier)", "gbdt",
               "Boosted shallow trees are the usual winners on small numeric tabular data.",
               "from sklearn.ensemble import GradientBoostingClassifier\n"
               "clf = GradientBoostingClassifier(random_state=42).fit(X_train, y_train)\n"
               "proba = clf.predict_proba(X_valid)[:, 1]"),
    _ModelSpec("Extra trees (sklearn.ensemble.ExtraTreesClassifier)", "forest",
               "Extremely randomised trees reduce variance further than a random forest on a few hundred rows.",
               "from sklearn.ensemble import ExtraTreesClassifier\n"
               "clf = ExtraTreesClassifier(n_estimators=100, random_state=42).fit(X_train, y_train)\n"
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
              "model = RandomForestClassifier(n_estimators=100, random_state=SEED, n_jobs=1)\n",
    "extra": "from sklearn.ensemble import ExtraTreesClassifier\n\n"
             "model = ExtraTreesClassifier(n_estimators=100, random_state=SEED, n_jobs=1)\n",
    "boosting": "from sklearn.ensemble import GradientBoostingClassifier\n\n"
                "model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=SEED)\n",
}

ENSEMBLE_MODEL_BODY = """from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression

# Soft voting with equal weights: the average of the two models' predicted probabilities.
model = VotingClassifier(
    estimators=[
        ("logistic", LogisticRegression(C=1.0, max_iter=2000, random_state=SEED)),
        ("forest", RandomForestClassifier(n_estimators=100, random_state=SEED, n_jobs=1)),
    ],
    voting="soft",
)
"""

HEADER = """import os

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

SEED = int(os.environ.get("MLESTAR_SEED", {seed}))
VALID_FRACTION = {valid_fraction}
TARGET = "malignant"
ID_COLUMN = "id"
"""

LOAD_BODY = """train = pd.read_csv("./input/train.csv")
test = pd.read_csv("./input/test.csv") if os.path.exists("./input/test.csv") else None
feature_columns = [c for c in train.columns if c not in (ID_COLUMN, TARGET)]
"""

PREPROCESS_BODY = """from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def make_preprocessor():
    # Median imputation and standard scaling; fitted only on the rows passed to .fit().
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
y_all = train[TARGET].astype(int)
X_train, X_valid, y_train, y_valid = train_test_split(
    X_all, y_all, test_size=VALID_FRACTION, random_state=SEED, stratify=y_all
)
preprocessor = make_preprocessor().fit(X_train)
fitted_model = clone(model).fit(preprocessor.transform(X_train), y_train)
valid_proba = fitted_model.predict_proba(preprocessor.transform(X_valid))[:, 1]
score = roc_auc_score(y_valid, valid_proba)
print(f"Final Validation Performance: {score:.6f}")
"""

PREDICT_BODY = """if os.environ.get("MLESTAR_SUBMIT", "1") != "0" and test is not None:
    final_preprocessor = make_preprocessor().fit(X_all)
    final_model = clone(model).fit(final_preprocessor.transform(X_all), y_all)
    test_proba = final_model.predict_proba(final_preprocessor.transform(add_features(test)))[:, 1]
    submission = pd.DataFrame({ID_COLUMN: test[ID_COLUMN].to_numpy(), TARGET: test_proba})
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
                "Replace the estimator with shallow gradient boosting (100 trees of depth 2, learning rate 0.1). "
                "Boosted trees capture interactions between the nuclear measurements that a single model misses. "
                "Everything is still fitted on the training part only, so the validation ROC AUC stays honest.",
                "from sklearn.ensemble import GradientBoostingClassifier\n\n"
                "model = GradientBoostingClassifier(n_estimators=100, learning_rate=0.1, max_depth=2, "
                "random_state=SEED)\n"),
    _Refinement("random forest with min_samples_leaf=2",
                "Use a random forest with min_samples_leaf=2 (100 trees). Larger leaves smooth the predicted "
                "probabilities, which helps ROC AUC on a few hundred rows. The seed stays SEED.",
                "from sklearn.ensemble import RandomForestClassifier\n\n"
                "model = RandomForestClassifier(n_estimators=100, min_samples_leaf=2, random_state=SEED, "
                "n_jobs=1)\n"),
    _Refinement("stronger L2 regularisation",
                "Use logistic regression with stronger L2 regularisation (C=0.3). The measurements are highly "
                "correlated, and shrinking the coefficients should rank unseen tumours more reliably.",
                "from sklearn.linear_model import LogisticRegression\n\n"
                "model = LogisticRegression(C=0.3, max_iter=2000, random_state=SEED)\n"),
    _Refinement("extra trees",
                "Switch to extra trees (100 extremely randomised trees). Random split thresholds lower the variance "
                "of the probability estimates on this small data set.",
                "from sklearn.ensemble import ExtraTreesClassifier\n\n"
                "model = ExtraTreesClassifier(n_estimators=100, random_state=SEED, n_jobs=1)\n"),
    _Refinement("weaker L2 regularisation",
                "Use logistic regression with weaker L2 regularisation (C=3.0). The scaled measurements separate "
                "the classes well, so a less constrained linear boundary may rank tumours better.",
                "from sklearn.linear_model import LogisticRegression\n\n"
                "model = LogisticRegression(C=3.0, max_iter=2000, random_state=SEED)\n"),
    _Refinement("subsampled gradient boosting",
                "Use subsampled gradient boosting (100 trees of depth 3, learning rate 0.05, subsample 0.8). "
                "Row subsampling adds regularisation to the boosted trees and usually improves ROC AUC.",
                "from sklearn.ensemble import GradientBoostingClassifier\n\n"
                "model = GradientBoostingClassifier(n_estimators=100, learning_rate=0.05, max_depth=3, "
                "subsample=0.8, random_state=SEED)\n"),
)

ENSEMBLE_PLANS: tuple[str, ...] = (
    "Average the predicted probabilities of a logistic regression and a random forest with equal weights. "
    "Both models are fitted on the same training part and scored on the shared validation rows. "
    "Averaging a linear and a tree model combines two different views of the measurements.",
    "Soft-vote the logistic regression and the random forest again, keeping equal weights. "
    "Equal weights need no tuning on the validation rows, so the reported score stays honest. "
    "The refit on all training rows writes the submission.",
    "Keep the equal-weight probability average of the linear and the forest model. "
    "The earlier attempts show that the average is robust, and no weight is fitted on validation rows.",
)

_M = re.compile(r"List the (\d+) machine-learning models")
_SEED = re.compile(r"MLESTAR_SEED\", (\d+)\)")
_VALID = re.compile(r"VALID_FRACTION = ([0-9.]+)")


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


class ScriptedExpert:
    """Answers every role's prompt deterministically, in the format its template asks for."""

    def answer(self, role: str, prompt: str) -> str:
        if role not in ROLES:
            raise ValueError(f"the scripted expert has no answer for role {role!r}")
        handler: Callable[[str], str] = getattr(self, f"_{role}")
        return handler(prompt)

    # ------------------------------------------------------------------ scripts

    def script(self, model_name: str, *, seed: int = 42, valid_fraction: float = 0.2) -> str:
        """The complete solution script for a model name (logistic / forest / extra / else boosting)."""
        return self._assemble(MODEL_BODIES[_model_key(model_name)], seed, valid_fraction)

    def ensemble_script(self, *, seed: int = 42, valid_fraction: float = 0.2) -> str:
        """The complete script averaging a logistic regression's and a random forest's probabilities."""
        return self._assemble(ENSEMBLE_MODEL_BODY, seed, valid_fraction)

    @staticmethod
    def _assemble(model_body: str, seed: int, valid_fraction: float) -> str:
        bodies = {"load": LOAD_BODY, "preprocess": PREPROCESS_BODY, "features": FEATURES_BODY,
                  "model": model_body, "train": TRAIN_BODY, "predict": PREDICT_BODY}
        head = HEADER.format(seed=seed, valid_fraction=valid_fraction)
        return head + "".join("\n" + fence(name, bodies[name]) for name in BLOCK_ORDER)

    @staticmethod
    def _split_settings(prompt: str) -> dict[str, Any]:
        seed = _SEED.search(prompt)
        valid = _VALID.search(prompt)
        return {"seed": int(seed.group(1)) if seed else 42,
                "valid_fraction": float(valid.group(1).rstrip(".")) if valid else 0.2}

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
                         "test.csv is used for the submission and sample_submission.csv only shows its layout."],
        })

    def _check_leakage(self, prompt: str) -> str:
        return _json_answer({
            "leakage": "no",
            "code_block": "",
            "findings": ["The imputer, the scaler and the model are fitted on the training part only.",
                         "Fitting on all training rows happens only in the final refit for the submission."],
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
                "the noise of a 91-row validation split. The model block remains the most promising target for "
                "refinement.")

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
                "robust to missing values. Everything stays fitted on the training part only.")

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
        return _python_answer(self.ensemble_script(**self._split_settings(prompt)))
