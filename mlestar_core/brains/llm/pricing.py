"""Estimated cost of a call, per model: USD per million tokens in and out, and the web-search fee.

The built-in rates are the Gemini Developer API's standard paid rates for prompts up to 200k tokens
(the Pro models' higher rate above 200k is applied too), from https://ai.google.dev/gemini-api/docs/pricing,
checked 2026-11-30. They are estimates, not an invoice: free tiers and the free monthly search
quota are not subtracted (so the estimate errs high), and prices change. A run's `llm.prices`
overrides or extends the table: {"model": [usd_per_1M_in, usd_per_1M_out]} or
[in, out, usd_per_1000_searches] (CLI --price / --prices, the New run page).

What a call is billed for:
- input tokens, tool-use prompt tokens included (the search results fed back to the model);
- output tokens, thinking tokens included (billed at the output rate);
- Grounding with Google Search. Gemini 3 models (3, 3.1, 3.5, ...) bill each search query the model
  runs ($14 / 1000 queries: basis `per_query`); Gemini 2.x models bill each grounded prompt, however
  many queries it ran ($35 / 1000 prompts: basis `per_prompt`).

A model is priced by its exact name (a path prefix such as "models/" is ignored) or by a known name
plus a version or date suffix ("gemini-3.5-flash-001", "gemini-3-pro-preview-11-2025"). Nothing
else matches: an alias like "gemini-flash-latest" or "gemini-pro-latest" points at whatever model
Google moves it to, and "-lite", "-preview", "-image" are other models with other prices, so they
are unknown until the user prices them. gemini-3.5-pro had no published rate when the table was
checked: it is unknown too. A model without a price cannot run under a cost cap (see
`mlestar_core.config.cost_problems`); without a cap its calls count as $0 and the pages say so.
A model served by an OpenAI-compatible server on this machine (localhost) costs nothing unless priced.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from .settings import DEFAULT_OPENAI_BASE_URL, LLMSettings

PER_QUERY = "per_query"  # the search fee is per web-search query the model ran (Gemini 3)
PER_PROMPT = "per_prompt"  # the search fee is per grounded prompt, whatever the number of queries (Gemini 2.x)
LONG_PROMPT_TOKENS = 200_000  # Pro models bill a higher rate for prompts above this
GEMINI_3_SEARCH = 14.0  # USD per 1000 search queries
GEMINI_2_SEARCH = 35.0  # USD per 1000 grounded prompts

# Where a price comes from (Price.source), shown next to it.
TABLE, USER, LOCAL, REPLAY = "built-in table", "your price", "local server", "replay"


@dataclass(frozen=True)
class Price:
    """The rates of one model. `search` is USD per 1000 searches on `search_basis`; `long_*` are the rates
    for prompts above LONG_PROMPT_TOKENS (None: the same rates)."""

    input: float  # USD per 1M input tokens
    output: float  # USD per 1M output tokens (thinking included)
    search: float = 0.0
    search_basis: str = PER_QUERY
    long_input: float | None = None
    long_output: float | None = None
    source: str = TABLE

    def rates(self, tokens_in: int) -> tuple[float, float]:
        """(USD per 1M in, USD per 1M out) for a prompt of `tokens_in` tokens."""
        if tokens_in > LONG_PROMPT_TOKENS:
            return (self.input if self.long_input is None else self.long_input,
                    self.output if self.long_output is None else self.long_output)
        return self.input, self.output

    def search_cost(self, queries: int, searched: bool) -> float:
        """USD of the web search of one call that ran `queries` queries (`searched`: it was grounded, even if
        the number of queries is not known: then one query is counted)."""
        if not self.search or not (searched or queries > 0):
            return 0.0
        units = 1 if self.search_basis == PER_PROMPT else max(1, int(queries))
        return self.search * units / 1000

    @property
    def free(self) -> bool:
        return self.input == 0 and self.output == 0 and self.search == 0


def _gemini3(pin: float, pout: float, long: tuple[float, float] | None = None) -> Price:
    return Price(pin, pout, GEMINI_3_SEARCH, PER_QUERY, *(long or (None, None)))


def _gemini2(pin: float, pout: float, long: tuple[float, float] | None = None) -> Price:
    return Price(pin, pout, GEMINI_2_SEARCH, PER_PROMPT, *(long or (None, None)))


DEFAULT_PRICES: dict[str, Price] = {
    # The standard rate; the introductory $0.75 / $3.75 (until 2026-12-31) is not applied: the estimate errs high.
    "gemini-3.8-flash": _gemini3(1.50, 7.50),
    "gemini-3.5-flash": _gemini3(1.50, 9.00),
    "gemini-3.5-flash-lite": _gemini3(0.50, 3.00),
    "gemini-3.1-pro-preview": _gemini3(2.00, 12.00, (4.00, 18.00)),
    "gemini-3.1-flash-lite": _gemini3(0.25, 1.50),
    "gemini-3.1-flash-lite-preview": _gemini3(0.25, 1.50),
    "gemini-3-pro-preview": _gemini3(2.00, 12.00, (4.00, 18.00)),
    "gemini-3-flash-preview": _gemini3(0.50, 3.00),
    "gemini-2.5-pro": _gemini2(1.25, 10.00, (2.50, 15.00)),
    "gemini-2.5-flash": _gemini2(0.30, 2.50),
    "gemini-2.5-flash-lite": _gemini2(0.10, 0.40),
    "gemini-2.0-flash": _gemini2(0.10, 0.40),
    "gemini-2.0-flash-lite": _gemini2(0.075, 0.30),
}

# What may follow a known name and still be the same model: a version or a date stamp only.
_VERSION_SUFFIX = re.compile(r"-(?:\d{3}|\d{2}-\d{2}|\d{2}-\d{4}|\d{4}-\d{2}-\d{2}|\d{8})")


def _bare(model: str) -> str:
    """'models/gemini-3.5-flash', 'publishers/google/models/gemini-3.5-flash' -> 'gemini-3.5-flash'."""
    return model.strip().rsplit("/", 1)[-1].lower()


def _match(model: str, table: Mapping[str, Any]) -> Any:
    """The entry of `model`: its exact name, else its bare name, else the longest known name it extends by a
    version or date suffix only. None when nothing matches (aliases, other variants, unknown models)."""
    if model in table:
        return table[model]
    bare = {_bare(k): v for k, v in table.items()}
    name = _bare(model)
    if name in bare:
        return bare[name]
    matches = [k for k in bare if name.startswith(k) and _VERSION_SUFFIX.fullmatch(name[len(k):])]
    return bare[max(matches, key=len)] if matches else None


def parse_price(value: Any, base: Price | None = None) -> Price:
    """A user's price: [in, out] or [in, out, usd_per_1000_searches] (numbers >= 0). Without a search fee
    the table's fee for the same model is kept (`base`), else the Gemini 3 fee (per query) is assumed.
    Raises ValueError with the reason."""
    if not isinstance(value, list | tuple) or len(value) not in (2, 3):
        raise ValueError("a price is [USD per 1M input tokens, USD per 1M output tokens] with an optional third "
                         "number, USD per 1000 web searches")
    try:
        numbers = [float(x) for x in value]
    except (TypeError, ValueError):
        raise ValueError(f"a price must be numbers, not {list(value)!r}") from None
    if any(x < 0 or x != x or x == float("inf") for x in numbers):
        raise ValueError(f"a price must be finite numbers >= 0, not {numbers}")
    if len(numbers) == 3:
        basis = base.search_basis if base is not None else PER_QUERY
        return Price(numbers[0], numbers[1], numbers[2], basis, source=USER)
    search, basis = (base.search, base.search_basis) if base is not None else (GEMINI_3_SEARCH, PER_QUERY)
    return Price(numbers[0], numbers[1], search, basis, source=USER)


def price_problems(overrides: Mapping[str, Any] | None) -> list[str]:
    """What is wrong with a user's price table (empty: nothing)."""
    problems = []
    for model, value in (overrides or {}).items():
        try:
            parse_price(value)
        except ValueError as e:
            problems.append(f"the price of {model}: {e}")
    return problems


