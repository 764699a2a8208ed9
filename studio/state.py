"""Session-state keys, named once, and their initialisation.

The selected run lives in `st.session_state[RUN_ID]` and in the URL (`?run=<id>`), so a reload
or a shared link keeps it. The URL wins when both are set: a link such as the approval banner's
(`page_link(..., query_params={"run": id})`) is an explicit choice. Switching pages in the
sidebar drops query parameters; `init_state()` (called by app.py on every rerun) puts it back.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

RUN_ID = "selected_run_id"
QUERY_RUN = "run"


class HomeKeys:
    DEMO_PICK = "home.demo_pick"
    DEMO_START = "home.demo_start"
    WATCH_DEMO = "home.watch_demo"
    OPEN_PREFIX = "home.open."  # + run id


class NewRunKeys:
    SOURCE = "new_run.source"
    TRAIN = "new_run.train"
    TEST = "new_run.test"
    SAMPLE = "new_run.sample"
    ZIP = "new_run.zip"
    DEMO = "new_run.demo"
    DESCRIPTION = "new_run.description"
    DESCRIPTION_FILE = "new_run.description_file"
    NAME = "new_run.name"
    TARGET = "new_run.target"
    TASK_TYPE = "new_run.task_type"
    METRIC = "new_run.metric"
    NUM_MODELS = "new_run.num_models"
    OUTER = "new_run.outer_steps"
    INNER = "new_run.inner_steps"
    SOLUTIONS = "new_run.num_solutions"
    ENSEMBLE = "new_run.ensemble_rounds"
    TIME_BUDGET = "new_run.time_budget"
    WORKERS = "new_run.workers"
    SEED = "new_run.seed"
    SCRIPT_TIMEOUT = "new_run.script_timeout"
    EXECUTOR = "new_run.executor"
    DATA_USAGE = "new_run.data_usage"
    LEAKAGE = "new_run.leakage"
    BRAIN = "new_run.brain"
    # Brain settings. The API key fields are password widgets: a typed key lives in that widget's own
    # state for the session only and is handed to RunManager.start, never to the config or the store.
    GEMINI_MODEL = "new_run.gemini.model"
    GEMINI_KEY = "new_run.gemini.api_key"
    VERTEX = "new_run.gemini.vertex"
    PROJECT = "new_run.gemini.project"
    LOCATION = "new_run.gemini.location"
    SEARCH = "new_run.gemini.search"
    OPENAI_URL = "new_run.openai.base_url"
    OPENAI_MODEL = "new_run.openai.model"
    OPENAI_KEY = "new_run.openai.api_key"
    ROLE_MODELS = "new_run.llm.role_models."  # + brain
    BASE_URL = "new_run.llm.base_url."  # + brain
    LLM_TIMEOUT = "new_run.llm.timeout."  # + brain
    LLM_RETRIES = "new_run.llm.max_retries."  # + brain
    PRICE_IN = "new_run.llm.price_in."  # + brain + "." + model: fresh defaults when the model changes
    PRICE_OUT = "new_run.llm.price_out."  # + brain + "." + model
    COST_CAP = "new_run.llm.cost_cap"
    CASSETTE = "new_run.replay.cassette"
    APPROVAL = "new_run.require_approval"
    AUTO_APPROVE = "new_run.auto_approve_minutes"  # "decide for me after N minutes" (RunConfig: seconds)
    CONSTRAINTS = "new_run.constraints"
    START = "new_run.start"


class HistoryKeys:
    CASSETTE = "history.download.cassette"
    STATUS = "history.status"
    BRAIN = "history.brain"
    SEARCH = "history.search"
    PICK = "history.pick"
    OPEN = "history.open"
    RESUME = "history.resume"
    STOP = "history.stop"
    DELETE = "history.delete"
    DELETE_CONFIRM = "history.delete_confirm"
    DELETE_CANCEL = "history.delete_cancel"
    CONFIRMING = "history.confirming_delete"  # run id whose delete awaits confirmation
    FLASH = "history.flash"  # a message to show after the rerun an action caused
    COMPARE_A = "history.compare_a"
    COMPARE_B = "history.compare_b"


class PredictKeys:
    RUN = "predict.run"
    TEMPLATE = "predict.template"
    UPLOAD = "predict.upload"
    DROP_EXTRA = "predict.drop_extra"
    PREDICT = "predict.predict"
    RESULT = "predict.result"  # (upload key, PredictOutcome): the last prediction, shown while its upload stays
    DOWNLOAD = "predict.download"


def _defaults() -> dict[str, Any]:
    # Built per call so no session shares a mutable default with another.
    return {RUN_ID: None, HistoryKeys.CONFIRMING: None, HistoryKeys.FLASH: None}


def init_state() -> None:
    """Give every key its default once per session and sync the selected run with the URL."""
    for key, value in _defaults().items():
        st.session_state.setdefault(key, value)
    from_url = st.query_params.get(QUERY_RUN)
    if from_url and from_url != st.session_state[RUN_ID]:
        st.session_state[RUN_ID] = from_url
    elif not from_url and st.session_state[RUN_ID]:
        st.query_params[QUERY_RUN] = st.session_state[RUN_ID]


def selected_run_id() -> str | None:
    return st.session_state.get(RUN_ID) or None


def select_run(run_id: str | None) -> None:
    """Make run_id the selected run for every page (None clears it)."""
    st.session_state[RUN_ID] = run_id
    if run_id:
        st.query_params[QUERY_RUN] = run_id
    elif QUERY_RUN in st.query_params:
        del st.query_params[QUERY_RUN]
