"""Ensembles of refined solutions: plans (strategies in order of promise) and standalone scripts.

The engine scores each planned strategy in milliseconds on the solutions' stored out-of-fold
predictions (evaluation.py); the chosen one is then written out as a real script. That script
embeds each solution verbatim inside a function `solution_k()` (its own header and blocks become
that function's locals, so nothing collides and nothing is exec'd), which returns its
out-of-fold predictions on the run's folds and its test predictions; the ensemble block combines
them with the same code the engine used (`evaluation.ENSEMBLE_SOURCE`), so anything fitted
(weights, a stacker) is fitted on the other folds and the printed score is out-of-fold.
"""

from __future__ import annotations

import re
import textwrap

from ...evaluation import ENSEMBLE_SOURCE, ENSEMBLE_STRATEGIES
from ...model import EnsembleAttempt, SolutionSummary
from ...script import fence
from ..base import BrainContext
from .blocks import LOAD_CODE, SUBMISSION_CODE
from .plans import Settings, format_set_line, parse_set_line
from .templates import render_header

STRATEGIES: dict[str, str] = {name: text[0].upper() + text[1:] + "." for name, text in ENSEMBLE_STRATEGIES.items()}
DEFAULTS: Settings = {"strategy": "caruana", "weights": None}

_STRICT_SELECTION = """\
# Strict column selection: a listed column that is absent is an error worth seeing (the debugger fixes it).
X_all = train_df[FEATURE_COLS]
X_test = test_df[FEATURE_COLS] if test_df is not None else None
"""


def strategies_for(ctx: BrainContext) -> list[str]:
    order = ["caruana", "weights", "stacking"]
    if ctx.task.task_type == "binary" and ctx.task.metric in ("roc_auc", "gini"):
        order.append("rank_mean")
    return order + ["mean"]


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
            return (
                f"Ensemble {len(solutions)} solutions ({scores}). {STRATEGIES[strategy]}\n"
                f"{format_set_line({'strategy': strategy})}"
            )
    best = max(tried, key=lambda k: (tried[k] is not None, tried[k] if ctx.task.higher_is_better
                                     else -(tried[k] or 0.0)))
    return (
        f"Every strategy was tried ({', '.join(tried)}); keep the best one, {best}.\n"
        f"{format_set_line({'strategy': best})}"
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
    body = re.sub(r"^OOF_PATH = .*$", "OOF_PATH = None  # the ensemble writes oof.csv", body, flags=re.M)
    # The kept model: each solution keeps its fitted state in (and predicts from) a folder of its own.
    for name, env in (("MODEL_DIR", "MLESTAR_MODEL_DIR"), ("PREDICT_FROM", "MLESTAR_PREDICT_FROM")):
        body = re.sub(rf"^{name} = .*$",
                      f'{name} = os.path.join(os.environ["{env}"], "solution_{index}") '
                      f'if os.environ.get("{env}") else None',
                      body, flags=re.M)
    score = f"{solution.score:.6g}" if solution.score is not None else "unknown"
    doc = f"Solution {index} ({solution.label}, validation {score}), embedded verbatim."
    returns = 'return {"unit_preds": unit_preds, "test": TEST_PRED}'
    inner = f'"""{doc}"""\n' + body.rstrip("\n") + "\n" + returns + "\n"
    return (
        f"def solution_{index}():\n" + textwrap.indent(inner, "    ", lambda line: line.strip() != "") + "\n"
    )


ENSEMBLE_CODE = '''\
import contextlib
import io


def score_rows(pred_rows, rows):
    \"\"\"The metric on a subset of the out-of-fold positions, pooled (what weights and stackers are fitted on).\"\"\"
    try:
        value = float(compute_metric(Y_OOF[rows], metric_input(pred_rows)))
    except ValueError:  # e.g. rows without every class
        value = np.nan
    if not np.isfinite(value):
        return -np.inf if HIGHER_IS_BETTER else np.inf
    return value


UNITS = fold_units(TRAIN_ROWS, y_all)
HELD = np.concatenate([held for *_, held in UNITS])
Y_OOF = y_all[HELD]
# (fit, held) positions into the concatenated out-of-fold order: same repeat, other folds / this fold.
bounds = np.cumsum([0] + [len(held) for *_, held in UNITS])
UNIT_INDEX = []
for i, (r, _, _, _) in enumerate(UNITS):
    fit = np.concatenate([np.arange(bounds[j], bounds[j + 1]) for j, u in enumerate(UNITS) if u[0] == r and j != i]
                         or [np.array([], dtype=int)])
    UNIT_INDEX.append((fit.astype(int), np.arange(bounds[i], bounds[i + 1])))

outputs = []
for number, solution in enumerate(SOLUTIONS, start=1):
    with contextlib.redirect_stdout(io.StringIO()):  # each solution prints its own score line: keep only ours
        out = solution()
    if not PREDICT_FROM:
        if len(out["unit_preds"]) != len(UNITS):
            raise RuntimeError(f"solution {number} was validated on other folds; it cannot be ensembled")
        print(f"solution {number}: validation {METRIC} = {fold_mean_score(UNITS, out['unit_preds'], y_all):.6f}")
    outputs.append(out)
if PREDICT_FROM:
    # MLESTAR_PREDICT_FROM: each solution predicted with its kept fold models; the kept combiner joins them.
    combine = load_kept(PREDICT_FROM, "ensemble.pkl")
    unit_preds = []
    print("Predicted with the kept model: nothing was fitted")
else:
    members = [np.concatenate([np.asarray(p, dtype=float) for p in o["unit_preds"]]) for o in outputs]
    combined, combine = combine_out_of_fold(ENSEMBLE["strategy"], members, Y_OOF, UNIT_INDEX, score_rows,
                                            HIGHER_IS_BETTER, TASK_TYPE, max(1, N_CLASSES))
    if getattr(combine, "weights", None) is not None:
        print(f"weights (chosen on every out-of-fold row, used for the test): {np.round(combine.weights, 3).tolist()}")
    if MODEL_DIR:
        save_kept(combine, MODEL_DIR, "ensemble.pkl")
    unit_preds = [combined[bounds[i]:bounds[i + 1]] for i in range(len(UNITS))]
    write_oof(UNITS, unit_preds, TRAIN_ROWS)
    print(f"Final Validation Performance: {fold_mean_score(UNITS, unit_preds, y_all)!r}")
'''


PREDICT_ENSEMBLE = (
    SUBMISSION_CODE
    + """

TEST_PRED = None
if os.environ.get("MLESTAR_SUBMIT", "1") != "0" and test_df is not None and outputs[0]["test"] is not None:
    TEST_PRED = combine([o["test"] for o in outputs])  # each solution's test prediction: mean of its fold models
    write_test_pred(TEST_PRED)
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
        f"ENSEMBLE = {{'strategy': {settings['strategy']!r}, 'weights': {settings['weights']!r}}}"
        "  # weights: what the engine found (documentation); the code below refits them out of fold\n\n"
        + ENSEMBLE_SOURCE.strip() + "\n\n\n"
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
