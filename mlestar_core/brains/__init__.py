"""Brains serve the MLE-STAR agent roles; `make_brain` picks one by name."""

from __future__ import annotations

from .base import Brain, BrainUnavailable, CostCapReached
from .llm.settings import DEFAULT_GEMINI_MODEL, DEFAULT_OPENAI_MODEL, LLMSettings

BRAINS: dict[str, str] = {
    "offline": "deterministic expert, no model and no key (the default)",
    "gemini": "Gemini through google-genai, with Google Search retrieval",
    "openai": "any OpenAI-compatible /v1/chat/completions server (Ollama, vLLM, LM Studio, ...)",
    "replay": "answers from a recorded cassette; no key, no network",
}


class BrainConfigError(ValueError):
    """A brain that cannot be built as configured (no key, no cassette, unknown name)."""


def make_brain(name: str, settings: LLMSettings | None = None, *, api_key: str | None = None) -> Brain:
    """The brain called `name`. `api_key` (from the UI) is kept in memory by the brain's client only;
    without it the key comes from the environment or .streamlit/secrets.toml."""
    settings = settings or LLMSettings()
    if name == "offline":
        from .offline import OfflineBrain

        return OfflineBrain()
    from .llm.brain import LLMBrain
    from .llm.secrets import MissingKey, find_key

    try:
        if name == "gemini":
            from .llm.gemini import GeminiClient

            key = find_key("gemini", api_key)
            return LLMBrain(GeminiClient(settings, key), settings, name="gemini",
                            default_model=DEFAULT_GEMINI_MODEL, secrets=[key] if key else [])
        if name == "openai":
            from .llm.openai_compat import OpenAIClient

            key = find_key("openai", api_key)
            return LLMBrain(OpenAIClient(settings, key), settings, name="openai",
                            default_model=DEFAULT_OPENAI_MODEL, secrets=[key] if key else [])
        if name == "replay":
            from .llm.replay import CassetteError, ReplayClient, load_cassette

            if not settings.cassette:
                raise BrainConfigError("the replay brain needs a cassette file (--cassette FILE)")
            try:
                cassette = load_cassette(settings.cassette)
            except CassetteError as e:
                raise BrainConfigError(str(e)) from None
            recorded = cassette.get("recorded", {})
            return LLMBrain(ReplayClient(cassette), settings, name="replay",
                            default_model=f"{recorded.get('brain', 'recorded')} run {recorded.get('run_id', '')}")
    except MissingKey as e:
        raise BrainConfigError(str(e)) from None
    raise BrainConfigError(f"unknown brain {name!r}: choose one of {', '.join(BRAINS)}")


__all__ = ["BRAINS", "Brain", "BrainConfigError", "BrainUnavailable", "CostCapReached", "make_brain",
           "DEFAULT_GEMINI_MODEL", "DEFAULT_OPENAI_MODEL"]
