"""Prompt templates of the LLM brains: one markdown file per MLE-STAR role in `prompts/`.

A template is plain text with named `{placeholders}` (literal braces doubled, `{{ }}`), filled
with `str.format_map`. `render` is strict: a missing field raises `PromptError` naming every
missing field, an unknown role is refused. `task_fields` (or `context_fields`, from a
BrainContext) builds the fields every role shares from a `Task`, the user's pinned constraints
and the script limits, among them `{protocol}` (the engine's evaluation protocol of
docs/protocol.md, spelled out for this task) and `{packages}` (the ML packages installed for the
interpreter that runs the scripts). No network, no store, no model calls; the one side effect
is the cached package probe of `environment_info`.
"""

from __future__ import annotations

import os
import string
import sys
from pathlib import Path
from typing import Any

from . import metrics
from .environment_info import describe_environment, installed_packages
from .model import AblationResult, AttemptSummary, EnsembleAttempt, SolutionSummary, Task
from .task import describe_task, sorted_classes

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"

# One template per Brain method (mlestar_core/brains/base.py), named after it.
ROLES: tuple[str, ...] = (
    "retrieve_models",
    "write_initial_solution",
    "merge",
    "check_data_usage",
    "check_leakage",
    "debug",
    "write_ablation",
    "summarize_ablation",
    "extract_block",
    "plan_refinement",
    "implement_refinement",
    "plan_ensemble",
    "implement_ensemble",
)

_KIND_TEXT = {
    "label": "the predicted class label (spelled as in the training data)",
    "value": "the predicted numeric value",
    "proba_positive": "the predicted probability of the positive class",
    "proba_per_class": "one probability column per class, each row summing to 1",
}
_TYPE_TEXT = {
    "binary": "binary classification",
    "multiclass": "multiclass classification",
    "regression": "regression",
}


class PromptError(ValueError):
    """A template that cannot be rendered: unknown role, missing fields or a malformed template."""


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise PromptError(f"unknown prompt role {role!r}; roles: {', '.join(ROLES)}")


def load_template(role: str) -> str:
    """The raw template text of `role` (prompts/<role>.md)."""
    _check_role(role)
    path = PROMPTS_DIR / f"{role}.md"
    if not path.is_file():
        raise PromptError(f"no template for role {role!r}: {path} is missing")
    return path.read_text(encoding="utf-8")


def placeholders(template: str) -> set[str]:
    """The field names a template asks for (`{name}`; doubled braces are literal text)."""
    names: set[str] = set()
    try:
        for _literal, field, _spec, _conv in string.Formatter().parse(template):
            if field is None:
                continue
            if not field.isidentifier():
                raise PromptError(f"placeholder {{{field}}} is not a plain name; double literal braces")
            names.add(field)
    except ValueError as e:  # unbalanced single brace
        raise PromptError(f"malformed template: {e}; double literal braces as {{{{ }}}}") from None
    return names


class _StrictFields(dict):
    def __missing__(self, key: str) -> Any:
        raise KeyError(key)


def render(role: str, **fields: Any) -> str:
    """The prompt of `role` with every placeholder filled; PromptError names missing fields."""
    template = load_template(role)
    missing = sorted(placeholders(template) - fields.keys())
    if missing:
        raise PromptError(f"prompt {role!r} is missing field(s): {', '.join(missing)}")
    try:
        return template.format_map(_StrictFields(fields))
    except KeyError as e:  # defensive: placeholders() and format_map disagree
        raise PromptError(f"prompt {role!r} is missing field(s): {e.args[0]}") from None
    except (ValueError, IndexError) as e:
        raise PromptError(f"prompt {role!r} could not be rendered: {e}") from None


def format_constraints(constraints: list[str]) -> str:
    """The user's pinned constraints as a bulleted list, or "none"."""
    items = [c.strip() for c in constraints if c and c.strip()]
    return "\n".join(f"- {c}" for c in items) if items else "none"


def input_files(task: Task) -> list[str]:
    """The files a script may read under ./input/, training table first."""
    files = [task.train_file]
    if task.test_file:
        files.append(task.test_file)
    if task.sample_submission_file:
        files.append(task.sample_submission_file)
    files.extend(task.other_files)
    return [Path(f).name if Path(f).is_absolute() else f for f in dict.fromkeys(files)]


