"""New run (app_pages/new_run.py): the data sources and what was derived from the data, the knobs -> RunConfig,
the brain form -> LLMSettings, what still blocks the start, the price of every model in use, and a replay
cassette's summary."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..brains import BRAINS
from ..brains.llm.settings import LLMSettings
from ..metrics import METRICS
from ..model import Task, TaskError
from ..uploads import MAX_UPLOAD_MB
from .common import Row, fmt, fmt_usd

if TYPE_CHECKING:
    from ..config import RunConfig

AUTO = ""  # selectbox value meaning "derive it from the data and the description"
SOURCES = {"csv": "Upload a CSV", "zip": "Upload a task zip", "demo": "Bundled demo task"}
TASK_TYPES = [AUTO, "binary", "multiclass", "regression"]
_BRAIN_TITLES = {"offline": "Offline — deterministic, no LLM", "gemini": "Gemini (Google)",
                 "openai": "OpenAI-compatible server (Ollama, vLLM, LM Studio…)",
                 "replay": "Replay a recorded run (cassette)"}
BRAIN_CHOICES = {name: _BRAIN_TITLES.get(name, name) for name in BRAINS}
LIMIT = f"Up to {MAX_UPLOAD_MB} MB per file."
NO_TARGET = "cannot tell which column"  # load_task's message when the target cannot be derived


# -- the data and what was derived from it ---------------------------------------------------------


def read_error(exc: Exception) -> str:
    """What the page says when the data cannot be read: a TaskError's own message, anything else plainly."""
    if isinstance(exc, TaskError):
        return str(exc)
    return (f"Something went wrong reading this data ({type(exc).__name__}: {exc}). Check that the files are valid "
            "CSVs (or a zip of a task folder) and try again.")


def target_missing(exc: Exception, target: str) -> bool:
    """Not an error: nothing names the target and the user has not picked one yet."""
    return isinstance(exc, TaskError) and not target and str(exc).startswith(NO_TARGET)


def option_label(value: str, titles: dict[str, str] | None = None) -> str:
    """A selectbox option: AUTO reads "Auto-detect"."""
    return (titles or {}).get(value, value) if value else "Auto-detect"


def metric_option(metric: str) -> str:
    return f"{METRICS[metric].title} ({metric})" if metric else "Auto-detect"


@dataclass(frozen=True)
class TaskSummary:
    """What was derived from the data, as the page shows it."""

    metric: str  # its title, "(default)" when no description named it
    metric_help: str
    better: str
    rows: str  # 'N training rows, F features, T test rows; id column `id`'


def task_summary(task: Task) -> TaskSummary:
    m = METRICS[task.metric]
    return TaskSummary(
        metric=m.title + (" (default)" if task.metric_defaulted else ""),
        metric_help="The description names no metric, so the default for this task type is used: choose another "
                    "in Settings." if task.metric_defaulted else "Named in the description or chosen by you.",
        better="higher ↑" if task.higher_is_better else "lower ↓",
        rows=(f"{task.n_train_rows:,} training rows, {task.n_features} features"
              + (f", {task.n_test_rows:,} test rows" if task.test_file else ", no test set")
              + (f"; id column `{task.id_column}`" if task.id_column else "")))


# -- the knobs -> RunConfig ------------------------------------------------------------------------


@dataclass(frozen=True)
class Knobs:
    """The algorithm and machine settings typed on the page."""

    num_models: int
    outer_steps: int
    inner_steps: int
    num_solutions: int
    ensemble_rounds: int
    time_budget: float  # 0 = no limit
    workers: int
    seed: int
    script_timeout: float
    use_data_usage_checker: bool
    use_leakage_checker: bool
    executor: str = "local"  # where scripts run: "local" or "dask://host:port[?shared=1]"


