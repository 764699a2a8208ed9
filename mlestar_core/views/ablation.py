"""Ablation (app_pages/ablation.py): each block's contribution per track and outer step, with error bars."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .common import Row


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


def chart_caption(group: AblationGroup, direction: str) -> str:
    """What the bars and their error bars mean, under the chart."""
    if not group.has_error_bars:
        note = "no error bars: an older run without per-fold scores"
    else:
        n = max(b.repeats for b in group.bars)
        note = ("error bars: spread of the paired per-fold contributions (block on and off scored on the same "
                "folds)" + (f", over {n} runs with different model seeds" if n > 1 else ""))
    return ("Contribution = how much worse the score gets when the block is switched to its simpler version "
            f"({direction}); {note}.")


def chosen_text(group: AblationGroup) -> str:
    """The block chosen for refinement and why ('' before the choice)."""
    if not group.chosen_block:
        return ""
    return f"**Chosen for refinement: `{group.chosen_block}`**" + (f" — {group.reason}" if group.reason else "")


def variant_rows(group: AblationGroup) -> list[Row]:
    return [{"block": b.block, "variant": b.description, "contribution": b.delta, "±": b.error,
             "score without the block": b.score, "score with it": b.baseline, "runs": b.repeats,
             "script": b.script_id, "chosen": b.chosen} for b in group.bars]
