"""Shared fixtures: the committed demo tasks and a factory for small throwaway task folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO_TASKS = ROOT / "demo_tasks"

TaskDirFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def demo_tasks_dir() -> Path:
    """The committed demo tasks (answers in demo_tasks/_answers/<task>.csv)."""
    assert (DEMO_TASKS / "breast-cancer" / "train.csv").is_file(), \
        "run: python -m mlestar_core.demos demo_tasks"
    return DEMO_TASKS


@pytest.fixture
def make_task_dir(tmp_path: Path) -> TaskDirFactory:
    """Write a task folder from DataFrames: make_task_dir(train, test=None, sample=None, description=None).

    Extra files can be passed as files={"name": "text" or b"bytes"}. Returns the folder.
    """
    counter = iter(range(10_000))

    def make(train: pd.DataFrame | None, test: pd.DataFrame | None = None, sample: pd.DataFrame | None = None,
             description: str | None = None, name: str | None = None,
             files: dict[str, str | bytes] | None = None) -> Path:
        folder = tmp_path / (name or f"task{next(counter)}")
        folder.mkdir(parents=True)
        if train is not None:
            train.to_csv(folder / "train.csv", index=False)
        if test is not None:
            test.to_csv(folder / "test.csv", index=False)
        if sample is not None:
            sample.to_csv(folder / "sample_submission.csv", index=False)
        if description is not None:
            (folder / "description.md").write_text(description, encoding="utf-8")
        for fname, content in (files or {}).items():
            p = folder / fname
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content, encoding="utf-8")
        return folder

    return make
