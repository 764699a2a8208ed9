"""What the run pages show, shaped from store rows and events (no Streamlit here).

Every function takes plain rows (dicts from `Store.table`, `Store.events_after`, ...) or a
Store, and returns dataclasses or DataFrames that a page only has to draw. Keeping this pure
makes it unit-testable and lets Replay rebuild "the dashboard after N events" from the event
feed alone: the live dashboard and the replay go through the same functions.

Scores are direction-aware throughout (`higher_is_better`): "best", "gain" and an ablation's
"contribution" are positive when something is better, whatever the metric.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .brains.llm.settings import DEFAULT_GEMINI_MODEL, DEFAULT_OPENAI_MODEL, LLMSettings
from .evaluation import Protocol
from .metrics import METRICS, improvement, is_better
from .script import ScriptError, get_block

if TYPE_CHECKING:
    from .store import Store

Row = dict[str, Any]

TERMINAL_STATUSES = ("finished", "failed", "stopped")
ACTIVE_STATUSES = ("created", "running", "waiting", "paused")
DRIFT_THRESHOLD = 0.05  # hold-out worse than validation by more than 5 % (relative): overfitting warning


# -- the run itself ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """The parts of a run row every page needs, parsed once."""

    id: str
    name: str
    status: str
    brain: str
    metric: str  # key of metrics.METRICS
    metric_title: str
    higher_is_better: bool
    config: dict[str, Any]
    task: dict[str, Any]
    protocol: str = ""  # the evaluation protocol in words ("5-fold cross-validation over 455 rows")

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def axis_title(self) -> str:
        """Metric and direction, for chart axes: 'F1 score (higher is better ↑)'."""
        return f"{self.metric_title} ({self.direction} {'↑' if self.higher_is_better else '↓'})"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def constraints(self) -> list[str]:
        return [str(c) for c in self.config.get("constraints") or []]

    @property
    def brain_label(self) -> str:
        """The brain with its model: 'gemini · gemini-3.5-flash', or 'offline'."""
        return brain_in_use(self.brain, self.config)

    @property
    def cost_cap(self) -> float | None:
        cap = self.config.get("cost_cap")
        return float(cap) if cap else None


def run_info(run: Row) -> RunInfo:
    task = json.loads(run.get("task_json") or "{}")
    config = json.loads(run.get("config_json") or "{}")
    metric = str(task.get("metric") or "")
    known = METRICS.get(metric)
    hib = bool(task.get("higher_is_better", known.higher_is_better if known else True))
    protocol = json.loads(run.get("protocol_json") or "null")
    return RunInfo(id=run["id"], name=run.get("name") or run["id"], status=run.get("status") or "created",
                   brain=run.get("brain") or "", metric=metric, metric_title=known.title if known else metric,
                   higher_is_better=hib, config=config, task=task,
                   protocol=Protocol.from_dict(protocol).describe() if protocol else "")


def fmt(x: float | None, digits: int = 5) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


# -- phases: timeline and explanations -----------------------------------------------------------


@dataclass(frozen=True)
class PhaseDef:
    key: str
    title: str
    explanation: str  # two sentences for learners: what MLE-STAR does here, and why


PHASES: tuple[PhaseDef, ...] = (
    PhaseDef("baseline", "Baseline",
             "A trivial script (the class prior, or the mean for regression) is scored on the engine's "
             "validation folds. It sets the floor every later score should clearly beat, so a 'good' number "
             "can be judged against doing nothing clever at all."),
    PhaseDef("retrieve", "Retrieve models",
             "MLE-STAR first retrieves M models known to work well on this kind of task, each with a reason "
             "and example code. Starting from proven, current models instead of whatever a language model "
             "happens to remember is what lifts the very first candidates above a naive guess."),
    PhaseDef("init", "Initial candidates",
             "One complete script is written and run for each retrieved model, all on the same folds, "
             "fixed by the engine, which scores each from the out-of-fold predictions it writes, so the "
             "scores can be compared fairly and none is just a claim. Scripts that crash are sent to a "
             "debugger that reads the error and fixes the code before they are given up."),
    PhaseDef("merge", "Merge",
             "Each solution track starts from one of the best candidates and merges the candidates no other "
             "track starts from into it one at a time, keeping a merge only while the validation score "
             "improves. The tracks stay different solutions, which is what later gives the ensemble "
             "something to gain."),
    PhaseDef("check", "Checks",
             "A data-usage check makes sure the script uses all the data it was given, and a leakage check "
             "looks for information from the validation rows leaking into training. A leakage fix is kept "
             "even when the score drops, because the higher score was never real."),
    PhaseDef("refine", "Refine (T × K)",
             "Each of the T outer steps runs an ablation study (every code block is swapped for a simpler "
             "version to measure how much it contributes) and picks the most impactful block not refined "
             "yet. An inner loop of K attempts then rewrites only that block, keeping the best, so the effort "
             "goes where the ablation says it matters instead of rewriting the whole script."),
    PhaseDef("ensemble", "Ensemble",
             "The refined solutions of the L tracks (and the initial candidates) are combined by an ensemble "
             "planner over R rounds (greedy selection, optimised weights, stacking…), each scored by the engine "
             "in milliseconds on the stored out-of-fold predictions and the best written out as a real script. "
             "Ensembles often win because the members' errors partly cancel out."),
    PhaseDef("final", "Final",
             "The best script by validation score is run on the locked hold-out, rows no choice was ever made "
             "on, for an honest estimate, and then on all training rows to write the submission. A large gap "
             "between validation and hold-out means the search overfitted the validation folds."),
)
PHASE_BY_KEY = {p.key: p for p in PHASES}


def phase_of_step(key: str) -> str:
    """Timeline phase of a step key (see docs/architecture.md)."""
    if key in ("baseline", "retrieve", "init", "final"):
        return key
    if key.startswith("ens/"):
        return "ensemble"
    if key.endswith("/merge"):
        return "merge"
    if key.endswith("/checks"):
        return "check"
    return "refine"


_STEP_RE = re.compile(r"^t(?P<t>\d+)/(?:(?P<what>merge|checks)|o(?P<o>\d+)/(?P<sub>ablation|extract|i(?P<i>\d+)))$")


def describe_step(key: str) -> str:
    """A step key in words: 't0/o1/i2' -> 'track 1 · outer step 2 · attempt 3'."""
    simple = {"baseline": "trivial baseline", "retrieve": "retrieve models", "init": "initial candidates",
              "final": "final runs (hold-out + submission)"}
    if key in simple:
        return simple[key]
    if key.startswith("ens/r"):
        return f"ensemble round {int(key[5:]) + 1}" if key[5:].isdigit() else key
    if key == "ens/script":
        return "ensemble written as a script"
    m = _STEP_RE.match(key)
    if not m:
        return key
    track = f"track {int(m['t']) + 1}"
    if m["what"]:
        return f"{track} · {'merge' if m['what'] == 'merge' else 'data-usage & leakage checks'}"
    outer = f"outer step {int(m['o']) + 1}"
    if m["sub"] == "ablation":
        return f"{track} · {outer} · ablation study"
    if m["sub"] == "extract":
        return f"{track} · {outer} · choose the block"
    return f"{track} · {outer} · attempt {int(m['i']) + 1}"


@dataclass(frozen=True)
class StepState:
    key: str
    status: str  # running, done, failed, stopped, skipped
    started: float | None = None
    ended: float | None = None
    result: Any = None


@dataclass
class PhaseState:
    key: str
    title: str
    explanation: str
    status: str  # pending, running, waiting, done, skipped, failed, stopped, not needed
    done: int  # steps finished
    total: int  # steps expected from the run's knobs
    current: list[str] = field(default_factory=list)  # running steps, in words

    @property
    def label(self) -> str:
        return f"{self.title} ({self.done}/{self.total})" if self.total > 1 else self.title


def steps_from_rows(rows: Iterable[Row]) -> list[StepState]:
    out = []
    for r in rows:
        result = json.loads(r["result_json"]) if r.get("result_json") else None
        out.append(StepState(r["key"], r["status"], r.get("started"), r.get("ended"), result))
    return out


def steps_from_events(events: Sequence[Row]) -> list[StepState]:
    """The steps table as it was after these events (for Replay): no results, only statuses."""
    states: dict[str, StepState] = {}
    for e in events:
        kind, p = e["kind"], e["payload"]
        if kind == "step_started":
            states[p["key"]] = StepState(p["key"], "running", e["ts"])
        elif kind == "step_done" and p.get("key") in states:
            states[p["key"]] = StepState(p["key"], "done", states[p["key"]].started, e["ts"])
        elif kind in ("run_stopped", "run_failed", "run_finished"):
            # A step in flight when the run ended was stopped, failed, or skipped by the time budget.
            end = {"run_stopped": "stopped", "run_failed": "failed", "run_finished": "skipped"}[kind]
            for k, s in list(states.items()):
                if s.status == "running":
                    states[k] = StepState(k, end, s.started, e["ts"])
    return list(states.values())


def expected_tracks(config: dict[str, Any], steps: Sequence[StepState]) -> int:
    """L, or fewer when fewer initial candidates ran (known once the init step is done)."""
    tracks = max(1, int(config.get("num_solutions") or 1))
    for s in steps:
        if s.key == "init" and s.status == "done" and isinstance(s.result, list):
            ok = sum(1 for c in s.result if c.get("score") is not None)
            tracks = max(1, min(tracks, ok))
    started = {int(m["t"]) for s in steps if (m := _STEP_RE.match(s.key))}
    return max(tracks, len(started))


def expected_steps(config: dict[str, Any], tracks: int) -> dict[str, int]:
    outer, inner = int(config.get("outer_steps") or 0), int(config.get("inner_steps") or 0)
    rounds = int(config.get("ensemble_rounds") or 0)
    return {"baseline": 1, "retrieve": 1, "init": 1, "merge": tracks, "check": tracks,
            "refine": tracks * outer * (2 + inner), "ensemble": rounds if tracks >= 2 else 0, "final": 1}


def phase_timeline(steps: Sequence[StepState], config: dict[str, Any], run_status: str) -> list[PhaseState]:
    """One entry per phase in order, with steps done/expected and what is running now."""
    totals = expected_steps(config, expected_tracks(config, steps))
    by_phase: dict[str, list[StepState]] = {p.key: [] for p in PHASES}
    for s in steps:
        by_phase[phase_of_step(s.key)].append(s)
    terminal = run_status in TERMINAL_STATUSES
    out = []
    for p in PHASES:
        rows = by_phase[p.key]
        done = sum(1 for s in rows if s.status == "done")
        running = [s for s in rows if s.status == "running"]
        total = max(totals[p.key], done + len(running))
        if running and not terminal:
            status = "waiting" if run_status == "waiting" and p.key == "refine" else \
                "paused" if run_status == "paused" else "running"
        elif any(s.status == "failed" for s in rows):
            status = "failed"
        elif any(s.status == "stopped" for s in rows) or (running and run_status == "stopped"):
            status = "stopped"
        elif total == 0:
            status = "not needed"
        elif done >= total:
            status = "done"
        elif done or any(s.status == "skipped" for s in rows):
            status = "skipped" if terminal else "running"
        else:
            status = "skipped" if run_status == "finished" else "pending"
        out.append(PhaseState(p.key, p.title, p.explanation, status, done, total,
                              [describe_step(s.key) for s in running] if not terminal else []))
    return out


def current_phase(timeline: Sequence[PhaseState]) -> PhaseState | None:
    """The phase in flight (the latest one if tracks are in different phases)."""
    live = [p for p in timeline if p.status in ("running", "waiting", "paused")]
    return live[-1] if live else None


def step_progress(timeline: Sequence[PhaseState]) -> float:
    """Fraction of the expected steps done (progress for a run without a time budget)."""
    total = sum(p.total for p in timeline)
    done = sum(min(p.done, p.total) for p in timeline)
    return done / total if total else 0.0


# -- time -----------------------------------------------------------------------------------


def time_by_phase_text(steps: Sequence[Row]) -> str:
    """'retrieve 0 s, init 12 s, …': each phase's step time, in pipeline order (from the steps table)."""
    totals: dict[str, float] = {}
    for st_ in steps:
        if st_.get("ended") and st_.get("started"):
            phase = str(st_.get("phase") or phase_of_step(str(st_.get("key"))))
            totals[phase] = totals.get(phase, 0.0) + float(st_["ended"]) - float(st_["started"])
    return ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in totals.items())


