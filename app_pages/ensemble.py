"""Ensemble: each round's strategy and score against the single solutions it combines, and the final
choice (validation and locked hold-out scores)."""

from __future__ import annotations

import streamlit as st

from mlestar_core.views import ensemble as view
from mlestar_core.views.common import PHASE_BY_KEY, fmt_score, holdout_check, steps_from_rows
from studio import nav
from studio.auth import require_viewer
from studio.charts import ensemble_chart
from studio.resources import get_store
from studio.runpages import empty_state, live, page_header
from studio.widgets import holdout_message

require_viewer()  # first, even if this file runs on its own (see studio/auth.py)
info = page_header("Ensemble")
store = get_store()
st.caption(PHASE_BY_KEY["ensemble"].explanation)


def body() -> None:
    events = store.events_after(info.id)
    ensemble = view.ensemble_view(store.table("ensemble_rounds", info.id), steps_from_rows(store.steps(info.id)),
                                  store.table("attempts", info.id), events, store.table("scripts", info.id),
                                  store.table("executions", info.id))
    if ensemble.rounds.empty:
        empty_state(view.empty_reason(info.config, ensemble), link=nav.ATTEMPTS,
                    link_label="See the refinement attempts")
    else:
        st.subheader("Ensembles vs the single solutions they combine")
        st.plotly_chart(ensemble_chart(ensemble, info), key="ensemble.chart")
        st.caption("Light bars: the single solutions given to the ensemble; dark bars: ensemble rounds; "
                   f"the final choice is highlighted ({info.direction}).")
        for _, r in ensemble.rounds.iterrows():
            with st.container(border=True):
                a, b = st.columns([4, 1], vertical_alignment="top")
                a.markdown(view.round_head(r))
                if r["method"]:
                    a.caption("Scored by the engine on the members' stored out-of-fold predictions (weights and "
                              "stackers fitted on the other folds): no script had to run.")
                a.markdown(str(r["strategy"]))
                b.metric(info.metric_title, fmt_score(view.round_score(r)))
        if not ensemble.members.empty:
            st.markdown("**Single solutions given to the ensemble**")
            st.dataframe(ensemble.members, hide_index=True, width="stretch",
                         column_config={"score": st.column_config.NumberColumn(format="%.5g")})

    st.subheader("Final choice")
    final = ensemble.final
    if final is None:
        st.caption("Chosen when the run ends: the best script by validation score, then scored on the locked hold-out.")
        return
    check = holdout_check(final.get("validation_score"), final.get("holdout_score"), info.higher_is_better)
    st.markdown(view.final_text(final))
    c2, c3, c4 = st.columns(3)
    c2.metric("Validation", fmt_score(final.get("validation_score")))
    c3.metric("Locked hold-out", fmt_score(final.get("holdout_score")))
    c4.metric("Trivial baseline", fmt_score(final.get("baseline_score")))
    holdout_message(check)
    if final.get("budget_exhausted"):
        st.caption("The time budget ran out: the run wrapped up with the best solution so far.")


live(body, info.id, key="ensemble.live")
