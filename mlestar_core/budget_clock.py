"""The run's budget clock: agent time, which stops while the run waits for a human.

A time budget is the agent's time. A plan waiting for a human decision (approval on) or a run the
user paused does no work, so that time must not count against the budget: a teacher pausing to
explain must not cost the class its result.

What the clock does with parallel tracks (the rule, also in the README):
    the budget clock stops only while *every* live track holds: waits for a decision on its plan,
    or sits paused at a step boundary (the main thread counts as the one live track outside the
    refinement phase). While track 1 waits for a human and track 2 still works (a script runs, a
    brain is asked), the clock runs: track 2's work is real agent time. Track 1's own waiting is
    then left out of what its outer step is measured to cost (`AgentClock.held_running`), so it
    does not make further outer steps look dearer either.

Two halves, no Streamlit:
- `AgentClock`: the engine's clock (thread-safe), used by `Pipeline.time_used()` and so by every
  budget check (time left, the reserve for the final runs, room for another outer step, script
  timeouts). It reports each stop/start to the pipeline, which persists it in `runs`
  (`time_used`, `time_waiting`, `clock_at`, `clock_stopped_since`, `clock_hold`).
- pure helpers for the dashboard and report.md, from store rows: `agent_seconds`,
  `waiting_seconds`, `clock_state` (the sentence to show), `decision_status_text`,
  `describe_message_event`, `fmt_duration`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

Row = Mapping[str, Any]
# on_change(stopped, reason, agent seconds, waiting seconds, seconds the clock had been stopped (when it restarts))
ClockListener = Callable[[bool, str, float, float, float], None]

# Why a track holds: a plan waits for a decision, or the user paused the run.
DECISION = "decision"
PAUSED = "paused"


class AgentClock:
    """Agent time of one driving session on top of what earlier sessions used (runs.time_used).

    `hold(reason)` marks the calling thread as waiting on a human; `add_live(n)` tells the clock how
    many threads do the run's work (1 outside the refinement phase, one per track in it). The clock
    is stopped while every live thread holds."""

    def __init__(self, prior_used: float = 0.0, prior_waiting: float = 0.0, *,
                 on_change: ClockListener | None = None, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._lock = threading.RLock()
        self._used = float(prior_used)  # agent seconds up to _last
        self._waiting = float(prior_waiting)  # seconds stopped up to _last (all sessions)
        self._last = now()
        self._live = 1
        self._holds: dict[int, list[str]] = {}  # thread id -> the reasons it holds for (nested: a pause in a wait)
        self._held_running: dict[int, float] = {}  # thread id -> seconds it held while the clock ran
        self._stopped = False
        self._stopped_at_waiting = 0.0  # _waiting when the current stop began
        self.on_change = on_change

    # -- engine side ---------------------------------------------------------------------------
    def used(self) -> float:
        """Agent seconds so far (every session), waiting excluded."""
        with self._lock:
            self._advance()
            return self._used

    def waiting(self) -> float:
        """Seconds the clock was stopped so far (every session): not counted against the budget."""
        with self._lock:
            self._advance()
            return self._waiting

    @property
    def stopped(self) -> bool:
        with self._lock:
            return self._stopped

    def held_running(self) -> float:
        """Seconds the calling thread held while the clock ran (another track worked meanwhile): its own
        waiting, which its outer step's measured cost leaves out."""
        tid = threading.get_ident()
        with self._lock:
            self._advance()
            return self._held_running.get(tid, 0.0)

    @contextmanager
    def hold(self, reason: str) -> Iterator[None]:
        """The calling thread waits on a human (`DECISION` or `PAUSED`) for the duration."""
        tid = threading.get_ident()
        with self._lock:
            self._advance()
            self._holds.setdefault(tid, []).append(reason)
            self._update()
        try:
            yield
        finally:
            with self._lock:
                self._advance()
                stack = self._holds.get(tid, [])
                if stack:
                    stack.pop()
                if not stack:
                    self._holds.pop(tid, None)
                self._update()

    def add_live(self, n: int) -> None:
        """n more (or fewer) threads do the run's work: tracks starting or ending."""
        with self._lock:
            self._advance()
            self._live += n
            self._update()

    # -- internals (under the lock) ------------------------------------------------------------
    def _advance(self) -> None:
        now = self._now()
        dt = max(0.0, now - self._last)
        self._last = now
        if self._stopped:
            self._waiting += dt
            return
        self._used += dt
        for tid in self._holds:
            self._held_running[tid] = self._held_running.get(tid, 0.0) + dt

    def _reason(self) -> str:
        reasons = {r for stack in self._holds.values() for r in stack}
        return PAUSED if PAUSED in reasons else DECISION if DECISION in reasons else next(iter(reasons), "")

    def _update(self) -> None:
        stopped = self._live > 0 and len(self._holds) >= self._live
        if stopped == self._stopped:
            return
        self._stopped = stopped
        interval = 0.0
        if stopped:
            self._stopped_at_waiting = self._waiting
        else:
            interval = self._waiting - self._stopped_at_waiting
        if self.on_change is not None:
            # Called under the lock (an RLock: the listener may read the clock), so the store sees the
            # changes in the order they happened even when two tracks cause them.
            self.on_change(stopped, self._reason() if stopped else "", self._used, self._waiting, interval)


