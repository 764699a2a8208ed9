"""Any OpenAI-compatible `/v1/chat/completions` server (Ollama, vLLM, LM Studio, llama.cpp, ...).

Plain HTTP through the standard library: one POST per call, no SDK needed for so small a
surface. There is no web-search tool here, so retrieval falls back to the knowledge base.

Roles with a JSON schema ask for it with `response_format` (type json_schema, not strict: OpenAI,
vLLM, Ollama and llama.cpp accept it); a server that refuses the option is asked again without it,
and not sent it again. Failures are sorted as in gemini.py: HTTP statuses by their meaning, the
network's as transient, a reply that is not a chat completion as the server's (transient), and
anything else in our own code as `LocalError`."""

from __future__ import annotations

import http.client
import json
import re
import threading
import urllib.error
import urllib.request
from typing import Any

from .clients import (
    ClientError,
    Completion,
    FatalError,
    LocalError,
    Request,
    TransientError,
    is_transient_status,
    retry_after_seconds,
)
from .settings import DEFAULT_OPENAI_BASE_URL, LLMSettings

# What a server that does not take response_format says about it (llama.cpp, older vLLM / LM Studio,
# FastAPI's 422 naming the field).
_FORMAT_REFUSAL = re.compile(r"response_format|json_schema|schema", re.I)


class OpenAIClient:
    name = "openai"
    supports_search = False

    def __init__(self, settings: LLMSettings, api_key: str | None) -> None:
        self.settings = settings
        self.base_url = (settings.base_url or DEFAULT_OPENAI_BASE_URL).rstrip("/")
        self._key = api_key
        self._lock = threading.Lock()
        self.response_format_refused = False  # the server refused response_format once: not sent again

    def _url(self) -> str:
        if self.base_url.endswith("/chat/completions"):
            return self.base_url
        return self.base_url + "/chat/completions"

    def _body(self, request: Request, *, response_format: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model, "messages": [{"role": "user", "content": request.prompt}]}
        if self.settings.temperature is not None:
            body["temperature"] = self.settings.temperature
        if self.settings.max_output_tokens:
            body["max_tokens"] = self.settings.max_output_tokens
        if response_format and request.schema is not None:
            name = re.sub(r"[^A-Za-z0-9_-]", "_", request.role)[:64] or "answer"  # OpenAI's pattern for names
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": name, "schema": request.schema, "strict": False}}
        return body

    def complete(self, request: Request) -> Completion:
        try:
            with self._lock:
                formatted = request.schema is not None and not self.response_format_refused
            try:
                raw = self._post(self._body(request, response_format=formatted))
            except _Refused:  # the server does not take response_format: the prompt asks for JSON anyway
                with self._lock:
                    self.response_format_refused = True
                raw = self._post(self._body(request, response_format=False), refusal_is_final=True)
            return self._read(raw, request)
        except ClientError:
            raise
        except Exception as e:  # our own bug (a body we cannot encode, a broken reader): not an outage
            raise LocalError(f"the {self.base_url} call failed on our side: {type(e).__name__}: {e}") from e

    def _post(self, body: dict[str, Any], *, refusal_is_final: bool = False) -> bytes:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        data = json.dumps(body).encode()
        req = urllib.request.Request(self._url(), data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.settings.timeout) as resp:  # noqa: S310 - user's server
                return resp.read()
        except urllib.error.HTTPError as e:
            detail = _error_detail(e)
            message = f"{self.base_url} HTTP {e.code}: {detail}"
            if is_transient_status(e.code):
                raise TransientError(message, e.code, retry_after_seconds(e.headers.get("Retry-After"))) from None
            if (e.code in (400, 422) and "response_format" in body and not refusal_is_final
                    and _FORMAT_REFUSAL.search(detail)):
                raise _Refused(message) from None
            raise FatalError(message, e.code) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)  # HTTPException: a connection cut mid-reply
            raise TransientError(f"{self.base_url} unreachable: {type(e).__name__}: {reason}") from None

    def _read(self, raw: bytes, request: Request) -> Completion:
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            message_obj = choice.get("message") or {}
            text = message_obj.get("content") or choice.get("text") or ""
            if isinstance(text, list):  # some servers send content parts
                text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise TransientError(f"{self.base_url} sent a reply that is not a chat completion: "
                                 f"{raw[:200]!r}") from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        details = usage.get("completion_tokens_details")
        # Reasoning tokens are already within completion_tokens; shown apart so the bill has a basis.
        reasoning = _int(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
        return Completion(text=str(text), tokens_in=_int(usage.get("prompt_tokens")),
                          tokens_out=_int(usage.get("completion_tokens")), thoughts_tokens=reasoning,
                          model=str(data.get("model") or request.model),
                          finish_reason=str(choice.get("finish_reason") or ""))


class _Refused(Exception):
    """The server refused the request's response_format."""


def _int(value: Any) -> int:
    """A token count as servers send it; a garbled one counts as 0 rather than losing the answer."""
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def _error_detail(e: urllib.error.HTTPError) -> str:
    try:
        raw = e.read()[:2000]
        data = json.loads(raw)
        err = data.get("error", data)
        return str(err.get("message", err) if isinstance(err, dict) else err)[:300]
    except Exception:
        return str(e.reason)
