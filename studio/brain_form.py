"""The New run page's brain section: the brain's settings (model, key, Vertex AI, base URL, per-role models,
timeouts), the price of every model in use and the cost cap, or a replay cassette. What blocks the start and
the settings themselves are decided in `mlestar_core.views.new_run`.

An API key typed here lives in its password widget's state for the session only; it is handed to
`resources.start_run` (the RunManager keeps it in memory), never to the config or the store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from mlestar_core.brains import DEFAULT_GEMINI_MODEL, DEFAULT_OPENAI_MODEL
from mlestar_core.brains.llm.pricing import GEMINI_3_SEARCH, PER_PROMPT
from mlestar_core.brains.llm.replay import CassetteError, load_cassette
from mlestar_core.brains.llm.secrets import key_source
from mlestar_core.brains.llm.settings import DEFAULT_OPENAI_BASE_URL, LLMSettings
from mlestar_core.prompts import ROLES
from mlestar_core.uploads import save_cassette_upload
from mlestar_core.views import new_run as view
from mlestar_core.views.common import md_escape

from .data_form import as_upload, saved
from .state import NewRunKeys as K

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
def _cassette_info(path: str) -> tuple[dict[str, Any], view.CassetteSummary]:
    cassette = load_cassette(path)  # validated when it was saved; cached so a rerun does not reread it
    return {"config": cassette.get("config") or {}}, view.cassette_summary(cassette)


def _key_field(brain: str, key: str, label: str, help_text: str) -> str | None:
    typed = st.text_input(label, key=key, type="password", help=help_text,
                          placeholder="leave empty to use the environment or secrets.toml")
    st.caption(view.key_source_text(brain, key_source(brain, typed)))
    return typed.strip() or None


PRICE_SEARCH = "new_run.llm.price_search."  # + brain + "." + model, beside K.PRICE_IN / K.PRICE_OUT


def _price_fields(brain: str, settings: LLMSettings, cost_cap: float | None) -> dict[str, list[float]]:
    """One row per model in use (per-role models too) with its rates: prefilled from the price table (or 0 on a
    local server), EMPTY when the model has no known price, never a silent $0. The widget keys include the
    model, so changing a model brings its own prices. Returns the prices that differ from the table's."""
    rows = view.model_prices(brain, settings)
    if not rows:
        return {}
    st.markdown("**Prices of the models in use** — for the cost estimate and the cost cap")
    entries = []
    for row in rows:
        price = row.price
        c0, c1, c2, c3 = st.columns([3, 1, 1, 1], vertical_alignment="bottom")
        c0.markdown(f"`{row.model}` — {row.who}")
        c0.caption(md_escape(row.text))
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
            st.warning(md_escape(view.unpriced_text(row.model, cost_cap)), icon=":material/price_change:")
    return view.form_prices(brain, settings, entries)


def _prices_and_cap(brain: str, settings: LLMSettings) -> float | None:
    """The prices of every model in use (into `settings.prices`) and the cost cap, explained."""
    prices_box = st.container()  # drawn above the cap, filled once the cap is known (its warnings depend on it)
    cap = _cost_cap(st.columns(3)[0])
    with prices_box:
        settings.prices = _price_fields(brain, settings, cap)
    if cap is not None:
        st.caption(md_escape(view.reserve_text(brain, settings)))
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
    return Advanced(view.role_models_from_records(records), url, float(timeout), int(retries))


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
    settings = view.llm_settings_from_form(
        "gemini", model=model, role_models=adv.role_models, base_url=adv.base_url, vertex=vertex, project=project,
        location=location, search=search, timeout=adv.timeout, max_retries=adv.retries)
    cap = _prices_and_cap("gemini", settings)
    blocker = view.new_run_blocker("gemini", key_source=key_source("gemini", api_key), vertex=vertex,
                                    project=project or os.environ.get("GOOGLE_CLOUD_PROJECT", "")) \
        or view.cost_blocker("gemini", settings, cap)
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
    settings = view.llm_settings_from_form(
        "openai", model=model, role_models=adv.role_models, base_url=base_url, timeout=adv.timeout,
        max_retries=adv.retries)
    cap = _prices_and_cap("openai", settings) if model else _cost_cap(st.columns(3)[0])
    return BrainChoice(settings, cap, api_key, None,
                       view.new_run_blocker("openai", base_url=base_url, model=model)
                       or view.cost_blocker("openai", settings, cap))


def _replay(store_root: Path, task_name: str) -> BrainChoice:
    upload = st.file_uploader("Cassette (.json)", key=K.CASSETTE,
                              help="A finished LLM run's answers: History → Download cassette. The replay "
                                   "needs no key and no network.")
    cap = _cost_cap(st.columns(3)[0])
    if upload is None:
        return BrainChoice(LLMSettings(), cap, None, None, view.new_run_blocker("replay"))
    try:
        path = saved("cassette", [upload], lambda: save_cassette_upload(store_root, as_upload(upload))[0])
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
    settings = view.llm_settings_from_form("replay", cassette=str(path))
    return BrainChoice(settings, cap, None, knobs, None)


def brain_settings(brain: str, store_root: Path, task_name: str) -> BrainChoice:
    if brain == "gemini":
        return _gemini()
    if brain == "openai":
        return _openai()
    if brain == "replay":
        return _replay(store_root, task_name)
    st.caption("Deterministic and free: scripts come from a built-in expert; no key, no network.")
    return BrainChoice()
