"""The Run dashboard (app_pages/run.py): what the Pause / Resume / Stop buttons may do, a run the brain
paused, progress against the time budget, validation vs hold-out, brain usage and spend against the cost
cap, pinned constraints."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import budget_clock
from ..brains.llm.settings import LLMSettings
from ..competition import CompetitionGrade, ordinal, reaches
from .common import (
    ACTIVE_STATUSES,
    LLM_BRAINS,
    BrainUsage,
    HoldoutCheck,
    PhaseState,
    Row,
    ScriptCounts,
    describe_decision_key,
    final_summary,
    fmt_usd,
    holdout_check,
    step_progress,
    time_by_phase_text,
)

# -- steering: what the buttons may do now ----------------------------------------------------------


@dataclass(frozen=True)
class Controls:
    """The Pause / Resume / Stop row for a run, as this app may use it now."""

    can_pause: bool
    can_resume: bool
    can_stop: bool
    unpause: bool  # Resume lets the live thread go on (else it continues the run from its last completed step)
    locked: str | None  # why the buttons are off here (no engine, another process drives the run), or None
    note: str  # a line beside the buttons ('' for none)


def controls(run: Row, *, engine: bool, engine_error: str | None = None, alive: bool = False,
             elsewhere: str | None = None) -> Controls:
    """`engine`: this app has a RunManager; `alive`: one of its threads runs the run; `elsewhere`: who else
    drives it (RunManager.driven_elsewhere). Resume means "un-pause" for a paused run, and "continue from the
    last completed step" for a run that stopped, failed or lost its thread (the app restarted). A run another
    process drives (a CLI run, a second app) is followed read-only: only its owner steers it."""
    status, control = run["status"], run["control"]
    paused, active = control == "pause", status in ACTIVE_STATUSES
    free = engine and not elsewhere
    locked = None if engine else (engine_error or "The run engine is not available.")
    note = ""
    if elsewhere is not None:
        locked = f"Running in another process ({elsewhere}): this page follows it read-only."
        note = f":material/sync_alt: Running in another process ({elsewhere}); this page follows it read-only."
    elif paused and status != "paused" and active:
        note = "Pause requested: the run pauses when the step in flight ends."
    elif control == "stop" and active:
        note = "Stopping…"
    elif active and not alive and engine and not run.get("pause_reason"):
        note = "No thread of this app is running this run (it was interrupted): Resume continues it."
    return Controls(can_pause=free and active and not paused and control != "stop",
                    can_resume=free and status != "finished" and (paused or not alive),
                    can_stop=free and active and control != "stop", unpause=paused and alive, locked=locked,
                    note=note)


def paused_reason(run: Row | None) -> str | None:
    """Why the brain paused the run (the banner shows it), or None when it is not paused by the brain."""
    reason = (run or {}).get("pause_reason")
    return reason if run is not None and run["status"] == "paused" and reason else None


def approval_text(decision: Row) -> str:
    """The dashboard's line about the plan waiting for a decision."""
    return (f"**The run is waiting for your approval** of a plan for the **{decision['block']}** block "
            f"({describe_decision_key(decision['key'])}).")


def constraints_without(constraints: Sequence[str], index: int) -> list[str]:
    return [c for i, c in enumerate(constraints) if i != index]


def constraints_with(constraints: Sequence[str], typed: str) -> list[str] | None:
    """The constraints with a typed one pinned, or None when nothing was typed."""
    return [*constraints, typed.strip()] if typed.strip() else None


def constraints_caption(active: bool) -> str:
    return ("Rules every planner must follow (e.g. 'no neural networks', 'keep training under a minute'). "
            + ("The run picks changes up before its next planner call." if active else
               "The run is over: constraints apply if it is resumed or forked."))


# -- time budget: the budget clock -------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    fraction: float  # the progress bar
    text: str  # its label
    clock_text: str | None = None  # the budget clock stopped (or a plan waits while it runs): an info box
    auto_text: str | None = None  # when the waiting plan will be approved automatically, if it will


def run_progress(clock: budget_clock.ClockState, phases: Sequence[PhaseState]) -> Progress:
    """Agent time against the time budget when there is one (`budget_clock.clock_state`), else the share of the
    planned steps done; with what the budget clock is doing and when a waiting plan is approved by itself."""
    if clock.fraction is not None:
        return Progress(clock.fraction, clock.budget_text, clock.text, clock.auto_text)
    done = step_progress(phases)
    return Progress(done, f"{100 * done:.0f} % of the planned steps done · {clock.budget_text}", clock.text,
                    clock.auto_text)


def time_caption(steps: Sequence[Row]) -> str:
    by_phase = time_by_phase_text(steps)
    return f"Where the time went: {by_phase} (tracks run side by side, so phases overlap)" if by_phase else ""


def failed_help(counts: ScriptCounts) -> str:
    return ("Crashes, timeouts and scripts without a score; crashing candidates go to the debugger."
            + (f" Not counted: {counts.stopped} refinement attempt(s) the engine stopped early because "
               "they could no longer catch up." if counts.stopped else ""))


# -- validation vs locked hold-out -----------------------------------------------------------------


@dataclass(frozen=True)
class HoldoutPanel:
    validation_label: str
    validation: float | None
    holdout: float | None
    delta: str | None  # the raw hold-out minus validation: its colour follows the metric's direction
    final_text: str  # the final solution (markdown), '' before the run ends
    check: HoldoutCheck


