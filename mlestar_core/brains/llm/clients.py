"""The chat-client interface the LLM brain talks to, and how a client reports failure.

A client sends one prompt and returns one `Completion`. It raises `TransientError` for what
a retry may cure (429, 5xx, timeouts, dropped connections) and `FatalError` for what it will
not (a rejected key, an unknown model, a malformed request); the brain owns the retrying.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Completion:
    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    model: str = ""
    sources: list[dict[str, str]] = field(default_factory=list)  # [{"title", "uri"}] of grounding
    finish_reason: str = ""
    # Filled in by the brain once the call is answered:
    prompt: str = ""
    cost: float = 0.0
    latency: float = 0.0
    index: int = 0


class ClientError(Exception):
    """A failed call; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class TransientError(ClientError):
    """Worth retrying: rate limit, server error, timeout, connection drop."""


class FatalError(ClientError):
    """Not worth retrying: bad key, unknown model, refused request, missing cassette answer."""


@dataclass
class Request:
    role: str
    prompt: str
    model: str
    schema: Any = None  # a JSON schema (dict) for roles with structured answers
    search: bool = False  # ground the answer with web search (Gemini only)
    step: str = ""  # the pipeline step asking (replay matches on it)
    index: int = 0  # the call's number for this role within the step


class ChatClient(Protocol):
    name: str
    supports_search: bool

    def complete(self, request: Request) -> Completion: ...


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is rare for APIs and read as absent)."""
    try:
        return float(value) if value else None
    except ValueError:
        return None


def is_transient_status(status: int | None) -> bool:
    return status is not None and (status == 429 or status == 408 or 500 <= status < 600)
