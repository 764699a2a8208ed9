"""Settings of the LLM brains (stored with the run's config; never holds a secret)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# A current Flash model (GA May 2026); every role can be pointed at another model.
DEFAULT_GEMINI_MODEL = "gemini-3.5-flash"
DEFAULT_OPENAI_MODEL = "llama3.1"  # Ollama's usual name; set the model your server serves
DEFAULT_OPENAI_BASE_URL = "http://localhost:11434/v1"


@dataclass
class LLMSettings:
    model: str = ""  # empty: the brain's default (DEFAULT_GEMINI_MODEL / DEFAULT_OPENAI_MODEL)
    role_models: dict[str, str] = field(default_factory=dict)  # role -> model, overrides `model`
    base_url: str = ""  # gemini: an alternative endpoint (a proxy, a test server); openai: the server
    api_version: str = ""  # gemini REST version ("" = the SDK's default; "v1beta" for preview features)
    vertex: bool = False  # gemini through Vertex AI (project + location, Google Cloud credentials)
    project: str = ""
    location: str = "us-central1"
    temperature: float | None = None  # None: the model's default
    timeout: float = 180.0  # seconds per call
    max_retries: int = 4  # retries of one call on 429 / 5xx / timeouts before the run pauses
    backoff: float = 2.0  # first retry delay in seconds, doubled each retry (capped at 60 s)
    max_output_tokens: int = 16384  # sent with every call; the cost cap reserves this worst case before a call
    format_retries: int = 2  # re-asks when an answer cannot be parsed
    search: bool = True  # gemini: ground retrieval with the Google Search tool
    # model -> [USD/1M in, USD/1M out] or [in, out, USD per 1000 searches]
    prices: dict[str, list[float]] = field(default_factory=dict)
    cassette: str = ""  # replay: the cassette file answers come from

    def model_for(self, role: str, default: str) -> str:
        return self.role_models.get(role) or self.model or default

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LLMSettings:
        data = data or {}
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
