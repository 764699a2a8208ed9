"""The cost meter: a cost cap that holds, with calls in flight on several tracks at once.

A cap checked before a call and paid after it overshoots when tracks call in parallel: each sees
the same "spent" and each adds its cost later. The meter instead *reserves* the worst case of a
call before it is made and refuses (CostCapReached) a call whose worst case does not fit in
cap - spent - reserved; when the call returns, `settle` swaps the reservation for what the call
actually cost, and `release` drops it for a call that failed before costing anything.

The worst case of one call (`worst_case`):
- the prompt's tokens, bounded by its UTF-8 bytes (a byte-fallback tokenizer never makes more tokens
  than bytes; English prose and code run about 3-4 bytes a token, so this errs high, by a few cents at
  most: the output dominates) plus PROMPT_OVERHEAD_TOKENS for the turn's own tokens;
- the whole output limit, `max_output_tokens` (thinking counts toward it and is billed as output);
- for a grounded call, SEARCH_TOOL_TOKENS of search results fed back as input and SEARCH_QUERIES
  searches (on the model's basis: per query, or once per grounded prompt).
Rates come from `pricing.PriceBook`; a model without a price has an infinite worst case, so no
call of it is made under a cap. The estimate holds as long as the server honours the output limit
and a grounded call runs no more searches than assumed; if a call still costs more than its
reservation, the meter records what it cost and refuses every later call once the cap is reached.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from ..base import CostCapReached
from .pricing import USER, PriceBook, rate_text, usd

PROMPT_OVERHEAD_TOKENS = 64  # the tokens a request adds around the prompt (turn markers, ...)
SEARCH_QUERIES = 10  # web searches assumed for one grounded call
SEARCH_TOOL_TOKENS = 20_000  # search-result tokens assumed fed back as input to one grounded call


def prompt_tokens(prompt: str | int) -> int:
    """An upper bound of the tokens of `prompt` (the text, or its length in UTF-8 bytes / ASCII characters)."""
    size = len(prompt.encode("utf-8")) if isinstance(prompt, str) else max(0, int(prompt))
    return size + PROMPT_OVERHEAD_TOKENS


def worst_case(model: str, prompt: str | int, max_output_tokens: int, search: bool, table: PriceBook, *,
               fallback_model: str = "") -> float:
    """The most one call can cost, in USD (see the module docstring); math.inf when the model has no price.
    `prompt`: the prompt itself, or its size in UTF-8 bytes (= characters for ASCII text)."""
    price = table.price(model, fallback_model)
    if price is None:
        return math.inf
    tokens_in = prompt_tokens(prompt) + (SEARCH_TOOL_TOKENS if search else 0)
    rate_in, rate_out = price.rates(tokens_in)
    usd_total = (tokens_in * rate_in + max(0, max_output_tokens) * rate_out) / 1_000_000
    if search:
        usd_total += price.search_cost(SEARCH_QUERIES, True)
    return usd_total


def actual_cost(model: str, tokens_in: int, tokens_out: int, search_queries: int, searched: bool,
                table: PriceBook, *, fallback_model: str = "") -> float:
    """What one answered call cost, in USD. `tokens_in` includes the tool-use prompt tokens (search results),
    `tokens_out` the thinking tokens; `search_queries` is how many web searches the model ran and `searched`
    whether the answer was grounded (a grounded call whose query count is unknown counts one query).
    `model` is the version the server reports, `fallback_model` the model asked for: the reported version's
    rates apply, unless the user priced the model asked for (their price wins, as it did for the reservation).
    An unknown model costs 0 here (it cannot run under a cap: see `worst_case`)."""
    asked = table.price(fallback_model) if fallback_model else None
    price = asked if asked is not None and asked.source == USER else table.price(model, fallback_model)
    if price is None:
        return 0.0
    rate_in, rate_out = price.rates(tokens_in)
    return (max(0, tokens_in) * rate_in + max(0, tokens_out) * rate_out) / 1_000_000 + \
        price.search_cost(max(0, search_queries), searched)


def basis(models: Sequence[str], table: PriceBook, max_output_tokens: int, search: bool) -> str:
    """How the estimate is made, in one line: 'gemini-3.5-flash at $1.50/$9.00 per 1M tokens in/out, search $14
    per 1000 queries; thinking billed as output; reserve 16,384 output tokens per call'."""
    if not models:
        return "no model calls are billed"
    prices = {m: table.price(m) for m in models}
    parts = [rate_text(m, p, search=search) for m, p in prices.items()]
    parts = [p + " (counted as $0)" if prices[m] is None else p for m, p in zip(models, parts, strict=True)]
    if all(p is not None and p.free for p in prices.values()):
        return "; ".join(parts)
    parts.append("thinking billed as output")
    reserve = f"reserve {max(0, max_output_tokens):,} output tokens per call"
    searched = [p for p in prices.values() if p is not None and p.search]
    if search and searched:
        parts.append("search results billed as input")
        reserve += f" (a grounded call: {SEARCH_TOOL_TOKENS:,} more input tokens and {SEARCH_QUERIES} searches)"
    parts.append(reserve)
    return "; ".join(parts)


