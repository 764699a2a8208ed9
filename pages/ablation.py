"""Ablation: per track and outer step, how much each code block contributes to the score (each block
switched to a simpler version), with error bars over the paired per-fold deltas and the block chosen for refinement."""

from __future__ import annotations

import streamlit as st

from mlestar_core import views
from studio import nav
from studio.auth import require_viewer
from studio.charts import ablation_chart
from studio.resources import get_store
from studio.runpages import empty_state, live, page_header

require_viewer()  # first: the page may run without app.py (see studio/auth.py)
info = page_header("Ablation")
store = get_store()
st.caption(views.PHASE_BY_KEY["refine"].explanation)


def body() -> None:
    groups = views.ablation_groups(store.table("ablations", info.id), store.events_after(info.id))
    if not groups:
        empty_state("No ablation yet — it starts after the merge and the data-usage and leakage checks, once per "
                    "outer step of each track.", link=nav.RUN, link_label="Back to the run dashboard")
        return
    for g in reversed(groups):  # the newest study first: that is the one filling in
        with st.container(border=True):
            st.subheader(g.title)
            st.plotly_chart(ablation_chart(g, info), key=f"ablation.chart.{g.track}.{g.outer}")
            notes = []
            if not g.has_error_bars:
                notes.append("no error bars: an older run without per-fold scores")
            else:
                n = max(b.repeats for b in g.bars)
                notes.append("error bars: spread of the paired per-fold contributions (block on and off scored "
                             "on the same folds)" + (f", over {n} runs with different model seeds" if n > 1 else ""))
            st.caption("Contribution = how much worse the score gets when the block is switched to its simpler "
                       f"version ({info.direction}); " + "; ".join(notes) + ".")
            if g.chosen_block:
                st.markdown(f"**Chosen for refinement: `{g.chosen_block}`**"
                            + (f" — {g.reason}" if g.reason else ""))
            elif g.summary is None:
                st.caption("The study is running: bars appear as the variants finish.")
            if g.summary:
                st.info(g.summary, icon=":material/summarize:")
            with st.expander("Variants"):
                st.dataframe(
                    [{"block": b.block, "variant": b.description, "contribution": b.delta, "±": b.error,
                      "score without the block": b.score, "score with it": b.baseline, "runs": b.repeats,
                      "script": b.script_id, "chosen": b.chosen} for b in g.bars],
                    hide_index=True, width="stretch",
                    column_config={k: st.column_config.NumberColumn(format="%.4g")
                                   for k in ("contribution", "±", "score without the block", "score with it")})


live(body, info.id, key="ablation.live")
