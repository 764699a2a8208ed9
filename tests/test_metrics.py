"""Metric registry: directions, prediction needs, values against hand computations, text detection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlestar_core import metrics
from mlestar_core.metrics import best_index, find_metric_in_text, is_better, metric_function


@pytest.mark.parametrize(
    ("name", "higher", "needs"),
    [("accuracy", True, "label"), ("roc_auc", True, "proba"), ("log_loss", False, "proba"),
     ("f1", True, "label"), ("rmse", False, "value"), ("rmsle", False, "value"), ("mae", False, "value"),
     ("mape", False, "value"), ("r2", True, "value")],
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


def test_find_metric_ignores_pr_auc() -> None:
    assert find_metric_in_text("Submissions are evaluated on PR AUC.") is None


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
