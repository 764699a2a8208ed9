"""Per-run copies of the task data, with a locked hold-out for honest final scoring.

Layout under `run_dir/data/`:

    full/                  the task's own files, copied (the run owns them; nothing links back)
    search/                what every search-phase script sees as ./input: train minus hold-out
    holdout/               for scoring the final solution once: same train, test = hold-out rows
    holdout_answers.csv    the hold-out rows' ids (or `__row__`) and true targets, outside both
    split.json             written last; its presence means the split is complete and reusable

The split is built in `data.partial/` and renamed into place, so a crash never leaves a
half-written split that a resumed run would trust.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from .model import Task, TaskError
from .task import label_str, read_csv

MIN_ROWS_FOR_HOLDOUT = 50  # below this a hold-out would be too small to mean anything
MANIFEST = "split.json"
ROW_COLUMN = "__row__"


@dataclass
class RunData:
    search_dir: Path
    holdout_dir: Path | None
    holdout_answers: Path | None
    full_dir: Path
    n_search: int
    n_holdout: int
    train_file: str = "train.csv"  # file names inside the run folders
    test_file: str | None = "test.csv"  # in search/ and full/ (None when the task has no test file)
    sample_submission_file: str | None = None  # in search/ and full/
    holdout_test_file: str = "test.csv"
    holdout_sample_file: str = "sample_submission.csv"

    def task_for(self, task: Task, which: Literal["search", "holdout", "full"]) -> Task:
        """A copy of `task` whose files point into one of the run folders."""
        if which == "holdout":
            if self.holdout_dir is None:
                raise ValueError("this run has no hold-out split")
            return dataclasses.replace(
                task, data_dir=self.holdout_dir, train_file=self.train_file, test_file=self.holdout_test_file,
                sample_submission_file=self.holdout_sample_file, n_train_rows=self.n_search,
                n_test_rows=self.n_holdout)
        folder = self.search_dir if which == "search" else self.full_dir
        n_train = self.n_search if which == "search" else self.n_search + self.n_holdout
        return dataclasses.replace(
            task, data_dir=folder, train_file=self.train_file, test_file=self.test_file,
            sample_submission_file=self.sample_submission_file, n_train_rows=n_train)


def _run_names(task: Task) -> tuple[str, str | None, str | None]:
    """File names used inside the run folders: the task's base names, made distinct."""
    train = Path(task.train_file).name
    test = Path(task.test_file).name if task.test_file else None
    sample = Path(task.sample_submission_file).name if task.sample_submission_file else None
    if test is not None and test == train:
        test = "test.csv" if train != "test.csv" else "test_data.csv"
    if sample is not None and sample in (train, test):
        sample = "sample_submission.csv"
    return train, test, sample


def _copy(src: Path, dst: Path) -> None:
    """A real copy (symlinks followed) so nothing in the run can write back into the user's task."""
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=False)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


def _load(data: Path) -> RunData:
    meta = json.loads((data / MANIFEST).read_text(encoding="utf-8"))

    def opt(key: str) -> Path | None:
        return data / meta[key] if meta.get(key) else None

    return RunData(
        search_dir=data / meta["search_dir"], holdout_dir=opt("holdout_dir"),
        holdout_answers=opt("holdout_answers"), full_dir=data / meta["full_dir"],
        n_search=meta["n_search"], n_holdout=meta["n_holdout"], train_file=meta["train_file"],
        test_file=meta["test_file"], sample_submission_file=meta["sample_submission_file"],
        holdout_test_file=meta["holdout_test_file"], holdout_sample_file=meta["holdout_sample_file"])


def load_run_data(run_dir: Path) -> RunData | None:
    """The run's split as it was made, or None when it was never completed (nothing is rebuilt)."""
    data = Path(run_dir) / "data"
    if not (data / MANIFEST).is_file():
        return None
    return _load(data)


def prepare_run_data(task: Task, run_dir: Path, holdout_fraction: float, seed: int) -> RunData:
    """Copy the task into run_dir/data and lock away a stratified hold-out (idempotent).

    A second call on the same run_dir returns the existing split unchanged, whatever the
    arguments: a resumed run must keep scoring against exactly the rows it started with.
    """
    if not 0 <= holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    run_dir = Path(run_dir)
    data = run_dir / "data"
    if (data / MANIFEST).is_file():
        return _load(data)
    if data.exists():  # a split without a manifest was never finished: rebuild it
        shutil.rmtree(data)
    partial = run_dir / "data.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        _build(task, partial, holdout_fraction, seed)
        partial.rename(data)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return _load(data)


