"""Metric registry: directions, prediction needs, values against hand computations, text detection."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from mlestar_core import metrics
from mlestar_core.metrics import (
    best_index,
    find_metric_in_text,
    find_unsupported_metric_in_text,
    is_better,
    metric_function,
)


@pytest.mark.parametrize(
    ("name", "higher", "needs"),
    [("accuracy", True, "label"), ("roc_auc", True, "proba"), ("log_loss", False, "proba"),
     ("f1", True, "label"), ("rmse", False, "value"), ("rmsle", False, "value"), ("mae", False, "value"),
     ("mape", False, "value"), ("r2", True, "value"), ("mse", False, "value"), ("pr_auc", True, "proba"),
     ("balanced_accuracy", True, "label"), ("f1_macro", True, "label"), ("f1_micro", True, "label"),
     ("f1_weighted", True, "label"), ("mcc", True, "label"), ("qwk", True, "label"), ("gini", True, "proba")],
)
def test_direction_and_needs(name: str, higher: bool, needs: str) -> None:
    m = metrics.get_metric(name)
    assert m.higher_is_better is higher
    assert m.needs == needs


def test_default_metrics_exist_and_fit_their_task_type() -> None:
    for task_type, name in metrics.DEFAULT_METRIC.items():
        assert task_type in metrics.get_metric(name).task_types


def test_unknown_metric_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="known metrics:.*rmse"):
        metrics.get_metric("kappa")


def test_label_metrics_by_hand() -> None:
    y, p = [0, 1, 1, 0, 1], [0, 1, 0, 0, 0]
    assert metric_function("accuracy", "binary")(y, p) == pytest.approx(3 / 5)
    # tp=1, fp=0, fn=2 -> precision 1, recall 1/3 -> F1 = 2*(1*1/3)/(1+1/3) = 0.5
    assert metric_function("f1", "binary")(y, p) == pytest.approx(0.5)
    # macro F1 over 3 classes: class 0 P=1 R=1 -> 1; class 1 P=1/2 R=1 -> 2/3; class 2 never hit -> 0
    y3, p3 = [0, 1, 2], [0, 1, 1]
    assert metric_function("f1", "multiclass")(y3, p3) == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_probability_metrics_by_hand() -> None:
    y, p = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    # pairs (pos, neg): (0.35,0.1)+ (0.35,0.4)- (0.8,0.1)+ (0.8,0.4)+ -> 3/4
    assert metric_function("roc_auc", "binary")(y, p) == pytest.approx(0.75)
    expected = -np.mean([math.log(0.9), math.log(0.6), math.log(0.35), math.log(0.8)])
    assert metric_function("log_loss", "binary")(y, p) == pytest.approx(expected)
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    assert metric_function("log_loss", "multiclass")([0, 1, 2], proba) == pytest.approx(
        -np.mean(np.log([0.7, 0.8, 0.6])))
    assert metric_function("roc_auc", "multiclass")([0, 1, 2], proba) == pytest.approx(1.0)


def test_log_loss_rescales_rows_and_clips() -> None:
    fn = metric_function("log_loss", "multiclass")
    unnormalised = np.array([[0.4, 0.2, 0.2]])  # rescaled to [0.5, 0.25, 0.25]
    assert fn([0], np.vstack([unnormalised])) == pytest.approx(-math.log(0.5))
    assert math.isfinite(metric_function("log_loss", "binary")([1], [0.0]))  # clipped, not inf


def test_regression_metrics_by_hand() -> None:
    y, p = [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 5.0, 3.0]
    assert metric_function("rmse", "regression")(y, p) == pytest.approx(math.sqrt((0 + 0 + 4 + 1) / 4))
    assert metric_function("mae", "regression")(y, p) == pytest.approx(3 / 4)
    assert metric_function("mape", "regression")(y, p) == pytest.approx((2 / 3 + 1 / 4) / 4)
    ss_res, ss_tot = 5.0, sum((v - 2.5) ** 2 for v in y)
    assert metric_function("r2", "regression")(y, p) == pytest.approx(1 - ss_res / ss_tot)
    rmsle = math.sqrt(np.mean((np.log1p(y) - np.log1p(p)) ** 2))
    assert metric_function("rmsle", "regression")(y, p) == pytest.approx(rmsle)
    # Negative predictions are clipped to 0 before the log.
    assert metric_function("rmsle", "regression")([0.0], [-5.0]) == pytest.approx(0.0)


def test_metric_source_is_self_contained() -> None:
    for name, m in metrics.METRICS.items():
        src = metrics.metric_source(name, m.task_types[0])
        assert src.startswith("def compute_metric(y_true, y_pred):")
        namespace: dict = {}
        exec(src, namespace)  # noqa: S102 - imports live inside the function
        assert callable(namespace["compute_metric"])
    assert "'binary'" in metrics.metric_source("f1", "binary")
    assert "'macro'" in metrics.metric_source("f1", "multiclass")


KAGGLE_AUC = """
## Description