def active_seconds(events: Sequence[Row]) -> list[float]:
    """Each event's time since the run started, not counting the gaps between a run ending
    (stop, crash, app restart) and being resumed: a resumed run's curve does not stretch."""
    out: list[float] = []
    offset = 0.0
    first: float | None = None
    prev: float | None = None
    for e in events:
        ts = float(e["ts"])
        if first is None:
            first = ts
        elif e["kind"] == "run_started" and prev is not None:
            offset += ts - prev  # the idle gap before a resume
        out.append(ts - first - offset)
        prev = ts
    return out


@dataclass(frozen=True)
class BudgetProgress:
    used: float  # seconds of run time
    budget: float | None
    fraction: float | None  # used / budget in [0, 1]; None without a budget

    @property
    def text(self) -> str:
        if self.budget is None:
            return f"{self.used:.0f} s used · no time budget"
        return f"{self.used:.0f} s of {self.budget:.0f} s used ({100 * (self.fraction or 0):.0f} %)"


def budget_progress(run: Row, events: Sequence[Row] = (), now: float | None = None) -> BudgetProgress:
    """Time used against the budget; a live run's time keeps going between the pipeline's writes.

    `runs.time_used` is written when a step finishes, just before its step_done event; for an
    active run the time since the latest step_done or run_started event is added.
    """
    used = float(run.get("time_used") or 0.0)
    if run.get("status") in ("running", "waiting", "paused"):
        anchor = next((float(e["ts"]) for e in reversed(events) if e["kind"] in ("step_done", "run_started")),
                      None)
        if anchor is not None:
            used += max(0.0, (now if now is not None else time.time()) - anchor)
    budget = json.loads(run.get("config_json") or "{}").get("time_budget")
    if not budget:
        return BudgetProgress(used, None, None)
    return BudgetProgress(used, float(budget), min(1.0, used / float(budget)))


# -- scores over time, counts -------------------------------------------------------------------

_SCORED_KINDS = ("candidate_scored", "merge", "attempt_scored", "ensemble_round")


def _score_label(kind: str, p: dict[str, Any]) -> str:
    if kind == "candidate_scored":
        return f"initial: {p.get('label', '')}"
    if kind == "merge":
        return f"track {int(p.get('track', 0)) + 1}: merge {p.get('reference', '')}"
    if kind == "attempt_scored":
        return (f"track {int(p.get('track', 0)) + 1} step {int(p.get('outer', 0)) + 1}."
                f"{int(p.get('inner', 0)) + 1}: {p.get('block', '')}")
    return f"ensemble round {int(p.get('round', 0)) + 1}"


def score_series(events: Sequence[Row], higher_is_better: bool) -> pd.DataFrame:
    """Every solution scored so far (candidates, merges, attempts, ensembles) over run time, with
    the best so far (direction-aware). Columns: seconds, score, best, kind, label."""
    secs = active_seconds(events)
    rows = []
    best: float | None = None
    for e, t in zip(events, secs, strict=True):
        kind, p = e["kind"], e["payload"]
        if kind not in _SCORED_KINDS or p.get("score") is None:
            continue
        score = float(p["score"])
        if is_better(score, best, higher_is_better):
            best = score
        rows.append({"seconds": t, "score": score, "best": best, "kind": kind, "label": _score_label(kind, p)})
    return pd.DataFrame(rows, columns=["seconds", "score", "best", "kind", "label"])


@dataclass(frozen=True)
class ScriptCounts:
    run: int
    failed: int  # crashed, timed out or refused by the engine (not the attempts it stopped on purpose)
    stopped: int = 0  # refinement attempts the engine stopped early: they could no longer catch up

    @property
    def ok(self) -> int:
        return self.run - self.failed - self.stopped


def script_counts(events: Sequence[Row]) -> ScriptCounts:
    """Script executions (every purpose), how many failed and how many were stopped early."""
    runs = [e["payload"] for e in events if e["kind"] == "script_executed"]
    stopped = sum(1 for p in runs if p.get("stopped_early"))
    return ScriptCounts(len(runs), sum(1 for p in runs if not p.get("ok")) - stopped, stopped)


def script_counts_from_rows(executions: Iterable[Row]) -> ScriptCounts:
    rows = list(executions)
    stopped = sum(1 for r in rows if r.get("killed_reason") == "early_stop")
    return ScriptCounts(len(rows), sum(1 for r in rows if r["exit_code"] != 0 or
                                       (r["purpose"] == "search" and r["score"] is None)) - stopped, stopped)


# -- validation vs locked hold-out ----------------------------------------------------------------


@dataclass(frozen=True)
class HoldoutCheck:
    validation: float | None
    holdout: float | None
    gap: float | None  # how much worse the hold-out is (direction-aware; negative = hold-out better)
    relative_gap: float | None
    drift: bool
    message: str


def holdout_check(validation: float | None, holdout: float | None, higher_is_better: bool,
                  threshold: float = DRIFT_THRESHOLD) -> HoldoutCheck:
    """Warn when the locked hold-out is worse than validation by more than `threshold` (relative):
    many choices made on one validation split overfit it."""
    if validation is None or holdout is None:
        return HoldoutCheck(validation, holdout, None, None, False,
                            "The locked hold-out is scored when the run finishes." if holdout is None
                            else "No validation score to compare with.")
    gap = improvement(validation, holdout, higher_is_better) or 0.0
    rel = gap / max(abs(validation), 1e-12)
    drift = rel > threshold
    if drift:
        msg = (f"The hold-out score is {100 * rel:.1f} % worse than the validation score (more than "
               f"{100 * threshold:.0f} %): the search has probably overfitted the validation split, so expect "
               "the hold-out figure on new data.")
    elif gap > 0:
        msg = f"Hold-out is {100 * rel:.1f} % worse than validation: within the normal noise of a small split."
    else:
        msg = "Hold-out is as good as or better than validation: no sign of overfitting the validation split."
    return HoldoutCheck(validation, holdout, gap, rel, drift, msg)


def final_summary(events: Sequence[Row]) -> dict[str, Any] | None:
    """The payload of the run's final event (final_label, validation and hold-out scores...)."""
    for e in reversed(events):
        if e["kind"] == "final":
            return dict(e["payload"])
    return None


