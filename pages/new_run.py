"""New run: pick the data (CSV upload, task zip, or a demo), check what was derived, set knobs, pick the
brain and its settings, start."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from mlestar_core import views
from mlestar_core.brains import BRAINS, DEFAULT_GEMINI_MODEL, DEFAULT_OPENAI_MODEL
from mlestar_core.brains.llm.pricing import GEMINI_3_SEARCH, PER_PROMPT
from mlestar_core.brains.llm.replay import CassetteError, load_cassette, replay_config
from mlestar_core.brains.llm.secrets import key_source
from mlestar_core.brains.llm.settings import DEFAULT_OPENAI_BASE_URL, LLMSettings
from mlestar_core.config import RunConfig
from mlestar_core.metrics import METRICS
from mlestar_core.model import Task, TaskError
from mlestar_core.prompts import ROLES
from mlestar_core.task import describe_task
from mlestar_core.uploads import (
    MAX_UPLOAD_MB,
    UploadedFile,
    column_table,
    csv_columns,
    list_demo_tasks,
    load_uploaded_task,
    preview_head,
    save_cassette_upload,
    save_csv_upload,
    save_zip_upload,
    target_distribution,
    test_csv_path,
    train_csv_path,
)
from studio.auth import require_viewer, upload_root
from studio.resources import get_services, start_run
from studio.state import NewRunKeys as K
from studio.widgets import engine_error, open_run

AUTO = ""  # selectbox value meaning "derive it from the data and the description"
SOURCES = {"csv": "Upload a CSV", "zip": "Upload a task zip", "demo": "Bundled demo task"}
TASK_TYPES = [AUTO, "binary", "multiclass", "regression"]
_BRAIN_TITLES = {"offline": "Offline — deterministic, no LLM", "gemini": "Gemini (Google)",
                 "openai": "OpenAI-compatible server (Ollama, vLLM, LM Studio…)",
                 "replay": "Replay a recorded run (cassette)"}
BRAIN_CHOICES = {name: _BRAIN_TITLES.get(name, name) for name in BRAINS}
LIMIT = f"Up to {MAX_UPLOAD_MB} MB per file."
NO_TARGET = "cannot tell which column"  # load_task's message when the target cannot be derived
SAVED = "new_run.saved_uploads"  # upload file ids -> saved folder (not a widget key)


class SourceError(Exception):
    """Nothing to load yet (a required upload is missing); the message says what to do."""


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


# -- the data source -----------------------------------------------------------------------


def _as_upload(f: Any) -> UploadedFile | None:
    return None if f is None else UploadedFile(f.name, f.getvalue())


def _saved(kind: str, files: list[Any], save) -> Path:  # noqa: ANN001
    """Save each distinct upload once per session (hashing 200 MB on every rerun is wasteful)."""
    ids = (kind, *(getattr(f, "file_id", None) or (f.name, f.size) if f is not None else None for f in files))
    cache: dict = st.session_state.setdefault(SAVED, {})
    if ids not in cache or not cache[ids].exists():
        cache[ids] = save()
    return cache[ids]


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
                                   "sample_submission.csv, description.md)", key=K.ZIP, help=LIMIT)
        st.caption(LIMIT)
        description = _description_input("Leave empty to use the description.md inside the zip.")
        if archive is None:
            raise SourceError("Upload a .zip of a task folder to continue.")
        folder = _saved("zip", [archive], lambda: save_zip_upload(store_root, _as_upload(archive)))
        return folder, Path(archive.name).stem, description
    c1, c2, c3 = st.columns(3)
    train = c1.file_uploader("Training data (CSV, required)", key=K.TRAIN, help=LIMIT)
    test = c2.file_uploader("Test data (CSV, optional)", key=K.TEST, help=LIMIT)
    sample = c3.file_uploader("Sample submission (CSV, optional)", key=K.SAMPLE, help=LIMIT)
    st.caption(LIMIT + " Without a test CSV the run still builds and scores solutions (validation and a locked "
               "hold-out) but writes no submission.csv.")
    description = _description_input("The target column and the metric are read from it when it names them.")
    if train is None:
        raise SourceError("Upload a training CSV to continue.")
    folder = _saved("csv", [train, test, sample],
                    lambda: save_csv_upload(store_root, _as_upload(train), _as_upload(test), _as_upload(sample)))
    return folder, Path(train.name).stem, description


def _keep_valid(key: str, options: list[str]) -> None:
    # A new upload can drop the column a selectbox held; fall back to auto instead of failing.
    if st.session_state.get(key) not in options:
        st.session_state[key] = AUTO


def _fail(exc: Exception) -> None:
    if isinstance(exc, TaskError):
        st.error(str(exc), icon=":material/error:")
    else:
        st.error(f"Something went wrong reading this data ({type(exc).__name__}: {exc}). Check that the "
                 "files are valid CSVs (or a zip of a task folder) and try again.", icon=":material/error:")


# -- the brain and its settings ---------------------------------------------------------------


@dataclass
class BrainChoice:
    """What the brain section decided. `api_key` is a key typed on this page: it goes to start_run only."""

    settings: LLMSettings = field(default_factory=LLMSettings)
    cost_cap: float | None = None
    api_key: str | None = None
    cassette: dict[str, Any] | None = None  # {"config": the recording's knobs} for replay_config
    blocker: str | None = None  # why Start is disabled


@st.cache_data(show_spinner=False, max_entries=16)
def _cassette_info(path: str) -> tuple[dict[str, Any], views.CassetteSummary]:
    cassette = load_cassette(path)  # validated when it was saved; cached so a rerun does not reread it
    return {"config": cassette.get("config") or {}}, views.cassette_summary(cassette)


def _key_field(brain: str, key: str, label: str, help_text: str) -> str | None:
    typed = st.text_input(label, key=key, type="password", help=help_text,
                          placeholder="leave empty to use the environment or secrets.toml")
    st.caption(views.key_source_text(brain, key_source(brain, typed)))
    return typed.strip() or None


PRICE_SEARCH = "new_run.llm.price_search."  # + brain + "." + model, beside K.PRICE_IN / K.PRICE_OUT


def _price_fields(brain: str, settings: LLMSettings, cost_cap: float | None) -> dict[str, list[float]]:
    """One row per model in use (per-role models too) with its rates: prefilled from the price table (or 0 on a
    local server), EMPTY when the model has no known price, never a silent $0. The widget keys include the
    model, so changing a model brings its own prices. Returns the prices that differ from the table's."""
    rows = views.model_prices(brain, settings)
    if not rows:
        return {}
    st.markdown("**Prices of the models in use** — for the cost estimate and the cost cap")
    entries = []
    for row in rows:
        price = row.price
        c0, c1, c2, c3 = st.columns([3, 1, 1, 1], vertical_alignment="bottom")
        c0.markdown(f"`{row.model}` — {row.who}")
        c0.caption(views.md_escape(row.text))
        p_in = c1.number_input("USD / 1M in", 0.0, 1000.0, None if price is None else float(price.input),
                               step=0.05, format="%.3f", key=f"{K.PRICE_IN}{brain}.{row.model}",
                               placeholder="unknown", help="USD per 1M input tokens, search results fed back "
                               "included. Prefilled from the built-in price table; saved with the run only when you "
                               "change it.")
        p_out = c2.number_input("USD / 1M out", 0.0, 1000.0, None if price is None else float(price.output),
                                step=0.05, format="%.3f", key=f"{K.PRICE_OUT}{brain}.{row.model}",
                                placeholder="unknown", help="USD per 1M output tokens, thinking tokens included.")
        p_search = None
        if row.search:
            per_prompt = price is not None and price.search_basis == PER_PROMPT
            p_search = c3.number_input(
                f"USD / 1k {'prompts' if per_prompt else 'queries'}", 0.0, 1000.0,
                float(price.search if price is not None else GEMINI_3_SEARCH), step=1.0, format="%.2f",
                key=f"{PRICE_SEARCH}{brain}.{row.model}",
                help="Grounding with Google Search, USD per 1000: Gemini 3 models bill each search query the model "
                     "runs, Gemini 2.x each grounded prompt. The free quota is not subtracted: the estimate errs high.")
        entries.append((row.model, p_in, p_out, p_search))
        if price is None and (p_in is None or p_out is None):
            st.warning(views.md_escape(views.unpriced_text(row.model, cost_cap)), icon=":material/price_change:")
    return views.form_prices(brain, settings, entries)


