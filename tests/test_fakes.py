"""The offline LLM fixtures (tests/fakes): fake Gemini and OpenAI servers and the scripted expert.

The fake Gemini is driven by the real google-genai SDK and the fake OpenAI server by urllib and our
own client; the expert's answers are parsed with the brains' own parsers and its scripts really run
on the breast-cancer demo task.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fakes import (
    RETRIEVAL_SOURCES,
    Call,
    FakeGemini,
    FakeOpenAI,
    Fault,
    Reply,
    ScriptedExpert,
    model_page,
    page_of,
    role_of,
    scripted,
    searched,
    web_source,
)
from google import genai
from google.genai import errors, types

from mlestar_core import evaluation, prompts
from mlestar_core.brains.llm.answers import (
    parse_ablation,
    parse_block_body,
    parse_block_choice,
    parse_check,
    parse_model_cards,
    parse_script,
    parse_text,
)
from mlestar_core.brains.llm.clients import FatalError, Request, TransientError
from mlestar_core.brains.llm.gemini import GeminiClient
from mlestar_core.brains.llm.openai_compat import OpenAIClient
from mlestar_core.brains.llm.settings import LLMSettings
from mlestar_core.metrics import metric_source
from mlestar_core.model import AblationResult, AttemptSummary, EnsembleAttempt, SolutionSummary, Task
from mlestar_core.script import block_names, blocks, get_block, parse_score, replace_block
from mlestar_core.task import load_task

MODEL_NAMES = ("Logistic regression (sklearn.linear_model.LogisticRegression)",
               "Random forest (sklearn.ensemble.RandomForestClassifier)")
INPUT_FILES = ("train.csv", "test.csv", "sample_submission.csv")
DEMO = Path(__file__).resolve().parents[1] / "demo_tasks" / "breast-cancer"
STANDARD_BLOCKS = ["load", "preprocess", "features", "model", "train", "predict"]
# The debug prompt's advice by kind of failure (extra fields are ignored by templates without it).
ADVICE = "- Find the cause of the error and fix it with the smallest change."


@pytest.fixture(scope="module")
def task(demo_tasks_dir: Path) -> Task:
    return load_task(demo_tasks_dir / "breast-cancer")


@pytest.fixture(scope="module")
def common(task: Task) -> dict[str, str]:
    return prompts.task_fields(task, ["Keep scripts fast."])


@pytest.fixture(scope="module")
def expert() -> ScriptedExpert:
    return ScriptedExpert()


def hello(call: Call) -> Reply:
    return Reply(f"answer #{call.n}")


# ----------------------------------------------------------------------------------- fake Gemini


def sdk(fake: FakeGemini, api_version: str = "v1beta") -> genai.Client:
    return genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=fake.url,
                                                                           api_version=api_version))


def test_gemini_sdk_gets_text_tokens_and_grounding() -> None:
    sources = [web_source("https://www.kaggle.com/a"), web_source("https://example.org/b")]
    reply = Reply("grounded answer", sources=sources, tokens_in=11, tokens_out=7, thoughts_tokens=3, tool_tokens=5)
    with FakeGemini(lambda call: reply) as fake:
        config = types.GenerateContentConfig(tools=[types.Tool(google_search=types.GoogleSearch())])
        client = sdk(fake)  # keep a reference: a collected Client closes its HTTP client
        response = client.models.generate_content(model="gemini-test", contents="which model?", config=config)
        assert response.text == "grounded answer"
        assert response.model_version == "gemini-test"
        usage = response.usage_metadata
        assert usage is not None
        assert (usage.prompt_token_count, usage.candidates_token_count, usage.thoughts_token_count,
                usage.tool_use_prompt_token_count, usage.total_token_count) == (11, 7, 3, 5, 26)
        candidate = response.candidates[0]  # type: ignore[index]
        assert str(candidate.finish_reason).endswith("STOP")
        meta = candidate.grounding_metadata
        assert meta is not None and meta.web_search_queries
        chunks = [(c.web.title, c.web.uri) for c in meta.grounding_chunks or [] if c.web is not None]
        assert chunks == sources
        # Google's shape: the title is the domain, the URI an opaque redirect to the page
        assert [t for t, _ in chunks] == ["kaggle.com", "example.org"]
        assert all(u.startswith("https://vertexaisearch.cloud.google.com/grounding-api-redirect/") for _, u in chunks)
        assert page_of(chunks[1][1]) == "https://example.org/b"
        assert meta.search_entry_point is not None
        assert '<div class="container">' in (meta.search_entry_point.rendered_content or "")
        (support,) = meta.grounding_supports or []  # by default the whole text cites every chunk
        assert support.segment is not None and support.grounding_chunk_indices == [0, 1]
        assert (support.segment.start_index, support.segment.end_index) == (None, len("grounded answer"))

        (call,) = fake.calls
        assert call.n == 0 and call.role == "unknown" and call.role_n == 0
        assert call.prompt == "which model?"
        assert call.path == "/v1beta/models/gemini-test:generateContent"
        assert call.headers["x-goog-api-key"] == "test-key"
        assert call.headers.get("X-Goog-Api-Key") == "test-key"  # lookups ignore case
        assert searched(call)


def test_gemini_default_token_counts_and_no_grounding_without_sources() -> None:
    prompt = "p" * 103
    with FakeGemini(lambda call: Reply("t" * 42)) as fake:
        client = sdk(fake, api_version="v1")
        response = client.models.generate_content(model="gemini-other", contents=prompt)
        assert response.text == "t" * 42
        usage = response.usage_metadata
        assert usage is not None
        assert (usage.prompt_token_count, usage.candidates_token_count) == (103 // 4, 42 // 4 + 1)
        assert response.candidates[0].grounding_metadata is None  # type: ignore[index]
        (call,) = fake.calls
        assert call.path == "/v1/models/gemini-other:generateContent"
        assert not searched(call)


def test_gemini_faults_surface_as_sdk_errors() -> None:
    plan: dict[tuple[str, int], Reply | Fault | str] = {
        ("unknown", 0): Fault(429, "Resource has been exhausted", retry_after=37),
        ("unknown", 1): Fault(500, "Internal error encountered."),
        ("unknown", 2): Fault(403, "API key not valid."),
        ("unknown", 3): "fine again",
    }
    with FakeGemini(scripted(ScriptedExpert(), plan)) as fake:
        client = sdk(fake)
        with pytest.raises(errors.ClientError) as rate:
            client.models.generate_content(model="gemini-test", contents="hi")
        assert rate.value.code == 429 and rate.value.status == "RESOURCE_EXHAUSTED"
        assert rate.value.message == "Resource has been exhausted"
        # as Google does: the delay is only in the body's RetryInfo, next to the quota that ran out
        assert rate.value.response.headers.get("retry-after") is None
        details = rate.value.details["error"]["details"]
        assert [d["@type"].rsplit(".", 1)[1] for d in details] == ["QuotaFailure", "Help", "RetryInfo"]
        assert details[-1]["retryDelay"] == "37s"
        with pytest.raises(errors.ServerError) as server:
            client.models.generate_content(model="gemini-test", contents="hi")
        assert server.value.code == 500 and server.value.status == "INTERNAL"
        with pytest.raises(errors.ClientError) as denied:
            client.models.generate_content(model="gemini-test", contents="hi")
        assert denied.value.code == 403 and denied.value.status == "PERMISSION_DENIED"
        assert client.models.generate_content(model="gemini-test", contents="hi").text == "fine again"
        assert [c.role_n for c in fake.calls] == [0, 1, 2, 3]  # failed calls count


def test_our_gemini_client_reads_the_fake(common: dict[str, str]) -> None:
    with FakeGemini(scripted(ScriptedExpert(), {("unknown", 0): Fault(429, "slow down", retry_after=2.5),
                                                ("unknown", 1): Fault(400, "bad request")})) as fake:
        client = GeminiClient(LLMSettings(base_url=fake.url), "test-key")
        prompt = prompts.render("retrieve_models", **common, m="3")
        completion = client.complete(Request(role="retrieve_models", prompt=prompt, model="gemini-x", search=True))
        assert completion.model == "gemini-x" and completion.finish_reason.endswith("STOP")
        cards = parse_model_cards(completion.text, 3)
        assert len(cards) == 3
        # one page per card, then the pages every card rests on
        pages = [page_of(s["uri"]) for s in completion.sources]
        assert pages == [model_page(c.name) for c in cards] + [page_of(u) for _, u in RETRIEVAL_SOURCES]
        assert completion.tool_tokens == 64 * 5 and completion.search_queries
        assert completion.tokens_in == len(prompt) // 4 + completion.tool_tokens
        assert completion.tokens_out == len(completion.text) // 4 + 1
        with pytest.raises(TransientError) as transient:
            client.complete(Request(role="debug", prompt="no role here", model="gemini-x"))
        assert transient.value.status == 429 and transient.value.retry_after == 2.5
        with pytest.raises(FatalError) as fatal:
            client.complete(Request(role="debug", prompt="no role here", model="gemini-x"))
        assert fatal.value.status == 400
        calls = fake.calls
        assert calls[0].role == "retrieve_models" and searched(calls[0]) and not searched(calls[1])


def test_gemini_unknown_route_and_broken_responder() -> None:
    def broken(call: Call) -> Reply:
        raise RuntimeError("boom")

    with FakeGemini(broken) as fake:
        client = sdk(fake)
        with pytest.raises(errors.ClientError) as info:
            client.models.generate_content(model="gemini-test", contents="hi")
        assert info.value.code == 400 and "boom" in (info.value.message or "")
        assert fake.errors and "RuntimeError: boom" in fake.errors[0]
        status, _ = post_json(fake.url + "/v1beta/models/gemini-test:countTokens", {"contents": []})
        assert status == 404
        assert len(fake.calls) == 1  # an unknown route is not a call


# ----------------------------------------------------------------------------------- fake OpenAI


def post_json(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read() or b"null")


def chat(fake: FakeOpenAI, text: str, key: str = "sk-test") -> tuple[int, Any]:
    body = {"model": "llama-test", "messages": [{"role": "system", "content": "be brief"},
                                                {"role": "user", "content": text}]}
    return post_json(fake.url + "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"})


def test_openai_answers_a_urllib_post() -> None:
    with FakeOpenAI(lambda call: Reply("four", tokens_in=5)) as fake:
        status, data = chat(fake, "2 + 2?")
        assert status == 200
        assert data["object"] == "chat.completion" and data["id"] == "chatcmpl-fake-0"
        assert data["model"] == "llama-test"
        assert data["choices"][0]["message"] == {"role": "assistant", "content": "four"}
        assert data["choices"][0]["finish_reason"] == "stop"
        assert data["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        (call,) = fake.calls
        assert call.prompt == "2 + 2?"  # user messages only
        assert call.headers["Authorization"] == "Bearer sk-test"
        assert call.headers["authorization"] == "Bearer sk-test"
        assert call.body["messages"][0]["role"] == "system"


def test_openai_fault_gives_http_error() -> None:
    with FakeOpenAI(lambda call: Fault(503, "model is loading", retry_after=1)) as fake:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(urllib.request.Request(
                fake.url + "/v1/chat/completions", method="POST", headers={"Content-Type": "application/json"},
                data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}).encode()),
                timeout=10)
        with info.value as e:
            assert e.code == 503 and e.headers["Retry-After"] == "1"
            assert json.loads(e.read()) == {"error": {"message": "model is loading", "type": "server_error",
                                                      "param": None, "code": 503}}


def test_storm_mode_fails_everything_until_cleared() -> None:
    with FakeOpenAI(hello) as fake:
        assert chat(fake, "a")[0] == 200
        fake.storm = 500
        assert [chat(fake, "b")[0] for _ in range(3)] == [500, 500, 500]
        status, data = chat(fake, "c")
        assert status == 500 and data["error"]["code"] == 500
        fake.storm = None
        status, data = chat(fake, "d")
        assert status == 200 and data["choices"][0]["message"]["content"] == "answer #5"
        assert [c.n for c in fake.calls] == list(range(6))  # storm requests are recorded too
        assert [c.role_n for c in fake.calls] == list(range(6))


def test_our_openai_client_sends_the_key_and_maps_faults(common: dict[str, str]) -> None:
    plan: dict[tuple[str, int], Reply | Fault | str] = {("debug", 0): Fault(503, "loading", retry_after=1.5),
                                                        ("debug", 1): Fault(401, "bad key")}
    with FakeOpenAI(scripted(ScriptedExpert(), plan)) as fake:
        client = OpenAIClient(LLMSettings(base_url=fake.url + "/v1"), "sk-secret")
        prompt = prompts.render("debug", **common, code="print(1)\n", error="Boom", failure_advice=ADVICE)
        request = Request(role="debug", prompt=prompt, model="qwen-test")
        with pytest.raises(TransientError) as transient:
            client.complete(request)
        assert transient.value.status == 503 and transient.value.retry_after == 1.5
        with pytest.raises(FatalError) as fatal:
            client.complete(request)
        assert fatal.value.status == 401 and "bad key" in str(fatal.value)
        completion = client.complete(request)
        assert completion.model == "qwen-test" and completion.finish_reason == "stop"
        assert block_names(parse_script(completion.text)) == STANDARD_BLOCKS
        assert [c.role_n for c in fake.calls] == [0, 1, 2]
        assert all(c.role == "debug" and c.headers["Authorization"] == "Bearer sk-secret" for c in fake.calls)


def test_calls_are_recorded_before_answering_and_numbered_under_concurrency(common: dict[str, str]) -> None:
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()
    fake_ref: list[FakeOpenAI] = []

    def respond(call: Call) -> Reply:
        with lock:
            seen.append((call.n, len(fake_ref[0].calls)))
        return Reply(str(call.n))

    with FakeOpenAI(respond) as fake:
        fake_ref.append(fake)
        prompt = prompts.render("plan_ensemble", **common, solutions="none", history="none")
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: chat(fake, prompt), range(16)))
        assert all(status == 200 for status, _ in results)
        calls = fake.calls
        assert sorted(c.n for c in calls) == list(range(16))
        assert sorted(c.role_n for c in calls) == list(range(16))
        assert all(c.role == "plan_ensemble" for c in calls)
        assert all(recorded > n for n, recorded in seen)  # the call was in .calls when answered


# ----------------------------------------------------------------------------------- role_of


def role_fields(task: Task, expert: ScriptedExpert, *, seed: int = 42, valid_fraction: float = 0.2,
                n_folds: int | None = None, n_repeats: int | None = None, m: int = 2,
                model_name: str = MODEL_NAMES[0], plan: str = "Average the two models.",
                history: list[AttemptSummary] | None = None, block: str = "model") -> dict[str, dict[str, str]]:
    """Fields for every role, built as the LLM brain builds them, around the expert's own scripts."""
    settings = dict(seed=seed, valid_fraction=valid_fraction, n_folds=n_folds or 5, n_repeats=n_repeats or 1,
                    metric_code=metric_source(task.metric, task.task_type))
    base = expert.script(MODEL_NAMES[0], **settings)
    reference = expert.script(MODEL_NAMES[1], **settings)
    results = [AblationResult("model", "a shallow decision tree", 0.93, 0.98, 0.05),
               AblationResult("preprocess", "no scaling", 0.979, 0.98, 0.001),
               AblationResult("features", "raw measurements only", None, 0.98, None)]
    solutions = [SolutionSummary("A", base, 0.98), SolutionSummary("B", reference, 0.97)]
    common = prompts.task_fields(task, ["Keep scripts fast."], seed=seed, valid_fraction=valid_fraction,
                                 n_folds=n_folds, n_repeats=n_repeats, cores=1)
    extra: dict[str, dict[str, str]] = {
        "retrieve_models": {"m": str(m)},
        "write_initial_solution": {"model_name": model_name, "model_example": "clf.fit(X, y)"},
        "merge": {"base_code": base, "reference_code": reference},
        "check_data_usage": {"code": base},
        "check_leakage": {"code": base},
        "debug": {"code": base.replace("roc_auc_score(", "roc_auc("), "error": "NameError: name 'roc_auc'",
                  "failure_advice": ADVICE},
        "write_ablation": {"code": base, "previous_ablations": "(none: this is the first study)"},
        "summarize_ablation": {"ablation_results": prompts.format_ablation_results(results)},
        "extract_block": {"code": base, "ablation_results": prompts.format_ablation_results(results),
                          "ablation_summary": "The model block matters most.",
                          "refined_blocks": prompts.format_blocks([])},
        "plan_refinement": {"code": base, "block": block, "block_code": get_block(base, block),
                            "history": prompts.format_attempts(history or [])},
        "implement_refinement": {"code": base, "block": block, "block_code": get_block(base, block),
                                 "plan": plan},
        "plan_ensemble": {"solutions": prompts.format_solutions(solutions),
                          "history": prompts.format_ensemble_history([])},
        "implement_ensemble": {"solutions": prompts.format_solutions(solutions), "plan": plan},
    }
    assert set(extra) == set(prompts.ROLES)
    return {role: {**common, **fields} for role, fields in extra.items()}


