"""Metric registry: name -> direction, what prediction it needs, and its source code.

One source of truth: each metric is written once as Python source (`metric_source`), which
generated scripts embed verbatim and which this module executes for in-process scoring
(locked hold-out, baselines). So a script's printed score and the app's grading cannot drift.
Every metric is computed by `sklearn.metrics`; the source adds shape checks around it.

Conventions inside scripts: classification targets are label-encoded to 0..k-1 in sorted
class order; `y_pred` is a label vector for "label" metrics, P(class 1) for binary "proba"
metrics, an (n, k) matrix for multiclass "proba" metrics, and numbers for regression.

Shape checks (in the embedded source, so scripts and the engine share them): `y_true` must be
1-D; an (n, 1) `y_pred` column is flattened; for binary "proba" metrics an (n, 2) matrix gives
its column 1; every other shape mismatch raises ValueError instead of broadcasting, and so do
NaN or infinite predictions. Metric-specific adjustments: RMSLE clips negative predictions at 0;
log loss clips probabilities to [1e-15, 1 - 1e-15] and rescales multiclass rows to sum to 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

Needs = Literal["label", "proba", "value"]

_CLS = ("binary", "multiclass")
_REG = ("regression",)


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
        # --- classification: class labels ---
        Metric("accuracy", "Accuracy", True, "label", _CLS,
               ("accuracy", "classification accuracy", "categorization accuracy", "accuracy score")),
        Metric("balanced_accuracy", "Balanced accuracy", True, "label", _CLS,
               ("balanced accuracy", "balanced accuracy score", "balanced classification accuracy")),
        Metric("f1", "F1 score", True, "label", _CLS,  # binary F1 on binary tasks, macro F1 on multiclass
               ("f1 score", "f1-score", "f1", "f-score", "f1_score", "mean f1", "f measure", "f1 measure")),
        Metric("f1_macro", "Macro F1", True, "label", _CLS,
               ("macro f1", "macro f1 score", "macro-averaged f1", "macro-averaged f1 score",
                "macro average f1", "macro-average f1", "f1 macro", "macro f-score", "macro-averaged f-score")),
        Metric("f1_micro", "Micro F1", True, "label", _CLS,
               ("micro f1", "micro f1 score", "micro-averaged f1", "micro-averaged f1 score",
                "micro average f1", "micro-average f1", "f1 micro", "micro f-score", "micro-averaged f-score")),
        Metric("f1_weighted", "Weighted F1", True, "label", _CLS,
               ("weighted f1", "weighted f1 score", "weighted-averaged f1", "weighted-average f1",
                "weighted average f1", "f1 weighted", "weighted f-score")),
        Metric("mcc", "Matthews correlation coefficient", True, "label", _CLS,
               ("matthews correlation coefficient", "matthews correlation", "matthews' correlation coefficient",
                "matthews's correlation coefficient", "mcc")),
        Metric("qwk", "Quadratic weighted kappa", True, "label", _CLS,
               ("quadratic weighted kappa", "quadratically weighted kappa", "quadratic kappa", "qwk",
                "quadratic weighted cohen's kappa", "quadratic weighted cohen kappa",
                "cohen's kappa with quadratic weights", "cohen's quadratic weighted kappa")),
        # --- classification: probabilities ---
        Metric("roc_auc", "ROC-AUC", True, "proba", _CLS,
               ("roc auc", "roc-auc", "auc-roc", "auc roc", "area under the roc curve",
                "area under the receiver operating characteristic", "auc", "rocauc", "roc_auc", "auroc")),
        Metric("pr_auc", "PR-AUC (average precision)", True, "proba", _CLS,
               ("pr auc", "pr-auc", "auc-pr", "auc pr", "precision recall auc", "precision-recall auc",
                "area under the precision-recall curve", "area under the precision recall curve",
                "average precision", "average precision score", "auprc", "prauc", "aucpr", "pr_auc")),
        Metric("gini", "Normalized Gini", True, "proba", ("binary",),
               ("gini", "normalized gini", "normalised gini", "gini coefficient", "normalized gini coefficient",
                "normalised gini coefficient", "gini score", "normalized gini index")),
        Metric("log_loss", "Log loss", False, "proba", _CLS,
               ("log loss", "logloss", "log-loss", "logarithmic loss", "cross-entropy",
                "cross entropy", "multi-class logarithmic loss", "log_loss")),
        # --- regression ---
        Metric("rmsle", "RMSLE", False, "value", _REG,
               ("root mean squared logarithmic error", "root mean square logarithmic error",
                "rmsle", "root mean squared log error")),
        Metric("rmse", "RMSE", False, "value", _REG,
               ("root mean squared error", "root mean square error", "rmse", "root-mean-square")),
        Metric("mse", "MSE", False, "value", _REG, ("mean squared error", "mean square error", "mse")),
        Metric("mae", "MAE", False, "value", _REG, ("mean absolute error", "mae")),
        Metric("mape", "MAPE", False, "value", _REG,
               ("mean absolute percentage error", "mape")),
        Metric("r2", "R²", True, "value", _REG,
               ("coefficient of determination", "r-squared", "r squared", "r2", "r²", "r^2")),
    ]
}

DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "rmse"}

# ----------------------------------------------------------------------------------------------
# Metric source: one self-contained function per metric and task type
# ----------------------------------------------------------------------------------------------

# Every source opens with these lines (y_true 1-D; an (n, 1) y_pred column is a vector) ...
_SOURCE_HEAD = '''\
def compute_metric(y_true, y_pred):
    """__DOC__

    __DOC2__
    """
    import numpy as np
    from sklearn.metrics import __IMPORTS__

    y_true = np.asarray(y_true)
    if y_true.ndim != 1:
        raise ValueError(f"compute_metric: y_true must be a 1-D vector, got shape {y_true.shape}")
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2 and y_pred.shape[1] == 1:
        y_pred = y_pred[:, 0]  # an (n, 1) column is the same vector
'''

_NAN_CHECK = '''\
    if not np.isfinite(y_pred).all():
        raise ValueError(f"compute_metric: y_pred holds {int((~np.isfinite(y_pred)).sum())} NaN or "
                         "infinite values; every row needs a finite prediction")
'''

# ... then the checks for the form of y_pred the metric takes ...
_CHECKS = {
    "value": '''\
    if y_pred.shape != y_true.shape:
        raise ValueError(f"compute_metric: y_pred must be a vector of {len(y_true)} numbers, one per "
                         f"y_true row; got shape {y_pred.shape}")
    y_true, y_pred = y_true.astype(float), y_pred.astype(float)
''' + _NAN_CHECK + '''\
    if not np.isfinite(y_true).all():
        raise ValueError("compute_metric: y_true holds NaN or infinite values")
''',
    "label": '''\
    if y_pred.shape != y_true.shape:
        hint = " (for a class-probability matrix pass its argmax)" if y_pred.ndim == 2 else ""
        raise ValueError(f"compute_metric: y_pred must be a vector of {len(y_true)} class labels, one per "
                         f"y_true row; got shape {y_pred.shape}{hint}")
    if y_pred.dtype.kind in "fc":
        n_bad = int((~np.isfinite(y_pred)).sum())
    elif y_pred.dtype.kind == "O":
        n_bad = sum(v is None or v != v for v in y_pred.tolist())
    else:
        n_bad = 0
    if n_bad:
        raise ValueError(f"compute_metric: y_pred holds {n_bad} NaN or missing labels; every row needs a class")
''',
    "proba_binary": '''\
    if y_pred.ndim == 2 and y_pred.shape[1] == 2:
        y_pred = y_pred[:, 1]  # an (n, 2) probability matrix: column 1 is P(class 1)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"compute_metric: y_pred must be a vector of {len(y_true)} probabilities of class 1 "
                         f"(or an (n, 2) matrix), one per y_true row; got shape {y_pred.shape}")
    y_pred = y_pred.astype(float)
''' + _NAN_CHECK,
    "proba_multiclass": '''\
    if y_pred.ndim != 2 or y_pred.shape[0] != len(y_true) or y_pred.shape[1] < 2:
        raise ValueError(f"compute_metric: y_pred must be an (n, k) matrix of class probabilities with "
                         f"n = {len(y_true)} rows and one column per class; got shape {y_pred.shape}")
    y_pred = y_pred.astype(float)
''' + _NAN_CHECK + '''\
    k = y_pred.shape[1]
    y_true = y_true.astype(int)
    if len(y_true) and (y_true.min() < 0 or y_true.max() >= k):
        raise ValueError(f"compute_metric: y_true must hold class codes 0..{k - 1}, one per column of "
                         f"y_pred; found codes {y_true.min()}..{y_true.max()}")
''',
}

# ... and finally the sklearn call: name -> (sklearn.metrics imports, body). Proba metrics have a
# binary and a multiclass body ("name/multiclass").
_BODIES: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy_score", "    return float(accuracy_score(y_true, y_pred))\n"),
    "balanced_accuracy": ("balanced_accuracy_score",
                          "    return float(balanced_accuracy_score(y_true, y_pred))\n"),
    "f1": ("f1_score", "    return float(f1_score(y_true, y_pred, average={average!r}))\n"),
    "f1_macro": ("f1_score", "    return float(f1_score(y_true, y_pred, average='macro'))\n"),
    "f1_micro": ("f1_score", "    return float(f1_score(y_true, y_pred, average='micro'))\n"),
    "f1_weighted": ("f1_score", "    return float(f1_score(y_true, y_pred, average='weighted'))\n"),
    "mcc": ("matthews_corrcoef", "    return float(matthews_corrcoef(y_true, y_pred))\n"),
    "qwk": ("cohen_kappa_score", '''\
    codes = np.concatenate([y_true, y_pred]).astype(float)
    if len(codes) and ((codes < 0).any() or (codes != np.round(codes)).any()):
        raise ValueError("compute_metric: quadratic weighted kappa needs class codes 0..k-1 (whole numbers) "
                         "in y_true and y_pred")
    # The weights grow with the squared distance between class codes (sorted class order), over the
    # full range 0..max code, so a class missing from both vectors does not shift the distances.
    labels = list(range(int(codes.max()) + 1)) if len(codes) else None
    return float(cohen_kappa_score(y_true.astype(int), y_pred.astype(int), labels=labels,
                                   weights="quadratic"))
'''),
    "roc_auc": ("roc_auc_score", "    return float(roc_auc_score(y_true, y_pred))\n"),
    "roc_auc/multiclass": ("roc_auc_score", '''\
    # One-vs-rest AUC per class, macro-averaged.
    return float(roc_auc_score(y_true, y_pred, multi_class="ovr", average="macro", labels=list(range(k))))
'''),
    "pr_auc": ("average_precision_score", "    return float(average_precision_score(y_true, y_pred))\n"),
    "pr_auc/multiclass": ("average_precision_score", '''\
    # One-vs-rest average precision per class, macro-averaged over the classes present in y_true
    # (average precision is undefined for a class without positives).
    present = [c for c in range(k) if (y_true == c).any()]
    return float(np.mean([average_precision_score(y_true == c, y_pred[:, c]) for c in present]))
'''),
    "gini": ("roc_auc_score", '''\
    # Normalized Gini coefficient = 2 * ROC-AUC - 1.
    return float(2 * roc_auc_score(y_true, y_pred) - 1)
'''),
    "log_loss": ("log_loss", '''\
    y_pred = np.clip(y_pred, 1e-15, 1 - 1e-15)  # a confident miss costs a lot, but not infinity
    return float(log_loss(y_true, y_pred, labels=[0, 1]))
'''),
    "log_loss/multiclass": ("log_loss", '''\
    y_pred = np.clip(y_pred, 1e-15, 1 - 1e-15)  # a confident miss costs a lot, but not infinity
    y_pred = y_pred / y_pred.sum(axis=1, keepdims=True)  # rows rescaled to sum to 1
    return float(log_loss(y_true, y_pred, labels=list(range(k))))
'''),
    "rmsle": ("root_mean_squared_log_error", '''\
    # Negative predictions are clipped at 0: RMSLE is undefined at or below -1, and for a target
    # that is never negative a prediction below 0 never helps.
    y_pred = np.clip(y_pred, 0, None)
    return float(root_mean_squared_log_error(y_true, y_pred))
'''),
    "rmse": ("root_mean_squared_error", "    return float(root_mean_squared_error(y_true, y_pred))\n"),
    "mse": ("mean_squared_error", "    return float(mean_squared_error(y_true, y_pred))\n"),
    "mae": ("mean_absolute_error", "    return float(mean_absolute_error(y_true, y_pred))\n"),
    "mape": ("mean_absolute_percentage_error", '''\
    # A fraction (0.1 = 10%); a true value of 0 is divided by machine epsilon, as sklearn does.
    return float(mean_absolute_percentage_error(y_true, y_pred))
'''),
    "r2": ("r2_score", "    return float(r2_score(y_true, y_pred))\n"),
}

_PRED_TEXT = {
    "value": "y_pred: one number per row",
    "label": "y_pred: one class code per row",
    "proba_binary": "y_pred: P(class 1) per row (or an (n, 2) matrix)",
    "proba_multiclass": "y_pred: an (n, k) matrix of class probabilities",
}


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        known = ", ".join(sorted(METRICS))
        raise ValueError(f"unknown metric {name!r}; known metrics: {known}") from None


def metric_source(name: str, task_type: str) -> str:
    """Self-contained source of `compute_metric(y_true, y_pred)` for this metric and task type."""
    m = get_metric(name)
    multiclass = task_type == "multiclass"
    if multiclass and "multiclass" not in m.task_types:
        raise ValueError(f"metric {name!r} is defined for {', '.join(m.task_types)} tasks, not multiclass")
    layout = m.needs if m.needs != "proba" else ("proba_multiclass" if multiclass else "proba_binary")
    imports, body = _BODIES.get(f"{name}/multiclass" if multiclass else name, _BODIES[name])
    direction = "higher is better" if m.higher_is_better else "lower is better"
    target = "a number per row" if m.needs == "value" else "class codes 0..k-1"
    head = (_SOURCE_HEAD.replace("__DOC__", f"{m.title}, {direction}.")
            .replace("__DOC2__", f"y_true: {target}; {_PRED_TEXT[layout]}.")
            .replace("__IMPORTS__", imports))
    average = "binary" if task_type == "binary" else "macro"
    body = body.replace("{average!r}", repr(average))
    return head + _CHECKS[layout] + body


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


# ----------------------------------------------------------------------------------------------
# Finding the metric a task description names
# ----------------------------------------------------------------------------------------------

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


# Metrics descriptions name that this tool cannot compute: (name shown to the user, regular
# expression on the normalised lower-case text, weak). A weak pattern is an everyday word as well
# ("dice", "pearson"), so it only counts inside an evaluation section or sentence.
_UNSUPPORTED: tuple[tuple[str, str, bool], ...] = (
    ("MAP@k", r"mean\s+average\s+precision(?:\s*@\s*(?:k|\d+))?", False),
    ("MAP@k", r"map\s*@\s*(?:k|\d+)|mapk", False),
    ("SMAPE", r"smape|symmetric\s+mean\s+absolute\s+percentage\s+error", False),
    ("Dice", r"(?:s[øo]rensen\s+)?dice\s+(?:coefficient|score|similarity|index|metric)|s[øo]rensen\s+dice",
     False),
    ("Dice", r"dice", True),
    ("IoU", r"m?iou|intersection\s+over\s+union|jaccard(?:\s+(?:index|score|similarity))?", False),
    ("BLEU", r"bleu(?:\s+score)?", False),
    ("NDCG", r"ndcg|normali[sz]ed\s+discounted\s+cumulative\s+gain", False),
    ("Spearman correlation", r"spearman(?:'s)?\s+(?:rank\s+)?(?:correlation|rho)", False),
    ("Spearman correlation", r"spearman(?:'s)?", True),
    ("Pearson correlation", r"pearson(?:'s)?\s+(?:correlation|r)", False),
    ("Pearson correlation", r"pearson(?:'s)?", True),
    ("MSLE", r"mean\s+squared\s+(?:logarithmic|log)\s+error|msle", False),
    # Unweighted or linearly weighted kappa; "kappa" in a sentence that says "quadratic" is QWK.
    ("Cohen's kappa without quadratic weights", r"(?:cohen(?:'s|s)?\s+)?kappa|linear(?:ly)?\s+weighted\s+kappa",
     False),
)
_KAPPA = _UNSUPPORTED[-1][0]


class _Hit(NamedTuple):
    start: int
    end: int
    name: str  # a METRICS key, or an unsupported metric's display name
    supported: bool
    weak: bool


def _bounded(pattern: str) -> re.Pattern[str]:
    return re.compile(r"(?<![a-z0-9])(?:" + pattern + r")(?![a-z0-9])")


def _alias_pattern(alias: str) -> str:
    words = re.sub(r"[-_]", " ", alias).split()
    return r"\s+".join(re.escape(w) for w in words)


_PATTERNS: list[tuple[re.Pattern[str], str, bool, bool]] = [
    (_bounded(p), m.name, True, False)
    for m in METRICS.values()
    for p in dict.fromkeys(_alias_pattern(a) for a in m.aliases)
] + [(_bounded(p), name, False, weak) for name, p, weak in _UNSUPPORTED]


def _normalise(text: str) -> str:
    """Lower case; hyphens, dashes and underscores become spaces and curly apostrophes straight ones.

    Every replacement keeps the length, so positions stay valid: "Root-Mean-Squared-Error",
    "roc_auc" and "multi-class" then match the plain aliases.
    """
    return re.sub(r"[-_\u2010\u2011\u2012\u2013\u2014]", " ", text.lower()).replace("\u2019", "'")


def _metric_hits(low: str) -> list[_Hit]:
    """Every metric mention in normalised text; a mention inside a longer one is dropped
    ("accuracy" in "balanced accuracy", "mean squared error" in "root mean squared error")."""
    hits: list[_Hit] = []
    for pattern, name, supported, weak in _PATTERNS:
        for m in pattern.finditer(low):
            if name == "gini" and re.match(r"\s+impurity", low[m.end():]):
                continue  # the decision-tree split criterion, not the metric
            hits.append(_Hit(m.start(), m.end(), name, supported, weak))
    return [h for h in hits
            if not any(o.start <= h.start and h.end <= o.end and o.end - o.start > h.end - h.start
                       for o in hits)]


def _sentence_bounds(low: str, pos: int) -> tuple[int, int]:
    start = max(low.rfind(c, 0, pos) for c in ".!?\n") + 1
    ends = [i for i in (low.find(c, pos) for c in ".!?\n") if i >= 0]
    return start, (min(ends) if ends else len(low))


def _pick(hits: list[_Hit], low: str) -> tuple[str, bool]:
    """The earliest mention (the longest at that spot), refined by the rest of its sentence."""
    hit = min(hits, key=lambda h: (h.start, h.start - h.end))
    start, end = _sentence_bounds(low, hit.start)
    after = low[hit.start : end]
    if hit.name == "mse" and re.search(r"\broot\s+of\s+(?:the\s+)?$", low[max(0, hit.start - 30) : hit.start]):
        hit = hit._replace(name="rmse")  # "the square root of the mean squared error"
    if hit.name in ("rmse", "mse") and re.search(r"logarithm|\blog of\b|\blog\(|\blog transformed", after):
        # (R)MSE of logarithms is (R)MSLE.
        return ("rmsle", True) if hit.name == "rmse" else ("MSLE", False)
    if hit.name == "f1":  # "F1, macro-averaged over the classes", "F1 (weighted average)"
        sentence = low[start:end]
        average = re.search(r"\b(macro|micro)\b", sentence)
        if average:
            return f"f1_{average.group(1)}", True
        if re.search(r"\bweighted\s+(?:averag|by\s+(?:the\s+)?(?:support|class|number))|\baverag\w*\W{1,3}weighted",
                     sentence):
            return "f1_weighted", True
    if hit.name == _KAPPA and "quadratic" in low[start:end]:
        return "qwk", True
    return hit.name, hit.supported


def _find(text: str) -> tuple[str, bool] | None:
    """(metric, supported) for the metric a description names, or None.

    Preference: the first mention inside an "Evaluation" section; else the first mention in a
    sentence about evaluation ("submissions are evaluated on ..."); else the first mention.
    Unsupported metrics take part, so a description scored on, say, MAP@5 that mentions accuracy
    in passing is not read as an accuracy task.
    """
    low = _normalise(text)
    hits = _metric_hits(low)
    if not hits:
        return None
    for heading in _EVAL_HEADING.finditer(low):
        body_start = heading.end()
        nxt = _NEXT_HEADING.search(low, body_start + 1)
        body_end = nxt.start() if nxt else len(low)
        in_section = [h for h in hits if body_start <= h.start < body_end]
        if in_section:
            return _pick(in_section, low)
    sentence_hits = []
    for h in hits:
        start, end = _sentence_bounds(low, h.start)
        if _EVAL_CUE.search(low[start:end]):
            sentence_hits.append(h)
    if sentence_hits:
        return _pick(sentence_hits, low)
    strong = [h for h in hits if not h.weak]
    return _pick(strong, low) if strong else None


def find_metric_in_text(text: str) -> str | None:
    """The supported metric (a METRICS key) a description names, or None.

    None also when the description is judged by a metric this tool does not support; see
    `find_unsupported_metric_in_text`.
    """
    found = _find(text)
    return found[0] if found and found[1] else None


def find_unsupported_metric_in_text(text: str) -> str | None:
    """The name of an unsupported metric (e.g. "MAP@k", "SMAPE") the description is judged by, or None."""
    found = _find(text)
    return found[0] if found and not found[1] else None