def submission_format(task: Task) -> str:
    """What ./submission.csv must hold, in words."""
    cols = ", ".join(f"`{c}`" for c in task.submission_columns) or f"`{task.target}`"
    text = f"a CSV with columns {cols} (in this order); the prediction is {_KIND_TEXT[task.submission_kind]}"
    if task.id_column:
        text += f"; one row per `{task.id_column}` of the test set, ids copied from it"
    else:
        text += "; one row per test row, in test-set order"
    if task.task_type != "regression" and task.classes:
        text += f"; classes: {', '.join(task.classes)}"
        if task.positive_class is not None:
            text += f" (positive class {task.positive_class!r})"
    if task.sample_submission_file:
        text += f"; `{Path(task.sample_submission_file).name}` in ./input/ shows the exact layout"
    return text + "."


DEFAULT_TIMEOUT = 300.0  # seconds per script (RunConfig.script_timeout)
DEFAULT_MEMORY_MB = 4096  # address-space cap per script (RunConfig.memory_mb)
BIG_DATA_ROWS = 100_000  # above this many training rows the protocol asks for subsampling
_MAX_LISTED_CLASSES = 100  # more class labels than this are described, not listed


def task_fields(task: Task, constraints: list[str], *, seed: int = 42, valid_fraction: float = 0.2,
                timeout: float | None = None, memory_mb: int | None = None, cores: int | None = None,
                python: str | None = None, n_folds: int | None = None,
                n_repeats: int | None = None) -> dict[str, str]:
    """The fields every role template shares, as text.

    The keyword arguments after `valid_fraction` only shape `{protocol}` and `{packages}`:
    `timeout` (seconds per script), `memory_mb` (memory cap per script), `cores` (threads a
    script may use, its `MLESTAR_THREADS`), `python` (the interpreter that runs the scripts),
    `n_folds` / `n_repeats` (the run's folds, when known). None means the default: 300 s,
    4096 MB, os.cpu_count(), sys.executable, and "read K from folds.csv".
    """
    m = metrics.get_metric(task.metric)
    return {
        "task_name": task.name,
        "task_description": task.description.strip() or "(no description was provided)",
        "data_summary": describe_task(task),
        "metric": f"{m.title} (`{task.metric}`)",
        "direction": "higher is better" if m.higher_is_better else "lower is better",
        "target": task.target,
        "task_type": _TYPE_TEXT.get(task.task_type, task.task_type),
        "submission_format": submission_format(task),
        "input_files": ", ".join(f"`{f}`" for f in input_files(task)),
        "constraints": format_constraints(constraints),
        "seed": str(seed),
        "valid_fraction": str(valid_fraction),
        "packages": packages_text(python),
        "protocol": protocol_text(task, seed=seed, valid_fraction=valid_fraction, timeout=timeout,
                                  memory_mb=memory_mb, cores=cores, python=python, n_folds=n_folds,
                                  n_repeats=n_repeats),
    }


def context_fields(ctx: Any, **extra: Any) -> dict[str, Any]:
    """`task_fields` for a BrainContext, merged with `extra` (the role's own fields).

    Reads `ctx.task`, `ctx.constraints`, `ctx.seed` and `ctx.valid_fraction`, and, when the
    context has them, `ctx.n_folds`, `ctx.n_repeats`, `ctx.script_timeout` (seconds),
    `ctx.memory_mb`, `ctx.threads` (cores per script) and `ctx.python` (the scripts'
    interpreter); a missing attribute or None means the default of `task_fields`.
    """
    fields = task_fields(ctx.task, ctx.constraints, seed=ctx.seed, valid_fraction=ctx.valid_fraction,
                         timeout=getattr(ctx, "script_timeout", None),
                         memory_mb=getattr(ctx, "memory_mb", None),
                         cores=getattr(ctx, "threads", None),
                         python=getattr(ctx, "python", None),
                         n_folds=getattr(ctx, "n_folds", None),
                         n_repeats=getattr(ctx, "n_repeats", None))
    return {**fields, **extra}


def packages_text(python: str | None = None) -> str:
    """The ML packages installed for the scripts' interpreter, with versions (`{packages}`)."""
    return describe_environment(python or sys.executable)


def prediction_columns(task: Task) -> list[str]:
    """The prediction columns of oof.csv / test_pred.csv: `prediction` for regression, else the
    class labels in encoded order (index i is class code i of `compute_metric`)."""
    if task.task_type == "regression":
        return ["prediction"]
    return sorted_classes(task.classes)


