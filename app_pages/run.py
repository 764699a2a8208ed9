"""Run dashboard: where the run is (phase timeline), how far the time budget went, the best score over
time, validation vs locked hold-out, what the brain cost (tokens and dollars per role), the live event
log, pause/resume/stop, a run the brain paused (why, and resume it) and pinned constraints."""

from __future__ import annotations

import streamlit as st

from mlestar_core.views import run as view
from mlestar_core.views.common import (
    BrainUsage,
    brain_model,
    brain_usage,
    event_log,
    fmt_score,
    fmt_tokens,
    fmt_usd,
    md_escape,
    phase_timeline,
    score_series,
    script_counts,
    steps_from_rows,
)
from studio import nav
from studio.auth import require_viewer
from studio.charts import best_score_chart, brain_usage_chart
from studio.resources import get_services
from studio.runpages import RunKeys as K
from studio.runpages import live, page_header, timeline
from studio.steering import paused_banner, pinned_constraints, run_controls
from studio.widgets import flash, holdout_message

require_viewer()  # first, even if this file runs on its own (see studio/auth.py)
info = page_header("Run dashboard")
services = get_services()
store, manager = services.store, services.manager
RUN_ID = info.id
flash(K.FLASH)

# A run the brain paused: why, and a way on. Outside the live fragment, so typing a key is never interrupted
# by a poll; the fragment reruns the page when the pause reason changes.
LOADED_PAUSE = (store.get_run(RUN_ID) or {}).get("pause_reason")
if (reason := view.paused_reason(store.get_run(RUN_ID))) is not None:
    paused_banner(reason, info, services)


def dashboard() -> None:
    run = store.get_run(RUN_ID)
    if run is None:
        st.warning("This run was deleted.")
        return
    if run.get("pause_reason") != LOADED_PAUSE:
        st.rerun()  # the brain paused the run (or it went on): redraw the banner above
    events = store.events_after(RUN_ID)
    run_controls(run, services)
    if run["error"]:
        st.error(f"The run failed: {run['error']}", icon=":material/error:")

    pending = store.pending_decisions(RUN_ID)
    if pending:
        with st.container(border=True):
            st.warning(view.approval_text(pending[0]), icon=":material/pending_actions:")
            st.markdown(pending[0]["plan"] or "")
            st.page_link(nav.ATTEMPTS.path, label="Review it on the Refinement page: approve, edit or reject",
                         icon=nav.ATTEMPTS.icon, query_params={"run": RUN_ID})

    steps = store.steps(RUN_ID)
    phases = phase_timeline(steps_from_rows(steps), info.config, run["status"])
    timeline(phases)
    progress = view.run_progress(run, events, phases)
    st.progress(progress.fraction, text=progress.text)
    if caption := view.time_caption(steps):
        st.caption(caption)

    counts = script_counts(events)
    m1, m2, m3, m4, m5 = st.columns(5)
    m1.metric(f"Best {info.metric_title}", fmt_score(run["best_score"]), help=info.direction)
    m2.metric("Trivial baseline", fmt_score(run["baseline_score"]), help="Class prior or mean, same folds.")
    m3.metric("Scripts run", counts.run)
    m4.metric("Scripts failed", counts.failed, help=view.failed_help(counts))
    m5.metric("Brain", info.brain or "offline", delta=brain_model(info.brain, info.config) or None,
              delta_color="off", delta_arrow="off", help=f"In use: {info.brain_label}")

    series = score_series(events, info.higher_is_better)
    st.subheader("Best score so far")
    if series.empty:
        st.caption("No solution scored yet: the first scores arrive with the initial candidates.")
    else:
        st.plotly_chart(best_score_chart(series, info), key="run.best_chart")

    st.subheader("Validation vs locked hold-out")
    hp = view.holdout_panel(run, events, info.higher_is_better)
    h1, h2, h3 = st.columns([1, 1, 2])
    h1.metric(hp.validation_label, fmt_score(hp.validation))
    h2.metric("Locked hold-out score", fmt_score(hp.holdout), delta=hp.delta,
              delta_color="normal" if info.higher_is_better else "inverse",
              help="Rows no choice was ever made on: the honest estimate.")
    if hp.final_text:
        h3.markdown(hp.final_text)
    else:
        h3.caption("The final solution is chosen when the run ends.")
    holdout_message(hp.check)

    usage = brain_usage(store.brain_usage(RUN_ID), info.cost_cap)
    if view.shows_brain_usage(info.brain, usage):
        brain_usage_section(run, usage)

    st.subheader("Event log")
    noisy = st.toggle("Show script runs and brain calls", key=K.NOISY)
    st.dataframe(event_log(events, 60, include_noisy=noisy), hide_index=True, width="stretch",
                 column_config={"what": st.column_config.TextColumn(width="large")})


def brain_usage_section(run: dict, usage: BrainUsage) -> None:
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
    reserved = view.reserved_in_flight(run, manager.reserved_usd(RUN_ID) if manager is not None else None)
    spend = view.spend_view(info.brain, info.config, store.brain_spent(RUN_ID), reserved)
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
                 query_params={"run": RUN_ID})


live(dashboard, RUN_ID, key="run.live")
pinned_constraints(info, services)  # outside the fragment, so typing is never interrupted by a poll
