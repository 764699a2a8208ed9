"""Replay (app_pages/replay.py): what the dashboard showed after the first n events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .common import (
    PhaseState,
    Row,
    ScriptCounts,
    active_seconds,
    describe_event,
    event_log,
    phase_timeline,
    score_series,
    script_counts,
    steps_from_events,
)


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


def play_step(total: int) -> int:
    """Events per frame when playing: a run plays through in about 80 frames."""
    return max(1, total // 80)


def headline(state: ReplayState) -> str:
    return f"**After event {state.n} of {state.total}** · {state.seconds:.0f} s into the run · {state.event}"


def still_running_text(status: str, total: int) -> str:
    return (f"This run is still {status}: the replay covers the {total} events written so far (reload the page "
            "for more).")
