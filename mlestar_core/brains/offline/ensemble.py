"""Ensembles of refined solutions: plans (strategies in order of promise) and standalone scripts.

The ensemble script embeds each solution verbatim inside a function `solution_k()` (its own
header and blocks become that function's locals, so nothing collides and nothing is exec'd).
Each returns its validation predictions on the shared split and its test predictions after a
refit on all rows; the ensemble block combines them. Anything fitted on the validation
predictions (weights, a stacker) is scored by K-fold over the validation rows, so the printed
score is out-of-fold, not the in-sample optimum.
"""

from __future__ import annotations

import re
import textwrap

from ...model import EnsembleAttempt, SolutionSummary
from ...script import fence
from ..base import BrainContext
from .blocks import LOAD_CODE, SUBMISSION_CODE
from .plans import Settings, format_set_line, parse_set_line
from .templates import render_header

STRATEGIES: dict[str, str] = {
    "mean": "Average the solutions' predictions (class probabilities for classification) with equal weights: "
    "no parameter is fitted, so the validation score is honest as it stands.",
    "weighted": "Weighted average with weights chosen on a grid over the simplex; the weights are chosen by "
    "K-fold inside the validation rows, so the score is out-of-fold.",
    "stacking": "Stacking: a linear meta-learner (LogisticRegression on log-probabilities / Ridge on values) "
    "over "
    "the solutions' validation predictions, scored by K-fold over the validation rows.",
    "rank_mean": "Rank averaging: mean of each solution's normalised ranks of P(positive); ROC-AUC only "
    "depends "
    "on the ordering, and ranks remove calibration differences between models.",
}
DEFAULTS: Settings = {"strategy": "mean", "folds": 5, "grid_step": 0.05, "weights": None}

_STRICT_SELECTION = """\
# Strict column selection: a listed column that is absent is an error worth seeing (the debugger fixes it).
X_all = train_df[FEATURE_COLS]
X_test = test_df[FEATURE_COLS] if test_df is not None else None
"""


def strategies_for(ctx: BrainContext) -> list[str]:
    order = ["mean", "weighted", "stacking"]
    if ctx.task.task_type == "binary" and ctx.task.metric == "roc_auc":
        order.append("rank_mean")
    return order


def plan(ctx: BrainContext, solutions: list[SolutionSummary], history: list[EnsembleAttempt]) -> str:
    tried: dict[str, float | None] = {}
    for h in history:
        try:
            tried[str(parse_set_line(h.plan).get("strategy", ""))] = h.score
        except ValueError:
            continue
    scores = ", ".join(
        f"{s.label}: {s.score:.6g}" if s.score is not None else f"{s.label}: no score" for s in solutions
    )
    for strategy in strategies_for(ctx):
        if strategy not in tried:
            settings: Settings = {"strategy": strategy}
            if strategy in ("weighted", "stacking"):
                settings["folds"] = 5
            if strategy == "weighted":
                settings["grid_step"] = 0.05
            return (
                f"Ensemble {len(solutions)} solutions ({scores}). {STRATEGIES[strategy]}\n"
                f"{format_set_line(settings)}"
            )
    # Everything was tried: refine the weighted average with a finer grid and more folds.
    return (
        f"Every strategy was tried ({', '.join(tried)}); re-run the weighted average with a finer grid and "
        f"more folds for a steadier choice of weights.\nSet: strategy='weighted', folds=10, grid_step=0.02"
    )


def read_plan(plan_text: str, n_solutions: int) -> Settings:
    settings = parse_set_line(plan_text)
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown ensemble setting(s) {sorted(unknown)}; known: {', '.join(DEFAULTS)}")
    out = {**DEFAULTS, **settings}
    out["strategy"] = str(out["strategy"]).strip().lower()
    if out["strategy"] not in STRATEGIES:
        raise ValueError(f"strategy={out['strategy']!r} is not known; choose one of {', '.join(STRATEGIES)}")
    if not isinstance(out["folds"], int) or not 2 <= out["folds"] <= 20:
        raise ValueError(f"folds takes a whole number between 2 and 20, not {out['folds']!r}")
    if not isinstance(out["grid_step"], (int, float)) or not 0.005 <= float(out["grid_step"]) <= 0.5:
        raise ValueError(f"grid_step takes a number between 0.005 and 0.5, not {out['grid_step']!r}")
    weights = out["weights"]
    if weights is not None:
        if (
            not isinstance(weights, (list, tuple))
            or len(weights) != n_solutions
            or not all(isinstance(w, (int, float)) and w >= 0 for w in weights)
            or sum(weights) <= 0
        ):
            raise ValueError(
                f"weights takes {n_solutions} non-negative numbers (one per solution), not {weights!r}"
            )
        out["weights"] = [float(w) for w in weights]
    return out


