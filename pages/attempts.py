"""Refinement: the human-in-the-loop gate (approve / edit / reject a plan), every inner attempt per
track, outer step and block with its diff, the scores through all attempts, and the tree of scripts
(open any node's code and output, or fork a new run from it)."""

from __future__ import annotations

import streamlit as st
from streamlit_ace import st_ace

from mlestar_core import views
from studio.auth import require_viewer
from studio.charts import attempt_trace_chart
from studio.resources import get_services
from studio.runpages import AttemptKeys as K
from studio.runpages import live, page_header
from studio.widgets import ACTIVE, fmt_score, open_run

ALL_ROLES = ["baseline", "initial", "debug", "merge", "data_usage", "leakage", "ablation", "refine", "ensemble"]
DEFAULT_ROLES = [r for r in ALL_ROLES if r != "ablation"]  # ablation variants are many and lead nowhere

viewer = require_viewer()
info = page_header("Refinement")
services = get_services()
store, manager = services.store, services.manager
st.caption(views.PHASE_BY_KEY["refine"].explanation)

flash = st.session_state.pop(K.FLASH, None)
if flash:
    st.success(flash, icon=":material/check_circle:")

# -- human in the loop ------------------------------------------------------------------------------
decisions = store.table("decisions", info.id)
pending = views.pending_plan(decisions, store.table("ablations", info.id), store.table("scripts", info.id)) \
    if any(d["status"] == "pending" for d in decisions) else None
attempt_count = len(store.table("attempts", info.id))

st.subheader("Human in the loop")
if pending is None:
    if info.config.get("require_approval"):
        st.caption("No plan is waiting: when the planner proposes the next one, it shows up here within seconds.")
    else:
        st.caption("This run does not ask for approval. Turn on *Require approval* when starting a run to "
                   "approve, edit or reject each refinement plan before it is implemented.")
else:
    with st.container(border=True):
        st.warning(f"**A plan is waiting for your decision** — {pending.where}, block **`{pending.block}`**"
                   + (f" (after {pending.retry} rejected plan{'s' if pending.retry > 1 else ''})"
                      if pending.retry else ""), icon=":material/pending_actions:")
        st.markdown("**Plan**")
        st.markdown(pending.plan)
        a, r, _ = st.columns([1, 1, 3])
        if a.button("Approve", key=K.APPROVE, type="primary", icon=":material/check:", width="stretch",
                    help="The coder implements this plan as it is."):
            store.decide(pending.decision_id, "approved")
            st.session_state[K.FLASH] = "Plan approved: the coder is implementing it."
            st.rerun()
        if r.button("Reject", key=K.REJECT, icon=":material/close:", width="stretch",
                    help="The planner proposes another plan for the same block."):
            store.decide(pending.decision_id, "rejected")
            st.session_state[K.FLASH] = "Plan rejected: the planner is proposing another one."
            st.rerun()
        st.markdown(f"**The `{pending.block}` block now**"
                    + (f" (in script #{pending.script_id})" if pending.script_id else ""))
        with st.container(height=320, border=False):
            st.code(pending.block_code, language="python")
        with st.expander("Edit the plan or the block, then approve", icon=":material/edit:"):
            plan = st.text_area("Plan", value=pending.plan, key=f"{K.EDIT_PLAN}{pending.decision_id}", height=140)
            st.caption(f"Block `{pending.block}`: leave it as it is and the coder writes it from your plan; change it "
                       "(then press APPLY or Ctrl+Enter in the editor) and your code is used as it is.")
            code = st_ace(value=pending.block_code, language="python", theme="chrome", min_lines=8, max_lines=40,
                          font_size=13, key=f"{K.EDIT_CODE}{pending.decision_id}")
            if st.button("Send my edits", key=K.EDIT, icon=":material/send:",
                         help="Approve with the edited plan (and your block code, if you changed it)."):
                edited_plan, edited_code = views.edit_payload(plan, pending.plan, code, pending.block_code)
                store.decide(pending.decision_id, "edited", edited_plan=edited_plan, edited_code=edited_code)
                st.session_state[K.FLASH] = "Edited plan sent" + (" with your block code." if edited_code else ".")
                st.rerun()


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
    trace = views.attempt_trace(rows, info.higher_is_better)
    if not trace.empty:
        st.plotly_chart(attempt_trace_chart(trace, info), key="attempts.trace_chart")
    st.subheader("Attempts per track, outer step and block")
    groups = views.attempt_groups(rows, info.higher_is_better)
    for i, g in enumerate(groups):
        kept = g.kept
        none_kept = " · nothing kept yet" if info.active else " · no attempt beat the start"
        head = f"{g.title} · started at {fmt_score(g.baseline)}" + (
            f" → kept attempt {kept.inner + 1}: {fmt_score(kept.score)}" if kept else none_kept)
        with st.expander(head, expanded=i == len(groups) - 1):
            st.dataframe(
                [{"attempt": a.inner + 1, "plan": a.plan, "score": a.score, "vs start": a.gain,
                  "status": a.status, "decision": a.decision, "kept": a.kept, "script": a.script_id}
                 for a in g.attempts],
                hide_index=True, width="stretch",
                column_config={"plan": st.column_config.TextColumn(width="large"),
                               "score": st.column_config.NumberColumn(format="%.5g"),
                               "vs start": st.column_config.NumberColumn(format="%+.4g",
                                                                         help="positive = better"),
                               "kept": st.column_config.CheckboxColumn("kept ★")})