def _build(task: Task, out: Path, holdout_fraction: float, seed: int) -> None:
    train_name, test_name, sample_name = _run_names(task)
    src = task.data_dir

    # full/: the task as given.
    full = out / "full"
    full.mkdir()
    _copy(src / task.train_file, full / train_name)
    if task.test_file and test_name:
        _copy(src / task.test_file, full / test_name)
    if task.sample_submission_file and sample_name:
        _copy(src / task.sample_submission_file, full / sample_name)
    for other in task.other_files:
        if (src / other).exists():
            _copy(src / other, full / Path(other).name)
    if task.description:
        (full / "description.md").write_text(task.description, encoding="utf-8")
    shared = [p for p in ([test_name, sample_name] + [Path(o).name for o in task.other_files])
              if p and (full / p).exists()]

    # Read every cell as text so the rows written back are byte-for-byte the user's values
    # (no "3" -> "3.0" for integer columns with gaps, no float reformatting).
    raw = read_csv(full / train_name, dtype=str, keep_default_na=False)
    if task.target not in raw.columns:
        raise TaskError(f"target column {task.target!r} is not in {train_name}")
    typed_target = read_csv(full / train_name, usecols=[task.target])[task.target]
    n = len(raw)

    hold_idx = _holdout_rows(task, typed_target, holdout_fraction, seed) if n >= MIN_ROWS_FOR_HOLDOUT \
        else np.array([], dtype=int)
    in_hold = np.zeros(n, dtype=bool)
    in_hold[hold_idx] = True
    search_rows = raw[~in_hold]

    search = out / "search"
    search.mkdir()
    search_rows.to_csv(search / train_name, index=False)
    for name in shared:
        _copy(full / name, search / name)

    meta: dict[str, object] = {
        "search_dir": "search", "full_dir": "full", "holdout_dir": None, "holdout_answers": None,
        "n_search": int(len(search_rows)), "n_holdout": int(len(hold_idx)), "seed": seed,
        "holdout_fraction": holdout_fraction, "train_file": train_name, "test_file": test_name,
        "sample_submission_file": sample_name, "holdout_test_file": test_name or "test.csv",
        "holdout_sample_file": sample_name or "sample_submission.csv",
    }
    if len(hold_idx):
        _write_holdout(task, out, raw, typed_target, hold_idx, search_rows, full, shared, meta)
        meta.update(holdout_dir="holdout", holdout_answers="holdout_answers.csv")
    (out / MANIFEST).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def _holdout_rows(task: Task, y: pd.Series, fraction: float, seed: int) -> np.ndarray:
    """Positions of the hold-out rows, sorted; stratified by class when every class allows it."""
    candidates = np.flatnonzero(y.notna().to_numpy())  # rows without a target cannot be scored
    n_hold = int(round(len(candidates) * fraction))
    if fraction <= 0 or n_hold < 1 or len(candidates) - n_hold < 1:
        return np.array([], dtype=int)
    strat = None
    if task.task_type != "regression":
        strat = y.iloc[candidates].map(label_str).to_numpy()
    try:
        _, hold = train_test_split(candidates, test_size=n_hold, random_state=seed, stratify=strat)
    except ValueError:  # a class too small to stratify (or more classes than hold-out rows)
        _, hold = train_test_split(candidates, test_size=n_hold, random_state=seed)
    return np.sort(np.asarray(hold))


def _write_holdout(task: Task, out: Path, raw: pd.DataFrame, typed_target: pd.Series, hold_idx: np.ndarray,
                   search_rows: pd.DataFrame, full: Path, shared: list[str], meta: dict[str, object]) -> None:
    holdout = out / "holdout"
    holdout.mkdir()
    train_name = str(meta["train_file"])
    _copy(out / "search" / train_name, holdout / train_name)
    hold_test_name, hold_sample_name = str(meta["holdout_test_file"]), str(meta["holdout_sample_file"])
    for name in shared:
        if name not in (hold_test_name, hold_sample_name):
            _copy(full / name, holdout / name)

    rows = raw.iloc[hold_idx]
    # The hold-out test file mimics test.csv: its columns in its order (train minus target otherwise).
    test_name = meta["test_file"]
    if test_name:
        columns = list(read_csv(full / str(test_name), nrows=0).columns.astype(str))
    else:
        columns = [c for c in raw.columns if c != task.target]
    id_col = task.id_column
    hold_test = pd.DataFrame(index=rows.index)
    for c in columns:
        if c in rows.columns:
            hold_test[c] = rows[c]
        elif c == id_col:  # test-only id column: number the hold-out rows by their train position
            hold_test[c] = [str(i) for i in hold_idx]
    hold_test = hold_test.reset_index(drop=True)
    hold_test.to_csv(holdout / hold_test_name, index=False)

    if id_col and id_col in hold_test.columns:
        ids: list[str] | range = list(hold_test[id_col])
        answers = pd.DataFrame({id_col: ids, task.target: list(rows[task.target])})
    else:
        ids = range(len(rows))
        answers = pd.DataFrame({ROW_COLUMN: list(ids), task.target: list(rows[task.target])})
    answers.to_csv(out / "holdout_answers.csv", index=False)

    sample = pd.DataFrame(index=range(len(rows)))
    placeholders = _placeholders(task, full / str(meta["sample_submission_file"] or ""),
                                 search_rows[task.target], typed_target[~typed_target.index.isin(hold_idx)])
    for c in task.submission_columns:
        if c == id_col and id_col in hold_test.columns:
            sample[c] = list(hold_test[id_col])
        else:
            sample[c] = placeholders.get(c, "")
    sample.to_csv(holdout / hold_sample_name, index=False)


def _placeholders(task: Task, sample_path: Path, search_raw: pd.Series,
                  search_typed: pd.Series) -> dict[str, str]:
    """A constant value per submission column, like a Kaggle sample submission would hold."""
    pred_cols = [c for c in task.submission_columns if c != task.id_column]
    if sample_path.is_file() and sample_path.name:
        first = read_csv(sample_path, nrows=1, dtype=str, keep_default_na=False)
        if len(first):
            return {c: str(first.iloc[0][c]) for c in pred_cols if c in first.columns}
    if task.submission_kind == "value":
        value = float(pd.to_numeric(search_typed, errors="coerce").mean())
        return {c: repr(value) for c in pred_cols}
    if task.submission_kind == "proba_positive":
        return {c: "0.5" for c in pred_cols}
    if task.submission_kind == "proba_per_class":
        return {c: repr(1 / max(len(pred_cols), 1)) for c in pred_cols}
    values = search_raw[search_raw != ""]
    return {c: str(values.mode().iloc[0]) if len(values) else "" for c in pred_cols}
