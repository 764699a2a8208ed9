"""Estimated cost of a call: USD per million tokens in and out, per model.

The defaults are the Gemini Developer API's standard paid rates for prompts up to 200k tokens
(checked November 2026); local models cost nothing. A run's `llm.prices` overrides or extends
the table ({"model": [in, out]}), so a different rate card, a discount or a self-hosted
model's electricity can be priced without touching code. Estimates, not an invoice.
"""

from __future__ import annotations

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gemini-3.5-flash": (1.50, 9.00),
    "gemini-3.5-flash-lite": (0.50, 3.00),
    "gemini-3-flash-preview": (0.50, 3.00),
    "gemini-3.1-flash-lite": (0.25, 1.50),
    "gemini-3.1-pro-preview": (2.00, 12.00),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-2.5-pro": (1.25, 10.00),
}


def price_table(overrides: dict[str, list[float]] | None = None) -> dict[str, tuple[float, float]]:
    table = dict(DEFAULT_PRICES)
    for model, pair in (overrides or {}).items():
        if isinstance(pair, list | tuple) and len(pair) == 2:
            table[model] = (float(pair[0]), float(pair[1]))
    return table


def price_of(model: str, table: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
    """The rates of `model`: exact name, else the longest table name it starts with
    (so "gemini-3.5-flash-001" and "models/gemini-3.5-flash" find their family)."""
    name = model.removeprefix("models/")
    if name in table:
        return table[name]
    matches = [k for k in table if name.startswith(k)]
    return table[max(matches, key=len)] if matches else None


def cost_of(model: str, tokens_in: int, tokens_out: int, table: dict[str, tuple[float, float]]) -> float:
    rates = price_of(model, table)
    if rates is None:
        return 0.0
    return (tokens_in * rates[0] + tokens_out * rates[1]) / 1_000_000
