"""Check and score submission files against known answers.

Scoring turns a submission into exactly the `y_pred` form metrics.py expects (labels encoded
0..k-1 in sorted class order, P(class 1) for binary probabilities, an (n, k) matrix for
multiclass probabilities) and runs the same metric source the generated scripts embed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import metrics
from .model import Task
from .task import label_str, normalize_ids, sorted_classes

ROW_COLUMN = "__row__"  # answers column holding the row position when the task has no id column


class SubmissionError(ValueError):
    """A submission that cannot be read or scored; the message says what is wrong."""


def prediction_columns(task: Task) -> list[str]:
    """The submission columns that hold predictions (everything but the id)."""
    return [c for c in task.submission_columns if c != task.id_column]


def read_submission(task: Task, path: str | Path) -> pd.DataFrame:
    """Read a submission CSV; unreadable files raise SubmissionError."""
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"no submission file at {path}")
    try:
        # Ids stay as written only through normalize_ids; pandas' default typing is fine here.
        return pd.read_csv(path, engine="c", low_memory=False)
    except pd.errors.EmptyDataError:
        raise SubmissionError(f"{path.name} is empty") from None
    except pd.errors.ParserError as e:
        raise SubmissionError(f"{path.name} is not a valid CSV: {str(e).strip()}") from None
    except UnicodeDecodeError:
        raise SubmissionError(f"{path.name} is not UTF-8 text") from None


def _examples(items: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(x) for x in list(items)[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def validate_submission(task: Task, submission_df: pd.DataFrame,
                        expected_ids_or_len: Sequence[Any] | pd.Series | int) -> list[str]:
    """Everything wrong with a submission (empty list = looks valid).

    `expected_ids_or_len` is either the test ids the rows must cover or just the row count.
    """
    problems: list[str] = []
    cols = [str(c) for c in submission_df.columns]
    missing = [c for c in task.submission_columns if c not in cols]
    extra = [c for c in cols if c not in task.submission_columns]
    if missing:
        problems.append(f"missing columns: {', '.join(missing)} "
                        f"(expected {', '.join(task.submission_columns)})")
    if extra:
        problems.append(f"unexpected columns: {', '.join(extra)}")

    if isinstance(expected_ids_or_len, int | np.integer):
        expected_ids = None
        n_expected = int(expected_ids_or_len)
    else:
        expected_ids = normalize_ids(expected_ids_or_len)
        n_expected = len(expected_ids)
    if len(submission_df) != n_expected:
        problems.append(f"{len(submission_df)} rows, expected {n_expected}")

    id_col = task.id_column
    if expected_ids is not None and id_col and id_col in cols and id_col in task.submission_columns:
        sub_ids = normalize_ids(submission_df[id_col])
        dup = pd.Series(sub_ids)[pd.Series(sub_ids).duplicated()].unique().tolist()
        if dup:
            problems.append(f"duplicate {id_col} values: {_examples(dup)}")
        have, want = set(sub_ids), set(expected_ids)
        absent = [i for i in expected_ids if i not in have]
        unknown = [i for i in dict.fromkeys(sub_ids) if i not in want]
        if absent:
            problems.append(f"{len(absent)} expected {id_col} values are missing: {_examples(absent)}")
        if unknown:
            problems.append(f"{len(unknown)} {id_col} values are not in the test set: {_examples(unknown)}")

    known = set(task.classes)
    for c in prediction_columns(task):
        if c not in cols:
            continue
        values = submission_df[c]
        n_nan = int(values.isna().sum())
        if n_nan:
            problems.append(f"column {c}: {n_nan} missing values (NaN)")
        if task.submission_kind == "label":
            bad = sorted({label_str(v) for v in values.dropna()} - known) if known else []
            if bad:
                problems.append(f"column {c}: labels not among the classes ({', '.join(task.classes)}): "
                                f"{_examples(bad)}")
            continue
        numeric = pd.to_numeric(values, errors="coerce")
        n_bad = int((numeric.isna() & values.notna()).sum())
        if n_bad:
            problems.append(f"column {c}: {n_bad} values are not numbers")
        if not np.isfinite(numeric.dropna().to_numpy(dtype=float)).all():
            problems.append(f"column {c}: infinite values")
        if task.submission_kind in ("proba_positive", "proba_per_class"):
            out = int(((numeric < 0) | (numeric > 1)).sum())
            if out:
                problems.append(f"column {c}: {out} probabilities outside [0, 1]")
    return problems


def _align(task: Task, sub: pd.DataFrame, answers: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Submission rows reordered to the answers' order (by id, else by row order), and y_true."""
    id_col = task.id_column
    # Align by id only when the submission format carries ids (some sample submissions do not).
    if id_col and id_col in answers.columns and id_col in task.submission_columns:
        if id_col not in sub.columns:
            raise SubmissionError(f"the submission has no {id_col!r} column")
        sub_ids = normalize_ids(sub[id_col])
        position: dict[str, int] = {}
        for i, v in enumerate(sub_ids):
            if v in position:
                raise SubmissionError(f"{id_col} {v!r} appears more than once in the submission")
            position[v] = i
        want = normalize_ids(answers[id_col])
        absent = [v for v in want if v not in position]
        if absent:
            raise SubmissionError(f"the submission lacks {len(absent)} of the {len(want)} {id_col} values, "
                                  f"e.g. {_examples(absent)}")
        sub = sub.iloc[[position[v] for v in want]]
    else:
        if ROW_COLUMN in answers.columns:
            answers = answers.sort_values(ROW_COLUMN, kind="stable")
        if len(sub) != len(answers):
            raise SubmissionError(f"the submission has {len(sub)} rows, expected {len(answers)}")
    return sub.reset_index(drop=True), answers[task.target].reset_index(drop=True)