def embed(index: int, solution: SolutionSummary) -> str:
    """The solution's full script as the body of `solution_<index>()`, returning its predictions."""
    body = solution.code
    body = re.sub(r"^[ \t]*from __future__ import [^\n]*\n", "", body, flags=re.M)
    # The embedded fences must not look like blocks of the ensemble script.
    body = re.sub(
        r"^([ \t]*)# \[(end )?block: ([\w\-]+)\]", r"\1# --- \2solution block: \3 ---", body, flags=re.M
    )
    body = re.sub(
        r"^SUBMISSION_PATH = .*$",
        "SUBMISSION_PATH = None  # the ensemble writes the submission",
        body,
        flags=re.M,
    )
    score = f"{solution.score:.6g}" if solution.score is not None else "unknown"
    doc = f"Solution {index} ({solution.label}, validation {score}), embedded verbatim."
    returns = (
        'return {"valid_idx": np.asarray(valid_idx), "y_valid": np.asarray(y_valid), '
        '"valid": np.asarray(VALID_PRED, dtype=float),\n'
        '        "test": None if TEST_PRED is None else np.asarray(TEST_PRED, dtype=float)}'
    )
    inner = f'"""{doc}"""\n' + body.rstrip("\n") + "\n" + returns + "\n"
    return (
        f"def solution_{index}():\n" + textwrap.indent(inner, "    ", lambda line: line.strip() != "") + "\n"
    )