def render(role: str, task: Task, expert: ScriptedExpert, **kwargs: Any) -> str:
    return prompts.render(role, **role_fields(task, expert, **kwargs)[role])


@pytest.mark.parametrize("template", sorted(p.stem for p in prompts.PROMPTS_DIR.glob("*.md")))
def test_role_of_maps_every_template(template: str, task: Task, expert: ScriptedExpert) -> None:
    assert role_of(render(template, task, expert)) == template


def test_role_of_unknown_prompts() -> None:
    assert role_of("hello") == "unknown"
    assert role_of("# Role: poet\nWrite a poem.") == "unknown"
    assert role_of("Intro\n# Role: debugger\nFix it.") == "debug"
    assert role_of("Mention of # Role: debugger inside a line") == "unknown"


# ----------------------------------------------------------------------------------- the expert


def test_expert_refuses_unknown_roles(expert: ScriptedExpert) -> None:
    for role in ("unknown", "write_poem", "split_settings", "_debug"):
        with pytest.raises(ValueError, match="no answer"):
            expert.answer(role, "# Role: debugger")


def test_expert_answers_are_deterministic(task: Task, expert: ScriptedExpert) -> None:
    for role in prompts.ROLES:
        prompt = render(role, task, expert)
        assert expert.answer(role, prompt) == ScriptedExpert().answer(role, prompt), role