def _metric_input_text(task: Task, m: metrics.Metric, cols: list[str]) -> str:
    """What compute_metric is given for one fold, for this task."""
    if task.task_type == "regression":
        return ("`y_true` = the fold's target values, `y_pred` = the predicted values (the `prediction` "
                "column).")
    if cols and len(cols) <= _MAX_LISTED_CLASSES:
        codes = ", ".join(f"`{c}` → {i}" for i, c in enumerate(cols))
    else:
        codes = "the class labels in sorted order → 0..k-1"
    y_true = f"`y_true` = the fold's targets as class codes ({codes})"
    if m.needs == "label":
        return (f"{y_true}; `y_pred` = predicted class codes, the arg-max of the class-probability "
                "columns (`valid_pred.argmax(axis=1)`). The engine, too, takes the arg-max of the class "
                "columns of `oof.csv`: to use a tuned decision threshold (tuned on fit rows only), shift "
                "the probabilities so that their arg-max gives the thresholded class.")
    if task.task_type == "binary":
        positive = f"`{cols[-1]}`" if cols else "the positive class"
        return (f"{y_true}; `y_pred` = the predicted probability of class {positive} (code 1), i.e. "
                "`valid_pred[:, 1]` with the columns in the order above.")
    return (f"{y_true}; `y_pred` = the (n, k) matrix of class probabilities, columns in the order above, "
            "each row summing to 1.")


def _metric_arg(task: Task, m: metrics.Metric) -> str:
    """The expression turning a fold's prediction array `valid_pred` into compute_metric's y_pred."""
    if task.task_type == "regression":
        return "valid_pred[:, 0]"
    if m.needs == "label":
        return "valid_pred.argmax(axis=1)"
    return "valid_pred[:, 1]" if task.task_type == "binary" else "valid_pred"


def _fast_learners(packages: dict[str, str]) -> str:
    """Histogram-based boosting learners among the installed packages."""
    learners = []
    if "scikit-learn" in packages:
        learners.append("scikit-learn's `HistGradientBoosting*`")
    if "lightgbm" in packages:
        learners.append("LightGBM")
    if "xgboost" in packages:
        learners.append('XGBoost with `tree_method="hist"`')
    if not learners:
        return "histogram-based boosting if an installed package offers it"
    return "histogram-based boosting (" + ", ".join(learners) + ")"


def _folds_text(n_folds: int | None, n_repeats: int | None) -> str:
    if not n_folds:
        return "K and the number of repeats come from the file: read them, do not assume them."
    repeats = max(1, int(n_repeats or 1))
    if n_folds == 1:
        text = "This run uses one hold-out split (validated rows fold 0, the others fold -1)"
    else:
        text = f"This run uses K = {n_folds} folds"
    text += f", repeated {repeats} times" if repeats > 1 else ", one repetition"
    fits = int(n_folds) * repeats
    return text + f": {fits} fit{'s' if fits != 1 else ''} per script. Still read them from the file."


