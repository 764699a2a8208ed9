"""Brain calls: every call the brain's roles made in the run, newest first, with tokens, latency and cost;
open one to read its prompt, its answer and the web sources that grounded it (with the Google searches it ran
and Google's search suggestions for the answer)."""

from __future__ import annotations

import streamlit as st

from mlestar_core import views
from studio import nav
from studio.auth import require_viewer
from studio.resources import get_store
from studio.runpages import BrainCallKeys as K
from studio.runpages import empty_state, live, page_header
from studio.widgets import fmt_time

PAGE = 50  # calls drawn per "show more": each is a collapsed expander whose texts load only when opened

require_viewer()  # first: the page may run without app.py (see studio/auth.py)
info = page_header("Brain calls")
store = get_store()
st.caption("Each call a role of the agent made (retrieve models, write a solution, plan a refinement…) with what "
           "it cost. Open a call to read the prompt the brain got and the answer it gave.")



def waiting_for_calls() -> None:
    if store.brain_usage(info.id):
        st.rerun()  # the first call arrived: draw the page
    if info.active:
        empty_state("No brain calls yet — the first one, the model retrieval, comes right after the trivial "
                    "baseline. Calls show up here as the run goes.", link=nav.RUN, link_label="Run dashboard")
    else:
        empty_state("This run has no brain calls recorded. Every run records its calls, the offline brain's too; "
                    "this one ended before the brain was asked anything.", link=nav.RUN, link_label="Run dashboard")


usage = store.brain_usage(info.id)
if not usage:
    live(waiting_for_calls, info.id, key="brain_calls.waiting")
    st.stop()

roles_present = [u["role"] for u in usage]
f1, f2 = st.columns([3, 1], vertical_alignment="bottom")
if any(r not in roles_present for r in st.session_state.get(K.ROLES, [])):
    del st.session_state[K.ROLES]  # roles of another run
roles = f1.multiselect("Roles", roles_present, key=K.ROLES, placeholder="All roles")
failed_only = f2.toggle("Only failed", key=K.FAILED, help="Calls without an answer, or with an unusable one.")

# The list is drawn once per page run (it does not move under the reader); the summary above it follows
# the run live and offers a refresh when new calls came in.
shown_total = sum(int(u["calls"] or 0) for u in usage)


def summary() -> None:
    now = store.brain_usage(info.id)
    st.markdown(views.md_escape(views.brain_calls_summary(now)))
    if roles or failed_only:
        st.caption(views.md_escape("Matching the filters: " + views.brain_calls_summary(now, roles, failed_only)))
    new = sum(int(u["calls"] or 0) for u in now) - shown_total
    if new > 0:
        c1, c2 = st.columns([3, 1], vertical_alignment="center")
        c1.caption(f"{new} new call{'s' if new != 1 else ''} since the list below was drawn.")
        if c2.button("Refresh", key=K.REFRESH, icon=":material/refresh:"):
            st.rerun()


live(summary, info.id, key="brain_calls.live")

limit_key = f"{K.LIMIT}{info.id}"
limit = int(st.session_state.get(limit_key, PAGE))
matching = views.matching_calls(usage, roles, failed_only)
calls = views.brain_call_views(store.brain_call_list(info.id, roles=roles or None, failed_only=failed_only,
                                                     limit=limit))
if not calls:
    st.info("No call matches these filters.", icon=":material/filter_alt_off:")
    st.stop()

for c in calls:
    # on_change="rerun" makes the expander stateful: its body runs only while it is open, so a long
    # run's hundreds of prompts are never all sent to the browser.
    box = st.expander(c.title, key=f"{K.CALL}{c.id}", on_change="rerun")
    if not box.open:
        continue
    with box:
        row = store.get_brain_call(c.id) or {}
        st.caption(views.md_escape(f"{c.step_text} · model {c.model or '—'} · call {c.n} of the run · "
                                   f"{fmt_time(row.get('created'))}"))
        if c.error:
            st.error(c.error, icon=":material/error:")
        answer, prompt = st.tabs(["Answer", "Prompt"])
        with answer:
            if row.get("answer") is None:
                st.caption("No answer: the call failed before the brain replied.")
            else:
                st.code(row["answer"], language="text", wrap_lines=True, height=400)
                grounding = views.parse_grounding(row)
                if grounding is not None and grounding.queries:
                    st.markdown("**Searched Google for:** " + " · ".join(views.md_escape(q) for q in grounding.queries))
                if grounding is not None and grounding.entry_point:  # shown with the grounded answer, as delivered
                    st.iframe(views.suggestions_document(grounding.entry_point), height=views.SUGGESTIONS_HEIGHT,
                              alt="Google Search suggestions for this answer")
        with prompt:
            st.code(row.get("prompt") or "", language="text", wrap_lines=True, height=400)
        if c.sources:
            st.markdown("**Grounded on:** " + views.source_links(c.sources))

shown = len(calls)
st.caption(f"Showing the newest {shown} of {matching} call{'s' if matching != 1 else ''}"
           + (" matching the filters." if roles or failed_only else "."))
if shown < matching and st.button(f"Show {min(PAGE, matching - shown)} more", key=K.MORE,
                                  icon=":material/expand_more:"):
    st.session_state[limit_key] = limit + PAGE
    st.rerun()
