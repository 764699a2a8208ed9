"""Brain calls: every call the brain's roles made in the run, newest first, with tokens, latency and cost;
open one to read its prompt, its answer and the web sources that grounded it (with the Google searches it ran
and Google's search suggestions for the answer)."""

from __future__ import annotations

import streamlit as st

from mlestar_core.views import brain_calls as view
from mlestar_core.views.common import SUGGESTIONS_HEIGHT, md_escape, parse_grounding, source_links, suggestions_document
from studio import nav
from studio.auth import require_viewer
from studio.resources import get_store
from studio.runpages import BrainCallKeys as K
from studio.runpages import empty_state, live, page_header

PAGE = 50  # calls drawn per "show more": each is a collapsed expander whose texts load only when opened

require_viewer()  # first, even if this file runs on its own (see studio/auth.py)
info = page_header("Brain calls")
store = get_store()
st.caption("Each call a role of the agent made (retrieve models, write a solution, plan a refinement…) with what "
           "it cost. Open a call to read the prompt the brain got and the answer it gave.")


def waiting_for_calls() -> None:
    if store.brain_usage(info.id):
        st.rerun()  # the first call arrived: draw the page
    empty_state(view.no_calls_text(info.active), link=nav.RUN, link_label="Run dashboard")


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
shown_total = view.total_calls(usage)


def summary() -> None:
    now = store.brain_usage(info.id)
    st.markdown(md_escape(view.brain_calls_summary(now)))
    if roles or failed_only:
        st.caption(md_escape("Matching the filters: " + view.brain_calls_summary(now, roles, failed_only)))
    new = view.total_calls(now) - shown_total
    if new > 0:
        c1, c2 = st.columns([3, 1], vertical_alignment="center")
        c1.caption(view.new_calls_text(new))
        if c2.button("Refresh", key=K.REFRESH, icon=":material/refresh:"):
            st.rerun()


live(summary, info.id, key="brain_calls.live")

limit_key = f"{K.LIMIT}{info.id}"
limit = int(st.session_state.get(limit_key, PAGE))
matching = view.matching_calls(usage, roles, failed_only)
calls = view.brain_call_views(store.brain_call_list(info.id, roles=roles or None, failed_only=failed_only,
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
        st.caption(view.call_caption(c, row.get("created")))
        if c.error:
            st.error(c.error, icon=":material/error:")
        answer, prompt = st.tabs(["Answer", "Prompt"])
        with answer:
            if row.get("answer") is None:
                st.caption("No answer: the call failed before the brain replied.")
            else:
                st.code(row["answer"], language="text", wrap_lines=True, height=400)
                grounding = parse_grounding(row)
                if grounding is not None and grounding.queries:
                    st.markdown(view.searched_text(grounding))
                if grounding is not None and grounding.entry_point:  # shown with the grounded answer, as delivered
                    st.iframe(suggestions_document(grounding.entry_point), height=SUGGESTIONS_HEIGHT,
                              alt="Google Search suggestions for this answer")
        with prompt:
            st.code(row.get("prompt") or "", language="text", wrap_lines=True, height=400)
        if c.sources:
            st.markdown("**Grounded on:** " + source_links(c.sources))

st.caption(view.shown_text(len(calls), matching, bool(roles or failed_only)))
if len(calls) < matching and st.button(f"Show {min(PAGE, matching - len(calls))} more", key=K.MORE,
                                       icon=":material/expand_more:"):
    st.session_state[limit_key] = limit + PAGE
    st.rerun()
