"""MLE-STAR Studio: the router. Pages live in pages/; shared UI helpers in studio/.

`streamlit run app.py -- --demo customer-churn` (what `make run` does) also starts a run of
that bundled demo task on the first session after the process starts, unless the store already
has one.
"""

from __future__ import annotations

import streamlit as st

from studio import nav, state
from studio.resources import demo_autostart, get_services
from studio.widgets import brain_indicator

st.set_page_config(page_title="MLE-STAR Studio", page_icon=":material/auto_awesome:", layout="wide")


@st.fragment(run_every="3s")
def _approval_banner() -> None:
    # Polls the store so a plan waiting for approval shows up on every page within seconds.
    store = get_services().store
    pending = store.pending_decisions()
    if not pending:
        return
    run_ids = list(dict.fromkeys(d["run_id"] for d in pending))
    st.warning(f"**{len(pending)} refinement plan{'s' if len(pending) > 1 else ''} waiting for your "
               "approval**", icon=":material/pending_actions:")
    for run_id in run_ids[:5]:
        run = store.get_run(run_id)
        label = run["name"] if run else run_id
        st.page_link(nav.RUN.path, label=f"Review: {label}", icon=":material/arrow_forward:",
                     query_params={state.QUERY_RUN: run_id})


state.init_state()
services = get_services()
demo_autostart()  # cached: acts on the first session of the process only

pages = {section: [st.Page(p.path, title=p.title, icon=p.icon, default=(p == nav.HOME)) for p in items]
         for section, items in nav.SECTIONS.items()}
# Register the pages before anything in the sidebar links to one of them (st.page_link needs them).
current = st.navigation(pages)

with st.sidebar:
    # The brain of the run in view (selected in this session or by ?run=), else the default for new runs.
    run_id = state.selected_run_id()
    brain_indicator(services.store.get_run(run_id) if run_id else None)
    if services.error:
        st.error("Runs cannot start: see the page for details.", icon=":material/error:")
    _approval_banner()

current.run()
