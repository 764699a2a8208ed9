"""Run dashboard: where the run is (phase timeline), how far the time budget went, the best score over
time, validation vs locked hold-out, what the brain cost (tokens and dollars per role), the live event
log, pause/resume/stop, a run the brain paused (why, and resume it) and pinned constraints."""

from __future__ import annotations

import streamlit as st

from mlestar_core import views
from studio import nav
from studio.auth import require_viewer
from studio.charts import best_score_chart, brain_usage_chart
from studio.resources import get_services
from studio.runpages import RunKeys as K
from studio.runpages import live, page_header, timeline
from studio.widgets import ACTIVE, fmt_score

require_viewer()  # first: the page may run without app.py (see studio/auth.py)
info = page_header("Run dashboard")
services = get_services()
store, manager = services.store, services.manager
RUN_ID = info.id

flash = st.session_state.pop(K.FLASH, None)
if flash:
    st.success(flash, icon=":material/check_circle:")

# -- a run the brain paused: why, and a way on (outside the live fragment, so typing a key is never
# interrupted by a poll; the fragment reruns the page when the pause reason changes) ------------------
LOADED_PAUSE = (store.get_run(RUN_ID) or {}).get("pause_reason")


def paused_banner() -> None:
    run = store.get_run(RUN_ID)
    reason = (run or {}).get("pause_reason")
    if run is None or run["status"] != "paused" or not reason:
        return
    with st.container(border=True):
        st.warning(f"**The run is paused: the brain could not go on.**\n\n{views.md_escape(reason)}\n\n"
                   "Everything done so far is kept; resuming redoes only the step that was in flight.",
                   icon=":material/pause_circle:")
        api_key = None
        if views.pause_needs_key(reason) and info.brain in ("gemini", "openai"):
            api_key = st.text_input("API key", key=K.API_KEY, type="password",
                                    help="Kept in this app's memory only: never stored, logged or put in the "
                                         "run's settings. Leave empty to use the environment or secrets.toml.")
            st.caption("The pause is about the API key: type a valid one (or fix the environment) and resume.")
        if st.button("Resume run", key=K.RESUME_PAUSED, type="primary", icon=":material/play_arrow:",
                     disabled=manager is None, help=services.error if manager is None else None):
            try:
                manager.unpause(RUN_ID, api_key=(api_key or "").strip() or None)  # type: ignore[union-attr]
            except Exception as exc:  # e.g. still no key: the run stays paused with the new reason
                st.error(f"The run could not resume: {exc}", icon=":material/error:")
            else:
                st.session_state[K.FLASH] = "Run resumed."
                st.rerun()


paused_banner()


def controls(run: dict) -> None:
    """Pause / Resume / Stop. Every action reruns the whole page so polling starts or stops with it."""
    alive = manager is not None and manager.is_alive(RUN_ID)
    status, control = run["status"], run["control"]
    paused = control == "pause"
    c1, c2, c3, c4 = st.columns([1, 1, 1, 3], vertical_alignment="center")
    # A run another process drives (a CLI run, a second app) is followed read-only: only its owner steers it.
    elsewhere = manager.driven_elsewhere(RUN_ID) if manager is not None and status != "finished" else None
    no_engine = None if manager is not None else (services.error or "The run engine is not available.")
    if elsewhere is not None:
        no_engine = f"Running in another process ({elsewhere}): this page follows it read-only."
    can_pause = manager is not None and not elsewhere and status in ACTIVE and not paused and control != "stop"
    if c1.button("Pause", key=K.PAUSE, icon=":material/pause:", width="stretch", disabled=not can_pause,
                 help=no_engine or "Pause after the step in flight; scripts that are running finish."):
        manager.pause(RUN_ID)  # type: ignore[union-attr]
        st.session_state[K.FLASH] = "Pause requested: the run pauses at the next step boundary."
        st.rerun()
    # Resume means "un-pause" for a paused run, and "continue from the last completed step" for a run
    # that stopped, failed or lost its thread (the app restarted).
    can_resume = manager is not None and not elsewhere and status != "finished" and (paused or not alive)
    if c2.button("Resume", key=K.RESUME, icon=":material/play_arrow:", width="stretch", disabled=not can_resume,
                 help=no_engine or "Continue the run from where it is."):
        try:
            if paused and alive:
                manager.unpause(RUN_ID)  # type: ignore[union-attr]
            else:
                manager.resume(RUN_ID)  # type: ignore[union-attr]
            st.session_state[K.FLASH] = "Run resumed."
        except Exception as exc:  # e.g. the brain cannot start: say so, keep the page
            st.session_state[K.FLASH] = None
            st.error(f"The run could not resume: {exc}")
        else:
            st.rerun()
    can_stop = manager is not None and not elsewhere and status in ACTIVE and control != "stop"
    if c3.button("Stop", key=K.STOP, icon=":material/stop:", width="stretch", disabled=not can_stop,
                 help=no_engine or "Cancel the scripts in flight and stop; you can resume later."):
        manager.stop(RUN_ID)  # type: ignore[union-attr]
        st.session_state[K.FLASH] = "Stop requested."
        st.rerun()
    if elsewhere is not None:
        c4.caption(f":material/sync_alt: Running in another process ({elsewhere}); this page follows it "
                   "read-only.")
    elif paused and status != "paused" and status in ACTIVE:
        c4.caption("Pause requested: the run pauses when the step in flight ends.")
    elif control == "stop" and status in ACTIVE:
        c4.caption("Stopping…")
    elif status in ACTIVE and not alive and manager is not None and not run.get("pause_reason"):
        c4.caption("No thread of this app is running this run (it was interrupted): Resume continues it.")