# -- the event log ----------------------------------------------------------------------------


def _track(p: dict[str, Any]) -> str:
    return f"Track {int(p.get('track', 0)) + 1}"


def _first_line(text: Any, limit: int = 140) -> str:
    s = str(text or "").strip()
    line = s.splitlines()[0] if s else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe_event(kind: str, p: dict[str, Any]) -> str:
    """One event in words, for the live log."""
    if kind == "run_started":
        return f"{'Run resumed' if p.get('resumed') else 'Run started'} · brain: {p.get('brain', '?')}"
    if kind == "step_started":
        return f"Started: {describe_step(str(p.get('key', '')))}"
    if kind == "step_done":
        return f"Done: {describe_step(str(p.get('key', '')))}"
    if kind == "model_card":
        return f"Retrieved model: {p.get('name')} (source: {p.get('source')})"
    if kind == "candidate_scored":
        return f"Initial candidate {p.get('label')}: " + (
            f"score {fmt(p.get('score'))}" if p.get("score") is not None else "failed")
    if kind == "merge" and p.get("skipped"):
        return (f"{_track(p)}: merge of {p.get('reference')} into {p.get('base')} NOT done — "
                f"{_first_line(p.get('reason'), 160)}; {p.get('base')} goes on unchanged")
    if kind == "merge":
        verdict = "kept" if p.get("kept") else "discarded (no improvement)"
        return (f"{_track(p)}: merged {p.get('reference')} into {p.get('base')} → {fmt(p.get('score'))} "
                f"vs {fmt(p.get('base_score'))}, {verdict}")
    if kind == "check":
        name = "Data-usage" if p.get("check") == "data_usage" else "Leakage"
        where = f"{_track(p)}: {name} check" if "track" in p else f"{name} check of {p.get('script', 'a script')}"
        if p.get("checked") is False:
            what = "could NOT be made (the checker's answers were unusable): the script goes on unchecked"
        else:
            what = "changed the script" if p.get("changed") else "found nothing to change"
        findings = "; ".join(str(f) for f in p.get("findings") or [])
        return f"{where} {what}" + (f" — {_first_line(findings)}" if findings else "")
    if kind == "fallback":
        return f"Degraded — {p.get('role')}: {_first_line(p.get('note'), 220)}"
    if kind == "debug_failed":
        return (f"Debugger could not repair {p.get('label')} (script #{p.get('script_id')}): "
                f"{_first_line(p.get('reason'), 160)}; it stays failed")
    if kind == "ablation_result":
        spread = f" ± {fmt(p['delta_std'], 2)}" if p.get("delta_std") is not None else ""
        return (f"{_track(p)}, outer step {int(p.get('outer', 0)) + 1}: without a better {p.get('block')} block "
                f"the score is {fmt(p.get('score'))} (contribution {fmt(p.get('delta'), 3)}{spread})")
    if kind == "ablation_summary":
        return f"{_track(p)}, outer step {int(p.get('outer', 0)) + 1}: ablation summary — " \
               f"{_first_line(p.get('summary'))}"
    if kind == "block_chosen":
        within = f" (lines inside the {p['within']} block)" if p.get("within") else ""
        return f"{_track(p)}, outer step {int(p.get('outer', 0)) + 1}: refining the {p.get('block')} block{within}" + (
            f" ({_first_line(p.get('reason'), 100)})" if p.get("reason") else "")
    if kind == "attempt_scored":
        where = f"{_track(p)}, attempt {int(p.get('outer', 0)) + 1}.{int(p.get('inner', 0)) + 1}"
        if p.get("status") == "stopped early":
            return f"{where} on {p.get('block')}: stopped early — its first folds showed it could not catch up"
        if p.get("score") is None:
            return f"{where}: failed" + (f" — {_first_line(p.get('error'))}" if p.get("error") else "")
        decision = f" [{p['decision']}]" if p.get("decision") and p.get("decision") != "auto" else ""
        return f"{where} on {p.get('block')}: {fmt(p.get('score'))} vs {fmt(p.get('baseline'))}{decision}"
    if kind == "attempt_rejected":
        return (f"{_track(p)}, attempt {int(p.get('outer', 0)) + 1}.{int(p.get('inner', 0)) + 1}: plan rejected "
                f"— {_first_line(p.get('plan'), 100)}")
    if kind == "block_refined":
        return (f"{_track(p)}, outer step {int(p.get('outer', 0)) + 1}: {p.get('block')} block refined "
                f"{fmt(p.get('from'))} → {fmt(p.get('to'))}")
    if kind == "approval_needed":
        return f"Waiting for your approval: a plan for the {p.get('block')} block — {_first_line(p.get('plan'), 100)}"
    if kind == "decision":
        return f"Plan {p.get('status')} (decision #{p.get('decision_id')})"
    if kind == "ensemble_round":
        if p.get("strategy"):
            weights = p.get("weights")
            shown = f", weights {', '.join(f'{w:.2f}' for w in weights)}" if weights else ""
            return (f"Ensemble round {int(p.get('round', 0)) + 1}: {p['strategy']} → {fmt(p.get('score'))}{shown} "
                    f"(scored by the engine on stored out-of-fold predictions in {p.get('milliseconds', '?')} ms)")
        return f"Ensemble round {int(p.get('round', 0)) + 1}: {fmt(p.get('score'))} — {_first_line(p.get('plan'), 100)}"
    if kind == "ensemble_written":
        return (f"Ensemble ({p.get('strategy')}, {fmt(p.get('score'))}) written as script #{p.get('script_id')} "
                f"over scripts {', '.join(f'#{m}' for m in p.get('members') or [])}")
    if kind == "protocol":
        return f"Evaluation protocol: {p.get('description')} ({p.get('reason')}); the engine scores every script"
    if kind == "score_disagreement":
        return (f"Script #{p.get('script_id')} printed {fmt(p.get('claimed'))} but the engine measured "
                f"{fmt(p.get('measured'))} from its predictions; the engine's number is used")
    if kind == "best_score":
        return f"New best score: {fmt(p.get('score'))}"
    if kind == "cost_cap_reached":
        return (f"Cost cap reached: {fmt_usd(p.get('spent'))} spent of the {fmt_usd(p.get('cap'))} cap at "
                f"{describe_step(str(p.get('at_step', '')))}; no more brain calls, wrapping up with the best so far")
    if kind == "run_paused":
        return f"Run paused by the brain: {_first_line(p.get('reason'), 200)} — resume it on the Run dashboard"
    if kind == "budget_exhausted":
        return f"Time budget exhausted at {describe_step(str(p.get('at_step', '')))}: wrapping up with the best so far"
    if kind == "final":
        return (f"Final solution: {p.get('final_label')} — validation {fmt(p.get('validation_score'))}, "
                f"locked hold-out {fmt(p.get('holdout_score'))}")
    if kind == "run_finished":
        return "Run finished"
    if kind == "run_failed":
        return f"Run failed: {_first_line(p.get('error'))}"
    if kind == "run_stopped":
        return "Run stopped"
    if kind == "paused":
        return "Run paused"
    if kind == "resumed":
        return "Run continues"
    if kind == "control":
        return {"pause": "Pause requested", "stop": "Stop requested", "run": "Resume requested"}.get(
            str(p.get("control")), f"Control: {p.get('control')}")
    if kind == "constraints":
        cs = p.get("constraints") or []
        return "Constraints pinned: " + ("; ".join(str(c) for c in cs) if cs else "none")
    if kind == "script_executed":
        what = f"Script #{p.get('script_id')} ({p.get('purpose') or 'search'}, {float(p.get('wall_time') or 0):.1f} s)"
        if p.get("ok"):
            return f"{what}: score {fmt(p.get('score'))}"
        return f"{what} failed" + (f": {_first_line(p.get('error'), 120)}" if p.get("error") else "")
    if kind == "brain_call":
        text = " · ".join([f"Brain call: {p.get('role')}",
                           *_usage_parts(p.get("tokens_in"), p.get("tokens_out"), p.get("latency"), p.get("cost"))])
        return text + (f" — failed: {_first_line(p.get('error'), 120)}" if p.get("error") else "")
    if kind == "log":
        return _first_line(p.get("message"), 200)
    return f"{kind}: {json.dumps(p)[:160]}"


NOISY_KINDS = ("brain_call", "script_executed", "step_done", "leak_review")


def event_log(events: Sequence[Row], limit: int = 40, *, include_noisy: bool = False) -> pd.DataFrame:
    """The latest events, newest first, in words. Columns: seq, time (run seconds), kind, what."""
    secs = active_seconds(events)
    rows = []
    for e, t in zip(reversed(events), reversed(secs), strict=True):
        if not include_noisy and e["kind"] in NOISY_KINDS:
            continue
        rows.append({"seq": e["seq"], "time": f"{t:7.1f} s", "kind": e["kind"],
                     "what": describe_event(e["kind"], e["payload"])})
        if len(rows) >= limit:
            break
    return pd.DataFrame(rows, columns=["seq", "time", "kind", "what"])


# -- retrieved models and merges ------------------------------------------------------------------


@dataclass(frozen=True)
class ModelCardView:
    rank: int
    name: str
    why: str
    example_code: str
    source: str
    family: str
    script_id: int | None  # the initial script written from this card (after debugging, if it crashed)
    score: float | None
    state: str  # scored, failed, pending
    sources: list[dict[str, str]] = field(default_factory=list)  # web pages the card was grounded on


