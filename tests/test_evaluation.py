"""The engine owns evaluation: folds, scores from predictions, ensembles over stored predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlestar_core import evaluation as ev
from mlestar_core.model import ColumnProfile, Task


def _task(tmp: Path, task_type: str = "binary", metric: str = "roc_auc", n: int = 200, seed: int = 0) -> Task:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    if task_type == "regression":
        y: list = list(3 * x + rng.normal(size=n))
    elif task_type == "binary":
        y = ["yes" if v + rng.normal() > 0 else "no" for v in x]
    else:
        y = [int(v) for v in np.digitize(x, [-0.5, 0.5])]
    df = pd.DataFrame({"id": range(n), "x": x, "target": y})
    df.loc[3, "target"] = np.nan  # a row without a target is never validated
    tmp.mkdir(parents=True, exist_ok=True)
    df.to_csv(tmp / "train.csv", index=False)
    hib = metric not in ("log_loss", "rmse")
    return Task(name="t", description="", data_dir=tmp, target="target", task_type=task_type,  # type: ignore[arg-type]
                metric=metric, higher_is_better=hib, id_column="id",
                columns=[ColumnProfile("x", "numeric", "float", n, 0.0)], n_train_rows=n)


def _protocol(task: Task, tmp: Path, k: int = 5, repeats: int = 1) -> ev.RunProtocol:
    p = ev.Protocol(task.task_type, task.metric, task.higher_is_better, k, repeats, [], 0, seed=7)
    return ev.write_protocol(task, tmp, tmp, [], p)


# ---------------------------------------------------------------- folds


def test_folds_cover_every_row_with_a_target_once_per_repeat(tmp_path: Path) -> None:
    task = _task(tmp_path)
    rp = _protocol(task, tmp_path, k=5, repeats=2)
    folds = pd.read_csv(tmp_path / ev.FOLDS_FILE)
    assert list(folds.columns) == ["repeat", "row", "fold"]
    assert 3 not in set(folds["row"])  # no target, no fold
    for _, part in folds.groupby("repeat"):
        assert sorted(part["row"]) == [r for r in range(200) if r != 3]
        assert set(part["fold"]) == {0, 1, 2, 3, 4}
    # Stratified: each fold holds about the same share of "yes".
    y = pd.read_csv(tmp_path / "train.csv")["target"]
    shares = folds[folds["repeat"] == 0].assign(pos=lambda f: (y.iloc[f["row"]] == "yes").to_numpy()) \
        .groupby("fold")["pos"].mean()
    assert shares.max() - shares.min() < 0.06
    # The two repeats are different partitions.
    a = folds[folds["repeat"] == 0].sort_values("row")["fold"].to_numpy()
    b = folds[folds["repeat"] == 1].sort_values("row")["fold"].to_numpy()
    assert (a != b).any()
    assert len(rp.units()) == 10 and rp.protocol.classes == ["no", "yes"]


def test_single_split_marks_train_only_rows(tmp_path: Path) -> None:
    task = _task(tmp_path, "regression", "rmse", n=100)
    _protocol(task, tmp_path, k=1)
    folds = pd.read_csv(tmp_path / ev.FOLDS_FILE)
    assert set(folds["fold"]) == {-1, 0}
    assert (folds["fold"] == 0).sum() == round(99 * 0.2)


def test_choose_folds_by_size_and_measured_cost() -> None:
    assert ev.choose_folds(150)[:2] == (5, 3)  # tiny: repeated folds
    assert ev.choose_folds(400)[:2] == (5, 2)
    assert ev.choose_folds(10_000)[:2] == (5, 1)
    assert ev.choose_folds(100_000)[:2] == (3, 1)
    assert ev.choose_folds(1_000_000)[:2] == (1, 1)  # a single hold-out split
    # A slow probe fit under a short budget trades folds for time; a fast one keeps them.
    assert ev.choose_folds(10_000, probe_seconds=3.0, time_budget=120, workers=2)[0] < 5
    assert ev.choose_folds(10_000, probe_seconds=0.01, time_budget=120, workers=2)[0] == 5


# ---------------------------------------------------------------- predictions


def _oof(rp: ev.RunProtocol, pred: np.ndarray, columns: list[str]) -> pd.DataFrame:
    keys = rp.keys.to_frame(index=False)
    values = pd.DataFrame(pred.reshape(len(keys), -1), columns=columns)
    return pd.concat([keys, values], axis=1)


def test_engine_scores_from_predictions_like_sklearn(tmp_path: Path) -> None:
    task = _task(tmp_path)
    rp = _protocol(task, tmp_path)
    truth = rp.truth()
    p1 = np.clip(0.5 + 0.3 * (truth - 0.5) + np.random.default_rng(1).normal(0, 0.3, len(truth)), 0, 1)
    frame = _oof(rp, np.column_stack([1 - p1, p1]), ["no", "yes"]).sample(frac=1, random_state=0)  # any order
    frame.to_csv(tmp_path / ev.OOF_FILE, index=False)
    result, pred = ev.Scorer(rp).evaluate_workdir(tmp_path)
    assert result.error is None and pred is not None
    expected = np.mean([roc_auc_score(truth[held], p1[held]) for _, held in rp.units()])
    assert result.score == pytest.approx(expected)
    assert len(result.fold_scores) == 5


@pytest.mark.parametrize("damage, message", [
    ("missing", "no oof.csv"),
    ("drop_row", "misaligned"),
    ("extra_row", "misaligned"),
    ("duplicate", "duplicated"),
    ("nan", "NaN"),
    ("no_class_column", "lacks the probability column"),
    ("out_of_range", "[0, 1]"),
    ("no_row_column", "no 'row' column"),
    ("garbage", "cannot be read"),
])
def test_malformed_predictions_fail_with_a_clear_reason(tmp_path: Path, damage: str, message: str) -> None:
    task = _task(tmp_path)
    rp = _protocol(task, tmp_path)
    frame = _oof(rp, np.full((len(rp.keys), 2), 0.5), ["no", "yes"])
    path = tmp_path / ev.OOF_FILE
    if damage == "drop_row":
        frame = frame.iloc[1:]
    elif damage == "extra_row":
        frame = pd.concat([frame, frame.iloc[[0]].assign(row=3)])  # row 3 has no target: never validated
    elif damage == "duplicate":
        frame = pd.concat([frame, frame.iloc[[0]]])
    elif damage == "nan":
        frame.loc[5, "yes"] = np.nan
    elif damage == "no_class_column":
        frame = frame.drop(columns=["yes"])
    elif damage == "out_of_range":
        frame.loc[0, "yes"] = 1.7
    elif damage == "no_row_column":
        frame = frame.drop(columns=["row"])
    if damage == "garbage":
        path.write_bytes(b"\x00\xff\x00 not a csv \"\n\"")
    elif damage != "missing":
        frame.to_csv(path, index=False)
    result, pred = ev.Scorer(rp).evaluate_workdir(tmp_path)
    assert result.score is None and pred is None
    assert message in (result.error or "")


def test_regression_and_multiclass_columns(tmp_path: Path) -> None:
    reg = _task(tmp_path / "r", "regression", "rmse")
    rp = _protocol(reg, tmp_path / "r")
    truth = rp.truth()
    _oof(rp, truth + 1.0, ["prediction"]).to_csv(tmp_path / "r" / ev.OOF_FILE, index=False)
    assert ev.Scorer(rp).evaluate_workdir(tmp_path / "r")[0].score == pytest.approx(1.0)
    mc = _task(tmp_path / "m", "multiclass", "accuracy")
    rp = _protocol(mc, tmp_path / "m")
    assert rp.protocol.classes == ["0", "1", "2"]
    onehot = np.eye(3)[rp.truth()]
    # Columns in any order, named by the labels (floats spelled "1.0" still name class "1").
    frame = _oof(rp, onehot, ["0", "1.0", "2"])[["repeat", "row", "2", "0", "1.0"]]
    frame.to_csv(tmp_path / "m" / ev.OOF_FILE, index=False)
    assert ev.Scorer(rp).evaluate_workdir(tmp_path / "m")[0].score == pytest.approx(1.0)


def test_a_false_claim_is_recognised() -> None:
    assert ev.claim_disagrees(0.99, 0.71)
    assert ev.claim_disagrees(None, 0.71)
    assert not ev.claim_disagrees(0.7100000000000001, 0.71)


def test_paired_wins() -> None:
    assert ev.paired_wins([0.8, 0.7, None, 0.9], [0.7, 0.8, 0.5, 0.8], True) == (2, 3)
    assert ev.paired_wins([1.0, 2.0], [2.0, 1.0], False) == (1, 2)


# ---------------------------------------------------------------- ensembles


def _members(rp: ev.RunProtocol, seed: int = 0) -> list[np.ndarray]:
    truth = rp.truth().astype(float)
    rng = np.random.default_rng(seed)
    out = []
    for noise in (0.35, 0.4, 0.45):  # three partly independent, decent models
        p = np.clip(0.5 + 0.35 * (truth - 0.5) * 2 * 0.5 + rng.normal(0, noise, len(truth)), 0.01, 0.99)
        out.append(np.column_stack([1 - p, p]))
    junk = rng.uniform(0.01, 0.99, len(truth))  # a useless member
    out.append(np.column_stack([1 - junk, junk]))
    return out


@pytest.mark.parametrize("strategy", ["caruana", "weights", "stacking", "mean", "rank_mean"])
def test_ensembles_over_stored_predictions(tmp_path: Path, strategy: str) -> None:
    task = _task(tmp_path, n=600)
    rp = _protocol(task, tmp_path)
    scorer = ev.Scorer(rp)
    preds = _members(rp)
    singles = [scorer.evaluate(p).score for p in preds]
    result = ev.ensemble(strategy, [1, 2, 3, 4], preds, scorer)
    assert result.evaluation.score is not None and len(result.evaluation.fold_scores) == 5
    if strategy in ("caruana", "weights", "stacking"):
        # Out of fold, the combination of independent decent models beats the best single one ...
        assert result.evaluation.score > max(s for s in singles if s is not None)
    if strategy in ("caruana", "weights"):
        assert result.weights is not None and sum(result.weights) == pytest.approx(1.0)
        assert result.weights[3] < 0.15  # ... and the useless member gets (almost) no weight


def test_strategy_in_plan() -> None:
    assert ev.strategy_in("Combine them.\nSet: strategy='caruana'") == "caruana"
    assert ev.strategy_in("strategy: stacking") == "stacking"
    assert ev.strategy_in("Average the solutions with a voting classifier") is None


# ---------------------------------------------------------------- stopping hopeless attempts early


def _folds_printed(values: list[float]) -> str:
    return "".join(f"model x: ...\nFold score: repeat=0 fold={k} value={v!r}\n" for k, v in enumerate(values))


def test_hopeless_attempt_is_recognised_from_its_first_folds() -> None:
    keys = [(0, k) for k in range(5)]
    base = [0.80, 0.82, 0.78, 0.81, 0.79]
    assert ev.hopeless(_folds_printed([0.70]), base, keys, True) is None  # one fold says little
    assert ev.hopeless(_folds_printed([0.70, 0.75]), base, keys, True) is None  # fewer than half the folds
    why = ev.hopeless(_folds_printed([0.70, 0.75, 0.70]), base, keys, True)
    assert why and "lost 3" in why
    # One fold far better than its baseline: the rest could still make up for the losses.
    assert ev.hopeless(_folds_printed([0.79, 0.81, 0.95]), base, keys, True) is None
    # Lower is better: the same numbers are now gains.
    assert ev.hopeless(_folds_printed([0.70, 0.75, 0.70]), base, keys, False) is None
    # Lines for other units or garbage are ignored.
    assert ev.hopeless("Fold score: repeat=9 fold=0 value=0.1\nFold score: repeat=0 fold=0 value=nan\n",
                       base, keys, True) is None


def test_the_probe_fit_runs_on_text_empty_and_constant_columns(tmp_path: Path) -> None:
    import subprocess
    import sys

    task = _task(tmp_path / "input")
    df = pd.read_csv(tmp_path / "input" / "train.csv")
    df["city"] = ["a", "b", None, "c"] * 50  # pandas 3 reads this as its string dtype, not object
    df["empty"] = np.nan
    df["same"] = 1
    df.to_csv(tmp_path / "input" / "train.csv", index=False)
    (tmp_path / "probe.py").write_text(ev.probe_script(task))
    out = subprocess.run([sys.executable, "probe.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    seconds = ev.probe_seconds(out.stdout)
    assert seconds is not None and seconds > 0