def dashboard() -> None:
    run = store.get_run(RUN_ID)
    if run is None:
        st.warning("This run was deleted.")
        return
    if run.get("pause_reason") != LOADED_PAUSE:
        st.rerun()  # the brain paused the run (or it went on): redraw the banner above
    events = store.events_after(RUN_ID)
    controls(run)
    if run["error"]:
        st.error(f"The run failed: {run['error']}", icon=":material/error:")

    pending = store.pending_decisions(RUN_ID)
    if pending:
        d = pending[0]
        with st.container(border=True):
            st.warning(f"**The run is waiting for your approval** of a plan for the **{d['block']}** block "
                       f"({views.describe_decision_key(d['key'])}).", icon=":material/pending_actions:")
            st.markdown(d["plan"] or "")
            st.page_link(nav.ATTEMPTS.path, label="Review it on the Refinement page: approve, edit or reject",
                         icon=nav.ATTEMPTS.icon, query_params={"run": RUN_ID})

    phases = views.phase_timeline(views.steps_from_rows(store.steps(RUN_ID)), info.config, run["status"])
    timeline(phases)

    budget = views.budget_progress(run, events)
    if budget.fraction is not None:
        st.progress(budget.fraction, text=f"Time budget: {budget.text}")
    else:
        done = views.step_progress(phases)
        st.progress(done, text=f"{100 * done:.0f} % of the planned steps done · {budget.text}")
    by_phase = views.time_by_phase_text(store.steps(RUN_ID))
    if by_phase:
        st.caption(f"Where the time went: {by_phase} (tracks run side by side, so phases overlap)")

    counts = views.script_counts(events)
    final = views.final_summary(events)
    m1, m2, m3, m4, m5 = st.columns(5)
    m1.metric(f"Best {info.metric_title}", fmt_score(run["best_score"]), help=info.direction)
    m2.metric("Trivial baseline", fmt_score(run["baseline_score"]), help="Class prior or mean, same folds.")
    m3.metric("Scripts run", counts.run)
    m4.metric("Scripts failed", counts.failed, help="Crashes, timeouts and scripts without a score; "
              "crashing candidates go to the debugger."
              + (f" Not counted: {counts.stopped} refinement attempt(s) the engine stopped early because "
                 "they could no longer catch up." if counts.stopped else ""))
    m5.metric("Brain", info.brain or "offline", delta=views.brain_model(info.brain, info.config) or None,
              delta_color="off", delta_arrow="off", help=f"In use: {info.brain_label}")

    series = views.score_series(events, info.higher_is_better)
    st.subheader("Best score so far")
    if series.empty:
        st.caption("No solution scored yet: the first scores arrive with the initial candidates.")
    else:
        st.plotly_chart(best_score_chart(series, info), key="run.best_chart")

    st.subheader("Validation vs locked hold-out")
    validation = final["validation_score"] if final else run["best_score"]
    check = views.holdout_check(validation, run["holdout_score"], info.higher_is_better)
    h1, h2, h3 = st.columns([1, 1, 2])
    h1.metric("Final validation score" if final else "Best validation score so far", fmt_score(validation))
    # The delta is the raw hold-out minus validation; its colour follows the metric's direction.
    raw = None if check.gap is None else run["holdout_score"] - validation
    h2.metric("Locked hold-out score", fmt_score(run["holdout_score"]),
              delta=None if raw is None else f"{raw:+.4g} vs validation",
              delta_color="normal" if info.higher_is_better else "inverse",
              help="Rows no choice was ever made on: the honest estimate.")
    if final:
        h3.markdown(f"**Final solution**  \n{final['final_label']} (script #{final['final_script_id']})")
    else:
        h3.caption("The final solution is chosen when the run ends.")
    if check.drift:
        st.warning(check.message, icon=":material/warning:")
    else:
        st.caption(check.message)

    usage = views.brain_usage(store.brain_usage(RUN_ID), info.cost_cap)
    if views.shows_brain_usage(info.brain, usage):
        brain_usage_section(usage)

    st.subheader("Event log")
    noisy = st.toggle("Show script runs and brain calls", key=K.NOISY)
    st.dataframe(views.event_log(events, 60, include_noisy=noisy), hide_index=True, width="stretch",
                 column_config={"what": st.column_config.TextColumn(width="large")})