def parse_constraints(text: str) -> list[str]:
    """One constraint per non-empty line."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def auto_approve_seconds(approval: bool, minutes: float | None) -> float | None:
    """RunConfig.auto_approve_after from "Decide for me after N minutes": seconds, only with approval on (the
    field is off without it, but may still hold a number); empty or not positive: wait for ever (None)."""
    return float(minutes) * 60.0 if approval and minutes is not None and minutes > 0 else None


def run_config(knobs: Knobs, *, brain: str, settings: LLMSettings, cost_cap: float | None, approval: bool,
               constraints: str, cassette: dict[str, Any] | None = None,
               auto_approve_minutes: float | None = None) -> RunConfig:
    """The run's settings from the page; with a replay cassette, the recording's algorithm knobs win (so the
    replay asks the same questions in the same steps)."""
    from ..brains.llm.replay import replay_config
    from ..config import RunConfig

    config = RunConfig(
        num_models=int(knobs.num_models), outer_steps=int(knobs.outer_steps), inner_steps=int(knobs.inner_steps),
        num_solutions=int(knobs.num_solutions), ensemble_rounds=int(knobs.ensemble_rounds),
        time_budget=float(knobs.time_budget) or None, workers=int(knobs.workers), seed=int(knobs.seed),
        script_timeout=float(knobs.script_timeout), use_data_usage_checker=bool(knobs.use_data_usage_checker),
        use_leakage_checker=bool(knobs.use_leakage_checker), brain=brain, llm=settings, cost_cap=cost_cap,
        require_approval=bool(approval), auto_approve_after=auto_approve_seconds(approval, auto_approve_minutes),
        constraints=parse_constraints(constraints), executor=knobs.executor.strip() or "local")
    return replay_config(cassette, config) if cassette is not None else config


def start_blocker(brain_blocker: str | None, engine: bool) -> str | None:
    """Why Start is disabled: the brain's settings first, then a missing run engine."""
    return brain_blocker or (None if engine else "The run engine is not available.")


def blocker_icon(brain: str, blocker: str) -> str:
    return ":material/key:" if brain == "gemini" and " key" in blocker else ":material/info:"


def brain_caption(brain: str) -> str:
    return f"**{brain}**: {BRAINS[brain]}."

# -- a new run's brain: the form -> LLMSettings, and what still blocks the start -------------------


def key_source_text(brain: str, source: str) -> str:
    """`secrets.key_source` in a sentence for the key field's caption (never the key itself)."""
    where = {"gemini": "GEMINI_API_KEY or GOOGLE_API_KEY", "openai": "OPENAI_API_KEY"}.get(brain, "the key")
    memory = "A key typed here is kept in this app's memory only: never stored, logged or put in the run's settings."
    if source.startswith("environment variable "):
        return f"Using {source.removeprefix('environment variable ')} from the environment. {memory}"
    if source == ".streamlit/secrets.toml":
        return f"Using the key in .streamlit/secrets.toml. {memory}"
    if source.startswith("entered on this page"):
        return memory
    return f"No key found: type one, or set {where} in the environment or .streamlit/secrets.toml. {memory}"


def new_run_blocker(brain: str, *, key_source: str = "none found", vertex: bool = False, project: str = "",
                    base_url: str = "", model: str = "", cassette: bool = False) -> str | None:
    """Why the New run page cannot start this brain yet (None: it can). `project` is the typed project
    or GOOGLE_CLOUD_PROJECT; `cassette` whether a valid cassette was uploaded."""
    if brain == "gemini":
        if vertex:
            if not project.strip():
                return ("Vertex AI needs a Google Cloud project: type it above or set GOOGLE_CLOUD_PROJECT "
                        "(credentials come from Application Default Credentials).")
        elif key_source == "none found":
            return ("Gemini needs an API key: type it above, or set GEMINI_API_KEY (or GOOGLE_API_KEY) in the "
                    "environment or .streamlit/secrets.toml — or use Vertex AI.")
    elif brain == "openai":
        if not base_url.strip():
            return "Set the base URL of the OpenAI-compatible server (e.g. http://localhost:11434/v1)."
        if not model.strip():
            return "Set the model name the server serves (e.g. llama3.1)."
    elif brain == "replay" and not cassette:
        return "Upload a cassette (.json, from History → Download cassette) to replay a recorded run."
    return None


def role_models_from_records(records: Iterable[Row]) -> dict[str, str]:
    """The per-role model overrides table ({"role", "model"} rows) -> {role: model} for the filled ones."""
    out = {}
    for r in records:
        model = r.get("model")
        if isinstance(model, str) and model.strip() and r.get("role"):
            out[str(r["role"])] = model.strip()
    return out


