"""Grading: perfect submissions score perfectly, ids are aligned, conversions, validation problems."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from mlestar_core.grading import SubmissionError, read_submission, score_submission, validate_submission
from mlestar_core.model import Task
from mlestar_core.task import load_task


def _load(demo_tasks_dir: Path, name: str) -> tuple[Task, pd.DataFrame]:
    return load_task(demo_tasks_dir / name), pd.read_csv(demo_tasks_dir / "_answers" / f"{name}.csv")


def _one_hot(answers: pd.DataFrame) -> pd.DataFrame:
    sub = pd.DataFrame({"id": answers["id"]})
    for k in range(3):
        sub[f"class_{k}"] = (answers["cultivar"] == k).astype(float)
    return sub


def test_perfect_submissions_score_perfectly(demo_tasks_dir: Path) -> None:
    bc, bc_ans = _load(demo_tasks_dir, "breast-cancer")
    assert score_submission(bc, bc_ans.astype({"malignant": float}), bc_ans) == pytest.approx(1.0)
    db, db_ans = _load(demo_tasks_dir, "diabetes-progression")
    assert score_submission(db, db_ans, db_ans) == pytest.approx(0.0)
    wine, wine_ans = _load(demo_tasks_dir, "wine-cultivar")
    assert score_submission(wine, _one_hot(wine_ans), wine_ans) < 1e-9
    churn, churn_ans = _load(demo_tasks_dir, "customer-churn")
    assert score_submission(churn, churn_ans, churn_ans) == pytest.approx(1.0)


def test_scores_match_sklearn_on_imperfect_predictions(demo_tasks_dir: Path) -> None:
    rng = np.random.default_rng(0)
    bc, ans = _load(demo_tasks_dir, "breast-cancer")
    p = np.clip(ans["malignant"] * 0.6 + rng.random(len(ans)) * 0.5, 0, 1)
    sub = pd.DataFrame({"id": ans["id"], "malignant": p})
    assert score_submission(bc, sub, ans) == pytest.approx(roc_auc_score(ans["malignant"], p))
    churn, ans = _load(demo_tasks_dir, "customer-churn")
    flipped = ans["churned"].where(rng.random(len(ans)) < 0.8, ans["churned"].map({"yes": "no", "no": "yes"}))
    sub = pd.DataFrame({"customer_id": ans["customer_id"], "churned": flipped})
    expected = f1_score(ans["churned"], flipped, pos_label="yes")
    assert score_submission(churn, sub, ans) == pytest.approx(expected)
    wine, ans = _load(demo_tasks_dir, "wine-cultivar")
    proba = rng.dirichlet(np.ones(3), len(ans))
    sub = pd.DataFrame({"id": ans["id"], **{f"class_{k}": proba[:, k] for k in range(3)}})
    expected = log_loss(ans["cultivar"], proba, labels=[0, 1, 2])
    assert score_submission(wine, sub, ans) == pytest.approx(expected)


def test_misaligned_ids_are_fixed_by_alignment(demo_tasks_dir: Path) -> None:
    churn, ans = _load(demo_tasks_dir, "customer-churn")
    shuffled = ans.sample(frac=1.0, random_state=1)
    assert list(shuffled["customer_id"]) != list(ans["customer_id"])
    assert score_submission(churn, shuffled, ans) == pytest.approx(1.0)
    bc, ans = _load(demo_tasks_dir, "breast-cancer")
    # Shuffled, with ids written as 12.0
    sub = ans.sample(frac=1.0, random_state=2).astype({"id": float, "malignant": float})
    assert score_submission(bc, sub, ans) == pytest.approx(1.0)
    sub["id"] = sub["id"].map(lambda v: f"{int(v)}")  # ids as strings
    assert score_submission(bc, sub, ans) == pytest.approx(1.0)


def test_proba_columns_are_matched_by_name_not_position(demo_tasks_dir: Path) -> None:
    wine, ans = _load(demo_tasks_dir, "wine-cultivar")
    sub = _one_hot(ans)[["id", "class_2", "class_0", "class_1"]]
    assert score_submission(wine, sub, ans) < 1e-9


def test_classes_in_sample_order_are_reordered(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    train = pd.DataFrame({"id": range(30), "x": range(30), "y": ["a", "b", "c"] * 10})
    test = pd.DataFrame({"id": range(30, 36), "x": range(6)})
    sample = pd.DataFrame({"id": range(30, 36), "p_c": 0.3, "p_a": 0.3, "p_b": 0.4})
    task = load_task(make_task_dir(train, test, sample), target="y", metric="log_loss")
    answers = pd.DataFrame({"id": range(30, 36), "y": ["a", "b", "c", "c", "b", "a"]})
    sub = pd.DataFrame({"id": answers["id"]})
    for cls in "cab":
        sub[f"p_{cls}"] = (answers["y"] == cls).astype(float)
    assert score_submission(task, sub, answers) < 1e-9
    sub[["p_c", "p_a"]] = sub[["p_a", "p_c"]].to_numpy()  # swapped: a and c confused -> large loss
    assert score_submission(task, sub, answers) > 5


def test_label_submission_for_probability_metric(demo_tasks_dir: Path) -> None:
    wine, ans = _load(demo_tasks_dir, "wine-cultivar")
    as_labels = dataclasses.replace(wine, submission_kind="label", submission_columns=["id", "cultivar"])
    assert score_submission(as_labels, ans, ans) < 1e-9  # one-hot of the right labels
    wrong = ans.assign(cultivar=(ans["cultivar"] + 1) % 3)
    assert score_submission(as_labels, wrong, ans) > 20  # confidently wrong
    bc, ans = _load(demo_tasks_dir, "breast-cancer")
    bc_labels = dataclasses.replace(bc, submission_kind="label")
    assert score_submission(bc_labels, ans, ans) == pytest.approx(1.0)


def test_probability_submission_for_label_metric(demo_tasks_dir: Path) -> None:
    wine = load_task(demo_tasks_dir / "wine-cultivar", metric="accuracy")
    ans = pd.read_csv(demo_tasks_dir / "_answers" / "wine-cultivar.csv")
    sub = _one_hot(ans)
    sub.loc[0, ["class_0", "class_1", "class_2"]] = [0.1, 0.1, 0.1]
    sub.loc[0, f"class_{(ans['cultivar'][0] + 1) % 3}"] = 0.8  # first row wrong after argmax
    assert score_submission(wine, sub, ans) == pytest.approx(accuracy_score(ans["cultivar"], [-1] + list(
        ans["cultivar"][1:])))


def test_no_id_task_uses_row_order(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    train = pd.DataFrame({"x": range(60), "y": [0.5 * i for i in range(60)]})
    task = load_task(make_task_dir(train), target="y")
    answers = pd.DataFrame({"__row__": [2, 0, 1], "y": [3.0, 1.0, 2.0]})
    assert score_submission(task, pd.DataFrame({"y": [1.0, 2.0, 3.0]}), answers) == pytest.approx(0.0)
    with pytest.raises(SubmissionError, match="2 rows, expected 3"):
        score_submission(task, pd.DataFrame({"y": [1.0, 2.0]}), answers)


def test_unscorable_submissions_raise(demo_tasks_dir: Path) -> None:
    churn, ans = _load(demo_tasks_dir, "customer-churn")
    with pytest.raises(SubmissionError, match="lacks 1 of the 1000"):
        score_submission(churn, ans.iloc[1:], ans)
    with pytest.raises(SubmissionError, match="more than once"):
        score_submission(churn, pd.concat([ans, ans.iloc[:1]]), ans)
    with pytest.raises(SubmissionError, match="labels not among the classes.*'maybe'"):
        score_submission(churn, ans.assign(churned="maybe"), ans)
    with pytest.raises(SubmissionError, match="lacks column"):
        score_submission(churn, ans.drop(columns="churned"), ans)
    bc, ans = _load(demo_tasks_dir, "breast-cancer")
    with pytest.raises(SubmissionError, match="not numbers"):
        score_submission(bc, ans.assign(malignant=np.nan), ans)


def test_validation_finds_problems(demo_tasks_dir: Path) -> None:
    bc, ans = _load(demo_tasks_dir, "breast-cancer")
    ids = list(ans["id"])
    good = ans.astype({"malignant": float})
    assert validate_submission(bc, good, ids) == []
    assert validate_submission(bc, good, len(ids)) == []

    def problems(df: pd.DataFrame) -> str:
        return " | ".join(validate_submission(bc, df, ids))

    assert "missing columns: malignant" in problems(good.drop(columns="malignant"))
    assert "unexpected columns: extra" in problems(good.assign(extra=1))
    assert f"{len(ids) - 1} rows, expected {len(ids)}" in problems(good.iloc[1:])
    assert "1 expected id values are missing" in problems(good.iloc[1:])
    assert "not in the test set: '99999'" in problems(good.assign(id=[99999] + ids[1:]))
    assert "duplicate id values" in problems(pd.concat([good.iloc[:1], good.iloc[:-1]]))
    assert "1 missing values (NaN)" in problems(good.assign(malignant=[np.nan] + [0.5] * (len(ids) - 1)))
    out_of_range = good.assign(malignant=[1.5, -0.1] + [0.5] * (len(ids) - 2))
    assert "2 probabilities outside [0, 1]" in problems(out_of_range)
    assert "not numbers" in problems(good.assign(malignant=["high"] + [0.5] * (len(ids) - 1)))

    churn, ans = _load(demo_tasks_dir, "customer-churn")
    assert validate_submission(churn, ans, list(ans["customer_id"])) == []
    bad = validate_submission(churn, ans.assign(churned=["Yes"] + list(ans["churned"][1:])), len(ans))
    assert bad and "labels not among the classes" in bad[0] and "'Yes'" in bad[0]


def test_read_submission_errors(tmp_path: Path, demo_tasks_dir: Path) -> None:
    bc, _ = _load(demo_tasks_dir, "breast-cancer")
    with pytest.raises(SubmissionError, match="no submission file"):
        read_submission(bc, tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(SubmissionError, match="empty"):
        read_submission(bc, tmp_path / "empty.csv")
    (tmp_path / "ok.csv").write_text("id,malignant\n1,0.2\n")
    assert list(read_submission(bc, tmp_path / "ok.csv").columns) == ["id", "malignant"]


def test_sample_without_id_column_grades_by_row_order(make_task_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from mlestar_core.rundata import prepare_run_data

    train = pd.DataFrame({"id": range(100), "x": range(100), "y": [0.25 * i for i in range(100)]})
    test = pd.DataFrame({"id": range(100, 110), "x": range(10)})
    task = load_task(make_task_dir(train, test, pd.DataFrame({"y": [0.0] * 10})), target="y")
    assert task.id_column == "id" and task.submission_columns == ["y"]
    data = prepare_run_data(task, tmp_path / "run", 0.2, seed=0)
    answers = pd.read_csv(data.holdout_answers)
    sub = pd.DataFrame({"y": answers["y"]})
    assert validate_submission(task, sub, list(answers["id"])) == []
    assert score_submission(task, sub, answers) == pytest.approx(0.0)
