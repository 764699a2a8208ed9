"""New run: pick the data (CSV upload, task zip, or a demo), check what was derived, set knobs, pick the
brain and its settings, start."""

from __future__ import annotations

import streamlit as st

from mlestar_core.views import new_run as view
from studio import brain_form, data_form
from studio.auth import require_viewer, upload_root
from studio.resources import get_services, start_run
from studio.state import NewRunKeys as K
from studio.widgets import engine_error, open_run

viewer = require_viewer()
st.title("New run")
engine_error()
services = get_services()

st.subheader("1 · Data")
kind = st.radio("Source", list(view.SOURCES), format_func=view.SOURCES.get, horizontal=True, key=K.SOURCE,
                label_visibility="collapsed")
try:
    source = data_form.data_source(kind, upload_root())  # per user when signed in
except data_form.SourceError as exc:
    st.info(str(exc), icon=":material/upload_file:")
    st.stop()
except Exception as exc:  # TaskError: a bad upload; anything else: said plainly, never a traceback
    data_form.show_error(exc)
    st.stop()
st.caption(f"First {len(source.head)} rows of {source.train_name}")
st.dataframe(source.head, hide_index=True, width="stretch")

st.subheader("2 · Task")
st.caption("Derived from the files and the description; override anything that is wrong.")
target, task_type, metric = data_form.task_overrides(source.columns)
task = data_form.load_task(source, target, task_type, metric)
if task is not None:
    data_form.task_panel(task)
data_form.columns_and_target(source, task, target)
if task is None:
    st.stop()

st.subheader("3 · Settings")
knobs = data_form.knobs()
run_name, constraints, approval, auto_minutes = data_form.run_options(task.name)

st.subheader("4 · Brain")
r1, r2 = st.columns([1, 2], gap="large", vertical_alignment="bottom")
brain = r1.selectbox("Brain", list(view.BRAIN_CHOICES), format_func=view.BRAIN_CHOICES.get, key=K.BRAIN,
                     help="Who retrieves the models and writes the plans and the code.")
r2.caption(view.brain_caption(brain))
with st.container(border=brain != "offline"):
    choice = brain_form.brain_settings(brain, upload_root(), task.name)

blocker = view.start_blocker(choice.blocker or data_form.executor_problem(knobs.executor),
                             services.manager is not None)
if choice.blocker:
    st.warning(choice.blocker, icon=view.blocker_icon(brain, choice.blocker))
elif blocker and services.manager is not None:  # where scripts would run (set under More settings)
    st.warning(f"Scripts cannot run there: {blocker}", icon=":material/lan:")
if st.button("Start run", key=K.START, type="primary", disabled=blocker is not None, icon=":material/rocket_launch:"):
    config = view.run_config(knobs, brain=brain, settings=choice.settings, cost_cap=choice.cost_cap,
                             approval=approval, auto_approve_minutes=auto_minutes, constraints=constraints,
                             cassette=choice.cassette)
    with st.spinner("Starting…"):
        run_id, error = start_run(task, config, name=run_name.strip() or None, api_key=choice.api_key,
                                  owner=viewer.owner)
    if run_id:
        open_run(run_id)
    st.error(error)
