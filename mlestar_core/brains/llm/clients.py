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
    # Billing detail (already included in tokens_in / tokens_out, shown separately so the estimate has a basis):
    thoughts_tokens: int = 0  # thinking tokens (billed as output)
    tool_tokens: int = 0  # tool-use prompt tokens, e.g. search results fed back (billed as input)
    # Grounding with Google Search (Gemini): what the UI must show next to a grounded answer.
    search_queries: list[str] = field(default_factory=list)  # web searches the model ran (billed per query)
    supports: list[dict[str, Any]] = field(default_factory=list)  # [{"start", "end", "text", "chunks": [i]}]
    #   start/end are character offsets into `text`; chunks index into `sources`
    search_entry_point: str = ""  # Google's rendered search-suggestions HTML (its terms ask apps to show it)
    tool_refused: str = ""  # set by the brain: the model refused the search tool, so this answer did not search
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


class ToolRefused(FatalError):
    """The model refused a tool of the request (e.g. HTTP 400 for the Google Search tool): the same
    request without the tool may succeed, and the brain says it ran without it."""


class LocalError(Exception):
    """A bug on our side while making or reading a call (a TypeError, a validation error of the SDK's
    own types): not the service's fault, so never retried as an outage; the step fails with the traceback."""


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
