"""Predict: new rows through a finished run's final solution. Pick the run (the one in view when it has finished),
see the columns it needs and whether it kept its fitted model, download a template, upload rows (checked before
anything runs), predict, and download the predictions in the submission format. mlestar_core/views/predict.py
shapes all of it and runs the prediction; only the viewer's own runs are offered or accepted."""

from __future__ import annotations

import streamlit as st

from mlestar_core.views import predict as view
from mlestar_core.views.common import md_escape
from studio import auth, nav, state
from studio.resources import get_store
from studio.runpages import empty_state
from studio.state import PredictKeys as K

viewer = auth.require_viewer()  # first, even if this file runs on its own (see studio/auth.py)
st.title("Predict")
st.caption("Use a finished run's final solution on new rows: the columns it was trained with go in, its predictions "
           "come out in the task's submission format. The solution runs in the sandbox, like every script.")
store = get_store()
runs = view.predictable_runs(store, viewer)
if note := view.not_finished_text(auth.visible_run(state.selected_run_id())):
    st.info(note, icon=":material/hourglass_top:")
if not runs:
    empty_state("No finished run yet: predicting needs a run's final solution. Start one (a demo run takes a few "
                "minutes), then come back.", link=nav.HOME, link_label="Start a demo run")
    st.stop()


def _select() -> None:  # picking a run here makes it the run in view on every page
    state.select_run(st.session_state[K.RUN])


labels = {r["id"]: r["label"] for r in runs}
if st.session_state.get(K.RUN) not in labels:
    st.session_state.pop(K.RUN, None)  # the run it held was deleted
run_id = st.selectbox("Finished run", list(labels), index=view.default_run(runs, state.selected_run_id()),
                      format_func=labels.get, key=K.RUN, on_change=_select)
form = view.predict_form(store, run_id, viewer)
if not form.ready:
    st.error(md_escape(form.reason), icon=":material/error:")
    st.stop()

st.subheader("1. The columns it needs")
st.markdown(md_escape(view.columns_text(form)))
st.dataframe(view.columns_frame(form), hide_index=True, width="stretch",
             column_config={"what": st.column_config.TextColumn(width="large")})
if form.kept:
    st.success(md_escape(form.mode_text), icon=":material/inventory_2:")
else:
    st.warning(md_escape(form.mode_text), icon=":material/model_training:")
st.download_button("Download a template CSV", data=form.template_csv, file_name=form.template_name, mime="text/csv",
                   key=K.TEMPLATE, icon=":material/download:", on_click="ignore",
                   help="Every column the solution reads, in its order, with five example rows from the run's data: "
                        "replace them with yours.")

st.subheader("2. Your rows")
upload = st.file_uploader("CSV of the rows to predict", type=["csv"], key=K.UPLOAD)
drop = st.checkbox("Drop extra columns", key=K.DROP_EXTRA,
                   help="Ignore columns the training data does not have (the target column included) instead of "
                        "refusing the file.")
if upload is None:
    st.info("Upload a CSV with the columns above: the template is a good start.", icon=":material/upload_file:")
    st.stop()
data = upload.getvalue()
check = view.check_upload(store, run_id, data, upload.name, viewer, drop_extra=drop)
if not check.ok:
    st.error(md_escape(check.error), icon=":material/error:")
    st.stop()
for warning in check.warnings:
    st.warning(md_escape(warning), icon=":material/warning:")
st.caption(f"{check.rows} row(s) to predict; the first {len(check.preview)} as the solution will read them:")
st.dataframe(check.preview, hide_index=True, width="stretch")

st.subheader("3. Predictions")
key = view.upload_key(run_id, data, drop)
if st.button("Predict", key=K.PREDICT, type="primary", icon=":material/batch_prediction:"):
    with st.spinner(view.spinner_text(form)):
        st.session_state[K.RESULT] = (key, view.run_prediction(store, run_id, data, upload.name, viewer,
                                                               drop_extra=drop))
result = st.session_state.get(K.RESULT)
if not result or result[0] != key:  # no prediction yet for this run, these rows and this option
    st.caption("Press Predict: the final solution runs on your rows in the sandbox.")
    st.stop()
outcome = result[1]
if not outcome.ok:
    headline, details = view.split_error(outcome.error)
    st.error(md_escape(headline), icon=":material/error:")
    if details:
        st.code(details, language=None)
    st.stop()
st.success(md_escape(outcome.summary) + ".", icon=":material/check_circle:")
if outcome.refit_note:
    st.info(md_escape(f"Refitted: {outcome.refit_note}."), icon=":material/model_training:")
for warning in outcome.warnings:
    st.warning(md_escape(warning), icon=":material/warning:")
st.dataframe(outcome.preview, hide_index=True, width="stretch")
st.caption(f"The first {len(outcome.preview)} of {outcome.rows} predictions, in the submission format "
           f"({', '.join(form.submission_columns)}).")
st.download_button("Download the predictions", data=outcome.csv, file_name=outcome.file_name, mime="text/csv",
                   key=K.DOWNLOAD, type="primary", icon=":material/download:", on_click="ignore")
