"""Gemini through the official google-genai SDK: API key or Vertex AI, Google Search grounding,
JSON-schema answers. The SDK's own retries are off (one attempt per call): the brain retries."""

from __future__ import annotations

import os
import re
from typing import Any

from .clients import Completion, FatalError, Request, TransientError, is_transient_status, retry_after_seconds
from .secrets import MissingKey
from .settings import LLMSettings

_RETRY_DELAY = re.compile(r"retryDelay['\"]?\s*[:=]\s*['\"]?(\d+(?:\.\d+)?)s")


def _vertex_wanted(settings: LLMSettings) -> bool:
    env = os.environ.get("GOOGLE_GENAI_USE_VERTEXAI", "").strip().lower()
    return settings.vertex or env in ("1", "true", "yes")


class GeminiClient:
    name = "gemini"
    supports_search = True

    def __init__(self, settings: LLMSettings, api_key: str | None) -> None:
        from google import genai
        from google.genai import types

        self._types = types
        self.settings = settings
        http = types.HttpOptions(base_url=settings.base_url or None, api_version=settings.api_version or None,
                                 timeout=int(settings.timeout * 1000))
        self.vertex = _vertex_wanted(settings)
        try:
            if self.vertex:
                project = settings.project or os.environ.get("GOOGLE_CLOUD_PROJECT", "")
                location = settings.location or os.environ.get("GOOGLE_CLOUD_LOCATION", "us-central1")
                if not project:
                    raise MissingKey("Vertex AI needs a Google Cloud project: set it in the brain settings or "
                                     "GOOGLE_CLOUD_PROJECT")
                self.client = genai.Client(vertexai=True, project=project, location=location, http_options=http)
            else:
                if not api_key:
                    raise MissingKey("no Gemini API key: set GEMINI_API_KEY (or GOOGLE_API_KEY), add it to "
                                     ".streamlit/secrets.toml, or enter it on the New run page")
                self.client = genai.Client(api_key=api_key, http_options=http)
        except MissingKey:
            raise
        except Exception as e:  # e.g. no Google Cloud credentials for Vertex AI
            raise MissingKey(f"the Gemini client could not start: {type(e).__name__}: {e}") from None

    def _config(self, request: Request) -> Any:
        types = self._types
        kwargs: dict[str, Any] = {}
        if self.settings.temperature is not None:
            kwargs["temperature"] = self.settings.temperature
        if request.search:
            kwargs["tools"] = [types.Tool(google_search=types.GoogleSearch())]
        elif request.schema is not None:
            kwargs["response_mime_type"] = "application/json"
            kwargs["response_json_schema"] = request.schema
        return types.GenerateContentConfig(**kwargs) if kwargs else None

    def complete(self, request: Request) -> Completion:
        from google.genai import errors

        try:
            response = self.client.models.generate_content(model=request.model, contents=request.prompt,
                                                           config=self._config(request))
        except errors.APIError as e:
            status = getattr(e, "code", None)
            message = f"Gemini HTTP {status} {getattr(e, 'status', '') or ''}: {getattr(e, 'message', '') or e}"
            if is_transient_status(status):
                raise TransientError(message, status, _retry_after(e)) from None
            raise FatalError(message, status) from None
        except Exception as e:  # timeouts, dropped connections, a reply the SDK cannot read
            from google.auth import exceptions as auth_errors

            if isinstance(e, auth_errors.DefaultCredentialsError | auth_errors.RefreshError):
                raise FatalError(f"Google Cloud credentials for Vertex AI: {type(e).__name__}: {e}") from None
            raise TransientError(f"Gemini call failed: {type(e).__name__}: {e}") from None
        return _completion(response, request.model)


def _retry_after(e: Exception) -> float | None:
    response = getattr(e, "response", None)
    headers = getattr(response, "headers", None)
    seconds = retry_after_seconds(headers.get("retry-after")) if headers is not None else None
    if seconds is not None:
        return seconds
    m = _RETRY_DELAY.search(str(getattr(e, "details", "") or e))
    return float(m.group(1)) if m else None


def _completion(response: Any, model: str) -> Completion:
    text_parts: list[str] = []
    finish = ""
    sources: list[dict[str, str]] = []
    candidates = getattr(response, "candidates", None) or []
    if candidates:
        cand = candidates[0]
        finish = str(getattr(cand, "finish_reason", "") or "")
        content = getattr(cand, "content", None)
        for part in (getattr(content, "parts", None) or []):
            if getattr(part, "text", None) and not getattr(part, "thought", False):
                text_parts.append(part.text)
        meta = getattr(cand, "grounding_metadata", None)
        for chunk in (getattr(meta, "grounding_chunks", None) or []):
            web = getattr(chunk, "web", None)
            if web is not None and getattr(web, "uri", None):
                sources.append({"title": str(getattr(web, "title", "") or getattr(web, "domain", "") or ""),
                                "uri": str(web.uri)})
    else:
        feedback = getattr(response, "prompt_feedback", None)
        reason = getattr(feedback, "block_reason", None)
        if reason:
            finish = f"prompt blocked: {reason}"
    usage = getattr(response, "usage_metadata", None)
    tokens_in = int(getattr(usage, "prompt_token_count", 0) or 0)
    tokens_out = int(getattr(usage, "candidates_token_count", 0) or 0) + \
        int(getattr(usage, "thoughts_token_count", 0) or 0)  # thinking is billed as output
    return Completion(text="".join(text_parts), tokens_in=tokens_in, tokens_out=tokens_out,
                      model=str(getattr(response, "model_version", "") or model), sources=sources,
                      finish_reason=finish)

