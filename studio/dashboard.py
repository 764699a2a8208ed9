"""Sections of the Run dashboard (app_pages/run.py) drawn from what `mlestar_core.views.run` makes of the store:
the progress bar with the budget clock, the plan waiting for a decision, the brain's usage and spend."""

from __future__ import annotations

from typing import Any

import streamlit as st

from mlestar_core.views import run as view
from mlestar_core.views.common import BrainUsage, RunInfo, fmt_score, fmt_tokens, fmt_usd, md_escape

from . import nav
from .charts import brain_usage_chart, leaderboard_chart
from .resources import Services


def progress_bar(progress: view.Progress) -> None:
    """Agent time against the budget (or the steps done), and what the budget clock is doing: stopped while the
    run waits for a human, which is not counted against the budget."""
    st.progress(progress.fraction, text=md_escape(progress.text))
    if progress.clock_text:
        st.info(md_escape(progress.clock_text), icon=":material/timer_pause:")


def waiting_plan(decision: dict[str, Any], progress: view.Progress, run_id: str) -> None:
    """The plan waiting for a decision: what it is, when it will be approved by itself (if it will), and a link
    to the Refinement page where it is decided."""
    with st.container(border=True):
        st.warning(view.approval_text(decision), icon=":material/pending_actions:")
        st.markdown(decision["plan"] or "")
        if progress.auto_text:
            st.caption(md_escape(progress.auto_text))
        st.page_link(nav.ATTEMPTS.path, label="Review it on the Refinement page: approve, edit or reject",
                     icon=nav.ATTEMPTS.icon, query_params={"run": run_id})


def brain_usage_section(run: dict[str, Any], usage: BrainUsage, info: RunInfo, services: Services) -> None:
    """Brain calls, failures, tokens and the estimated cost so far, per role, against the cost cap."""
    store, manager, run_id = services.store, services.manager, info.id
    st.subheader("Brain usage")
    if usage.degraded_text:
        st.warning(md_escape(usage.degraded_text), icon=":material/warning:")
    b1, b2, b3, b4 = st.columns(4)
    b1.metric("Brain calls", usage.calls, help="Every call the roles made, failed ones included.")
    b2.metric("Failed calls", usage.failed, help="No answer (service errors, timeouts) or an unusable answer; "
              "failed calls are retried.")
    b3.metric("Tokens in → out", f"{fmt_tokens(usage.tokens_in)} → {fmt_tokens(usage.tokens_out)}")
    b4.metric("Estimated cost", fmt_usd(usage.cost),
              help="From the price per 1M tokens of each model (the run's settings or the built-in table). "
                   "An estimate, not an invoice.")
    reserved = view.reserved_in_flight(run, manager.reserved_usd(run_id) if manager is not None else None)
    spend = view.spend_view(info.brain, info.config, store.brain_spent(run_id), reserved)
    if spend.fraction is not None:
        st.progress(spend.fraction, text=md_escape(spend.text))
    else:
        st.caption(md_escape(spend.text + "."))
    if spend.basis_text:
        st.caption(md_escape(spend.basis_text))
    if usage.calls == 0:
        st.caption("No brain call yet.")
        return
    t, c = st.columns([3, 2], gap="medium")
    t.dataframe(usage.table, hide_index=True, width="stretch",
                column_config={"cost (USD)": st.column_config.NumberColumn(format="$%.4f"),
                               "latency (s)": st.column_config.NumberColumn(format="%.1f")})
    with c:
        st.plotly_chart(brain_usage_chart(usage), key="run.brain_chart")
    st.page_link(nav.BRAIN_CALLS.path, label="Every call with its prompt and answer", icon=nav.BRAIN_CALLS.icon,
                 query_params={"run": run_id})


def competition_section(comp: view.CompetitionView, info: RunInfo) -> None:
    """An MLE-bench task's grade: the final submission's score on the competition's private answers, the medal
    it would win, the thresholds it is held to and where it lands on the leaderboard."""
    st.subheader(comp.title)
    st.badge(comp.badge, color=comp.badge_color, icon=":material/military_tech:")  # type: ignore[arg-type]
    if comp.rank_text:
        st.markdown(comp.rank_text)
    cols = st.columns(1 + len(comp.thresholds))
    cols[0].metric(f"Score ({info.metric_title})", fmt_score(comp.score), help=comp.score_help)
    for col, (name, value, ok) in zip(cols[1:], comp.thresholds, strict=False):
        cmp = (">" if info.higher_is_better else "<") if name == "median" else comp.compare
        col.metric(f"{name.capitalize()} {cmp}", fmt_score(value), delta="reached" if ok else "not reached",
                   delta_color="normal" if ok else "off", delta_arrow="off")
    if comp.leaderboard:
        st.plotly_chart(leaderboard_chart(comp, info), key="run.leaderboard_chart")
    for note in comp.notes:
        st.caption(md_escape(note))
