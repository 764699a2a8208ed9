"""Shared fixtures: the committed demo tasks and a factory for small throwaway task folders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from mlestar_core.store import Store

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


# -- a real finished run, shared by the run-page tests (views, AppTest) ---------------------------


@dataclass(frozen=True)
class FinishedRun:
    store: Store
    run_id: str
    root: Path  # the store folder (MLESTAR_HOME for AppTest)


# Three folds keep the session's real run quick; the protocol is the same as with the engine's choice.
VIEWS_RUN_CONFIG = dict(num_models=2, outer_steps=1, inner_steps=2, num_solutions=2, ensemble_rounds=1, workers=2,
                        n_folds=3)


@pytest.fixture(scope="session")
def finished_run_store(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """The real pipeline, once per session, on breast-cancer with tiny knobs (read-only for tests)."""
    from mlestar_core.config import RunConfig
    from mlestar_core.pipeline import Pipeline, create_run
    from mlestar_core.task import load_task

    base = tmp_path_factory.mktemp("finished_run")
    store = Store(base / "store")
    for _ in range(2):
        run_id = create_run(store, load_task(DEMO_TASKS / "breast-cancer"), RunConfig(**VIEWS_RUN_CONFIG),
                            out_dir=base / "out")
        Pipeline(store, run_id).run()
        # A track can die of CPython 3.11's "AST constructor recursion depth mismatch" (ast.parse in two
        # threads at once, in the offline brain) and the run still finishes with the other track; the page
        # tests want the full shape (L = 2 tracks), so such a run is made again once.
        if not any(s["status"] == "failed" for s in store.steps(run_id)):
            break
        store.delete_run(run_id)
    assert store.get_run(run_id)["status"] == "finished"
    return FinishedRun(store, run_id, base / "store")


# One candidate, no refinement, no ensemble, two folds: a finished run (with its kept model and explanation) in
# about ten seconds.
TINY_RUN_CONFIG = dict(num_models=1, outer_steps=0, inner_steps=1, num_solutions=1, ensemble_rounds=0, workers=2,
                       script_timeout=120, n_folds=2)


@pytest.fixture(scope="session")
def tiny_finished_run(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """A real tiny run on breast-cancer, once per session, for predicting and explaining (test_predict.py, the
    Predict and What-drives-the-model pages). Its out folder is root.parent / "out". A test that changes the run
    (drops its kept model, its explanation) puts it back."""
    from mlestar_core.config import RunConfig
    from mlestar_core.pipeline import Pipeline, create_run
    from mlestar_core.task import load_task

    base = tmp_path_factory.mktemp("tiny_run")
    store = Store(base / "store")
    run_id = create_run(store, load_task(DEMO_TASKS / "breast-cancer"), RunConfig(**TINY_RUN_CONFIG),
                        out_dir=base / "out")
    Pipeline(store, run_id).run()
    assert store.get_run(run_id)["status"] == "finished"
    return FinishedRun(store, run_id, base / "store")


class RunBuilder:
    """Hand-made runs for edge cases (a run in flight, no ablation yet, NULL spreads): store rows and
    events written with the store API, no pipeline."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def run(self, status: str = "running", *, higher_is_better: bool = True, name: str = "hand-made",
            **config: object) -> str:
        import dataclasses

        from mlestar_core.config import RunConfig
        from mlestar_core.pipeline import create_run
        from mlestar_core.task import load_task

        task = _breast_cancer_task(load_task)
        if not higher_is_better:
            task = dataclasses.replace(task, metric="log_loss", higher_is_better=False)
        knobs = {**VIEWS_RUN_CONFIG, **config}
        run_id = create_run(self.store, task, RunConfig(**knobs), name=name)  # type: ignore[arg-type]
        self.store.update_run(run_id, status=status)
        self.event(run_id, "run_started", brain="offline", resumed=False)
        return run_id

    def step(self, run_id: str, key: str, phase: str, status: str = "done", result: object = None) -> None:
        self.store.start_step(run_id, key, phase)
        self.event(run_id, "step_started", key=key, phase=phase)
        if status != "running":
            self.store.finish_step(run_id, key, result, status=status)
            if status == "done":
                self.event(run_id, "step_done", key=key, phase=phase)

    def event(self, run_id: str, kind: str, **payload: object) -> None:
        self.store.emit(run_id, kind, payload)

    def brain_call(self, run_id: str, role: str, *, prompt: str = "the prompt", answer: str | None = "the answer",
                   **fields: object) -> int:
        """One brain_calls row (a BrainCallRecord, as the pipeline records it) and its event."""
        from mlestar_core.brains.base import BrainCallRecord

        call = BrainCallRecord(role=role, prompt=prompt, answer=answer, **fields)  # type: ignore[arg-type]
        cid = self.store.add_brain_call(run_id, call)
        self.event(run_id, "brain_call", id=cid, role=role, latency=call.latency, cost=call.cost,
                   tokens_in=call.tokens_in, tokens_out=call.tokens_out, error=call.error)
        return cid


_TASK_CACHE: dict[str, object] = {}


def _breast_cancer_task(load_task: Callable[..., object]) -> object:
    if "bc" not in _TASK_CACHE:
        _TASK_CACHE["bc"] = load_task(DEMO_TASKS / "breast-cancer")
    return _TASK_CACHE["bc"]


@pytest.fixture
def run_builder(tmp_path: Path) -> RunBuilder:
    return RunBuilder(Store(tmp_path / "store"))

