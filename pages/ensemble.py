"""Ensemble: each round's strategy and score against the single solutions it combines, and the final
choice (validation and locked hold-out scores)."""

from __future__ import annotations

import streamlit as st

from mlestar_core import views
from studio import nav
from studio.auth import require_viewer
from studio.charts import ensemble_chart
from studio.resources import get_store
from studio.runpages import empty_state, live, page_header
from studio.widgets import fmt_score

require_viewer()  # first: the page may run without app.py (see studio/auth.py)
info = page_header("Ensemble")
store = get_store()
st.caption(views.PHASE_BY_KEY["ensemble"].explanation)


def body() -> None:
    events = store.events_after(info.id)
    view = views.ensemble_view(store.table("ensemble_rounds", info.id), views.steps_from_rows(store.steps(info.id)),
                               store.table("attempts", info.id), events, store.table("scripts", info.id),
                               store.table("executions", info.id))
    rounds_planned = int(info.config.get("ensemble_rounds") or 0)
    if view.rounds.empty:
        if rounds_planned == 0:
            why = "This run has R = 0 ensemble rounds."
        elif int(info.config.get("num_solutions") or 1) < 2:
            why = "This run has a single solution track (L = 1): there is nothing to ensemble."
        elif view.final is not None:
            why = "The run ended without an ensemble (fewer than two distinct solutions, or the time budget ran out)."
        else:
            why = (f"No ensemble yet — it runs after every track is refined ({rounds_planned} round"
                   f"{'s' if rounds_planned != 1 else ''} planned).")
        empty_state(why, link=nav.ATTEMPTS, link_label="See the refinement attempts")
    else:
        st.subheader("Ensembles vs the single solutions they combine")
        st.plotly_chart(ensemble_chart(view, info), key="ensemble.chart")
        st.caption("Light bars: the single solutions given to the ensemble; dark bars: ensemble rounds; "
                   f"the final choice is highlighted ({info.direction}).")
        for _, r in view.rounds.iterrows():
            with st.container(border=True):
                a, b = st.columns([4, 1], vertical_alignment="top")
                if r["method"]:  # scored by the engine on the stored out-of-fold predictions
                    written = f" · written as script #{int(r['script_id'])}" if r["script_id"] == r["script_id"] \
                        and r["script_id"] else ""
                    a.markdown(f"**Round {r['round']}** · {r['method']}"
                               + (f" · weights {r['weights']}" if r["weights"] else "") + written)
                    a.caption("Scored by the engine on the members' stored out-of-fold predictions (weights and "
                              "stackers fitted on the other folds): no script had to run.")
                else:
                    a.markdown(f"**Round {r['round']}** · script #{r['script_id']}")
                a.markdown(str(r["strategy"]))
                b.metric(info.metric_title, fmt_score(None if r["score"] != r["score"] else r["score"]))
        if not view.members.empty:
            st.markdown("**Single solutions given to the ensemble**")
            st.dataframe(view.members, hide_index=True, width="stretch",
                         column_config={"score": st.column_config.NumberColumn(format="%.5g")})

    st.subheader("Final choice")
    final = view.final
    if final is None:
        st.caption("Chosen when the run ends: the best script by validation score, then scored on the locked hold-out.")
        return
    check = views.holdout_check(final.get("validation_score"), final.get("holdout_score"), info.higher_is_better)
    kind = "an ensemble" if str(final.get("final_label", "")).startswith("ensemble") else "a single solution"
    st.markdown(f"**{final.get('final_label')}** (script #{final.get('final_script_id')}, {kind}) — the best "
                "validation score of the refined solutions and the ensembles.")
    c2, c3, c4 = st.columns(3)
    c2.metric("Validation", fmt_score(final.get("validation_score")))
    c3.metric("Locked hold-out", fmt_score(final.get("holdout_score")))
    c4.metric("Trivial baseline", fmt_score(final.get("baseline_score")))
    if check.drift:
        st.warning(check.message, icon=":material/warning:")
    else:
        st.caption(check.message)
    if final.get("budget_exhausted"):
        st.caption("The time budget ran out: the run wrapped up with the best solution so far.")


live(body, info.id, key="ensemble.live")
