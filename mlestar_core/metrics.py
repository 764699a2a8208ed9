"""Metric registry: name -> direction, what prediction it needs, and its source code.

One source of truth: each metric is written once as Python source (`metric_source`), which
generated scripts embed verbatim and which this module executes for in-process scoring
(locked hold-out, baselines). So a script's printed score and the app's grading cannot drift.

Conventions inside scripts: classification targets are label-encoded to 0..k-1 in sorted
class order; `y_pred` is a label vector for "label" metrics, P(class 1) for binary "proba"
metrics, an (n, k) matrix for multiclass "proba" metrics, and numbers for regression.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Needs = Literal["label", "proba", "value"]


@dataclass(frozen=True)
class Metric:
    name: str
    title: str
    higher_is_better: bool
    needs: Needs
    task_types: tuple[str, ...]
    aliases: tuple[str, ...]  # phrases that name it in a task description (lower case)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("accuracy", "Accuracy", True, "label", ("binary", "multiclass"),
               ("accuracy", "classification accuracy", "categorization accuracy")),
        Metric("roc_auc", "ROC-AUC", True, "proba", ("binary", "multiclass"),
               ("roc auc", "roc-auc", "auc-roc", "auc roc", "area under the roc curve",
                "area under the receiver operating characteristic", "auc", "rocauc", "roc_auc")),
        Metric("log_loss", "Log loss", False, "proba", ("binary", "multiclass"),
               ("log loss", "logloss", "log-loss", "logarithmic loss", "cross-entropy",
                "cross entropy", "multi-class logarithmic loss", "log_loss")),
        Metric("f1", "F1 score", True, "label", ("binary", "multiclass"),
               ("f1 score", "f1-score", "f1", "f-score", "f1_score", "macro f1", "mean f1")),
        Metric("rmsle", "RMSLE", False, "value", ("regression",),
               ("root mean squared logarithmic error", "root mean square logarithmic error",
                "rmsle", "root mean squared log error")),
        Metric("rmse", "RMSE", False, "value", ("regression",),
               ("root mean squared error", "root mean square error", "rmse", "root-mean-square")),
        Metric("mae", "MAE", False, "value", ("regression",), ("mean absolute error", "mae")),
        Metric("mape", "MAPE", False, "value", ("regression",),
               ("mean absolute percentage error", "mape")),
        Metric("r2", "R²", True, "value", ("regression",),
               ("coefficient of determination", "r-squared", "r squared", "r2", "r²", "r^2")),
    ]
}

DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "rmse"}

_SOURCES: dict[str, str] = {
    "accuracy": """
def compute_metric(y_true, y_pred):
    from sklearn.metrics import accuracy_score
    return float(accuracy_score(y_true, y_pred))
""",
    "roc_auc": """
def compute_metric(y_true, y_pred):
    import numpy as np
    from sklearn.metrics import roc_auc_score
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2:
        return float(roc_auc_score(y_true, y_pred, multi_class="ovr", average="macro",
                                   labels=list(range(y_pred.shape[1]))))
    return float(roc_auc_score(y_true, y_pred))
""",
    "log_loss": """
def compute_metric(y_true, y_pred):
    import numpy as np
    from sklearn.metrics import log_loss
    y_pred = np.clip(np.asarray(y_pred, dtype=float), 1e-15, 1 - 1e-15)
    if y_pred.ndim == 2:
        y_pred = y_pred / y_pred.sum(axis=1, keepdims=True)
        return float(log_loss(y_true, y_pred, labels=list(range(y_pred.shape[1]))))
    return float(log_loss(y_true, y_pred, labels=[0, 1]))
""",
    "f1": """
def compute_metric(y_true, y_pred):
    from sklearn.metrics import f1_score
    return float(f1_score(y_true, y_pred, average={average!r}))
""",
    "rmse": """
def compute_metric(y_true, y_pred):
    import numpy as np
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))
""",
    "rmsle": """
def compute_metric(y_true, y_pred):
    import numpy as np
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    y_pred = np.clip(y_pred, 0, None)  # RMSLE is undefined below -1; predictions below 0 never help
    return float(np.sqrt(np.mean((np.log1p(y_true) - np.log1p(y_pred)) ** 2)))
""",
    "mae": """
def compute_metric(y_true, y_pred):
    import numpy as np
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    return float(np.mean(np.abs(y_true - y_pred)))
""",
    "mape": """
def compute_metric(y_true, y_pred):
    import numpy as np
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    denom = np.maximum(np.abs(y_true), np.finfo(float).eps)
    return float(np.mean(np.abs(y_true - y_pred) / denom))
""",
    "r2": """
def compute_metric(y_true, y_pred):
    from sklearn.metrics import r2_score
    return float(r2_score(y_true, y_pred))
