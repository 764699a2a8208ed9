"""Widgets that steer a run: Pause / Resume / Stop, resuming a run the brain paused, pinned constraints,
the approve / edit / reject form for a plan, and forking a new run from a script.

Each one draws its controls, writes what the user decided to the store or the RunManager, leaves a message
under the page's flash key and reruns the page. What a control may do is decided in the page's view
(`mlestar_core.views.run`, `mlestar_core.views.attempts`); nothing here blocks or sleeps.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from streamlit_ace import st_ace

from mlestar_core.views import attempts as attempts_view
from mlestar_core.views import run as run_view
from mlestar_core.views.common import RunInfo, md_escape

from .resources import Services
from .runpages import AttemptKeys, RunKeys
from .widgets import open_run


def run_controls(run: dict[str, Any], services: Services) -> None:
    """Pause / Resume / Stop. Every action reruns the whole page so polling starts or stops with it."""
    manager, run_id = services.manager, run["id"]
    elsewhere = manager.driven_elsewhere(run_id) if manager is not None and run["status"] != "finished" else None
    c = run_view.controls(run, engine=manager is not None, engine_error=services.error, elsewhere=elsewhere,
                          alive=manager is not None and manager.is_alive(run_id))
    c1, c2, c3, c4 = st.columns([1, 1, 1, 3], vertical_alignment="center")
    if c1.button("Pause", key=RunKeys.PAUSE, icon=":material/pause:", width="stretch", disabled=not c.can_pause,
                 help=c.locked or "Pause after the step in flight; scripts that are running finish."):
        manager.pause(run_id)  # type: ignore[union-attr]
        st.session_state[RunKeys.FLASH] = "Pause requested: the run pauses at the next step boundary."
        st.rerun()
    if c2.button("Resume", key=RunKeys.RESUME, icon=":material/play_arrow:", width="stretch",
                 disabled=not c.can_resume, help=c.locked or "Continue the run from where it is."):
        try:
            (manager.unpause if c.unpause else manager.resume)(run_id)  # type: ignore[union-attr]
            st.session_state[RunKeys.FLASH] = "Run resumed."
        except Exception as exc:  # e.g. the brain cannot start: say so, keep the page
            st.session_state[RunKeys.FLASH] = None
            st.error(f"The run could not resume: {exc}")
        else:
            st.rerun()
    if c3.button("Stop", key=RunKeys.STOP, icon=":material/stop:", width="stretch", disabled=not c.can_stop,
                 help=c.locked or "Cancel the scripts in flight and stop; you can resume later."):
        manager.stop(run_id)  # type: ignore[union-attr]
        st.session_state[RunKeys.FLASH] = "Stop requested."
        st.rerun()
    if c.note:
        c4.caption(c.note)


def paused_banner(reason: str, info: RunInfo, services: Services) -> None:
    """Why the brain paused the run, and a Resume (with a key field when the key was the problem)."""
    manager = services.manager
    with st.container(border=True):
        st.warning(f"**The run is paused: the brain could not go on.**\n\n{md_escape(reason)}\n\n"
                   "Everything done so far is kept; resuming redoes only the step that was in flight.",
                   icon=":material/pause_circle:")
        api_key = None
        if run_view.pause_needs_key(reason) and info.brain in ("gemini", "openai"):
            api_key = st.text_input("API key", key=RunKeys.API_KEY, type="password",
                                    help="Kept in this app's memory only: never stored, logged or put in the "
                                         "run's settings. Leave empty to use the environment or secrets.toml.")
            st.caption("The pause is about the API key: type a valid one (or fix the environment) and resume.")
        if st.button("Resume run", key=RunKeys.RESUME_PAUSED, type="primary", icon=":material/play_arrow:",
                     disabled=manager is None, help=services.error if manager is None else None):
            try:
                manager.unpause(info.id, api_key=(api_key or "").strip() or None)  # type: ignore[union-attr]
            except Exception as exc:  # e.g. still no key: the run stays paused with the new reason
                st.error(f"The run could not resume: {exc}", icon=":material/error:")
            else:
                st.session_state[RunKeys.FLASH] = "Run resumed."
                st.rerun()


def pinned_constraints(info: RunInfo, services: Services) -> None:
    """The run's constraints, each removable, and a field to pin a new one."""
    store, current = services.store, info.constraints
    st.subheader("Pinned constraints")
    st.caption(run_view.constraints_caption(info.active))
    for i, c in enumerate(current):
        a, b = st.columns([8, 1], vertical_alignment="center")
        a.markdown(f"- {c}")
        if b.button("Remove", key=f"{RunKeys.CONSTRAINT_REMOVE}{i}", icon=":material/close:"):
            store.set_constraints(info.id, run_view.constraints_without(current, i))
            st.session_state[RunKeys.FLASH] = f"Constraint removed: {c}"
            st.rerun()
    if not current:
        st.caption("No constraints pinned.")
    new = st.text_input("New constraint", key=RunKeys.CONSTRAINT_NEW,
                        placeholder="e.g. use gradient-boosted trees only")
    if st.button("Add constraint", key=RunKeys.CONSTRAINT_ADD, icon=":material/push_pin:"):
        pinned = run_view.constraints_with(current, new)
        if pinned is None:
            st.warning("Type the constraint first.")
        else:
            store.set_constraints(info.id, pinned)
            st.session_state[RunKeys.FLASH] = f"Constraint pinned: {pinned[-1]}"
            st.session_state.pop(RunKeys.CONSTRAINT_NEW, None)
            st.rerun()


def plan_review(pending: attempts_view.PendingPlan, services: Services) -> None:
    """The plan waiting for a decision, its block as it is now, and Approve / Reject / edit-then-approve."""
    store, K = services.store, AttemptKeys
    with st.container(border=True):
        st.warning(pending.headline, icon=":material/pending_actions:")
        if pending.auto_text:
            st.caption(md_escape(pending.auto_text))
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
                edited_plan, edited_code = attempts_view.edit_payload(plan, pending.plan, code, pending.block_code)
                store.decide(pending.decision_id, "edited", edited_plan=edited_plan, edited_code=edited_code)
                st.session_state[K.FLASH] = "Edited plan sent" + (" with your block code." if edited_code else ".")
                st.rerun()


def fork_form(info: RunInfo, script_id: int, services: Services, owner: str | None) -> None:
    """Start a new run whose only initial candidate is this script (same task and settings)."""
    manager, K = services.manager, AttemptKeys
    with st.container(border=True):
        st.markdown(f"**Fork a new run from script #{script_id}**: same task and settings; this script is the only "
                    "initial candidate (retrieval is skipped).")
        f1, f2 = st.columns([3, 2], vertical_alignment="bottom")
        name = f1.text_input("Name of the new run", value=f"{info.name} (fork of #{script_id})",
                             key=f"{K.FORK_NAME}.{script_id}")
        if f2.button("Fork a new run from this script", key=K.FORK, icon=":material/fork_right:",
                     disabled=manager is None, help=services.error, width="stretch"):
            try:
                owned = {"owner": owner} if owner else {}  # signed in: the fork is the forker's
                new_id = manager.fork(info.id, script_id, name=name.strip() or None, **owned)  # type: ignore[union-attr]
            except Exception as exc:
                st.error(f"The fork could not start: {exc}")
            else:
                open_run(new_id)
