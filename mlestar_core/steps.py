"""What the pipeline's steps hand to each other, the two ways a run leaves its loop early, and the
one way it cannot start its search (no working initial solution)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class StopRequested(Exception):
    """The user asked the run to stop."""


class BudgetExhausted(Exception):
    """Not enough time left for another step: wrap up with the best solution so far."""


@dataclass
class Scored:
    """A script and the engine's validation score of it (what steps hand to each other)."""

    script_id: int
    score: float | None
    wall_time: float = 0.0
    label: str = ""
    fold_scores: list[float | None] = dataclasses.field(default_factory=list)  # paired comparisons

    def to_dict(self) -> dict[str, Any]:
        return {"script_id": self.script_id, "score": self.score, "wall_time": self.wall_time,
                "label": self.label, "fold_scores": self.fold_scores}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scored:
        return cls(int(d["script_id"]), d.get("score"), float(d.get("wall_time") or 0.0),
                   d.get("label", ""), list(d.get("fold_scores") or []))


class _ExecutionLog(Protocol):
    """What NoWorkingSolution reads from the store (a Protocol: steps.py must not import store.py)."""

    def executions_of(self, script_id: int) -> list[dict[str, Any]]: ...


# The last line of a Python traceback: "ValueError: could not convert string to float: 'abc'".
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)\b.*$")
REASON_CHARS = 240  # the first candidate's error in the message: enough to recognise it, not a traceback


class NoWorkingSolution(RuntimeError):
    """No initial candidate ran successfully, even after the debugger's fixes: there is nothing to refine.

    Raised instead of a bare RuntimeError so the CLI (and the run's error) can say what happened and
    where to look without a traceback: the message names the first candidate's error, shortened.
    """

    @classmethod
    def from_candidates(cls, store: _ExecutionLog, run_id: str, candidates: Sequence[Scored]) -> NoWorkingSolution:
        if not candidates:
            return cls(f"No initial solution was written for run {run_id}, so there is nothing to refine; "
                       "check the brain's calls on the run's Brain calls page, then start a new run.")
        first = candidates[0]
        executions = store.executions_of(first.script_id)
        reason = _failure_reason(executions[-1] if executions else None)
        label = f"{first.label!r} " if first.label else ""
        where = ""
        if executions and executions[-1].get("workdir"):
            where = f" Its script, output and files are in {executions[-1]['workdir']}."
        many = f"all {len(candidates)} initial solutions failed" if len(candidates) > 1 else \
            "the initial solution failed"
        return cls(
            f"No initial solution ran successfully: {many}, even after the debugger's fixes, so there is "
            f"nothing to refine. The first, {label}(script #{first.script_id}), failed: {reason}.{where} "
            f"Every script of run {run_id} and its full output is on the run's Refinement page in the app "
            "(the tree of scripts). When every model fails the same way the data is often the cause (a column "
            "read wrongly, a target that cannot be learned from): check the task, then start a new run.")


def _failure_reason(execution: dict[str, Any] | None) -> str:
    """Why one execution failed, in one short line (for NoWorkingSolution's message)."""
    if execution is None:
        return "it was never run"
    if execution.get("killed_reason") == "timeout" or execution.get("timed_out"):
        reason = "it ran out of time (the script timeout; raise it with --script-timeout)"
    elif execution.get("killed_reason") == "memory" or execution.get("memory_exceeded"):
        reason = "it ran out of memory"
    elif execution.get("killed_reason") == "cancelled":
        reason = "it was cancelled"
    elif execution.get("exit_code") is None:
        reason = "it could not be started"
    else:
        lines = [line.strip() for line in str(execution.get("stderr") or "").splitlines() if line.strip()]
        error = next((line for line in reversed(lines) if _EXCEPTION_LINE.match(line)), lines[-1] if lines else "")
        if execution["exit_code"] != 0:
            reason = f"exit code {execution['exit_code']}" + (f", {error}" if error else "")
        else:  # it finished, but printed no score or the engine could not score its predictions
            reason = str(execution.get("score_note") or "it finished without a score the engine could use")
    return reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 3] + "..."
