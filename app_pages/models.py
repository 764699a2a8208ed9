"""Retrieved models: one card per model the brain retrieved, with its initial candidate's score and the
web sources that support it when the brain searched (with Google's search suggestions for that grounded
answer), and what each solution track's merge made of them."""

from __future__ import annotations

import streamlit as st

from mlestar_core.views import models as view
from mlestar_core.views.common import (
    LLM_BRAINS,
    PHASE_BY_KEY,
    SUGGESTIONS_HEIGHT,
    Grounding,
    steps_from_rows,
    suggestions_document,
)
from studio import nav
from studio.auth import require_viewer
from studio.resources import get_store
from studio.runpages import empty_state, live, page_header

require_viewer()  # first, even if this file runs on its own (see studio/auth.py)
info = page_header("Retrieved models")
store = get_store()
st.caption(PHASE_BY_KEY["retrieve"].explanation)


def search_section(g: Grounding | None) -> None:
    """What Google Search gave the retrieval answer the cards below come from: its queries and Google's search
    suggestions, shown as delivered (Google's terms ask for them wherever the grounded answer is shown)."""
    if g is None:
        if info.brain in LLM_BRAINS:
            st.caption("The retrieval answer was not grounded with Google Search, so there are no search "
                       "suggestions; each card says where it came from.")
        return
    with st.container(border=True):
        st.markdown(view.search_text(g))
        if g.entry_point:
            st.iframe(suggestions_document(g.entry_point), height=SUGGESTIONS_HEIGHT,
                      alt="Google Search suggestions for the retrieval answer")
        else:
            st.caption(view.grounding_caption(g))


def body() -> None:
    events = store.events_after(info.id)
    cards = view.model_cards(store.table("model_cards", info.id), events, store.table("scripts", info.id))
    if not cards:
        empty_state("No models retrieved yet — retrieval starts right after the trivial baseline is scored.",
                    link=nav.RUN, link_label="Back to the run dashboard")
        return
    best = view.best_initial(cards, info.higher_is_better)
    grounding = view.retrieval_grounding(store, info.id)
    search_section(grounding)
    for row in range(0, len(cards), 2):
        for col, card in zip(st.columns(2), cards[row:row + 2], strict=False):
            with col, st.container(border=True):
                st.markdown(f"#### {card.rank + 1}. {card.name}")
                st.caption(view.card_caption(card))
                label, value, delta = view.card_metric(card, info.metric_title, best)
                st.metric(label, value, delta=delta, delta_color="off")
                st.markdown(f"**Why it suits this task.** {card.why}")
                if sources := view.card_sources_text(card, grounding):
                    st.markdown(sources)
                if card.example_code:
                    st.code(card.example_code, language="python")
                if caption := view.candidate_caption(card):
                    st.caption(caption)

    st.subheader("Merged result per track")
    st.caption(PHASE_BY_KEY["merge"].explanation)
    merges = view.merges(events, steps_from_rows(store.steps(info.id)))
    if not merges:
        st.caption("The merge starts once every initial candidate has been scored.")
    for m in merges:
        with st.container(border=True):
            st.markdown(view.merge_result_text(m))
            if not m.tries.empty:
                st.dataframe(m.tries, hide_index=True, width="stretch",
                             column_config={"base": "starting script", "reference": "merged in",
                                            "score": st.column_config.NumberColumn("merged score", format="%.5g"),
                                            "base_score": st.column_config.NumberColumn("before", format="%.5g"),
                                            "kept": st.column_config.CheckboxColumn("kept")})
            elif m.result_label:
                st.caption("Nothing merged in: there was no other candidate, or the first merge did not help.")


live(body, info.id, key="models.live")
