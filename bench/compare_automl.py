"""Before/after tables for the README from two bench_automl.py result files.

    .venv/bin/python bench/compare_automl.py bench/results/automl-<stamp>-before.json \
        bench/results/automl-<stamp>-after.json

Prints: held-out scores per task (the agent before and after, and every contender of the after run,
the after run's best in bold), "agent beats X on n/N", wall times and memory, and, from the after
run's store, whether each final solution is at least as good as the best initial candidate.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlestar_core.metrics import get_metric, is_better  # noqa: E402

OTHERS = ["xgboost", "rf", "flaml", "autogluon"]


def by_key(results: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["task"], r["contender"]): r for r in results["results"]}


def fmt(v: float | None, best: float | None) -> str:
    if v is None:
        return "—"
    return f"**{v:.4g}**" if v == best else f"{v:.4g}"


def scores_table(before: dict, after: dict) -> None:
    print("| task | metric | agent before | agent after | default XGBoost | random forest | FLAML "
          "| AutoGluon (best quality) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    wins, n = dict.fromkeys(OTHERS, 0), 0
    for (task, contender), r in after.items():
        if contender != "agent":
            continue
        hib = get_metric(r["metric"]).higher_is_better
        vals = {k: after.get((task, k), {}).get("score") for k in ["agent", *OTHERS]}
        best = None
        for v in vals.values():
            if v is not None and (best is None or is_better(v, best, hib)):
                best = v
        n += 1
        for k in OTHERS:
            wins[k] += is_better(vals["agent"], vals[k], hib)
        prior = before.get((task, "agent"), {}).get("score")
        cells = " | ".join(fmt(vals[k], best) for k in ["agent", *OTHERS])
        print(f"| {task} | {r['metric']} {'↑' if hib else '↓'} | {fmt(prior, None)} | {cells} |")
    print()
    print("; ".join(f"agent beats {k} on {v}/{n}" for k, v in wins.items()))


def time_table(before: dict, after: dict) -> None:
    print("| task | agent wall (before → after) | FLAML wall | AutoGluon wall | agent peak memory (tree) |")
    print("|---|---:|---:|---:|---:|")
    for (task, contender), r in after.items():
        if contender != "agent":
            continue
        b = before.get((task, "agent"), {}).get("wall_s", 0)
        flaml = after.get((task, "flaml"), {}).get("wall_s", 0)
        ag = after.get((task, "autogluon"), {}).get("wall_s", 0)
        print(f"| {task} | {b:.0f} s → {r['wall_s']:.0f} s | {flaml:.0f} s | {ag:.0f} s | {r['peak_tree_mb']:.0f} MB |")


def final_vs_initial(store: Path) -> None:
    con = sqlite3.connect(store)
    con.row_factory = sqlite3.Row
    print("| task | K × repeats | best initial candidate (validation) | final (validation) | final | "
          "final ≥ best initial |")
    print("|---|---|---:|---:|---|---|")
    for run in con.execute("SELECT * FROM runs ORDER BY created"):
        task = json.loads(run["task_json"])
        hib = task["higher_is_better"]
        initial = [r["score"] for r in con.execute(
            "SELECT e.score FROM executions e JOIN scripts s ON s.id = e.script_id WHERE s.run_id = ? "
            "AND s.role = 'initial' AND e.purpose = 'search' AND e.score IS NOT NULL", (run["id"],))]
        best = (max(initial) if hib else min(initial)) if initial else None
        final = run["best_score"]
        proto = json.loads(run["protocol_json"] or "{}")
        step = con.execute("SELECT result_json FROM steps WHERE run_id = ? AND key = 'final'", (run["id"],)).fetchone()
        label = json.loads(step["result_json"] or "{}").get("final_label", "?") if step else "?"
        ok = final is not None and best is not None and not is_better(best, final, hib)
        print(f"| {task['name']} | {proto.get('n_folds')} × {proto.get('n_repeats')} | {fmt(best, None)} | "
              f"{fmt(final, None)} | {label} | {'yes' if ok else 'NO'} |")


def main() -> None:
    before_path, after_path = sys.argv[1], sys.argv[2]
    before, after = (by_key(json.loads(Path(p).read_text())) for p in (before_path, after_path))
    scores_table(before, after)
    print()
    time_table(before, after)
    print()
    final_vs_initial(Path(after_path.removesuffix(".json")) / "store" / "mlestar.db")


if __name__ == "__main__":
    main()
