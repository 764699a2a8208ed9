"""Local fake LLM servers for offline tests: a Gemini REST endpoint and an OpenAI-compatible one.

Both are real HTTP servers on 127.0.0.1 (a free port), so the production clients (the
`google-genai` SDK through `HttpOptions(base_url=...)`, and our urllib OpenAI client) talk to
them unchanged. A `Responder` decides each answer from the recorded `Call`: a `Reply` (text,
grounding sources, token counts) or a `Fault` (an HTTP error in the provider's own JSON shape).

The shapes follow the real services, not a kinder version of them, so a client that reads the
fakes right reads the services right:

- Gemini (v1beta REST, camelCase): a 429's retry delay is only in the error body
  (`details[].retryDelay` of a `google.rpc.RetryInfo`); `usageMetadata` splits prompt, answer,
  thinking and tool-use tokens; a grounded answer (request with the googleSearch tool) has
  `groundingMetadata` with the search queries, Google's search-suggestions HTML, chunks whose
  `web.uri` is an opaque `vertexaisearch` redirect and whose `web.title` is the site's domain, and
  supports whose segment offsets are UTF-8 *byte* offsets into the answer; JSON mode answers bare
  JSON; unknown models are 404 NOT_FOUND; a model can refuse the search tool with 400
  INVALID_ARGUMENT; the Vertex AI paths (project/location and express mode) are served too.
- OpenAI-compatible: `response_format` is validated when sent (and can be refused as older
  servers do), reasoning tokens are reported inside `completion_tokens`, Retry-After on faults.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from .expert import ScriptedExpert

# The `# Role: <heading>` line of every prompt template (prompts/*.md) -> the role's name.
ROLE_HEADINGS: dict[str, str] = {
    "model retriever": "retrieve_models",
    "initial solution writer": "write_initial_solution",
    "solution merger": "merge",
    "data-usage checker": "check_data_usage",
    "data-leakage checker": "check_leakage",
    "debugger": "debug",
    "ablation-study writer": "write_ablation",
    "ablation-study summarizer": "summarize_ablation",
    "block extractor and first refinement plan": "extract_block",
    "refinement planner": "plan_refinement",
    "refinement coder": "implement_refinement",
    "ensemble planner": "plan_ensemble",
    "ensembler": "implement_ensemble",
}
_ROLE_LINE = re.compile(r"^#[ \t]+Role:[ \t]*(?P<heading>.+?)[ \t]*$", re.M)
# generateContent as the SDK sends it: the Gemini API, Vertex AI with a project and location, and
# Vertex AI express mode (an API key, no project).
_GEMINI_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("gemini", re.compile(r"^/(?P<version>[^/]+)/models/(?P<model>[^/:]+):generateContent$")),
    ("vertex", re.compile(r"^/(?P<version>[^/]+)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
                          r"/publishers/google/models/(?P<model>[^/:]+):generateContent$")),
    ("vertex-express", re.compile(r"^/(?P<version>[^/]+)/publishers/google/models/(?P<model>[^/:]+)"
                                  r":generateContent$")),
)
_GOOGLE_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_RPC = "type.googleapis.com/google.rpc."
_FENCED = re.compile(r"\A\s*```[A-Za-z0-9_-]*[ \t]*\n(?P<body>.*?)\n?```\s*\Z", re.S)
_RESPONSE_FORMATS = ("text", "json_object", "json_schema")

# The models the fake Gemini serves unless told otherwise: the price table's and the tests' own names.
KNOWN_GEMINI_MODELS: frozenset[str] = frozenset({
    "gemini-3.5-flash", "gemini-3.5-flash-lite", "gemini-3-flash-preview", "gemini-3.1-flash-lite",
    "gemini-3.1-pro-preview", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.5-pro",
    "gemini-test", "gemini-other", "gemini-x",
})
SEARCH_REFUSED = "Search Grounding is not supported."  # Google's 400 for a model without the search tool

_REDIRECT = "https://vertexaisearch.cloud.google.com/grounding-api-redirect/"
_PAGES: dict[str, str] = {}  # redirect URI -> the page it stands for (see page_of)
_PAGES_LOCK = threading.Lock()


def web_source(page: str) -> tuple[str, str]:
    """The (title, uri) of a grounding chunk for `page`, as Google sends it: the title is the site's
    domain and the URI an opaque redirect that does not show the page (page_of maps it back)."""
    digest = hashlib.sha512(page.encode("utf-8")).digest()
    uri = _REDIRECT + "AUZIYQ" + base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")
    with _PAGES_LOCK:
        _PAGES[uri] = page
    host = urllib.parse.urlsplit(page).hostname or page
    return host.removeprefix("www."), uri


def page_of(uri: str) -> str | None:
    """The page a redirect URI made by web_source stands for (None for any other URI)."""
    with _PAGES_LOCK:
        return _PAGES.get(uri)


KAGGLE_PAGE = "https://www.kaggle.com/code/fake/tabular-classification"
ENSEMBLE_GUIDE_PAGE = "https://scikit-learn.org/stable/modules/ensemble.html"
# Fake web pages every grounded retrieval answer rests on, besides one page per model card.
RETRIEVAL_SOURCES: list[tuple[str, str]] = [web_source(KAGGLE_PAGE), web_source(ENSEMBLE_GUIDE_PAGE)]


def model_page(model_name: str) -> str:
    """A documentation page for a model card's name: scikit-learn's page of the class it names."""
    m = re.search(r"\b(sklearn(?:\.\w+)+)", model_name)
    if m:
        return f"https://scikit-learn.org/stable/modules/generated/{m.group(1)}.html"
    slug = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-") or "model"
    return f"https://www.kaggle.com/code/fake/{slug}"


class Headers(dict[str, str]):
    """Request headers as sent; lookups ignore case (`headers["authorization"]`)."""

    def _key(self, key: object) -> object:
        if isinstance(key, str) and not dict.__contains__(self, key):
            for k in self.keys():
                if k.lower() == key.lower():
                    return k
        return key

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, self._key(key))  # type: ignore[index]

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, self._key(key))

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return dict.get(self, self._key(key), default)  # type: ignore[call-overload]


@dataclass
class Call:
    """One request as the fake server received it."""

    n: int  # 0-based number of the request on this server
    role: str  # the MLE-STAR role the prompt belongs to (role_of), "unknown" if none
    role_n: int  # 0-based number of earlier requests of this role (failed ones included)
    prompt: str  # the user text of the request
    body: dict[str, Any]  # the parsed JSON request body
    path: str
    headers: dict[str, str]  # a case-insensitive `Headers`
    query: str = ""  # the URL's query string, if any


@dataclass
class Reply:
    """A successful answer."""

    text: str
    # Grounding chunks (title, uri), sent as they are (web_source makes Google-like ones); Gemini only,
    # and only when the request carried the search tool, as the real service grounds nothing otherwise.
    sources: list[tuple[str, str]] = field(default_factory=list)
    tokens_in: int | None = None  # promptTokenCount / prompt_tokens; default: len(prompt) // 4
    tokens_out: int | None = None  # the visible answer's tokens; default: len(text) // 4 + 1
    thoughts_tokens: int = 0  # thinking: Gemini thoughtsTokenCount, OpenAI reasoning_tokens (within completion)
    tool_tokens: int | None = None  # Gemini toolUsePromptTokenCount of a grounded answer; default 64 per source
    # Which chunks support which text: (snippet of `text`, [chunk indices]); the fake finds each snippet
    # (after the previous one when it can) and sends its UTF-8 byte offsets. Default: the whole text, all chunks.
    supports: list[tuple[str, list[int]]] | None = None
    search_queries: list[str] | None = None  # webSearchQueries; default: one query naming the task
    finish_reason: str = ""  # default: "STOP" (Gemini), "stop" (OpenAI)


@dataclass
class Fault:
    """A failed answer: this HTTP status with the provider's error JSON."""

    status: int
    message: str = "fake failure"
    # Gemini: a google.rpc.RetryInfo in the error body (no header, as Google does); OpenAI: a Retry-After header.
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers (e.g. a Retry-After on Gemini)
    details: list[dict[str, Any]] | None = None  # Gemini: the error's `details` verbatim (default: from retry_after)
    type: str = ""  # OpenAI: the error's `type` (default: invalid_request_error, server_error for 5xx)
    body: dict[str, Any] | None = None  # the whole error JSON verbatim (default: the provider's shape)


