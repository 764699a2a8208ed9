"""Benchmark of DaskExecutor against LocalExecutor: throughput of independent scripts by worker count, and the
per-script overhead over a long batch.

Each script is sandboxed and limited exactly as in a run, reads a small shipped input and writes an oof.csv that
comes back to the client. Workers are LocalCluster processes with one thread each (so a script gets the cores of
its share, like LocalExecutor's workers).

Run: .venv/bin/python bench/bench_dask.py [--scripts 24] [--long 300]   (1-2 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script from anywhere

from mlestar_core.dask_executor import DaskExecutor  # noqa: E402
from mlestar_core.executor import Job, LocalExecutor  # noqa: E402

# A little single-threaded numpy work (~0.1 s) besides the interpreter start: a small script, not a trivial one.
SMALL = """
import numpy as np
rows = open("input/train.csv").read().splitlines()
rng = np.random.default_rng(0)
a = rng.random((250, 250))
for _ in range(40):
    a = np.tanh(a @ a / 250)
open("oof.csv", "w").write("row,pred\\n" + "".join(f"{i},{a[0, i % 250]:.4f}\\n" for i in range(len(rows))))
print(f"Final Validation Performance: {float(a.mean()):.4f}")
"""
TRIVIAL = 'open("oof.csv", "w").write("row,pred\\n0,1\\n")\nprint("Final Validation Performance: 1.0")\n'


def _inputs(root: Path) -> Path:
    folder = root / "inputs"
    folder.mkdir(exist_ok=True)
    (folder / "train.csv").write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(2000)))
    return folder


def _jobs(root: Path, tag: str, code: str, n: int, inputs: Path) -> list[Job]:
    return [Job(code, root / tag / f"{i:04d}", inputs=inputs, label=f"{tag}-{i}") for i in range(n)]


def _timed(executor: LocalExecutor | DaskExecutor, jobs: list[Job]) -> float:
    started = time.monotonic()
    results = executor.run_many(jobs)
    wall = time.monotonic() - started
    bad = [r.error_text(300) for r in results if not r.ok]
    assert not bad, bad[:3]
    return wall


def throughput(root: Path, n: int) -> None:
    from distributed import LocalCluster

    inputs = _inputs(root)
    print(f"{n} independent small scripts (sandboxed, a little numpy each); scripts/s, higher is better")
    print(f"{'workers':>8} {'local':>10} {'dask':>10} {'dask/local':>11}")
    for workers in (1, 2, 4):
        local = LocalExecutor(workers=workers, timeout=120, memory_mb=2048)
        _timed(local, _jobs(root, f"warm-l{workers}", SMALL, workers, inputs))
        t_local = _timed(local, _jobs(root, f"local{workers}", SMALL, n, inputs))
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=logging.ERROR) as cluster, \
                DaskExecutor(cluster.scheduler_address, timeout=120, memory_mb=2048) as dask:
            _timed(dask, _jobs(root, f"warm-d{workers}", SMALL, workers, inputs))  # workers import, inputs ship
            t_dask = _timed(dask, _jobs(root, f"dask{workers}", SMALL, n, inputs))
        print(f"{workers:>8} {n / t_local:>10.2f} {n / t_dask:>10.2f} {t_local / t_dask:>11.2f}")


def long_batch(root: Path, n: int) -> None:
    from distributed import LocalCluster

    inputs = _inputs(root)
    print(f"one batch of {n} trivial scripts on 2 workers (overhead per script = wall x workers / scripts)")
    local = LocalExecutor(workers=2, timeout=120, memory_mb=2048)
    t_local = _timed(local, _jobs(root, "long-local", TRIVIAL, n, inputs))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, \
            DaskExecutor(cluster.scheduler_address, timeout=120, memory_mb=2048) as dask:
        _timed(dask, _jobs(root, "long-warm", TRIVIAL, 2, inputs))
        t_dask = _timed(dask, _jobs(root, "long-dask", TRIVIAL, n, inputs))
    for name, wall in (("local", t_local), ("dask", t_dask)):
        print(f"  {name:>5}: {wall:6.1f} s, {n / wall:6.1f} scripts/s, {wall * 2 / n * 1000:6.0f} ms of a worker per "
              "script")
    print(f"  dask adds {(t_dask - t_local) * 2 / n * 1000:.0f} ms per script over the local executor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", type=int, default=24, help="scripts per throughput measurement")
    parser.add_argument("--long", type=int, default=300, help="scripts in the long batch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_dask_") as tmp:
        print("== throughput against worker count")
        throughput(Path(tmp), args.scripts)
        print("== a long batch")
        long_batch(Path(tmp), args.long)


if __name__ == "__main__":
    main()
