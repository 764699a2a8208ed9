"""What the pipeline's steps hand to each other, and the two ways a run leaves its loop early."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


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
