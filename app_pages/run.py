"""Run dashboard: where the run is (phase timeline), how far the time budget went, the best score over
time, validation vs locked hold-out, what the brain cost (tokens and dollars per role), the live event
log, pause/resume/stop, a run the brain paused (why, and resume it) and pinned constraints."""

from __future__ import annotations

import streamlit as st

from mlestar_core import budget_clock
from mlestar_core.competition import load_grade
from mlestar_core.views import run as view
from mlestar_core.views.common import (
    brain_model,
    brain_usage,
    event_log,
    fmt_score,
    phase_timeline,
    score_series,
    script_counts,
    steps_from_rows,
)
from studio.auth import require_viewer
from studio.charts import best_score_chart
from studio.dashboard import brain_usage_section, competition_section, progress_bar, waiting_plan
from studio.resources import get_services
from studio.runpages import RunKeys as K
from studio.runpages import live, page_header, timeline
from studio.steering import paused_banner, pinned_constraints, run_controls
from studio.widgets import flash, holdout_message

require_viewer()  # first, even if this file runs on its own (see studio/auth.py)
info = page_header("Run dashboard")
services = get_services()
store = services.store
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

    steps = store.steps(RUN_ID)
    phases = phase_timeline(steps_from_rows(steps), info.config, run["status"])
    # The budget clock: agent time, stopped while the run waits for a human (not counted against the budget).
    decisions = store.table("decisions", RUN_ID)
    progress = view.run_progress(budget_clock.clock_state(run, decisions, events), phases)
    if pending := [d for d in decisions if d["status"] == "pending"]:
        waiting_plan(pending[0], progress, RUN_ID)

    timeline(phases)
    progress_bar(progress)
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

    # An MLE-bench task: the final submission graded on the competition's private answers (competition.json).
    if (comp := view.competition_view(load_grade(store.run_dir(RUN_ID)))) is not None:
        competition_section(comp, info)

    usage = brain_usage(store.brain_usage(RUN_ID), info.cost_cap)
    if view.shows_brain_usage(info.brain, usage):
        brain_usage_section(run, usage, info, services)

    st.subheader("Event log")
    noisy = st.toggle("Show script runs and brain calls", key=K.NOISY)
    st.dataframe(event_log(events, 60, include_noisy=noisy), hide_index=True, width="stretch",
                 column_config={"what": st.column_config.TextColumn(width="large")})


live(dashboard, RUN_ID, key="run.live")
pinned_constraints(info, services)  # outside the fragment, so typing is never interrupted by a poll