# ---------------------------------------------------------------------------------------------
# Pure helpers for the dashboard and the report (store rows in, text out)
# ---------------------------------------------------------------------------------------------

ACTIVE_STATUSES = ("running", "waiting", "paused")


def fmt_duration(seconds: float | None) -> str:
    """'45 s', '2 min 10 s', '1 h 5 min'."""
    s = max(0, int(round(float(seconds or 0.0))))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s} s" if s else f"{m} min"
    h, m = divmod(m, 60)
    return f"{h} h {m} min" if m else f"{h} h"


def _now(now: float | None) -> float:
    return time.time() if now is None else float(now)


def _driven(run: Row) -> bool:
    """Whether the run's clock may be going: an active status, not a run the brain paused (its thread ended)."""
    return run.get("status") in ACTIVE_STATUSES and not run.get("pause_reason")


def agent_seconds(run: Row, events: Sequence[Row] = (), now: float | None = None) -> float:
    """The run's agent time: what the engine stored in `runs.time_used` (waiting for humans excluded), plus,
    for a live run whose clock runs, the seconds since it was stored (`runs.clock_at`; for runs from before
    the budget clock, the latest step_done / run_started event). The same number report.md gives."""
    used = float(run.get("time_used") or 0.0)
    if not _driven(run) or run.get("clock_stopped_since") is not None:
        return used  # time_used was written when the clock stopped (or the session ended)
    anchor = run.get("clock_at")
    if anchor is None:
        anchor = next((float(e["ts"]) for e in reversed(events) if e["kind"] in ("step_done", "run_started")),
                      None)
    if anchor is not None:
        used += max(0.0, _now(now) - float(anchor))
    return used


def waiting_seconds(run: Row, now: float | None = None) -> float:
    """Seconds the budget clock has been stopped (waiting for decisions, paused), over the whole run."""
    total = float(run.get("time_waiting") or 0.0)
    since = run.get("clock_stopped_since")
    if since is not None and _driven(run):
        total += max(0.0, _now(now) - float(since))
    return total


@dataclass(frozen=True)
class ClockState:
    """What the dashboard shows about the budget clock."""

    agent_seconds: float  # agent time used (waiting excluded)
    budget: float | None  # the time budget in seconds, None without one
    waiting_seconds: float  # total time not counted (waiting for decisions, paused)
    stopped: bool  # the clock is stopped right now
    reason: str | None  # "decision" or "paused" while stopped
    stopped_for: float  # seconds of the current stop so far
    pending: int  # plans waiting for a decision
    text: str | None  # the sentence about the clock (None: nothing to say)
    auto_text: str | None  # when a waiting plan will be approved automatically, if it will

    @property
    def fraction(self) -> float | None:
        """Agent time / budget in [0, 1] (None without a budget): the progress bar."""
        return None if not self.budget else min(1.0, self.agent_seconds / self.budget)

    @property
    def budget_text(self) -> str:
        """'Agent time 31 s of 240 s (13 %) · 2 min 10 s waiting for decisions not counted'."""
        if self.budget:
            head = (f"Agent time {fmt_duration(self.agent_seconds)} of {fmt_duration(self.budget)} "
                    f"({100 * (self.fraction or 0.0):.0f} %)")
        else:
            head = f"Agent time {fmt_duration(self.agent_seconds)} · no time budget"
        if self.waiting_seconds >= 1:
            head += f" · {fmt_duration(self.waiting_seconds)} waiting for decisions or paused, not counted"
        return head


