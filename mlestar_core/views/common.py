"""What several pages show: the run row parsed (`RunInfo`), formatting, the runs list, the brain's name, the
phase timeline, scores over time, the event log in words, hold-out drift, grounding sources and brain
usage. No Streamlit here."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import budget_clock
from ..brains.llm.settings import DEFAULT_GEMINI_MODEL, DEFAULT_OPENAI_MODEL
from ..evaluation import Protocol
from ..metrics import METRICS, improvement, is_better

Row = dict[str, Any]

TERMINAL_STATUSES = ("finished", "failed", "stopped")
ACTIVE_STATUSES = ("created", "running", "waiting", "paused")
DRIFT_THRESHOLD = 0.05  # hold-out worse than validation by more than 5 % (relative): overfitting warning


# -- the run itself --------------------------------------------------------------------------------


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


# -- the runs list (Home, History) and run-level formatting ----------------------------------------

BRAIN_LABELS = {"offline": "offline — deterministic, no LLM", "gemini": "gemini — Google Gemini",
                "openai": "openai — an OpenAI-compatible server", "replay": "replay — a recorded run's answers"}
STATUS_ICONS = {"running": "▶", "waiting": "⏸", "paused": "⏸", "created": "…",
                "finished": "✓", "failed": "✗", "stopped": "■"}


def brain_label(brain: str) -> str:
    return BRAIN_LABELS.get(brain, brain)


def run_brain_text(brain: str, config: dict[str, Any]) -> str:
    """A run's brain for headers and the sidebar: the LLM brains with their model, offline described."""
    return BRAIN_LABELS["offline"] if brain == "offline" else brain_in_use(brain, config)


def fmt_score(value: float | None) -> str:
    return "—" if value is None else f"{value:.5g}"


def fmt_duration(seconds: float | None) -> str:
    if not seconds:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def fmt_time(ts: float | None) -> str:
    return "—" if not ts else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def run_metric(run: Row) -> str:
    try:
        return str(json.loads(run["task_json"]).get("metric", ""))
    except (ValueError, TypeError):
        return ""


def runs_frame(runs: Sequence[Row]) -> pd.DataFrame:
    """Runs as a display table (one row per run, newest first as given)."""
    rows = [{
        "status": f"{STATUS_ICONS.get(r['status'], '')} {r['status']}",
        "task": r["name"],
        "brain": r["brain"],
        "metric": run_metric(r),
        "best score": r["best_score"],
        "hold-out score": r["holdout_score"],
        "duration": fmt_duration(r["time_used"]),
        "started": fmt_time(r["created"]),
        "run id": r["id"],
    } for r in runs]
    return pd.DataFrame(rows, columns=["status", "task", "brain", "metric", "best score", "hold-out score",
                                       "duration", "started", "run id"])


def run_label(run: Row) -> str:
    return f"{run['name']} · {run['status']} · {fmt_time(run['created'])} · {run['id']}"


def any_active(runs: Iterable[Row]) -> bool:
    """Whether a list of runs needs polling: one of them is still going."""
    return any(r["status"] in ACTIVE_STATUSES for r in runs)


# -- brains: which one, and formatting -------------------------------------------------------------


LLM_BRAINS = ("gemini", "openai", "replay")


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


# -- phases: timeline and explanations -------------------------------------------------------------


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


STEP_KEY_RE = re.compile(r"^t(?P<t>\d+)/(?:(?P<what>merge|checks)|o(?P<o>\d+)/(?P<sub>ablation|extract|i(?P<i>\d+)))$")


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
    m = STEP_KEY_RE.match(key)
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
    started = {int(m["t"]) for s in steps if (m := STEP_KEY_RE.match(s.key))}
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


# -- time ------------------------------------------------------------------------------------------


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


# -- scores over time, counts ----------------------------------------------------------------------


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


# -- validation vs locked hold-out -----------------------------------------------------------------


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


# -- the event log ---------------------------------------------------------------------------------


def _track(p: dict[str, Any]) -> str:
    return f"Track {int(p.get('track', 0)) + 1}"