live(attempts_body, info.id, key="attempts.live")

all_attempts = [a for g in views.attempt_groups(store.table("attempts", info.id), info.higher_is_better)
                for a in g.attempts if a.script_id is not None]
if all_attempts:
    st.subheader("Inspect an attempt")
    by_id = {a.id: a for a in all_attempts}
    if st.session_state.get(K.INSPECT) not in by_id:
        st.session_state.pop(K.INSPECT, None)
    pick = st.selectbox(
        "Attempt", list(by_id), index=len(by_id) - 1, key=K.INSPECT,
        format_func=lambda i: (f"track {by_id[i].track + 1} · {by_id[i].outer + 1}.{by_id[i].inner + 1} · "
                               f"{by_id[i].block} · {fmt_score(by_id[i].score)}"
                               + (" ★ kept" if by_id[i].kept else "") + f" · {by_id[i].decision}"))
    a = by_id[pick]
    parent = store.get_script(a.parent_script_id) if a.parent_script_id else None
    script = store.get_script(a.script_id) if a.script_id else None
    diff = views.block_diff(parent["code"] if parent else None, script["code"] if script else None, a.block)
    st.markdown(f"**Plan** ({a.decision}): {a.plan}")
    st.markdown(f"Score **{fmt_score(a.score)}** vs **{fmt_score(a.baseline)}** at the start of the block "
                f"({info.direction}) · status {a.status}" + (" · ★ kept" if a.kept else ""))
    side, unified = st.tabs(["Side by side", "Unified diff"])
    html = views.side_by_side_html(diff.before, diff.after, f"{a.block} in script #{a.parent_script_id}",
                                   f"{a.block} in script #{a.script_id}")
    with side, st.container(height=520 if html.count("<tr") > 30 else "content", border=False):
        st.html(html)
    with unified:
        st.code(diff.unified or "(no change in the block)", language="diff")
    if script:
        with st.expander(f"Full script #{script['id']}"):
            st.code(script["code"], language="python")

if decisions and any(d["status"] != "pending" for d in decisions):
    st.subheader("Your decisions")
    st.dataframe(views.decision_history(decisions), hide_index=True, width="stretch",
                 column_config={"decided": st.column_config.DatetimeColumn(format="HH:mm:ss")})

# -- the script tree ----------------------------------------------------------------------------------
st.subheader("How every script descends from its parent")
st.caption("initial candidates → merges → debug / data-usage / leakage fixes → refinement attempts; ensembles "
           "combine the tracks' results. Pick a node to see its code, output and score, or fork a new run from it.")