def is_local_url(url: str) -> bool:
    """Whether an OpenAI-compatible server's URL is on this machine (localhost, 127.0.0.0/8, ::1)."""
    host = (urlparse(url if "//" in url else f"http://{url}").hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PriceBook:
    """The rates a run's brain pays: the built-in table, the user's prices over it, and (`free`) a reason
    why any other model costs nothing (a local server, a replay)."""

    def __init__(self, overrides: Mapping[str, Any] | None = None, *, free: str = "") -> None:
        self.free = free
        self.table: dict[str, Price] = dict(DEFAULT_PRICES)
        for model, value in (overrides or {}).items():
            try:  # under its bare name, so "models/x" and "x" are one model and the user's price wins
                self.table[_bare(model)] = parse_price(value, _match(model, DEFAULT_PRICES))
            except ValueError:
                continue  # refused where the run is created (config.cost_problems); ignored here

    def price(self, model: str, fallback: str = "") -> Price | None:
        """The rates of `model` (else of `fallback`, e.g. the model asked for when the server reports an
        unknown version); None when neither is known and nothing makes it free."""
        for name in (model, fallback):
            if name:
                found = _match(name, self.table)
                if found is not None:
                    return found
        return Price(0.0, 0.0, source=self.free) if self.free else None

    def known(self, model: str) -> bool:
        return self.price(model) is not None


def price_book(brain: str, settings: LLMSettings) -> PriceBook:
    """The rates for a run of `brain` with these settings."""
    if brain == "replay":
        return PriceBook(free=REPLAY)
    if brain == "offline":
        return PriceBook(free="offline brain")
    if brain == "openai" and is_local_url(settings.base_url or DEFAULT_OPENAI_BASE_URL):
        return PriceBook(settings.prices, free=LOCAL)
    return PriceBook(settings.prices)


def models_in_use(brain: str, settings: LLMSettings, default_model: str) -> list[str]:
    """Every model the run asks: the model for all roles (or the brain's default) and each per-role model.
    A replay or the offline brain asks none."""
    if brain in ("replay", "offline"):
        return []
    models = [settings.model.strip() or default_model, *(m.strip() for m in settings.role_models.values())]
    return list(dict.fromkeys(m for m in models if m))


def unpriced_models(brain: str, settings: LLMSettings, default_model: str) -> list[str]:
    """The models in use that have no known price (a cost cap cannot hold with them)."""
    book = price_book(brain, settings)
    return [m for m in models_in_use(brain, settings, default_model) if not book.known(m)]


def usd(x: float, *, whole: bool = False) -> str:
    """A rate: '$1.50', '$0.075'; with `whole`, '$14' for a whole number of dollars."""
    if whole and x == int(x):
        return f"${x:,.0f}"
    return f"${x:,.2f}" if round(x, 2) == x else f"${x:.4f}".rstrip("0")


def rate_text(model: str, price: Price | None, *, search: bool = True) -> str:
    """'gemini-3.5-flash at $1.50/$9.00 per 1M tokens in/out, search $14 per 1000 queries'."""
    if price is None:
        return f"{model}: no known price"
    if price.free:
        return f"{model}: free ({price.source})"
    text = f"{model} at {usd(price.input)}/{usd(price.output)} per 1M tokens in/out"
    if price.long_input is not None or price.long_output is not None:
        text += (f" ({usd(price.long_input or price.input)}/{usd(price.long_output or price.output)} over "
                 f"{LONG_PROMPT_TOKENS // 1000}k prompt tokens)")
    if search and price.search:
        unit = "queries" if price.search_basis == PER_QUERY else "grounded prompts"
        text += f", search {usd(price.search, whole=True)} per 1000 {unit}"
    if price.source == USER:
        text += " (your price)"
    return text


__all__ = ["DEFAULT_PRICES", "PER_PROMPT", "PER_QUERY", "Price", "PriceBook", "is_local_url",
           "models_in_use", "parse_price", "price_book", "price_problems", "rate_text",
           "unpriced_models", "usd"]