Can you predict which loans will default? Past competitions on this data used accuracy and
F1 score, but those reward ignoring the minority class.

## Evaluation

Submissions are evaluated on area under the ROC curve between the predicted probability and the
observed target.

## Submission File

For each id in the test set, you must predict a probability for the target variable.
"""

KAGGLE_HOUSE = """
## Goal
It is your job to predict the sales price for each house.

## Metric
Submissions are evaluated on Root-Mean-Squared-Error (RMSE) between the logarithm of the predicted
value and the logarithm of the observed sales price.
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (KAGGLE_AUC, "roc_auc"),
        (KAGGLE_HOUSE, "rmsle"),
        ("Submissions are scored on the root mean squared logarithmic error.", "rmsle"),
        ("The evaluation metric is RMSLE.", "rmsle"),
        ("The evaluation metric is RMSE.", "rmse"),
        ("Submissions are evaluated using the multi-class logarithmic loss.", "log_loss"),
        ("Evaluation\n\nSubmissions are evaluated using the mean F1-Score.", "f1"),
        ("Unlike accuracy, this rewards calibration.\n\n**Evaluation Criteria**\n\nLog-loss.", "log_loss"),
        ("We judge entries by the mean absolute error of the forecasts.", "mae"),
        ("Scored with the mean absolute percentage error (MAPE).", "mape"),
        ("The metric is the coefficient of determination, R^2.", "r2"),
        ("Predict survival. Your score is the percentage of passengers you correctly predict; "
         "this is known as accuracy.", "accuracy"),
        ("Predict the price of each house as well as you can.", None),
        ("", None),
    ],
)
def test_find_metric_in_text(text: str, expected: str | None) -> None:
    assert find_metric_in_text(text) == expected


def test_find_metric_prefers_evaluation_section_over_earlier_mentions() -> None:
    text = ("# Churn\n\nA previous model reached an F1 score of 0.61 and 83% accuracy.\n\n"
            "# Evaluation\n\nSubmissions are evaluated with log loss.\n\n# Submission File\n\n"
            "Write probabilities; we also show accuracy on the leaderboard.")
    assert find_metric_in_text(text) == "log_loss"


def test_find_metric_sentence_about_evaluation_wins_without_a_section() -> None:
    text = ("Last year's winner had an accuracy of 91%. This year, entries are evaluated on "
            "the area under the ROC curve.")
    assert find_metric_in_text(text) == "roc_auc"


def test_find_metric_reads_pr_auc_as_its_own_metric() -> None:
    assert find_metric_in_text("Submissions are evaluated on PR AUC.") == "pr_auc"