def _prices_and_cap(brain: str, settings: LLMSettings) -> float | None:
    """The prices of every model in use (into `settings.prices`) and the cost cap, explained."""
    prices_box = st.container()  # drawn above the cap, filled once the cap is known (its warnings depend on it)
    cap = _cost_cap(st.columns(3)[0])
    with prices_box:
        settings.prices = _price_fields(brain, settings, cap)
    if cap is not None:
        st.caption(views.md_escape(views.reserve_text(brain, settings)))
    return cap


@dataclass
class Advanced:
    role_models: dict[str, str]
    base_url: str
    timeout: float
    retries: int


def _advanced(brain: str, *, base_url: bool) -> Advanced:
    """Per-role models, (gemini) base URL, timeout and retries."""
    d = LLMSettings()
    url = ""
    with st.expander("Advanced"):
        st.markdown("**Per-role models** — leave empty to use the model above.")
        table = st.data_editor(pd.DataFrame({"role": list(ROLES), "model": [""] * len(ROLES)}),
                               key=f"{K.ROLE_MODELS}{brain}", hide_index=True, disabled=["role"], height=250,
                               width="stretch",
                               column_config={"model": st.column_config.TextColumn("model", help="e.g. a Pro "
                                              "model for the planners, a Lite one for the checks")})
        a1, a2, a3 = st.columns([2, 1, 1])
        if base_url:
            url = a1.text_input("Base URL", key=f"{K.BASE_URL}{brain}", placeholder="Google's endpoint",
                                help="Another endpoint: a proxy, or a local test server. Empty = Google's.")
        timeout = a2.number_input("Timeout (s)", 5, 3600, int(d.timeout), step=15, key=f"{K.LLM_TIMEOUT}{brain}",
                                  help="Per call.")
        retries = a3.number_input("Max retries", 0, 20, d.max_retries, key=f"{K.LLM_RETRIES}{brain}",
                                  help="Retries of a call on rate limits, server errors and timeouts (with "
                                       "back-off) before the run pauses and waits for you to resume it.")
    records = table.to_dict("records") if isinstance(table, pd.DataFrame) else []
    return Advanced(views.role_models_from_records(records), url, float(timeout), int(retries))


