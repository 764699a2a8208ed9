"""Small widgets shared by pages (the formatting they use lives in mlestar_core.views.common)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, NoReturn

import streamlit as st

from mlestar_core import dask_executor, mlflow_log, sandbox
from mlestar_core.exports import cassette_json, final_files, zip_run_artifacts
from mlestar_core.store import Store
from mlestar_core.views import attempts as attempts_view
from mlestar_core.views import history as history_view
from mlestar_core.views.common import ACTIVE_STATUSES, HoldoutCheck, fmt_score, md_escape, run_brain_text, run_label

from . import auth, nav, state
from .resources import get_services

STATUS_COLORS = {"running": "blue", "waiting": "orange", "paused": "gray", "created": "gray",
                 "finished": "green", "failed": "red", "stopped": "gray"}
ACTIVE = ACTIVE_STATUSES


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


def executor_indicator(run: dict[str, Any] | None) -> None:
    """Where the scripts of the run in view (or of a new run, by default) run: this machine or a Dask cluster."""
    from .data_form import cluster_status

    spec = dask_executor.run_spec(run.get("config_json")) if run else dask_executor.default_spec()
    line, problem = cluster_status(spec)
    whose = "of the run in view" if run else "for new runs"
    if problem:
        st.warning(f"**Scripts run on:** {line} ({whose}). {problem}", icon=":material/lan:")
    else:
        st.markdown(f"**Scripts run on:** {line}", help=f"Where generated scripts run, {whose}. A Dask cluster's "
                    "workers use the same sandbox and limits as this machine (docs/scaling.md).")


def mlflow_indicator(run: dict[str, Any] | None) -> None:
    """Whether finished runs go to MLflow (MLFLOW_TRACKING_URI), and the MLflow run of the run in view."""
    uri = mlflow_log.configured_uri()
    shown = mlflow_log.logged(get_services().store.events_of_kind(run["id"], "mlflow_logged")) if run else None
    if uri is None and shown is None:
        return  # off, and nothing logged: say nothing
    if uri is not None:
        st.markdown(f"**MLflow:** logging finished runs to `{mlflow_log.safe_uri(uri)}`",
                    help="MLFLOW_TRACKING_URI is set: each finished run gets an MLflow run with its config, "
                         "per-step scores, solution and report (docs/handoff-mlflow.md).")
    if shown:
        rid = str(shown.get("mlflow_run_id"))
        text = f"[{rid}]({shown['url']})" if shown.get("url") else f"`{rid}`"
        st.caption(f"MLflow run of the run in view: {text} (experiment {md_escape(str(shown.get('experiment_name')))}"
                   f", {md_escape(str(shown.get('tracking_uri')))})")


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


def flash(key: str) -> None:
    """Show, once, the message an action left under `key` before the rerun it caused."""
    message = st.session_state.pop(key, None)
    if message:
        st.success(message, icon=":material/check_circle:")


def script_tabs(code: str, executions: Sequence[dict[str, Any]]) -> None:
    """A script's code, and each of its executions with its output."""
    code_tab, out_tab = st.tabs(["Code", "Executions"])
    with code_tab, st.container(height=480, border=False):
        st.code(code, language="python", line_numbers=True)
    with out_tab:
        if not executions:
            st.caption("This script has not run.")
        for e in executions:
            st.markdown(f"**{e['purpose'] or 'search'}** · exit {e['exit_code']} · score {fmt_score(e['score'])} · "
                        f"{(e['wall_time'] or 0):.1f} s · peak {(e['peak_memory_mb'] or 0):.0f} MB"
                        + (" · timed out" if e["timed_out"] else "")
                        + (" · memory cap hit" if e["memory_exceeded"] else ""))
            with st.expander("stdout", expanded=False):
                st.code((e["stdout"] or "")[-6000:] or "(empty)", language=None)
            if e["stderr"]:
                with st.expander("stderr", expanded=e["exit_code"] != 0):
                    st.code(e["stderr"][-6000:], language=None)


def diff_tabs(html: str, unified: str) -> None:
    """A block's change: side by side (the HTML diff) and as a unified diff."""
    side, plain = st.tabs(["Side by side", "Unified diff"])
    with side, st.container(height=520 if html.count("<tr") > 30 else "content", border=False):
        st.html(html)
    with plain:
        st.code(unified or "(no change in the block)", language="diff")