def test_retrieval_answer_lists_exactly_m_models(task: Task, expert: ScriptedExpert) -> None:
    for m in (1, 2, 4, 7):
        text = expert.answer("retrieve_models", render("retrieve_models", task, expert, m=m))
        assert text.startswith("```json\n")
        assert len(json.loads(text.strip().removeprefix("```json").removesuffix("```"))) == m
        cards = parse_model_cards(text, m)
        assert len(cards) == m and all(c.name and c.why and c.example_code and c.family for c in cards)
    cards = parse_model_cards(expert.answer("retrieve_models", render("retrieve_models", task, expert, m=4)), 4)
    assert [c.family for c in cards] == ["linear", "forest", "gbdt", "forest"]
    assert "LogisticRegression" in cards[0].name and "RandomForest" in cards[1].name


def test_initial_script_follows_the_prompt(task: Task, expert: ScriptedExpert) -> None:
    code = parse_script(expert.answer("write_initial_solution", render(
        "write_initial_solution", task, expert, seed=7, valid_fraction=0.25, n_folds=3, n_repeats=2)))
    assert block_names(code) == STANDARD_BLOCKS
    assert 'SEED = int(os.environ.get("MLESTAR_SEED", 7))' in code
    assert 'SUBMIT = os.environ.get("MLESTAR_SUBMIT", "1") != "0"' in code
    assert 'THREADS = int(os.environ.get("MLESTAR_THREADS", 1))' in code  # the prompt's cores
    # K, the repeats and the hold-out share only shape the folds made without ./input/folds.csv
    assert "N_FOLDS = 3\nN_REPEATS = 2\n" in code and "VALID_FRACTION = 0.25" in code and "FOLD_SEED = 7" in code
    assert 'pd.read_csv("./input/folds.csv")' in get_block(code, "load")
    assert metric_source(task.metric, task.task_type).strip() in code  # the protocol's metric, verbatim
    train = get_block(code, "train")
    assert "compute_metric(" in train and '"oof.csv"' in train and "for k in sorted(" in train
    assert "train_test_split(" not in train  # no split of its own: the folds come from the file
    predict = get_block(code, "predict")
    assert '"test_pred.csv"' in predict and "np.mean(test_preds, axis=0)" in predict
    assert code.count("Final Validation Performance") == 1
    assert "LogisticRegression(" in get_block(code, "model")
    hold_out = parse_script(expert.answer("write_initial_solution", render("write_initial_solution", task, expert,
                                                                            n_folds=1)))
    assert "N_FOLDS = 1\nN_REPEATS = 1\n" in hold_out
    unknown = parse_script(expert.answer("write_initial_solution", render("write_initial_solution", task, expert)))
    assert "N_FOLDS = 5\nN_REPEATS = 1\n" in unknown  # K left to the file: the defaults
    kinds = {"Extra trees (sklearn.ensemble.ExtraTreesClassifier)": "ExtraTreesClassifier(",
             "Random forest (sklearn.ensemble.RandomForestClassifier)": "RandomForestClassifier(",
             "LightGBM (lightgbm.LGBMClassifier)": "GradientBoostingClassifier("}
    for name, estimator in kinds.items():
        answer = expert.answer("write_initial_solution", render("write_initial_solution", task, expert,
                                                                model_name=name))
        assert estimator in get_block(parse_script(answer), "model"), name


