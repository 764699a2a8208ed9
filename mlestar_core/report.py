"""report.md: what each phase scored, read back from the store (so every number has a script)."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

from .budget_clock import agent_seconds, fmt_duration, waiting_seconds
from .competition import load_grade
from .competition import report_lines as competition_lines
from .evaluation import Protocol, claim_disagrees
from .metrics import get_metric
from .script import imported_modules
from .store import Store
from .views import time_by_phase_text


def fmt(x: float | None) -> str:
    """A score as report.md (and the hand-off notebook's story) writes it: six significant digits."""
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
        f"- Run `{run_id}`, brain **{run.get('brain')}**, seed {config.get('seed')}, {agent_time_text(run)}",
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
        waited = sum(float(d["decided"]) - float(d["created"]) for d in store.table("decisions", run_id)
                     if d.get("decided"))
        if waited >= 1:  # the steps' wall times include the waits; agent time above does not
            lines[-1] += (f" (the refine steps include {fmt_duration(waited)} of plans waiting for a decision, "
                          "which is not agent time)")
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
        f"| trivial baseline (class prior / mean), validation folds | {fmt(summary.get('baseline_score'))} |",
        f"| final solution ({summary.get('final_label')}), validation folds (engine-measured) | "
        f"{fmt(summary.get('validation_score'))} |",
        f"| final solution, locked hold-out (no choice was made on it) | {fmt(summary.get('holdout_score'))} |",
        "",
        f"Script #{summary.get('final_script_id')} is saved as `solution.py`; "
        + (f"submission: `{Path(summary['submission']).name}`." if summary.get("submission")
           else "no test file, so no submission was written."),
        "",
    ]
    lines += competition_lines(load_grade(store.run_dir(run_id)))  # an MLE-bench task: its private answers' grade
    facts = solution_facts(store, run_id, summary, out_dir)
    lines += ["## Running the final solution yourself", "", *solution_explanation(facts, markdown=True), ""]
    annotate_solution(out_dir / "solution.py", solution_explanation(facts, markdown=False))
    lines += [
        "## Scores by stage",
        "",
        "| stage | validation score | script |",
        "|---|---|---|",
    ]
    lines += [f"| {stage} | {fmt(score)} | #{sid} |" for stage, score, sid in scores_by_stage(store, run_id)]
    ablations = store.table("ablations", run_id)
    attempts = store.table("attempts", run_id)
    for track in sorted({a["track"] for a in ablations} | {a["track"] for a in attempts}):
        lines += ["", f"## Refinement, track {track + 1}"]
        for outer in sorted({a["outer_step"] for a in ablations if a["track"] == track}):
            lines += ["", f"### Outer step {outer + 1}: ablation", "",
                      "| block ablated | variant | score | contribution |", "|---|---|---|---|"]
            for a in ablations:
                if a["track"] == track and a["outer_step"] == outer:
                    lines.append(f"| {a['block']} | {a['description']} | {fmt(a['score'])} | {fmt(a['delta'])} |")
            rows = [a for a in attempts if a["track"] == track and a["outer_step"] == outer]
            if rows:
                lines += ["", f"Refined block **{rows[0]['block']}**:", "",
                          "| attempt | plan | decision | score | vs. start | kept |", "|---|---|---|---|---|---|"]
                for a in rows:
                    gain = None if a["score"] is None or a["baseline"] is None else (
                        a["score"] - a["baseline"] if metric.higher_is_better else a["baseline"] - a["score"])
                    lines.append(f"| {a['inner_step'] + 1} | {_first_line(a['plan'])} | {a['decision']} | "
                                 f"{fmt(a['score'])} | {fmt(gain)} | {'✓' if a['kept'] else ''} |")
    rounds = store.table("ensemble_rounds", run_id)
    if rounds:
        lines += ["", "## Ensemble", "", "Strategies named by the planner are scored by the engine on the stored "
                  "out-of-fold predictions (weights and stackers fitted on the other folds).", "",
                  "| round | strategy | weights | score |", "|---|---|---|---|"]
        for r in rounds:
            weights = json.loads(r.get("weights_json") or "null")
            shown = ", ".join(f"{w:.2f}" for w in weights) if weights else "—"
            lines.append(f"| {r['round'] + 1} | {r.get('strategy') or _first_line(r['plan'])} | {shown} | "
                         f"{fmt(r['score'])} |")
    from .explain import report_lines  # what drives the model, predicting new rows (issue 12)

    lines += report_lines(store.run_dir(run_id), run_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def agent_time_text(run: dict[str, Any], now: float | None = None) -> str:
    """'agent time 31 s of a 240 s budget (2 min 10 s waiting for decisions or paused, not counted)': the run's
    time_used as the engine stored it (waiting for humans excluded), the same number the dashboard shows
    (budget_clock.agent_seconds)."""
    config = json.loads(run.get("config_json") or "{}")
    used = agent_seconds(run, (), now)
    text = f"agent time {used:.0f} s" + (f" of a {config['time_budget']:.0f} s budget" if config.get("time_budget")
                                          else "")
    waited = waiting_seconds(run, now)
    if waited >= 1:
        text += (f" ({fmt_duration(waited)} waiting for human decisions or paused, not counted against the "
                 "budget)")
    return text


# -- the final solution.py: what it prints and how to run it --------------------------------------

SOLUTION_HEADER_START = "# ==== About this file (written by MLE-STAR with the run's report) ===="
SOLUTION_HEADER_END = "# ==== end of: About this file ===="
_PIP_NAMES = {"sklearn": "scikit-learn"}


def _packages(code: str) -> list[str]:
    """The third-party packages a script imports (pip names), for the how-to-run note."""
    return sorted(_PIP_NAMES.get(n, n) for n in imported_modules(code))


def solution_facts(store: Store, run_id: str, summary: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """What the explanation of solution.py needs: the scores, the rows behind each, the files it reads."""
    run = store.get_run(run_id) or {}
    task = json.loads(run.get("task_json") or "{}")
    protocol = json.loads(run.get("protocol_json") or "null")
    data = store.run_dir(run_id) / "data"
    try:
        split = json.loads((data / "split.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        split = {}
    full_dir = data / str(split.get("full_dir") or "full")
    sid = summary.get("final_script_id")
    full = store.finished_execution(int(sid), "full") if sid is not None else None
    script = store.get_script(int(sid)) if sid is not None else None
    metric = get_metric(task.get("metric", "accuracy"))
    inputs = sorted(p.name for p in full_dir.iterdir() if p.is_file()) if full_dir.is_dir() else []
    return {
        "metric": metric.title, "direction": "higher is better" if metric.higher_is_better else "lower is better",
        "validation": summary.get("validation_score"), "holdout": summary.get("holdout_score"),
        # "3-fold stratified cross-validation" (describe() adds "over N rows": said below as the search rows)
        "protocol": re.sub(r" over \d+ rows$", "", Protocol.from_dict(protocol).describe()) if protocol
        else "cross-validation",
        "n_search": split.get("n_search") or (protocol or {}).get("n_rows"), "n_holdout": split.get("n_holdout"),
        "n_total": task.get("n_train_rows"), "printed": full.get("score") if full else None,
        "out_dir": str(out_dir), "full_dir": str(full_dir), "inputs": inputs,
        "train_file": split.get("train_file") or "train.csv",
        "packages": _packages(str(script["code"])) if script else [], "has_test": bool(task.get("test_file")),
        "script_id": sid, "label": summary.get("final_label"), "run_id": run_id,
    }


def solution_explanation(f: dict[str, Any], *, markdown: bool) -> list[str]:
    """Why solution.py, run on its own, prints another number than the headline validation score, and how to
    run it; the same words in report.md (`markdown`) and in the header comment of solution.py."""
    code = (lambda x: f"`{x}`") if markdown else (lambda x: x)
    hold = (f"The locked hold-out score, {fmt(f['holdout'])}, is this script trained on those search rows and "
            f"scored on the {f['n_holdout']} hold-out rows no choice was made on: the honest estimate for new data."
            if f["holdout"] is not None else
            "This run has no locked hold-out score (too few rows, or the hold-out run failed).")
    printed = (f" — in this run's own full-data run it printed {fmt(f['printed'])}" if f["printed"] is not None
               else "")
    files = ", ".join(f["inputs"]) if f["inputs"] else f"{f['train_file']} and the task's other files"
    packages = f"the packages it imports ({', '.join(f['packages'])})" if f["packages"] else "the packages it imports"
    bullets = [
        f"The headline validation score, {fmt(f['validation'])} ({f['metric']}, {f['direction']}), is the "
        f"engine's own {f['protocol']} on the {f['n_search']} search rows (the training rows minus the locked "
        "hold-out), scored from the out-of-fold predictions the script wrote. The run chose this solution by it.",
        hold,
        f"Run on its own with the task's full {f['train_file']}, the script makes the same folds itself (no "
        f"folds.csv needed) over all {f['n_total']} training rows, hold-out rows included, and prints that "
        f"cross-validated score as its {code('Final Validation Performance')} line{printed}. It is measured on "
        "more (and other) rows than the headline, so it differs from it; and it is not a hold-out score, because "
        "the hold-out rows are among the rows it trains on.",
        ("The submission comes from this full-data fit: the mean of its fold models' test predictions."
         if f["has_test"] else "The task has no test file, so no submission is written."),
    ]
    steps = [f"cd {f['out_dir']}",
             f"mkdir -p input && cp {f['full_dir']}/* input/",
             "python solution.py"]
    needs = (f"It reads only ./input/ (here: {files}; folds.csv among them holds the same folds the script would "
             f"make) and needs Python 3 with {packages}. It writes ./submission.csv (set MLESTAR_SUBMIT=0 to skip "
             "it) and its working files oof.csv and test_pred.csv.")
    if markdown:
        return ([f"`solution.py` is script #{f['script_id']} ({f['label']}). What its printed number is, and why it "
                 "differs from the headline score:", ""] + [f"- {b}" for b in bullets]
                + ["", "To run it yourself (the task's files under `./input/`):", "", "```bash", *steps, "```", "",
                   needs])
    wrap = [*_wrapped(f"MLE-STAR final solution of run {f['run_id']}: script #{f['script_id']} ({f['label']})."),
            "", "What it prints, and why that differs from the headline score in report.md:"]
    for b in bullets:
        wrap += _wrapped(b, "  - ", "    ")
    wrap += ["", "How to run it yourself (the task's files under ./input/):"]
    wrap += [f"    {step}" for step in steps]
    wrap += _wrapped(needs)
    return wrap


def _wrapped(text: str, first: str = "", rest: str = "", width: int = 100) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest) or [""]


def annotate_solution(path: Path, lines: list[str]) -> None:
    """Put (or refresh) the explanation as a comment block at the top of solution.py; the code is unchanged."""
    if not path.is_file():
        return
    code = path.read_text(encoding="utf-8")
    if code.startswith(SOLUTION_HEADER_START):
        end = code.find(SOLUTION_HEADER_END)
        if end >= 0:
            code = code[end + len(SOLUTION_HEADER_END):].lstrip("\n")
    header = [SOLUTION_HEADER_START, *[f"# {ln}".rstrip() for ln in lines], SOLUTION_HEADER_END, ""]
    path.write_text("\n".join(header) + code, encoding="utf-8")