Responder = Callable[[Call], Reply | Fault]


def role_of(prompt: str) -> str:
    """The role named by the prompt's `# Role: <heading>` line, or "unknown"."""
    m = _ROLE_LINE.search(prompt)
    if m is None:
        return "unknown"
    return ROLE_HEADINGS.get(m.group("heading").strip().lower(), "unknown")


def searched(call: Call) -> bool:
    """Whether a Gemini request asked for the Google Search tool."""
    tools = call.body.get("tools") if isinstance(call.body, dict) else None
    if not isinstance(tools, list):
        return False
    names = ("googleSearch", "google_search", "googleSearchRetrieval", "google_search_retrieval")
    return any(isinstance(t, dict) and any(k in t for k in names) for t in tools)


def retrieval_reply(text: str) -> Reply:
    """A grounded retrieval answer as Google Search grounding gives one: each model card of `text` (a
    JSON list of cards, fenced or not) rests on its own page (chunk i for card i), and all of them on
    the shared RETRIEVAL_SOURCES (the chunks after the cards'); a card's name and reason are its
    supports, so the sources can be attributed card by card."""
    m = _FENCED.match(text)
    try:
        cards = json.loads(m.group("body") if m else text)
    except ValueError:
        cards = None
    if not isinstance(cards, list) or not all(isinstance(c, dict) for c in cards):
        return Reply(text=text, sources=list(RETRIEVAL_SOURCES))
    sources = [web_source(model_page(str(c.get("model_name", "")))) for c in cards]
    kaggle, guide = len(sources), len(sources) + 1
    sources += RETRIEVAL_SOURCES
    supports: list[tuple[str, list[int]]] = []
    for i, card in enumerate(cards):
        name, why = str(card.get("model_name") or ""), str(card.get("why") or "")
        if name and name in text:
            supports.append((name, [i, kaggle]))
        said = json.dumps(why)[1:-1]  # as it stands inside the JSON text
        if why and said in text:
            supports.append((said, [i, guide] if "sklearn.ensemble" in name else [i]))
    return Reply(text=text, sources=sources, supports=supports,
                 search_queries=["best models for tabular binary classification",
                                 "scikit-learn classifiers small numeric tabular data"])