@dataclass(frozen=True)
class Reservation:
    """The worst case of one call in flight, held against the cap until it is settled or released."""

    id: int
    amount: float
    label: str = ""


class CostMeter:
    """Spent and reserved USD of one run, against its cap (None: no cap). Thread-safe."""

    def __init__(self, cap: float | None, spent: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._cap = None if cap is None else float(cap)
        self._spent = float(spent)
        self._open: dict[int, Reservation] = {}
        self._ids = itertools.count(1)
        self._refused = False

    @property
    def cap(self) -> float | None:
        return self._cap

    @cap.setter
    def cap(self, value: float | None) -> None:
        with self._lock:
            self._cap = None if value is None else float(value)

    @property
    def spent(self) -> float:
        with self._lock:
            return self._spent

    @spent.setter
    def spent(self, value: float) -> None:  # e.g. what a resumed run had spent before (Store.brain_spent)
        with self._lock:
            self._spent = float(value)

    @property
    def reserved(self) -> float:
        """USD held by calls in flight."""
        with self._lock:
            return sum(r.amount for r in self._open.values())

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._open)

    @property
    def remaining(self) -> float | None:
        """What a new call may still reserve (None: no cap)."""
        with self._lock:
            if self._cap is None:
                return None
            return max(0.0, self._cap - self._spent - sum(r.amount for r in self._open.values()))

    @property
    def exhausted(self) -> bool:
        """The cap is spent, or a call was refused because its worst case no longer fitted: the run wraps up."""
        with self._lock:
            return self._cap is not None and (self._refused or self._spent >= self._cap)

    def reserve(self, worst_case_usd: float, label: str = "") -> Reservation:
        """Hold `worst_case_usd` for a call about to be made, or raise CostCapReached when it does not fit.
        `label` (e.g. "plan_refinement on gemini-3.5-flash") names the call in the message."""
        what = label or "the next call"
        with self._lock:
            if self._cap is not None:
                held = sum(r.amount for r in self._open.values())
                if math.isinf(worst_case_usd) or math.isnan(worst_case_usd):
                    self._refused = True
                    raise CostCapReached(f"{what}: its cost cannot be estimated (the model has no known price), "
                                         f"so it cannot run under the {usd(self._cap)} cost cap")
                if self._spent + held + worst_case_usd > self._cap + 1e-12:
                    self._refused = True
                    raise CostCapReached(
                        f"cost cap {usd(self._cap)} reached: spent ${self._spent:.4f}, ${held:.4f} reserved by "
                        f"calls in flight, and {what} could cost up to ${worst_case_usd:.4f}")
            amount = worst_case_usd if math.isfinite(worst_case_usd) else 0.0
            reservation = Reservation(next(self._ids), max(0.0, amount), label)
            self._open[reservation.id] = reservation
            return reservation

    def settle(self, reservation: Reservation, actual_usd: float) -> float:
        """The call returned: drop its reservation and add what it cost (recorded even when it exceeds the
        reservation). Settling twice adds nothing the second time. Returns the cost added."""
        with self._lock:
            if self._open.pop(reservation.id, None) is None:
                return 0.0
            cost = max(0.0, float(actual_usd))
            self._spent += cost
            return cost

    def release(self, reservation: Reservation) -> None:
        """The call failed before costing anything: drop its reservation."""
        with self._lock:
            self._open.pop(reservation.id, None)


__all__ = ["PROMPT_OVERHEAD_TOKENS", "SEARCH_QUERIES", "SEARCH_TOOL_TOKENS", "CostCapReached", "CostMeter",
           "Reservation", "actual_cost", "basis", "prompt_tokens", "worst_case"]
