"""History: every run, filters, per-run actions (open, resume, stop, delete, downloads), compare two."""

from __future__ import annotations

import streamlit as st

from mlestar_core.exports import best_score_curve
from mlestar_core.views import history as view
from mlestar_core.views.common import any_active, brain_label, runs_frame
from studio import nav
from studio.auth import require_viewer, visible_run, visible_runs
from studio.charts import compare_runs_chart
from studio.resources import get_services
from studio.state import HistoryKeys as K
from studio.state import select_run, selected_run_id
from studio.widgets import engine_error, flash, open_run, run_downloads, run_picker, status_badge

require_viewer()
st.title("History")
engine_error()
services = get_services()
store, manager = services.store, services.manager
flash(K.FLASH)  # the outcome of the action that caused this rerun

all_runs = visible_runs()  # this user's runs only on a shared server
if not all_runs:
    st.info("No runs yet.", icon=":material/info:")
    c1, c2 = st.columns(2)
    c1.page_link(nav.HOME.path, label="Start a demo run", icon=nav.HOME.icon)
    c2.page_link(nav.NEW_RUN.path, label="Start a run on your data", icon=nav.NEW_RUN.icon)
    st.stop()

f1, f2, f3 = st.columns([2, 2, 3])
statuses, brains = view.filter_options(all_runs)
want_status = f1.multiselect("Status", statuses, key=K.STATUS, placeholder="All statuses")
want_brain = f2.multiselect("Brain", brains, key=K.BRAIN, format_func=brain_label, placeholder="All brains")
search = f3.text_input("Search task", key=K.SEARCH, placeholder="task name…")
runs = view.filter_runs(all_runs, want_status, want_brain, search)
st.caption(f"{len(runs)} of {len(all_runs)} runs")
if not runs:
    st.info("No run matches these filters.", icon=":material/filter_alt_off:")
    st.stop()


def runs_table(ids: list[str]) -> None:
    # Re-read the shown runs on every poll: statuses and scores of active runs move.
    rows = [r for r in (visible_run(i) for i in ids) if r is not None]
    st.dataframe(runs_frame(rows), hide_index=True, width="stretch",
                 column_config={"best score": st.column_config.NumberColumn(format="%.5g"),
                                "hold-out score": st.column_config.NumberColumn(format="%.5g")})


st.fragment(runs_table, run_every="3s" if any_active(runs) else None)([r["id"] for r in runs])

# -- actions on one run ----------------------------------------------------------------------
st.subheader("Selected run")
run = visible_run(run_picker(runs, key=K.PICK, label="Run"))  # every action acts on this row, not the widget
if run is None:
    st.stop()
acts = view.run_actions(run, engine=manager is not None, alive=manager is not None and manager.is_alive(run["id"]))
c_status, c_scores = st.columns([1, 3], vertical_alignment="center")
with c_status:
    status_badge(run["status"])
c_scores.markdown(view.scores_text(run))
if run["error"]:
    st.error(run["error"])

a1, a2, a3, a4 = st.columns(4)
if a1.button("Open", key=K.OPEN, icon=":material/open_in_new:", width="stretch"):
    open_run(run["id"])
if a2.button("Resume", key=K.RESUME, icon=":material/play_arrow:", width="stretch", disabled=not acts.can_resume,
             help="Continue from the last completed step."):
    try:
        manager.resume(run["id"])  # type: ignore[union-attr]
        st.session_state[K.FLASH] = f"Run {run['id']} resumed."
    except Exception as exc:
        st.session_state[K.FLASH] = None
        st.error(f"The run could not resume: {exc}")
    else:
        st.rerun()
if a3.button("Stop", key=K.STOP, icon=":material/stop:", width="stretch", disabled=not acts.can_stop,
             help="Scripts in flight are cancelled; the run can be resumed later."):
    manager.stop(run["id"])  # type: ignore[union-attr]
    st.session_state[K.FLASH] = f"Stop requested for run {run['id']}."
    st.rerun()
if a4.button("Delete…", key=K.DELETE, icon=":material/delete:", width="stretch", disabled=not acts.can_delete,
             help=acts.delete_help):
    st.session_state[K.CONFIRMING] = run["id"]

if st.session_state.get(K.CONFIRMING) == run["id"]:
    with st.container(border=True):
        st.warning(f"Delete run **{run['name']}** (`{run['id']}`) and all its files? This cannot be undone.")
        y, n, _ = st.columns([1, 1, 4])
        if y.button("Yes, delete", key=K.DELETE_CONFIRM, type="primary"):
            store.delete_run(run["id"])
            st.session_state[K.CONFIRMING] = None
            if selected_run_id() == run["id"]:
                select_run(None)
            st.session_state.pop(K.PICK, None)
            st.session_state[K.FLASH] = f"Run {run['id']} deleted."
            st.rerun()
        if n.button("Cancel", key=K.DELETE_CANCEL):
            st.session_state[K.CONFIRMING] = None
            st.rerun()

run_downloads(store, run, key="history.download")

# -- compare two runs ------------------------------------------------------------------------
st.subheader("Compare two runs")
if len(all_runs) < 2:
    st.caption("Start a second run to compare best-score curves.")
    st.stop()
p1, p2 = st.columns(2)
with p1:
    first = run_picker(all_runs, key=K.COMPARE_A, label="First run", default=run["id"])
with p2:
    others = [r for r in all_runs if r["id"] != first]
    second = run_picker(others, key=K.COMPARE_B, label="Second run", default=others[0]["id"])
curves, empty = [], []
for r in filter(None, (visible_run(first), visible_run(second))):
    curve = best_score_curve(store, r["id"])  # flat to the run's end (its agent time), or to now while it runs
    if curve.empty:
        empty.append(r["name"])
    else:
        curves.append((view.curve_name(r), curve))
if empty:
    st.caption("No scores yet for: " + ", ".join(empty))
if curves:
    st.plotly_chart(compare_runs_chart(curves), width="stretch", key="history.compare_chart")
