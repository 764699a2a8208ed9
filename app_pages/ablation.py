"""Ablation: per track and outer step, how much each code block contributes to the score (each block
switched to a simpler version), with error bars over the paired per-fold deltas and the block chosen for refinement."""

from __future__ import annotations

import streamlit as st

from mlestar_core.views import ablation as view
from mlestar_core.views.common import PHASE_BY_KEY
from studio import nav
from studio.auth import require_viewer
from studio.charts import ablation_chart
from studio.resources import get_store
from studio.runpages import empty_state, live, page_header

require_viewer()  # first, even if this file runs on its own (see studio/auth.py)
info = page_header("Ablation")
store = get_store()
st.caption(PHASE_BY_KEY["refine"].explanation)


def body() -> None:
    groups = view.ablation_groups(store.table("ablations", info.id), store.events_after(info.id))
    if not groups:
        empty_state("No ablation yet — it starts after the merge and the data-usage and leakage checks, once per "
                    "outer step of each track.", link=nav.RUN, link_label="Back to the run dashboard")
        return
    for g in reversed(groups):  # the newest study first: that is the one filling in
        with st.container(border=True):
            st.subheader(g.title)
            st.plotly_chart(ablation_chart(g, info), key=f"ablation.chart.{g.track}.{g.outer}")
            st.caption(view.chart_caption(g, info.direction))
            if g.chosen_block:
                st.markdown(view.chosen_text(g))
            elif g.summary is None:
                st.caption("The study is running: bars appear as the variants finish.")
            if g.summary:
                st.info(g.summary, icon=":material/summarize:")
            with st.expander("Variants"):
                st.dataframe(view.variant_rows(g), hide_index=True, width="stretch",
                             column_config={k: st.column_config.NumberColumn(format="%.4g")
                                            for k in ("contribution", "±", "score without the block", "score with it")})


live(body, info.id, key="ablation.live")