def model_cards(cards: Sequence[Row], events: Sequence[Row], scripts: Sequence[Row] = ()) -> list[ModelCardView]:
    """Each retrieved card with its initial candidate's score (matched on the script label = card name)."""
    scored = {e["payload"].get("label"): e["payload"] for e in events if e["kind"] == "candidate_scored"}
    initial = {s["label"]: s["id"] for s in scripts if s["role"] == "initial"}
    out = []
    for c in sorted(cards, key=lambda c: c["rank"]):
        p = scored.get(c["name"])
        if p is not None:
            state = "scored" if p.get("score") is not None else "failed"
            sid, score = p.get("script_id"), p.get("score")
        else:
            state, sid, score = "pending", initial.get(c["name"]), None
        out.append(ModelCardView(c["rank"], c["name"], c.get("why") or "", c.get("example_code") or "",
                                 c.get("source") or "", c.get("family") or "", sid, score, state,
                                 parse_sources(c.get("sources_json"))))
    return out


@dataclass(frozen=True)
class MergeView:
    track: int
    tries: pd.DataFrame  # base, reference, score, base_score, kept
    result_label: str | None
    result_score: float | None
    result_script_id: int | None


def merges(events: Sequence[Row], steps: Sequence[StepState]) -> list[MergeView]:
    """Per track: every merge tried (from merge events) and the merged result (the merge step's result)."""
    tries: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        if e["kind"] == "merge":
            p = e["payload"]
            tries.setdefault(int(p["track"]), []).append(
                {"base": p.get("base"), "reference": p.get("reference"), "score": p.get("score"),
                 "base_score": p.get("base_score"), "kept": bool(p.get("kept")),
                 "note": f"not merged: {p.get('reason')}" if p.get("skipped") else ""})
    results: dict[int, dict[str, Any]] = {}
    for s in steps:
        m = _STEP_RE.match(s.key)
        if m and m["what"] == "merge":
            tries.setdefault(int(m["t"]), [])
            if s.status == "done" and isinstance(s.result, dict):
                results[int(m["t"])] = s.result
    out = []
    for t in sorted(tries):
        r = results.get(t, {})
        out.append(MergeView(t, pd.DataFrame(tries[t], columns=["base", "reference", "score", "base_score", "kept",
                                                                "note"]),
                             r.get("label"), r.get("score"), r.get("script_id")))
    return out


# -- ablation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AblationBar:
    block: str
    description: str
    delta: float | None  # mean contribution: positive = the block helps
    error: float | None  # spread of the paired per-fold contributions (None: an older row without one)
    score: float | None
    baseline: float | None
    repeats: int
    script_id: int | None
    chosen: bool


@dataclass(frozen=True)
class AblationGroup:
    track: int
    outer: int
    bars: list[AblationBar]
    chosen_block: str | None
    reason: str | None
    summary: str | None

    @property
    def title(self) -> str:
        return f"Track {self.track + 1} · outer step {self.outer + 1}"

    @property
    def has_error_bars(self) -> bool:
        return any(b.error is not None for b in self.bars)


def _ablation_error(row: Row) -> float | None:
    # The paired spread of the differences is the honest error bar; rows written before it existed
    # but with both spreads combine them as if independent; older rows have none (no error bar).
    if row.get("delta_std") is not None:
        return float(row["delta_std"])
    s, b = row.get("score_std"), row.get("baseline_std")
    if s is not None and b is not None:
        return math.sqrt(float(s) ** 2 + float(b) ** 2)
    return float(s) if s is not None else None


def ablation_groups(rows: Sequence[Row], events: Sequence[Row]) -> list[AblationGroup]:
    """Per (track, outer step): each block's contribution with its error bar, the chosen block and
    the ablation summary. Rows arrive one by one while the study runs; the chart fills in."""
    chosen: dict[tuple[int, int], dict[str, Any]] = {}
    summaries: dict[tuple[int, int], str] = {}
    for e in events:
        p = e["payload"]
        if e["kind"] == "block_chosen":
            chosen[(int(p["track"]), int(p["outer"]))] = p
        elif e["kind"] == "ablation_summary":
            summaries[(int(p["track"]), int(p["outer"]))] = str(p.get("summary") or "")
    groups: dict[tuple[int, int], list[Row]] = {}
    for r in rows:
        groups.setdefault((int(r["track"]), int(r["outer_step"])), []).append(r)
    out = []
    for key in sorted(groups):
        pick = chosen.get(key, {}).get("block")
        bars = []
        for r in groups[key]:
            scores = json.loads(r["scores_json"]) if r.get("scores_json") else None
            bars.append(AblationBar(r["block"], r.get("description") or "", r.get("delta"), _ablation_error(r),
                                    r.get("score"), r.get("baseline"), len(scores) if scores else 1,
                                    r.get("script_id"), r["block"] == pick))
        out.append(AblationGroup(key[0], key[1], bars, pick, chosen.get(key, {}).get("reason"), summaries.get(key)))
    return out


# -- refinement attempts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptView:
    id: int
    track: int
    outer: int
    inner: int
    block: str
    plan: str
    score: float | None
    baseline: float | None
    gain: float | None  # direction-aware: positive = better than the block's starting script
    status: str  # ok, failed, rejected
    decision: str  # auto, approved, edited, rejected
    kept: bool
    script_id: int | None
    parent_script_id: int | None


@dataclass(frozen=True)
class AttemptGroup:
    track: int
    outer: int
    block: str
    attempts: list[AttemptView]
    baseline: float | None  # score of the script the block started from

    @property
    def title(self) -> str:
        return f"Track {self.track + 1} · outer step {self.outer + 1} · block {self.block}"

    @property
    def kept(self) -> AttemptView | None:
        return next((a for a in self.attempts if a.kept), None)


def attempt_groups(rows: Sequence[Row], higher_is_better: bool) -> list[AttemptGroup]:
    """Every inner attempt (rejected plans included) grouped per (track, outer step, block)."""
    groups: dict[tuple[int, int, str], list[AttemptView]] = {}
    for r in sorted(rows, key=lambda r: (r["track"], r["outer_step"], r["inner_step"], r["id"])):
        a = AttemptView(r["id"], r["track"], r["outer_step"], r["inner_step"], r["block"], r.get("plan") or "",
                        r.get("score"), r.get("baseline"), improvement(r.get("score"), r.get("baseline"),
                                                                       higher_is_better),
                        r["status"], r["decision"], bool(r.get("kept")), r.get("script_id"),
                        r.get("parent_script_id"))
        groups.setdefault((a.track, a.outer, a.block), []).append(a)
    return [AttemptGroup(t, o, b, atts, next((a.baseline for a in atts if a.baseline is not None), None))
            for (t, o, b), atts in sorted(groups.items())]


def attempt_trace(rows: Sequence[Row], higher_is_better: bool) -> pd.DataFrame:
    """Scores through all attempts of the run in the order they were made (rejected plans left out).
    Columns: n, label, track, score, baseline, gain, kept, status."""
    out = []
    for r in sorted(rows, key=lambda r: r["id"]):
        if r["status"] == "rejected":
            continue
        out.append({"n": len(out) + 1,
                    "label": f"t{r['track'] + 1} {r['outer_step'] + 1}.{r['inner_step'] + 1} {r['block']}",
                    "track": f"track {r['track'] + 1}", "score": r.get("score"), "baseline": r.get("baseline"),
                    "gain": improvement(r.get("score"), r.get("baseline"), higher_is_better),
                    "kept": bool(r.get("kept")), "status": r["status"]})
    return pd.DataFrame(out, columns=["n", "label", "track", "score", "baseline", "gain", "kept", "status"])


@dataclass(frozen=True)
class BlockDiff:
    block: str
    before: str  # the block in the script the attempt started from
    after: str  # the block in the attempt's script ("" when it produced no script)
    unified: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _block_or_empty(code: str | None, block: str) -> str:
    if not code:
        return ""
    try:
        return get_block(code, block)
    except ScriptError:
        return ""


def block_diff(parent_code: str | None, code: str | None, block: str) -> BlockDiff:
    before, after = _block_or_empty(parent_code, block), _block_or_empty(code, block)
    unified = "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                           f"{block} (before)", f"{block} (after)"))
    return BlockDiff(block, before, after, unified)


def side_by_side_html(before: str, after: str, left: str = "before", right: str = "after") -> str:
    """A two-column HTML diff (difflib.HtmlDiff) with its styles: changed lines with 3 lines of context."""
    differ = difflib.HtmlDiff(tabsize=4, wrapcolumn=60)
    table = differ.make_table(before.splitlines(), after.splitlines(), left, right, context=True, numlines=3)
    style = ("<style>table.diff{font-family:ui-monospace,monospace;font-size:12px;border-collapse:collapse;"
             "width:100%} .diff td{padding:0 4px;vertical-align:top;white-space:pre} "
             ".diff_header{color:#888;text-align:right} td.diff_next{display:none} "
             ".diff_add{background:#d4f8d4} .diff_chg{background:#fff2a8} .diff_sub{background:#fcd4d4} "
             "th.diff_next{display:none} th{background:#f0f2f6;text-align:left;padding:2px 6px}</style>")
    return style + table