def test_merge_returns_the_base(task: Task, expert: ScriptedExpert) -> None:
    fields = role_fields(task, expert)["merge"]
    merged = parse_script(expert.answer("merge", prompts.render("merge", **fields)))
    assert merged == fields["base_code"]


def test_debug_returns_a_complete_script(task: Task, expert: ScriptedExpert) -> None:
    code = parse_script(expert.answer("debug", render("debug", task, expert, n_folds=4)))
    assert block_names(code) == STANDARD_BLOCKS and "roc_auc_score(" in code and "N_FOLDS = 4" in code


def test_checks_find_nothing_and_write_no_code(task: Task, expert: ScriptedExpert) -> None:
    fields = role_fields(task, expert)
    for role, kind in (("check_data_usage", "data_usage"), ("check_leakage", "leakage")):
        code = fields[role]["code"]
        text = expert.answer(role, prompts.render(role, **fields[role]))
        assert "```python" not in text
        result = parse_check(text, code, kind)
        assert result.code == code and not result.changed and result.findings
    data = json.loads(expert.answer("check_leakage", prompts.render("check_leakage", **fields["check_leakage"]))
                      .strip().removeprefix("```json").removesuffix("```"))
    assert data == {"leakage": "no", "code_block": "", "findings": data["findings"]}