def _cost_cap(col: Any) -> float | None:
    cap = col.number_input("Cost cap (USD)", 0.01, 100_000.0, None, step=0.5, format="%.2f", key=K.COST_CAP,
                           placeholder="no cap",
                           help="Empty = no cap. Before each brain call its worst case (the prompt and the whole "
                                "output limit at the model's rates, plus search fees) is reserved against the cap; "
                                "a call that would not fit is not made and the run wraps up with the best solution "
                                "so far. Every model in use needs a known price under a cap.")
    return None if cap is None else float(cap)


def _gemini() -> BrainChoice:
    c1, c2 = st.columns(2)
    with c1:
        model = st.text_input("Model", DEFAULT_GEMINI_MODEL, key=K.GEMINI_MODEL,
                              help="Any Gemini model name; per-role models are under Advanced.").strip()
        t1, t2 = st.columns(2)
        search = t1.toggle("Google Search grounding", True, key=K.SEARCH,
                           help="Retrieval asks Gemini with the Google Search tool: models are found on the "
                                "current web and each card lists its sources. Off: the model's own knowledge.")
        vertex = t2.toggle("Use Vertex AI", False, key=K.VERTEX,
                           help="Through a Google Cloud project with Application Default Credentials, "
                                "instead of an API key.")
    with c2:
        api_key = _key_field("gemini", K.GEMINI_KEY, "API key", "A Gemini API key (Google AI Studio). Not "
                             "needed with Vertex AI.")
    project = location = ""
    if vertex:
        v1, v2 = st.columns(2)
        env_project = os.environ.get("GOOGLE_CLOUD_PROJECT", "")
        project = v1.text_input("Google Cloud project", key=K.PROJECT, placeholder=env_project or "my-project",
                                help="Empty: GOOGLE_CLOUD_PROJECT from the environment.").strip()
        location = v2.text_input("Location", LLMSettings().location, key=K.LOCATION)
    adv = _advanced("gemini", base_url=True)
    settings = views.llm_settings_from_form(
        "gemini", model=model, role_models=adv.role_models, base_url=adv.base_url, vertex=vertex, project=project,
        location=location, search=search, timeout=adv.timeout, max_retries=adv.retries)
    cap = _prices_and_cap("gemini", settings)
    blocker = views.new_run_blocker("gemini", key_source=key_source("gemini", api_key), vertex=vertex,
                                    project=project or os.environ.get("GOOGLE_CLOUD_PROJECT", "")) \
        or views.cost_blocker("gemini", settings, cap)
    return BrainChoice(settings, cap, api_key, None, blocker)