""",
}


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        known = ", ".join(sorted(METRICS))
        raise ValueError(f"unknown metric {name!r}; known metrics: {known}") from None


def metric_source(name: str, task_type: str) -> str:
    """Self-contained source of `compute_metric(y_true, y_pred)` for this metric and task type."""
    get_metric(name)
    average = "binary" if task_type == "binary" else "macro"
    return _SOURCES[name].replace("{average!r}", repr(average)).strip() + "\n"


def metric_function(name: str, task_type: str) -> Callable[[Any, Any], float]:
    namespace: dict[str, Any] = {}
    exec(compile(metric_source(name, task_type), f"<metric {name}>", "exec"), namespace)  # noqa: S102
    return namespace["compute_metric"]


def is_better(a: float | None, b: float | None, higher_is_better: bool) -> bool:
    """True if score a beats score b; None (no score) always loses, ties are not better."""
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return False
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return True
    return a > b if higher_is_better else a < b


def improvement(new: float | None, old: float | None, higher_is_better: bool) -> float | None:
    """Signed gain of new over old, positive when new is better."""
    if new is None or old is None:
        return None
    return (new - old) if higher_is_better else (old - new)


def best_index(scores: list[float | None], higher_is_better: bool) -> int | None:
    best: int | None = None
    for i, s in enumerate(scores):
        if is_better(s, scores[best] if best is not None else None, higher_is_better):
            best = i
    return best


# A heading that opens the evaluation section of a Kaggle-style description.
_EVAL_HEADING = re.compile(
    r"^[ \t]{0,3}(?:#{1,6}[ \t]*|\*\*|__)?[ \t]*"
    r"(?:evaluation(?:[ \t]+(?:metrics?|criteria|criterion|method))?|metrics?|scoring)"
    r"[ \t]*(?:\*\*|__|:)?[ \t]*$",
    re.I | re.M,
)
# Where that section ends: the next markdown heading or a typical plain-text Kaggle heading.
_NEXT_HEADING = re.compile(
    r"^[ \t]{0,3}(?:#{1,6}[ \t]+\S|(?:\*\*)?(?:submission file|submission format|timeline|prizes|"
    r"citation|data(?:set)? description|acknowledg\w*|files)\b)",
    re.I | re.M,
)
# Words that mark a sentence as talking about how submissions are judged ("score" is left out on
# purpose: it is part of the alias "f1 score" and would make every F1 mention look relevant).
_EVAL_CUE = re.compile(r"evaluat|scored|graded|judged|metric|leaderboard")


def _metric_hits(low: str) -> list[tuple[int, int, str]]:
    """(position, -alias length, metric) for every alias mention in normalised lower-case text."""
    hits: list[tuple[int, int, str]] = []
    for metric in METRICS.values():
        for alias in metric.aliases:
            words = re.sub(r"[-_]", " ", alias).split()
            pattern = r"(?<![a-z0-9])" + r"\s+".join(re.escape(w) for w in words) + r"(?![a-z0-9])"
            for m in re.finditer(pattern, low):
                # "PR AUC" / "precision recall AUC" is another metric, not ROC-AUC.
                before = low[max(0, m.start() - 20) : m.start()]
                if alias == "auc" and re.search(r"(?:pr|precision recall)\s+$", before):
                    continue
                hits.append((m.start(), -len(words), metric.name))
    return hits


def _pick(hits: list[tuple[int, int, str]], low: str) -> str:
    """The earliest mention (longest alias at that spot); RMSE of logarithms is RMSLE."""
    pos, _, name = min(hits)
    if name == "rmse":
        sentence = re.split(r"[.!?\n]", low[pos : pos + 250], maxsplit=1)[0]
        if re.search(r"logarithm|\blog of\b|\blog\(", sentence):
            return "rmsle"
    return name


def find_metric_in_text(text: str) -> str | None:
    """The metric a description names, or None.

    Preference: the first mention inside an "Evaluation" section; else the first mention in a
    sentence about evaluation ("submissions are evaluated on ..."); else the first mention.
    """
    # Hyphens and underscores become spaces (same length, so positions stay valid):
    # "Root-Mean-Squared-Error", "roc_auc" and "multi-class" then match the plain aliases.
    low = re.sub(r"[-_]", " ", text.lower())
    hits = _metric_hits(low)
    if not hits:
        return None
    for heading in _EVAL_HEADING.finditer(low):
        body_start = heading.end()
        nxt = _NEXT_HEADING.search(low, body_start + 1)
        body_end = nxt.start() if nxt else len(low)
        in_section = [h for h in hits if body_start <= h[0] < body_end]
        if in_section:
            return _pick(in_section, low)
    sentence_hits = []
    for h in hits:
        start = max(low.rfind(c, 0, h[0]) for c in ".!?\n") + 1
        ends = [i for i in (low.find(c, h[0]) for c in ".!?\n") if i >= 0]
        sentence = low[start : min(ends) if ends else len(low)]
        if _EVAL_CUE.search(sentence):
            sentence_hits.append(h)
    return _pick(sentence_hits or hits, low)