def scripted(expert: ScriptedExpert, plan: dict[tuple[str, int], Reply | Fault | str] | None = None) -> Responder:
    """A responder that serves `plan[(role, role_n)]` where planned (a str is a Reply's text) and the
    expert's answer otherwise (retrieval answers are grounded card by card, see retrieval_reply)."""
    planned = dict(plan or {})

    def respond(call: Call) -> Reply | Fault:
        item = planned.get((call.role, call.role_n))
        if item is not None:
            return Reply(text=item) if isinstance(item, str) else item
        text = expert.answer(call.role, call.prompt)
        return retrieval_reply(text) if call.role == "retrieve_models" else Reply(text=text)

    return respond


def unfenced(text: str) -> str:
    """A whole-answer ```json fence removed, as JSON mode answers: the bare JSON text."""
    m = _FENCED.match(text)
    return m.group("body") if m else text


def search_entry_point(queries: list[str]) -> str:
    """Search-suggestion chips in the shape of Google's `searchEntryPoint.renderedContent` (a style
    block and a div whose chips link to google.com searches)."""
    chips = "\n".join(
        f'    <a class="chip" href="https://www.google.com/search?q={urllib.parse.quote_plus(q)}'
        f'&amp;client=app-vertex-grounding&amp;safesearch=active">{html.escape(q)}</a>' for q in queries)
    return ("<style>\n.container {\n  align-items: center;\n  border-radius: 8px;\n  display: flex;\n"
            "  font-family: Google Sans, Roboto, sans-serif;\n  font-size: 14px;\n  line-height: 20px;\n"
            "  padding: 8px 12px;\n}\n.chip {\n  display: inline-block;\n  border: solid 1px;\n"
            "  border-radius: 16px;\n  min-width: 14px;\n  padding: 5px 16px;\n  text-align: center;\n"
            "  user-select: none;\n  margin: 0 8px;\n}\n.carousel {\n  overflow: auto;\n  scrollbar-width: none;\n"
            "  white-space: nowrap;\n  margin-right: -12px;\n}\n@media (prefers-color-scheme: light) {\n"
            "  .container {\n    background-color: #fafafa;\n    box-shadow: 0 0 0 1px #0000000f;\n  }\n"
            "  .chip {\n    background-color: #ffffff;\n    border-color: #d2d2d2;\n    color: #5e5e5e;\n"
            "    text-decoration: none;\n  }\n}\n</style>\n"
            '<div class="container">\n  <div class="headline">\n'
            '    <svg class="logo-light" width="18" height="18" viewBox="9 9 35 35" fill="none" '
            'xmlns="http://www.w3.org/2000/svg"><path fill="#4285F4" d="M42.8622 27.0064C42.8622 25.7839 42.7525 '
            '24.6084 42.5487 23.4799H26.3109V30.1568H35.5897C35.1821 32.3041 33.9596 34.1222 32.1258 35.3448V39.6864'
            'H37.7213C40.9814 36.677 42.8622 32.2571 42.8622 27.0064V27.0064Z"></path></svg>\n  </div>\n'
            f'  <div class="carousel">\n{chips}\n  </div>\n</div>\n')


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _fmt_duration(value: float) -> str:
    """A protobuf Duration in JSON: "37s", "2.500s"."""
    return f"{int(value)}s" if float(value).is_integer() else f"{value:.3f}s"


