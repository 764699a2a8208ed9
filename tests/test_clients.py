"""The chat clients against the faithful fakes: Gemini through the real google-genai SDK (API key, Vertex AI
and its express mode), OpenAI-compatible servers through our urllib client.

Each test names the shape of the real service it relies on; the fakes send exactly that shape, so
what passes here is how the clients read the real services: retry delays in Google's error body,
token counts split by kind, grounding supports in UTF-8 byte offsets, refused tools and options,
and whose fault a failure is (service, network, or our own code)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pydantic
import pytest
from fakes import (
    RETRIEVAL_SOURCES,
    SEARCH_REFUSED,
    Call,
    FakeGemini,
    FakeOpenAI,
    Fault,
    Reply,
    ScriptedExpert,
    model_page,
    page_of,
    retrieval_reply,
    scripted,
    searched,
    web_source,
)
from google import genai
from google.genai import types

from mlestar_core.brains.llm import gemini
from mlestar_core.brains.llm.clients import FatalError, LocalError, Request, ToolRefused, TransientError
from mlestar_core.brains.llm.gemini import GeminiClient
from mlestar_core.brains.llm.openai_compat import OpenAIClient
from mlestar_core.brains.llm.settings import LLMSettings

SCHEMA: dict[str, Any] = {"type": "object", "properties": {"block": {"type": "string"}}, "required": ["block"]}
ROOT_URL = "https://vertexaisearch.cloud.google.com/grounding-api-redirect/"


@pytest.fixture(autouse=True)
def no_ambient_google_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK reads these from the environment; a developer's own must not steer the tests."""
    for name in ("GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_CLOUD_PROJECT",
                 "GOOGLE_CLOUD_LOCATION", "GOOGLE_GENAI_API_VERSION", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)


def gclient(fake: FakeGemini, **settings: Any) -> GeminiClient:
    return GeminiClient(LLMSettings(base_url=fake.url, **settings), "test-key")


def ask(model: str = "gemini-test", *, search: bool = False, schema: Any = None, prompt: str = "hello") -> Request:
    return Request(role="retrieve_models" if search else "debug", prompt=prompt, model=model, search=search,
                   schema=schema)


# ----------------------------------------------------------------------------------- Gemini: rate limits


def test_gemini_429_delay_comes_from_the_retry_info_in_the_body() -> None:
    plan: dict[tuple[str, int], Reply | Fault | str] = {
        ("unknown", 0): Fault(429, "You exceeded your current quota.", retry_after=37),
        ("unknown", 1): Fault(429, "slow down", details=[
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]),
        ("unknown", 2): Fault(429, "behind a proxy", headers={"Retry-After": "4"}),  # no RetryInfo: the header
        ("unknown", 3): Fault(503, "The model is overloaded. Please try again later."),  # nothing to go by
    }
    with FakeGemini(scripted(ScriptedExpert(), plan)) as fake:
        client = gclient(fake)
        delays, messages = [], []
        for _ in range(4):
            with pytest.raises(TransientError) as info:
                client.complete(ask())
            delays.append((info.value.status, info.value.retry_after))
            messages.append(str(info.value))
        assert delays == [(429, 37.0), (429, 1.5), (429, 4.0), (503, None)]
        assert "RESOURCE_EXHAUSTED" in messages[0] and "UNAVAILABLE" in messages[3]


def test_retry_delay_reader_takes_google_durations() -> None:
    def details(delay: Any) -> dict[str, Any]:
        return {"error": {"code": 429, "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
                                                   {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                                    "retryDelay": delay}]}}

    assert gemini._retry_info_delay(details("37s")) == 37.0
    assert gemini._retry_info_delay(details("0.250s")) == 0.25
    assert gemini._retry_info_delay(details({"seconds": 2, "nanos": 500_000_000})) == 2.5
    assert gemini._retry_info_delay(details("soon")) is None
    assert gemini._retry_info_delay({"error": {"code": 429}}) is None
    assert gemini._retry_info_delay("429 RESOURCE_EXHAUSTED") is None


