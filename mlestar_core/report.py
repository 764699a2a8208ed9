"""report.md: what each phase scored, read back from the store (so every number has a script)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .evaluation import Protocol, claim_disagrees
from .metrics import get_metric
from .store import Store
from .views import time_by_phase_text


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.6g}"


def _first_line(text: str | None, limit: int = 90) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def scores_by_stage(store: Store, run_id: str) -> list[tuple[str, float | None, int | None]]:
    """(stage, score, script id) rows in pipeline order: the backbone of the report and the UI."""
    scripts = store.table("scripts", run_id)
    execs = {e["script_id"]: e for e in store.table("executions", run_id) if e["purpose"] == "search"}
    # An ensemble written after the engine scored its round on stored predictions carries that score.
    rounds = {r["script_id"]: r["score"] for r in store.table("ensemble_rounds", run_id) if r.get("script_id")}
    rows: list[tuple[str, float | None, int | None]] = []
    for s in scripts:
        if s["role"] in ("baseline", "initial", "merge", "ensemble"):
            e = execs.get(s["id"])
            rows.append((f"{s['role']}: {s['label']}", e["score"] if e else rounds.get(s["id"]), s["id"]))
    return rows


def write_report(store: Store, run_id: str, summary: dict[str, Any], out_dir: Path) -> Path:
    run = store.get_run(run_id) or {}
    task = json.loads(run.get("task_json") or "{}")
    config = json.loads(run.get("config_json") or "{}")
    metric = get_metric(task.get("metric", "accuracy"))
    direction = "higher is better" if metric.higher_is_better else "lower is better"
    execs = store.table("executions", run_id)
    lines = [
        f"# MLE-STAR report — {run.get('name', run_id)}",
        "",
        f"- Run `{run_id}`, brain **{run.get('brain')}**, seed {config.get('seed')}, "
        f"time used {float(run.get('time_used') or 0):.0f} s"
        + (f" of a {config['time_budget']:.0f} s budget" if config.get("time_budget") else ""),
        f"- Task: {task.get('task_type')} on `{task.get('target')}`, {task.get('n_train_rows')} training rows; "
        f"metric **{metric.title}** ({direction})",
        f"- Knobs: M={config.get('num_models')} T={config.get('outer_steps')} K={config.get('inner_steps')} "
        f"L={config.get('num_solutions')} R={config.get('ensemble_rounds')}",
        f"- Scripts run: {len(execs)}, failed: {sum(1 for e in execs if e['score'] is None)}",
    ]
    if task.get("metric_defaulted"):
        lines.append(f"- The description names no metric: **{metric.title}** is the default for a "
                     f"{task.get('task_type')} task (choose another with --metric).")
    protocol = json.loads(run.get("protocol_json") or "null")
    if protocol:
        described = f"{Protocol.from_dict(protocol).describe()} ({protocol.get('reason') or 'set for this run'})"
        lines.append(f"- Evaluation (owned by the engine): {described}; every score below is "
                     "computed by the engine from the out-of-fold predictions the script wrote (oof.csv)")
    disagreements = [e for e in execs if e["score"] is not None and e["purpose"] == "search"
                     and claim_disagrees(e.get("claimed_score"), e["score"])]
    if disagreements:
        lines.append(f"- {len(disagreements)} script(s) printed a score the engine did not measure "
                     f"(e.g. script #{disagreements[0]['script_id']}: {disagreements[0]['score_note']})")
    refused = [e for e in execs if e["exit_code"] == 0 and e["score"] is None and e.get("score_note")]
    if refused:
        lines.append(f"- {len(refused)} script(s) ran but wrote predictions the engine refused (e.g. script "
                     f"#{refused[0]['script_id']}: {refused[0]['score_note']})")
    stopped = [e for e in execs if e.get("killed_reason") == "early_stop"]
    if stopped:
        lines.append(f"- {len(stopped)} refinement attempt(s) stopped early: their first folds showed they could "
                     "not catch up with their baseline")
    phases = time_by_phase_text(store.steps(run_id))
    if phases:
        lines.append(f"- Where the time went (tracks run side by side, so phases overlap): {phases}")
    usage = store.brain_usage(run_id)
    llm = config.get("llm") or {}
    if run.get("brain") != "offline" and usage:
        calls = sum(u["calls"] for u in usage)
        fallbacks = sum(int(u.get("fallbacks") or 0) for u in usage)
        degraded = ", ".join(f"{u['role']} ×{u['fallbacks']}" for u in usage if u.get("fallbacks"))
        lines.append(
            f"- Brain calls: {calls} ({sum(u['failed'] for u in usage)} failed or unusable"
            + (f", of which {fallbacks} fell back to a substitute without a model answer: {degraded}"
               if fallbacks else "") + "), model "
            f"{llm.get('model') or 'default'}; tokens {sum(u['tokens_in'] for u in usage)} in, "
            f"{sum(u['tokens_out'] for u in usage)} out; estimated cost ${sum(u['cost'] for u in usage):.4f}"
            + (f" (cap ${config['cost_cap']:g})" if config.get("cost_cap") else ""))
    if summary.get("budget_exhausted"):
        lines.append("- The time budget or the cost cap ran out: the run wrapped up with the best solution so far.")
    lines += [
        "",
        "## Final solution",
        "",
        "| what | score |",
        "|---|---|",
        f"| trivial baseline (class prior / mean), validation folds | {_fmt(summary.get('baseline_score'))} |",
        f"| final solution ({summary.get('final_label')}), validation folds (engine-measured) | "
        f"{_fmt(summary.get('validation_score'))} |",
        f"| final solution, locked hold-out (no choice was made on it) | {_fmt(summary.get('holdout_score'))} |",
        "",
        f"Script #{summary.get('final_script_id')} is saved as `solution.py`; "
        + (f"submission: `{Path(summary['submission']).name}`." if summary.get("submission")
           else "no test file, so no submission was written."),
        "",
        "## Scores by stage",
        "",
        "| stage | validation score | script |",
        "|---|---|---|",
    ]
    lines += [f"| {stage} | {_fmt(score)} | #{sid} |" for stage, score, sid in scores_by_stage(store, run_id)]
    ablations = store.table("ablations", run_id)
    attempts = store.table("attempts", run_id)
    for track in sorted({a["track"] for a in ablations} | {a["track"] for a in attempts}):
        lines += ["", f"## Refinement, track {track + 1}"]
        for outer in sorted({a["outer_step"] for a in ablations if a["track"] == track}):
            lines += ["", f"### Outer step {outer + 1}: ablation", "",
                      "| block ablated | variant | score | contribution |", "|---|---|---|---|"]
            for a in ablations:
                if a["track"] == track and a["outer_step"] == outer:
                    lines.append(f"| {a['block']} | {a['description']} | {_fmt(a['score'])} | {_fmt(a['delta'])} |")
            rows = [a for a in attempts if a["track"] == track and a["outer_step"] == outer]
            if rows:
                lines += ["", f"Refined block **{rows[0]['block']}**:", "",
                          "| attempt | plan | decision | score | vs. start | kept |", "|---|---|---|---|---|---|"]
                for a in rows:
                    gain = None if a["score"] is None or a["baseline"] is None else (
                        a["score"] - a["baseline"] if metric.higher_is_better else a["baseline"] - a["score"])
                    lines.append(f"| {a['inner_step'] + 1} | {_first_line(a['plan'])} | {a['decision']} | "
                                 f"{_fmt(a['score'])} | {_fmt(gain)} | {'✓' if a['kept'] else ''} |")
    rounds = store.table("ensemble_rounds", run_id)
    if rounds:
        lines += ["", "## Ensemble", "", "Strategies named by the planner are scored by the engine on the stored "
                  "out-of-fold predictions (weights and stackers fitted on the other folds).", "",
                  "| round | strategy | weights | score |", "|---|---|---|---|"]
        for r in rounds:
            weights = json.loads(r.get("weights_json") or "null")
            shown = ", ".join(f"{w:.2f}" for w in weights) if weights else "—"
            lines.append(f"| {r['round'] + 1} | {r.get('strategy') or _first_line(r['plan'])} | {shown} | "
                         f"{_fmt(r['score'])} |")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
