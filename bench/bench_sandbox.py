"""What the sandbox costs: start-up per job and one realistic sklearn script, with and without it.

Run: .venv/bin/python bench/bench_sandbox.py   (about a minute on 2 cores)

"bwrap" = bubblewrap + cgroups + launcher (the default where bubblewrap works); "none" = the fallback
(launcher and cgroups, no namespaces); "bare" = a plain Popen of the interpreter, for reference.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script from anywhere

from mlestar_core import sandbox  # noqa: E402
from mlestar_core.executor import Job, LocalExecutor  # noqa: E402

RUNS = 20
TRIVIAL = "print(1)\n"
# A realistic search-phase script: read a table, 5-fold CV of a gradient-boosting model, write oof.csv.
SKLEARN = """
import numpy as np, pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import cross_val_predict
X, y = make_classification(n_samples=8_000, n_features=20, random_state=0)
pd.DataFrame(X).assign(target=y).to_csv("input_copy.csv", index=False)
frame = pd.read_csv("input_copy.csv")
oof = cross_val_predict(HistGradientBoostingClassifier(max_iter=150, random_state=0),
                        frame.drop(columns="target"), frame["target"], cv=5, method="predict_proba")[:, 1]
pd.DataFrame({"oof": oof}).to_csv("oof.csv", index=False)
print(f"Final Validation Performance: {np.mean((oof > 0.5) == frame['target']):.4f}")
"""


def startup(ex: LocalExecutor | None, root: Path) -> list[float]:
    times = []
    for i in range(RUNS):
        wd = root / f"t{i}"
        t0 = time.monotonic()
        if ex is None:
            wd.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-c", TRIVIAL], cwd=wd, stdout=subprocess.DEVNULL, check=True)
        else:
            res = ex.run(Job(TRIVIAL, wd))
            assert res.exit_code == 0, res.error_text()
        times.append(time.monotonic() - t0)
    return times


def main() -> None:
    modes = ["bwrap", "none"] if sandbox.probe_bwrap()[0] else ["none"]
    if modes == ["none"]:
        print(f"bubblewrap unavailable ({sandbox.probe_bwrap()[1]}): measuring the fallback only")
    executors = {m: LocalExecutor(workers=1, timeout=300, sandbox=m) for m in modes}
    for m, ex in executors.items():
        print(f"{m:5}: memory={ex.isolation.memory_limit}, processes={ex.isolation.process_limit}")
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        root = Path(tmp)
        for ex in executors.values():  # warm-up: the probes, interpreter discovery, page cache
            ex.run(Job(TRIVIAL, root / "warm"))
        print(f"\nstart-up per job, median of {RUNS} `print(1)` jobs (min / max):")
        medians = {}
        for name, ex in [*executors.items(), ("bare", None)]:
            t = startup(ex, root / name)
            medians[name] = statistics.median(t)
            print(f"  {name:5}  {medians[name] * 1000:7.1f} ms   ({min(t) * 1000:.1f} / {max(t) * 1000:.1f})")
        if "bwrap" in medians:
            print(f"  sandbox cost over the fallback: {(medians['bwrap'] - medians['none']) * 1000:+.1f} ms per job")
        print("\none realistic sklearn script (HistGradientBoosting, 5-fold CV on 8000 rows), run alternately twice:")
        for rep in range(2):
            for name, ex in executors.items():
                t0 = time.monotonic()
                res = ex.run(Job(SKLEARN, root / f"sk-{name}-{rep}"))
                wall = time.monotonic() - t0
                assert res.ok, res.error_text()
                print(f"  {name:5}  {wall:6.2f} s  (peak {res.peak_memory_mb:.0f} MB, score {res.score})")


if __name__ == "__main__":
    main()