# ----------------------------------------------------------------------------------- Gemini: answers


def test_gemini_tokens_are_split_by_kind_and_summed_for_billing() -> None:
    reply = Reply("answer", sources=[web_source("https://scikit-learn.org/a")], tokens_in=100, tokens_out=20,
                  thoughts_tokens=300, tool_tokens=40)
    with FakeGemini(lambda call: reply) as fake:
        grounded = gclient(fake).complete(ask(search=True))
        assert (grounded.tokens_in, grounded.tokens_out) == (100 + 40, 20 + 300)
        assert (grounded.thoughts_tokens, grounded.tool_tokens) == (300, 40)
        plain = gclient(fake).complete(ask())  # no search tool: no tool tokens, no grounding
        assert (plain.tokens_in, plain.tokens_out, plain.tool_tokens) == (100, 320, 0)
        assert plain.sources == [] and plain.supports == [] and plain.search_queries == []
        assert plain.search_entry_point == ""
        assert searched(fake.calls[0]) and not searched(fake.calls[1])


def test_gemini_supports_become_character_offsets_into_the_text() -> None:
    # Non-ASCII text: Google's offsets are UTF-8 bytes, which drift from characters after "é".
    text = "Régression logistique — une base solide.\nForêt aléatoire : robuste, peu de réglages.\n"
    sources = [web_source("https://scikit-learn.org/linear"), web_source("https://scikit-learn.org/forest")]
    supports = [("Forêt aléatoire : robuste", [1]), ("Régression logistique", [0]), ("une base solide", [0, 1])]
    reply = Reply(text, sources=sources, supports=supports, search_queries=["modèles tabulaires"])
    with FakeGemini(lambda call: reply) as fake:
        sdk = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=fake.url))  # kept: GC closes it
        raw = sdk.models.generate_content(
            model="gemini-test", contents="q",
            config=types.GenerateContentConfig(tools=[types.Tool(google_search=types.GoogleSearch())]))
        segments = [s.segment for s in raw.candidates[0].grounding_metadata.grounding_supports]  # type: ignore
        assert segments[0].start_index == len(text[:text.index("Forêt")].encode())  # bytes, not characters
        assert segments[0].start_index != text.index("Forêt")
        assert segments[1].start_index is None  # proto3 JSON leaves a zero offset out

        c = gclient(fake).complete(ask(search=True))
    assert c.text == text
    assert [(s["text"], s["chunks"]) for s in c.supports] == [(t, i) for t, i in supports]
    for s in c.supports:
        assert c.text[s["start"]:s["end"]] == s["text"]
    assert c.supports[0]["start"] == text.index("Forêt")
    assert [s["title"] for s in c.sources] == ["scikit-learn.org", "scikit-learn.org"]
    assert all(s["uri"].startswith(ROOT_URL) for s in c.sources)
    assert c.search_queries == ["modèles tabulaires"]
    assert "modèles tabulaires" in c.search_entry_point and "<style>" in c.search_entry_point


def test_supports_reader_handles_parts_and_offsets_that_miss() -> None:
    pieces = [(0, "héllo "), (1, "wörld and more")]
    text = "".join(t for _, t in pieces)
    raw = [
        # offsets relative to part 1, as documented
        types.GroundingSupport(segment=types.Segment(part_index=1, start_index=0, end_index=len("wörld".encode()),
                                                     text="wörld"), grounding_chunk_indices=[2]),
        # offsets into the whole text, no part named
        types.GroundingSupport(segment=types.Segment(end_index=len("héllo".encode()), text="héllo"),
                               grounding_chunk_indices=[0, 1]),
        # offsets that do not hold the text: the nearest occurrence of the text wins
        types.GroundingSupport(segment=types.Segment(start_index=1, end_index=5, text="more"),
                               grounding_chunk_indices=[0]),
    ]
    # chunk 1 was not a web chunk: index 2 became source 1, and 1 is dropped
    out = gemini._supports(text, pieces, raw, {0: 0, 2: 1})
    assert [(text[s["start"]:s["end"]], s["chunks"]) for s in out] == [("wörld", [1]), ("héllo", [0]),
                                                                      ("more", [0])]