def brain_usage_section(usage: views.BrainUsage) -> None:
    st.subheader("Brain usage")
    if usage.degraded_text:
        st.warning(views.md_escape(usage.degraded_text), icon=":material/warning:")
    b1, b2, b3, b4 = st.columns(4)
    b1.metric("Brain calls", usage.calls, help="Every call the roles made, failed ones included.")
    b2.metric("Failed calls", usage.failed, help="No answer (service errors, timeouts) or an unusable answer; "
              "failed calls are retried.")
    b3.metric("Tokens in → out", f"{views.fmt_tokens(usage.tokens_in)} → {views.fmt_tokens(usage.tokens_out)}")
    b4.metric("Estimated cost", views.fmt_usd(usage.cost),
              help="From the price per 1M tokens of each model (the run's settings or the built-in table). "
                   "An estimate, not an invoice.")
    run = store.get_run(RUN_ID) or {}
    live_run = run.get("status") in ACTIVE
    # What the live brain holds for calls in flight: known when this app drives the run, 0 when nothing runs.
    reserved = (manager.reserved_usd(RUN_ID) if manager is not None else None) if live_run else 0.0
    spend = views.spend_view(info.brain, info.config, store.brain_spent(RUN_ID), reserved)
    if spend.fraction is not None:
        st.progress(spend.fraction, text=views.md_escape(spend.text))
    else:
        st.caption(views.md_escape(spend.text + "."))
    if spend.basis_text:
        st.caption(views.md_escape(spend.basis_text))
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

# -- pinned constraints: outside the fragment, so typing is never interrupted by a poll ------------
st.subheader("Pinned constraints")
st.caption("Rules every planner must follow (e.g. 'no neural networks', 'keep training under a minute'). "
           + ("The run picks changes up before its next planner call." if info.active else
              "The run is over: constraints apply if it is resumed or forked."))
current = info.constraints
for i, c in enumerate(current):
    a, b = st.columns([8, 1], vertical_alignment="center")
    a.markdown(f"- {c}")
    if b.button("Remove", key=f"{K.CONSTRAINT_REMOVE}{i}", icon=":material/close:"):
        store.set_constraints(RUN_ID, [x for j, x in enumerate(current) if j != i])
        st.session_state[K.FLASH] = f"Constraint removed: {c}"
        st.rerun()
if not current:
    st.caption("No constraints pinned.")
new = st.text_input("New constraint", key=K.CONSTRAINT_NEW, placeholder="e.g. use gradient-boosted trees only")
if st.button("Add constraint", key=K.CONSTRAINT_ADD, icon=":material/push_pin:"):
    if new.strip():
        store.set_constraints(RUN_ID, [*current, new.strip()])
        st.session_state[K.FLASH] = f"Constraint pinned: {new.strip()}"
        st.session_state.pop(K.CONSTRAINT_NEW, None)
        st.rerun()
    else:
        st.warning("Type the constraint first.")
