"""Brain calls (app_pages/brain_calls.py): every call of the run as a list item, and the filters' summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .common import (
    Grounding,
    Row,
    brain_usage,
    describe_step,
    fmt_time,
    fmt_tokens,
    fmt_usd,
    md_escape,
    parse_sources,
    usage_parts,
)


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
                 *usage_parts(self.tokens_in, self.tokens_out, self.latency, self.cost)]
        if self.fallback:  # no model answer was used: the role's degraded substitute, named as such
            return f"⚠ #{self.n} · {self.role} · " + (f"{self.step} · " if self.step else "") + \
                "FALLBACK: no usable model answer"
        return ("⚠ " if self.failed else "") + " · ".join(parts)


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


# -- what the page says ----------------------------------------------------------------------------


def no_calls_text(active: bool) -> str:
    if active:
        return ("No brain calls yet — the first one, the model retrieval, comes right after the trivial baseline. "
                "Calls show up here as the run goes.")
    return ("This run has no brain calls recorded. Every run records its calls, the offline brain's too; this one "
            "ended before the brain was asked anything.")


def total_calls(usage_rows: Sequence[Row]) -> int:
    return sum(int(u["calls"] or 0) for u in usage_rows)


def new_calls_text(new: int) -> str:
    return f"{new} new call{'s' if new != 1 else ''} since the list below was drawn."


def call_caption(call: BrainCallView, created: float | None) -> str:
    """Under an opened call: its step, model, number in the run and time."""
    return md_escape(f"{call.step_text} · model {call.model or '—'} · call {call.n} of the run · {fmt_time(created)}")


def shown_text(shown: int, matching: int, filtered: bool) -> str:
    return (f"Showing the newest {shown} of {matching} call{'s' if matching != 1 else ''}"
            + (" matching the filters." if filtered else "."))


def searched_text(grounding: Grounding) -> str:
    return "**Searched Google for:** " + " · ".join(md_escape(q) for q in grounding.queries)