# -- the script tree --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeNode:
    id: int
    parent_id: int | None
    depth: int
    role: str
    label: str
    score: float | None
    ran: bool  # has a search execution
    children: int

    @property
    def text(self) -> str:
        """One line for an indented list / selectbox."""
        mark = fmt(self.score) if self.score is not None else ("failed" if self.ran else "not run")
        return f"{'    ' * self.depth}{'└ ' if self.depth else ''}#{self.id} {self.role}: {self.label} · {mark}"


def script_tree(scripts: Sequence[Row], executions: Sequence[Row], *, roles: Iterable[str] | None = None,
                ensemble_rounds: Sequence[Row] = ()) -> list[TreeNode]:
    """Scripts in depth-first order along parent_id edges (initial → merges → checks → attempts;
    ensembles, which combine several tracks, are roots). `roles` keeps only those roles, re-attaching
    a kept script to its nearest kept ancestor so the tree stays connected. An ensemble written after
    the engine scored its round on stored predictions carries that round's score."""
    score: dict[int, float | None] = {}
    for r in ensemble_rounds:
        if r.get("script_id") and r.get("strategy"):
            score[r["script_id"]] = r["score"]
    for e in executions:
        if e["purpose"] in ("search", "", None):
            score[e["script_id"]] = e["score"]
    keep = set(roles) if roles is not None else None
    by_id = {s["id"]: s for s in scripts}

    def parent_of(s: Row) -> int | None:
        p = s.get("parent_id")
        while p is not None and keep is not None and p in by_id and by_id[p]["role"] not in keep:
            p = by_id[p].get("parent_id")
        return p if p in by_id else None

    shown = [s for s in scripts if keep is None or s["role"] in keep]
    children: dict[int | None, list[Row]] = {}
    for s in shown:
        children.setdefault(parent_of(s), []).append(s)
    out: list[TreeNode] = []
    stack: list[tuple[Row, int]] = [(s, 0) for s in reversed(children.get(None, []))]
    while stack:  # iterative: a deep chain of attempts must not hit the recursion limit
        s, depth = stack.pop()
        kids = children.get(s["id"], [])
        out.append(TreeNode(s["id"], s.get("parent_id"), depth, s["role"], s.get("label") or "",
                            score.get(s["id"]), s["id"] in score, len(kids)))
        stack.extend((k, depth + 1) for k in reversed(kids))
    return out


def lineage(scripts: Sequence[Row], script_id: int) -> list[Row]:
    """The script and its ancestors, root first."""
    by_id = {s["id"]: s for s in scripts}
    chain = []
    cur: int | None = script_id
    seen: set[int] = set()
    while cur is not None and cur in by_id and cur not in seen:
        seen.add(cur)
        chain.append(by_id[cur])
        cur = by_id[cur].get("parent_id")
    return list(reversed(chain))


# -- ensemble ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnsembleView:
    rounds: pd.DataFrame  # round, strategy, score, script_id
    members: pd.DataFrame  # label, score, script_id: the single solutions given to the ensemble
    final: dict[str, Any] | None  # the final event's payload


def track_results(steps: Sequence[StepState], attempts: Sequence[Row]) -> list[dict[str, Any]]:
    """Each track's refined solution, as handed to the ensemble: the last outer step's kept attempt,
    or the script after the checks when no attempt improved on it."""
    out = []
    checks = {int(m["t"]): s.result for s in steps
              if (m := _STEP_RE.match(s.key)) and m["what"] == "checks" and s.status == "done"
              and isinstance(s.result, dict)}
    for t in sorted(checks):
        kept = [a for a in attempts if a["track"] == t and a.get("kept") and a.get("script_id")]
        if kept:
            a = max(kept, key=lambda a: (a["outer_step"], a["id"]))
            out.append({"label": f"track {t + 1} (refined)", "score": a["score"], "script_id": a["script_id"]})
        else:
            r = checks[t]
            out.append({"label": f"track {t + 1}", "score": r.get("score"), "script_id": r.get("script_id")})
    return out


def ensemble_view(rounds: Sequence[Row], steps: Sequence[StepState], attempts: Sequence[Row],
                  events: Sequence[Row], scripts: Sequence[Row] = (), executions: Sequence[Row] = ()) -> EnsembleView:
    """Rounds (strategy, weights, score, the script when one was written) and the solutions they combine:
    the members the engine scored the rounds on when known, else each track's refined solution."""
    member_ids = next((json.loads(x["members_json"]) for x in rounds if x.get("members_json")
                       and json.loads(x["members_json"])), [])
    if member_ids and scripts:
        labels = {sc["id"]: sc.get("label") or f"script #{sc['id']}" for sc in scripts}
        scores = {e["script_id"]: e["score"] for e in executions if e["purpose"] in ("search", "", None)}
        members = [{"label": labels.get(m, f"script #{m}"), "score": scores.get(m), "script_id": m}
                   for m in member_ids]
    else:
        members = track_results(steps, attempts)
    seen: set[Any] = set()
    distinct = []
    for m in members:  # the pipeline ensembles distinct scripts only
        if m["script_id"] not in seen and m["score"] is not None:
            seen.add(m["script_id"])
            distinct.append(m)
    rows = []
    for x in sorted(rounds, key=lambda x: x["round"]):
        weights = json.loads(x.get("weights_json") or "null")
        rows.append({"round": int(x["round"]) + 1, "strategy": x.get("plan") or "", "score": x.get("score"),
                     "script_id": x.get("script_id"), "method": x.get("strategy") or "",
                     "weights": ", ".join(f"{w:.2f}" for w in weights) if weights else ""})
    r = pd.DataFrame(rows, columns=["round", "strategy", "score", "script_id", "method", "weights"])
    return EnsembleView(r, pd.DataFrame(distinct, columns=["label", "score", "script_id"]), final_summary(events))


# -- human in the loop --------------------------------------------------------------------------

_DECISION_KEY = re.compile(r"^t(?P<t>\d+)/o(?P<o>\d+)/i(?P<i>\d+)(?:/r(?P<r>\d+))?$")


@dataclass(frozen=True)
class PendingPlan:
    decision_id: int
    key: str
    track: int | None
    outer: int | None
    inner: int | None
    retry: int  # plans rejected before this one in the same attempt
    block: str
    plan: str
    block_code: str
    script_id: int | None  # the script the block will be rewritten in

    @property
    def where(self) -> str:
        if self.track is None:
            return self.key
        return f"track {self.track + 1} · outer step {(self.outer or 0) + 1} · attempt {(self.inner or 0) + 1}"


def pending_plan(decisions: Sequence[Row], ablations: Sequence[Row], scripts: Sequence[Row]) -> PendingPlan | None:
    """The oldest pending decision, with the script its block belongs to (the ablated script of that
    track and outer step: every ablation variant's parent)."""
    pending = [d for d in decisions if d["status"] == "pending"]
    if not pending:
        return None
    d = min(pending, key=lambda d: d["id"])
    m = _DECISION_KEY.match(d["key"] or "")
    track = int(m["t"]) if m else None
    outer = int(m["o"]) if m else None
    parents = {s["id"]: s.get("parent_id") for s in scripts}
    sid = next((parents.get(a["script_id"]) for a in ablations
                if a["track"] == track and a["outer_step"] == outer and a.get("script_id") in parents), None)
    return PendingPlan(d["id"], d["key"], track, outer, int(m["i"]) if m else None,
                       int(m["r"]) if m and m["r"] else 0, d.get("block") or "", d.get("plan") or "",
                       d.get("block_code") or "", sid)


def decision_history(decisions: Sequence[Row]) -> pd.DataFrame:
    """Every human decision taken, newest first."""
    # The store keeps epoch seconds; a bare number would be read as milliseconds since 1970 by the table.
    rows = [{"decided": pd.Timestamp.fromtimestamp(d["decided"]) if d.get("decided") else None,
             "where": describe_decision_key(d["key"]), "block": d.get("block"),
             "decision": d["status"], "plan": _first_line(d.get("edited_plan") or d.get("plan"), 120),
             "code edited": bool(d.get("edited_code"))}
            for d in sorted(decisions, key=lambda d: -d["id"]) if d["status"] != "pending"]
    return pd.DataFrame(rows, columns=["decided", "where", "block", "decision", "plan", "code edited"])


def describe_decision_key(key: str) -> str:
    m = _DECISION_KEY.match(key or "")
    if not m:
        return key
    text = f"track {int(m['t']) + 1} · attempt {int(m['o']) + 1}.{int(m['i']) + 1}"
    return text + (f" · plan {int(m['r']) + 1}" if m["r"] and int(m["r"]) else "")


def edit_payload(plan: str, original_plan: str, code: str | None, original_code: str) -> tuple[str, str | None]:
    """(edited_plan, edited_code) for Store.decide: the code only when it really changed, so an
    untouched editor does not replace the coder's work with the old block."""
    new_code = code if code is not None and code.rstrip() != original_code.rstrip() else None
    return (plan.strip() or original_plan), new_code


# -- replay ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayState:
    n: int  # events shown
    total: int
    seconds: float  # run time at that event
    event: str  # the Nth event, in words
    status: str
    timeline: list[PhaseState]
    series: pd.DataFrame
    best: float | None
    counts: ScriptCounts
    log: pd.DataFrame
    pending: bool  # a plan was waiting for approval at that point