def test_ablation_variants_change_one_block_each(task: Task, expert: ScriptedExpert) -> None:
    code = role_fields(task, expert)["write_ablation"]["code"]
    variants = parse_ablation(expert.answer("write_ablation", render("write_ablation", task, expert)), code)
    assert [v.block for v in variants] == ["model", "preprocess", "features"]
    for v in variants:
        assert v.description and block_names(v.code) == STANDARD_BLOCKS
        compile(v.code, "variant.py", "exec")
        changed = [b.name for b, old in zip(blocks(v.code), blocks(code), strict=True) if b.body != old.body]
        assert changed == [v.block]
    assert "DecisionTreeClassifier(max_depth=2, random_state=SEED)" in get_block(variants[0].code, "model")
    assert "StandardScaler" not in get_block(variants[1].code, "preprocess")
    # a script with only some of the blocks gets variants for those only
    partial = "import os\n# [block: model]\nmodel = None\n# [end block: model]\n"
    prompt = prompts.render("write_ablation", **{**role_fields(task, expert)["write_ablation"], "code": partial})
    assert [v.block for v in parse_ablation(expert.answer("write_ablation", prompt), partial)] == ["model"]


def test_summary_quotes_the_strongest_block(task: Task, expert: ScriptedExpert) -> None:
    summary = parse_text(expert.answer("summarize_ablation", render("summarize_ablation", task, expert)), "summary")
    assert summary.count(". ") >= 2 and "`model`" in summary and "+0.05" in summary and "```" not in summary


