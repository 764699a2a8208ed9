"""Retrieved models: one card per model the brain retrieved, with its initial candidate's score and the
web sources that support it when the brain searched (with Google's search suggestions for that grounded
answer), and what each solution track's merge made of them."""

from __future__ import annotations

import streamlit as st

from mlestar_core import views
from studio import nav
from studio.auth import require_viewer
from studio.resources import get_store
from studio.runpages import empty_state, live, page_header
from studio.widgets import fmt_score

require_viewer()  # first: the page may run without app.py (see studio/auth.py)
info = page_header("Retrieved models")
store = get_store()
st.caption(views.PHASE_BY_KEY["retrieve"].explanation)


def search_section(g: views.Grounding | None) -> None:
    """What Google Search gave the retrieval answer the cards below come from: its queries and Google's search
    suggestions, shown as delivered (Google's terms ask for them wherever the grounded answer is shown)."""
    if g is None:
        if info.brain in views.LLM_BRAINS:
            st.caption("The retrieval answer was not grounded with Google Search, so there are no search "
                       "suggestions; each card says where it came from.")
        return
    with st.container(border=True):
        st.markdown("**Grounded with Google Search**"
                    + (f" · searched for: {' · '.join(views.md_escape(q) for q in g.queries)}" if g.queries else ""))
        if g.entry_point:
            st.iframe(views.suggestions_document(g.entry_point), height=views.SUGGESTIONS_HEIGHT,
                      alt="Google Search suggestions for the retrieval answer")
        elif g.recorded:
            st.caption("Google sent no search suggestions with this answer.")
        else:
            st.caption("This run was recorded before the search queries and Google's search suggestions were kept.")


def card_sources(card: views.ModelCardView, g: views.Grounding | None) -> None:
    """The web sources that support this card, or why there are none."""
    state = views.card_sources_state(card, g)
    n = len(card.sources)
    if state == "own":
        st.markdown(f"**Grounded on** ({n} web source{'s' if n != 1 else ''}): {views.source_links(card.sources)}")
    elif state == "none":
        st.markdown("**Grounded on:** no source in the grounded answer supports this card.")
    elif state == "whole answer":
        st.markdown(f"**Sources of the whole answer** ({n}; this run was recorded before sources were matched to "
                    f"cards, so they may not be about this card): {views.source_links(card.sources)}")


def body() -> None:
    events = store.events_after(info.id)
    cards = views.model_cards(store.table("model_cards", info.id), events, store.table("scripts", info.id))
    if not cards:
        empty_state("No models retrieved yet — retrieval starts right after the trivial baseline is scored.",
                    link=nav.RUN, link_label="Back to the run dashboard")
        return
    scored = [c.score for c in cards if c.score is not None]
    best = (max(scored) if info.higher_is_better else min(scored)) if scored else None
    grounding = views.retrieval_grounding(store, info.id)
    search_section(grounding)
    for row in range(0, len(cards), 2):
        for col, card in zip(st.columns(2), cards[row:row + 2], strict=False):
            with col, st.container(border=True):
                st.markdown(f"#### {card.rank + 1}. {card.name}")
                st.caption(f"family: {card.family or '—'} · source: {card.source or '—'}")
                label = f"initial {info.metric_title}" if card.state == "scored" else "initial candidate"
                value = fmt_score(card.score) if card.state == "scored" else card.state
                st.metric(label, value, delta="best of the candidates" if card.score is not None and card.score == best
                          else None, delta_color="off")
                st.markdown(f"**Why it suits this task.** {card.why}")
                card_sources(card, grounding)
                if card.example_code:
                    st.code(card.example_code, language="python")
                if card.script_id is not None:
                    st.caption(f"Initial candidate: script #{card.script_id}"
                               + (" (failed even after the debugger)" if card.state == "failed" else ""))

    st.subheader("Merged result per track")
    st.caption(views.PHASE_BY_KEY["merge"].explanation)
    merges = views.merges(events, views.steps_from_rows(store.steps(info.id)))
    if not merges:
        st.caption("The merge starts once every initial candidate has been scored.")
    for m in merges:
        with st.container(border=True):
            result = f"**{m.result_label}** · {fmt_score(m.result_score)} (script #{m.result_script_id})" \
                if m.result_label else "merging…"
            st.markdown(f"**Track {m.track + 1}** → {result}")
            if not m.tries.empty:
                st.dataframe(m.tries, hide_index=True, width="stretch",
                             column_config={"base": "starting script", "reference": "merged in",
                                            "score": st.column_config.NumberColumn("merged score", format="%.5g"),
                                            "base_score": st.column_config.NumberColumn("before", format="%.5g"),
                                            "kept": st.column_config.CheckboxColumn("kept")})
            elif m.result_label:
                st.caption("Nothing merged in: there was no other candidate, or the first merge did not help.")


live(body, info.id, key="models.live")