def status_after(events: Sequence[Row]) -> str:
    """The run's status as the events so far say it."""
    status = "created"
    waiting = 0
    for e in events:
        k = e["kind"]
        if k in ("run_started", "resumed"):
            status = "running"
        elif k in ("paused", "run_paused"):
            status = "paused"
        elif k == "approval_needed":
            waiting += 1
            status = "waiting"
        elif k == "decision":
            waiting = max(0, waiting - 1)
            status = "waiting" if waiting else "running"
        elif k in ("run_finished", "run_failed", "run_stopped"):
            status = {"run_finished": "finished", "run_failed": "failed", "run_stopped": "stopped"}[k]
            waiting = 0
    return status


def replay_state(events: Sequence[Row], n: int, config: dict[str, Any], higher_is_better: bool,
                 log_size: int = 12) -> ReplayState:
    """What the dashboard would have shown after the first n events."""
    n = max(0, min(n, len(events)))
    seen = list(events[:n])
    status = status_after(seen)
    series = score_series(seen, higher_is_better)
    secs = active_seconds(seen)
    last = seen[-1] if seen else None
    return ReplayState(
        n=n, total=len(events), seconds=secs[-1] if secs else 0.0,
        event=describe_event(last["kind"], last["payload"]) if last else "(before the run started)",
        status=status, timeline=phase_timeline(steps_from_events(seen), config, status), series=series,
        best=None if series.empty else float(series["best"].iloc[-1]), counts=script_counts(seen),
        log=event_log(seen, log_size), pending=status == "waiting")


# -- brains: which one, what it costs, every call -------------------------------------------------

LLM_BRAINS = ("gemini", "openai", "replay")
_KEY_WORDS = re.compile(r"api[ _-]?key|\bkey\b|\b401\b|\b403\b|unauthori[sz]ed|unauthenticated|permission|"
                        r"credential", re.IGNORECASE)


def brain_model(brain: str, config: dict[str, Any]) -> str:
    """The model an LLM brain answers with ('' for offline); a replay names its cassette file."""
    llm = config.get("llm") or {}
    if brain == "gemini":
        return str(llm.get("model") or DEFAULT_GEMINI_MODEL)
    if brain == "openai":
        return str(llm.get("model") or DEFAULT_OPENAI_MODEL)
    if brain == "replay":
        cassette = str(llm.get("cassette") or "")
        return f"cassette {Path(cassette).name}" if cassette else "cassette"
    return ""


def brain_in_use(brain: str, config: dict[str, Any]) -> str:
    """The brain with its model, as the UI names it: 'gemini · gemini-3.5-flash', 'offline'."""
    model = brain_model(brain, config)
    return f"{brain} · {model}" if model else (brain or "offline")


def fmt_tokens(n: Any) -> str:
    """1234567 -> '1 234 567' (a space between thousands)."""
    return f"{int(n or 0):,}".replace(",", " ")


def fmt_usd(x: Any) -> str:
    """Estimated dollars: '$0', '$0.0012', '$0.123', '$12.34'."""
    v = float(x or 0.0)
    if v == 0:
        return "$0"
    if abs(v) < 0.01:
        return f"${v:.4f}"
    if abs(v) < 1:
        return f"${v:.3f}"
    return f"${v:,.2f}"


def md_escape(text: str) -> str:
    """Text for st.markdown / captions: '$' would start LaTeX, '[' and ']' a link."""
    return str(text).replace("\\", "\\\\").replace("$", "\\$").replace("[", "\\[").replace("]", "\\]")


def parse_sources(sources_json: str | None) -> list[dict[str, str]]:
    """Web sources stored as JSON [{"title", "uri"}]; only http(s) links are kept."""
    try:
        raw = json.loads(sources_json) if sources_json else []
    except (TypeError, ValueError):
        return []
    out = []
    for s in raw if isinstance(raw, list) else []:
        if isinstance(s, dict) and str(s.get("uri", "")).startswith(("https://", "http://")):
            uri = str(s["uri"])
            out.append({"title": str(s.get("title") or "").strip() or uri, "uri": uri})
    return out


def source_links(sources: Sequence[dict[str, str]]) -> str:
    """Sources as markdown links separated by ' · '."""
    links = []
    for s in sources:
        uri = s["uri"].replace("(", "%28").replace(")", "%29").replace(" ", "%20")
        links.append(f"[{md_escape(s['title'])}]({uri})")
    return " · ".join(links)


# -- search grounding (Google Search with Gemini) ------------------------------------------------


@dataclass(frozen=True)
class Grounding:
    """What a search-grounded brain call searched, and Google's search suggestions for its answer."""

    call_id: int
    queries: list[str]  # the web searches the model ran
    entry_point: str  # Google's search-suggestions HTML and CSS, to be shown as delivered with the answer
    sources: list[dict[str, str]]  # every web source of the answer
    supports: int  # answer segments tied to sources
    # The call recorded its grounding (queries, supports): sources were attributed to the parts of the
    # answer they support. False for runs recorded before that, whose cards carry the whole answer's list.
    recorded: bool


def parse_grounding(row: Row) -> Grounding | None:
    """A brain_calls row's search grounding (from `grounding_json` and `sources_json`); None when the call
    did not search the web."""
    try:
        raw = json.loads(row["grounding_json"]) if row.get("grounding_json") else None
    except (TypeError, ValueError):
        raw = None
    g = raw if isinstance(raw, dict) else {}
    sources = parse_sources(row.get("sources_json"))
    queries = [str(q) for q in g.get("queries") or [] if str(q).strip()]
    entry = g.get("entry_point").strip() if isinstance(g.get("entry_point"), str) else ""
    if not (sources or queries or entry):
        return None
    return Grounding(call_id=int(row.get("id") or 0), queries=queries, entry_point=entry, sources=sources,
                     supports=len(g.get("supports") or []), recorded=isinstance(raw, dict))


def retrieval_grounding(store: Store, run_id: str) -> Grounding | None:
    """The grounding of the retrieval answer the run's model cards came from: the newest retrieve_models call
    whose answer was used. None when that answer was not grounded (the brain did not search, or the cards
    came from the knowledge base) or there was no retrieval call yet."""
    for r in store.brain_call_list(run_id, roles=["retrieve_models"]):  # newest first, without the texts
        if r.get("model") in ("fallback", "knowledge base"):  # the cards are the knowledge base's
            return None
        if r.get("error") is None and r.get("answer_chars") is not None:
            return parse_grounding(store.get_brain_call(int(r["id"])) or r)
    return None


def search_suggestions(store: Store, run_id: str) -> list[str]:
    """Google's search-suggestions HTML of the run's grounded retrieval answer (none when it did not search)."""
    g = retrieval_grounding(store, run_id)
    return [g.entry_point] if g is not None and g.entry_point else []


def card_sources_state(card: ModelCardView, grounding: Grounding | None) -> str:
    """Where a model card's web sources come from, for the page to say so honestly:
    "own": the sources Google tied to this card's part of the grounded answer;
    "none": the answer was grounded, but no segment of this card is supported by a source;
    "whole answer": a run recorded before per-card attribution, whose cards all carry the answer's sources;
    "": nothing to say (the retrieval did not search). A card with sources but no recorded retrieval call
    (hand-made rows) shows them as its own."""
    if grounding is None or grounding.recorded:
        return "own" if card.sources else ("none" if grounding is not None else "")
    return "whole answer" if card.sources else ""


SUGGESTIONS_HEIGHT = 52  # px of the iframe showing Google's one-row chip carousel (it scrolls when taller)


def suggestions_document(entry_point: str) -> str:
    """Google's search-suggestions snippet as the document of an iframe: the snippet exactly as delivered (its
    CSS stays in the frame and its SVG logo is kept, which `st.html`'s sanitizer strips), its chips opening
    Google's results in a new tab, and no script allowed to run: the HTML may come from a shared cassette."""
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; font-src https: data:"
    return (f'<!doctype html><html><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}"><base target="_blank">'
            f"<style>body{{margin:1px}}</style></head><body>{entry_point}</body></html>")


@dataclass(frozen=True)
class BrainUsage:
    """What the brain cost so far: per role (`table`) and in total."""

    table: pd.DataFrame  # role, calls, failed, tokens in, tokens out, cost (USD), latency (s)
    calls: int
    failed: int
    tokens_in: int
    tokens_out: int
    cost: float
    latency: float
    cost_cap: float | None
    fallbacks: dict[str, int] = field(default_factory=dict)  # role -> calls that fell back (no model answer used)

    @property
    def degraded_text(self) -> str:
        """'' when every role was answered; else which roles fell back, for a warning on the dashboard."""
        if not self.fallbacks:
            return ""
        n = sum(self.fallbacks.values())
        roles = ", ".join(f"{role} ×{k}" for role, k in self.fallbacks.items())
        return (f"{n} role call{'s' if n != 1 else ''} got no usable model answer and fell back to a substitute "
                f"({roles}): see the event log and the Brain calls page (FALLBACK).")

    @property
    def chart_value(self) -> str:
        """What the per-role chart shows: 'cost', or 'tokens' when nothing cost anything."""
        return "cost" if self.cost > 0 else "tokens"

    @property
    def cap_fraction(self) -> float | None:
        return min(1.0, self.cost / self.cost_cap) if self.cost_cap else None

    @property
    def cost_text(self) -> str:
        if self.cost_cap:
            return (f"{fmt_usd(self.cost)} of the {fmt_usd(self.cost_cap)} cost cap "
                    f"({100 * self.cost / self.cost_cap:.0f} %)")
        return f"{fmt_usd(self.cost)} (no cost cap)"