def test_default_retrieval_grounds_each_card_on_its_own_page() -> None:
    expert = ScriptedExpert()
    with FakeGemini(scripted(expert)) as fake:
        prompt = "# Role: model retriever\nList 3 models.\n- Name: breast-cancer\nM = 3"
        c = gclient(fake).complete(Request(role="retrieve_models", prompt=prompt, model="gemini-3.5-flash",
                                           search=True))
    cards = json.loads(c.text.split("```json\n", 1)[1].rsplit("```", 1)[0])
    assert len(cards) >= 2
    shared = [page_of(u) for _, u in RETRIEVAL_SOURCES]
    assert [page_of(s["uri"]) for s in c.sources] == [model_page(card["model_name"]) for card in cards] + shared
    for i, card in enumerate(cards):
        own = [s for s in c.supports if s["text"] == card["model_name"]]
        assert len(own) == 1 and own[0]["chunks"][0] == i  # the card's name cites the card's page first
        cited = {j for s in c.supports if s["text"] in (card["model_name"], json.dumps(card["why"])[1:-1])
                 for j in s["chunks"]}
        assert not cited & (set(range(len(cards))) - {i})  # and never another card's page
    assert c.tool_tokens > 0 and len(c.search_queries) == 2


def test_retrieval_reply_without_cards_falls_back_to_the_shared_sources() -> None:
    reply = retrieval_reply("Sorry, no JSON today.")
    assert reply.sources == RETRIEVAL_SOURCES and reply.supports is None


def test_gemini_json_mode_sends_the_schema_and_max_tokens_and_gets_bare_json() -> None:
    fenced = '```json\n{"block": "model"}\n```\n'
    with FakeGemini(lambda call: Reply(fenced)) as fake:
        c = gclient(fake, max_output_tokens=1234, temperature=0.2).complete(ask(schema=SCHEMA))
        assert json.loads(c.text) == {"block": "model"}  # JSON mode answers JSON, never a fence
        config = fake.calls[0].body["generationConfig"]
        assert config == {"maxOutputTokens": 1234, "temperature": 0.2, "responseMimeType": "application/json",
                          "responseJsonSchema": SCHEMA}
        assert gclient(fake).complete(ask()).text == fenced  # free text keeps what the model wrote
        assert fake.calls[1].body["generationConfig"] == {"maxOutputTokens": 16384}


# ----------------------------------------------------------------------------------- Gemini: refusals


def test_unknown_model_is_fatal_404_in_googles_shape() -> None:
    with FakeGemini(lambda call: Reply("never")) as fake:
        with pytest.raises(FatalError) as info:
            gclient(fake).complete(ask("gemini-9-ultra"))
        assert info.value.status == 404 and not isinstance(info.value, ToolRefused)
        assert "NOT_FOUND" in str(info.value) and "models/gemini-9-ultra is not found" in str(info.value)
        fake.models.add("gemini-9-ultra")
        assert gclient(fake).complete(ask("gemini-9-ultra")).text == "never"


def test_a_model_that_refuses_search_raises_tool_refused_and_answers_without_it() -> None:
    refusing = {"gemini-2.5-flash-lite": "Tool use with function calling is unsupported"}
    with FakeGemini(lambda call: Reply("fine"), refuse_search=["gemini-test"]) as fake, \
            FakeGemini(lambda call: Reply("fine"), refuse_search=refusing) as other:
        client = gclient(fake)
        with pytest.raises(ToolRefused) as info:
            client.complete(ask(search=True))
        assert info.value.status == 400 and SEARCH_REFUSED in str(info.value)
        assert "INVALID_ARGUMENT" in str(info.value)
        assert client.complete(ask()).text == "fine"  # the same model without the tool answers
        with pytest.raises(ToolRefused, match="function calling"):
            gclient(other).complete(ask("gemini-2.5-flash-lite", search=True))