def _budget(run: Row) -> float | None:
    import json

    try:
        config = json.loads(run.get("config_json") or "{}")
    except ValueError:
        config = {}
    budget = config.get("time_budget")
    return float(budget) if budget else None


def auto_approve_text(decision: Row, now: float | None = None) -> str | None:
    """'If nobody answers, the plan is approved automatically at 14:05:30 (in 3 min 20 s).' for a pending
    decision with a deadline (RunConfig.auto_approve_after); None otherwise."""
    deadline = decision.get("deadline")
    if decision.get("status") != "pending" or deadline is None:
        return None
    left = float(deadline) - _now(now)
    when = time.strftime("%H:%M:%S", time.localtime(float(deadline)))
    if left <= 0:
        return "Nobody answered in time: the plan is being approved automatically."
    return f"If nobody answers, the plan is approved automatically at {when} (in {fmt_duration(left)})."


def clock_state(run: Row, decisions: Sequence[Row] = (), events: Sequence[Row] = (),
                now: float | None = None) -> ClockState:
    """The budget clock of a run, from its `runs` row, its `decisions` rows and (for runs from before the
    budget clock) its events; `text` is the sentence for the dashboard, e.g. "Budget clock stopped: waiting
    for your decision (2 min 10 s so far); time waiting for decisions is not counted against the budget."."""
    t = _now(now)
    pending = sorted((d for d in decisions if d.get("status") == "pending"), key=lambda d: float(d["created"]))
    driven = _driven(run)
    since = run.get("clock_stopped_since")
    stopped = driven and since is not None
    reason: str | None = None
    stopped_for = max(0.0, t - float(since)) if stopped and since is not None else 0.0
    text: str | None = None
    if stopped:
        paused = run.get("control") == "pause" or run.get("status") == "paused" or run.get("clock_hold") == PAUSED
        reason = PAUSED if paused else DECISION
        if reason == DECISION:
            text = (f"Budget clock stopped: waiting for your decision ({fmt_duration(stopped_for)} so far); "
                    "time waiting for decisions is not counted against the budget.")
        else:
            text = (f"Budget clock stopped: the run is paused ({fmt_duration(stopped_for)} so far); "
                    "paused time is not counted against the budget.")
    elif driven and pending:
        waited = max(0.0, t - float(pending[0]["created"]))
        text = (f"A plan waits for your decision ({fmt_duration(waited)} so far); the budget clock keeps running "
                "while another track is still working, and stops when nothing else is left to do.")
    auto = auto_approve_text(pending[0], t) if driven and pending else None
    return ClockState(agent_seconds(run, events, t), _budget(run), waiting_seconds(run, t), stopped, reason,
                      stopped_for, len(pending) if driven else 0, text, auto)


def decision_status_text(decision: Row, now: float | None = None) -> str:
    """A decision in words for the decision history: who decided and how long the plan waited."""
    status = decision.get("status")
    created = float(decision.get("created") or 0.0)
    if status == "pending":
        waited = fmt_duration(_now(now) - created)
        auto = auto_approve_text(decision, now)
        return f"waiting for your decision ({waited} so far)" + (f"; {auto}" if auto else "")
    waited = fmt_duration(float(decision.get("decided") or created) - created)
    if status == "auto-approved":
        return f"approved automatically, not by a person: nobody answered within {waited}"
    who = decision.get("decided_by") or "you"
    return f"{status} by {'you' if who == 'human' else who} after {waited}"


# Events of the budget clock, the approval gate and human edits; each payload carries its sentence in "message".
MESSAGE_EVENTS = ("budget_clock", "approval_waiting", "approval_decided", "edit_failed", "edit_repaired")


def describe_message_event(kind: str, payload: Mapping[str, Any]) -> str | None:
    """The event-log line of one of MESSAGE_EVENTS (None for other kinds): for views.describe_event."""
    if kind not in MESSAGE_EVENTS:
        return None
    return str(payload.get("message") or kind)