BRAIN_USAGE_COLUMNS = ["role", "calls", "failed", "tokens in", "tokens out", "cost (USD)", "latency (s)"]


def brain_usage(rows: Sequence[Row], cost_cap: float | None = None) -> BrainUsage:
    """Totals and the per-role table from `Store.brain_usage` rows."""
    table = pd.DataFrame([{"role": r["role"], "calls": int(r["calls"] or 0), "failed": int(r["failed"] or 0),
                           "tokens in": int(r["tokens_in"] or 0), "tokens out": int(r["tokens_out"] or 0),
                           "cost (USD)": float(r["cost"] or 0.0), "latency (s)": float(r["latency"] or 0.0)}
                          for r in rows], columns=BRAIN_USAGE_COLUMNS)
    return BrainUsage(table, int(table["calls"].sum()), int(table["failed"].sum()), int(table["tokens in"].sum()),
                      int(table["tokens out"].sum()), float(table["cost (USD)"].sum()),
                      float(table["latency (s)"].sum()), float(cost_cap) if cost_cap else None,
                      {r["role"]: int(r["fallbacks"]) for r in rows if r.get("fallbacks")})


def shows_brain_usage(brain: str, usage: BrainUsage) -> bool:
    """The dashboard's brain-usage section is for LLM brains, and for any run whose calls counted tokens."""
    return brain in LLM_BRAINS or usage.tokens_in + usage.tokens_out > 0


def pause_needs_key(reason: str | None) -> bool:
    """Whether a pause reason is about a missing or rejected API key (the dashboard then asks for one)."""
    return bool(reason and _KEY_WORDS.search(reason))


@dataclass(frozen=True)
class BrainCallView:
    """One brain call for the list (its prompt and answer are read only when it is opened)."""

    id: int
    n: int  # its number in the run, from 1
    role: str
    step: str  # pipeline step key, e.g. "t0/o1/i2"
    model: str
    tokens_in: int
    tokens_out: int
    cost: float
    latency: float
    error: str | None
    answered: bool
    sources: list[dict[str, str]]
    outcome: str = ""  # "ok", "unusable", "failed", "fallback" ("" for calls stored before it was recorded)

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def fallback(self) -> bool:
        return self.outcome == "fallback"

    @property
    def step_text(self) -> str:
        return describe_step(self.step) if self.step else "outside a step"

    @property
    def title(self) -> str:
        """'#12 · plan_refinement · t0/o1/i2 · 1 234→567 tokens · 2.3 s · $0.0012', ⚠ first when it failed."""
        parts = [f"#{self.n}", self.role, *([self.step] if self.step else []),
                 *_usage_parts(self.tokens_in, self.tokens_out, self.latency, self.cost)]
        if self.fallback:  # no model answer was used: the role's degraded substitute, named as such
            return f"⚠ #{self.n} · {self.role} · " + (f"{self.step} · " if self.step else "") + \
                "FALLBACK: no usable model answer"
        return ("⚠ " if self.failed else "") + " · ".join(parts)


def _usage_parts(tokens_in: Any, tokens_out: Any, latency: Any, cost: Any) -> list[str]:
    """Tokens, time and cost of a call; a call that metered nothing (the offline expert: no model, no tokens,
    no cost) says so instead of a row of zeros."""
    seconds = f"{float(latency or 0):.1f} s"
    if not (tokens_in or tokens_out or cost):
        return [seconds, "no LLM tokens"]
    return [f"{fmt_tokens(tokens_in)}→{fmt_tokens(tokens_out)} tokens", seconds, fmt_usd(cost)]


def brain_call_views(rows: Sequence[Row]) -> list[BrainCallView]:
    """`Store.brain_call_list` rows (or full `brain_calls` rows) as list items, in the given order."""
    out = []
    for i, r in enumerate(rows):
        answered = r["answer_chars"] is not None if "answer_chars" in r else r.get("answer") is not None
        out.append(BrainCallView(
            id=int(r["id"]), n=int(r.get("n") or i + 1), role=str(r["role"]), step=str(r.get("step_key") or ""),
            model=str(r.get("model") or ""), tokens_in=int(r.get("tokens_in") or 0),
            tokens_out=int(r.get("tokens_out") or 0), cost=float(r.get("cost") or 0.0),
            latency=float(r.get("latency") or 0.0), error=r.get("error"), answered=answered,
            sources=parse_sources(r.get("sources_json")), outcome=str(r.get("outcome") or "")))
    return out


def brain_calls_summary(usage_rows: Sequence[Row], roles: Sequence[str] = (), failed_only: bool = False) -> str:
    """One line over the run's calls (or those the filters keep): calls, tokens, cost, failed.
    From `Store.brain_usage` rows, so it costs nothing however long the run is."""
    rows = [r for r in usage_rows if not roles or r["role"] in roles]
    u = brain_usage(rows)
    if failed_only:
        return f"{u.failed} failed call{'s' if u.failed != 1 else ''} of {u.calls}"
    failed = f" · {u.failed} failed" if u.failed else " · none failed"
    return (f"{u.calls} call{'s' if u.calls != 1 else ''} · {fmt_tokens(u.tokens_in)}→{fmt_tokens(u.tokens_out)} "
            f"tokens · {fmt_usd(u.cost)} estimated · {u.latency:.1f} s waiting{failed}")


def matching_calls(usage_rows: Sequence[Row], roles: Sequence[str] = (), failed_only: bool = False) -> int:
    """How many calls the brain-calls filters keep."""
    rows = [r for r in usage_rows if not roles or r["role"] in roles]
    return sum(int(r["failed"] or 0) if failed_only else int(r["calls"] or 0) for r in rows)


# -- a new run's brain: the New run page's form -> LLMSettings, and what still blocks the start ---------


def key_source_text(brain: str, source: str) -> str:
    """`secrets.key_source` in a sentence for the key field's caption (never the key itself)."""
    where = {"gemini": "GEMINI_API_KEY or GOOGLE_API_KEY", "openai": "OPENAI_API_KEY"}.get(brain, "the key")
    memory = "A key typed here is kept in this app's memory only: never stored, logged or put in the run's settings."
    if source.startswith("environment variable "):
        return f"Using {source.removeprefix('environment variable ')} from the environment. {memory}"
    if source == ".streamlit/secrets.toml":
        return f"Using the key in .streamlit/secrets.toml. {memory}"
    if source.startswith("entered on this page"):
        return memory
    return f"No key found: type one, or set {where} in the environment or .streamlit/secrets.toml. {memory}"


def new_run_blocker(brain: str, *, key_source: str = "none found", vertex: bool = False, project: str = "",
                    base_url: str = "", model: str = "", cassette: bool = False) -> str | None:
    """Why the New run page cannot start this brain yet (None: it can). `project` is the typed project
    or GOOGLE_CLOUD_PROJECT; `cassette` whether a valid cassette was uploaded."""
    if brain == "gemini":
        if vertex:
            if not project.strip():
                return ("Vertex AI needs a Google Cloud project: type it above or set GOOGLE_CLOUD_PROJECT "
                        "(credentials come from Application Default Credentials).")
        elif key_source == "none found":
            return ("Gemini needs an API key: type it above, or set GEMINI_API_KEY (or GOOGLE_API_KEY) in the "
                    "environment or .streamlit/secrets.toml — or use Vertex AI.")
    elif brain == "openai":
        if not base_url.strip():
            return "Set the base URL of the OpenAI-compatible server (e.g. http://localhost:11434/v1)."
        if not model.strip():
            return "Set the model name the server serves (e.g. llama3.1)."
    elif brain == "replay" and not cassette:
        return "Upload a cassette (.json, from History → Download cassette) to replay a recorded run."
    return None


def role_models_from_records(records: Iterable[Row]) -> dict[str, str]:
    """The per-role model overrides table ({"role", "model"} rows) -> {role: model} for the filled ones."""
    out = {}
    for r in records:
        model = r.get("model")
        if isinstance(model, str) and model.strip() and r.get("role"):
            out[str(r["role"])] = model.strip()
    return out


def llm_settings_from_form(brain: str, *, model: str = "", role_models: dict[str, str] | None = None,
                           base_url: str = "", vertex: bool = False, project: str = "", location: str = "",
                           search: bool = True, timeout: float | None = None, max_retries: int | None = None,
                           price: tuple[float, float] | None = None,
                           default_price: tuple[float, float] | None = None, price_model: str = "",
                           cassette: str = "") -> LLMSettings:
    """LLMSettings from the New run page's fields. `price` (USD per 1M tokens in, out) is for `price_model`
    (default: `model`) and goes into `prices` only when it differs from the price table's (`default_price`;
    None when the table does not know the model)."""
    d = LLMSettings()
    if brain == "offline":
        return d
    model = model.strip()
    price_model = price_model.strip() or model
    prices: dict[str, list[float]] = {}
    if price is not None and price_model and tuple(float(x) for x in price) != tuple(default_price or (0.0, 0.0)):
        prices[price_model] = [float(price[0]), float(price[1])]
    return LLMSettings(
        model=model, role_models=dict(role_models or {}), base_url=base_url.strip(),
        vertex=bool(vertex) if brain == "gemini" else False, project=project.strip() if brain == "gemini" else "",
        location=(location.strip() or d.location) if brain == "gemini" else d.location,
        search=bool(search) if brain == "gemini" else d.search,
        timeout=float(timeout) if timeout else d.timeout,
        max_retries=int(max_retries) if max_retries is not None else d.max_retries,
        prices=prices, cassette=cassette if brain == "replay" else "")