def test_is_better_and_best_index_with_missing_scores() -> None:
    assert is_better(0.9, 0.8, True) and not is_better(0.8, 0.9, True)
    assert is_better(0.1, 0.2, False) and not is_better(0.2, 0.1, False)
    assert not is_better(0.5, 0.5, True)  # ties are not better
    assert is_better(0.1, None, True) and not is_better(None, 0.1, True)
    assert not is_better(float("nan"), 0.1, False) and is_better(0.1, float("nan"), False)
    assert best_index([None, 0.3, 0.7, None], True) == 2
    assert best_index([None, 0.3, 0.7, float("nan")], False) == 1
    assert best_index([None, None], True) is None
    assert best_index([], True) is None
    assert metrics.improvement(0.2, 0.3, False) == pytest.approx(0.1)
    assert metrics.improvement(None, 0.3, True) is None


# --- every metric against sklearn, computed directly -----------------------------------------

_RNG = np.random.default_rng(7)
_N = 60
Y_REG = _RNG.uniform(0.5, 50, _N)
P_REG = Y_REG * _RNG.uniform(0.7, 1.3, _N) + _RNG.normal(0, 2, _N)
Y_BIN = np.array([0, 1] * (_N // 2))
P_BIN = np.clip(0.3 * Y_BIN + _RNG.uniform(0, 0.7, _N), 0, 1)
L_BIN = (P_BIN >= 0.5).astype(int)
Y_MC = np.array([0, 1, 2, 3] * (_N // 4))
_raw = _RNG.uniform(0, 1, (_N, 4)) + 1.5 * np.eye(4)[Y_MC] * _RNG.uniform(0, 1, (_N, 1))
P_MC = _raw / _raw.sum(axis=1, keepdims=True)
L_MC = np.where(_RNG.uniform(size=_N) < 0.7, Y_MC, _RNG.integers(0, 4, _N))


def _qwk(y: np.ndarray, p: np.ndarray) -> float:
    return skm.cohen_kappa_score(y, p, weights="quadratic")


# (metric, task type, y_true, y_pred, expected computed with sklearn directly)
SKLEARN_CASES = [
    ("accuracy", "binary", Y_BIN, L_BIN, skm.accuracy_score(Y_BIN, L_BIN)),
    ("accuracy", "multiclass", Y_MC, L_MC, skm.accuracy_score(Y_MC, L_MC)),
    ("balanced_accuracy", "binary", Y_BIN, L_BIN, skm.balanced_accuracy_score(Y_BIN, L_BIN)),
    ("balanced_accuracy", "multiclass", Y_MC, L_MC, skm.balanced_accuracy_score(Y_MC, L_MC)),
    ("f1", "binary", Y_BIN, L_BIN, skm.f1_score(Y_BIN, L_BIN)),
    ("f1", "multiclass", Y_MC, L_MC, skm.f1_score(Y_MC, L_MC, average="macro")),
    ("f1_macro", "binary", Y_BIN, L_BIN, skm.f1_score(Y_BIN, L_BIN, average="macro")),
    ("f1_macro", "multiclass", Y_MC, L_MC, skm.f1_score(Y_MC, L_MC, average="macro")),
    ("f1_micro", "multiclass", Y_MC, L_MC, skm.f1_score(Y_MC, L_MC, average="micro")),
    ("f1_weighted", "multiclass", Y_MC, L_MC, skm.f1_score(Y_MC, L_MC, average="weighted")),
    ("mcc", "binary", Y_BIN, L_BIN, skm.matthews_corrcoef(Y_BIN, L_BIN)),
    ("mcc", "multiclass", Y_MC, L_MC, skm.matthews_corrcoef(Y_MC, L_MC)),
    ("qwk", "binary", Y_BIN, L_BIN, _qwk(Y_BIN, L_BIN)),
    ("qwk", "multiclass", Y_MC, L_MC, _qwk(Y_MC, L_MC)),
    ("roc_auc", "binary", Y_BIN, P_BIN, skm.roc_auc_score(Y_BIN, P_BIN)),
    ("roc_auc", "multiclass", Y_MC, P_MC, skm.roc_auc_score(Y_MC, P_MC, multi_class="ovr", average="macro")),
    ("pr_auc", "binary", Y_BIN, P_BIN, skm.average_precision_score(Y_BIN, P_BIN)),
    ("pr_auc", "multiclass", Y_MC, P_MC,
     skm.average_precision_score(label_binarize(Y_MC, classes=[0, 1, 2, 3]), P_MC, average="macro")),
    ("gini", "binary", Y_BIN, P_BIN, 2 * skm.roc_auc_score(Y_BIN, P_BIN) - 1),
    ("log_loss", "binary", Y_BIN, P_BIN, skm.log_loss(Y_BIN, np.clip(P_BIN, 1e-15, 1 - 1e-15))),
    ("log_loss", "multiclass", Y_MC, P_MC, skm.log_loss(Y_MC, P_MC)),
    ("mse", "regression", Y_REG, P_REG, skm.mean_squared_error(Y_REG, P_REG)),
    ("rmse", "regression", Y_REG, P_REG, skm.root_mean_squared_error(Y_REG, P_REG)),
    ("rmsle", "regression", Y_REG, P_REG, skm.root_mean_squared_log_error(Y_REG, np.clip(P_REG, 0, None))),
    ("mae", "regression", Y_REG, P_REG, skm.mean_absolute_error(Y_REG, P_REG)),
    ("mape", "regression", Y_REG, P_REG, skm.mean_absolute_percentage_error(Y_REG, P_REG)),
    ("r2", "regression", Y_REG, P_REG, skm.r2_score(Y_REG, P_REG)),
]


def _case_id(case: tuple) -> str:
    return f"{case[0]}-{case[1]}"


def test_every_metric_and_task_type_has_a_sklearn_case() -> None:
    covered = {(c[0], c[1]) for c in SKLEARN_CASES}
    for name, m in metrics.METRICS.items():
        assert any((name, t) in covered for t in m.task_types), name
    assert {c[0] for c in SKLEARN_CASES} == set(metrics.METRICS)


@pytest.mark.parametrize("case", SKLEARN_CASES, ids=_case_id)
def test_metric_matches_sklearn(case: tuple) -> None:
    name, task_type, y, p, expected = case
    assert 0 < abs(expected) or name in ("mcc", "qwk", "gini")  # the data make a real test
    assert metric_function(name, task_type)(y, p) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # Lists and pandas-free plain sequences work the same.
    assert metric_function(name, task_type)(list(y), p.tolist()) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", sorted(metrics.METRICS))
def test_every_source_uses_sklearn(name: str) -> None:
    for task_type in metrics.get_metric(name).task_types:
        src = metrics.metric_source(name, task_type)
        assert "from sklearn.metrics import " in src
        assert src.count("def ") == 1  # one self-contained function, no module-level helpers


@pytest.mark.parametrize("case", [c for c in SKLEARN_CASES if c[3].ndim == 1], ids=_case_id)
def test_column_vector_prediction_is_flattened(case: tuple) -> None:
    name, task_type, y, p, _ = case
    fn = metric_function(name, task_type)
    assert fn(y, p.reshape(-1, 1)) == fn(y, p)


@pytest.mark.parametrize("name", [n for n, m in metrics.METRICS.items() if m.task_types == ("regression",)])
def test_regression_matrix_prediction_raises(name: str) -> None:
    with pytest.raises(ValueError, match=r"vector of 60 numbers.*shape \(60, 2\)"):
        metric_function(name, "regression")(Y_REG, np.column_stack([P_REG, P_REG]))


@pytest.mark.parametrize("case", SKLEARN_CASES, ids=_case_id)
def test_nan_prediction_raises(case: tuple) -> None:
    name, task_type, y, p, _ = case
    p = p.astype(float)
    p[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        metric_function(name, task_type)(y, p)


@pytest.mark.parametrize("case", SKLEARN_CASES, ids=_case_id)
def test_shape_mismatches_raise_instead_of_broadcasting(case: tuple) -> None:
    name, task_type, y, p, _ = case
    fn = metric_function(name, task_type)
    with pytest.raises(ValueError, match="y_true must be a 1-D vector"):
        fn(y.reshape(-1, 1), p)
    with pytest.raises(ValueError, match="y_pred must be"):
        fn(y, p[:-1])  # one row short
    with pytest.raises(ValueError, match="y_pred must be"):
        fn(y, p[0])  # a single value would broadcast
    if p.ndim == 1:
        with pytest.raises(ValueError, match=r"y_pred must be.*\(60, 3\)"):
            fn(y, np.column_stack([p, p, p]))


def test_infinite_regression_prediction_raises() -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        metric_function("rmse", "regression")([1.0, 2.0], [1.0, np.inf])


def test_label_metric_rejects_a_probability_matrix_with_a_hint() -> None:
    with pytest.raises(ValueError, match="pass its argmax"):
        metric_function("accuracy", "multiclass")(Y_MC, P_MC)


def test_binary_proba_accepts_two_column_matrix() -> None:
    two = np.column_stack([1 - P_BIN, P_BIN])
    for name in ("roc_auc", "pr_auc", "gini", "log_loss"):
        fn = metric_function(name, "binary")
        assert fn(Y_BIN, two) == fn(Y_BIN, P_BIN)


def test_multiclass_proba_needs_a_matrix_with_a_column_per_code() -> None:
    fn = metric_function("log_loss", "multiclass")
    with pytest.raises(ValueError, match=r"\(n, k\) matrix"):
        fn(Y_MC, P_MC[:, 0])
    with pytest.raises(ValueError, match=r"class codes 0\.\.2"):
        fn(Y_MC, P_MC[:, :3])


def test_qwk_distances_span_the_full_code_range() -> None:
    # Class 1 is absent from both vectors; the distance from 0 to 2 must still be 2, not 1.
    y, p = np.array([0, 0, 2, 2, 3]), np.array([0, 2, 2, 3, 3])
    expected = skm.cohen_kappa_score(y, p, labels=[0, 1, 2, 3], weights="quadratic")
    assert metric_function("qwk", "multiclass")(y, p) == pytest.approx(expected)
    with pytest.raises(ValueError, match="whole numbers"):
        metric_function("qwk", "multiclass")([0, 1], [0.5, 1])


def test_pr_auc_multiclass_skips_classes_without_positives() -> None:
    y = np.array([0, 0, 1, 1])  # class 2 absent from y_true
    p = np.array([[0.8, 0.1, 0.1], [0.4, 0.5, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]])
    expected = np.mean([skm.average_precision_score(y == c, p[:, c]) for c in (0, 1)])
    assert metric_function("pr_auc", "multiclass")(y, p) == pytest.approx(expected)


def test_gini_is_binary_only() -> None:
    with pytest.raises(ValueError, match="not multiclass"):
        metrics.metric_source("gini", "multiclass")


def test_aliases_name_one_metric_each() -> None:
    seen: dict[str, str] = {}
    for m in metrics.METRICS.values():
        for alias in m.aliases:
            key = " ".join(alias.replace("-", " ").replace("_", " ").split())
            assert seen.setdefault(key, m.name) == m.name, f"{alias!r} names {seen[key]} and {m.name}"


# --- the description parser -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Submissions are evaluated on balanced accuracy.", "balanced_accuracy"),
        ("## Evaluation\nBalanced Accuracy (the mean recall of the classes).", "balanced_accuracy"),
        ("Submissions are evaluated on AUC-PR.", "pr_auc"),
        ("The metric is the PR-AUC of your predictions.", "pr_auc"),
        ("Submissions are scored by average precision.", "pr_auc"),
        ("Evaluation: area under the precision-recall curve.", "pr_auc"),
        ("Evaluation: precision-recall AUC.", "pr_auc"),
        ("Submissions are evaluated on macro F1.", "f1_macro"),
        ("Submissions are evaluated on the macro-averaged F1 score.", "f1_macro"),
        ("Submissions are evaluated on the F1 score, macro-averaged over the classes.", "f1_macro"),
        ("Submissions are evaluated on micro F1.", "f1_micro"),
        ("Submissions are evaluated on the weighted F1 score.", "f1_weighted"),
        ("The evaluation metric is the F1 score.", "f1"),
        ("The evaluation metric is the F1 score, where each class is weighted equally.", "f1"),
        ("The evaluation metric is the F1 score (weighted average over the classes).", "f1_weighted"),
        ("Evaluation: f1_score(y_true, y_pred, average='micro').", "f1_micro"),
        ("Submissions are evaluated on mean squared error.", "mse"),
        ("Submissions are evaluated on the MSE.", "mse"),
        ("Submissions are evaluated on root mean squared error.", "rmse"),
        ("Submissions are evaluated on the square root of the mean squared error.", "rmse"),
        ("Submissions are evaluated on the Root-Mean-Square Error.", "rmse"),
        ("Submissions are evaluated using the Normalized Gini Coefficient.", "gini"),
        ("Evaluation: gini.", "gini"),
        ("Submissions are scored based on the quadratic weighted kappa.", "qwk"),
        ("Submissions are scored on Cohen's kappa with quadratic weights.", "qwk"),
        ("Submissions are scored on Cohen’s kappa, quadratically weighted.", "qwk"),
        ("Evaluation: QWK.", "qwk"),
        ("Submissions are evaluated on the Matthews correlation coefficient.", "mcc"),
        ("The metric is MCC.", "mcc"),
        ("We split with the gini impurity. Submissions are evaluated on accuracy.", "accuracy"),
    ],
)
def test_find_new_metrics_in_text(text: str, expected: str) -> None:
    assert find_metric_in_text(text) == expected
    assert find_unsupported_metric_in_text(text) is None


def test_longest_alias_at_a_position_wins() -> None:
    # "balanced accuracy" holds "accuracy", "root mean squared error" holds "mean squared error".
    assert find_metric_in_text("Accuracy is not enough: we use balanced accuracy. Evaluation: balanced "
                               "accuracy.") == "balanced_accuracy"
    assert find_metric_in_text("Scored on root mean squared error (not mean squared error).") == "rmse"
    assert find_metric_in_text("Evaluated on mean squared error, not root mean squared error.") == "mse"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Submissions are evaluated according to the Mean Average Precision @ 5 (MAP@5).", "MAP@k"),
        ("The evaluation metric is map@12.", "MAP@k"),
        ("Submissions are evaluated on SMAPE between forecasts and actual values.", "SMAPE"),
        ("Submissions are evaluated on the symmetric mean absolute percentage error.", "SMAPE"),
        ("This competition is evaluated on the mean Dice coefficient.", "Dice"),
        ("The metric is the mean IoU over images.", "IoU"),
        ("Evaluated with intersection over union.", "IoU"),
        ("Submissions are scored with BLEU.", "BLEU"),
        ("Submissions are evaluated on NDCG@5.", "NDCG"),
        ("Submissions are evaluated on the Spearman correlation.", "Spearman correlation"),
        ("Submissions are evaluated on the Pearson correlation coefficient.", "Pearson correlation"),
        ("Submissions are evaluated on Cohen's kappa.", "Cohen's kappa without quadratic weights"),
        ("## Evaluation\nMAP@3.\n\nLast year's model had 80% accuracy.", "MAP@k"),
        ("Last year's winner reached 91% accuracy. Entries are evaluated on the mean Dice score.", "Dice"),
    ],
)
def test_unsupported_metric_is_named_not_replaced(text: str, expected: str) -> None:
    assert find_unsupported_metric_in_text(text) == expected
    assert find_metric_in_text(text) is None


def test_weak_unsupported_words_need_an_evaluation_context() -> None:
    # "dice" and "pearson" are everyday words outside a sentence about evaluation.
    assert find_unsupported_metric_in_text("Predict the sum of two dice; accuracy matters.") is None
    assert find_metric_in_text("Predict the sum of two dice; accuracy matters.") == "accuracy"
    assert find_unsupported_metric_in_text("Data collected by Dr. Pearson.") is None
    assert find_unsupported_metric_in_text("Submissions are evaluated with Dice.") == "Dice"