def protocol_text(task: Task, *, seed: int = 42, valid_fraction: float = 0.2, timeout: float | None = None,
                  memory_mb: int | None = None, cores: int | None = None, python: str | None = None,
                  n_folds: int | None = None, n_repeats: int | None = None) -> str:
    """The engine's evaluation protocol (docs/protocol.md) for this task, as a prompt section.

    Shared by every code-writing role (`{protocol}`): folds.csv, per-fold training, the metric
    and how it is called, the exact oof.csv / test_pred.csv / submission.csv contents, the
    environment variables, the limits, large-data advice, the sandbox, the installed packages
    and a sketch of the fold loop. Arguments as in `task_fields`.
    """
    timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
    memory_mb = DEFAULT_MEMORY_MB if memory_mb is None else int(memory_mb)
    cores = max(1, int(cores)) if cores else max(1, os.cpu_count() or 1)
    python = python or sys.executable
    m = metrics.get_metric(task.metric)
    direction = "higher is better" if m.higher_is_better else "lower is better"
    files = input_files(task)
    cols = prediction_columns(task)
    classify = task.task_type != "regression"
    listed = not classify or 0 < len(cols) <= _MAX_LISTED_CLASSES
    col_text = ",".join(cols) if listed else "<one column per class label>"
    has_test = bool(task.test_file)

    if not classify:
        columns_rule = "one column `prediction` holding the predicted value (finite numbers)"
    else:
        names = (f"exactly {', '.join(f'`{c}`' for c in cols)}" if listed
                 else "one per class of the training target")
        columns_rule = (f"one column per class, named by the class label as text, {names} (labels as written "
                        "in the train file; `1`, `1.0` and `\"1\"` are the same label); each holds the "
                        "predicted probability of that class, in [0, 1], each row summing to 1; keep every "
                        "class column even when a class is absent from a fold's fit rows (probability 0)")

    lines = [
        "## Evaluation protocol (the engine scores a script from the files it writes, not from what it prints)",
        "",
        "### Folds: `./input/folds.csv`",
        "The engine writes `./input/folds.csv` before the script runs, and every script of this run gets the "
        "same file, so scores are compared fold by fold. Always train and validate on these folds; never "
        "make your own split of the training rows (no `train_test_split`, `KFold`, … for validation).",
        f"- Columns `repeat,row,fold`. `row` is the 0-based position of a data row in `./input/{files[0]}` "
        "(header excluded). Only rows with a target appear; rows that do not appear are never trained or "
        "scored on.",
        "- `fold` ≥ 0 is the fold in which the row is validated; `fold = -1` marks a row that is only ever "
        f"trained on (used when a single hold-out split, validating {valid_fraction:g} of the rows, replaces "
        "the K folds on large data).",
        "- `repeat` numbers repeated K-fold (0 when there is one repetition). "
        + _folds_text(n_folds, n_repeats),
        "",
        "### Training: one model per (repeat, fold)",
        "For each repeat r and each fold k ≥ 0 of that repeat, the fit rows are the rows of repeat r whose "
        "fold is not k (fold -1 rows included) and the validation rows are those whose fold is k. Fit "
        "everything on the fit rows only: imputers, scalers, encoders, target or group statistics, feature "
        "selection, the model, and early stopping (with an inner split of the fit rows, never the "
        "validation fold). Then predict the validation rows, and the test rows when submitting. Never fit "
        "anything on validation or test rows, and never use the target or anything derived from it as a "
        "feature.",
        "",
        f"### Metric: {m.title} (`{task.metric}`), {direction}",
        "The engine scores with exactly this function (the metric code grading uses). Embed it verbatim and "
        "call it once per (repeat, fold) on that fold's validation predictions:",
        "```python",
        metrics.metric_source(task.metric, task.task_type).rstrip(),
        "```",
        "It takes " + _metric_input_text(task, m, cols),
        "Print the mean over all (repeat, fold) of these per-fold values exactly once, as the line "
        "`Final Validation Performance: <score>` (a plain number). The engine recomputes the same figure "
        "from `oof.csv`; the printed number is only the script's claim: a disagreement is recorded and the "
        "engine's number counts.",
        "",
        "### Files the script writes (in its working folder `./`, nowhere else)",
        f"- `oof.csv`, always: columns `repeat,row,{col_text}`; exactly one line per (`repeat`, `row`) of "
        "folds.csv with fold ≥ 0 (no missing, extra or duplicated lines; any order), predicted by the model "
        "of that row's fold, which never saw the row.",
        f"- Prediction columns: {columns_rule}.",
    ]
    if has_test:
        lines.append(
            f"- When submitting (`MLESTAR_SUBMIT`, below): `test_pred.csv` with columns `row,{col_text}`, "
            "one line per test row (`row` = 0-based position in the test file), holding the average of the "
            "test predictions of all the (repeat, fold) models (no refit on all rows); and "
            f"`./submission.csv`, made from those averaged predictions: {submission_format(task)}")
    else:
        lines.append("- This task has no test file: write neither `test_pred.csv` nor `./submission.csv`.")
    lines += [
        "- A missing, unreadable or misaligned `oof.csv`, a missing class column, NaN or infinite values, or "
        "probabilities outside [0, 1] fail the script, whatever it prints.",
        "",
        "### Environment variables (read them exactly like this)",
        f'- `SEED = int(os.environ.get("MLESTAR_SEED", {seed}))`: the model seed; pass it to every random '
        "state. It does not change the folds.",
        '- `SUBMIT = os.environ.get("MLESTAR_SUBMIT", "1") != "0"`: only when true, predict the test file '
        "and write `test_pred.csv` and `./submission.csv`; when false, skip the test file entirely.",
        f'- `THREADS = int(os.environ.get("MLESTAR_THREADS", {cores}))`: the cores to use; pass it as '
        "`n_jobs` / `nthread` / `thread_count` / `num_threads` (never -1).",
        '- `MODEL_DIR = os.environ.get("MLESTAR_MODEL_DIR")` (set while the final solution runs): when set, after '
        "the fold loop save into that folder everything predicting new rows needs (every fitted fold model, the "
        "fitted imputers, encoders and feature steps, a tuned threshold or ensemble weights), e.g. "
        '`os.makedirs(MODEL_DIR, exist_ok=True); joblib.dump(state, os.path.join(MODEL_DIR, "model.joblib"))`. '
        "Save nothing else there, and define the functions and classes those objects use at the top level of the "
        "script (not inside a function), so that loading them finds them.",
        '- `PREDICT_FROM = os.environ.get("MLESTAR_PREDICT_FROM")`: when set, fit nothing: load that state from '
        "the folder, predict the test file (it then holds new rows) exactly as the fold models predict the test "
        "rows in a normal run (same averaging, same threshold), write `test_pred.csv` and `./submission.csv`, and "
        "write no `oof.csv` (no validation score either). The engine runs this same script for that, in the "
        "sandbox; a script that ignores these two variables still works, but every prediction of new rows then "
        "refits it.",
        "",
        "### Limits",
        f"- Time: the whole script (every fold, plus the test predictions) is killed after {timeout:g} s. "
        "Each of the (repeat, fold) fits gets only a share of that; aim to finish within half the limit.",
        f"- Memory: {memory_mb} MB of address space for the script's process (threads and the virtual memory "
        "that libraries reserve count too); beyond it the script dies.",
        f"- Cores: {cores} (`MLESTAR_THREADS`).",
        "",
        "### Large data",
        f"If the training file has more than {BIG_DATA_ROWS:,} rows: search features and settings on a "
        "subsample of the fit rows, use fewer boosting rounds with a higher learning rate, prefer "
        f"{_fast_learners(installed_packages(python))}, and never load more than needed (only the columns "
        "used, compact dtypes such as float32, no duplicate copies of big frames). Every validation row and "
        "every test row is still predicted.",
    ]
    if task.n_train_rows > BIG_DATA_ROWS:
        lines.append(f"This task's training file has about {task.n_train_rows:,} rows: this applies.")
    lines += [
        "",
        "### Sandbox",
        f"- Read only from `./input/` ({', '.join(f'`{f}`' for f in files)} and `folds.csv`); write only "
        "into the working folder `./`. No other paths, no downloads, no network access, no `pip install`.",
        "- Never call `exit()`, `quit()`, `sys.exit()` or `os._exit()`, and do not hide errors in "
        "`try:`/`except:`; let them raise so they can be debugged.",
        "",
        "### Installed packages (of the interpreter that runs the script)",
        packages_text(python) + " Import nothing that is not installed.",
        "",
        "### Sketch of the fold loop (adapt it; in a fenced script the loop belongs in the `train` block, the "
        "test averaging and the files in `predict`)",
        "```python",
        f'SEED = int(os.environ.get("MLESTAR_SEED", {seed}))',
        f'THREADS = int(os.environ.get("MLESTAR_THREADS", {cores}))',
        'SUBMIT = os.environ.get("MLESTAR_SUBMIT", "1") != "0"',
        f"PRED_COLUMNS = {cols!r}" if listed else "PRED_COLUMNS = CLASS_LABELS  # sorted class labels, as text",
        "# y: numpy array of the target, " + ("as class codes (the position of its label in PRED_COLUMNS)"
                                               if classify else "as numbers"),
        'folds = pd.read_csv("./input/folds.csv")',
        "oof_parts, fold_scores, test_preds = [], [], []",
        'for r in sorted(folds["repeat"].unique()):',
        '    in_repeat = folds[folds["repeat"] == r]',
        '    for k in sorted(in_repeat.loc[in_repeat["fold"] >= 0, "fold"].unique()):',
        '        fit_rows = in_repeat.loc[in_repeat["fold"] != k, "row"].to_numpy()',
        '        valid_rows = in_repeat.loc[in_repeat["fold"] == k, "row"].to_numpy()',
        "        # fit every step on train.iloc[fit_rows] only, then predict train.iloc[valid_rows]:",
        "        # valid_pred, an array of shape (len(valid_rows), len(PRED_COLUMNS))",
        f"        fold_scores.append(compute_metric(y[valid_rows], {_metric_arg(task, m)}))",
        "        part = pd.DataFrame(valid_pred, columns=PRED_COLUMNS)",
        '        part.insert(0, "row", valid_rows)',
        '        part.insert(0, "repeat", r)',
        "        oof_parts.append(part)",
    ]
    if has_test:
        lines += [
            "        if SUBMIT:",
            "            test_preds.append(test_pred)  # the same fitted model on the test rows, same shape",
        ]
    lines += [
        'pd.concat(oof_parts).to_csv("oof.csv", index=False)',
        'print(f"Final Validation Performance: {np.mean(fold_scores)}")',
    ]
    if has_test:
        lines += [
            "if SUBMIT:",
            "    averaged = pd.DataFrame(np.mean(test_preds, axis=0), columns=PRED_COLUMNS)",
            '    averaged.insert(0, "row", np.arange(len(averaged)))',
            '    averaged.to_csv("test_pred.csv", index=False)',
            "    # and ./submission.csv from the averaged predictions, in the task's submission format",
        ]
    lines.append("```")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Role inputs as prompt text
