"""Retrieved models (app_pages/models.py): each model card with its initial candidate's score and web
sources, and each track's merges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from .common import (
    STEP_KEY_RE,
    Grounding,
    Row,
    StepState,
    fmt_score,
    md_escape,
    parse_grounding,
    parse_sources,
    source_links,
)

if TYPE_CHECKING:
    from ..store import Store


# -- retrieved models and merges -------------------------------------------------------------------


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
        m = STEP_KEY_RE.match(s.key)
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


# -- search grounding of the retrieval answer ------------------------------------------------------


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


def card_sources_text(card: ModelCardView, grounding: Grounding | None) -> str:
    """The card's line about its web sources (markdown), or '' when there is nothing to say."""
    state, n = card_sources_state(card, grounding), len(card.sources)
    if state == "own":
        return f"**Grounded on** ({n} web source{'s' if n != 1 else ''}): {source_links(card.sources)}"
    if state == "none":
        return "**Grounded on:** no source in the grounded answer supports this card."
    if state == "whole answer":
        return (f"**Sources of the whole answer** ({n}; this run was recorded before sources were matched to "
                f"cards, so they may not be about this card): {source_links(card.sources)}")
    return ""


def grounding_caption(g: Grounding) -> str:
    """Under the search queries when Google's search suggestions cannot be shown."""
    if g.recorded:
        return "Google sent no search suggestions with this answer."
    return "This run was recorded before the search queries and Google's search suggestions were kept."


def search_text(g: Grounding) -> str:
    return "**Grounded with Google Search**" + (
        f" · searched for: {' · '.join(md_escape(q) for q in g.queries)}" if g.queries else "")


# -- what each card shows --------------------------------------------------------------------------


def best_initial(cards: Sequence[ModelCardView], higher_is_better: bool) -> float | None:
    """The best initial candidate's score (the card that has it says so)."""
    scored = [c.score for c in cards if c.score is not None]
    return (max(scored) if higher_is_better else min(scored)) if scored else None


def card_metric(card: ModelCardView, metric_title: str, best: float | None) -> tuple[str, str, str | None]:
    """(label, value, delta) of the card's metric: its initial candidate's score, or its state."""
    scored = card.state == "scored"
    return (f"initial {metric_title}" if scored else "initial candidate",
            fmt_score(card.score) if scored else card.state,
            "best of the candidates" if card.score is not None and card.score == best else None)


def card_caption(card: ModelCardView) -> str:
    return f"family: {card.family or '—'} · source: {card.source or '—'}"


def candidate_caption(card: ModelCardView) -> str:
    if card.script_id is None:
        return ""
    return f"Initial candidate: script #{card.script_id}" + (
        " (failed even after the debugger)" if card.state == "failed" else "")


def merge_result_text(m: MergeView) -> str:
    return (f"**Track {m.track + 1}** → " + (f"**{m.result_label}** · {fmt_score(m.result_score)} "
                                             f"(script #{m.result_script_id})" if m.result_label else "merging…"))
