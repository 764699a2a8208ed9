"""Brains serve the MLE-STAR agent roles; `make_brain` picks one by name."""

from __future__ import annotations

from .base import Brain


def make_brain(name: str, **options: object) -> Brain:
    if name == "offline":
        from .offline import OfflineBrain

        return OfflineBrain(**options)  # type: ignore[arg-type]
    raise ValueError(f"unknown brain {name!r}: choose 'offline' (LLM brains arrive with issue 5)")


__all__ = ["Brain", "make_brain"]