def _openai() -> BrainChoice:
    c1, c2 = st.columns(2)
    with c1:
        base_url = st.text_input("Base URL", DEFAULT_OPENAI_BASE_URL, key=K.OPENAI_URL,
                                 help="The server's OpenAI-compatible API (…/v1): Ollama, vLLM, LM Studio, "
                                      "llama.cpp or a hosted one.")
        model = st.text_input("Model", DEFAULT_OPENAI_MODEL, key=K.OPENAI_MODEL,
                              help="The model name the server serves.").strip()
    with c2:
        api_key = _key_field("openai", K.OPENAI_KEY, "API key (optional)",
                             "Only if the server wants one (sent as a Bearer token).")
    st.caption("Retrieval uses the bundled knowledge base of proven models (no web search): an "
               "OpenAI-compatible server has no search tool.")
    adv = _advanced("openai", base_url=False)
    settings = views.llm_settings_from_form(
        "openai", model=model, role_models=adv.role_models, base_url=base_url, timeout=adv.timeout,
        max_retries=adv.retries)
    cap = _prices_and_cap("openai", settings) if model else _cost_cap(st.columns(3)[0])
    return BrainChoice(settings, cap, api_key, None,
                       views.new_run_blocker("openai", base_url=base_url, model=model)
                       or views.cost_blocker("openai", settings, cap))


def _replay(store_root: Path, task_name: str) -> BrainChoice:
    upload = st.file_uploader("Cassette (.json)", key=K.CASSETTE,
                              help="A finished LLM run's answers: History → Download cassette. The replay "
                                   "needs no key and no network.")
    cap = _cost_cap(st.columns(3)[0])
    if upload is None:
        return BrainChoice(LLMSettings(), cap, None, None, views.new_run_blocker("replay"))
    try:
        path = _saved("cassette", [upload], lambda: save_cassette_upload(store_root, _as_upload(upload))[0])
        knobs, summary = _cassette_info(str(path))
    except CassetteError as exc:
        st.error(f"This file cannot be replayed: {exc}", icon=":material/error:")
        return BrainChoice(LLMSettings(), cap, None, None, "Upload a valid cassette to replay a recorded run.")
    st.success(summary.text, icon=":material/album:")
    st.info(f"At start, the recording's algorithm knobs replace the settings above ({summary.knobs_text}), so "
            "the replay asks the same questions in the same steps. Workers, timeouts and the time budget stay "
            "as set.", icon=":material/sync_alt:")
    if summary.task and summary.task != task_name:
        st.warning(f"The cassette was recorded on task **{summary.task}**; this run's task is **{task_name}**. "
                   "A replay only matches on the same data.", icon=":material/warning:")
    settings = views.llm_settings_from_form("replay", cassette=str(path))
    return BrainChoice(settings, cap, None, knobs, None)