def llm_settings_from_form(brain: str, *, model: str = "", role_models: dict[str, str] | None = None,
                           base_url: str = "", vertex: bool = False, project: str = "", location: str = "",
                           search: bool = True, timeout: float | None = None, max_retries: int | None = None,
                           price: tuple[float, float] | None = None,
                           default_price: tuple[float, float] | None = None, price_model: str = "",
                           cassette: str = "") -> LLMSettings:
    """LLMSettings from the New run page's fields. `price` (USD per 1M tokens in, out) is for `price_model`
    (default: `model`) and goes into `prices` only when it differs from the price table's (`default_price`;
    None when the table does not know the model)."""
    d = LLMSettings()
    if brain == "offline":
        return d
    model = model.strip()
    price_model = price_model.strip() or model
    prices: dict[str, list[float]] = {}
    if price is not None and price_model and tuple(float(x) for x in price) != tuple(default_price or (0.0, 0.0)):
        prices[price_model] = [float(price[0]), float(price[1])]
    return LLMSettings(
        model=model, role_models=dict(role_models or {}), base_url=base_url.strip(),
        vertex=bool(vertex) if brain == "gemini" else False, project=project.strip() if brain == "gemini" else "",
        location=(location.strip() or d.location) if brain == "gemini" else d.location,
        search=bool(search) if brain == "gemini" else d.search,
        timeout=float(timeout) if timeout else d.timeout,
        max_retries=int(max_retries) if max_retries is not None else d.max_retries,
        prices=prices, cassette=cassette if brain == "replay" else "")


# -- cost: the price of every model in use, what keeps a cost cap from holding ---------------------


TYPICAL_PROMPT_CHARS = 12_000  # a prompt with a whole script in it: the size the reserve example on New run assumes


@dataclass(frozen=True)
class ModelPrice:
    """A model a run would ask, the roles that ask it, and its rates (`price` None: no known price)."""

    model: str
    who: str  # the roles that ask it: 'every role', 'every other role', 'debug, merge'
    price: Any  # brains.llm.pricing.Price | None
    search: bool  # it answers the grounded retrieval call (Google Search fees apply)

    @property
    def known(self) -> bool:
        return self.price is not None

    @property
    def text(self) -> str:
        """'gemini-3.5-flash at $1.50/$9.00 per 1M tokens in/out, search $14 per 1000 queries' (or why unknown)."""
        from ..brains.llm.pricing import rate_text

        return rate_text(self.model, self.price, search=self.search)


def model_prices(brain: str, settings: LLMSettings) -> list[ModelPrice]:
    """Every model an LLM brain would ask with these settings (per-role models included), with its price."""
    from ..brains.llm.pricing import models_in_use, price_book
    from ..config import default_model

    if brain not in ("gemini", "openai"):
        return []
    default = default_model(brain)
    book = price_book(brain, settings)
    main = settings.model.strip() or default
    retriever = settings.model_for("retrieve_models", default).strip()
    grounded = brain == "gemini" and settings.search
    overridden = any(rm.strip() and rm.strip() != main for rm in settings.role_models.values())
    rows = []
    for m in models_in_use(brain, settings, default):
        roles = [r for r, rm in settings.role_models.items() if rm.strip() == m]
        if m == main:
            roles = ["every other role" if overridden else "every role"]
        rows.append(ModelPrice(m, ", ".join(roles), book.price(m), grounded and m == retriever))
    return rows


def unpriced_text(model: str, cost_cap: float | None) -> str:
    """What the New run page says about a model without a known price."""
    if cost_cap:
        return (f"Model {model} has no known price: give its price (USD per 1M input/output tokens) or remove the "
                "cost cap.")
    return (f"Model {model} has no known price: its calls count as $0 in the cost estimate. Give its price (USD "
            "per 1M input/output tokens) to estimate them; a cost cap needs it.")


def cost_blocker(brain: str, settings: LLMSettings, cost_cap: float | None) -> str | None:
    """Why the cost cap could not hold with these settings (the New run page disables Start), or None."""
    from ..config import RunConfig, cost_problems

    problems = cost_problems(RunConfig(brain=brain, llm=settings, cost_cap=cost_cap))
    if not problems:
        return None
    text = "; ".join(problems)
    return text[0].upper() + text[1:] + "."


