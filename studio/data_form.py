"""The New run page's data and task widgets: the data source (CSV upload, task zip or demo), the derived
task with overrides, the columns and target panels, and the knobs. What the page decides from them lives in
`mlestar_core.views.new_run`; the reads are cached because reruns happen on every click.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.express as px
import streamlit as st

from mlestar_core import dask_executor
from mlestar_core.config import RunConfig
from mlestar_core.metrics import METRICS
from mlestar_core.model import Task
from mlestar_core.task import describe_task
from mlestar_core.uploads import (
    UploadedFile,
    column_table,
    csv_columns,
    list_demo_tasks,
    load_uploaded_task,
    preview_head,
    save_csv_upload,
    save_zip_upload,
    target_distribution,
    test_csv_path,
    train_csv_path,
)
from mlestar_core.views import new_run as view

from .state import NewRunKeys as K

SAVED = "new_run.saved_uploads"  # upload file ids -> saved folder (not a widget key)


class SourceError(Exception):
    """Nothing to load yet (a required upload is missing); the message says what to do."""


@dataclass(frozen=True)
class DataSource:
    folder: Path
    default_name: str  # the run's name unless the user gives one
    description: str | None  # overrides the description in the folder
    train_path: str
    head: Any  # the first rows, for the preview
    columns: list[str]
    test_columns: tuple[str, ...] | None  # None: no test file

    @property
    def train_name(self) -> str:
        return Path(self.train_path).name


# -- cached reads: reruns happen on every click, the data does not change ----------------------


@st.cache_data(show_spinner="Reading the data…", max_entries=32)
def _load(folder: str, name: str, description: str | None, target: str, task_type: str, metric: str) -> Task:
    return load_uploaded_task(folder, name=name, description=description, target=target,
                              task_type=task_type, metric=metric)


@st.cache_data(show_spinner=False, max_entries=32)
def _head(path: str) -> Any:
    return preview_head(path)


@st.cache_data(show_spinner=False, max_entries=32)
def _columns(path: str) -> list[str]:
    return csv_columns(path)


@st.cache_data(show_spinner="Profiling columns…", max_entries=32)
def _column_table(path: str, target: str | None, id_column: str | None, test_columns: tuple[str, ...] | None):
    return column_table(path, target=target, id_column=id_column,
                        test_columns=list(test_columns) if test_columns is not None else None)


@st.cache_data(show_spinner=False, max_entries=32)
def _distribution(path: str, target: str, task_type: str):
    return target_distribution(path, target, task_type)


# -- uploads -----------------------------------------------------------------------------------


def as_upload(f: Any) -> UploadedFile | None:
    return None if f is None else UploadedFile(f.name, f.getvalue())


def saved(kind: str, files: list[Any], save: Callable[[], Path]) -> Path:
    """Save each distinct upload once per session (hashing 200 MB on every rerun is wasteful)."""
    ids = (kind, *(getattr(f, "file_id", None) or (f.name, f.size) if f is not None else None for f in files))
    cache: dict = st.session_state.setdefault(SAVED, {})
    if ids not in cache or not cache[ids].exists():
        cache[ids] = save()
    return cache[ids]


def show_error(exc: Exception) -> None:
    st.error(view.read_error(exc), icon=":material/error:")


# -- 1 · data -----------------------------------------------------------------------------------


def _description_input(help_text: str) -> str | None:
    text = st.text_area("Task description (optional)", key=K.DESCRIPTION, height=120, help=help_text,
                        placeholder="Paste the competition text: what to predict, how it is scored…")
    upload = st.file_uploader("…or upload it (.md / .txt)", key=K.DESCRIPTION_FILE)
    if text.strip():
        return text
    if upload is not None:
        return upload.getvalue().decode("utf-8", errors="replace")
    return None


def _source(kind: str, store_root: Path) -> tuple[Path, str, str | None]:
    """(task folder, default run name, description override) for the chosen source."""
    if kind == "demo":
        demos = list_demo_tasks()
        if not demos:
            raise SourceError("No demo tasks are bundled with this installation.")
        name = st.selectbox("Demo task", list(demos), key=K.DEMO)
        return demos[name], name, None
    if kind == "zip":
        archive = st.file_uploader("Task folder as a .zip (train.csv, optional test.csv, "
                                   "sample_submission.csv, description.md)", key=K.ZIP, help=view.LIMIT)
        st.caption(view.LIMIT)
        description = _description_input("Leave empty to use the description.md inside the zip.")
        if archive is None:
            raise SourceError("Upload a .zip of a task folder to continue.")
        folder = saved("zip", [archive], lambda: save_zip_upload(store_root, as_upload(archive)))
        return folder, Path(archive.name).stem, description
    c1, c2, c3 = st.columns(3)
    train = c1.file_uploader("Training data (CSV, required)", key=K.TRAIN, help=view.LIMIT)
    test = c2.file_uploader("Test data (CSV, optional)", key=K.TEST, help=view.LIMIT)
    sample = c3.file_uploader("Sample submission (CSV, optional)", key=K.SAMPLE, help=view.LIMIT)
    st.caption(view.LIMIT + " Without a test CSV the run still builds and scores solutions (validation and a locked "
               "hold-out) but writes no submission.csv.")
    description = _description_input("The target column and the metric are read from it when it names them.")
    if train is None:
        raise SourceError("Upload a training CSV to continue.")
    folder = saved("csv", [train, test, sample],
                   lambda: save_csv_upload(store_root, as_upload(train), as_upload(test), as_upload(sample)))
    return folder, Path(train.name).stem, description


def data_source(kind: str, store_root: Path) -> DataSource:
    """The chosen source's widgets, its files saved under `store_root`, and a first look at the training CSV.
    Raises SourceError (nothing to load yet), TaskError (a bad upload) or anything reading it raised."""
    folder, default_name, description = _source(kind, store_root)
    train_path = str(train_csv_path(folder))
    test_path = test_csv_path(folder)
    return DataSource(folder, default_name, description, train_path, _head(train_path), _columns(train_path),
                      tuple(_columns(str(test_path))) if test_path is not None else None)


# -- 2 · task -----------------------------------------------------------------------------------


def _keep_valid(key: str, options: list[str]) -> None:
    # A new upload can drop the column a selectbox held; fall back to auto instead of failing.
    if st.session_state.get(key) not in options:
        st.session_state[key] = view.AUTO


def task_overrides(columns: list[str]) -> tuple[str, str, str]:
    """(target, task type, metric) picked by the user; AUTO for each one left to the data and description."""
    _keep_valid(K.TARGET, [view.AUTO, *columns])
    o1, o2, o3 = st.columns(3)
    target = o1.selectbox("Target column", [view.AUTO, *columns], key=K.TARGET, format_func=view.option_label,
                          help="The column to predict.")
    task_type = o2.selectbox("Task type", view.TASK_TYPES, key=K.TASK_TYPE, format_func=view.option_label,
                             help="Binary or multiclass classification, or regression.")
    metric = o3.selectbox("Metric", [view.AUTO, *METRICS], key=K.METRIC, format_func=view.metric_option,
                          help="How solutions are scored; read from the description's Evaluation section.")
    return target, task_type, metric


def load_task(source: DataSource, target: str, task_type: str, metric: str) -> Task | None:
    """The task derived from the source and the overrides, or None (with a warning or an error saying why)."""
    try:
        return _load(str(source.folder), source.default_name, source.description, target, task_type, metric)
    except Exception as exc:  # TaskError: a bad upload; anything else: said plainly, never a traceback
        if view.target_missing(exc, target):  # not an error: the user has to say it
            st.warning("Pick the **target column** above: nothing in the files or the description names it.",
                       icon=":material/ads_click:")
        else:
            show_error(exc)
    return None


def task_panel(task: Task) -> None:
    """What was derived: target, type, metric and its direction, the data's size, notes, the agent's summary."""
    summary = view.task_summary(task)
    d1, d2, d3, d4 = st.columns(4)
    d1.metric("Target", task.target)
    d2.metric("Task type", task.task_type)
    d3.metric("Metric", summary.metric, help=summary.metric_help)
    d4.metric("Better is", summary.better, help="Set by the metric: a metric is either maximised or minimised.")
    st.caption(summary.rows)
    for note in task.notes:
        st.caption(f"Note: {note}")
    with st.expander("Task summary (what the agent reads)"):
        st.code(describe_task(task), language=None, wrap_lines=True)


def columns_and_target(source: DataSource, task: Task | None, target: str) -> None:
    """Each column's kind and missing values; the target's distribution once the task is known."""
    tab_cols, tab_target = st.columns([3, 2], gap="large")
    with tab_cols:
        st.markdown("**Columns** — kind and missing values")
        try:
            table = _column_table(source.train_path, task.target if task else (target or None),
                                  task.id_column if task else None, source.test_columns)
            st.dataframe(table, hide_index=True, width="stretch", height=300,
                         column_config={"missing %": st.column_config.ProgressColumn(
                             format="%.1f%%", min_value=0, max_value=100)})
        except Exception as exc:
            show_error(exc)
    with tab_target:
        if task is not None:
            st.markdown(f"**Target** — `{task.target}`")
            dist = _distribution(source.train_path, task.target, task.task_type)
            if dist.kind == "histogram":
                fig = px.histogram(dist.frame, x="value", nbins=40, labels={"value": task.target})
            else:
                fig = px.bar(dist.frame, x="class", y="count", labels={"class": task.target})
                fig.update_xaxes(type="category")  # class labels 0/1 are names, not positions on a line
            fig.update_layout(height=300, margin={"l": 10, "r": 10, "t": 10, "b": 10}, bargap=0.05)
            st.plotly_chart(fig, width="stretch", key="new_run.target_chart")


# -- 3 · settings -------------------------------------------------------------------------------


def knobs() -> view.Knobs:
    """M, T, K, L, R, the time budget, workers, seed, and (under More settings) timeout and checks."""
    d = RunConfig()
    k1, k2, k3, k4 = st.columns(4)
    num_models = k1.number_input("M · models", 1, 10, d.num_models, key=K.NUM_MODELS,
                                 help="Models retrieved; each becomes one initial solution.")
    outer = k2.number_input("T · outer steps", 0, 10, d.outer_steps, key=K.OUTER,
                            help="Ablation → pick the most impactful block → refine it; per solution track.")
    inner = k3.number_input("K · attempts per block", 1, 10, d.inner_steps, key=K.INNER,
                            help="Refinement plans tried on the chosen block; the best is kept.")
    solutions = k4.number_input("L · solution tracks", 1, 5, d.num_solutions, key=K.SOLUTIONS,
                                help="Independent solutions refined in parallel, then ensembled.")
    k5, k6, k7, k8 = st.columns(4)
    rounds = k5.number_input("R · ensemble rounds", 0, 10, d.ensemble_rounds, key=K.ENSEMBLE,
                             help="Ensemble strategies tried over the L solutions (0 = no ensemble).")
    budget = k6.number_input("Time budget (s)", 0, 7 * 24 * 3600, int(d.time_budget or 0), step=60,
                             key=K.TIME_BUDGET, help="Seconds for the whole run, 0 = no limit. When it runs out "
                             "the run wraps up with the best solution so far.")
    workers = k7.number_input("Workers", 1, 64, min(d.workers, 64), key=K.WORKERS,
                              help="Scripts run at the same time on this machine (on a Dask cluster, its worker "
                                   "threads set that).")
    seed = k8.number_input("Seed", 0, 2**31 - 1, d.seed, key=K.SEED, help="Same seed, same splits and choices.")
    with st.expander("More settings"):
        m1, m2, m3 = st.columns(3)
        script_timeout = m1.number_input("Script timeout (s)", 10, 24 * 3600, int(d.script_timeout), step=30,
                                         key=K.SCRIPT_TIMEOUT, help="A script running longer is killed.")
        data_usage = m2.checkbox("Data-usage check", d.use_data_usage_checker, key=K.DATA_USAGE,
                                 help="Check that the solution uses all the provided data.")
        leakage = m3.checkbox("Leakage check", d.use_leakage_checker, key=K.LEAKAGE,
                              help="Check the preprocessing for target leakage and fix it.")
        where = executor_field()
    return view.Knobs(num_models, outer, inner, solutions, rounds, budget, workers, seed, script_timeout,
                      data_usage, leakage, executor=where)


@st.cache_data(ttl=30, show_spinner=False)
def cluster_status(spec: str) -> tuple[str, str | None]:
    """(where scripts run, why they cannot run there): a cluster is asked at most every 30 s."""
    return dask_executor.cluster_status(spec)


def executor_field() -> str:
    """Where scripts run: this machine, or the workers of a Dask scheduler (docs/scaling.md)."""
    spec = st.text_input("Where scripts run", value=dask_executor.default_spec(), key=K.EXECUTOR,
                         help="`local`: this machine. `dask://host:8786`: the workers of a Dask scheduler, same "
                              "sandbox and limits; add `?shared=1` when every worker mounts the run store at the same "
                              "path. Default: $MLESTAR_EXECUTOR or local.").strip()
    line, problem = cluster_status(spec)
    if problem:
        st.warning(problem, icon=":material/lan:")
    else:
        st.caption(f"Scripts run on {line}.")
    return spec


def executor_problem(spec: str) -> str | None:
    """Why Start is disabled by the place scripts would run (None: they can run there)."""
    return cluster_status(spec.strip())[1]


def run_options(task_name: str) -> tuple[str, str, bool, float | None]:
    """(run name, pinned constraints as typed, approval required, minutes after which a plan nobody decided on is
    approved automatically: None = wait for ever)."""
    b1, b2 = st.columns([1, 2], gap="large")
    with b1:
        run_name = st.text_input("Run name", key=K.NAME, placeholder=task_name, help="Defaults to the task name.")
    with b2:
        constraints = st.text_area("Pinned constraints (one per line)", key=K.CONSTRAINTS, height=122,
                                   placeholder="e.g. do not use the column `city`\nkeep training under a minute",
                                   help="Given to every planner for the whole run.")
    a1, a2 = st.columns([1, 2], gap="large", vertical_alignment="bottom")
    approval = a1.checkbox("Require my approval for each refinement plan", RunConfig().require_approval,
                           key=K.APPROVAL, help="The run waits on the Run dashboard until you approve, edit or "
                           "reject a plan. Time waiting for you is not counted against the time budget.")
    auto_minutes = a2.number_input(
        "Decide for me after N minutes", min_value=0.5, max_value=7 * 24 * 60.0, value=None, step=0.5,
        format="%g", key=K.AUTO_APPROVE, disabled=not approval, placeholder="empty: wait for my decision",
        help="With approval on: a plan nobody decided on within this many minutes is approved by the run itself "
             "(shown as approved automatically, never as your approval). Empty: the run waits as long as it takes.")
    return run_name, constraints, approval, auto_minutes