def _brain_settings(brain: str, store_root: Path, task_name: str) -> BrainChoice:
    if brain == "gemini":
        return _gemini()
    if brain == "openai":
        return _openai()
    if brain == "replay":
        return _replay(store_root, task_name)
    st.caption("Deterministic and free: scripts come from a built-in expert; no key, no network.")
    return BrainChoice()


# -- the page ------------------------------------------------------------------------------

viewer = require_viewer()
st.title("New run")
engine_error()
services = get_services()

st.subheader("1 · Data")
kind = st.radio("Source", list(SOURCES), format_func=SOURCES.get, horizontal=True, key=K.SOURCE,
                label_visibility="collapsed")
try:
    folder, default_name, description = _source(kind, upload_root())  # per user when signed in
    train_path = str(train_csv_path(folder))
    test_path = test_csv_path(folder)
    head = _head(train_path)
    columns = _columns(train_path)
    test_columns = tuple(_columns(str(test_path))) if test_path is not None else None
except SourceError as exc:
    st.info(str(exc), icon=":material/upload_file:")
    st.stop()
except Exception as exc:  # TaskError: a bad upload; anything else: said plainly, never a traceback
    _fail(exc)
    st.stop()

st.caption(f"First {len(head)} rows of {Path(train_path).name}")
st.dataframe(head, hide_index=True, width="stretch")

st.subheader("2 · Task")
st.caption("Derived from the files and the description; override anything that is wrong.")
_keep_valid(K.TARGET, [AUTO, *columns])
o1, o2, o3 = st.columns(3)
target = o1.selectbox("Target column", [AUTO, *columns], key=K.TARGET,
                      format_func=lambda c: c or "Auto-detect", help="The column to predict.")
task_type = o2.selectbox("Task type", TASK_TYPES, key=K.TASK_TYPE, format_func=lambda t: t or "Auto-detect",
                         help="Binary or multiclass classification, or regression.")
metric = o3.selectbox("Metric", [AUTO, *METRICS], key=K.METRIC,
                      format_func=lambda m: f"{METRICS[m].title} ({m})" if m else "Auto-detect",
                      help="How solutions are scored; read from the description's Evaluation section.")

task: Task | None = None
try:
    task = _load(str(folder), default_name, description, target, task_type, metric)
except TaskError as exc:
    if not target and str(exc).startswith(NO_TARGET):  # not an error: the user has to say it
        st.warning("Pick the **target column** above: nothing in the files or the description names it.",
                   icon=":material/ads_click:")
    else:
        _fail(exc)
except Exception as exc:
    _fail(exc)

if task is not None:
    m = METRICS[task.metric]
    d1, d2, d3, d4 = st.columns(4)
    d1.metric("Target", task.target)
    d2.metric("Task type", task.task_type)
    d3.metric("Metric", m.title + (" (default)" if task.metric_defaulted else ""),
              help="The description names no metric, so the default for this task type is used: choose "
                   "another in Settings." if task.metric_defaulted else "Named in the description or chosen by you.")
    d4.metric("Better is", "higher ↑" if task.higher_is_better else "lower ↓",
              help="Set by the metric: a metric is either maximised or minimised.")
    st.caption(f"{task.n_train_rows:,} training rows, {task.n_features} features"
               + (f", {task.n_test_rows:,} test rows" if task.test_file else ", no test set")
               + (f"; id column `{task.id_column}`" if task.id_column else ""))
    for note in task.notes:
        st.caption(f"Note: {note}")
    with st.expander("Task summary (what the agent reads)"):
        st.code(describe_task(task), language=None, wrap_lines=True)

tab_cols, tab_target = st.columns([3, 2], gap="large")
with tab_cols:
    st.markdown("**Columns** — kind and missing values")
    try:
        table = _column_table(train_path, task.target if task else (target or None),
                              task.id_column if task else None, test_columns)
        st.dataframe(table, hide_index=True, width="stretch", height=300,
                     column_config={"missing %": st.column_config.ProgressColumn(
                         format="%.1f%%", min_value=0, max_value=100)})
    except Exception as exc:
        _fail(exc)