def _numbers(sub: pd.DataFrame, col: str) -> np.ndarray:
    values = pd.to_numeric(sub[col], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise SubmissionError(f"column {col}: {int((~np.isfinite(values)).sum())} values are missing, "
                              "not numbers or infinite")
    return values


def score_submission(task: Task, submission_df: pd.DataFrame, answers_df: pd.DataFrame) -> float:
    """The task metric of a submission against the answers; raises SubmissionError if unscorable."""
    pred_cols = prediction_columns(task)
    missing = [c for c in pred_cols if c not in submission_df.columns]
    if missing:
        raise SubmissionError(f"the submission lacks column(s) {', '.join(missing)}")
    sub, y_raw = _align(task, submission_df, answers_df)
    fn = metrics.metric_function(task.metric, task.task_type)
    if task.task_type == "regression":
        y_true = pd.to_numeric(y_raw, errors="coerce").to_numpy(dtype=float)
        return float(fn(y_true, _numbers(sub, pred_cols[0])))

    order = sorted_classes(task.classes)
    index = {c: i for i, c in enumerate(order)}
    try:
        y_true = np.array([index[label_str(v)] for v in y_raw], dtype=int)
    except KeyError as e:
        raise SubmissionError(f"answer label {e.args[0]!r} is not one of the task classes") from None
    k = len(order)
    binary = task.task_type == "binary"

    # First the submission's own form: labels, a P(positive) vector or a per-class matrix.
    labels: np.ndarray | None = None
    proba: np.ndarray | None = None
    if task.submission_kind == "proba_positive":
        proba = _numbers(sub, pred_cols[0])
    elif task.submission_kind == "proba_per_class":
        proba = np.zeros((len(sub), k))
        for col, cls in zip(pred_cols, task.classes, strict=False):
            proba[:, index[cls]] = _numbers(sub, col)
        if binary:
            proba = proba[:, 1]
    else:
        raw = [label_str(v) for v in sub[pred_cols[0]]]
        unknown = sorted({v for v in raw if v not in index})
        if unknown:
            raise SubmissionError(f"column {pred_cols[0]}: labels not among the classes "
                                  f"({', '.join(order)}): {_examples(unknown)}")
        labels = np.array([index[v] for v in raw], dtype=int)

    # Then the form the metric needs.
    if metrics.get_metric(task.metric).needs == "label":
        if labels is None:
            assert proba is not None
            labels = (proba >= 0.5).astype(int) if proba.ndim == 1 else proba.argmax(axis=1)
        return float(fn(y_true, labels))
    if proba is None:
        assert labels is not None
        # A hard label is a probability of 1 for that class.
        proba = labels.astype(float) if binary else np.eye(k)[labels]
    return float(fn(y_true, proba))
