"""Local fake LLM servers for offline tests: a Gemini REST endpoint and an OpenAI-compatible one.

Both are real HTTP servers on 127.0.0.1 (a free port), so the production clients (the
`google-genai` SDK through `HttpOptions(base_url=...)`, and our urllib OpenAI client) talk to
them unchanged. A `Responder` decides each answer from the recorded `Call`: a `Reply` (text,
grounding sources, token counts) or a `Fault` (an HTTP error in the provider's own JSON shape).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
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
_GEMINI_PATH = re.compile(r"^/(?P<version>[^/]+)/models/(?P<model>[^/:]+):generateContent$")
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

# Fake web pages a retrieval answer is "grounded" on.
RETRIEVAL_SOURCES: list[tuple[str, str]] = [
    ("Kaggle: tabular classification", "https://www.kaggle.com/code/fake/tabular-classification"),
    ("scikit-learn: ensemble methods", "https://scikit-learn.org/stable/modules/ensemble.html"),
]


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


@dataclass
class Reply:
    """A successful answer."""

    text: str
    sources: list[tuple[str, str]] = field(default_factory=list)  # (title, uri) grounding, Gemini only
    tokens_in: int | None = None  # default: len(prompt) // 4
    tokens_out: int | None = None  # default: len(text) // 4 + 1


@dataclass
class Fault:
    """A failed answer: this HTTP status with the provider's error JSON."""

    status: int
    message: str = "fake failure"
    retry_after: float | None = None  # sent as a Retry-After header


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


def scripted(expert: ScriptedExpert, plan: dict[tuple[str, int], Reply | Fault | str] | None = None) -> Responder:
    """A responder that serves `plan[(role, role_n)]` where planned (a str is a Reply's text) and the
    expert's answer otherwise (retrieval answers carry two fake grounding sources)."""
    planned = dict(plan or {})

    def respond(call: Call) -> Reply | Fault:
        item = planned.get((call.role, call.role_n))
        if item is not None:
            return Reply(text=item) if isinstance(item, str) else item
        text = expert.answer(call.role, call.prompt)
        sources = list(RETRIEVAL_SOURCES) if call.role == "retrieve_models" else []
        return Reply(text=text, sources=sources)

    return respond


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


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


class FakeServer:
    """A local HTTP server answering through a `Responder`; use it as a context manager.

    `calls` lists every request in arrival order (recorded before it is answered). While `storm`
    holds an HTTP status, every request is answered with that status as a `Fault`.
    """

    kind = "fake"

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.storm: int | None = None
        self.errors: list[str] = []  # responder exceptions (answered as HTTP 400)
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

    def _record(self, prompt: str, body: dict[str, Any], path: str, headers: dict[str, str]) -> Call:
        role = role_of(prompt)
        with self._lock:
            call = Call(n=len(self._calls), role=role, role_n=self._per_role.get(role, 0), prompt=prompt,
                        body=body, path=path, headers=headers)
            self._per_role[role] = call.role_n + 1
            self._calls.append(call)
        return call

    # ------------------------------------------------------------------ protocol

    def route(self, path: str) -> dict[str, str] | None:
        """The path's parameters when this server answers it, else None."""
        raise NotImplementedError

    def prompt_of(self, body: dict[str, Any]) -> str:
        raise NotImplementedError

    def reply_json(self, call: Call, params: dict[str, str], reply: Reply) -> dict[str, Any]:
        raise NotImplementedError

    def fault_json(self, fault: Fault) -> dict[str, Any]:
        raise NotImplementedError

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
        headers = {} if fault.retry_after is None else {"Retry-After": _fmt_seconds(fault.retry_after)}
        self.send_json(handler, fault.status, self.fault_json(fault), headers)

    def handle(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        path = handler.path.split("?", 1)[0]
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
        call = self._record(self.prompt_of(body), body, path, Headers(handler.headers.items()))
        storm = self.storm
        if storm is not None:
            self._send_fault(handler, Fault(storm, f"fake storm: HTTP {storm}"))
            return
        try:
            answer = self.responder(call)
        except Exception as e:  # a broken responder must not hang the client
            message = f"fake responder failed on {call.role} #{call.role_n}: {type(e).__name__}: {e}"
            with self._lock:
                self.errors.append(message)
            answer = Fault(400, message)
        if isinstance(answer, Fault):
            self._send_fault(handler, answer)
        else:
            self.send_json(handler, 200, self.reply_json(call, params, answer))


def _tokens(call: Call, reply: Reply) -> tuple[int, int]:
    tokens_in = len(call.prompt) // 4 if reply.tokens_in is None else reply.tokens_in
    tokens_out = len(reply.text) // 4 + 1 if reply.tokens_out is None else reply.tokens_out
    return tokens_in, tokens_out


def _task_name(prompt: str) -> str:
    m = re.search(r"^- Name: (.+)$", prompt, re.M)
    return m.group(1).strip() if m else "this task"


class FakeGemini(FakeServer):
    """`POST /{version}/models/{model}:generateContent` in the Gemini REST shape."""

    kind = "Gemini"

    def route(self, path: str) -> dict[str, str] | None:
        m = _GEMINI_PATH.match(path)
        return None if m is None else {"version": m.group("version"), "model": m.group("model")}

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

    def reply_json(self, call: Call, params: dict[str, str], reply: Reply) -> dict[str, Any]:
        tokens_in, tokens_out = _tokens(call, reply)
        candidate: dict[str, Any] = {
            "content": {"role": "model", "parts": [{"text": reply.text}]},
            "finishReason": "STOP",
            "index": 0,
        }
        if reply.sources:
            candidate["groundingMetadata"] = {
                "webSearchQueries": [f"best machine learning models for {_task_name(call.prompt)}"],
                "groundingChunks": [{"web": {"uri": uri, "title": title}} for title, uri in reply.sources],
            }
        return {
            "candidates": [candidate],
            "usageMetadata": {"promptTokenCount": tokens_in, "candidatesTokenCount": tokens_out,
                              "totalTokenCount": tokens_in + tokens_out},
            "modelVersion": params["model"],
        }

    def fault_json(self, fault: Fault) -> dict[str, Any]:
        status = _GOOGLE_STATUS.get(fault.status, "INTERNAL" if fault.status >= 500 else "UNKNOWN")
        return {"error": {"code": fault.status, "message": fault.message, "status": status}}


class FakeOpenAI(FakeServer):
    """`POST /v1/chat/completions` in the OpenAI chat-completion shape."""

    kind = "OpenAI"

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

    def reply_json(self, call: Call, params: dict[str, str], reply: Reply) -> dict[str, Any]:
        tokens_in, tokens_out = _tokens(call, reply)
        return {
            "id": f"chatcmpl-fake-{call.n}",
            "object": "chat.completion",
            "created": 0,
            "model": str(call.body.get("model") or ""),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                      "total_tokens": tokens_in + tokens_out},
        }

    def fault_json(self, fault: Fault) -> dict[str, Any]:
        return {"error": {"message": fault.message, "type": "server_error", "code": fault.status}}
