"""What drives the model: the final solution's permutation importance (bars with error bars), the partial dependence
of its top features, the table, and which rows and metric they were measured with; an empty state until the run has
finished, and "Compute it now" when the run has none (the time budget left no room, or it finished before
explanations were made). mlestar_core/views/explain.py shapes it and runs the computation."""

from __future__ import annotations

import streamlit as st

from mlestar_core.views import explain as view
from mlestar_core.views.common import md_escape
from studio import nav
from studio.auth import require_viewer
from studio.explain_charts import importance_chart, partial_dependence_charts
from studio.resources import get_store
from studio.runpages import ExplainKeys as K
from studio.runpages import empty_state, live, page_header

viewer = require_viewer()  # first, even if this file runs on its own (see studio/auth.py)
info = page_header("What drives the model")
store = get_store()
st.caption("Which columns the final model relies on: shuffle one column's values among rows it never saw and "
           "measure how much worse its predictions get (permutation importance); then set a top column to one "
           "value after another and watch the average prediction move (partial dependence).")


def missing(page: view.ExplainPage) -> None:
    st.info(md_escape(page.message), icon=":material/hourglass_empty:")
    if not page.can_compute or not st.button("Compute it now", key=K.COMPUTE, type="primary",
                                             icon=":material/insights:"):
        return
    with st.spinner("Computing what drives the model: the final solution predicts shuffled copies of the hold-out "
                    "rows in the sandbox…"):
        result = view.compute_explanation(store, info.id, viewer)
    if result.available:
        st.rerun()
    st.error(md_escape(f"It could not be computed: {result.reason}"), icon=":material/error:")


def body() -> None:
    run = store.get_run(info.id)
    if run is None:
        st.warning("This run was deleted.")
        return
    page = view.explain_page(store, run)
    if page.state == "unfinished":
        empty_state(page.message, link=nav.RUN, link_label="Follow the run on its dashboard")
        return
    if page.state == "missing" or page.explanation is None:
        missing(page)
        return
    ex = page.explanation
    st.markdown(view.top_text(ex))
    st.caption(md_escape(view.rows_caption(ex)))
    st.plotly_chart(importance_chart(ex), key=K.IMPORTANCE)
    st.caption("Blue: shuffling the feature clearly hurt (its importance is above its own spread); grey: it did not.")
    if ex.pdp:
        st.subheader("How the top features move the prediction")
        for i, (col, curve, fig) in enumerate(zip(st.columns(len(ex.pdp)), ex.pdp, partial_dependence_charts(ex),
                                                 strict=True)):
            with col:
                st.plotly_chart(fig, key=f"{K.PDP}{i}")
                st.caption(curve.sentence)
    st.subheader("Every feature")
    st.dataframe(view.importance_frame(ex), hide_index=True, width="stretch",
                 column_config={"importance": st.column_config.NumberColumn(format="%.4g", help=ex.x_title),
                                "±": st.column_config.NumberColumn(format="%.2g", help="spread over the shuffles")})
    c1, c2 = st.columns([1, 3], vertical_alignment="center")
    c1.download_button("explain.json", data=view.explanation_json(ex, store), file_name=f"explain-{info.id}.json",
                       mime="application/json", key=K.DOWNLOAD, icon=":material/download:", on_click="ignore")
    c2.page_link(nav.PREDICT.path, label="Predict new rows with this run", icon=nav.PREDICT.icon,
                 query_params={"run": info.id})
    with st.expander("As written in the run's report"):
        st.markdown(md_escape(view.report_markdown(ex)))


live(body, info.id, key="explain.live")