def form_prices(brain: str, settings: LLMSettings,
                entries: Iterable[tuple[str, float | None, float | None, float | None]]) -> dict[str, list[float]]:
    """The prices typed on the New run page, as `llm.prices`: (model, USD/1M in, USD/1M out, USD/1000 searches
    or None) per model. A model's price is kept only when both token rates are given and something differs
    from what it would cost anyway (the built-in table, or free on a local server); the search fee is kept
    only when it differs too."""
    from ..brains.llm.pricing import GEMINI_3_SEARCH, price_book

    book = price_book(brain, LLMSettings.from_dict({**settings.to_dict(), "prices": {}}))
    out: dict[str, list[float]] = {}
    for model, p_in, p_out, p_search in entries:
        if not model or p_in is None or p_out is None:
            continue
        default = book.price(model)
        default_search = default.search if default is not None else GEMINI_3_SEARCH
        new_search = p_search is not None and float(p_search) != default_search
        if default is not None and (float(p_in), float(p_out)) == (default.input, default.output) and not new_search:
            continue
        out[model] = [float(p_in), float(p_out), *([float(p_search)] if new_search else [])]
    return out


def reserve_text(brain: str, settings: LLMSettings) -> str:
    """How the cost cap holds, with what one call reserves on these settings' models (for the cap's caption)."""
    from ..brains.llm.budget import worst_case
    from ..brains.llm.pricing import price_book

    book = price_book(brain, settings)
    every = model_prices(brain, settings)
    unpriced = [r.model for r in every if not r.known]
    if unpriced:
        return (f"A call's worst case cannot be reserved against the cap while {', '.join(unpriced)} "
                f"{'has' if len(unpriced) == 1 else 'have'} no price.")
    rows = [r for r in every if not r.price.free]
    if not rows:
        return "The models in use cost nothing here: a cost cap only matters for priced models."
    each = ", ".join(f"{fmt_usd(worst_case(r.model, TYPICAL_PROMPT_CHARS, settings.max_output_tokens, False, book))}"
                     f" on {r.model}" for r in rows)
    text = (f"Before each call its worst case is held against the cap (the prompt at a token per byte, and the "
            f"whole {settings.max_output_tokens:,}-token output limit at the output rate): up to {each} for a "
            f"{TYPICAL_PROMPT_CHARS:,}-character prompt")
    grounded = [r for r in rows if r.search]
    if grounded:
        r = grounded[0]
        text += (f", {fmt_usd(worst_case(r.model, TYPICAL_PROMPT_CHARS, settings.max_output_tokens, True, book))} "
                 "for the retrieval call with Google Search")
    return (text + ". A call that would not fit is not made and the run wraps up with its best solution; when a "
            "call returns, only what it cost is kept.")


# -- replay: what a cassette recorded --------------------------------------------------------------


@dataclass(frozen=True)
class CassetteSummary:
    """What a cassette recorded, for the New run page."""

    brain: str
    run_id: str
    name: str
    task: str
    metric: str
    calls: int
    best_score: float | None
    knobs: dict[str, Any]

    @property
    def text(self) -> str:
        best = f", best score {fmt(self.best_score)}" + (f" ({self.metric})" if self.metric else "") \
            if self.best_score is not None else ""
        return (f"Recorded with the **{self.brain}** brain on task **{self.task or '?'}** "
                f"(run `{self.run_id or '?'}`): {self.calls} answered call{'s' if self.calls != 1 else ''}{best}.")

    @property
    def knobs_text(self) -> str:
        k = self.knobs
        names = [("num_models", "M"), ("outer_steps", "T"), ("inner_steps", "K"), ("num_solutions", "L"),
                 ("ensemble_rounds", "R"), ("seed", "seed")]
        return ", ".join(f"{label} = {k[key]}" for key, label in names if key in k) or "none recorded"


def cassette_summary(cassette: dict[str, Any]) -> CassetteSummary:
    rec = cassette.get("recorded") or {}
    best = rec.get("best_score")
    return CassetteSummary(brain=str(rec.get("brain") or "?"), run_id=str(rec.get("run_id") or ""),
                           name=str(rec.get("name") or ""), task=str(rec.get("task") or ""),
                           metric=str(rec.get("metric") or ""), calls=len(cassette.get("calls") or []),
                           best_score=float(best) if isinstance(best, int | float) else None,
                           knobs=dict(cassette.get("config") or {}))