def first_line(text: Any, limit: int = 140) -> str:
    s = str(text or "").strip()
    line = s.splitlines()[0] if s else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def usage_parts(tokens_in: Any, tokens_out: Any, latency: Any, cost: Any) -> list[str]:
    """Tokens, time and cost of a call; a call that metered nothing (the offline expert: no model, no tokens,
    no cost) says so instead of a row of zeros."""
    seconds = f"{float(latency or 0):.1f} s"
    if not (tokens_in or tokens_out or cost):
        return [seconds, "no LLM tokens"]
    return [f"{fmt_tokens(tokens_in)}→{fmt_tokens(tokens_out)} tokens", seconds, fmt_usd(cost)]


def fmt_bytes(n: Any) -> str:
    size = float(n or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover


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
                f"{first_line(p.get('reason'), 160)}; {p.get('base')} goes on unchanged")
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
        return f"{where} {what}" + (f" — {first_line(findings)}" if findings else "")
    if kind == "fallback":
        return f"Degraded — {p.get('role')}: {first_line(p.get('note'), 220)}"
    if kind == "debug_failed":
        return (f"Debugger could not repair {p.get('label')} (script #{p.get('script_id')}): "
                f"{first_line(p.get('reason'), 160)}; it stays failed")
    if kind == "ablation_result":
        spread = f" ± {fmt(p['delta_std'], 2)}" if p.get("delta_std") is not None else ""
        return (f"{_track(p)}, outer step {int(p.get('outer', 0)) + 1}: without a better {p.get('block')} block "
                f"the score is {fmt(p.get('score'))} (contribution {fmt(p.get('delta'), 3)}{spread})")
    if kind == "ablation_summary":
        return f"{_track(p)}, outer step {int(p.get('outer', 0)) + 1}: ablation summary — " \
               f"{first_line(p.get('summary'))}"
    if kind == "block_chosen":
        within = f" (lines inside the {p['within']} block)" if p.get("within") else ""
        return f"{_track(p)}, outer step {int(p.get('outer', 0)) + 1}: refining the {p.get('block')} block{within}" + (
            f" ({first_line(p.get('reason'), 100)})" if p.get("reason") else "")
    if kind == "attempt_scored":
        where = f"{_track(p)}, attempt {int(p.get('outer', 0)) + 1}.{int(p.get('inner', 0)) + 1}"
        if p.get("status") == "stopped early":
            return f"{where} on {p.get('block')}: stopped early — its first folds showed it could not catch up"
        if p.get("score") is None:
            return f"{where}: failed" + (f" — {first_line(p.get('error'))}" if p.get("error") else "")
        decision = f" [{p['decision']}]" if p.get("decision") and p.get("decision") != "auto" else ""
        repaired = " — your edit failed, the debugger repaired it" if p.get("status") == "edit repaired" else ""
        return f"{where} on {p.get('block')}: {fmt(p.get('score'))} vs {fmt(p.get('baseline'))}{decision}{repaired}"
    if kind == "attempt_rejected":
        return (f"{_track(p)}, attempt {int(p.get('outer', 0)) + 1}.{int(p.get('inner', 0)) + 1}: plan rejected "
                f"— {first_line(p.get('plan'), 100)}")
    if kind == "block_refined":
        return (f"{_track(p)}, outer step {int(p.get('outer', 0)) + 1}: {p.get('block')} block refined "
                f"{fmt(p.get('from'))} → {fmt(p.get('to'))}")
    if kind == "approval_needed":
        return f"Waiting for your approval: a plan for the {p.get('block')} block — {first_line(p.get('plan'), 100)}"
    if kind == "decision":
        if p.get("status") == "auto-approved":
            return (f"Plan approved automatically: nobody decided in time, not a person's approval "
                    f"(decision #{p.get('decision_id')})")
        who = p.get("decided_by")
        by = f" by {who}" if who and who != "human" else ""
        return f"Plan {p.get('status')}{by} (decision #{p.get('decision_id')})"
    if kind == "ensemble_round":
        if p.get("strategy"):
            weights = p.get("weights")
            shown = f", weights {', '.join(f'{w:.2f}' for w in weights)}" if weights else ""
            return (f"Ensemble round {int(p.get('round', 0)) + 1}: {p['strategy']} → {fmt(p.get('score'))}{shown} "
                    f"(scored by the engine on stored out-of-fold predictions in {p.get('milliseconds', '?')} ms)")
        return f"Ensemble round {int(p.get('round', 0)) + 1}: {fmt(p.get('score'))} — {first_line(p.get('plan'), 100)}"
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
        return f"Run paused by the brain: {first_line(p.get('reason'), 200)} — resume it on the Run dashboard"
    if kind == "budget_exhausted":
        return f"Time budget exhausted at {describe_step(str(p.get('at_step', '')))}: wrapping up with the best so far"
    if kind == "final":
        return (f"Final solution: {p.get('final_label')} — validation {fmt(p.get('validation_score'))}, "
                f"locked hold-out {fmt(p.get('holdout_score'))}")
    if kind == "competition_graded":
        from ..competition import grade_text  # here only: most pages never see this event

        return f"Competition grade — {grade_text(p)}"
    if kind == "run_finished":
        return "Run finished"
    if kind == "mlflow_logged":
        return (f"Logged to MLflow: run {p.get('mlflow_run_id')} in experiment {p.get('experiment_name')!r} "
                f"({p.get('url') or p.get('tracking_uri')})")
    if kind == "mlflow_failed":
        return (f"MLflow logging failed ({p.get('tracking_uri')}): {first_line(p.get('error'), 200)} — the run is "
                "not affected; log it again with `python -m mlestar_core mlflow-log RUN_ID`")
    if kind == "run_failed":
        return f"Run failed: {first_line(p.get('error'))}"
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
        return f"{what} failed" + (f": {first_line(p.get('error'), 120)}" if p.get("error") else "")
    if kind == "brain_call":
        text = " · ".join([f"Brain call: {p.get('role')}",
                           *usage_parts(p.get("tokens_in"), p.get("tokens_out"), p.get("latency"), p.get("cost"))])
        return text + (f" — failed: {first_line(p.get('error'), 120)}" if p.get("error") else "")
    message = budget_clock.describe_message_event(kind, p)
    if message is not None:
        return message
    if kind == "model_kept":
        return (f"Fitted model kept with the run ({p.get('purpose')} run of script #{p.get('script_id')}, "
                f"{p.get('files')} files, {fmt_bytes(p.get('bytes'))}): new rows can be predicted without refitting")
    if kind == "explained":
        if p.get("status") == "ok":
            return "What drives the model: top features " + ", ".join(f"`{f}`" for f in p.get("top") or [])
        return f"What drives the model: not computed — {first_line(p.get('reason'), 160)}"
    if kind == "log":
        return first_line(p.get("message"), 200)
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


