"""A finished run's story in markdown, read back from the store: the hand-off notebook's text (notebook.py).

Every number here is a stored one (a run, step, execution, ablation, attempt or ensemble-round row, or an event
the pipeline wrote); a section with nothing stored says so instead of guessing.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .evaluation import Protocol
from .kept import FinishedRun
from .metrics import get_metric
from .report import fmt  # the same number reads the same in report.md and the notebook
from .store import Store

ENV_VARS = {  # what each variable a solution may read means when the notebook or the script runs on its own
    "MLESTAR_SUBMIT": "`1` (the default) predicts the test file and writes `./submission.csv` and `test_pred.csv`; "
                      "`0` skips the test file",
    "MLESTAR_SEED": "the model seed; unset, the script uses the run's seed ({seed}), as in the run",
    "MLESTAR_THREADS": "the cores the models may use (default: all of this machine's)",
    "MLESTAR_MODEL_DIR": "when set, the script saves its fitted state there (what predicting new rows needs)",
    "MLESTAR_PREDICT_FROM": "when set, the script fits nothing: it loads that saved state and predicts the test file",
}


def _first_line(text: str | None, limit: int = 110) -> str:
    line = (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""
    line = line.replace("|", "\\|")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _gain(score: float | None, baseline: float | None, higher: bool) -> float | None:
    if score is None or baseline is None:
        return None
    return score - baseline if higher else baseline - score


def _search_scores(store: Store, run_id: str) -> dict[int, dict[str, Any]]:
    return {int(e["script_id"]): e for e in store.table("executions", run_id) if e["purpose"] == "search"}


def input_files(fr: FinishedRun) -> list[str]:
    """The files the final solution read from ./input/ in its full-data run (the run's copy of the task)."""
    return sorted(p.name for p in fr.data.full_dir.iterdir() if p.is_file()) if fr.data.full_dir.is_dir() else []


def header(store: Store, fr: FinishedRun, notebook_name: str = "this notebook") -> str:
    """The first cell: what this is, and how to run it (folder layout, environment variables)."""
    run = store.get_run(fr.run_id) or {}
    task = json.loads(run.get("task_json") or "{}")
    files = [f for f in input_files(fr) if f != "folds.csv"]
    layout = "\n".join(["your-folder/", f"    {notebook_name}", "    input/",
                        *[f"        {f}" for f in files],
                        "        folds.csv   (optional: the first code cell writes it when it is missing)"])
    full = store.finished_execution(fr.script_id, "full")
    printed = full.get("score") if full else None
    env = [f"- `{name}`: {text.format(seed=fr.config.seed)}" for name, text in ENV_VARS.items() if name in fr.code]
    lines = [
        f"# MLE-STAR final solution — {run.get('name') or fr.run_id}",
        "",
        f"Run `{fr.run_id}` ({run.get('brain')} brain, seed {fr.config.seed}) on the task "
        f"**{task.get('name') or run.get('name')}**. The code cells below are the run's final solution, script "
        f"#{fr.script_id} ({fr.summary.get('final_label')}), one cell per fenced block (`# [block: NAME]`); the "
        "first code cell checks the inputs and the second holds the script's imports and settings.",
        "",
        "## How to run it",
        "",
        "Run the cells top to bottom with the working folder holding the task's files under `./input/`:",
        "",
        "```text",
        layout,
        "```",
        "",
        "These are the task's own files as the run copied them"
        + (" (`description.md` is optional)" if "description.md" in files else "") + ". The first code "
        "cell stops when one is missing, warns when one differs from the run's copy (SHA-256), and writes "
        "`./input/folds.csv` — the engine's folds over all the training rows — when it is not there.",
        "",
    ]
    if env:
        lines += ["Environment variables the solution reads (set them before starting Jupyter, or with "
                  "`%env NAME=value` in a cell above the code):", "", *env, ""]
    lines += [
        "It prints one `Final Validation Performance: <score>` line: a cross-validated score over all "
        f"{task.get('n_train_rows')} training rows, hold-out rows included"
        + (f" (the run's own full-data run printed **{fmt(printed)}**)" if printed is not None else "")
        + ". That is not the headline validation score, which was measured on the search rows only (see "
        "*Final scores* below)."
        + (" It writes `./submission.csv`; with the same inputs it equals the run's submission."
           if fr.task.test_file else " The task has no test file, so no submission is written."),
    ]
    return "\n".join(lines)


def task_section(store: Store, fr: FinishedRun) -> str:
    run = store.get_run(fr.run_id) or {}
    task = json.loads(run.get("task_json") or "{}")
    metric = get_metric(task.get("metric", "accuracy"))
    protocol = json.loads(run.get("protocol_json") or "null")
    lines = [
        "## The task and its metric",
        "",
        f"- {task.get('task_type')} on `{task.get('target')}`, {task.get('n_train_rows')} training rows; metric "
        f"**{metric.title}** ({'higher' if metric.higher_is_better else 'lower'} is better).",
        f"- Locked hold-out: {fr.data.n_holdout} rows set aside before the search; the search saw "
        f"{fr.data.n_search} rows.",
    ]
    if protocol:
        described = re.sub(r" over \d+ rows$", "", Protocol.from_dict(protocol).describe())
        lines.append(f"- Every validation score below is the engine's own {described} on the search rows, computed "
                     "from the out-of-fold predictions each script wrote.")
    lines.append(f"- Trivial baseline (class prior / mean): **{fmt(fr.summary.get('baseline_score'))}**.")
    return "\n".join(lines)


def models_section(store: Store, run_id: str) -> str:
    cards = store.table("model_cards", run_id, order="rank")
    if not cards:
        return "## Retrieved models\n\nNo model cards were retrieved in this run (a forked run starts from a script)."
    lines = ["## Retrieved models", "", "| rank | model | family | source | why |", "|---|---|---|---|---|"]
    lines += [f"| {int(c['rank']) + 1} | {_first_line(c['name'])} | {c.get('family') or '—'} | "
              f"{c.get('source') or '—'} | {_first_line(c.get('why'))} |" for c in cards]
    return "\n".join(lines)


def candidates_section(store: Store, run_id: str) -> str:
    execs = _search_scores(store, run_id)
    scripts = [s for s in store.table("scripts", run_id) if s["role"] == "initial"]
    if not scripts:
        return "## Initial candidates\n\nNo initial candidates are stored."
    lines = ["## Initial candidates", "", "One script per retrieved model, scored by the engine:", "",
             "| script | candidate | validation score |", "|---|---|---|"]
    for s in scripts:
        e = execs.get(int(s["id"]))
        lines.append(f"| #{s['id']} | {_first_line(s['label'])} | {fmt(e['score'] if e else None)} |")
    return "\n".join(lines)


def merge_section(store: Store, run_id: str) -> str:
    events = [e["payload"] for e in store.events_of_kind(run_id, "merge")]
    starts = []
    for step in store.steps(run_id):
        key = step["key"]
        if key.endswith("/merge") and step["status"] == "done":
            _, result = store.step_result(run_id, key)
            if result:
                starts.append((int(key[1:].split("/")[0]), result))
    if not events and not starts:
        return "## Merge\n\nNo merge step is stored."
    lines = ["## Merge", "", "Each track starts from one candidate and merges others in while the score improves."]
    if events:
        lines += ["", "| track | base | merged in | base score | merged score | kept |", "|---|---|---|---|---|---|"]
        for p in events:
            merged = "skipped (" + _first_line(p.get("reason"), 60) + ")" if p.get("skipped") else fmt(p.get("score"))
            lines.append(f"| {int(p['track']) + 1} | {_first_line(p.get('base'), 60)} | "
                         f"{_first_line(p.get('reference'), 60)} | {fmt(p.get('base_score'))} | {merged} | "
                         f"{'✓' if p.get('kept') else ''} |")
    for t, result in sorted(starts, key=lambda x: x[0]):
        lines.append(f"\nTrack {t + 1} went on with script #{result.get('script_id')} "
                     f"({_first_line(result.get('label'), 80)}): {fmt(result.get('score'))}.")
    return "\n".join(lines)


def ablation_section(store: Store, run_id: str) -> str:
    rows = store.table("ablations", run_id)
    if not rows:
        return "## Ablation\n\nNo ablation study is stored (no refinement step ran)."
    lines = ["## Ablation", "", "Each variant switches one block of the track's solution to a simpler alternative; "
             "the contribution (delta) is how much the block helps (the mean of the paired per-fold deltas)."]
    for track, outer in sorted({(int(a["track"]), int(a["outer_step"])) for a in rows}):
        part = [a for a in rows if int(a["track"]) == track and int(a["outer_step"]) == outer]
        lines += ["", f"**Track {track + 1}, outer step {outer + 1}** (the unablated solution scored "
                      f"{fmt(part[0]['baseline'])}):", "",
                  "| block | variant | score | contribution |", "|---|---|---|---|"]
        for a in part:
            spread = f" ± {fmt(a['delta_std'])}" if a.get("delta_std") else ""
            lines.append(f"| `{a['block']}` | {_first_line(a['description'], 90)} | {fmt(a['score'])} | "
                         f"{fmt(a['delta'])}{spread} |")
        scored = [a for a in part if a["delta"] is not None]
        top = max(scored, key=lambda a: float(a["delta"])) if scored else None
        if top is not None and float(top["delta"]) > 0:
            lines.append(f"\nThe block that mattered most: `{top['block']}` (contribution {fmt(top['delta'])}).")
        elif top is not None:
            lines.append("\nNo block's simpler alternative scored worse: no block stood out.")
    return "\n".join(lines)


def refinement_section(store: Store, run_id: str, higher: bool) -> str:
    attempts = store.table("attempts", run_id)
    if not attempts:
        return "## Refinements\n\nNo refinement attempt is stored."
    lines = ["## Refinements kept", "", "For each (track, outer step) the most impactful block not yet refined was "
             "rewritten; the best attempt on the fold mean is kept when it beats the starting score."]
    for track, outer in sorted({(int(a["track"]), int(a["outer_step"])) for a in attempts}):
        part = [a for a in attempts if int(a["track"]) == track and int(a["outer_step"]) == outer]
        kept = [a for a in part if a["kept"]]
        head = (f"**Track {track + 1}, outer step {outer + 1}: block `{part[0]['block']}`**, {len(part)} attempt(s), "
                f"starting from {fmt(part[0]['baseline'])}")
        if not kept:
            lines += ["", head + ": none kept (no attempt beat it)."]
            continue
        lines += ["", head + ":", "", "| attempt | plan | score | change | status |", "|---|---|---|---|---|"]
        for a in kept:
            lines.append(f"| {int(a['inner_step']) + 1} | {_first_line(a['plan'])} | {fmt(a['score'])} | "
                         f"{fmt(_gain(a['score'], a['baseline'], higher))} | {a['status']} |")
    return "\n".join(lines)


def ensemble_section(store: Store, run_id: str, final_script_id: int) -> str:
    rounds = store.table("ensemble_rounds", run_id)
    if not rounds:
        return "## Ensemble\n\nNo ensemble round ran: the final solution is a single track's script."
    labels = {int(s["id"]): s["label"] for s in store.table("scripts", run_id)}
    lines = ["## Ensemble", "", "Each round's strategy was scored by the engine on the stored out-of-fold predictions "
             "(weights and stackers fitted on the other folds).", "",
             "| round | strategy | members (weight) | score |", "|---|---|---|---|"]
    for r in rounds:
        members = json.loads(r.get("members_json") or "[]")
        weights = json.loads(r.get("weights_json") or "null") or [None] * len(members)
        shown = "; ".join(f"#{m} {_first_line(labels.get(int(m), ''), 40)}" + (f" ({w:.2f})" if w is not None else "")
                          for m, w in zip(members, weights, strict=False)) or "—"
        lines.append(f"| {int(r['round']) + 1} | {r.get('strategy') or _first_line(r['plan'], 60)} | {shown} | "
                     f"{fmt(r['score'])} |")
    chosen = [r for r in rounds if r.get("script_id") and int(r["script_id"]) == final_script_id]
    if chosen:
        lines.append(f"\nThe final solution is round {int(chosen[0]['round']) + 1}'s "
                     f"**{chosen[0].get('strategy') or 'ensemble'}**, written out as script #{final_script_id}.")
    else:
        lines.append("\nNo ensemble was chosen as the final solution (none beat the best single solution, or it "
                     "could not be written).")
    return "\n".join(lines)


def final_section(store: Store, fr: FinishedRun) -> str:
    s = fr.summary
    full = store.finished_execution(fr.script_id, "full")
    lines = [
        "## Final scores",
        "",
        "| what | score |",
        "|---|---|",
        f"| trivial baseline, validation folds | {fmt(s.get('baseline_score'))} |",
        f"| final solution ({_first_line(s.get('final_label'), 60)}), validation folds (engine-measured) | "
        f"{fmt(s.get('validation_score'))} |",
        f"| final solution, locked hold-out ({fr.data.n_holdout} rows no choice was made on) | "
        f"{fmt(s.get('holdout_score'))} |",
        f"| printed by the full-data run (all training rows, what the cells below print) | "
        f"{fmt(full.get('score') if full else None)} |",
    ]
    return "\n".join(lines)


def block_note(store: Store, run_id: str, block: str, higher: bool) -> str:
    """The markdown above a block's cell: its ablation contributions and the refinements kept in it."""
    lines = [f"### Block `{block}`"]
    for a in store.table("ablations", run_id):
        if a["block"] == block:
            lines.append(f"- Ablation, track {int(a['track']) + 1} step {int(a['outer_step']) + 1}: without it "
                         f"(*{_first_line(a['description'], 80)}*) {fmt(a['score'])}, contribution {fmt(a['delta'])}.")
    for a in store.table("attempts", run_id):
        if a["block"] == block and a["kept"]:
            lines.append(f"- Refined (track {int(a['track']) + 1} step {int(a['outer_step']) + 1}, attempt "
                         f"{int(a['inner_step']) + 1}, kept): {_first_line(a['plan'], 90)} — {fmt(a['baseline'])} → "
                         f"{fmt(a['score'])} ({fmt(_gain(a['score'], a['baseline'], higher))}).")
    return "\n".join(lines)


def story(store: Store, fr: FinishedRun) -> list[str]:
    """The markdown cells that come before the code, in pipeline order."""
    higher = fr.task.higher_is_better
    return [task_section(store, fr), models_section(store, fr.run_id), candidates_section(store, fr.run_id),
            merge_section(store, fr.run_id), ablation_section(store, fr.run_id),
            refinement_section(store, fr.run_id, higher), ensemble_section(store, fr.run_id, fr.script_id),
            final_section(store, fr)]