def _byte_supports(text: str, supports: list[tuple[str, list[int]]], n_chunks: int) -> list[dict[str, Any]]:
    """groundingSupports for (snippet, chunk indices) pairs: the snippet's UTF-8 byte offsets in `text`
    (zero offsets left out, as proto3 JSON does)."""
    out: list[dict[str, Any]] = []
    cursor = 0
    for snippet, chunks in supports:
        if not snippet:
            continue
        bad = [i for i in chunks if not 0 <= i < n_chunks]
        if bad:
            raise ValueError(f"support {snippet[:40]!r} cites chunks {bad}; the reply has {n_chunks}")
        at = text.find(snippet, cursor)
        if at < 0:
            at = text.find(snippet)
        if at < 0:
            raise ValueError(f"support snippet {snippet[:60]!r} is not in the reply's text")
        cursor = at
        start = len(text[:at].encode("utf-8"))
        segment: dict[str, Any] = {"endIndex": start + len(snippet.encode("utf-8")), "text": snippet}
        if start:
            segment = {"startIndex": start, **segment}
        out.append({"segment": segment, "groundingChunkIndices": list(chunks)})
    return out


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        raw = self._read_body()
        self.server.owner.handle(self, raw)

    def do_GET(self) -> None:
        self.server.owner.send_json(self, 404, {"error": {"code": 404, "message": f"no GET {self.path}"}})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # a client that timed out and hung up: expected
            return
        super().handle_error(request, client_address)