# ----------------------------------------------------------------------------------------------


def _num(value: float | None) -> str:
    return "failed (no score)" if value is None else f"{value:.6g}"


def format_ablation_results(results: list[AblationResult]) -> str:
    """One line per ablation variant: block, what it did, score, baseline, delta."""
    if not results:
        return "none"
    return "\n".join(
        f"- block `{r.block}`: {r.description} -> score {_num(r.score)} "
        f"(baseline {_num(r.baseline)}, delta {'n/a' if r.delta is None else f'{r.delta:+.6g}'})"
        for r in results
    )


def format_attempts(history: list[AttemptSummary]) -> str:
    """Earlier inner-loop attempts on one block, numbered."""
    if not history:
        return "none yet (this is the first attempt)"
    lines = []
    for i, a in enumerate(history, 1):
        outcome = f"score {_num(a.score)} vs baseline {_num(a.baseline)}" if a.ok else "failed to run"
        lines.append(f"{i}. {a.plan.strip()}\n   -> {outcome}")
    return "\n".join(lines)


def format_ensemble_history(history: list[EnsembleAttempt]) -> str:
    """Earlier ensemble plans with their scores, numbered."""
    if not history:
        return "none yet (this is the first attempt)"
    return "\n".join(f"{i}. {a.plan.strip()}\n   -> score {_num(a.score)}" for i, a in enumerate(history, 1))