def holdout_panel(run: Row, events: Sequence[Row], higher_is_better: bool) -> HoldoutPanel:
    final = final_summary(events)
    validation = final["validation_score"] if final else run["best_score"]
    check = holdout_check(validation, run["holdout_score"], higher_is_better)
    raw = None if check.gap is None else run["holdout_score"] - validation
    return HoldoutPanel("Final validation score" if final else "Best validation score so far", validation,
                        run["holdout_score"], None if raw is None else f"{raw:+.4g} vs validation",
                        f"**Final solution**  \n{final['final_label']} (script #{final['final_script_id']})"
                        if final else "", check)


# -- brain usage, spend, a pause about the key -----------------------------------------------------


_KEY_WORDS = re.compile(r"api[ _-]?key|\bkey\b|\b401\b|\b403\b|unauthori[sz]ed|unauthenticated|permission|"
                        r"credential", re.IGNORECASE)


def shows_brain_usage(brain: str, usage: BrainUsage) -> bool:
    """The dashboard's brain-usage section is for LLM brains, and for any run whose calls counted tokens."""
    return brain in LLM_BRAINS or usage.tokens_in + usage.tokens_out > 0


def pause_needs_key(reason: str | None) -> bool:
    """Whether a pause reason is about a missing or rejected API key (the dashboard then asks for one)."""
    return bool(reason and _KEY_WORDS.search(reason))


def cost_basis(brain: str, config: dict[str, Any]) -> str:
    """How a run's cost is estimated, in one line (the models in use with their rates, what is billed as what,
    the reserve per call); '' for the offline brain."""
    from ..brains.llm.budget import basis
    from ..brains.llm.pricing import models_in_use, price_book
    from ..config import default_model

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


def reserved_in_flight(run: Row, reserved: float | None) -> float | None:
    """What the live brain holds for calls in flight: as this app knows it (RunManager.reserved_usd; None when
    another process drives the run) while the run is active, 0 when nothing runs."""
    return reserved if run["status"] in ACTIVE_STATUSES else 0.0


def spend_view(brain: str, config: dict[str, Any], spent: float, reserved: float | None) -> SpendView:
    """`spent`: Store.brain_spent; `reserved`: the live brain's reservations (RunManager.reserved_usd)."""
    cap = config.get("cost_cap")
    return SpendView(float(spent or 0.0), float(cap) if cap else None,
                     None if reserved is None else float(reserved), cost_basis(brain, config))


# -- an MLE-bench task: the final submission graded on the competition's answers and leaderboard ----------------


_BADGES = {"gold": ("Gold medal", "yellow"), "silver": ("Silver medal", "gray"), "bronze": ("Bronze medal", "orange")}


@dataclass(frozen=True)
class CompetitionView:
    title: str  # "Competition grade · spaceship-titanic"
    badge: str  # "Gold medal", "No medal · above the median", "Score only", "Not graded"
    badge_color: str  # a colour st.badge takes
    score: float | None
    score_help: str
    rank: int | None  # the place the score would take on the leaderboard
    rank_text: str  # "Would place 3rd of the leaderboard's 412 teams.", '' without a leaderboard or a score
    thresholds: list[tuple[str, float, bool]]  # (gold/silver/bronze/median, score to reach, this run reaches it)
    compare: str  # "≥" or "≤": how a score reaches a threshold
    text: str  # the grade in one sentence
    notes: list[str]
    leaderboard: list[float]  # the teams' scores, best first (the chart), [] without a leaderboard


def competition_view(grade: CompetitionGrade | None) -> CompetitionView | None:
    """What the dashboard shows of competition.json (None: the task did not come from an MLE-bench folder)."""
    if grade is None:
        return None
    hib = grade.higher_is_better
    if not grade.graded:
        badge, color = "Not graded", "red"
    elif grade.n_teams is None:
        badge, color = "Score only · no leaderboard", "blue"
    elif grade.medal:
        badge, color = _BADGES[grade.medal]
    else:
        badge, color = ("No medal · above the median", "green") if grade.above_median else ("No medal", "gray")
    reached: list[tuple[str, float, bool]] = []
    for name, value in grade.thresholds():
        ok = bool(grade.above_median) if name == "median" else (
            grade.score is not None and reaches(grade.score, value, hib))
        reached.append((name, value, ok))
    answers = Path(grade.answers_file).name if grade.answers_file else "the competition's private answers"
    return CompetitionView(
        title=f"Competition grade · {grade.competition}", badge=badge, badge_color=color, score=grade.score,
        score_help=f"{grade.metric_title} ({grade.direction}) of the final submission on {answers}, by the same "
                   "metric code as every validation score. No script ever saw these answers.",
        rank=grade.rank,
        rank_text=f"Would place **{ordinal(grade.rank)}** of the leaderboard's {grade.n_teams} teams (1 + the teams "
                  "with a strictly better score)." if grade.rank and grade.n_teams else "",
        thresholds=reached, compare="≥" if hib else "≤", text=grade.headline(), notes=list(grade.notes),
        leaderboard=list(grade.leaderboard))


def leaderboard_frame(view: CompetitionView) -> pd.DataFrame:
    """The leaderboard as (position, score) rows, best first: the curve the run's score is placed on."""
    return pd.DataFrame({"position": range(1, len(view.leaderboard) + 1), "score": view.leaderboard})