ENSEMBLE_CODE = '''\
import contextlib
import io
import itertools

from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold


def validation_score(y, pred):
    try:
        return compute_metric(y, metric_input(pred))
    except ValueError:  # e.g. a fold without every class
        return -np.inf if HIGHER_IS_BETTER else np.inf


def better(a, b):
    return b is None or (a > b if HIGHER_IS_BETTER else a < b)


def weighted_mean(preds, weights):
    weights = np.asarray(weights, dtype=float)
    return sum(w * p for w, p in zip(weights, preds)) / weights.sum()


def simplex_grid(n, step):
    """All weight vectors on the simplex with the given step (coarser when there are many solutions)."""
    units = int(round(1 / step))
    while units > 2 and len(list(itertools.combinations(range(units + n - 1), n - 1))) > 5000:
        units //= 2
    grid = []
    for cuts in itertools.combinations(range(units + n - 1), n - 1):  # stars and bars
        bounds = (-1,) + cuts + (units + n - 1,)
        grid.append(np.array([bounds[i + 1] - bounds[i] - 1 for i in range(n)], dtype=float) / units)
    return [w for w in grid if w.sum() > 0]


def best_weights(preds, y, rows):
    best, best_w = None, None
    for w in simplex_grid(len(preds), ENSEMBLE["grid_step"]):
        score = validation_score(y[rows], weighted_mean([p[rows] for p in preds], w))
        if better(score, best):
            best, best_w = score, w
    return best_w


def stack_features(preds):
    cols = []
    for p in preds:
        if TASK_TYPE == "regression":
            cols.append(p[:, None])
        elif TASK_TYPE == "binary":
            q = np.clip(p[:, 1], 1e-6, 1 - 1e-6)
            cols.append(np.log(q / (1 - q))[:, None])
        else:
            cols.append(np.log(np.clip(p, 1e-6, 1.0)))
    return np.hstack(cols)


def fit_stacker(features, y):
    meta = Ridge(alpha=1.0) if TASK_TYPE == "regression" else LogisticRegression(C=1.0, max_iter=2000)
    return meta.fit(features, y)


def apply_stacker(meta, features):
    if TASK_TYPE == "regression":
        return meta.predict(features)
    proba = np.zeros((len(features), N_CLASSES))
    proba[:, meta.classes_] = meta.predict_proba(features)
    return proba


def rank_mean(preds):
    ranks = [(rankdata(p[:, 1]) - 1) / max(1, len(p) - 1) for p in preds]
    r = np.mean(ranks, axis=0)
    return np.column_stack([1 - r, r])


def folds_of(y):
    n_folds = ENSEMBLE["folds"]
    if TASK_TYPE != "regression" and np.bincount(y).min() >= n_folds:
        return list(StratifiedKFold(n_folds, shuffle=True, random_state=SEED).split(np.zeros(len(y)), y))
    return list(KFold(n_folds, shuffle=True, random_state=SEED).split(np.zeros(len(y))))


def ensemble_validation(preds, y):
    """(out-of-fold or parameter-free validation prediction, combiner for the test predictions)."""
    strategy = ENSEMBLE["strategy"]
    if strategy == "mean" or len(preds) == 1:
        weights = ENSEMBLE["weights"] or [1.0] * len(preds)
        print(f"weights: {np.round(np.asarray(weights) / sum(weights), 3).tolist()}")
        return weighted_mean(preds, weights), lambda test: weighted_mean(test, weights)
    if strategy == "rank_mean":
        return rank_mean(preds), rank_mean
    oof = np.zeros_like(preds[0])
    if strategy == "weighted":
        for fit_rows, held_rows in folds_of(y):
            w = best_weights(preds, y, fit_rows)
            oof[held_rows] = weighted_mean([p[held_rows] for p in preds], w)
        final = best_weights(preds, y, np.arange(len(y)))
        print(f"weights (chosen on all validation rows, used for the test): {np.round(final, 3).tolist()}")
        return oof, lambda test: weighted_mean(test, final)
    features = stack_features(preds)
    for fit_rows, held_rows in folds_of(y):
        oof[held_rows] = apply_stacker(fit_stacker(features[fit_rows], y[fit_rows]), features[held_rows])
    meta = fit_stacker(features, y)
    return oof, lambda test: apply_stacker(meta, stack_features(test))


outputs = []
for number, solution in enumerate(SOLUTIONS, start=1):
    with contextlib.redirect_stdout(io.StringIO()):  # each solution prints its own score line: keep only ours
        out = solution()
    print(f"solution {number}: validation {METRIC} = {validation_score(out['y_valid'], out['valid']):.6f}")
    outputs.append(out)
for out in outputs[1:]:
    if not np.array_equal(out["valid_idx"], outputs[0]["valid_idx"]):
        raise RuntimeError("the solutions were validated on different rows; they cannot be ensembled")
y_valid = outputs[0]["y_valid"]
VALID_PRED, combine = ensemble_validation([o["valid"] for o in outputs], y_valid)
print(f"Final Validation Performance: {validation_score(y_valid, VALID_PRED)!r}")
'''


PREDICT_ENSEMBLE = (
    SUBMISSION_CODE
    + """

TEST_PRED = None
if os.environ.get("MLESTAR_SUBMIT", "1") != "0" and test_df is not None and outputs[0]["test"] is not None:
    TEST_PRED = combine([o["test"] for o in outputs])  # each solution was refit on every training row
    write_submission(TEST_PRED, "submission.csv")
"""
)


def render(ctx: BrainContext, solutions: list[SolutionSummary], settings: Settings) -> str:
    if not solutions:
        raise ValueError("an ensemble needs at least one solution")
    assert _STRICT_SELECTION in LOAD_CODE
    load = LOAD_CODE.replace(_STRICT_SELECTION, "")  # the solutions select their own columns
    funcs = "\n\n".join(embed(i, s) for i, s in enumerate(solutions, start=1))
    names = ", ".join(f"solution_{i}" for i in range(1, len(solutions) + 1))
    config = (
        f"ENSEMBLE = {{'strategy': {settings['strategy']!r}, 'folds': {settings['folds']!r}, "
        f"'grid_step': {settings['grid_step']!r}, 'weights': {settings['weights']!r}}}\n\n"
    )
    return "".join(
        [
            render_header(ctx),
            fence("load", load),
            "\n",
            fence("solutions", funcs + f"\nSOLUTIONS = [{names}]\n"),
            "\n",
            fence("ensemble", config + ENSEMBLE_CODE),
            "\n",
            fence("predict", PREDICT_ENSEMBLE),
        ]
    )