class FakeServer:
    """A local HTTP server answering through a `Responder`; use it as a context manager.

    `calls` lists every request in arrival order (recorded before it is answered). While `storm`
    holds an HTTP status, every request is answered with that status as a `Fault`.
    """

    kind = "fake"

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.storm: int | None = None
        self.errors: list[str] = []  # responder exceptions and unusable Replies (answered as HTTP 400)
        self._calls: list[Call] = []
        self._per_role: dict[str, int] = {}
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{type(self).__name__}:{port}", daemon=True)
        self._thread.start()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ records

    @property
    def calls(self) -> list[Call]:
        """A snapshot of the requests so far."""
        with self._lock:
            return list(self._calls)

    def calls_of(self, role: str) -> list[Call]:
        return [c for c in self.calls if c.role == role]

    def _record(self, prompt: str, body: dict[str, Any], path: str, headers: dict[str, str], query: str) -> Call:
        role = role_of(prompt)
        with self._lock:
            call = Call(n=len(self._calls), role=role, role_n=self._per_role.get(role, 0), prompt=prompt,
                        body=body, path=path, headers=headers, query=query)
            self._per_role[role] = call.role_n + 1
            self._calls.append(call)
        return call

    def _error(self, message: str) -> Fault:
        with self._lock:
            self.errors.append(message)
        return Fault(400, message)

    # ------------------------------------------------------------------ protocol

    def route(self, path: str) -> dict[str, str] | None:
        """The path's parameters when this server answers it, else None."""
        raise NotImplementedError

    def prompt_of(self, body: dict[str, Any]) -> str:
        raise NotImplementedError

    def check(self, call: Call, params: dict[str, str]) -> Fault | None:
        """The service's own refusal of a request before any answer is chosen (auth, model, options)."""
        return None

    def reply_json(self, call: Call, params: dict[str, str], reply: Reply) -> dict[str, Any]:
        raise NotImplementedError

    def fault_json(self, fault: Fault) -> dict[str, Any]:
        raise NotImplementedError

    def fault_headers(self, fault: Fault) -> dict[str, str]:
        return dict(fault.headers)

    def send_json(self, handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any],
                  headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)

    def _send_fault(self, handler: BaseHTTPRequestHandler, fault: Fault) -> None:
        body = fault.body if fault.body is not None else self.fault_json(fault)
        self.send_json(handler, fault.status, body, self.fault_headers(fault))

    def handle(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        path, _, query = handler.path.partition("?")
        params = self.route(path)
        if params is None:
            self._send_fault(handler, Fault(404, f"the fake {self.kind} server has no route POST {path}"))
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the request body is not a JSON object")
        except ValueError as e:
            self._send_fault(handler, Fault(400, f"invalid JSON body: {e}"))
            return
        call = self._record(self.prompt_of(body), body, path, Headers(handler.headers.items()), query)
        storm = self.storm
        if storm is not None:
            self._send_fault(handler, Fault(storm, f"fake storm: HTTP {storm}"))
            return
        refused = self.check(call, params)
        if refused is not None:
            self._send_fault(handler, refused)
            return
        try:
            answer = self.responder(call)
        except Exception as e:  # a broken responder must not hang the client
            answer = self._error(f"fake responder failed on {call.role} #{call.role_n}: {type(e).__name__}: {e}")
        if isinstance(answer, Reply):
            try:
                payload = self.reply_json(call, params, answer)
            except Exception as e:  # e.g. a support snippet that is not in the text
                answer = self._error(f"fake reply for {call.role} #{call.role_n} is unusable: "
                                     f"{type(e).__name__}: {e}")
            else:
                self.send_json(handler, 200, payload)
                return
        self._send_fault(handler, answer)


def _tokens(call: Call, reply: Reply, text: str) -> tuple[int, int]:
    tokens_in = len(call.prompt) // 4 if reply.tokens_in is None else reply.tokens_in
    tokens_out = len(text) // 4 + 1 if reply.tokens_out is None else reply.tokens_out
    return tokens_in, tokens_out


def _task_name(prompt: str) -> str:
    m = re.search(r"^- Name: (.+)$", prompt, re.M)
    return m.group(1).strip() if m else "this task"


class FakeGemini(FakeServer):
    """`POST .../models/{model}:generateContent` in the Gemini REST shape, on the Gemini API path
    (`/{version}/models/{model}`) and Vertex AI's (`/{version}/projects/{p}/locations/{l}/publishers/google/
    models/{model}`, and `/{version}/publishers/google/models/{model}` in express mode).

    models: the model names served (others get 404 NOT_FOUND); default KNOWN_GEMINI_MODELS.
    refuse_search: models that refuse the googleSearch tool with 400 INVALID_ARGUMENT; a mapping gives each
      its message (default SEARCH_REFUSED).
    require_auth: the Gemini API and express mode need an x-goog-api-key header (or ?key=), Vertex AI's
      project path an `Authorization: Bearer` token, as the services do.
    """

    kind = "Gemini"

    def __init__(self, responder: Responder, *, models: Iterable[str] | None = None,
                 refuse_search: Mapping[str, str] | Iterable[str] = (), require_auth: bool = True) -> None:
        self.models: set[str] = set(KNOWN_GEMINI_MODELS if models is None else models)
        self.refuse_search: dict[str, str] = (dict(refuse_search) if isinstance(refuse_search, Mapping)
                                              else dict.fromkeys(refuse_search, SEARCH_REFUSED))
        self.require_auth = require_auth
        super().__init__(responder)

    def route(self, path: str) -> dict[str, str] | None:
        for api, pattern in _GEMINI_ROUTES:
            m = pattern.match(path)
            if m is not None:
                return {"api": api, **m.groupdict()}
        return None

    def prompt_of(self, body: dict[str, Any]) -> str:
        texts: list[str] = []
        contents = body.get("contents") or []
        for content in contents if isinstance(contents, list) else [contents]:
            if not isinstance(content, dict):
                continue
            for part in content.get("parts") or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
        return "".join(texts)

    def check(self, call: Call, params: dict[str, str]) -> Fault | None:
        api, model, version = params["api"], params["model"], params["version"]
        if self.require_auth:
            if api == "vertex":
                if not (call.headers.get("Authorization") or "").startswith("Bearer "):
                    return Fault(401, "Request is missing required authentication credential. Expected OAuth 2 "
                                      "access token, login cookie or other valid authentication credential. See "
                                      "https://developers.google.com/identity/sign-in/web/devconsole-project.")
            elif not (call.headers.get("x-goog-api-key") or "key" in urllib.parse.parse_qs(call.query)):
                return Fault(403, "Method doesn't allow unregistered callers (callers without established "
                                  "identity). Please use API Key or other form of API consumer identity to call "
                                  "this API.")
        if model not in self.models:
            if api == "gemini":
                return Fault(404, f"models/{model} is not found for API version {version}, or is not supported "
                                  "for generateContent. Call ListModels to see the list of available models and "
                                  "their supported methods.")
            where = (f"projects/{params['project']}/locations/{params['location']}/" if api == "vertex" else "")
            return Fault(404, f"Publisher Model `{where}publishers/google/models/{model}` was not found or your "
                              "project does not have access to it. Please ensure you are using a valid model "
                              "version. For more information, see: "
                              "https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions")
        if searched(call) and model in self.refuse_search:
            return Fault(400, self.refuse_search[model])
        return None

    def reply_json(self, call: Call, params: dict[str, str], reply: Reply) -> dict[str, Any]:
        config = call.body.get("generationConfig") or {}
        text = unfenced(reply.text) if config.get("responseMimeType") == "application/json" else reply.text
        tokens_in, tokens_out = _tokens(call, reply, text)
        candidate: dict[str, Any] = {
            "content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": reply.finish_reason or "STOP",
            "index": 0,
        }
        usage: dict[str, Any] = {"promptTokenCount": tokens_in, "candidatesTokenCount": tokens_out}
        total = tokens_in + tokens_out
        if reply.thoughts_tokens:
            usage["thoughtsTokenCount"] = reply.thoughts_tokens
            total += reply.thoughts_tokens
        if reply.sources and searched(call):  # the service grounds only a request with the search tool
            tool = 64 * len(reply.sources) if reply.tool_tokens is None else reply.tool_tokens
            if tool:
                usage["toolUsePromptTokenCount"] = tool
                total += tool
            candidate["groundingMetadata"] = self._grounding(call, params, reply, text)
        usage["totalTokenCount"] = total
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": tokens_in}]
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": params["model"],
                "responseId": f"fake-response-{call.n}"}

    def _grounding(self, call: Call, params: dict[str, str], reply: Reply, text: str) -> dict[str, Any]:
        queries = (list(reply.search_queries) if reply.search_queries is not None
                   else [f"best machine learning models for {_task_name(call.prompt)}"])
        chunks = []
        for title, uri in reply.sources:
            web = {"uri": uri, "title": title}
            if params["api"] != "gemini":  # Vertex AI also names the domain
                web["domain"] = title
            chunks.append({"web": web})
        supports = (reply.supports if reply.supports is not None
                    else [(text.strip(), list(range(len(chunks))))])
        return {"searchEntryPoint": {"renderedContent": search_entry_point(queries)},
                "groundingChunks": chunks,
                "groundingSupports": _byte_supports(text, supports, len(chunks)),
                "webSearchQueries": queries}

    def fault_json(self, fault: Fault) -> dict[str, Any]:
        status = _GOOGLE_STATUS.get(fault.status, "INTERNAL" if fault.status >= 500 else "UNKNOWN")
        error: dict[str, Any] = {"code": fault.status, "message": fault.message, "status": status}
        details = fault.details if fault.details is not None else _default_details(fault)
        if details:
            error["details"] = details
        return {"error": error}