def test_block_choice_and_refinement_plans_vary(task: Task, expert: ScriptedExpert) -> None:
    fields = role_fields(task, expert)["extract_block"]
    choice = parse_block_choice(expert.answer("extract_block", prompts.render("extract_block", **fields)),
                                fields["code"])
    assert choice.block == "model" and choice.plan and choice.reason
    plans = [choice.plan]
    history: list[AttemptSummary] = []
    for _ in range(3):
        plan = parse_text(expert.answer("plan_refinement", render("plan_refinement", task, expert,
                                                                  history=history)))
        assert "```" not in plan
        plans.append(plan)
        history.append(AttemptSummary(plan, 0.98, 0.97, True))
    assert len(set(plans)) == len(plans)
    features_plan = expert.answer("plan_refinement", render("plan_refinement", task, expert, block="features"))
    assert "`features`" in features_plan
    fields = role_fields(task, expert)["plan_ensemble"]
    ensemble_plans = []
    for k in range(3):
        history_text = prompts.format_ensemble_history([EnsembleAttempt("Average.", 0.98)] * k)
        ensemble_plans.append(parse_text(expert.answer("plan_ensemble", prompts.render("plan_ensemble", **{
            **fields, "history": history_text})), "plan"))
    assert len(set(ensemble_plans)) == 3
    # the first round is free-form (implemented and run), the others name an engine strategy
    assert [evaluation.strategy_in(p) for p in ensemble_plans] == [None, "caruana", "weights"]


def test_refinement_bodies_fit_the_block(task: Task, expert: ScriptedExpert) -> None:
    code = role_fields(task, expert)["implement_refinement"]["code"]
    bodies = set()
    for plan_prompt_history in range(4):
        history = [AttemptSummary(f"plan {i}", 0.9, 0.9, True) for i in range(plan_prompt_history)]
        plan = expert.answer("plan_refinement", render("plan_refinement", task, expert, history=history))
        text = expert.answer("implement_refinement", render("implement_refinement", task, expert, plan=plan))
        body = parse_block_body(text, "model")
        assert "# [block:" not in body and "model = " in body
        assert body.strip() != get_block(code, "model").strip()
        compile(replace_block(code, "model", body), "refined.py", "exec")
        bodies.add(body)
    assert len(bodies) == 4  # the estimator follows the plan
    for block in ("features", "preprocess", "predict"):
        text = expert.answer("implement_refinement", render("implement_refinement", task, expert, block=block))
        assert parse_block_body(text, block) == get_block(code, block)
    # a plan naming the current setting still yields a different estimator
    current = "from sklearn.linear_model import LogisticRegression\n\n" \
              "model = LogisticRegression(C=0.3, max_iter=2000, random_state=SEED)\n"
    weird = replace_block(code, "model", current)
    prompt = prompts.render("implement_refinement", **{
        **role_fields(task, expert)["implement_refinement"], "code": weird, "block_code": current,
        "plan": "Use stronger L2 regularisation."})
    assert parse_block_body(expert.answer("implement_refinement", prompt), "model").strip() != current.strip()


def test_ensemble_scripts_combine_the_solutions_models(task: Task, expert: ScriptedExpert) -> None:
    fields = role_fields(task, expert)["implement_ensemble"]

    def ensemble(plan: str, **changes: Any) -> str:
        prompt = prompts.render("implement_ensemble", **{**fields, "plan": plan, **changes})
        return parse_script(expert.answer("implement_ensemble", prompt))

    # a free-form plan: the equal-weight soft vote of the solutions' own model blocks
    free = ensemble("Average the two models.")
    assert block_names(free) == STANDARD_BLOCKS
    model = get_block(free, "model")
    base = role_fields(task, expert)["merge"]["base_code"]
    assert all(line.strip() in model for line in get_block(base, "model").splitlines())  # embedded unchanged
    assert "LogisticRegression(" in model and "RandomForestClassifier(" in model
    assert "WEIGHTS = [1.0, 1.0]" in model and 'voting="soft"' in model
    assert get_block(free, "train") == get_block(base, "train")  # the same fold loop as every script
    # the engine's chosen strategy, with its `Set:` line: the members get the engine's weights
    chosen = ensemble("Greedy selection (strategy='caruana').\nSet: strategy='caruana', weights=[0.75, 0.25]")
    assert "WEIGHTS = [0.75, 0.25]" in get_block(chosen, "model")
    mismatch = ensemble("Set: strategy='weights', weights=[0.2, 0.3, 0.5]")  # not one weight per member
    assert "WEIGHTS = [1.0, 1.0]" in get_block(mismatch, "model")
    stacked = get_block(ensemble("Set: strategy='stacking'"), "model")
    assert "StackingClassifier(" in stacked and "final_estimator=LogisticRegression(" in stacked
    for code in (free, chosen, mismatch):
        compile(code, "ensemble.py", "exec")
    # solutions without a `model` definition are left out; with none left, a linear and a forest model
    foreign = prompts.format_solutions([SolutionSummary("X", "print('no blocks here')\n", 0.9)])
    fallback = get_block(ensemble("Average them.", solutions=foreign), "model")
    assert "LogisticRegression(" in fallback and "RandomForestClassifier(" in fallback