with tab_target:
    if task is not None:
        st.markdown(f"**Target** — `{task.target}`")
        dist = _distribution(train_path, task.target, task.task_type)
        if dist.kind == "histogram":
            fig = px.histogram(dist.frame, x="value", nbins=40, labels={"value": task.target})
        else:
            fig = px.bar(dist.frame, x="class", y="count", labels={"class": task.target})
            fig.update_xaxes(type="category")  # class labels 0/1 are names, not positions on a line
        fig.update_layout(height=300, margin={"l": 10, "r": 10, "t": 10, "b": 10}, bargap=0.05)
        st.plotly_chart(fig, width="stretch", key="new_run.target_chart")

if task is None:
    st.stop()

st.subheader("3 · Settings")
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
workers = k7.number_input("Workers", 1, 64, min(d.workers, 64), key=K.WORKERS, help="Scripts run at the same time.")
seed = k8.number_input("Seed", 0, 2**31 - 1, d.seed, key=K.SEED, help="Same seed, same splits and choices.")
with st.expander("More settings"):
    m1, m2, m3 = st.columns(3)
    script_timeout = m1.number_input("Script timeout (s)", 10, 24 * 3600, int(d.script_timeout), step=30,
                                     key=K.SCRIPT_TIMEOUT, help="A script running longer is killed.")
    data_usage = m2.checkbox("Data-usage check", d.use_data_usage_checker, key=K.DATA_USAGE,
                             help="Check that the solution uses all the provided data.")
    leakage = m3.checkbox("Leakage check", d.use_leakage_checker, key=K.LEAKAGE,
                          help="Check the preprocessing for target leakage and fix it.")

b1, b2 = st.columns([1, 2], gap="large")
with b1:
    run_name = st.text_input("Run name", key=K.NAME, placeholder=task.name, help="Defaults to the task name.")
with b2:
    constraints = st.text_area("Pinned constraints (one per line)", key=K.CONSTRAINTS, height=122,
                               placeholder="e.g. do not use the column `city`\nkeep training under a minute",
                               help="Given to every planner for the whole run.")
approval = st.checkbox("Require my approval for each refinement plan", d.require_approval, key=K.APPROVAL,
                       help="The run waits on the Run dashboard until you approve, edit or reject a plan.")

st.subheader("4 · Brain")
r1, r2 = st.columns([1, 2], gap="large", vertical_alignment="bottom")
brain = r1.selectbox("Brain", list(BRAIN_CHOICES), format_func=BRAIN_CHOICES.get, key=K.BRAIN,
                     help="Who retrieves the models and writes the plans and the code.")
r2.caption(f"**{brain}**: {BRAINS[brain]}.")
with st.container(border=brain != "offline"):
    choice = _brain_settings(brain, upload_root(), task.name)

blocker = choice.blocker or (None if services.manager is not None else "The run engine is not available.")
if choice.blocker:
    st.warning(choice.blocker, icon=":material/key:" if brain == "gemini" and " key" in choice.blocker
               else ":material/info:")
if st.button("Start run", key=K.START, type="primary", disabled=blocker is not None, icon=":material/rocket_launch:"):
    config = RunConfig(
        num_models=int(num_models), outer_steps=int(outer), inner_steps=int(inner), num_solutions=int(solutions),
        ensemble_rounds=int(rounds), time_budget=float(budget) or None, workers=int(workers), seed=int(seed),
        script_timeout=float(script_timeout), use_data_usage_checker=bool(data_usage),
        use_leakage_checker=bool(leakage), brain=brain, llm=choice.settings, cost_cap=choice.cost_cap,
        require_approval=bool(approval),
        constraints=[line.strip() for line in constraints.splitlines() if line.strip()],
    )
    if choice.cassette is not None:  # the recording's algorithm knobs, so the replay asks the same questions
        config = replay_config(choice.cassette, config)
    with st.spinner("Starting…"):
        run_id, error = start_run(task, config, name=run_name.strip() or None, api_key=choice.api_key,
                                  owner=viewer.owner)
    if run_id:
        open_run(run_id)
    st.error(error)