def test_a_400_is_tool_refused_only_for_a_search_request_about_the_tool() -> None:
    plan: dict[tuple[str, int], Reply | Fault | str] = {
        ("unknown", 0): Fault(400, "Request contains an invalid argument."),  # a search request, another cause
        ("unknown", 1): Fault(400, "Search Grounding is not supported."),  # no search asked: not the tool's fault
    }
    with FakeGemini(scripted(ScriptedExpert(), plan)) as fake:
        client = gclient(fake)
        for request in (ask(search=True), ask()):
            with pytest.raises(FatalError) as info:
                client.complete(request)
            assert info.value.status == 400 and not isinstance(info.value, ToolRefused)


def test_fake_gemini_wants_credentials_like_google() -> None:
    with FakeGemini(lambda call: Reply("x")) as fake:
        body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
        for path, status in [("/v1beta/models/gemini-test:generateContent", 403),
                             ("/v1beta1/projects/p/locations/us-central1/publishers/google/models/gemini-test"
                              ":generateContent", 401)]:
            request = urllib.request.Request(fake.url + path, data=json.dumps(body).encode(), method="POST",
                                             headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(request, timeout=10)
            with info.value as e:
                error = json.loads(e.read())["error"]
            assert e.code == status == error["code"]
            assert error["status"] == {403: "PERMISSION_DENIED", 401: "UNAUTHENTICATED"}[status]
        keyed = urllib.request.Request(fake.url + "/v1beta/models/gemini-test:generateContent?key=k", method="POST",
                                       data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(keyed, timeout=10) as response:
            assert json.loads(response.read())["candidates"][0]["content"]["parts"] == [{"text": "x"}]


# ----------------------------------------------------------------------------------- Gemini: Vertex AI


def test_vertex_ai_client_reaches_the_fake_with_an_adc_token(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth
    import google.oauth2.credentials

    # Application Default Credentials, as on a workstation after `gcloud auth application-default login`
    token = google.oauth2.credentials.Credentials(token="ya29.fake-access-token")
    monkeypatch.setattr(google.auth, "default", lambda **kwargs: (token, "adc-project"))
    with FakeGemini(lambda call: Reply("from vertex", sources=[web_source("https://xgboost.ai/")])) as fake:
        client = GeminiClient(LLMSettings(base_url=fake.url, vertex=True, project="my-proj",
                                          location="europe-west4"), None)
        c = client.complete(Request(role="retrieve_models", prompt="q", model="gemini-3.5-flash", search=True))
        assert c.text == "from vertex" and c.sources[0]["title"] == "xgboost.ai"
        (call,) = fake.calls
        assert call.path == ("/v1beta1/projects/my-proj/locations/europe-west4/publishers/google/models/"
                             "gemini-3.5-flash:generateContent")
        assert call.headers["Authorization"] == "Bearer ya29.fake-access-token"
        assert "x-goog-api-key" not in call.headers
        with pytest.raises(FatalError) as info:
            client.complete(ask("gemini-9-ultra"))
        assert info.value.status == 404 and "projects/my-proj/locations/europe-west4" in str(info.value)


def test_vertex_express_mode_reaches_the_fake() -> None:
    with FakeGemini(lambda call: Reply("express")) as fake:
        client = genai.Client(vertexai=True, api_key="vertex-express-key",
                              http_options=types.HttpOptions(base_url=fake.url))
        assert client.models.generate_content(model="gemini-2.5-flash", contents="hi").text == "express"
        (call,) = fake.calls
        assert call.path == "/v1beta1/publishers/google/models/gemini-2.5-flash:generateContent"
        assert call.headers["x-goog-api-key"] == "vertex-express-key"


def test_vertex_without_credentials_is_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    def no_adc(**kwargs: Any) -> Any:
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google.auth, "default", no_adc)
    with FakeGemini(lambda call: Reply("x")) as fake:
        client = GeminiClient(LLMSettings(base_url=fake.url, vertex=True, project="p"), None)
        with pytest.raises(FatalError, match="credentials were not found"):
            client.complete(ask())
        assert fake.calls == []


# ----------------------------------------------------------------------------------- Gemini: whose fault


def test_our_own_bugs_are_local_errors_with_the_cause_chained(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeGemini(lambda call: Reply("x")) as fake:
        with pytest.raises(LocalError) as bad_setting:  # pydantic rejects the SDK config we built
            gclient(fake, temperature="hot").complete(ask())  # type: ignore[arg-type]
        assert isinstance(bad_setting.value.__cause__, pydantic.ValidationError)
        with pytest.raises(LocalError) as bad_schema:  # a schema that is not JSON
            gclient(fake).complete(ask(schema={"type": "object", "enum": {1, 2}}))
        assert isinstance(bad_schema.value.__cause__, TypeError)
        assert fake.calls == []  # nothing reached the service

        def broken(usage: Any, name: str) -> int:
            raise KeyError(name)

        monkeypatch.setattr(gemini, "_count", broken)  # a bug while reading a good reply
        with pytest.raises(LocalError, match="reading the Gemini reply") as bad_reading:
            gclient(fake).complete(ask())
        assert isinstance(bad_reading.value.__cause__, KeyError)
    assert not issubclass(LocalError, TransientError | FatalError)  # never retried as an outage


def test_network_failures_and_garbled_replies_are_transient() -> None:
    with FakeGemini(lambda call: Reply("x")) as fake:
        url = fake.url
    with pytest.raises(TransientError, match="ConnectError"):  # nobody listens there any more
        GeminiClient(LLMSettings(base_url=url), "k").complete(ask())

    def slow(call: Call) -> Reply:
        time.sleep(1.5)
        return Reply("late")

    with FakeGemini(slow) as fake:
        with pytest.raises(TransientError, match="Timeout"):
            gclient(fake, timeout=0.3).complete(ask())
    with FakeGemini(lambda call: Fault(200, body={"usageMetadata": {"promptTokenCount": "many"}})) as fake:
        with pytest.raises(TransientError, match="does not fit GenerateContentResponse"):
            gclient(fake).complete(ask())
    with raw_server(b"<html>502 Bad Gateway</html>", status=200) as url:
        with pytest.raises(TransientError, match="not JSON"):
            GeminiClient(LLMSettings(base_url=url), "k").complete(ask())


@contextmanager
def raw_server(payload: bytes, status: int = 200) -> Iterator[str]:
    """An HTTP server answering every POST with these bytes (a proxy's HTML page, say)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# ----------------------------------------------------------------------------------- OpenAI-compatible


def oclient(fake: FakeOpenAI, **settings: Any) -> OpenAIClient:
    return OpenAIClient(LLMSettings(base_url=fake.url + "/v1", **settings), "sk-test")


def test_openai_sends_a_json_schema_response_format_and_max_tokens() -> None:
    with FakeOpenAI(lambda call: Reply('```json\n{"block": "model"}\n```')) as fake:
        c = oclient(fake, max_output_tokens=2048).complete(Request("extract_block", "p", "qwen", schema=SCHEMA))
        assert json.loads(c.text) == {"block": "model"}  # a JSON answer comes bare
        body = fake.calls[0].body
        assert body["response_format"] == {"type": "json_schema", "json_schema": {
            "name": "extract_block", "schema": SCHEMA, "strict": False}}
        assert body["max_tokens"] == 2048
        oclient(fake).complete(Request("debug", "p", "qwen"))  # no schema: no response_format
        assert "response_format" not in fake.calls[1].body and fake.calls[1].body["max_tokens"] == 16384


@pytest.mark.parametrize("refusal", [True, 422])
def test_a_server_refusing_response_format_is_asked_again_without_it(refusal: bool | int) -> None:
    with FakeOpenAI(lambda call: Reply('{"block": "model"}'), reject_response_format=refusal) as fake:
        client = oclient(fake)
        request = Request("extract_block", "p", "llama", schema=SCHEMA)
        assert json.loads(client.complete(request).text) == {"block": "model"}
        assert json.loads(client.complete(request).text) == {"block": "model"}
        # refused once, asked again without it, then never sent again by this client
        assert ["response_format" in c.body for c in fake.calls] == [True, False, False]
        assert client.response_format_refused
        assert oclient(fake).complete(request).text  # a new client tries it again
        assert "response_format" in fake.calls[3].body


def test_other_400s_are_fatal_without_a_second_try() -> None:
    with FakeOpenAI(lambda call: Fault(400, "This model's maximum context length is 8192 tokens.")) as fake:
        with pytest.raises(FatalError, match="maximum context length") as info:
            oclient(fake).complete(Request("extract_block", "p", "llama", schema=SCHEMA))
        assert info.value.status == 400 and len(fake.calls) == 1


def test_fake_openai_validates_response_format_like_openai() -> None:
    cases: list[tuple[Any, str]] = [
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": "an object please"}},
         "response_format.json_schema.schema"),
        ({"type": "json_schema", "json_schema": {"schema": {}}}, "response_format.json_schema.name"),
        ({"type": "json_schema", "json_schema": {"name": "has space", "schema": {}}},
         "response_format.json_schema.name"),
        ({"type": "xml"}, "response_format.type"),
        ("json", "response_format"),
    ]
    with FakeOpenAI(lambda call: Reply("{}")) as fake:
        for fmt, param in cases:
            status, data = post(fake, {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                       "response_format": fmt})
            assert status == 400 and data["error"]["type"] == "invalid_request_error", fmt
            assert data["error"]["param"] == param
        for fmt in ({"type": "json_object"}, {"type": "text"}):
            assert post(fake, {"model": "m", "messages": [], "response_format": fmt})[0] == 200
    with FakeOpenAI(lambda call: Reply("{}"), reject_response_format=True) as fake:
        status, data = post(fake, {"model": "m", "messages": [], "response_format": {"type": "json_object"}})
        assert status == 400 and "response_format" in data["error"]["message"]
        assert "not supported" in data["error"]["message"]


def post(fake: FakeOpenAI, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(fake.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def test_openai_reasoning_tokens_are_within_completion_tokens() -> None:
    with FakeOpenAI(lambda call: Reply("4", tokens_in=10, tokens_out=2, thoughts_tokens=50)) as fake:
        c = oclient(fake).complete(Request("debug", "2+2?", "o-mini"))
        usage = post(fake, {"model": "m", "messages": []})[1]["usage"]
    assert usage == {"prompt_tokens": 10, "completion_tokens": 52, "total_tokens": 62,
                     "completion_tokens_details": {"reasoning_tokens": 50}}
    assert (c.tokens_in, c.tokens_out, c.thoughts_tokens) == (10, 52, 50)


def test_openai_429_retry_after_header_is_honoured() -> None:
    with FakeOpenAI(lambda call: Fault(429, "Rate limit reached for requests", retry_after=20)) as fake:
        with pytest.raises(TransientError) as info:
            oclient(fake).complete(Request("debug", "p", "m"))
    assert (info.value.status, info.value.retry_after) == (429, 20.0)


def test_openai_failures_are_sorted_by_whose_they_are() -> None:
    with FakeOpenAI(lambda call: Reply("x")) as fake:
        url = fake.url
        with pytest.raises(LocalError) as ours:  # our body cannot be encoded: nothing is sent
            oclient(fake).complete(Request("extract_block", "p", "m", schema={"enum": {1, 2}}))
        assert isinstance(ours.value.__cause__, TypeError) and fake.calls == []
    with pytest.raises(TransientError, match="unreachable"):
        OpenAIClient(LLMSettings(base_url=url + "/v1"), None).complete(Request("debug", "p", "m"))
    with FakeOpenAI(lambda call: Fault(200, body={"object": "list", "data": []})) as fake:
        with pytest.raises(TransientError, match="not a chat completion"):  # the server's fault
            oclient(fake).complete(Request("debug", "p", "m"))
    with raw_server(b"<html>proxy error</html>") as raw_url:
        with pytest.raises(TransientError, match="not a chat completion"):
            OpenAIClient(LLMSettings(base_url=raw_url), None).complete(Request("debug", "p", "m"))
