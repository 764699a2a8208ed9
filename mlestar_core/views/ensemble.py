"""Ensemble (app_pages/ensemble.py): each round against the solutions it combines, and the final choice."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .common import STEP_KEY_RE, Row, StepState, final_summary


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
              if (m := STEP_KEY_RE.match(s.key)) and m["what"] == "checks" and s.status == "done"
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


# -- what the page says ----------------------------------------------------------------------------


def empty_reason(config: dict[str, Any], view: EnsembleView) -> str:
    """Why there is no ensemble round (yet)."""
    planned = int(config.get("ensemble_rounds") or 0)
    if planned == 0:
        return "This run has R = 0 ensemble rounds."
    if int(config.get("num_solutions") or 1) < 2:
        return "This run has a single solution track (L = 1): there is nothing to ensemble."
    if view.final is not None:
        return "The run ended without an ensemble (fewer than two distinct solutions, or the time budget ran out)."
    return (f"No ensemble yet — it runs after every track is refined ({planned} round"
            f"{'s' if planned != 1 else ''} planned).")


def _known(x: Any) -> bool:
    return x == x and bool(x)  # a DataFrame cell: NaN and None are missing


def round_head(r: Row) -> str:
    """A round's title: its method, weights and script when the engine scored it, else its script."""
    if r["method"]:  # scored by the engine on the stored out-of-fold predictions
        written = f" · written as script #{int(r['script_id'])}" if _known(r["script_id"]) else ""
        weights = f" · weights {r['weights']}" if r["weights"] else ""
        return f"**Round {r['round']}** · {r['method']}{weights}{written}"
    return f"**Round {r['round']}** · script #{r['script_id']}"


def round_score(r: Row) -> float | None:
    return None if r["score"] != r["score"] else r["score"]


def final_text(final: Row) -> str:
    """The final choice in words: a single solution or an ensemble, and why."""
    kind = "an ensemble" if str(final.get("final_label", "")).startswith("ensemble") else "a single solution"
    return (f"**{final.get('final_label')}** (script #{final.get('final_script_id')}, {kind}) — the best "
            "validation score of the refined solutions and the ensembles.")
