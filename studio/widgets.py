"""Small widgets and formatters shared by pages."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from typing import Any, NoReturn

import pandas as pd
import streamlit as st

from mlestar_core import sandbox
from mlestar_core.views import brain_in_use

from . import auth, nav, state
from .resources import get_services

BRAIN_LABELS = {"offline": "offline — deterministic, no LLM", "gemini": "gemini — Google Gemini",
                "openai": "openai — an OpenAI-compatible server", "replay": "replay — a recorded run's answers"}
STATUS_COLORS = {"running": "blue", "waiting": "orange", "paused": "gray", "created": "gray",
                 "finished": "green", "failed": "red", "stopped": "gray"}
STATUS_ICONS = {"running": "▶", "waiting": "⏸", "paused": "⏸", "created": "…",
                "finished": "✓", "failed": "✗", "stopped": "■"}
ACTIVE = ("created", "running", "waiting", "paused")


# -- formatting ------------------------------------------------------------------------------


def brain_label(brain: str) -> str:
    return BRAIN_LABELS.get(brain, brain)


def run_brain_text(brain: str, config: dict[str, Any]) -> str:
    """A run's brain for headers and the sidebar: the LLM brains with their model, offline described."""
    return BRAIN_LABELS["offline"] if brain == "offline" else brain_in_use(brain, config)


def fmt_score(value: float | None) -> str:
    return "—" if value is None else f"{value:.5g}"


def fmt_duration(seconds: float | None) -> str:
    if not seconds:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def fmt_time(ts: float | None) -> str:
    return "—" if not ts else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def run_metric(run: dict[str, Any]) -> str:
    try:
        return str(json.loads(run["task_json"]).get("metric", ""))
    except (ValueError, TypeError):
        return ""


def runs_frame(runs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Runs as a display table (one row per run, newest first as given)."""
    rows = [{
        "status": f"{STATUS_ICONS.get(r['status'], '')} {r['status']}",
        "task": r["name"],
        "brain": r["brain"],
        "metric": run_metric(r),
        "best score": r["best_score"],
        "hold-out score": r["holdout_score"],
        "duration": fmt_duration(r["time_used"]),
        "started": fmt_time(r["created"]),
        "run id": r["id"],
    } for r in runs]
    return pd.DataFrame(rows, columns=["status", "task", "brain", "metric", "best score", "hold-out score",
                                       "duration", "started", "run id"])


def run_label(run: dict[str, Any]) -> str:
    return f"{run['name']} · {run['status']} · {fmt_time(run['created'])} · {run['id']}"


# -- widgets ---------------------------------------------------------------------------------


def status_badge(status: str) -> None:
    st.badge(status, color=STATUS_COLORS.get(status, "gray"))  # type: ignore[arg-type]


def brain_indicator(run: dict[str, Any] | None) -> None:
    """The brain of the run in view (with its model), or what a new run gets by default."""
    if run is None:
        st.markdown("**Brain:** offline (default for new runs)")
        return
    try:
        config = json.loads(run.get("config_json") or "{}")
    except ValueError:
        config = {}
    st.markdown(f"**Brain:** {run_brain_text(run.get('brain') or 'offline', config)}")
    st.caption(f"of the run in view: {run['name']}")


@st.cache_resource(show_spinner=False)
def _sandbox_status(requested: str | None) -> sandbox.SandboxStatus:
    return sandbox.status(requested)  # probed once per process and mode, like the executor's


def sandbox_indicator() -> None:
    """Where generated scripts run: the sandbox in one line, or a warning saying what is not protected."""
    status = _sandbox_status(os.environ.get(sandbox.SANDBOX_ENV))
    if status.sandboxed:
        net = "no network" if status.network_isolated else "WITH network"
        st.markdown(f"**Sandbox:** bubblewrap · {net} · {status.memory_limit} memory cap",
                    help=status.message)
    else:
        st.warning("**Sandbox off:** generated scripts can read this machine's files (run store, hold-out "
                   "answers, secrets).", icon=":material/gpp_maybe:")
        with st.expander("What is and is not protected"):
            st.caption(status.message)


def run_picker(runs: Sequence[dict[str, Any]], *, key: str, label: str = "Run",
               default: str | None = None) -> str | None:
    """A selectbox of runs (returns the run id); defaults to `default` or the selected run."""
    ids = [r["id"] for r in runs]
    if not ids:
        return None
    labels = {r["id"]: run_label(r) for r in runs}
    if key in st.session_state and st.session_state[key] not in ids:
        del st.session_state[key]  # the run it held was deleted or filtered out
    wanted = default or state.selected_run_id()
    index = ids.index(wanted) if wanted in ids else 0
    return st.selectbox(label, ids, index=index, format_func=lambda i: labels.get(i, i), key=key)


def open_run(run_id: str, page: nav.PageDef = nav.RUN) -> NoReturn:
    """Select the run everywhere and go to its page (raises Streamlit's page-switch signal)."""
    state.select_run(run_id)
    st.switch_page(page.path, query_params={state.QUERY_RUN: run_id})
    raise AssertionError("unreachable")  # st.switch_page never returns


def require_run() -> dict[str, Any]:
    """Guard for run pages: the selected run's store row, or a helpful message and st.stop()."""
    run_id = state.selected_run_id()
    run = auth.visible_run(run_id)  # another user's run gets the same message as a deleted one
    if run is None:
        if run_id:
            st.warning(f"Run `{run_id}` is not in the store (it may have been deleted).")
            state.select_run(None)
        else:
            st.info("No run selected yet. Start one, or open a past run from History.")
        c1, c2, c3 = st.columns(3)
        c1.page_link(nav.NEW_RUN.path, label="Start a new run", icon=nav.NEW_RUN.icon)
        c2.page_link(nav.HOME.path, label="Start a demo run", icon=nav.HOME.icon)
        c3.page_link(nav.HISTORY.path, label="Open a past run", icon=nav.HISTORY.icon)
        st.stop()
    return run


def engine_error() -> None:
    """Say so, once per page, when runs cannot be started (e.g. the brain failed to load)."""
    error = get_services().error
    if error:
        st.error(f"{error}\n\nYou can still browse past runs; new runs cannot start until this is fixed.",
                 icon=":material/error:")
