"""Any OpenAI-compatible `/v1/chat/completions` server (Ollama, vLLM, LM Studio, llama.cpp, ...).

Plain HTTP through the standard library: one POST per call, no SDK needed for so small a
surface. There is no web-search tool here, so retrieval falls back to the knowledge base."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from .clients import Completion, FatalError, Request, TransientError, is_transient_status, retry_after_seconds
from .settings import DEFAULT_OPENAI_BASE_URL, LLMSettings


class OpenAIClient:
    name = "openai"
    supports_search = False

    def __init__(self, settings: LLMSettings, api_key: str | None) -> None:
        self.settings = settings
        self.base_url = (settings.base_url or DEFAULT_OPENAI_BASE_URL).rstrip("/")
        self._key = api_key

    def _url(self) -> str:
        if self.base_url.endswith("/chat/completions"):
            return self.base_url
        return self.base_url + "/chat/completions"

    def complete(self, request: Request) -> Completion:
        body: dict[str, Any] = {"model": request.model, "messages": [{"role": "user", "content": request.prompt}]}
        if self.settings.temperature is not None:
            body["temperature"] = self.settings.temperature
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(self._url(), data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.settings.timeout) as resp:  # noqa: S310 - user's server
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = _error_detail(e)
            message = f"{self.base_url} HTTP {e.code}: {detail}"
            if is_transient_status(e.code):
                raise TransientError(message, e.code, retry_after_seconds(e.headers.get("Retry-After"))) from None
            raise FatalError(message, e.code) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise TransientError(f"{self.base_url} unreachable: {reason}") from None
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
        usage = data.get("usage") or {}
        return Completion(text=str(text), tokens_in=int(usage.get("prompt_tokens") or 0),
                          tokens_out=int(usage.get("completion_tokens") or 0),
                          model=str(data.get("model") or request.model),
                          finish_reason=str(choice.get("finish_reason") or ""))


def _error_detail(e: urllib.error.HTTPError) -> str:
    try:
        raw = e.read()[:2000]
        data = json.loads(raw)
        err = data.get("error", data)
        return str(err.get("message", err) if isinstance(err, dict) else err)[:300]
    except Exception:
        return str(e.reason)

