"""MLE-STAR Studio: the router. It defines every page (`st.navigation`, titles from studio/nav.py), the sidebar
(brain, sandbox, plans waiting for approval) and the selected run (`?run=`), then runs the page.

Layout: app_pages/<page>.py draws a page; mlestar_core/views/<page>.py shapes what it shows from store rows (no
Streamlit); studio/ holds the UI pieces pages share. The folder is app_pages/, not pages/: Streamlit would treat
a `pages/` folder next to this script as a legacy multipage app and run a page file without this router when a
deep link is a fresh server's first request (no navigation, no `?run=`, no banner). Page URLs are the file
names: /run, /attempts, /brain_calls...

`streamlit run app.py -- --demo customer-churn` (what `make run` does) also starts a run of
that bundled demo task on the first session after the process starts, unless the store already
has one.

On a server reachable from other machines (see mlestar_core/access.py and docs/access.md), nothing renders
before the visitor has signed in, and each user sees only their own runs.
"""

from __future__ import annotations

import streamlit as st

from studio import auth, nav, state
from studio.resources import demo_autostart, get_services
from studio.widgets import brain_indicator, executor_indicator, mlflow_indicator, sandbox_indicator

st.set_page_config(page_title="MLE-STAR Studio", page_icon=":material/auto_awesome:", layout="wide")


@st.fragment(run_every="3s")
def _approval_banner() -> None:
    # Polls the store so a plan waiting for approval shows up on every page within seconds.
    mine = {r["id"]: r for r in auth.visible_runs()}  # another user's plans must not even be counted
    pending = [d for d in get_services().store.pending_decisions() if d["run_id"] in mine]
    if not pending:
        return
    run_ids = list(dict.fromkeys(d["run_id"] for d in pending))
    st.warning(f"**{len(pending)} refinement plan{'s' if len(pending) > 1 else ''} waiting for your "
               "approval**", icon=":material/pending_actions:")
    for run_id in run_ids[:5]:
        st.page_link(nav.RUN.path, label=f"Review: {mine[run_id]['name']}", icon=":material/arrow_forward:",
                     query_params={state.QUERY_RUN: run_id})


viewer = auth.current_viewer()
if viewer is None:
    # Exposed and not signed in: the sign-in (or refusal) page is the only page, so any URL lands on it. Every
    # page also calls auth.require_viewer() first: a second lock should a page file run on its own (studio/auth.py).
    st.navigation([st.Page(auth.sign_in_page, title="Sign in", default=True)], position="hidden").run()
    st.stop()

state.init_state()
services = get_services()
if viewer.local:  # on a shared server a run that nobody owns would be hidden from everyone: no autostart
    demo_autostart()  # cached: acts on the first session of the process only

pages = {section: [st.Page(p.path, title=p.title, icon=p.icon, default=(p == nav.HOME)) for p in items]
         for section, items in nav.SECTIONS.items()}
# Register the pages before anything in the sidebar links to one of them (st.page_link needs them).
current = st.navigation(pages)

with st.sidebar:
    auth.account_box(viewer)
    # The brain of the run in view (selected in this session or by ?run=), else the default for new runs.
    run_id = state.selected_run_id()
    brain_indicator(auth.visible_run(run_id))  # an unknown or foreign ?run= shows the default brain
    sandbox_indicator()  # the scripts' isolation, or plainly what is not protected when it is off
    executor_indicator(auth.visible_run(run_id))  # this machine or a Dask cluster (and whether it answers)
    mlflow_indicator(auth.visible_run(run_id))  # only when MLFLOW_TRACKING_URI is set or the run was logged
    if services.error:
        st.error("Runs cannot start: see the page for details.", icon=":material/error:")
    _approval_banner()

current.run()
