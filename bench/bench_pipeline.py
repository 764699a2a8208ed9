"""Orchestrator overhead: how much of a run's wall time is not spent waiting on scripts.

Runs the whole MLE-STAR loop on a demo task with one solution track (so the orchestrator is a
single thread and `exec_wall` is simply the time spent inside executor calls), then prints
the total time, the time in scripts and the rest: store writes, events, brain calls.

    .venv/bin/python bench/bench_pipeline.py [TASK_DIR]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlestar_core.config import RunConfig  # noqa: E402
from mlestar_core.pipeline import Pipeline, create_run  # noqa: E402
from mlestar_core.store import Store  # noqa: E402
from mlestar_core.task import load_task  # noqa: E402


def main() -> None:
    task_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "demo_tasks" / "breast-cancer"
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store")
        task = load_task(task_dir)
        config = RunConfig(num_models=3, outer_steps=2, inner_steps=2, num_solutions=1, ensemble_rounds=0,
                           workers=2)
        run_id = create_run(store, task, config, out_dir=Path(tmp) / "out")
        pipeline = Pipeline(store, run_id)
        started = time.monotonic()
        pipeline.run()
        total = time.monotonic() - started
        n_exec = len(store.table("executions", run_id))
        n_events = len(store.events_after(run_id))
        overhead = total - pipeline.exec_wall
        print(f"task: {task.name} ({task.n_train_rows} rows), brain offline, {n_exec} script executions, "
              f"{n_events} events")
        print(f"run wall time:            {total:8.2f} s")
        print(f"waiting on scripts:       {pipeline.exec_wall:8.2f} s")
        print(f"orchestrator overhead:    {overhead:8.2f} s  ({overhead / total:.1%} of the run)")
        t0 = time.perf_counter()
        for i in range(500):
            store.emit(run_id, "bench", {"i": i})
        per_event = (time.perf_counter() - t0) / 500
        print(f"store: one event write    {per_event * 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