DECISION_KEY_RE = re.compile(r"^t(?P<t>\d+)/o(?P<o>\d+)/i(?P<i>\d+)(?:/r(?P<r>\d+))?$")


def describe_decision_key(key: str) -> str:
    m = DECISION_KEY_RE.match(key or "")
    if not m:
        return key
    text = f"track {int(m['t']) + 1} · attempt {int(m['o']) + 1}.{int(m['i']) + 1}"
    return text + (f" · plan {int(m['r']) + 1}" if m["r"] and int(m["r"]) else "")


# -- search grounding (Google Search with Gemini) --------------------------------------------------


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


SUGGESTIONS_HEIGHT = 52  # px of the iframe showing Google's one-row chip carousel (it scrolls when taller)


def suggestions_document(entry_point: str) -> str:
    """Google's search-suggestions snippet as the document of an iframe: the snippet exactly as delivered (its
    CSS stays in the frame and its SVG logo is kept, which `st.html`'s sanitizer strips), its chips opening
    Google's results in a new tab, and no script allowed to run: the HTML may come from a shared cassette."""
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; font-src https: data:"
    return (f'<!doctype html><html><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}"><base target="_blank">'
            f"<style>body{{margin:1px}}</style></head><body>{entry_point}</body></html>")


# -- brain usage: what the brain cost so far -------------------------------------------------------


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