# --------------------------------------------------------------------------- the expert's scripts run

N_ROWS_TEST = len(pd.read_csv(DEMO / "test.csv"))


def engine_protocol(task: Task, n_folds: int, n_repeats: int, seed: int = 42) -> evaluation.RunProtocol:
    """The folds (and truth) the engine would write for the demo's train file."""
    rows, y, classes = evaluation.read_truth(task, DEMO / "train.csv")
    protocol = evaluation.Protocol(task.task_type, task.metric, task.higher_is_better, n_folds, n_repeats, classes,
                                   len(rows), seed)
    return evaluation.RunProtocol(protocol, evaluation.fold_table(protocol, y, rows), rows, y)


@dataclass
class ScriptRun:
    code: str
    workdir: Path
    proc: subprocess.CompletedProcess[str]
    protocol: evaluation.RunProtocol  # the folds the run was (or should have been) validated on

    @property
    def score(self) -> float | None:
        return parse_score(self.proc.stdout)

    @property
    def submission(self) -> Path:
        return self.workdir / "submission.csv"

    @property
    def test_pred(self) -> Path:
        return self.workdir / "test_pred.csv"

    def engine(self) -> evaluation.Evaluation:
        """The engine's verdict on the run's oof.csv."""
        return evaluation.Scorer(self.protocol).evaluate_workdir(self.workdir)[0]


def run_script(code: str, workdir: Path, protocol: evaluation.RunProtocol, *, submit: bool = True,
               with_test: bool = True, with_folds: bool = True) -> ScriptRun:
    (workdir / "input").mkdir(parents=True)
    for name in INPUT_FILES:
        if with_test or name != "test.csv":
            shutil.copy(DEMO / name, workdir / "input" / name)
    if with_folds:
        protocol.folds.to_csv(workdir / "input" / evaluation.FOLDS_FILE, index=False)
    (workdir / "script.py").write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLESTAR_")}
    env.update({"MLESTAR_SUBMIT": "1" if submit else "0", "OMP_NUM_THREADS": "1"})
    proc = subprocess.run([sys.executable, "script.py"], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=120)
    return ScriptRun(code, workdir, proc, protocol)


@pytest.fixture(scope="module")
def runs(task: Task, expert: ScriptedExpert, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ScriptRun]:
    """The expert's scripts (their prompts leave K to folds.csv), run concurrently in their own work dirs:
    most on the engine's 3-fold x 2 folds.csv, one on a hold-out split, one without folds.csv."""
    repeated, hold_out, plain = (engine_protocol(task, 3, 2), engine_protocol(task, 1, 1),
                                 engine_protocol(task, 5, 1))
    scripts: dict[str, tuple[str, evaluation.RunProtocol, dict[str, bool]]] = {}
    for name in MODEL_NAMES:
        answer = expert.answer("write_initial_solution", render("write_initial_solution", task, expert,
                                                                model_name=name))
        scripts[name.split(" (")[0]] = (parse_script(answer), repeated, {})
    ensemble = expert.answer("implement_ensemble", render("implement_ensemble", task, expert))
    scripts["ensemble"] = (parse_script(ensemble), repeated, {})
    chosen = expert.answer("implement_ensemble", render(
        "implement_ensemble", task, expert, plan="Stacking.\nSet: strategy='stacking'"))
    scripts["stacking ensemble"] = (parse_script(chosen), repeated, {})
    base = scripts["Logistic regression"][0]
    variants = parse_ablation(expert.answer("write_ablation", render("write_ablation", task, expert)), base)
    scripts["ablated model"] = (variants[0].code, repeated, {"submit": False, "with_test": False})
    plan = expert.answer("extract_block", render("extract_block", task, expert))
    body = parse_block_body(expert.answer("implement_refinement", render(
        "implement_refinement", task, expert, plan=parse_block_choice(plan, base).plan)), "model")
    scripts["refined"] = (replace_block(base, "model", body), repeated, {})
    scripts["logistic again, no submission"] = (base, repeated, {"submit": False})
    scripts["logistic, no test.csv"] = (base, repeated, {"with_test": False})
    scripts["logistic, hold-out split"] = (base, hold_out, {})
    scripts["logistic, no folds.csv"] = (base, plain, {"with_folds": False})
    root = tmp_path_factory.mktemp("expert_runs")
    with ThreadPoolExecutor(4) as pool:
        futures = {key: pool.submit(run_script, code, root / f"run{i}", protocol, **options)
                   for i, (key, (code, protocol, options)) in enumerate(scripts.items())}
        return {key: f.result() for key, f in futures.items()}


