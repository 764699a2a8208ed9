"""Refinement: the human-in-the-loop gate (approve / edit / reject a plan), every inner attempt per
track, outer step and block with its diff, the scores through all attempts, and the tree of scripts
(open any node's code and output, or fork a new run from it)."""

from __future__ import annotations

import streamlit as st

from mlestar_core.views import attempts as view
from mlestar_core.views.common import PHASE_BY_KEY, final_summary, fmt_score
from studio.auth import require_viewer
from studio.charts import attempt_trace_chart
from studio.resources import get_services
from studio.runpages import AttemptKeys as K
from studio.runpages import live, page_header
from studio.steering import fork_form, plan_review
from studio.widgets import ACTIVE, attempt_diff, flash, script_tabs

viewer = require_viewer()
info = page_header("Refinement")
services = get_services()
store = services.store
st.caption(PHASE_BY_KEY["refine"].explanation)
flash(K.FLASH)

# -- human in the loop ------------------------------------------------------------------------------
decisions = store.table("decisions", info.id)
pending = view.pending_plan(decisions, store.table("ablations", info.id), store.table("scripts", info.id)) \
    if any(d["status"] == "pending" for d in decisions) else None
attempt_count = len(store.table("attempts", info.id))

st.subheader("Human in the loop")
if pending is None:
    st.caption(view.no_plan_text(bool(info.config.get("require_approval"))))
else:
    plan_review(pending, services)


def watcher() -> None:
    # The decision form and the tree are drawn outside any polling fragment so typing is never
    # interrupted; this one only asks for a full rerun when a plan arrives or is decided elsewhere,
    # or when a new attempt lands while no plan is waiting.
    now = store.pending_decisions(info.id)
    now_id = now[0]["id"] if now else None
    if now_id != (pending.decision_id if pending else None):
        st.rerun()
    if now_id is None and len(store.table("attempts", info.id)) != attempt_count:
        st.rerun()


if info.status in ACTIVE:
    st.fragment(watcher, run_every="2s", key="attempts.watcher")()

# -- attempts -----------------------------------------------------------------------------------------


def attempts_body() -> None:
    rows = store.table("attempts", info.id)
    st.subheader("Scores through all attempts")
    if not rows:
        st.info("No refinement attempt yet — attempts start after each track's ablation study picks a block.",
                icon=":material/hourglass_empty:")
        return
    trace = view.attempt_trace(rows, info.higher_is_better)
    if not trace.empty:
        st.plotly_chart(attempt_trace_chart(trace, info), key="attempts.trace_chart")
    st.subheader("Attempts per track, outer step and block")
    groups = view.attempt_groups(rows, info.higher_is_better)
    for i, g in enumerate(groups):
        with st.expander(g.head(info.active), expanded=i == len(groups) - 1):
            st.dataframe(g.rows(), hide_index=True, width="stretch",
                         column_config={"plan": st.column_config.TextColumn(width="large"),
                                        "error": st.column_config.TextColumn(width="medium"),
                                        "score": st.column_config.NumberColumn(format="%.5g"),
                                        "vs start": st.column_config.NumberColumn(format="%+.4g",
                                                                                  help="positive = better"),
                                        "kept": st.column_config.CheckboxColumn("kept ★")})


live(attempts_body, info.id, key="attempts.live")

by_id = view.inspectable(view.attempt_groups(store.table("attempts", info.id), info.higher_is_better))
if by_id:
    st.subheader("Inspect an attempt")
    if st.session_state.get(K.INSPECT) not in by_id:
        st.session_state.pop(K.INSPECT, None)
    a = by_id[st.selectbox("Attempt", list(by_id), index=len(by_id) - 1, key=K.INSPECT,
                           format_func=lambda i: by_id[i].label)]
    parent, script, edit = (store.get_script(i) if i else None
                            for i in (a.parent_script_id, a.script_id, a.edit_script_id))
    st.markdown(f"**Plan** ({a.decision}): {a.plan}")
    st.markdown(a.summary(info.direction))
    attempt_diff(view.attempt_diffs(a, *((s or {}).get("code") for s in (parent, script, edit))))
    if script:
        with st.expander(f"Full script #{script['id']}"):
            st.code(script["code"], language="python")

if decisions and any(d["status"] != "pending" for d in decisions):
    st.subheader("Your decisions")
    st.dataframe(view.decision_history(decisions), hide_index=True, width="stretch",
                 column_config={"decided": st.column_config.DatetimeColumn(format="HH:mm:ss"),
                                "who decided": st.column_config.TextColumn(width="medium")})

# -- the script tree ----------------------------------------------------------------------------------
st.subheader("How every script descends from its parent")
st.caption("initial candidates → merges → debug / data-usage / leakage fixes → refinement attempts; ensembles "
           "combine the tracks' results. Pick a node to see its code, output and score, or fork a new run from it.")
f1, f2 = st.columns([5, 1], vertical_alignment="bottom")
roles = f1.multiselect("Roles shown", view.ALL_ROLES, default=view.DEFAULT_ROLES, key=K.TREE_ROLES)
f2.button("Refresh", key=K.TREE_REFRESH, icon=":material/refresh:", width="stretch")
scripts = store.table("scripts", info.id)
nodes = view.script_tree(scripts, store.table("executions", info.id), roles=roles,
                         ensemble_rounds=store.table("ensemble_rounds", info.id))
if not nodes:
    st.caption("No script yet." if not scripts else "No script with these roles.")
    st.stop()
with st.expander(f"The whole tree ({len(nodes)} scripts)"):
    st.code("\n".join(n.text for n in nodes), language=None)
node_by_id = {n.id: n for n in nodes}
if st.session_state.get(K.TREE_NODE) not in node_by_id:
    st.session_state.pop(K.TREE_NODE, None)
final = final_summary(store.events_after(info.id))
node_id = st.selectbox("Script", list(node_by_id), index=view.default_node(nodes, final), key=K.TREE_NODE,
                       format_func=lambda i: node_by_id[i].text.replace("    ", "\u00a0\u00a0\u00a0\u00a0"),
                       help="Indented under its parent; the final solution is selected first.")
node = node_by_id[node_id]
st.markdown(view.lineage_text(view.lineage(scripts, node_id), node_id, final))
c1, c2, c3 = st.columns(3)
c1.metric(f"Validation {info.metric_title}", fmt_score(node.score))
c2.metric("Role", node.role)
c3.metric("Children", node.children)
fork_form(info, node_id, services, viewer.owner)
script = store.get_script(node_id)
script_tabs(script["code"] if script else "", store.executions_of(node_id))
