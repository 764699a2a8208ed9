"""Shared pieces of the run pages (Run dashboard, Retrieved models, Ablation, Refinement, Ensemble,
What drives the model, Brain calls, Replay): widget keys, the page header, the phase timeline and the
live-polling fragment.

Live parts poll the store in `st.fragment(run_every=POLL)` while the run is active; when the run
ends the fragment asks for one full rerun, which registers it again without a timer, so a finished
run costs nothing. Nothing here blocks or sleeps, and no thread but the script thread calls st.*.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

from mlestar_core.views.common import PHASES, PhaseState, RunInfo, current_phase, run_brain_text, run_info

from . import nav
from .resources import get_store
from .widgets import ACTIVE, require_run, status_badge

POLL = "2s"


class RunKeys:
    PAUSE = "run.pause"
    RESUME = "run.resume"
    STOP = "run.stop"
    NOISY = "run.log_noisy"
    CONSTRAINT_NEW = "run.constraint_new"
    CONSTRAINT_ADD = "run.constraint_add"
    CONSTRAINT_REMOVE = "run.constraint_remove."  # + index
    RESUME_PAUSED = "run.resume_paused"  # the paused-by-the-brain banner's button
    API_KEY = "run.api_key"  # password field offered when the pause was about the key (memory only)
    FLASH = "run.flash"


class BrainCallKeys:
    ROLES = "brain_calls.roles"
    FAILED = "brain_calls.only_failed"
    LIMIT = "brain_calls.limit."  # + run id: how many calls the list shows (not a widget)
    MORE = "brain_calls.more"
    REFRESH = "brain_calls.refresh"
    CALL = "brain_calls.call."  # + call id: the call's expander (its content is drawn only when open)


class AttemptKeys:
    APPROVE = "attempts.approve"
    EDIT = "attempts.edit"
    REJECT = "attempts.reject"
    EDIT_PLAN = "attempts.edit_plan."  # + decision id: a fresh widget per plan
    EDIT_CODE = "attempts.edit_code."  # + decision id
    INSPECT = "attempts.inspect"
    TREE_ROLES = "attempts.tree_roles"
    TREE_NODE = "attempts.tree_node"
    TREE_REFRESH = "attempts.tree_refresh"
    FORK = "attempts.fork"
    FORK_NAME = "attempts.fork_name"
    FLASH = "attempts.flash"


class ExplainKeys:
    COMPUTE = "explain.compute"
    IMPORTANCE = "explain.importance"  # the importance chart
    PDP = "explain.pdp."  # + index: a partial-dependence chart
    DOWNLOAD = "explain.download"


class ReplayKeys:
    N = "replay.n"
    PREV = "replay.prev"
    NEXT = "replay.next"
    PLAY = "replay.play"
    PAUSE = "replay.pause"
    START = "replay.start"
    END = "replay.end"
    PLAYING = "replay.playing"
    RUN = "replay.run"  # the run the slider belongs to (reset when another run is opened)


# Material icons, not emoji: headless browsers and many desktops have no emoji font.
STATUS_ICON = {"done": ":green[:material/check_circle:]", "running": ":blue[:material/autorenew:]",
               "waiting": ":orange[:material/pending:]", "paused": ":gray[:material/pause_circle:]",
               "pending": ":gray[:material/radio_button_unchecked:]", "skipped": ":gray[:material/skip_next:]",
               "failed": ":red[:material/cancel:]", "stopped": ":gray[:material/stop_circle:]",
               "not needed": ":gray[:material/remove:]"}


def page_header(title: str) -> RunInfo:
    """The page's title, then the selected run (or the guard's message and st.stop()): its name, status,
    brain and metric. Returns the parsed run."""
    st.title(title)
    info = run_info(require_run())
    c1, c2 = st.columns([5, 1], vertical_alignment="center")
    c1.markdown(f"**{info.name}** · `{info.id}` · brain **{run_brain_text(info.brain, info.config)}** · metric "
                f"**{info.metric_title}** ({info.direction})" + (f" · {info.protocol}" if info.protocol else ""))
    with c2:
        status_badge(info.status)
    return info


def timeline(phases: Sequence[PhaseState]) -> None:
    """The phases in a row, each with its status and steps; the explanation is the tooltip and, for
    the phase in flight, a caption below (all of them are in the expander)."""
    cols = st.columns(len(phases))
    for col, p in zip(cols, phases, strict=True):
        with col:
            st.markdown(f"{STATUS_ICON.get(p.status, '')} **{p.title}**", help=p.explanation)
            st.caption(f"{p.status} · {p.done}/{p.total}" if p.total else p.status)
    now = current_phase(phases)
    if now is not None:
        running = "; ".join(now.current[:3]) + (" …" if len(now.current) > 3 else "")
        st.info(f"**Now: {now.title}**" + (f" — {running}" if running else "") + f"\n\n{now.explanation}",
                icon=":material/school:")
    with st.expander("What MLE-STAR does in each phase, and why"):
        for p in PHASES:
            st.markdown(f"**{p.title}.** {p.explanation}")


def live(body: Callable[[], None], run_id: str, *, key: str) -> None:
    """Draw `body` in a fragment that re-runs every POLL while the run is active, and stops polling
    (one full rerun, then run_every=None) once the run has ended."""
    run = get_store().get_run(run_id)
    active = run is not None and run["status"] in ACTIVE

    def fragment() -> None:
        body()
        if active:
            now = get_store().get_run(run_id)
            if now is None or now["status"] not in ACTIVE:
                st.rerun()  # whole page: the fragment comes back without its timer

    st.fragment(fragment, run_every=POLL if active else None, key=key)()


def empty_state(message: str, *, link: nav.PageDef | None = None, link_label: str = "") -> None:
    st.info(message, icon=":material/hourglass_empty:")
    if link is not None:
        st.page_link(link.path, label=link_label or link.title, icon=link.icon)