def attempt_diff(diffs: attempts_view.AttemptDiffs) -> None:
    """An attempt's change: why it failed (with the diff), the main diff and, in an expander, a second one (a
    human's edit the debugger repaired: what the human wrote against the start)."""
    if diffs.error:
        (st.error if diffs.failed else st.warning)(md_escape(diffs.error), icon=":material/error:" if diffs.failed
                                                   else ":material/build:")

    def panel(p: attempts_view.DiffPanel) -> None:
        diff_tabs(attempts_view.side_by_side_html(p.diff.before, p.diff.after, p.left, p.right), p.diff.unified)

    if diffs.main.title:
        st.markdown(f"**{md_escape(diffs.main.title[0].upper() + diffs.main.title[1:])}**")
    panel(diffs.main)
    if diffs.more is not None:
        with st.expander(diffs.more.title[0].upper() + diffs.more.title[1:]):
            panel(diffs.more)


def run_downloads(store: Store, run: dict[str, Any], *, key: str) -> None:
    """A run's final files, a zip of everything, and (an LLM run) its cassette, each a download button."""
    st.markdown("**Downloads**")
    files = final_files(store, run["id"])
    dl = st.columns(4)
    for i, name in enumerate(history_view.FINAL_FILES):
        path = files.get(name)
        dl[i].download_button(name, data=path.read_bytes() if path else b"", file_name=name,
                              mime=history_view.MIME[name], key=f"{key}.{name}", disabled=path is None,
                              width="stretch", icon=":material/download:", on_click="ignore",
                              help=None if path else "Written when the run finishes.")
    dl[3].download_button("All artifacts (.zip)", data=lambda: zip_run_artifacts(store, run["id"]),
                          file_name=f"mlestar-run-{run['id']}.zip", mime="application/zip", key=f"{key}.zip",
                          width="stretch", icon=":material/folder_zip:", on_click="ignore",
                          help="Scripts, executions' outputs, final files and the run's settings.")
    if history_view.offers_cassette(run):
        calls = sum(int(u["calls"] or 0) for u in store.brain_usage(run["id"]))
        c1, c2 = st.columns([1, 3], vertical_alignment="center")
        c1.download_button("Download cassette", data=lambda: cassette_json(store, run["id"]),
                           file_name=f"mlestar-cassette-{run['id']}.json", mime="application/json",
                           key=f"{key}.cassette", width="stretch", icon=":material/album:", on_click="ignore",
                           disabled=calls == 0, help=history_view.cassette_help(calls))
        c2.caption(history_view.REPLAY_HINT)
    handoff_downloads(store, run, key=key)


def handoff_downloads(store: Store, run: dict[str, Any], *, key: str) -> None:
    """The hand-off: the final solution as a notebook, and a zip that reproduces the submission with one command.
    Built when clicked (the notebook embeds the solution; the zip, the task's files)."""
    from mlestar_core.bundle import build_bundle
    from mlestar_core.notebook import notebook_bytes

    offer = history_view.handoff(store, run)
    h1, h2, _ = st.columns([1, 1, 2])
    h1.download_button("Notebook (.ipynb)", data=lambda: notebook_bytes(store, run["id"]),
                       file_name=offer.notebook_name, mime="application/x-ipynb+json", key=f"{key}.notebook",
                       width="stretch", icon=":material/article:", on_click="ignore", disabled=not offer.ready,
                       help=offer.why_not or history_view.NOTEBOOK_HELP)
    h2.download_button("Reproduction bundle (.zip)", data=lambda: build_bundle(store, run["id"]),
                       file_name=offer.bundle_name, mime="application/zip", key=f"{key}.bundle", width="stretch",
                       icon=":material/deployed_code:", on_click="ignore", disabled=not offer.ready,
                       help=offer.why_not or history_view.BUNDLE_HELP)


def holdout_message(check: HoldoutCheck) -> None:
    """Validation vs hold-out in words: a warning when the hold-out drifted, else a caption."""
    if check.drift:
        st.warning(check.message, icon=":material/warning:")
    else:
        st.caption(check.message)
