"""Run data: locked hold-out split sizes, stratification, isolation, idempotence, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlestar_core import grading
from mlestar_core.rundata import MANIFEST, prepare_run_data
from mlestar_core.task import load_task


@pytest.fixture
def bc_task(demo_tasks_dir: Path):  # type: ignore[no-untyped-def]
    return load_task(demo_tasks_dir / "breast-cancer")


def test_split_sizes_files_and_no_overlap(bc_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = prepare_run_data(bc_task, tmp_path / "run", 0.2, seed=7)
    assert (data.n_search, data.n_holdout) == (455 - 91, 91)
    assert data.search_dir == tmp_path / "run" / "data" / "search"
    src = bc_task.data_dir
    search_train = pd.read_csv(data.search_dir / "train.csv")
    hold_test = pd.read_csv(data.holdout_dir / "test.csv")
    answers = pd.read_csv(data.holdout_answers)
    assert len(search_train) == data.n_search and len(hold_test) == len(answers) == data.n_holdout
    # Search phase sees the task's test and sample submission unchanged.
    for name in ("test.csv", "sample_submission.csv"):
        assert (data.search_dir / name).read_bytes() == (src / name).read_bytes()
    # Hold-out test looks like test.csv: same columns, no target.
    assert list(hold_test.columns) == list(pd.read_csv(src / "test.csv", nrows=0).columns)
    assert "malignant" not in hold_test.columns
    sample = pd.read_csv(data.holdout_dir / "sample_submission.csv")
    assert list(sample.columns) == bc_task.submission_columns and list(sample["id"]) == list(hold_test["id"])
    assert (data.holdout_dir / "train.csv").read_bytes() == (data.search_dir / "train.csv").read_bytes()
    # Disjoint and complete.
    train_ids = set(pd.read_csv(src / "train.csv")["id"])
    assert not set(search_train["id"]) & set(hold_test["id"])
    assert set(search_train["id"]) | set(hold_test["id"]) == train_ids
    assert list(answers.columns) == ["id", "malignant"] and list(answers["id"]) == list(hold_test["id"])
    # Answers live outside both input folders.
    for folder in (data.search_dir, data.holdout_dir):
        assert folder not in data.holdout_answers.parents
        assert not any("malignant" in pd.read_csv(p, nrows=0).columns for p in folder.glob("test*.csv"))


def test_rows_are_written_back_verbatim(make_task_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    # Column n is an integer column with gaps: pandas would turn it into floats ("3.0").
    lines = ["id,x,n,y"] + [f"{i},{rng.normal():.6f},{'' if i % 7 == 0 else i % 5},{i % 2}"
                            for i in range(200)]
    folder = make_task_dir(None, files={"train.csv": "\n".join(lines) + "\n"})
    task = load_task(folder, target="y")
    data = prepare_run_data(task, tmp_path / "run", 0.25, seed=1)
    written = (data.search_dir / "train.csv").read_text().splitlines()
    assert written[0] == lines[0] and set(written[1:]) <= set(lines[1:])  # "3" stays "3", not "3.0"
    hold = (data.holdout_dir / "test.csv").read_text().splitlines()
    assert hold[0] == "id,x,n"  # no test.csv in the task: train columns minus target


def test_stratified(bc_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = prepare_run_data(bc_task, tmp_path / "run", 0.2, seed=3)
    full = pd.read_csv(bc_task.data_dir / "train.csv")["malignant"].mean()
    hold = pd.read_csv(data.holdout_answers)["malignant"].mean()
    search = pd.read_csv(data.search_dir / "train.csv")["malignant"].mean()
    assert abs(hold - full) < 0.01 and abs(search - full) < 0.01


def test_tiny_class_falls_back_to_plain_split(make_task_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    train = pd.DataFrame({"id": range(100), "x": range(100), "y": ["a"] * 60 + ["b"] * 39 + ["c"]})
    data = prepare_run_data(load_task(make_task_dir(train), target="y"), tmp_path / "run", 0.2, seed=0)
    assert (data.n_search, data.n_holdout) == (80, 20)


def test_idempotent_resume_keeps_the_split(bc_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    first = prepare_run_data(bc_task, run, 0.2, seed=7)
    before = (first.holdout_answers.read_bytes(), first.holdout_answers.stat().st_mtime_ns)
    again = prepare_run_data(bc_task, run, 0.3, seed=99)  # different arguments: still the same split
    assert again == first
    assert (again.holdout_answers.read_bytes(), again.holdout_answers.stat().st_mtime_ns) == before


def test_unfinished_split_is_rebuilt(bc_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    (run / "data" / "search").mkdir(parents=True)
    (run / "data" / "search" / "train.csv").write_text("garbage\n")
    data = prepare_run_data(bc_task, run, 0.2, seed=7)
    assert (run / "data" / MANIFEST).is_file() and len(pd.read_csv(data.search_dir / "train.csv")) == 364
    assert not (run / "data.partial").exists()


def test_deterministic_for_a_seed(bc_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = prepare_run_data(bc_task, tmp_path / "a", 0.2, seed=5)
    b = prepare_run_data(bc_task, tmp_path / "b", 0.2, seed=5)
    c = prepare_run_data(bc_task, tmp_path / "c", 0.2, seed=6)
    assert a.holdout_answers.read_bytes() == b.holdout_answers.read_bytes()
    assert (a.search_dir / "train.csv").read_bytes() == (b.search_dir / "train.csv").read_bytes()
    assert a.holdout_answers.read_bytes() != c.holdout_answers.read_bytes()


def test_no_holdout_when_fraction_zero_or_tiny(bc_task, make_task_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = prepare_run_data(bc_task, tmp_path / "zero", 0.0, seed=1)
    assert data.holdout_dir is None and data.holdout_answers is None
    assert (data.n_search, data.n_holdout) == (455, 0)
    assert (data.search_dir / "train.csv").read_bytes() == (bc_task.data_dir / "train.csv").read_bytes()
    tiny = load_task(make_task_dir(pd.DataFrame({"x": range(40), "y": [0, 1] * 20})), target="y")
    data = prepare_run_data(tiny, tmp_path / "tiny", 0.2, seed=1)
    assert data.holdout_dir is None and data.n_search == 40


def test_full_dir_is_an_independent_copy(bc_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    original = (bc_task.data_dir / "train.csv").read_bytes()
    data = prepare_run_data(bc_task, tmp_path / "run", 0.2, seed=7)
    target = data.full_dir / "train.csv"
    assert not target.is_symlink() and target.read_bytes() == original
    with open(target, "r+b") as f:  # a script writing in place must not reach the user's task
        f.write(b"XXXX")
    assert (bc_task.data_dir / "train.csv").read_bytes() == original
    assert (data.full_dir / "description.md").read_text() == bc_task.description


def test_no_id_column_uses_row_order(make_task_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(4)
    train = pd.DataFrame({"x": rng.normal(size=120), "y": rng.normal(size=120)})
    folder = make_task_dir(train, train.drop(columns="y").head(30))
    task = load_task(folder, target="y")
    assert task.id_column is None
    data = prepare_run_data(task, tmp_path / "run", 0.25, seed=2)
    answers = pd.read_csv(data.holdout_answers)
    hold = pd.read_csv(data.holdout_dir / "test.csv")
    assert list(answers.columns) == ["__row__", "y"] and list(answers["__row__"]) == list(range(30))
    # Row i of the hold-out test is the train row whose target is answers.y[i], in train order.
    positions = [int(np.flatnonzero(np.isclose(train["x"], v))[0]) for v in hold["x"]]
    assert positions == sorted(positions)
    assert np.allclose(train["y"].iloc[positions], answers["y"])
    # The hold-out answers grade a perfect row-order submission perfectly.
    sub = pd.DataFrame({"y": answers["y"]})
    assert grading.score_submission(task, sub, answers) == pytest.approx(0.0)


def test_task_for_points_into_run_folders(bc_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = prepare_run_data(bc_task, tmp_path / "run", 0.2, seed=7)
    hold = data.task_for(bc_task, "holdout")
    assert (hold.data_dir / hold.test_file).is_file() and hold.n_test_rows == data.n_holdout
    search = data.task_for(bc_task, "search")
    assert (search.data_dir / search.train_file).is_file() and search.n_train_rows == data.n_search
    assert load_task(data.holdout_dir, description=bc_task.description).target == "malignant"


def test_holdout_answers_grade_a_perfect_holdout_submission(demo_tasks_dir: Path, tmp_path: Path) -> None:
    task = load_task(demo_tasks_dir / "wine-cultivar")
    data = prepare_run_data(task, tmp_path / "run", 0.25, seed=0)
    answers = pd.read_csv(data.holdout_answers)
    sample = pd.read_csv(data.holdout_dir / "sample_submission.csv")
    assert list(sample.columns) == ["id", "class_0", "class_1", "class_2"]
    for k in range(3):
        sample[f"class_{k}"] = (answers["cultivar"] == k).astype(float)
    assert grading.validate_submission(task, sample, list(answers["id"])) == []
    assert grading.score_submission(task, sample, answers) < 1e-9
