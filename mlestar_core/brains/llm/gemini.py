"""Gemini through the official google-genai SDK: API key or Vertex AI, Google Search grounding,
JSON-schema answers. The SDK's own retries are off (one attempt per call): the brain retries.

Failures are sorted by whose they are: the service's (APIError: 429/408/5xx transient, a refused
search tool `ToolRefused`, the rest fatal), the network's (transient), or ours (`LocalError`, never
retried as an outage: a TypeError or a validation error of the SDK's types is a bug to fix)."""

from __future__ import annotations

import importlib
import json
import os
import re
from typing import Any

from .clients import (
    ClientError,
    Completion,
    FatalError,
    LocalError,
    Request,
    ToolRefused,
    TransientError,
    is_transient_status,
    retry_after_seconds,
)
from .secrets import MissingKey
from .settings import LLMSettings

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)s\s*$")  # a protobuf Duration in JSON: "37s", "1.500s"
# What a 400 about the request's search tool says ("Search Grounding is not supported.", "Tool use with
# function calling is unsupported", "google_search_retrieval is not supported ...").
_TOOL_MESSAGE = re.compile(r"search|grounding|\btools?\b", re.I)


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
        if self.settings.max_output_tokens:
            kwargs["max_output_tokens"] = self.settings.max_output_tokens
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
            raise _api_failure(e, request) from None
        except Exception as e:
            failure = _call_failure(e)
            if isinstance(failure, LocalError):
                raise failure from e  # our bug: keep the traceback that shows where
            raise failure from None
        try:
            return _completion(response, request.model)
        except Exception as e:
            raise LocalError(f"reading the Gemini reply failed: {type(e).__name__}: {e}") from e


def _api_failure(e: Any, request: Request) -> ClientError:
    """The service answered with an error status."""
    status = getattr(e, "code", None)
    message = f"Gemini HTTP {status} {getattr(e, 'status', '') or ''}: {getattr(e, 'message', '') or e}"
    if is_transient_status(status):
        return TransientError(message, status, _retry_after(e))
    if status == 400 and request.search and _TOOL_MESSAGE.search(str(getattr(e, "message", "") or "")):
        return ToolRefused(message, status)  # the same request without the search tool may work
    return FatalError(message, status)


