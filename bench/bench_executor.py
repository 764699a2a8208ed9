"""Benchmark of LocalExecutor: parallel speedup on CPU-bound scripts, and per-run overhead.

Run: .venv/bin/python bench/bench_executor.py   (about 20 s on 2 cores)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script from anywhere

from mlestar_core.executor import Job, LocalExecutor, scrubbed_env  # noqa: E402

# ~3-4 s of single-threaded training on this machine; threads come from the executor's settings.
TRAIN = """
import time
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
X, y = make_classification(n_samples=20_000, n_features=20, random_state=0)
model = HistGradientBoostingClassifier(max_iter=700, early_stopping=False, random_state=0).fit(X, y)
print(f"Final Validation Performance: {model.score(X, y):.4f}")
"""
TRIVIAL = 'print("Final Validation Performance: 1.0")\n'
OVERHEAD_RUNS = 10


def parallel_speedup(root: Path) -> None:
    ex = LocalExecutor(workers=2, timeout=120)  # threads_per_job = cpu_count // 2
    print(f"cpu_count={ex.threads_per_job * ex.workers}  workers=2  threads_per_job={ex.threads_per_job}")
    t0 = time.monotonic()
    one = ex.run(Job(TRAIN, root / "single"))
    t_one = time.monotonic() - t0
    assert one.ok, one.error_text()
    t0 = time.monotonic()
    two = ex.run_many([Job(TRAIN, root / "par_a"), Job(TRAIN, root / "par_b")])
    t_two = time.monotonic() - t0
    assert all(r.ok for r in two), [r.error_text() for r in two]
    print(f"one CPU-bound script:            {t_one:6.2f} s  (peak {one.peak_memory_mb:.0f} MB)")
    print(f"two of them via run_many:        {t_two:6.2f} s")
    print(f"ratio two/one:                   {t_two / t_one:6.2f}  (1.0 = perfect parallelism, 2.0 = serial)")
    print(f"throughput speedup:              {2 * t_one / t_two:6.2f}x")
    # Same pair started by hand, to tell the machine's own parallel scaling from the executor's.
    wd = root / "single"
    env = scrubbed_env(None, wd, ex.threads_per_job)
    t0 = time.monotonic()
    procs = [
        subprocess.Popen([ex.python, "script.py"], cwd=wd, env=env, stdout=subprocess.DEVNULL)
        for _ in range(2)
    ]
    for proc in procs:
        proc.wait()
    t_bare = time.monotonic() - t0
    print(f"reference, two bare Popen:       {t_bare:6.2f} s  (ratio {t_bare / t_one:.2f})")


def overhead(root: Path) -> None:
    ex = LocalExecutor(workers=1, timeout=60)
    wd = root / "trivial"
    ex.run(Job(TRIVIAL, wd))  # warm the OS caches for both variants
    env = scrubbed_env(None, wd, ex.threads_per_job)
    bare, via = [], []
    for _ in range(OVERHEAD_RUNS):
        t0 = time.monotonic()
        subprocess.run(
            [ex.python, "script.py"], cwd=wd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, check=True,
        )  # fmt: skip
        bare.append(time.monotonic() - t0)
        t0 = time.monotonic()
        res = ex.run(Job(TRIVIAL, wd))
        via.append(time.monotonic() - t0)
        assert res.ok, res.error_text()
    b, v = statistics.mean(bare), statistics.mean(via)
    print(f"bare subprocess (mean of {OVERHEAD_RUNS}):     {b * 1000:6.1f} ms")
    print(f"via LocalExecutor.run (mean):    {v * 1000:6.1f} ms")
    print(f"executor overhead per run:       {(v - b) * 1000:6.1f} ms")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench_executor_") as tmp:
        print("== parallel speedup")
        parallel_speedup(Path(tmp))
        print("== executor overhead")
        overhead(Path(tmp))


if __name__ == "__main__":
    main()
