"""Home: what MLE-STAR does, one-click demo run, the way to your own data, the latest runs."""

from __future__ import annotations

import streamlit as st

from mlestar_core.uploads import list_demo_tasks
from mlestar_core.views import home as view
from mlestar_core.views.common import any_active, runs_frame
from studio import nav
from studio.auth import require_viewer, visible_runs
from studio.resources import demo_autostart, get_store, start_demo_run
from studio.state import HomeKeys
from studio.widgets import engine_error, open_run, status_badge

LIVE = "home.live"  # whether the latest-runs list is polling

viewer = require_viewer()
st.title("MLE-STAR Studio")
st.markdown(view.INTRO)
engine_error()

demo = demo_autostart() if viewer.local else None  # a shared server autostarts nothing (app.py)
if demo is not None:
    demo_run = get_store().get_run(demo.run_id) if demo.run_id else None
    if demo_run is not None:
        with st.container(border=True):
            st.markdown(view.demo_text(demo.name, demo.started, demo_run["status"]))
            if st.button("Watch the demo run", key=HomeKeys.WATCH_DEMO, type="primary",
                         icon=":material/play_circle:"):
                open_run(demo.run_id)
    elif demo.error:
        st.error(f"The demo run could not start: {demo.error}")

left, right = st.columns(2, gap="large")
with left, st.container(border=True):
    st.subheader("Start a demo run")
    st.caption("A bundled task, small settings, a 5-minute time budget. One click.")
    demos = list(list_demo_tasks())
    if demos:
        pick = st.selectbox("Demo task", demos, key=HomeKeys.DEMO_PICK,
                            index=view.default_demo(demos))
        if st.button("Start a demo run", key=HomeKeys.DEMO_START, type="primary", icon=":material/rocket_launch:"):
            with st.spinner("Starting…"):
                run_id, error = start_demo_run(pick, owner=viewer.owner)
            if run_id:
                open_run(run_id)
            st.error(error)
    else:
        st.info("No demo tasks are bundled with this installation.")
with right, st.container(border=True):
    st.subheader("Upload your own data")
    st.caption("A CSV with a target column (plus optional test set and sample submission), or a zip "
               "of a Kaggle / MLE-bench task folder.")
    st.page_link(nav.NEW_RUN.path, label="New run", icon=":material/upload_file:")

st.subheader("Latest runs")


def latest_runs() -> None:
    runs = view.latest(visible_runs())
    if not runs:
        st.info("No runs yet. Start a demo run above, or upload your own data.", icon=":material/info:")
        return
    if st.session_state.get(LIVE) and not any_active(runs):
        st.rerun()  # the last active run ended: redraw the page once, without the timer
    st.dataframe(runs_frame(runs), hide_index=True, width="stretch",
                 column_config={"best score": st.column_config.NumberColumn(format="%.5g"),
                                "hold-out score": st.column_config.NumberColumn(format="%.5g")})
    for run in runs[:3]:
        c1, c2, c3 = st.columns([4, 1, 1], vertical_alignment="center")
        c1.markdown(f"**{run['name']}** · `{run['id']}`")
        with c2:
            status_badge(run["status"])
        if c3.button("Open", key=HomeKeys.OPEN_PREFIX + run["id"], icon=":material/open_in_new:"):
            open_run(run["id"])
    st.page_link(nav.HISTORY.path, label="All runs", icon=nav.HISTORY.icon)


# Poll the store while a run is going, so statuses and scores move without a click.
live = any_active(view.latest(visible_runs()))
st.session_state[LIVE] = live
st.fragment(latest_runs, run_every="3s" if live else None)()
