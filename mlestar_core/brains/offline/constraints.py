"""Read the user's pinned constraints (free text) into the few facts the offline brain obeys."""

from __future__ import annotations

import re

from ..base import BrainContext

_NEGATION = re.compile(
    r"\b(do not|don't|dont|never|must not|mustn't|should not|shouldn't|avoid|exclude|excluding|drop|ignore|"
    r"without|no)\b",
    re.I,
)
_INTERPRETABLE = re.compile(r"\b(interpretab\w*|explainab\w*|white[- ]box|transparent|simple model)", re.I)

# Model families a human can read: coefficients of a linear model.
INTERPRETABLE_FAMILIES: frozenset[str] = frozenset({"linear"})


def forbidden_columns(ctx: BrainContext) -> set[str]:
    """Columns a constraint such as "do not use column X" (or "exclude X") rules out."""
    names = [c.name for c in ctx.task.columns]
    banned: set[str] = set()
    for text in ctx.constraints:
        if not _NEGATION.search(text):
            continue
        for name in names:
            # The name quoted, or standing alone as a word, counts as a mention.
            quoted = any(f"{q}{name}{q}" in text for q in ("'", '"', "`"))
            alone = re.search(r"(?<![\w])" + re.escape(name) + r"(?![\w])", text) is not None
            if quoted or alone:
                banned.add(name)
    return banned


def wants_interpretable(ctx: BrainContext) -> bool:
    return any(_INTERPRETABLE.search(text) for text in ctx.constraints)