def format_solutions(solutions: list[SolutionSummary]) -> str:
    """Each solution with its validation score and full code."""
    if not solutions:
        return "none"
    return "\n\n".join(
        f"### Solution {s.label} (validation score {_num(s.score)})\n```python\n{s.code.rstrip()}\n```"
        for s in solutions
    )


def format_blocks(names: list[str]) -> str:
    """A list of block names as text, or "none"."""
    return ", ".join(f"`{n}`" for n in names) if names else "none"


_DEBUG_ADVICE = {
    "timeout": ("- The script was killed because it ran out of time: the cure is to make it faster, not to keep it "
                "as it is. Cut the expensive parts: fewer boosting rounds or trees (with early stopping on the fit "
                "rows), a subsample for any hyper-parameter search or drop the search, fewer or cheaper "
                "features, `n_jobs`/threads set to THREADS. Keep every fold; never drop the protocol to save time."),
    "cpu": ("- The script used up its CPU time: make it cheaper (fewer rounds or trees, a subsample for any "
            "search, cheaper features), keeping every fold."),
    "memory": ("- The script was killed for using too much memory: make it leaner. Read only the columns needed "
               "with compact dtypes (float32, category), avoid dense copies of wide or one-hot data (use sparse "
               "matrices), free intermediate frames, lower model sizes (max_bin, depth, trees), no in-memory "
               "duplication per fold. Keep every fold."),
    "disk": ("- The script wrote too much to disk: write only `oof.csv`, `test_pred.csv` and `./submission.csv` (and "
             "the fitted state in MLESTAR_MODEL_DIR when it is set); no caches, checkpoints or copies of the data."),
}


def debug_advice(failure: str) -> str:
    """What the debugger is told to do, by how the script failed: a crash wants the smallest fix, a script
    killed for time or memory wants to become cheaper (the smallest fix would be killed again)."""
    return _DEBUG_ADVICE.get(failure, "- Find the cause of the error and fix it with the smallest change; keep the "
                                      "rest of the script and its approach as they are. Do not remove "
                                      "functionality to silence the error.")