def _default_details(fault: Fault) -> list[dict[str, Any]]:
    """What Google puts in a quota error: which quota, where to read about it, and when to retry."""
    if fault.retry_after is None:
        return []
    retry = {"@type": _RPC + "RetryInfo", "retryDelay": _fmt_duration(fault.retry_after)}
    if fault.status != 429:
        return [retry]
    return [
        {"@type": _RPC + "QuotaFailure", "violations": [{
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count",
            "quotaId": "GenerateContentPaidTierInputTokensPerModelPerMinute",
            "quotaDimensions": {"location": "global", "model": "gemini-3.5-flash"}, "quotaValue": "1000000"}]},
        {"@type": _RPC + "Help", "links": [{"description": "Learn more about Gemini API quotas",
                                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
        retry,
    ]


class FakeOpenAI(FakeServer):
    """`POST /v1/chat/completions` in the OpenAI chat-completion shape.

    A `response_format` is validated as OpenAI does (type text / json_object / json_schema, and a
    json_schema needs a name and an object `schema`); JSON answers come without a ``` fence.
    reject_response_format: refuse any request with a response_format, as llama.cpp and older servers
      do: True gives OpenAI's 400 shape, 422 a FastAPI validation error.
    """

    kind = "OpenAI"

    def __init__(self, responder: Responder, *, reject_response_format: bool | int = False) -> None:
        self.reject_response_format = reject_response_format
        super().__init__(responder)

    def route(self, path: str) -> dict[str, str] | None:
        return {} if path.rstrip("/").endswith("/chat/completions") else None

    def prompt_of(self, body: dict[str, Any]) -> str:
        texts: list[str] = []
        for message in body.get("messages") or []:
            if not isinstance(message, dict) or message.get("role") != "user":
                continue
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):  # content parts
                texts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
        return "".join(texts)

    def check(self, call: Call, params: dict[str, str]) -> Fault | None:
        if "response_format" not in call.body:
            return None
        fmt = call.body["response_format"]
        if self.reject_response_format:
            kind = fmt.get("type") if isinstance(fmt, dict) else fmt
            if self.reject_response_format is not True and int(self.reject_response_format) == 422:
                return Fault(422, body={"detail": [{"type": "extra_forbidden", "loc": ["body", "response_format"],
                                                    "msg": "Extra inputs are not permitted", "input": fmt}]})
            return _invalid(f"response_format type '{kind}' is not supported by this server", "response_format")
        if not isinstance(fmt, dict):
            return _invalid(f"Invalid type for 'response_format': expected an object, but got "
                            f"{_json_type(fmt)} instead.", "response_format")
        kind = fmt.get("type")
        if kind not in _RESPONSE_FORMATS:
            return _invalid(f"Invalid value: {kind!r}. Supported values are: 'text', 'json_object', and "
                            "'json_schema'.", "response_format.type")
        if kind != "json_schema":
            return None
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict):
            return _invalid("Missing required parameter: 'response_format.json_schema'.",
                            "response_format.json_schema")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            return _invalid("Missing required parameter: 'response_format.json_schema.name'.",
                            "response_format.json_schema.name")
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):
            return _invalid("Invalid 'response_format.json_schema.name': string does not match pattern. Expected "
                            "a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                            "response_format.json_schema.name")
        if not isinstance(spec.get("schema"), dict):
            return _invalid("Invalid type for 'response_format.json_schema.schema': expected an object, but got "
                            f"{_json_type(spec.get('schema'))} instead.", "response_format.json_schema.schema")
        return None

    def reply_json(self, call: Call, params: dict[str, str], reply: Reply) -> dict[str, Any]:
        fmt = call.body.get("response_format")
        json_mode = isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")
        text = unfenced(reply.text) if json_mode else reply.text
        tokens_in, tokens_out = _tokens(call, reply, text)
        completion = tokens_out + reply.thoughts_tokens  # reasoning is counted within completion_tokens
        usage: dict[str, Any] = {"prompt_tokens": tokens_in, "completion_tokens": completion,
                                 "total_tokens": tokens_in + completion}
        if reply.thoughts_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": reply.thoughts_tokens}
        return {
            "id": f"chatcmpl-fake-{call.n}",
            "object": "chat.completion",
            "created": 0,
            "model": str(call.body.get("model") or ""),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": reply.finish_reason or "stop"}],
            "usage": usage,
        }

    def fault_json(self, fault: Fault) -> dict[str, Any]:
        kind = fault.type or ("server_error" if fault.status >= 500 else "invalid_request_error")
        return {"error": {"message": fault.message, "type": kind, "param": None, "code": fault.status}}

    def fault_headers(self, fault: Fault) -> dict[str, str]:
        headers = {} if fault.retry_after is None else {"Retry-After": _fmt_seconds(fault.retry_after)}
        return {**headers, **fault.headers}


def _invalid(message: str, param: str) -> Fault:
    """OpenAI's 400 for a bad request parameter."""
    return Fault(400, message, body={"error": {"message": message, "type": "invalid_request_error",
                                               "param": param, "code": None}})


def _json_type(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a decimal", list: "an array",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)