# -- cost: the price of every model in use, what keeps a cost cap from holding, spend against the cap ----

TYPICAL_PROMPT_CHARS = 12_000  # a prompt with a whole script in it: the size the reserve example on New run assumes


@dataclass(frozen=True)
class ModelPrice:
    """A model a run would ask, the roles that ask it, and its rates (`price` None: no known price)."""

    model: str
    who: str  # the roles that ask it: 'every role', 'every other role', 'debug, merge'
    price: Any  # brains.llm.pricing.Price | None
    search: bool  # it answers the grounded retrieval call (Google Search fees apply)

    @property
    def known(self) -> bool:
        return self.price is not None

    @property
    def text(self) -> str:
        """'gemini-3.5-flash at $1.50/$9.00 per 1M tokens in/out, search $14 per 1000 queries' (or why unknown)."""
        from .brains.llm.pricing import rate_text

        return rate_text(self.model, self.price, search=self.search)


def model_prices(brain: str, settings: LLMSettings) -> list[ModelPrice]:
    """Every model an LLM brain would ask with these settings (per-role models included), with its price."""
    from .brains.llm.pricing import models_in_use, price_book
    from .config import default_model

    if brain not in ("gemini", "openai"):
        return []
    default = default_model(brain)
    book = price_book(brain, settings)
    main = settings.model.strip() or default
    retriever = settings.model_for("retrieve_models", default).strip()
    grounded = brain == "gemini" and settings.search
    overridden = any(rm.strip() and rm.strip() != main for rm in settings.role_models.values())
    rows = []
    for m in models_in_use(brain, settings, default):
        roles = [r for r, rm in settings.role_models.items() if rm.strip() == m]
        if m == main:
            roles = ["every other role" if overridden else "every role"]
        rows.append(ModelPrice(m, ", ".join(roles), book.price(m), grounded and m == retriever))
    return rows


def unpriced_text(model: str, cost_cap: float | None) -> str:
    """What the New run page says about a model without a known price."""
    if cost_cap:
        return (f"Model {model} has no known price: give its price (USD per 1M input/output tokens) or remove the "
                "cost cap.")
    return (f"Model {model} has no known price: its calls count as $0 in the cost estimate. Give its price (USD "
            "per 1M input/output tokens) to estimate them; a cost cap needs it.")


def cost_blocker(brain: str, settings: LLMSettings, cost_cap: float | None) -> str | None:
    """Why the cost cap could not hold with these settings (the New run page disables Start), or None."""
    from .config import RunConfig, cost_problems

    problems = cost_problems(RunConfig(brain=brain, llm=settings, cost_cap=cost_cap))
    if not problems:
        return None
    text = "; ".join(problems)
    return text[0].upper() + text[1:] + "."


def form_prices(brain: str, settings: LLMSettings,
                entries: Iterable[tuple[str, float | None, float | None, float | None]]) -> dict[str, list[float]]:
    """The prices typed on the New run page, as `llm.prices`: (model, USD/1M in, USD/1M out, USD/1000 searches
    or None) per model. A model's price is kept only when both token rates are given and something differs
    from what it would cost anyway (the built-in table, or free on a local server); the search fee is kept
    only when it differs too."""
    from .brains.llm.pricing import GEMINI_3_SEARCH, price_book

    book = price_book(brain, LLMSettings.from_dict({**settings.to_dict(), "prices": {}}))
    out: dict[str, list[float]] = {}
    for model, p_in, p_out, p_search in entries:
        if not model or p_in is None or p_out is None:
            continue
        default = book.price(model)
        default_search = default.search if default is not None else GEMINI_3_SEARCH
        new_search = p_search is not None and float(p_search) != default_search
        if default is not None and (float(p_in), float(p_out)) == (default.input, default.output) and not new_search:
            continue
        out[model] = [float(p_in), float(p_out), *([float(p_search)] if new_search else [])]
    return out


def reserve_text(brain: str, settings: LLMSettings) -> str:
    """How the cost cap holds, with what one call reserves on these settings' models (for the cap's caption)."""
    from .brains.llm.budget import worst_case
    from .brains.llm.pricing import price_book

    book = price_book(brain, settings)
    every = model_prices(brain, settings)
    unpriced = [r.model for r in every if not r.known]
    if unpriced:
        return (f"A call's worst case cannot be reserved against the cap while {', '.join(unpriced)} "
                f"{'has' if len(unpriced) == 1 else 'have'} no price.")
    rows = [r for r in every if not r.price.free]
    if not rows:
        return "The models in use cost nothing here: a cost cap only matters for priced models."
    each = ", ".join(f"{fmt_usd(worst_case(r.model, TYPICAL_PROMPT_CHARS, settings.max_output_tokens, False, book))}"
                     f" on {r.model}" for r in rows)
    text = (f"Before each call its worst case is held against the cap (the prompt at a token per byte, and the "
            f"whole {settings.max_output_tokens:,}-token output limit at the output rate): up to {each} for a "
            f"{TYPICAL_PROMPT_CHARS:,}-character prompt")
    grounded = [r for r in rows if r.search]
    if grounded:
        r = grounded[0]
        text += (f", {fmt_usd(worst_case(r.model, TYPICAL_PROMPT_CHARS, settings.max_output_tokens, True, book))} "
                 "for the retrieval call with Google Search")
    return (text + ". A call that would not fit is not made and the run wraps up with its best solution; when a "
            "call returns, only what it cost is kept.")


def cost_basis(brain: str, config: dict[str, Any]) -> str:
    """How a run's cost is estimated, in one line (the models in use with their rates, what is billed as what,
    the reserve per call); '' for the offline brain."""
    from .brains.llm.budget import basis
    from .brains.llm.pricing import models_in_use, price_book
    from .config import default_model

    if brain not in LLM_BRAINS:
        return ""
    if brain == "replay":
        return "replayed answers were recorded: they cost nothing"
    settings = LLMSettings.from_dict(config.get("llm"))
    return basis(models_in_use(brain, settings, default_model(brain)), price_book(brain, settings),
                 settings.max_output_tokens, brain == "gemini" and settings.search)


@dataclass(frozen=True)
class SpendView:
    """A run's brain spend against its cost cap, with the estimate's basis."""

    spent: float
    cap: float | None
    reserved: float | None  # held by calls in flight; None: not known here (another process drives the run)
    basis: str

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.spent / self.cap) if self.cap else None

    @property
    def text(self) -> str:
        """'Spend $0.42 of $5.00 cap (reserved $0.16 in flight)'."""
        flight = f" (reserved {fmt_usd(self.reserved)} in flight)" if self.reserved is not None else ""
        if self.cap:
            return f"Spend {fmt_usd(self.spent)} of {fmt_usd(self.cap)} cap{flight}"
        return f"Spend {fmt_usd(self.spent)}, no cost cap{flight}"

    @property
    def basis_text(self) -> str:
        return f"Estimate: {self.basis}." if self.basis else ""


def spend_view(brain: str, config: dict[str, Any], spent: float, reserved: float | None) -> SpendView:
    """`spent`: Store.brain_spent; `reserved`: the live brain's reservations (RunManager.reserved_usd)."""
    cap = config.get("cost_cap")
    return SpendView(float(spent or 0.0), float(cap) if cap else None,
                     None if reserved is None else float(reserved), cost_basis(brain, config))


@dataclass(frozen=True)
class CassetteSummary:
    """What a cassette recorded, for the New run page."""

    brain: str
    run_id: str
    name: str
    task: str
    metric: str
    calls: int
    best_score: float | None
    knobs: dict[str, Any]

    @property
    def text(self) -> str:
        best = f", best score {fmt(self.best_score)}" + (f" ({self.metric})" if self.metric else "") \
            if self.best_score is not None else ""
        return (f"Recorded with the **{self.brain}** brain on task **{self.task or '?'}** "
                f"(run `{self.run_id or '?'}`): {self.calls} answered call{'s' if self.calls != 1 else ''}{best}.")

    @property
    def knobs_text(self) -> str:
        k = self.knobs
        names = [("num_models", "M"), ("outer_steps", "T"), ("inner_steps", "K"), ("num_solutions", "L"),
                 ("ensemble_rounds", "R"), ("seed", "seed")]
        return ", ".join(f"{label} = {k[key]}" for key, label in names if key in k) or "none recorded"


def cassette_summary(cassette: dict[str, Any]) -> CassetteSummary:
    rec = cassette.get("recorded") or {}
    best = rec.get("best_score")
    return CassetteSummary(brain=str(rec.get("brain") or "?"), run_id=str(rec.get("run_id") or ""),
                           name=str(rec.get("name") or ""), task=str(rec.get("task") or ""),
                           metric=str(rec.get("metric") or ""), calls=len(cassette.get("calls") or []),
                           best_score=float(best) if isinstance(best, int | float) else None,
                           knobs=dict(cassette.get("config") or {}))