def assert_protocol_files(run: ScriptRun, *, submitted: bool) -> None:
    """oof.csv as the engine reads it, the printed score equal to the engine's, and the test files."""
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    assert run.proc.stdout.count("Final Validation Performance") == 1
    oof = pd.read_csv(run.workdir / evaluation.OOF_FILE)
    assert list(oof.columns) == ["repeat", "row", "0", "1"]
    validated = run.protocol.validated
    assert sorted(zip(oof["repeat"], oof["row"], strict=True)) == \
        sorted(zip(validated["repeat"], validated["row"], strict=True))  # every validated row once per repeat
    assert oof[["0", "1"]].sum(axis=1).round(9).eq(1).all()
    verdict = run.engine()
    assert verdict.error is None and verdict.score is not None and verdict.score > 0.9
    assert len(verdict.fold_scores) == len(run.protocol.units())
    assert not evaluation.claim_disagrees(run.score, verdict.score), (run.score, verdict.score)
    if not submitted:
        assert not run.submission.exists() and not run.test_pred.exists()
        return
    test = pd.read_csv(DEMO / "test.csv")
    pred = pd.read_csv(run.test_pred)
    assert list(pred.columns) == ["row", "0", "1"] and pred["row"].tolist() == list(range(N_ROWS_TEST))
    assert evaluation.read_test_pred(run.test_pred, run.protocol.protocol, N_ROWS_TEST).shape == (N_ROWS_TEST, 2)
    sub = pd.read_csv(run.submission)
    assert list(sub.columns) == ["id", "malignant"]
    assert len(sub) == len(test) and sub["id"].tolist() == test["id"].tolist()
    assert sub["malignant"].between(0, 1).all() and sub["malignant"].nunique() > 2
    assert sub["malignant"].to_numpy() == pytest.approx(pred["1"].to_numpy())  # the mean of the fold models


@pytest.mark.parametrize("key", ["Logistic regression", "Random forest", "ensemble", "stacking ensemble",
                                 "refined", "logistic, hold-out split", "logistic, no folds.csv"])
def test_scripts_follow_the_protocol_and_write_a_submission(key: str, runs: dict[str, ScriptRun]) -> None:
    assert_protocol_files(runs[key], submitted=True)


def test_the_engine_folds_win_and_standalone_folds_match_the_engine(runs: dict[str, ScriptRun]) -> None:
    # the script's own settings say 5 folds, one repeat; the engine's file says 3 folds x 2: the file is followed
    first = runs["Logistic regression"]
    assert "N_FOLDS = 5\nN_REPEATS = 1\n" in first.code
    assert set(pd.read_csv(first.workdir / "oof.csv")["repeat"]) == {0, 1} and len(first.engine().fold_scores) == 6
    # a hold-out split validates fold 0 only (fold -1 rows are fitted on, never predicted)
    hold_out = runs["logistic, hold-out split"]
    assert len(pd.read_csv(hold_out.workdir / "oof.csv")) == len(hold_out.protocol.validated)
    assert len(hold_out.engine().fold_scores) == 1
    # without folds.csv the script makes the same folds the engine would (checked in assert_protocol_files)
    standalone = runs["logistic, no folds.csv"]
    assert not (standalone.workdir / "input" / "folds.csv").exists()
    assert len(pd.read_csv(standalone.workdir / "oof.csv")) == len(standalone.protocol.validated)


def test_ensemble_averages_logistic_regression_and_random_forest(runs: dict[str, ScriptRun]) -> None:
    model = get_block(runs["ensemble"].code, "model")
    assert "LogisticRegression(" in model and "RandomForestClassifier(" in model and 'voting="soft"' in model
    assert block_names(runs["ensemble"].code) == STANDARD_BLOCKS
    scores = {key: runs[key].score for key in ("Logistic regression", "Random forest", "ensemble",
                                               "stacking ensemble")}
    assert len(set(scores.values())) == 4, scores  # the ensembles really combine, on the same folds


def test_ablated_script_runs_without_submission(runs: dict[str, ScriptRun]) -> None:
    run = runs["ablated model"]
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    assert run.score is not None and 0.5 < run.score < 1.0
    assert run.score != runs["Logistic regression"].score
    assert not run.submission.exists() and not run.test_pred.exists()
    assert run.engine().score == pytest.approx(run.score)


def test_scripts_are_deterministic_and_honour_submit_and_missing_test(runs: dict[str, ScriptRun]) -> None:
    first, again, no_test = (runs["Logistic regression"], runs["logistic again, no submission"],
                             runs["logistic, no test.csv"])
    for run in (again, no_test):
        assert_protocol_files(run, submitted=False)
        assert run.score == first.score
        assert (pd.read_csv(run.workdir / "oof.csv").equals(pd.read_csv(first.workdir / "oof.csv")))
    assert runs["refined"].score != first.score