f1, f2 = st.columns([5, 1], vertical_alignment="bottom")
roles = f1.multiselect("Roles shown", ALL_ROLES, default=DEFAULT_ROLES, key=K.TREE_ROLES)
f2.button("Refresh", key=K.TREE_REFRESH, icon=":material/refresh:", width="stretch")
scripts = store.table("scripts", info.id)
nodes = views.script_tree(scripts, store.table("executions", info.id), roles=roles,
                          ensemble_rounds=store.table("ensemble_rounds", info.id))
if not nodes:
    st.caption("No script yet." if not scripts else "No script with these roles.")
    st.stop()
with st.expander(f"The whole tree ({len(nodes)} scripts)"):
    st.code("\n".join(n.text for n in nodes), language=None)
node_by_id = {n.id: n for n in nodes}
if st.session_state.get(K.TREE_NODE) not in node_by_id:
    st.session_state.pop(K.TREE_NODE, None)
final = views.final_summary(store.events_after(info.id))
ids = list(node_by_id)
default = ids.index(final["final_script_id"]) if final and final.get("final_script_id") in node_by_id else len(ids) - 1
node_id = st.selectbox("Script", ids, index=default, key=K.TREE_NODE,
                       format_func=lambda i: node_by_id[i].text.replace("    ", "\u00a0\u00a0\u00a0\u00a0"),
                       help="Indented under its parent; the final solution is selected first.")
node = node_by_id[node_id]
script = store.get_script(node_id)
chain = views.lineage(scripts, node_id)
st.markdown("Lineage: " + " → ".join(f"#{s['id']} {s['role']}" for s in chain)
            + (" · **the final solution**" if final and final.get("final_script_id") == node_id else ""))
c1, c2, c3 = st.columns(3)
c1.metric(f"Validation {info.metric_title}", fmt_score(node.score))
c2.metric("Role", node.role)
c3.metric("Children", node.children)

with st.container(border=True):
    st.markdown(f"**Fork a new run from script #{node_id}**: same task and settings; this script is the only "
                "initial candidate (retrieval is skipped).")
    f1, f2 = st.columns([3, 2], vertical_alignment="bottom")
    name = f1.text_input("Name of the new run", value=f"{info.name} (fork of #{node_id})",
                         key=f"{K.FORK_NAME}.{node_id}")
    if f2.button("Fork a new run from this script", key=K.FORK, icon=":material/fork_right:",
                 disabled=manager is None, help=services.error, width="stretch"):
        try:
            owned = {"owner": viewer.owner} if viewer.owner else {}  # signed in: the fork is the forker's
            new_id = manager.fork(info.id, node_id, name=name.strip() or None, **owned)  # type: ignore[union-attr]
        except Exception as exc:
            st.error(f"The fork could not start: {exc}")
        else:
            open_run(new_id)

code_tab, out_tab = st.tabs(["Code", "Executions"])
with code_tab, st.container(height=480, border=False):
    st.code(script["code"] if script else "", language="python", line_numbers=True)
with out_tab:
    execs = store.executions_of(node_id)
    if not execs:
        st.caption("This script has not run.")
    for e in execs:
        st.markdown(f"**{e['purpose'] or 'search'}** · exit {e['exit_code']} · score {fmt_score(e['score'])} · "
                    f"{(e['wall_time'] or 0):.1f} s · peak {(e['peak_memory_mb'] or 0):.0f} MB"
                    + (" · timed out" if e["timed_out"] else "")
                    + (" · memory cap hit" if e["memory_exceeded"] else ""))
        with st.expander("stdout", expanded=False):
            st.code((e["stdout"] or "")[-6000:] or "(empty)", language=None)
        if e["stderr"]:
            with st.expander("stderr", expanded=e["exit_code"] != 0):
                st.code(e["stderr"][-6000:], language=None)