def _call_failure(e: Exception) -> ClientError | LocalError:
    """Whose fault a call that got no answer is: credentials and the network are the outside world's,
    anything else (a TypeError, a validation error of the SDK's own types, a bad value) is ours."""
    import pydantic
    from google.auth import exceptions as auth_errors

    what = f"{type(e).__name__}: {e}"
    if isinstance(e, auth_errors.TransportError):  # reaching Google's token endpoint failed
        return TransientError(f"Google Cloud credentials could not be refreshed: {what}")
    if isinstance(e, auth_errors.GoogleAuthError):
        return FatalError(f"Google Cloud credentials for Vertex AI: {what}")
    if isinstance(e, _network_errors()):
        return TransientError(f"Gemini call failed: {what}")
    if isinstance(e, json.JSONDecodeError):  # a 200 whose body is not JSON: the server's fault, like a 5xx
        return TransientError(f"Gemini sent a reply that is not JSON: {what}")
    if isinstance(e, pydantic.ValidationError) and e.title == "GenerateContentResponse":
        # the reply's JSON does not fit the response type (a string for a token count...): the server's fault;
        # a validation error of any other SDK type (the config, the parameters) is ours
        return TransientError(f"Gemini sent a reply that does not fit GenerateContentResponse: {what}")
    return LocalError(f"the Gemini call failed on our side: {what}")


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a failed connection, a timeout or a cut reply raises: the SDK sends through httpx2 (httpx in
    older versions; both have RequestError above their transport, timeout and decoding errors), and
    `requests` (mTLS) raises OSErrors."""
    found: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).RequestError)
        except (ImportError, AttributeError):
            continue
    return (*found, ConnectionError, TimeoutError, OSError)


def _retry_after(e: Any) -> float | None:
    """The delay the service asks for: Google puts it in the error body (a google.rpc.RetryInfo's
    retryDelay, e.g. "37s"); a Retry-After header (a proxy's, say) is honoured too."""
    delay = _retry_info_delay(getattr(e, "details", None))
    if delay is not None:
        return delay
    headers = getattr(getattr(e, "response", None), "headers", None)
    try:
        return retry_after_seconds(headers.get("retry-after")) if headers is not None else None
    except Exception:  # an unexpected headers object must not hide the 429 itself
        return None


def _retry_info_delay(details: Any) -> float | None:
    # `details` is the parsed error JSON: {"error": {..., "details": [{"@type": ...RetryInfo, ...}]}}
    error = details.get("error", details) if isinstance(details, dict) else None
    items = error.get("details") if isinstance(error, dict) else None
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            return _duration(item.get("retryDelay"))
    return None


def _duration(value: Any) -> float | None:
    """A protobuf Duration: "37s" / "1.500s" in JSON, {"seconds": 37, "nanos": 0} from some transports."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        return float(m.group(1)) if m else None
    if isinstance(value, dict):
        try:
            return float(value.get("seconds") or 0) + float(value.get("nanos") or 0) / 1e9
        except (TypeError, ValueError):
            return None
    return None


def _completion(response: Any, model: str) -> Completion:
    finish = ""
    pieces: list[tuple[int, str]] = []  # (part index, text) of the answer's visible text parts
    sources: list[dict[str, str]] = []
    supports: list[dict[str, Any]] = []
    queries: list[str] = []
    entry_point = ""
    candidates = getattr(response, "candidates", None) or []
    if candidates:
        cand = candidates[0]
        finish = str(getattr(cand, "finish_reason", "") or "")
        content = getattr(cand, "content", None)
        for i, part in enumerate(getattr(content, "parts", None) or []):
            if getattr(part, "text", None) and not getattr(part, "thought", False):
                pieces.append((i, part.text))
        meta = getattr(cand, "grounding_metadata", None)
        # Supports cite chunks by index: only web chunks become sources, so indices are mapped.
        index: dict[int, int] = {}
        for i, chunk in enumerate(getattr(meta, "grounding_chunks", None) or []):
            web = getattr(chunk, "web", None)
            if web is not None and getattr(web, "uri", None):
                index[i] = len(sources)
                sources.append({"title": str(getattr(web, "title", "") or getattr(web, "domain", "") or ""),
                                "uri": str(web.uri)})
        supports = _supports("".join(t for _, t in pieces), pieces,
                             getattr(meta, "grounding_supports", None) or [], index)
        queries = [str(q) for q in getattr(meta, "web_search_queries", None) or [] if q]
        entry = getattr(meta, "search_entry_point", None)
        entry_point = str(getattr(entry, "rendered_content", "") or "")
    else:
        feedback = getattr(response, "prompt_feedback", None)
        reason = getattr(feedback, "block_reason", None)
        if reason:
            finish = f"prompt blocked: {reason}"
    text = "".join(t for _, t in pieces)
    usage = getattr(response, "usage_metadata", None)
    prompt_tokens = _count(usage, "prompt_token_count")
    tool_tokens = _count(usage, "tool_use_prompt_token_count")  # search results fed back: billed as input
    thoughts = _count(usage, "thoughts_token_count")  # thinking: billed as output
    return Completion(text=text, tokens_in=prompt_tokens + tool_tokens,
                      tokens_out=_count(usage, "candidates_token_count") + thoughts,
                      model=str(getattr(response, "model_version", "") or model), sources=sources,
                      finish_reason=finish, thoughts_tokens=thoughts, tool_tokens=tool_tokens,
                      search_queries=queries, supports=supports, search_entry_point=entry_point)


def _count(usage: Any, name: str) -> int:
    return int(getattr(usage, name, 0) or 0)


def _supports(text: str, pieces: list[tuple[int, str]], raw: list[Any],
              index: dict[int, int]) -> list[dict[str, Any]]:
    """Grounding supports with character offsets into `text` and chunk indices into the sources.

    The service gives UTF-8 byte offsets (of the part the segment names, which for a one-part answer is
    the whole text); they are converted, and checked against the segment's own text when it has one."""
    encoded = text.encode("utf-8")
    bases: dict[int, int] = {}  # part index -> byte offset of the part in `text`
    at = 0
    for i, piece in pieces:
        bases[i] = at
        at += len(piece.encode("utf-8"))
    out: list[dict[str, Any]] = []
    for support in raw:
        segment = getattr(support, "segment", None)
        if segment is None:
            continue
        start_b = int(getattr(segment, "start_index", 0) or 0)
        end_b = int(getattr(segment, "end_index", 0) or 0)
        said = str(getattr(segment, "text", "") or "")
        part = getattr(segment, "part_index", None)
        # Offsets are documented as per part; try that part's base first, then the whole text's.
        tries = [bases.get(int(part), 0)] if part is not None else []
        start = end = -1
        for base in [*tries, 0]:
            s = _char_offset(encoded, base + start_b)
            e = _char_offset(encoded, base + end_b)
            if start < 0 or (said and text[s:e] == said):
                start, end = s, e
            if said and text[s:e] == said:
                break
        if said and text[start:end] != said:  # offsets that miss their text: the nearest occurrence of it
            hits = [m.start() for m in re.finditer(re.escape(said), text)]
            if hits:
                start = min(hits, key=lambda h: abs(h - start))
                end = start + len(said)
        chunks = [index[i] for i in getattr(support, "grounding_chunk_indices", None) or [] if i in index]
        if end > start:
            out.append({"start": start, "end": end, "text": said or text[start:end], "chunks": chunks})
    return out


def _char_offset(encoded: bytes, byte_offset: int) -> int:
    """The character offset of a UTF-8 byte offset (one inside a character counts from its start)."""
    byte_offset = max(0, min(byte_offset, len(encoded)))
    return len(encoded[:byte_offset].decode("utf-8", errors="ignore"))
